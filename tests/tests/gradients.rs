//! Core's f32 gradients (`Trainer::forward` + `Trainer::backward`, read from
//! `Trainer::grads`) checked two independent ways on random networks: (a) against the f64
//! reference of this crate, which shares no math with core and is itself checked against its
//! own finite differences (`tests/reference.rs`); (b) against central finite differences of
//! core's own f32 loss, which needs no reference at all.
//!
//! # Tolerances, and why they are honest for f32
//!
//! `u = 2⁻²⁴ ≈ 6e-8` is f32's unit roundoff. Two effects decide how far an f32 gradient can
//! be from the exact one:
//!
//! * Batch norm divides by `σ = √(var + ε)`. A unit whose batch variance is far below
//!   `ε = 1e-5` (identical rows after a fully dropped or dead unit, two nearly equal
//!   samples) has `σ ≈ √ε`, so rounding is amplified by up to `1/√ε ≈ 316` per batch-norm
//!   layer, and gradients that are exactly 0 (the bias before batch norm) come out as sums
//!   of terms that large which cancel only up to rounding. The factor
//!   `κ = Π_BN layers max(1, max_unit 1/σ)` (from the reference's batch statistics, see
//!   `mlp_tests::rounding`) measures this; it is 1 without batch norm.
//! * Everything else is ordinary accumulation of rounding over a few layers of short sums.
//!
//! (a) `|g_core - g_ref| <= 4e-3 · κ · (|g_ref| + 1e-2 · max|g_ref|)`. Measured on 200 000
//! random cases of this file's generators: the worst error was 6.2e-4 · κ · (...) with batch
//! norm and 9.6e-4 · (...) without, so there is ≥ 4x headroom. The `1e-2 · max|g|` floor is
//! for entries that are small only by cancellation (a sum over the batch of terms of both
//! signs), whose absolute error is that of the large terms.
//! The loss: `|L_core - L_ref| <= 16 u · m(L)`, `m(L)` the first-order rounding magnitude of
//! the loss (`mlp_tests::rounding::loss_magnitude`); the worst seen was 2.2 u · m(L).
//!
//! (b) Central differences with step `h = max(1e-2 / κ, 1e-4)` of core's f32 loss (batch
//! norm with small `σ` bends the loss on a scale ∝ `σ`, so the step shrinks with `κ`) have
//! three errors: truncation, estimated per parameter as `|D(2h) - D(h)| / 3` (Richardson;
//! `D(h)` the difference quotient); rounding of the f32 loss divided by the step, about
//! `u · m(L) / h`; and the error of core's own gradient, bounded as in (a). The tolerance is
//! 4x their sum; over 20 000 random cases (2.75 million parameters) the worst error was
//! 0.84x the sum. At `h = 1e-2` the rounding term is ~1e-5 relative; smaller steps drown in
//! it, larger ones cross more kinks.
//!
//! Kinks: ReLU, leaky ReLU and ELU are not differentiable at 0. A parameter is left out of
//! (b) when any of its four perturbed forward passes moves any kinked pre-activation to the
//! other side of 0 (0.7% of parameters); (a) is never skipped, because the reference
//! evaluates the same one-sided derivative (`f'(0) = 0` for ReLU) at the same point.
//! Maxout is not differentiable where two pieces of a unit tie: a parameter is left out of (b)
//! when a perturbation changes any unit's winning piece; (a) routes the gradient to the same
//! winner (the first of equal pieces) as core.

use mlp::{Activation, Error, LayerSpec, Loss, Optimizer, Portable, Rng, Targets, Topology, TrainConfig};
use mlp_tests::cases::{
    config, net_case, run_core, run_reference, CaseData, Features, NetCase, OwnedTargets,
};
use mlp_tests::fixtures::HIDDEN_ACTIVATIONS;
use mlp_tests::reference::{has_kink, one_hot};
use mlp_tests::rounding::{batch_norm_amplification, loss_magnitude};
use mlp_tests::util::{f64s, max_abs, normal, Buffers};
use proptest::prelude::*;

/// f32 unit roundoff.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// The tolerance (a) for one gradient entry; see the module docs.
fn grad_tolerance(kappa: f64, g: f64, scale: f64) -> f64 {
    4e-3 * kappa * (g.abs() + 1e-2 * scale)
}

