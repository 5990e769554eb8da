//! The dense bias before batch norm never trains, on every kernel: batch norm subtracts the
//! batch mean, so the bias's true gradient is exactly 0, and `Trainer` writes exactly 0.0
//! after the kernel's product (whose sum over the batch is rounding noise of a sign set by
//! the summation order). Regression test: with that noise, one Adam step (`lr·g/(|g| + ε)`,
//! up to ±lr for noise of Adam's ε or more) left `Portable` and `cpu::Fast` up to 2·lr apart
//! on those biases.

use cpu::{Fast, Isa};
use mlp::{Activation, Kernels, LayerSpec, Loss, Optimizer, Portable, Rng, Targets, Topology, TrainConfig};
use mlp_tests::util::{normal, random_params, Buffers};

/// `Portable`, then `cpu::Fast` on every instruction set this CPU has.
fn kernels() -> Vec<(String, Box<dyn Kernels>)> {
    let mut v: Vec<(String, Box<dyn Kernels>)> = vec![("portable".into(), Box::new(Portable))];
    for isa in Isa::available() {
        v.push((format!("fast/{:?}", isa.level()).to_lowercase(), Box::new(Fast::with_isa(isa))));
    }
    v
}

/// Two batch-norm layers (one with dropout) around a plain one, wide enough and with a batch
/// large enough for the sum over the batch to round differently in different orders.
fn net() -> Topology {
    Topology::new(
        20,
        &[
            LayerSpec::dense(48, Activation::Relu).with_batch_norm(),
            LayerSpec::dense(24, Activation::Tanh),
            LayerSpec::dense(32, Activation::Gelu).with_batch_norm().with_dropout(0.2),
            LayerSpec::dense(5, Activation::Softmax),
        ],
    )
    .unwrap()
}

const BATCH: usize = 64;

/// The parameters and gradients after one training step with `kernels` from a fixed start
/// (random biases, so a bias that moves or decays shows), same data and dropout masks.
fn one_step(kernels: &dyn Kernels, optimizer: Optimizer, lr: f32) -> (Vec<f32>, Vec<f32>) {
    let t = net();
    let mut bufs = Buffers::new(&t, optimizer, BATCH);
    bufs.params = random_params(&t, &mut Rng::new(1));
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, optimizer, BATCH));
    let mut data = Rng::new(2);
    let x = normal(&mut data, BATCH * t.input());
    let y: Vec<u32> = (0..BATCH).map(|_| data.below(5)).collect();
    trainer.step(kernels, &x, Targets::Labels(&y), lr, &mut Rng::new(3)).unwrap();
    (trainer.params().to_vec(), trainer.grads().to_vec())
}

/// The bias range of every layer, and whether the layer has batch norm.
fn biases(t: &Topology) -> Vec<(std::ops::Range<usize>, bool)> {
    (0..t.layers().len()).map(|i| (t.param_ranges(i).unwrap().bias, t.layers()[i].batch_norm)).collect()
}

#[test]
fn batch_norm_biases_get_exactly_zero_gradients_on_every_kernel() {
    let t = net();
    for (name, k) in kernels() {
        let (_, grads) = one_step(k.as_ref(), Optimizer::sgd(), 0.1);
        for (i, (bias, bn)) in biases(&t).into_iter().enumerate() {
            let g = &grads[bias];
            if bn {
                // +0.0 exactly, not -0.0 nor noise: every kernel, every bit.
                assert!(g.iter().all(|v| v.to_bits() == 0), "{name}: layer {i} bias gradient {g:?}");
                // The layer itself trains: batch norm's γ and β get real gradients.
                let (gamma, beta) = t.param_ranges(i).unwrap().batch_norm.unwrap();
                assert!(grads[gamma].iter().chain(&grads[beta]).all(|&v| v != 0.0), "{name}: layer {i} γ, β");
            } else {
                // Tanh and softmax layers: every unit has a gradient.
                assert!(
                    g.iter().all(|&v| v != 0.0 && v.is_finite()),
                    "{name}: layer {i} bias gradient {g:?}"
                );
            }
        }
    }
}

/// One Adam step at lr 1e-2 from the same start: the batch-norm biases are bit-identical
/// across kernels (without weight decay they do not move; with it they decay, identically).
/// Before the rule, the noise (1e-10 to 1e-8 here, against Adam's ε of 1e-8) moved each of
/// them by up to about lr/2 in a direction set by the summation order, and `Fast` and
/// `Portable` disagreed by as much.
#[test]
fn adam_leaves_batch_norm_biases_bit_identical_across_kernels() {
    let t = net();
    let start = random_params(&t, &mut Rng::new(1));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for optimizer in [Optimizer::adam(), Optimizer::adam().with_weight_decay(0.1), Optimizer::adamw()] {
        let (reference, _) = one_step(&Portable, optimizer, 1e-2);
        for (name, k) in kernels().into_iter().skip(1) {
            let (params, _) = one_step(k.as_ref(), optimizer, 1e-2);
            for (i, (bias, bn)) in biases(&t).into_iter().enumerate() {
                if bn {
                    let (p, r) = (&params[bias.clone()], &reference[bias]);
                    let o = optimizer.name();
                    assert!(bits(p) == bits(r), "{name}, {o}: layer {i} bias {p:?}\nvs portable {r:?}");
                }
            }
        }
        // What the step did to the biases (the same on every kernel, as just checked).
        for (i, (bias, bn)) in biases(&t).into_iter().enumerate() {
            let (p, s) = (&reference[bias.clone()], &start[bias]);
            if !bn {
                // The other biases do train (by about lr each).
                assert!(p.iter().zip(s).all(|(a, b)| (a - b).abs() > 1e-3), "layer {i} bias");
            } else if optimizer == Optimizer::adam() {
                assert_eq!(p, s, "without weight decay, layer {i} bias must not move");
            } else {
                // Weight decay still applies: every bias moved, toward 0 (Adam's step of ~lr
                // may overshoot it).
                let decayed = |(&a, &b): (&f32, &f32)| a != b && (b - a).signum() == b.signum();
                assert!(
                    p.iter().zip(s).all(decayed),
                    "{}: layer {i} bias {p:?} from {s:?}",
                    optimizer.name()
                );
            }
        }
    }
}
