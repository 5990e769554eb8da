//! Train mode versus eval mode: dropout (masks, keep rate, scale, off in eval), batch norm
//! (batch statistics in training, running statistics in eval, PyTorch's running-statistics
//! update), `fold_batch_norm` leaving eval outputs unchanged, and the loss computed from
//! eval-mode outputs (`Loss::value_from_outputs`).

use mlp::{
    fold_batch_norm, Activation, LayerSpec, Loss, Model, Optimizer, Portable, Rng, Targets, Topology,
    TrainConfig,
};
use mlp_tests::cases::{config, hidden_activation};
use mlp_tests::reference::RefNet;
use mlp_tests::rounding::eval_output_magnitudes;
use mlp_tests::util::{compare, f64s, normal, random_params, random_running, Buffers};
use proptest::prelude::*;

/// Eval-mode outputs of `t` with `params` and `running`.
fn eval(t: &Topology, params: &[f32], running: &[f32], x: &[f32], batch: usize) -> Vec<f32> {
    let model = Model::new(t, params, running).unwrap();
    let mut ws = vec![0.0; t.infer_workspace_len(batch)];
    model.forward(&Portable, x, batch, &mut ws).unwrap().to_vec()
}

#[test]
fn dropout_masks_have_the_keep_rate_and_the_inverted_scale() {
    let (batch, width) = (20, 1000);
    for p in [0.1f32, 0.3, 0.5, 0.8] {
        let t = Topology::new(
            3,
            &[
                LayerSpec::dense(width, Activation::Relu).with_dropout(p),
                LayerSpec::dense(2, Activation::Softmax),
            ],
        )
        .unwrap();
        let mut bufs = Buffers::new(&t, Optimizer::sgd(), batch);
        bufs.params = random_params(&t, &mut Rng::new(1));
        let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), batch));
        let x = normal(&mut Rng::new(2), batch * 3);
        let mut rng = Rng::new(3);
        trainer.forward(&Portable, &x, batch, &mut rng).unwrap();
        let acts = trainer.layer_activations(0).unwrap();
        let scale = 1.0 / (1.0 - p);
        assert_eq!(acts.mask.len(), batch * width);
        let mut kept = 0usize;
        for (k, &m) in acts.mask.iter().enumerate() {
            if m == 0.0 {
                assert_eq!(acts.output[k], 0.0);
            } else {
                // The inverted-dropout scale 1/(1-p), to f32 rounding.
                assert!((m - scale).abs() <= 2.0 * f32::EPSILON * scale, "mask {m} vs {scale}");
                kept += 1;
                assert_eq!(acts.output[k], acts.a[k] * m);
            }
        }
        // 20 000 Bernoulli(1-p) draws: standard deviation <= 0.0036; allow 5 of them.
        let rate = kept as f64 / (batch * width) as f64;
        assert!((rate - (1.0 - p as f64)).abs() < 0.018, "p {p}: keep rate {rate}");
        // Inverted dropout keeps the expected activation: the means agree to sampling noise.
        let (mean_a, mean_out) = (
            acts.a.iter().map(|&v| v as f64).sum::<f64>() / acts.a.len() as f64,
            acts.output.iter().map(|&v| v as f64).sum::<f64>() / acts.a.len() as f64,
        );
        assert!((mean_out - mean_a).abs() < 0.1 * mean_a.abs(), "p {p}: {mean_a} vs {mean_out}");
        // The next forward pass draws a different mask; the same seed draws the same one.
        let first = acts.mask.to_vec();
        trainer.forward(&Portable, &x, batch, &mut rng).unwrap();
        assert_ne!(trainer.layer_activations(0).unwrap().mask, &first[..]);
        trainer.forward(&Portable, &x, batch, &mut Rng::new(3)).unwrap();
        assert_eq!(trainer.layer_activations(0).unwrap().mask, &first[..]);
    }
}

