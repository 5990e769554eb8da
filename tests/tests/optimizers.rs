//! Every optimizer's f32 update (`Optimizer::update`) against the f64 transcription of
//! PyTorch's rule in `mlp_tests::optim`, over several steps, with and without weight decay;
//! gradient clipping (`mlp::optim::clip_grad_norm`) against `clip_grad_norm_`; and
//! `Trainer::update` applying clipping, the optimizer and the step counter.
//!
//! # Tolerances
//!
//! Each step is compared on its own: the reference starts from core's f32 parameters and
//! state (widened to f64), so only that step's rounding is measured and a wrong rule cannot
//! hide behind accumulated drift. The step `Δ = θ_new - θ_old` is compared rather than `θ`
//! (with a small learning rate a wrong step would vanish next to `θ`). The tolerance is the
//! backward-error criterion: core's step must be the exact step for inputs (`θ`, state,
//! gradient) off by at most 1e-5 relative (~170 u, for the dozen f32 operations of a rule),
//! plus the rounding of the result:
//! `|Δ_core - Δ_ref| <= (1e-5 + b) · |Δ_ref| + 3 · S + 4u · |θ_new|`, where `S` is the
//! largest change of the exact step when `θ`, the state or the gradient is scaled by
//! `1 ± 1e-5` (measured with the reference), and `b` is the accuracy lost by Adam's bias
//! corrections `1 - β^t` computed in f32 (`bias_correction_error`: core does this in f32
//! where PyTorch uses f64, up to ~1e-4 relative for `β₂` near 1 in the first steps). `S`
//! is what makes the criterion honest where the rule is ill-conditioned: a gradient that
//! L2 weight decay nearly cancels, fed to RMSprop's `g / (√v + ε)`, or a momentum buffer
//! nearly cancelling the gradient. State vectors likewise: `1e-5 · |s_ref| + 3 · S_state`.
//! A free-running comparison (no resync) over 8 steps checks that nothing is lost between
//! steps, with the tolerance scaled by the number of steps.

use mlp::optim::{clip_grad_norm, grad_norm};
use mlp::{Activation, Error, LayerSpec, Loss, Optimizer, Portable, Rng, Targets, Topology, TrainConfig};
use mlp_tests::cases::config;
use mlp_tests::optim::{all_optimizers, clip_grad_norm as ref_clip, RefOptimizer};
use mlp_tests::util::{f64s, normal, random_params, Buffers};
use proptest::prelude::*;

/// f32 unit roundoff.
const U: f64 = f32::EPSILON as f64 / 2.0;

fn weight_decay() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), 1e-4f32..0.2]
}

/// Any optimizer with hyperparameters anywhere in their valid ranges.
fn any_optimizer() -> impl Strategy<Value = Optimizer> {
    let unit = 0.0f32..0.995;
    let eps = prop_oneof![Just(1e-10f32), Just(1e-8f32), Just(1e-6f32), 1e-8f32..1e-3];
    prop_oneof![
        weight_decay().prop_map(|weight_decay| Optimizer::Sgd { weight_decay }),
        (unit.clone(), weight_decay())
            .prop_map(|(momentum, weight_decay)| { Optimizer::Momentum { momentum, weight_decay } }),
        (unit.clone(), weight_decay())
            .prop_map(|(momentum, weight_decay)| { Optimizer::Nesterov { momentum, weight_decay } }),
        (eps.clone(), weight_decay())
            .prop_map(|(eps, weight_decay)| Optimizer::Adagrad { eps, weight_decay }),
        (unit.clone(), eps.clone(), weight_decay())
            .prop_map(|(alpha, eps, weight_decay)| { Optimizer::RmsProp { alpha, eps, weight_decay } }),
        (unit.clone(), eps.clone(), weight_decay())
            .prop_map(|(rho, eps, weight_decay)| { Optimizer::Adadelta { rho, eps, weight_decay } }),
        (unit.clone(), 0.5f32..0.9999, eps.clone(), weight_decay()).prop_map(
            |(beta1, beta2, eps, weight_decay)| Optimizer::Adam { beta1, beta2, eps, weight_decay }
        ),
        (unit.clone(), 0.5f32..0.9999, eps.clone(), weight_decay()).prop_map(
            |(beta1, beta2, eps, weight_decay)| Optimizer::AdamW { beta1, beta2, eps, weight_decay }
        ),
        (unit, 0.5f32..0.9999, eps, weight_decay()).prop_map(|(beta1, beta2, eps, weight_decay)| {
            Optimizer::Adamax { beta1, beta2, eps, weight_decay }
        }),
        (0.1f32..0.95, 1.05f32..2.0, prop_oneof![Just(0.0f32), 1e-7f32..1e-3], 0.01f32..100.0).prop_map(
            |(eta_minus, eta_plus, step_min, span)| Optimizer::Rprop {
                eta_minus,
                eta_plus,
                step_min,
                step_max: step_min + span
            }
        ),
        (0.0f32..0.1, 0.0f32..1.0, prop_oneof![Just(1e6f32), 0.0f32..6.0], weight_decay())
            .prop_map(|(lambd, alpha, t0, weight_decay)| Optimizer::Asgd { lambd, alpha, t0, weight_decay }),
    ]
}

