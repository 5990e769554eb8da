//! `Fast`'s implementations of the seam's provided methods against core's defaults:
//!
//! - the optimizer's update spread over threads (`Fast::update_params`) against the one-pass
//!   update (`Optimizer::update`, core's `Portable`): the same bits for every optimizer, every
//!   thread count, and buffer lengths around the split points;
//! - the products with a fused activation (`dense_forward_activation`, its in-place
//!   variant, `dense_backward_input_activation`) against the product followed by core's activation
//!   pass, for every activation.

use cpu::Fast;
use mlp::{activation, Activation, Kernels, Optimizer, Portable, Rng, Shape};
use mlp_tests::fixtures::{self, ACTIVATIONS};
use mlp_tests::optim::all_optimizers;

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    fixtures::random(rng, n)
}

#[test]
fn threaded_update_is_bit_identical_to_the_single_pass() {
    let mut rng = Rng::new(3);
    for threads in [1, 2, 3] {
        let pool = cpu::pool::Threads::new(threads).unwrap();
        for n in [0usize, 1, 17, 32 * 1024 + 1, 203_530] {
            for opt in all_optimizers() {
                let opt = opt.with_weight_decay(0.01);
                let params = random(n, &mut rng);
                // Nonzero state, as after some steps (Adagrad/Adamax/Adadelta need it >= 0).
                let state: Vec<f32> = random(opt.state_len(n), &mut rng).iter().map(|v| v.abs()).collect();
                let (mut p1, mut s1) = (params.clone(), state.clone());
                let (mut p2, mut s2) = (params, state);
                for t in 1..=3 {
                    let grads = random(n, &mut rng);
                    opt.update(&mut p1, &grads, &mut s1, t, 1e-2).unwrap();
                    pool.install(|| opt.update_with(&Fast::new(), &mut p2, &grads, &mut s2, t, 1e-2))
                        .unwrap();
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&p1), bits(&p2), "{} params, n = {n}, {threads} threads", opt.name());
                assert_eq!(bits(&s1), bits(&s2), "{} state, n = {n}, {threads} threads", opt.name());
            }
        }
    }
}

#[test]
fn threaded_update_still_checks_its_inputs() {
    let opt = Optimizer::adam();
    let (mut p, g, mut s) = (vec![0.0; 4], vec![0.0; 3], vec![0.0; 8]);
    assert!(opt.update_with(&Fast::new(), &mut p, &g, &mut s, 1, 1e-3).is_err(), "short gradients");
    let g = vec![0.0; 4];
    assert!(opt.update_with(&Fast::new(), &mut p, &g, &mut s, 0, 1e-3).is_err(), "step 0");
    assert!(opt.update_with(&Fast::new(), &mut p, &g, &mut s[..7], 1, 1e-3).is_err(), "short state");
}

/// Values in [-1, 1], about 70% of them exactly zero, so wide layers take the zero-skipping
/// kernels (and their fused epilogue).
fn mostly_zero(n: usize, rng: &mut Rng) -> Vec<f32> {
    fixtures::sparse_random(rng, n, 0.7)
}