#[test]
fn dropout_is_on_in_training_and_off_in_eval() {
    let layers = |p: f32| {
        [
            LayerSpec::dense(16, Activation::Tanh).with_dropout(p),
            LayerSpec::dense(8, Activation::Gelu).with_dropout(p),
            LayerSpec::dense(3, Activation::Softmax),
        ]
    };
    let batch = 6;
    let x = normal(&mut Rng::new(4), batch * 5);
    for p in [0.0f32, 0.5] {
        let t = Topology::new(5, &layers(p)).unwrap();
        let mut bufs = Buffers::new(&t, Optimizer::sgd(), batch);
        bufs.params = random_params(&t, &mut Rng::new(5));
        let params = bufs.params.clone();
        let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), batch));
        let train_out = trainer.forward(&Portable, &x, batch, &mut Rng::new(6)).unwrap().to_vec();
        let model = trainer.model();
        let mut ws = vec![0.0; t.infer_workspace_len(batch)];
        let eval_out = model.forward(&Portable, &x, batch, &mut ws).unwrap().to_vec();
        // Eval mode is deterministic and needs no rng; `Model::new` is the same model.
        let again = model.forward(&Portable, &x, batch, &mut ws).unwrap().to_vec();
        assert_eq!(eval_out, again);
        // `predict` is the arg-max of one sample's eval output.
        let class = model.predict(&Portable, &x[..5], &mut ws).unwrap();
        let row = &eval_out[..3];
        assert!(row.iter().all(|&v| v <= row[class]), "{class} of {row:?}");
        assert_eq!(eval(&t, &params, &[], &x, batch), eval_out);
        // The reference's eval mode agrees (no batch norm: plain f32 rounding).
        let net = RefNet::from_topology(&t);
        let expected = net.forward_eval(&f64s(&params), &[], &f64s(&x), batch);
        compare(&f64s(&eval_out), &expected, 1e-5, 1e-6).unwrap();
        if p == 0.0 {
            // Without dropout (or batch norm) the two modes compute the same function.
            assert_eq!(train_out, eval_out);
        } else {
            let diff = train_out.iter().zip(&eval_out).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff > 1e-2, "dropout changed nothing in training: {diff}");
        }
    }
}

fn bn_net() -> Topology {
    Topology::new(
        4,
        &[
            LayerSpec::dense(6, Activation::Relu).with_batch_norm().with_dropout(0.2),
            LayerSpec::dense(5, Activation::Tanh).with_batch_norm(),
            LayerSpec::dense(3, Activation::Softmax),
        ],
    )
    .unwrap()
}

/// One unit, identity weights: PyTorch's update by hand. Batch [1, 2, 3, 6]: mean 3,
/// biased variance 3.5, unbiased 14/3. From (0, 1): mean 0.1 · 3 = 0.3, variance
/// 0.9 + 0.1 · 14/3 = 1.3666…; the training output is (x - 3)/√(3.5 + 1e-5).
#[test]
fn batch_norm_running_statistics_by_hand() {
    let t = Topology::new(1, &[LayerSpec::dense(1, Activation::Identity).with_batch_norm()]).unwrap();
    let mut bufs = Buffers::new(&t, Optimizer::sgd(), 4);
    bufs.params.copy_from_slice(&[1.0, 0.0, 1.0, 0.0]); // w, b, γ, β
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::Mse, Optimizer::sgd(), 4));
    let x = [1.0f32, 2.0, 3.0, 6.0];
    let out = trainer.forward(&Portable, &x, 4, &mut Rng::new(1)).unwrap().to_vec();
    for (o, v) in out.iter().zip(x) {
        let expected = (v as f64 - 3.0) / (3.5f64 + 1e-5).sqrt();
        assert!((*o as f64 - expected).abs() < 1e-6, "{o} vs {expected}");
    }
    let r = trainer.running();
    assert!((r[0] - 0.3).abs() < 1e-6, "running mean {}", r[0]);
    assert!((r[1] as f64 - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6, "running var {}", r[1]);
    // Eval mode now normalizes with (0.3, 1.3667), not with the batch.
    let e = eval(&t, trainer.params(), trainer.running(), &x, 4);
    for (o, v) in e.iter().zip(x) {
        let expected = (v as f64 - 0.3) / (0.9 + 0.1 * 14.0 / 3.0 + 1e-5f64).sqrt();
        assert!((*o as f64 - expected).abs() < 1e-6, "{o} vs {expected}");
    }
}