/// The L2 weight decay folded into the gradient (0 for AdamW, which decays directly).
fn l2(opt: Optimizer) -> f64 {
    match opt {
        Optimizer::Sgd { weight_decay }
        | Optimizer::Momentum { weight_decay, .. }
        | Optimizer::Nesterov { weight_decay, .. }
        | Optimizer::Adagrad { weight_decay, .. }
        | Optimizer::RmsProp { weight_decay, .. }
        | Optimizer::Adadelta { weight_decay, .. }
        | Optimizer::Adam { weight_decay, .. }
        | Optimizer::Adamax { weight_decay, .. }
        | Optimizer::Asgd { weight_decay, .. } => weight_decay as f64,
        Optimizer::AdamW { .. } | Optimizer::Rprop { .. } | Optimizer::Lbfgs(_) => 0.0,
    }
}

/// The relative error that computing Adam's bias corrections `1 - β^t` in f32 adds at step
/// `t`: `β^t` is rounded (relative error ~u) before a subtraction that loses
/// `1 / (1 - β^t)` of it (PyTorch does this arithmetic in Python floats, i.e. f64). With
/// `β₂ = 0.9999` at `t = 2` that is ~3e-4 of `v̂`, half of it after the square root.
fn bias_correction_error(opt: Optimizer, t: u64) -> f64 {
    let c = |beta: f32| U / (1.0 - (beta as f64).powi(t as i32));
    match opt {
        Optimizer::Adam { beta1, beta2, .. } | Optimizer::AdamW { beta1, beta2, .. } => {
            4.0 * (c(beta1) + 0.5 * c(beta2))
        }
        Optimizer::Adamax { beta1, .. } => 4.0 * c(beta1),
        _ => 0.0,
    }
}