/// (a): core's loss and gradients against the reference's, with core's dropout masks.
fn check_against_reference(case: &NetCase) -> Result<(), TestCaseError> {
    let data = case.data();
    let core = run_core(case, &data, &data.params);
    let (net, pass) = run_reference(&data, case.batch, &core.masks);
    let targets = data.targets.dense_f64(net.output());
    let params = f64s(&data.params);
    let (loss, grads) = net.backward(case.loss, &params, &pass, &targets);
    let kappa = batch_norm_amplification(&net, &pass);
    let loss_tol = 16.0 * U * loss_magnitude(&net, case.loss, &params, &pass, &targets);
    prop_assert!(
        (core.loss as f64 - loss).abs() <= loss_tol,
        "loss: core {} vs reference {loss} (tolerance {loss_tol:e})",
        core.loss
    );
    let scale = max_abs(&grads);
    for (i, (&g, &e)) in core.grads.iter().zip(&grads).enumerate() {
        let tol = grad_tolerance(kappa, e, scale);
        prop_assert!(
            (g as f64 - e).abs() <= tol,
            "gradient {i} ({}): core {g} vs reference {e} (tolerance {tol:e}, κ = {kappa})",
            describe(&data.topology, i)
        );
    }
    Ok(())
}

/// Which parameter index `i` is, for messages.
fn describe(t: &Topology, i: usize) -> String {
    for l in 0..t.layers().len() {
        let r = t.param_ranges(l).expect("layer");
        let what = if r.weights.contains(&i) {
            "weight"
        } else if r.bias.contains(&i) {
            "bias"
        } else {
            match &r.batch_norm {
                Some((g, _)) if g.contains(&i) => "gamma",
                Some((_, b)) if b.contains(&i) => "beta",
                _ => continue,
            }
        };
        return format!("layer {l} {what}");
    }
    "out of range".into()
}

/// (b): core's gradients against central differences of core's own f32 loss. Returns how
/// many parameters were compared (the rest straddle a kink).
fn check_against_finite_differences(case: &NetCase) -> Result<usize, TestCaseError> {
    let data = case.data();
    let base = run_core(case, &data, &data.params);
    // Only to size the tolerance: κ and the loss's rounding magnitude.
    let (net, pass) = run_reference(&data, case.batch, &base.masks);
    let targets = data.targets.dense_f64(net.output());
    let kappa = batch_norm_amplification(&net, &pass);
    let loss_mag = loss_magnitude(&net, case.loss, &f64s(&data.params), &pass, &targets);
    let scale = base.grads.iter().fold(0.0f64, |m, g| m.max(g.abs() as f64));
    // Batch norm with a small σ bends the loss on a scale ∝ σ: shrink the step with κ, but
    // not below 1e-4, where the f32 loss's rounding would swamp the difference.
    let h = (1e-2 / kappa).max(1e-4) as f32;
    let mut p = data.params.clone();
    let mut compared = 0;
    for i in 0..p.len() {
        let x = data.params[i];
        let mut loss_at = [0.0f64; 4];
        let mut smooth = true;
        for (slot, s) in loss_at.iter_mut().zip([2.0f32, 1.0, -1.0, -2.0]) {
            p[i] = x + s * h;
            let run = run_core(case, &data, &p);
            prop_assert_eq!(&run.masks, &base.masks, "same seed, same dropout masks");
            smooth &= run.kinks == base.kinks;
            *slot = run.loss as f64;
        }
        p[i] = x;
        if !smooth {
            continue;
        }
        // The steps actually taken, after rounding x ± h to f32.
        let d1 = (loss_at[1] - loss_at[2]) / ((x + h) as f64 - (x - h) as f64);
        let d2 = (loss_at[0] - loss_at[3]) / ((x + 2.0 * h) as f64 - (x - 2.0 * h) as f64);
        let truncation = (d2 - d1).abs() / 3.0;
        let g = base.grads[i] as f64;
        let tol = 4.0 * (2.0 * truncation + U * loss_mag / h as f64 + grad_tolerance(kappa, g, scale));
        prop_assert!(
            (d1 - g).abs() <= tol,
            "gradient {i} ({}): core {g} vs finite difference {d1} (tolerance {tol:e}, \
             truncation {truncation:e}, κ = {kappa})",
            describe(&data.topology, i)
        );
        compared += 1;
    }
    Ok(compared)
}