/// Over several training steps (parameters changing, dropout on), the running statistics
/// follow `r = 0.9 r + 0.1 stat` with the batch mean and the unbiased batch variance, as
/// the reference computes them from the same parameters and masks in f64.
#[test]
fn batch_norm_running_statistics_follow_pytorch_over_steps() {
    let t = bn_net();
    let net = RefNet::from_topology(&t);
    let batch = 8;
    let mut bufs = Buffers::new(&t, Optimizer::adam(), batch);
    bufs.params = random_params(&t, &mut Rng::new(10));
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, Optimizer::adam(), batch));
    let mut running = vec![0.0f64; net.running_len()];
    t.layers().iter().enumerate().for_each(|(i, _)| {
        if let Some((m, v)) = net.offsets(i).running {
            let n = t.layers()[i].outputs;
            running[m..m + n].fill(0.0);
            running[v..v + n].fill(1.0);
        }
    });
    assert_eq!(f64s(trainer.running()), running, "reset to PyTorch's (0, 1)");
    let mut rng = Rng::new(11);
    for step in 0..6 {
        let x = normal(&mut rng, batch * 4);
        let labels: Vec<u32> = (0..batch).map(|_| rng.below(3)).collect();
        let params = f64s(trainer.params());
        trainer.step(&Portable, &x, Targets::Labels(&labels), 0.01, &mut rng).unwrap();
        let masks: Vec<Vec<f64>> = (0..3).map(|i| f64s(trainer.layer_activations(i).unwrap().mask)).collect();
        let pass = net.forward_train(&params, &f64s(&x), batch, &masks);
        net.update_running(&mut running, &pass);
        // The batch statistics are well conditioned here (variances ~0.1..1): f32 keeps
        // them to ~1e-6; 1e-5 relative plus 1e-6 absolute for means near 0.
        compare(&f64s(trainer.running()), &running, 1e-5, 1e-6)
            .unwrap_or_else(|m| panic!("step {step}: {m:?}"));
        // The training forward pass normalized with the batch statistics.
        let z = f64s(trainer.layer_activations(1).unwrap().z);
        compare(&z, &pass.layers[1].z, 1e-4, 1e-5).unwrap_or_else(|m| panic!("step {step}: {m:?}"));
    }
    // Eval mode uses those running statistics (the reference, given core's).
    let x = normal(&mut rng, batch * 4);
    let out = eval(&t, trainer.params(), trainer.running(), &x, batch);
    let expected = net.forward_eval(&f64s(trainer.params()), &f64s(trainer.running()), &f64s(&x), batch);
    compare(&f64s(&out), &expected, 1e-4, 1e-6).unwrap();
    // ...and differs from training mode on the same batch.
    let train_out = trainer.forward(&Portable, &x, batch, &mut rng).unwrap().to_vec();
    let diff = train_out.iter().zip(&out).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff > 1e-3, "train and eval agree: {diff}");
}

/// With the running statistics set to a batch's mean and *biased* variance, eval mode
/// reproduces training mode on that batch (no dropout): eval mode really normalizes with
/// the running statistics, by the same formula.
#[test]
fn eval_with_the_batch_statistics_reproduces_training() {
    let t = Topology::new(
        3,
        &[
            LayerSpec::dense(7, Activation::Elu(1.0)).with_batch_norm(),
            LayerSpec::dense(4, Activation::Sigmoid).with_batch_norm(),
        ],
    )
    .unwrap();
    let net = RefNet::from_topology(&t);
    let batch = 5;
    let mut bufs = Buffers::new(&t, Optimizer::sgd(), batch);
    bufs.params = random_params(&t, &mut Rng::new(12));
    let params = bufs.params.clone();
    let x = normal(&mut Rng::new(13), batch * 3);
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::Mse, Optimizer::sgd(), batch));
    let train_out = trainer.forward(&Portable, &x, batch, &mut Rng::new(1)).unwrap().to_vec();
    let pass = net.forward_train(&f64s(&params), &f64s(&x), batch, &[vec![], vec![]]);
    let mut running = vec![0.0f32; t.running_len()];
    for i in 0..2 {
        let (m, v) = t.running_ranges(i).unwrap();
        running[m].iter_mut().zip(&pass.layers[i].mean).for_each(|(r, s)| *r = *s as f32);
        running[v].iter_mut().zip(&pass.layers[i].var).for_each(|(r, s)| *r = *s as f32);
    }
    let out = eval(&t, &params, &running, &x, batch);
    compare(&f64s(&out), &f64s(&train_out), 1e-4, 1e-6).unwrap();
}