/// Runs `steps` updates of `opt` on `n` random parameters with random gradients of random
/// scale, comparing each step with the reference resynced to core's values.
fn check_resynced(opt: Optimizer, n: usize, steps: u64, lr: f32, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(seed);
    let mut params = normal(&mut rng, n);
    let mut state = vec![0.0f32; opt.state_len(n)];
    for t in 1..=steps {
        // Gradients of varying scale, some exactly zero.
        let scale = 10f32.powf(rng.uniform_in(-3.0, 1.0));
        let grads: Vec<f32> =
            (0..n).map(|_| if rng.uniform() < 0.05 { 0.0 } else { scale * rng.normal() }).collect();
        // Resync: the reference continues from core's f32 parameters and state.
        let (p_prev, s_prev, g) = (f64s(&params), f64s(&state), f64s(&grads));
        let (p_ref, s_ref) = reference_step(opt, t, &p_prev, &s_prev, &g, lr);
        // Backward error: how far the exact step moves when every input is off by 1e-5.
        let mut sensitivity_p = vec![0.0f64; n];
        let mut sensitivity_s = vec![0.0f64; s_prev.len()];
        let scaled = |v: &[f64], f: f64| -> Vec<f64> { v.iter().map(|x| x * f).collect() };
        for f in [1.0 + 1e-5, 1.0 - 1e-5] {
            for (pp, ss, gg) in [
                (scaled(&p_prev, f), s_prev.clone(), g.clone()),
                (p_prev.clone(), scaled(&s_prev, f), g.clone()),
                (p_prev.clone(), s_prev.clone(), scaled(&g, f)),
            ] {
                let (p2, s2) = reference_step(opt, t, &pp, &ss, &gg, lr);
                for i in 0..n {
                    // The step, measured from the perturbed start.
                    let moved = (p2[i] - pp[i]) - (p_ref[i] - p_prev[i]);
                    sensitivity_p[i] = sensitivity_p[i].max(moved.abs());
                }
                for k in 0..s2.len() {
                    sensitivity_s[k] = sensitivity_s[k].max((s2[k] - s_ref[k]).abs());
                }
            }
        }
        opt.update(&mut params, &grads, &mut state, t, lr).unwrap();
        for i in 0..n {
            let d_core = params[i] as f64 - p_prev[i];
            let d_ref = p_ref[i] - p_prev[i];
            let tol = (1e-5 + bias_correction_error(opt, t)) * d_ref.abs()
                + 3.0 * sensitivity_p[i]
                + 4.0 * U * p_ref[i].abs();
            prop_assert!(
                (d_core - d_ref).abs() <= tol,
                "{opt:?} step {t}, parameter {i}: core moved {d_core:e}, PyTorch's rule {d_ref:e} \
                 (tolerance {tol:e}; θ {}, g {})",
                p_prev[i],
                grads[i]
            );
        }
        prop_assert_eq!(s_ref.len(), state.len());
        for (k, (&s, &e)) in state.iter().zip(&s_ref).enumerate() {
            let tol = 1e-5 * e.abs() + 3.0 * sensitivity_s[k];
            prop_assert!(
                (s as f64 - e).abs() <= tol,
                "{opt:?} step {t}: state[{k}] core {s:e} vs reference {e:e} (tolerance {tol:e})"
            );
        }
    }
    Ok(())
}

/// One reference update at step `t` from the given parameters and flat state.
fn reference_step(
    opt: Optimizer,
    t: u64,
    params: &[f64],
    state: &[f64],
    grads: &[f64],
    lr: f32,
) -> (Vec<f64>, Vec<f64>) {
    let n = params.len();
    let mut r = RefOptimizer::new(opt, n);
    r.step = t - 1;
    if opt.state_vectors() >= 1 {
        r.s0.copy_from_slice(&state[..n]);
    }
    if opt.state_vectors() == 2 {
        r.s1.copy_from_slice(&state[n..]);
    }
    let mut p = params.to_vec();
    r.step(&mut p, grads, lr as f64);
    (p, r.flat_state())
}

