//! Fixtures shared by every test crate of the workspace (core's f32 and int8 tests here, the
//! `cpu` kernel matrix, the GPU agreement tests): the activation lists, random inputs shaped
//! like the data the kernels see, and the tolerance for comparing sums computed in different
//! orders. One copy, so a new activation or input shape reaches every kernel's tests.
//! The optimizer list is [`crate::optim::all_optimizers`].

use mlp::{Activation, Rng};

/// Every hidden activation, with fixed parameters.
pub const HIDDEN_ACTIVATIONS: [Activation; 7] = [
    Activation::Identity,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Relu,
    Activation::LeakyRelu(0.1),
    Activation::Elu(1.0),
    Activation::Gelu,
];

/// Every activation an output layer may have.
pub const OUTPUT_ACTIVATIONS: [Activation; 5] =
    [Activation::Softmax, Activation::Identity, Activation::Sigmoid, Activation::Tanh, Activation::Relu];

/// Every activation: the hidden ones and softmax.
pub const ACTIVATIONS: [Activation; 8] = {
    let mut all = [Activation::Softmax; 8];
    let mut i = 0;
    while i < HIDDEN_ACTIVATIONS.len() {
        all[i] = HIDDEN_ACTIVATIONS[i];
        i += 1;
    }
    all
};

/// `n` values uniform in [-1, 1).
pub fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    crate::util::uniform(rng, n, -1.0, 1.0)
}

/// `n` values in [-1, 1), about a fraction `zeros` of them exactly zero (like pixels or ReLU
/// outputs, which the zero-skipping kernels skip).
pub fn sparse_random(rng: &mut Rng, n: usize, zeros: f32) -> Vec<f32> {
    (0..n).map(|_| if rng.uniform_in(0.0, 1.0) < zeros { 0.0 } else { rng.uniform_in(-1.0, 1.0) }).collect()
}

/// Random int8s, about one in eight replaced by an extreme (-128 or 127).
pub fn random_i8(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n)
        .map(|_| match rng.below(16) {
            0 => i8::MIN,
            1 => i8::MAX,
            _ => rng.next_u32() as u8 as i8,
        })
        .collect()
}

/// Whether two results of sums of `k` products of values in [-1, 1] agree: both sides round
/// each of `k` additions, in different orders, so each may be off by about `k` ulps of the
/// magnitude (relative bound `1e-6 · (k + 1)`, against `1 + |value|`).
pub fn close_sums(a: &[f32], b: &[f32], k: usize) -> bool {
    let tol = 1e-6 * (k as f32 + 1.0);
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())))
}