/// Agreement of two eval outputs to `rtol` relative to `mag`, the magnitudes of the terms
/// each output is made of (`mlp_tests::rounding::eval_output_magnitudes`, `>= |y|`).
/// Folding changes the rounding order (`(s·W)x` for `s·(Wx)`, `s·(b - mean) + β` for
/// `γ(u - mean)/σ + β`), so where terms cancel to a small output its relative error
/// grows; relative to the terms it stays ~u.
fn assert_outputs_close(a: &[f32], b: &[f32], mag: &[f64], rtol: f64) -> Result<(), TestCaseError> {
    for (i, ((x, y), m)) in a.iter().zip(b).zip(mag).enumerate() {
        let (x, y) = (*x as f64, *y as f64);
        prop_assert!((x - y).abs() <= rtol * m, "output {i}: {x} vs {y} (magnitude {m})");
    }
    Ok(())
}

fn random_layer() -> impl Strategy<Value = LayerSpec> {
    (1usize..10, hidden_activation(), any::<bool>(), prop_oneof![Just(0.0f32), 0.1f32..0.7]).prop_map(
        |(n, act, bn, p)| {
            let l = LayerSpec::dense(n, act).with_dropout(p);
            // Core refuses batch norm on a maxout layer.
            if bn && act.pieces() == 1 {
                l.with_batch_norm()
            } else {
                l
            }
        },
    )
}

proptest! {
    #![proptest_config(config(500))]

    /// Random models (1-4 layers, every activation, batch norm and dropout on random
    /// layers) with non-trivial running statistics and γ/β: folding leaves the eval
    /// outputs unchanged within 1e-5 relative (to the magnitude of their terms), and both
    /// agree with the f64 reference.
    #[test]
    fn folding_batch_norm_keeps_eval_outputs(
        input in 1usize..8,
        hidden in proptest::collection::vec(random_layer(), 0..3),
        out in (1usize..6, prop_oneof![Just(Activation::Softmax), Just(Activation::Identity), Just(Activation::Sigmoid)], any::<bool>()),
        batch in 1usize..6,
        seed in any::<u64>(),
    ) {
        let mut layers = hidden;
        let mut last = LayerSpec::dense(out.0, out.1);
        if out.2 {
            last = last.with_batch_norm();
        }
        layers.push(last);
        let t = Topology::new(input, &layers).unwrap();
        let mut rng = Rng::new(seed);
        let params = random_params(&t, &mut rng);
        let running = random_running(&t, &mut rng);
        let x = normal(&mut rng, batch * input);
        let before = eval(&t, &params, &running, &x, batch);

        // Folded: every layer keeps W and b only (k rows per unit for maxout).
        let folded_len: usize = (0..t.layers().len())
            .map(|i| t.layers()[i].rows() * (t.fan_in(i) + 1))
            .sum();
        let mut folded_params = vec![0.0; folded_len];
        let folded = fold_batch_norm(&t, &params, &running, &mut folded_params).unwrap();
        prop_assert_eq!(folded.param_len(), folded_len);
        prop_assert!(!folded.has_batch_norm());
        prop_assert_eq!(folded.running_len(), 0);
        prop_assert_eq!(folded.input(), t.input());
        for (f, l) in folded.layers().iter().zip(t.layers()) {
            prop_assert_eq!((f.outputs, f.activation, f.dropout), (l.outputs, l.activation, 0.0));
        }
        let after = eval(&folded, &folded_params, &[], &x, batch);
        let net = RefNet::from_topology(&t);
        let (p64, r64, x64) = (f64s(&params), f64s(&running), f64s(&x));
        let mag = eval_output_magnitudes(&net, &p64, &r64, &x64, batch);
        assert_outputs_close(&after, &before, &mag, 1e-5)?;
        // Both are the reference's eval mode, to f32 rounding.
        let expected: Vec<f32> = net.forward_eval(&p64, &r64, &x64, batch).iter().map(|&v| v as f32).collect();
        assert_outputs_close(&before, &expected, &mag, 1e-5)?;
        assert_outputs_close(&after, &expected, &mag, 1e-5)?;
    }
}