proptest! {
    #![proptest_config(config(1000))]

    /// (a) on 1-4 layers of width 1-12, every activation, every loss, batch 1-8 (>= 2 with
    /// batch norm), batch norm and dropout on random layers, workspaces sized for up to 3
    /// more samples than the batch.
    #[test]
    fn core_gradients_match_the_f64_reference(case in net_case(4, 12, Features::ALL)) {
        check_against_reference(&case)?;
    }

    /// (a) without batch norm or dropout, where κ = 1 and the tolerance is tightest.
    #[test]
    fn core_gradients_match_the_f64_reference_plain(
        case in net_case(4, 12, Features { batch_norm: false, dropout: false })
    ) {
        check_against_reference(&case)?;
    }

    /// `backward_from_output_grad` with a random ∂L/∂output against the reference.
    #[test]
    fn output_grad_backward_matches_the_f64_reference(
        case in net_case(4, 12, Features::ALL),
        seed in any::<u64>(),
    ) {
        let data = case.data();
        let t = &data.topology;
        let d = normal(&mut Rng::new(seed), case.batch * t.output());
        let mut bufs = Buffers::new(t, Optimizer::sgd(), case.max_batch);
        bufs.params.copy_from_slice(&data.params);
        let mut trainer = bufs.trainer(t, case.config());
        trainer.forward(&Portable, &data.input, case.batch, &mut Rng::new(case.dropout_seed)).unwrap();
        let masks: Vec<Vec<f32>> = (0..t.layers().len())
            .map(|i| trainer.layer_activations(i).unwrap().mask.to_vec())
            .collect();
        trainer.backward_from_output_grad(&Portable, &data.input, &d).unwrap();
        let (net, pass) = run_reference(&data, case.batch, &masks);
        let grads = net.backward_from_output_grad(&f64s(&data.params), &pass, &f64s(&d));
        let kappa = batch_norm_amplification(&net, &pass);
        let scale = max_abs(&grads);
        for (i, (&g, &e)) in trainer.grads().iter().zip(&grads).enumerate() {
            let tol = grad_tolerance(kappa, e, scale);
            prop_assert!(
                (g as f64 - e).abs() <= tol,
                "gradient {i} ({}): core {g} vs reference {e} (tolerance {tol:e})",
                describe(t, i)
            );
        }
    }
}

proptest! {
    // Each case runs 4 forward/backward passes per parameter.
    #![proptest_config(config(500))]

    /// (b) on the same kind of random networks.
    #[test]
    fn core_gradients_match_finite_differences_of_core_loss(
        case in net_case(4, 12, Features::ALL)
    ) {
        let compared = check_against_finite_differences(&case)?;
        let total = case.topology().param_len();
        // Only kinks exclude parameters. With them, a pre-activation near 0 can exclude all
        // of a small network (or, through batch norm, all parameters before it); coverage is
        // asserted in aggregate by `every_activation_loss_and_layer_option_is_checked`.
        if !case.layers.iter().any(|l| has_kink(l.activation)) {
            prop_assert_eq!(compared, total);
        }
    }
}

/// Every (loss, output activation) pair core accepts.
fn loss_outputs() -> Vec<(Loss, Activation)> {
    let mut v = vec![
        (Loss::CrossEntropy, Activation::Softmax),
        (Loss::CrossEntropy, Activation::Identity),
        (Loss::BinaryCrossEntropy, Activation::Sigmoid),
        (Loss::BinaryCrossEntropy, Activation::Identity),
        (Loss::Mse, Activation::Softmax),
    ];
    v.extend(HIDDEN_ACTIVATIONS.iter().map(|&a| (Loss::Mse, a)));
    v
}

/// Not left to chance: every hidden activation with every loss and output activation,
/// with and without batch norm and dropout, through (a) and (b).
#[test]
fn every_activation_loss_and_layer_option_is_checked() {
    let mut seed = 0u64;
    let (mut compared, mut total) = (0, 0);
    for hidden in HIDDEN_ACTIVATIONS {
        for (loss, out) in loss_outputs() {
            for (bn, dropout) in [(false, false), (true, false), (false, true), (true, true)] {
                seed += 1;
                let mut first = LayerSpec::dense(6, hidden);
                if bn {
                    first = first.with_batch_norm();
                }
                if dropout {
                    first = first.with_dropout(0.3);
                }
                let second = LayerSpec::dense(5, Activation::Tanh);
                let mut last = LayerSpec::dense(4, out);
                if bn {
                    last = last.with_batch_norm();
                }
                let case = NetCase {
                    input: 3,
                    layers: vec![first, second, last],
                    loss,
                    batch: 5,
                    max_batch: 6,
                    labels: seed.is_multiple_of(2),
                    seed,
                    dropout_seed: seed * 7919,
                };
                let context = format!("{hidden:?} / {loss:?} after {out:?}, bn {bn}, dropout {dropout}");
                check_against_reference(&case).unwrap_or_else(|e| panic!("{context}: {e}"));
                compared +=
                    check_against_finite_differences(&case).unwrap_or_else(|e| panic!("{context}: {e}"));
                total += case.topology().param_len();
            }
        }
    }
    // Kinks exclude only a few parameters from (b).
    assert!(compared * 10 >= total * 9, "only {compared} of {total} compared");
}