proptest! {
    #![proptest_config(config(500))]

    /// Random optimizers and hyperparameters, 5 to 12 steps each.
    #[test]
    fn every_update_rule_matches_pytorch_step_by_step(
        opt in any_optimizer(),
        n in 1usize..48,
        steps in 5u64..=12,
        lr_scale in 0.1f32..3.0,
        seed in any::<u64>(),
    ) {
        check_resynced(opt, n, steps, opt.default_lr() * lr_scale, seed)?;
    }

    /// 8 steps without resync: core and the reference each run on their own.
    #[test]
    fn eight_free_running_steps_match_pytorch(
        opt in any_optimizer(),
        n in 1usize..32,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let lr = opt.default_lr();
        let mut params = normal(&mut rng, n);
        let start = f64s(&params);
        let mut p_ref = start.clone();
        let mut state = vec![0.0f32; opt.state_len(n)];
        let mut reference = RefOptimizer::new(opt, n);
        let mut path = vec![0.0f64; n]; // Σ (1 + bias-correction error) |step|, per parameter
        let mut floor = vec![0.0f64; n]; // Σ lr · (|g| + |state|)
        for t in 1..=8u64 {
            let grads = normal(&mut rng, n);
            let before = p_ref.clone();
            let s_before = reference.flat_state();
            reference.step(&mut p_ref, &f64s(&grads), lr as f64);
            opt.update(&mut params, &grads, &mut state, t, lr).unwrap();
            let rel = 1.0 + bias_correction_error(opt, t) / 1e-5;
            for i in 0..n {
                path[i] += rel * (p_ref[i] - before[i]).abs();
                let s: f64 = (0..opt.state_vectors()).map(|v| s_before[v * n + i].abs()).sum();
                floor[i] += lr as f64 * ((grads[i] as f64).abs() + l2(opt) * before[i].abs() + s);
            }
        }
        for i in 0..n {
            let (d_core, d_ref) = (params[i] as f64 - start[i], p_ref[i] - start[i]);
            // Per-step tolerance summed over 8 steps, doubled for the drift of the state.
            let tol = 2.0 * (1e-5 * (path[i] + floor[i]) + 8.0 * 4.0 * U * p_ref[i].abs());
            prop_assert!(
                (d_core - d_ref).abs() <= tol,
                "{opt:?} parameter {i}: core moved {d_core:e} in 8 steps, reference {d_ref:e} \
                 (tolerance {tol:e})"
            );
        }
    }

    /// `clip_grad_norm` is `torch.nn.utils.clip_grad_norm_`.
    #[test]
    fn clipping_matches_pytorch(
        n in 1usize..200,
        log_scale in -4.0f32..4.0,
        log_max in -3.0f32..3.0,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let scale = 10f32.powf(log_scale);
        let mut grads: Vec<f32> = normal(&mut rng, n).iter().map(|g| g * scale).collect();
        let max_norm = 10f32.powf(log_max);
        let mut expected = f64s(&grads);
        let ref_norm = ref_clip(&mut expected, max_norm as f64);
        let before = grads.clone();
        let norm = clip_grad_norm(&mut grads, max_norm).unwrap();
        // A sum of n squares in f32: relative error about n·u, far below 1e-5 here.
        prop_assert!(((norm as f64) - ref_norm).abs() <= 1e-5 * ref_norm, "{norm} vs {ref_norm}");
        prop_assert!(((grad_norm(&before) as f64) - ref_norm).abs() <= 1e-5 * ref_norm);
        if ref_norm + 1e-6 <= max_norm as f64 * (1.0 - 1e-5) {
            // Below the threshold nothing changes, bit for bit.
            prop_assert_eq!(&grads, &before);
        } else {
            for (g, e) in grads.iter().zip(&expected) {
                prop_assert!(((*g as f64) - e).abs() <= 1e-5 * e.abs() + 1e-30, "{g} vs {e}");
            }
            let after = f64s(&grads).iter().map(|g| g * g).sum::<f64>().sqrt();
            prop_assert!(after <= max_norm as f64 * (1.0 + 1e-5));
        }
    }
}

/// Every optimizer as constructed by its PyTorch-default constructor, with and without
/// weight decay, 6 steps each: not left to the random generator.
#[test]
fn default_optimizers_with_and_without_weight_decay() {
    for (k, opt) in all_optimizers().into_iter().enumerate() {
        for wd in [0.0, 0.05] {
            let opt = opt.with_weight_decay(wd);
            check_resynced(opt, 37, 6, opt.default_lr(), k as u64 * 31 + 7)
                .unwrap_or_else(|e| panic!("{opt:?}: {e}"));
        }
    }
}