/// Folding a model without batch norm copies its parameters unchanged.
#[test]
fn folding_without_batch_norm_is_a_copy() {
    let t = Topology::new(
        3,
        &[LayerSpec::dense(4, Activation::Relu).with_dropout(0.5), LayerSpec::dense(2, Activation::Identity)],
    )
    .unwrap();
    let params = random_params(&t, &mut Rng::new(1));
    let mut out = vec![0.0; t.param_len()];
    let folded = fold_batch_norm(&t, &params, &[], &mut out).unwrap();
    assert_eq!(out, params);
    assert_eq!(folded.layers()[0].dropout, 0.0);
}

/// The loss from eval-mode outputs (`Loss::value_from_outputs`) recomputed in f64 from the
/// reference's eval outputs, with PyTorch's clamp of log-probabilities at -100. Returns the
/// value and the magnitude of its f32 rounding: the terms, plus each output's magnitude
/// times the loss's sensitivity to it.
fn reference_loss_from_outputs(
    loss: Loss,
    act: Activation,
    width: usize,
    y: &[f64],
    y_mag: &[f64],
    t: &[f64],
) -> (f64, f64) {
    let clamped_ln = |p: f64| if p > 0.0 { p.ln().max(-100.0) } else { -100.0 };
    // d/dp of the clamped log: 1/p where the clamp is not active.
    let dln = |p: f64| if p > 0.0 && p.ln() > -100.0 { 1.0 / p } else { 0.0 };
    let (mut total, mut mag) = (0.0f64, 0.0f64);
    for (row, (row_mag, tr)) in y.chunks(width).zip(y_mag.chunks(width).zip(t.chunks(width))) {
        match (loss, act) {
            (Loss::CrossEntropy, Activation::Identity) => {
                let lse = mlp_tests::reference::log_sum_exp(row);
                let p = mlp_tests::reference::softmax(row);
                let mass: f64 = tr.iter().sum();
                for k in 0..width {
                    total += tr[k] * (lse - row[k]);
                    mag +=
                        tr[k].abs() * (lse.abs() + row[k].abs()) + (p[k] * mass + tr[k].abs()) * row_mag[k];
                }
            }
            (Loss::CrossEntropy, _) => {
                for k in 0..width {
                    total -= tr[k] * clamped_ln(row[k]);
                    mag += (tr[k] * clamped_ln(row[k])).abs() + tr[k].abs() * dln(row[k]) * row_mag[k];
                }
            }
            (Loss::BinaryCrossEntropy, Activation::Identity) => {
                for k in 0..width {
                    let z = row[k];
                    total += mlp_tests::special::softplus(z) - tr[k] * z;
                    mag += mlp_tests::special::softplus(z)
                        + (tr[k] * z).abs()
                        + (mlp_tests::special::sigmoid(z) + tr[k].abs()) * row_mag[k];
                }
            }
            (Loss::BinaryCrossEntropy, _) => {
                for k in 0..width {
                    let (p, tk) = (row[k], tr[k]);
                    let term = tk * clamped_ln(p) + (1.0 - tk) * clamped_ln(1.0 - p);
                    total -= term;
                    mag += (tk * clamped_ln(p)).abs()
                        + ((1.0 - tk) * clamped_ln(1.0 - p)).abs()
                        + (tk.abs() * dln(p) + (1.0 - tk).abs() * dln(1.0 - p)) * row_mag[k];
                }
            }
            (Loss::Mse, _) => {
                for k in 0..width {
                    let d = row[k] - tr[k];
                    total += d * d;
                    mag += d * d + 2.0 * d.abs() * (row_mag[k] + tr[k].abs());
                }
            }
        }
    }
    let count = match loss {
        Loss::CrossEntropy => (y.len() / width) as f64,
        _ => y.len() as f64,
    };
    (total / count, mag / count)
}