/// Not left to chance either: maxout with 2 to 4 pieces, as the first hidden layer and as
/// two in a row (the backward pass spreads one maxout's gradient into the other's pieces),
/// with dropout on and off, before every loss and output activation, through (a) and (b).
#[test]
fn maxout_layers_are_checked_like_the_others() {
    let mut seed = 10_000u64;
    let (mut compared, mut total) = (0, 0);
    for k in 2..=4u8 {
        for (loss, out) in loss_outputs() {
            for (stacked, dropout, bn) in
                [(false, false, false), (true, false, true), (false, true, false), (true, true, true)]
            {
                seed += 1;
                let mut first = LayerSpec::dense(5, Activation::Maxout(k));
                if dropout {
                    first = first.with_dropout(0.3);
                }
                let second =
                    LayerSpec::dense(4, if stacked { Activation::Maxout(6 - k) } else { Activation::Tanh });
                let mut last = LayerSpec::dense(3, out);
                if bn {
                    last = last.with_batch_norm();
                }
                let case = NetCase {
                    input: 3,
                    layers: vec![first, second, last],
                    loss,
                    batch: 4,
                    max_batch: 5,
                    labels: seed.is_multiple_of(2),
                    seed,
                    dropout_seed: seed * 7919,
                };
                let context =
                    format!("maxout({k}) / {loss:?} after {out:?}, stacked {stacked}, dropout {dropout}");
                check_against_reference(&case).unwrap_or_else(|e| panic!("{context}: {e}"));
                compared +=
                    check_against_finite_differences(&case).unwrap_or_else(|e| panic!("{context}: {e}"));
                total += case.topology().param_len();
            }
        }
    }
    // Ties between pieces are where the kinks are; few perturbations reach one.
    assert!(compared * 10 >= total * 9, "only {compared} of {total} compared");
}

fn one_layer_bn() -> Topology {
    Topology::new(
        3,
        &[LayerSpec::dense(4, Activation::Relu).with_batch_norm(), LayerSpec::dense(2, Activation::Softmax)],
    )
    .unwrap()
}

/// Batch norm in training mode needs two samples: a one-sample batch is an error in
/// `forward` and `step` (and leaves the parameters alone), two samples are fine, and
/// without batch norm one sample is fine.
#[test]
fn batch_norm_with_one_sample_is_an_error() {
    let t = one_layer_bn();
    let mut bufs = Buffers::new(&t, Optimizer::sgd(), 4);
    bufs.params = mlp_tests::util::random_params(&t, &mut Rng::new(3));
    let before = bufs.params.clone();
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), 4));
    let mut rng = Rng::new(1);
    let x = [0.5f32, -1.0, 2.0, 1.0, 0.0, -0.5];
    assert_eq!(trainer.forward(&Portable, &x[..3], 1, &mut rng).err(), Some(Error::BatchNormNeedsTwoSamples));
    assert_eq!(
        trainer.step(&Portable, &x[..3], Targets::Labels(&[1]), 0.1, &mut rng).err(),
        Some(Error::BatchNormNeedsTwoSamples)
    );
    // No forward pass was kept, so backward cannot run on stale data.
    assert_eq!(trainer.backward(&Portable, &x[..3], Targets::Labels(&[1])).err(), Some(Error::NoForwardPass));
    assert_eq!(trainer.params(), &before[..]);
    assert!(trainer.step(&Portable, &x, Targets::Labels(&[1, 0]), 0.1, &mut rng).is_ok());
    assert_ne!(trainer.params(), &before[..]);

    let plain = Topology::new(3, &[LayerSpec::dense(2, Activation::Softmax)]).unwrap();
    let mut bufs = Buffers::new(&plain, Optimizer::sgd(), 4);
    let mut trainer = bufs.trainer(&plain, TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), 4));
    assert!(trainer.step(&Portable, &x[..3], Targets::Labels(&[1]), 0.1, &mut rng).is_ok());
}

/// Integer labels are exactly one-hot dense targets, for every loss.
#[test]
fn labels_and_one_hot_targets_give_identical_gradients() {
    for (loss, out) in [
        (Loss::CrossEntropy, Activation::Softmax),
        (Loss::BinaryCrossEntropy, Activation::Sigmoid),
        (Loss::Mse, Activation::Tanh),
    ] {
        let case = NetCase {
            input: 4,
            layers: vec![
                LayerSpec::dense(7, Activation::Gelu).with_batch_norm().with_dropout(0.25),
                LayerSpec::dense(3, out),
            ],
            loss,
            batch: 6,
            max_batch: 6,
            labels: true,
            seed: 42,
            dropout_seed: 43,
        };
        let data = case.data();
        let OwnedTargets::Labels(labels) = &data.targets else { unreachable!("labels: true") };
        let dense: Vec<f32> = one_hot(labels, 3).iter().map(|&v| v as f32).collect();
        let dense_data = CaseData { targets: OwnedTargets::Dense(dense), ..data.clone() };
        let a = run_core(&case, &data, &data.params);
        let b = run_core(&case, &dense_data, &data.params);
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{loss:?}");
        assert!(a.grads.iter().zip(&b.grads).all(|(x, y)| x.to_bits() == y.to_bits()), "{loss:?}");
    }
}