/// Hand-computed first steps, independent of both implementations' code.
#[test]
fn first_steps_by_hand() {
    let g = [0.5f32, -2.0];
    let step = |opt: Optimizer, lr: f32| {
        let mut p = [1.0f32, -1.0];
        let mut s = vec![0.0; opt.state_len(2)];
        opt.update(&mut p, &g, &mut s, 1, lr).unwrap();
        p
    };
    let close = |a: [f32; 2], b: [f32; 2]| (a[0] - b[0]).abs() < 1e-6 && (a[1] - b[1]).abs() < 1e-6;
    // SGD: θ - lr g.
    assert!(close(step(Optimizer::sgd(), 0.1), [0.95, -0.8]));
    // SGD with L2 0.1: g + 0.1 θ = [0.6, -2.1].
    assert!(close(step(Optimizer::sgd().with_weight_decay(0.1), 0.1), [0.94, -0.79]));
    // Momentum: first buffer is g. Nesterov: g + μ g.
    assert!(close(step(Optimizer::momentum(0.9), 0.1), [0.95, -0.8]));
    assert!(close(step(Optimizer::nesterov(0.9), 0.1), [0.905, -0.62]));
    // Adagrad: g / (|g| + eps) = sign(g).
    assert!(close(step(Optimizer::adagrad(), 0.1), [0.9, -0.9]));
    // RMSprop: v = 0.01 g², g / √v = 10 sign(g).
    assert!(close(step(Optimizer::rmsprop(), 0.01), [0.9, -0.9]));
    // Adam, AdamW (no decay), Adamax: bias-corrected first step is sign(g).
    assert!(close(step(Optimizer::adam(), 0.1), [0.9, -0.9]));
    assert!(close(step(Optimizer::adamw().with_weight_decay(0.0), 0.1), [0.9, -0.9]));
    assert!(close(step(Optimizer::adamax(), 0.1), [0.9, -0.9]));
    // AdamW decays θ by lr · wd first: 1 · (1 - 0.1 · 0.5) = 0.95, then -0.1 sign(g).
    assert!(close(step(Optimizer::adamw().with_weight_decay(0.5), 0.1), [0.85, -0.85]));
    // Adadelta: v = 0.1 g², Δ = √eps / √(v + eps) g ≈ √(1e-6 / 0.1) sign(g) ≈ 3.16e-3.
    let p = step(Optimizer::adadelta(), 1.0);
    let d0 = (1e-6f64).sqrt() / (0.1 * 0.25 + 1e-6f64).sqrt() * 0.5;
    assert!((p[0] as f64 - (1.0 - d0)).abs() < 1e-6, "{p:?}");
}