proptest! {
    #![proptest_config(config(500))]

    /// `Loss::value_from_outputs` on core's eval outputs is the loss of the reference's eval
    /// outputs, for every loss and output activation, to 64 u of its rounding magnitude.
    #[test]
    fn loss_from_eval_outputs_matches_the_reference(
        case in mlp_tests::cases::net_case(3, 8, mlp_tests::cases::Features::ALL),
    ) {
        let data = case.data();
        let t = &data.topology;
        let running = random_running(t, &mut Rng::new(case.seed ^ 1));
        let out = eval(t, &data.params, &running, &data.input, case.batch);
        let act = t.output_layer().activation;
        let value = case
            .loss
            .value_from_outputs(act, t.output(), &out, data.targets.as_targets())
            .unwrap();
        let net = RefNet::from_topology(t);
        let (p64, r64, x64) = (f64s(&data.params), f64s(&running), f64s(&data.input));
        let y = net.forward_eval(&p64, &r64, &x64, case.batch);
        let y_mag = eval_output_magnitudes(&net, &p64, &r64, &x64, case.batch);
        let targets = data.targets.dense_f64(t.output());
        let (expected, mag) = reference_loss_from_outputs(case.loss, act, t.output(), &y, &y_mag, &targets);
        let tol = 64.0 * f32::EPSILON as f64 / 2.0 * mag;
        prop_assert!(
            (value as f64 - expected).abs() <= tol,
            "{:?} after {act:?}: core {value} vs reference {expected} (tolerance {tol:e})",
            case.loss
        );
    }
}

/// Without batch norm or dropout eval mode is training mode, so the loss from eval outputs
/// equals the loss `Trainer::backward` computes from the logits (probabilities are not
/// extreme here, so the clamp and the log of a rounded probability cost < 1e-5 relative).
#[test]
fn loss_from_eval_outputs_equals_the_training_loss() {
    let x = normal(&mut Rng::new(30), 6 * 4);
    for (loss, out) in [
        (Loss::CrossEntropy, Activation::Softmax),
        (Loss::CrossEntropy, Activation::Identity),
        (Loss::BinaryCrossEntropy, Activation::Sigmoid),
        (Loss::BinaryCrossEntropy, Activation::Identity),
        (Loss::Mse, Activation::Tanh),
    ] {
        let t = Topology::new(4, &[LayerSpec::dense(5, Activation::Gelu), LayerSpec::dense(3, out)]).unwrap();
        let mut bufs = Buffers::new(&t, Optimizer::sgd(), 6);
        bufs.params = random_params(&t, &mut Rng::new(31));
        let mut trainer = bufs.trainer(&t, TrainConfig::new(loss, Optimizer::sgd(), 6));
        let labels = [0u32, 2, 1, 1, 0, 2];
        trainer.forward(&Portable, &x, 6, &mut Rng::new(1)).unwrap();
        let train_loss = trainer.backward(&Portable, &x, Targets::Labels(&labels)).unwrap();
        let outputs = eval(&t, trainer.params(), &[], &x, 6);
        let eval_loss = loss.value_from_outputs(out, 3, &outputs, Targets::Labels(&labels)).unwrap();
        assert!(
            (eval_loss - train_loss).abs() <= 1e-5 * train_loss.abs(),
            "{loss:?} after {out:?}: eval {eval_loss} vs training {train_loss}"
        );
    }
}