#[test]
fn fused_activations_match_the_product_then_the_pass() {
    let mut rng = Rng::new(9);
    let fast = Fast::new();
    for (batch, inputs, outputs) in
        [(1, 3, 2), (9, 17, 33), (70, 40, 64), (70, 40, 10), (37, 300, 16), (256, 100, 10)]
    {
        let s = Shape { batch, inputs, outputs };
        let x = mostly_zero(batch * inputs, &mut rng);
        let w = random(outputs * inputs, &mut rng);
        let b = random(outputs, &mut rng);
        let dy = random(batch * outputs, &mut rng);
        for act in ACTIVATIONS {
            // Forward: the same z as Fast's own product, and a = act(z) exactly.
            let (mut z, mut a) = (vec![f32::NAN; batch * outputs], vec![f32::NAN; batch * outputs]);
            fast.dense_forward_activation(s, &x, &w, &b, act, &mut z, &mut a);
            let mut z_ref = vec![f32::NAN; batch * outputs];
            fast.dense_forward(s, &x, &w, &b, &mut z_ref);
            let mut a_ref = vec![f32::NAN; batch * outputs];
            activation::forward(act, outputs, &z_ref, &mut a_ref);
            assert_eq!(z, z_ref, "{act:?} forward z, {s:?}");
            assert_eq!(a, a_ref, "{act:?} forward a, {s:?}");
            // The fused default in core gives the same.
            let (mut z_core, mut a_core) = (vec![f32::NAN; batch * outputs], vec![f32::NAN; batch * outputs]);
            Portable.dense_forward_activation(s, &x, &w, &b, act, &mut z_core, &mut a_core);
            let close =
                |p: &[f32], q: &[f32]| p.iter().zip(q).all(|(p, q)| (p - q).abs() <= 1e-4 * (1.0 + p.abs()));
            assert!(close(&a, &a_core), "{act:?} forward vs Portable, {s:?}");
            // Inference's in-place variant: the same activations.
            let mut y = vec![f32::NAN; batch * outputs];
            fast.dense_forward_activation_in_place(s, &x, &w, &b, act, &mut y);
            assert_eq!(y, a_ref, "{act:?} forward in place, {s:?}");

            // Backward to the inputs: the previous layer's (z, a) are `inputs` wide.
            if act == Activation::Softmax {
                continue; // output layer only: never a previous layer
            }
            let z_prev = random(batch * inputs, &mut rng);
            let mut a_prev = vec![0.0; batch * inputs];
            activation::forward(act, inputs, &z_prev, &mut a_prev);
            let mut dx = vec![f32::NAN; batch * inputs];
            fast.dense_backward_input_activation(s, &dy, &w, act, &z_prev, &a_prev, &mut dx);
            let mut dx_ref = vec![f32::NAN; batch * inputs];
            fast.dense_backward_input(s, &dy, &w, &mut dx_ref);
            activation::backward_in_place(act, inputs, &z_prev, &a_prev, &mut dx_ref);
            assert_eq!(dx, dx_ref, "{act:?} backward, {s:?}");
        }
    }
}

#[test]
fn prepared_weights_match_fast_and_fall_back_for_other_weights() {
    use cpu::Prepared;
    use mlp::{LayerSpec, Model, Topology};
    let mut rng = Rng::new(21);
    // A wide ragged hidden layer (prepared), a narrow one (not), and a softmax output.
    let t = Topology::new(
        70,
        &[
            LayerSpec::dense(40, Activation::Relu),
            LayerSpec::dense(20, Activation::Tanh),
            LayerSpec::dense(5, Activation::Softmax),
        ],
    )
    .unwrap();
    let params = random(t.param_len(), &mut rng);
    let model = Model::new(&t, &params, &[]).unwrap();
    let prepared = Prepared::new(&model);
    for batch in [1, 7, 8, 65, 130] {
        let x = mostly_zero(batch * 70, &mut rng);
        let mut ws1 = vec![0.0; t.infer_workspace_len(batch)];
        let mut ws2 = vec![0.0; t.infer_workspace_len(batch)];
        let ours = model.forward(&prepared, &x, batch, &mut ws1).unwrap().to_vec();
        let reference = model.forward(&Portable, &x, batch, &mut ws2).unwrap().to_vec();
        let close = ours.iter().zip(&reference).all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs()));
        assert!(close, "batch {batch}: {ours:?} vs {reference:?}");
    }
    // Weights that are not the model's (same shape, other memory) are not mistaken for them.
    let s = Shape { batch: 3, inputs: 70, outputs: 40 };
    let x = mostly_zero(3 * 70, &mut rng);
    let (w, b) = (random(40 * 70, &mut rng), random(40, &mut rng));
    let (mut y1, mut y2) = (vec![0.0; 120], vec![0.0; 120]);
    prepared.dense_forward(s, &x, &w, &b, &mut y1);
    Portable.dense_forward(s, &x, &w, &b, &mut y2);
    assert!(y1.iter().zip(&y2).all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs())));
}