/// Rprop and ASGD over three steps, by hand from PyTorch's rules (numbers in the comments).
#[test]
fn rprop_and_asgd_by_hand() {
    // Rprop, lr 0.1, etas (0.5, 1.2): the step sizes start at lr.
    let opt = Optimizer::rprop();
    let (mut p, mut s) = ([1.0f32, -1.0], [0.0f32; 4]);
    // Step 1: prev = 0, factor 1: θ -= sign(g) · 0.1.
    opt.update(&mut p, &[0.5, -2.0], &mut s, 1, 0.1).unwrap();
    assert_eq!(p, [0.9, -0.9]);
    // Step 2: same sign (×1.2 → 0.12), flipped sign (×0.5 → 0.05, g taken as 0: no move).
    opt.update(&mut p, &[0.3, 1.0], &mut s, 2, 0.1).unwrap();
    assert!((p[0] - 0.78).abs() < 1e-6 && p[1] == -0.9, "{p:?}");
    assert!((s[2] - 0.12).abs() < 1e-7 && (s[3] - 0.05).abs() < 1e-7 && s[1] == 0.0, "{s:?}");
    // Step 3: same sign (0.144); after the flip prev is 0, so factor 1 (0.05).
    opt.update(&mut p, &[0.2, 1.0], &mut s, 3, 0.1).unwrap();
    assert!((p[0] - 0.636).abs() < 1e-6 && (p[1] + 0.95).abs() < 1e-6, "{p:?}");
    // The step sizes stay within [step_min, step_max].
    let tight = Optimizer::Rprop { eta_minus: 0.5, eta_plus: 1.2, step_min: 0.09, step_max: 0.11 };
    let (mut p, mut s) = ([0.0f32], [0.0f32; 2]);
    tight.update(&mut p, &[1.0], &mut s, 1, 0.1).unwrap();
    tight.update(&mut p, &[1.0], &mut s, 2, 0.1).unwrap();
    assert!((s[1] - 0.11).abs() < 1e-7 && (p[0] + 0.21).abs() < 1e-6, "{s:?} {p:?}");

    // ASGD, lr 0.5, λ 0.1, α 0.5, t₀ 0, g = 1 every step:
    // η = 0.5 / (1 + 0.05 k)^0.5 and μ = 1 / max(1, k) after k steps; θ = θ(1 - λη) - η.
    let opt = Optimizer::Asgd { lambd: 0.1, alpha: 0.5, t0: 0.0, weight_decay: 0.0 };
    let (mut p, mut ax) = ([1.0f32], [0.0f32]);
    let expected = [
        (0.45, 0.45),                                           // η 0.5, μ 1: ax = θ
        (-0.059_907_788_115_608_54, -0.059_907_788_115_608_54), // η 0.48795, μ 1
        (-0.533_783_090_999_770_4, -0.296_845_439_557_689_5),   // η 0.47673, μ 1/2
    ];
    for (t, (theta, avg)) in (1..=3).zip(expected) {
        opt.update(&mut p, &[1.0], &mut ax, t, 0.5).unwrap();
        assert!(
            (p[0] as f64 - theta).abs() < 1e-6 && (ax[0] as f64 - avg).abs() < 1e-6,
            "step {t}: {p:?} {ax:?}"
        );
    }
    assert_eq!(opt.averaged(&ax, 1), Some(&ax[..]));
    // L-BFGS has no batch update: it runs through `Lbfgs::step`.
    let mut state = vec![0.0f32; Optimizer::lbfgs().state_len(1)];
    assert!(matches!(
        Optimizer::lbfgs().update(&mut [0.0], &[1.0], &mut state, 1, 1.0),
        Err(Error::NeedsObjective { .. })
    ));
}

fn small_net() -> Topology {
    Topology::new(
        4,
        &[LayerSpec::dense(6, Activation::Tanh).with_batch_norm(), LayerSpec::dense(3, Activation::Softmax)],
    )
    .unwrap()
}

/// `Trainer::update` clips the gradient to `grad_clip` (in place, as PyTorch does) before the
/// optimizer step, reports the norm before clipping, and counts steps for the bias
/// corrections; `step` reports the same norm in `StepStats`.
#[test]
fn trainer_update_clips_then_steps() {
    let t = small_net();
    let mut rng = Rng::new(5);
    let x = normal(&mut rng, 8 * 4);
    let labels: Vec<u32> = (0..8).map(|_| rng.below(3)).collect();
    for opt in all_optimizers() {
        for clip in [None, Some(0.05f32), Some(1e3)] {
            let mut bufs = Buffers::new(&t, opt, 8);
            bufs.params = random_params(&t, &mut Rng::new(9));
            let mut cfg = TrainConfig::new(Loss::CrossEntropy, opt, 8);
            cfg.grad_clip = clip;
            let mut trainer = bufs.trainer(&t, cfg);
            let mut reference = RefOptimizer::new(opt, t.param_len());
            let mut p_ref = f64s(trainer.params());
            for step in 1..=3u64 {
                trainer.forward(&Portable, &x, 8, &mut Rng::new(step)).unwrap();
                trainer.backward(&Portable, &x, Targets::Labels(&labels)).unwrap();
                let mut g = f64s(trainer.grads());
                // Resync the parameters: compare this update only.
                p_ref.iter_mut().zip(trainer.params()).for_each(|(r, &c)| *r = c as f64);
                let s_core = f64s(trainer.optimizer_state());
                let n = t.param_len();
                if opt.state_vectors() >= 1 {
                    reference.s0.copy_from_slice(&s_core[..n]);
                }
                if opt.state_vectors() == 2 {
                    reference.s1.copy_from_slice(&s_core[n..]);
                }
                let norm = clip.map(|c| ref_clip(&mut g, c as f64));
                reference.step(&mut p_ref, &g, opt.default_lr() as f64);
                let reported = trainer.update(opt.default_lr()).unwrap();
                assert_eq!(trainer.steps(), step);
                match (reported, norm) {
                    (None, None) => {}
                    (Some(a), Some(b)) => assert!((a as f64 - b).abs() <= 1e-5 * b, "{a} vs {b}"),
                    other => panic!("{opt:?} clip {clip:?}: norms {other:?}"),
                }
                if let Some(c) = clip {
                    let after = grad_norm(trainer.grads()) as f64;
                    assert!(after <= c as f64 * (1.0 + 1e-5), "{opt:?}: clipped norm {after} > {c}");
                }
                for (i, (&p, &e)) in trainer.params().iter().zip(&p_ref).enumerate() {
                    let tol = 1e-5 * (e.abs() + opt.default_lr() as f64);
                    assert!(
                        (p as f64 - e).abs() <= tol,
                        "{opt:?} clip {clip:?} step {step} parameter {i}: {p} vs {e}"
                    );
                }
            }
        }
    }
}

/// The clipped update differs from the unclipped one (clipping is applied, not just
/// reported), and `StepStats::grad_norm` is the norm before clipping.
#[test]
fn step_reports_the_norm_before_clipping() {
    let t = small_net();
    let mut rng = Rng::new(6);
    let x = normal(&mut rng, 8 * 4);
    let labels: Vec<u32> = (0..8).map(|_| rng.below(3)).collect();
    let run = |clip: Option<f32>| {
        let mut bufs = Buffers::new(&t, Optimizer::sgd(), 8);
        bufs.params = random_params(&t, &mut Rng::new(9));
        let mut cfg = TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), 8);
        cfg.grad_clip = clip;
        let mut trainer = bufs.trainer(&t, cfg);
        let stats = trainer.step(&Portable, &x, Targets::Labels(&labels), 0.5, &mut Rng::new(1)).unwrap();
        (stats, trainer.params().to_vec(), trainer.grads().to_vec())
    };
    let (free, p_free, g_free) = run(None);
    assert_eq!(free.grad_norm, None);
    let norm = grad_norm(&g_free);
    let (clipped, p_clip, g_clip) = run(Some(norm / 4.0));
    assert_eq!(clipped.grad_norm, Some(norm));
    assert!((grad_norm(&g_clip) - norm / 4.0).abs() <= 1e-5 * norm);
    assert_ne!(p_free, p_clip);
    // With SGD the clipped step is a quarter of the free one (up to the 1e-6 in the
    // coefficient and rounding).
    let start = random_params(&t, &mut Rng::new(9));
    for ((s, f), c) in start.iter().zip(&p_free).zip(&p_clip) {
        let (df, dc) = ((f - s) as f64, (c - s) as f64);
        assert!((dc - df / 4.0).abs() <= 1e-3 * df.abs() + 1e-7, "{df} {dc}");
    }
}

/// `set_steps` resumes the bias corrections: after `set_steps(10)` Adam's next update uses
/// t = 11, which differs from a fresh t = 1.
#[test]
fn set_steps_resumes_the_step_count() {
    let opt = Optimizer::adam();
    let n = 5;
    let mut rng = Rng::new(2);
    let params = normal(&mut rng, n);
    let grads = normal(&mut rng, n);
    let state: Vec<f32> = (0..2 * n).map(|k| if k < n { 0.1 } else { 0.2 }).collect();
    // Via Optimizer::update at t = 11...
    let mut direct = params.clone();
    let mut s = state.clone();
    opt.update(&mut direct, &grads, &mut s, 11, 1e-3).unwrap();
    // ...and via a trainer whose counter was set to 10, on a 1-layer model with n params.
    let t = Topology::new(4, &[LayerSpec::dense(1, Activation::Identity)]).unwrap();
    assert_eq!(t.param_len(), n);
    let mut bufs = Buffers::new(&t, opt, 1);
    bufs.params.copy_from_slice(&params);
    bufs.grads.copy_from_slice(&grads);
    bufs.state.copy_from_slice(&state);
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::Mse, opt, 1));
    trainer.set_steps(10);
    trainer.update(1e-3).unwrap();
    assert_eq!(trainer.steps(), 11);
    assert_eq!(trainer.params(), &direct[..]);
    let mut fresh = params.clone();
    let mut s = state.clone();
    opt.update(&mut fresh, &grads, &mut s, 1, 1e-3).unwrap();
    assert_ne!(fresh, direct);
}

/// Invalid hyperparameters and steps are errors, not panics or silent garbage.
#[test]
fn invalid_optimizer_inputs_are_errors() {
    let mut p = [0.0f32; 3];
    let g = [0.1f32; 3];
    for opt in all_optimizers() {
        let mut s = vec![0.0; opt.state_len(3)];
        assert!(opt.update(&mut p, &g, &mut s, 0, 0.1).is_err(), "{opt:?} t = 0");
        assert!(opt.update(&mut p, &g, &mut s, 1, -0.1).is_err(), "{opt:?} lr < 0");
        assert!(opt.update(&mut p, &g, &mut s, 1, f32::INFINITY).is_err());
        // (Rprop has no weight decay, as in PyTorch: the host refuses --weight-decay with it.)
        if opt.has_weight_decay() {
            assert!(opt.with_weight_decay(f32::NAN).validate().is_err());
            assert!(opt.with_weight_decay(-1e-3).validate().is_err());
        }
        assert!(opt.update(&mut p, &g, &mut s, 1, 0.1).is_ok());
    }
    let bad = [
        Optimizer::Momentum { momentum: 1.0, weight_decay: 0.0 },
        Optimizer::Adagrad { eps: 0.0, weight_decay: 0.0 },
        Optimizer::RmsProp { alpha: -0.1, eps: 1e-8, weight_decay: 0.0 },
        Optimizer::Adadelta { rho: 0.9, eps: -1.0, weight_decay: 0.0 },
        Optimizer::Adam { beta1: 0.9, beta2: 1.0, eps: 1e-8, weight_decay: 0.0 },
        Optimizer::AdamW { beta1: f32::NAN, beta2: 0.99, eps: 1e-8, weight_decay: 0.0 },
        Optimizer::Adamax { beta1: 0.9, beta2: 0.99, eps: f32::INFINITY, weight_decay: 0.0 },
        Optimizer::Rprop { eta_minus: 1.0, eta_plus: 1.2, step_min: 1e-6, step_max: 50.0 },
        Optimizer::Rprop { eta_minus: 0.5, eta_plus: 1.0, step_min: 1e-6, step_max: 50.0 },
        Optimizer::Rprop { eta_minus: 0.5, eta_plus: 1.2, step_min: 1.0, step_max: 0.5 },
        Optimizer::Asgd { lambd: -1e-4, alpha: 0.75, t0: 1e6, weight_decay: 0.0 },
        Optimizer::Asgd { lambd: 1e-4, alpha: f32::NAN, t0: 1e6, weight_decay: 0.0 },
    ];
    for opt in bad {
        let mut s = vec![0.0; opt.state_len(3)];
        assert!(
            matches!(opt.update(&mut p, &g, &mut s, 1, 0.1), Err(Error::InvalidHyperparameter { .. })),
            "{opt:?}"
        );
    }
    let mut nan = [f32::NAN, 1.0];
    assert!(matches!(clip_grad_norm(&mut nan, 1.0), Err(Error::NonFinite { .. })));
    for max in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(clip_grad_norm(&mut [1.0, 2.0], max).is_err(), "max norm {max}");
    }
}
