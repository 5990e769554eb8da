//! Activation functions and their backward passes, over a batch of rows.

use crate::math;
use crate::topology::Activation;

/// `1/√2`, for the exact GELU.
const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;
/// `1/√(2π)`, the standard normal density at 0.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Runs `$body` with `$act` rebound to a value whose variant the compiler sees, for the
/// activations whose loops then vectorize (ReLU and friends): a `match` on the activation
/// inside the loop would otherwise stay there, one branch per element.
macro_rules! with_known {
    ($act:expr, |$a:ident| $body:expr) => {
        match $act {
            Activation::Relu => {
                let $a = Activation::Relu;
                $body
            }
            Activation::LeakyRelu(alpha) => {
                let $a = Activation::LeakyRelu(alpha);
                $body
            }
            Activation::Sigmoid => {
                let $a = Activation::Sigmoid;
                $body
            }
            Activation::Tanh => {
                let $a = Activation::Tanh;
                $body
            }
            other => {
                let $a = other;
                $body
            }
        }
    };
}

/// Applies `act` to `z`, writing `a`. Rows are `width` long (softmax is per row).
/// `z` and `a` have the same length, a multiple of `width`.
pub fn forward(act: Activation, width: usize, z: &[f32], a: &mut [f32]) {
    match act {
        Activation::Softmax => {
            a.copy_from_slice(z);
            for row in a.chunks_exact_mut(width) {
                softmax_row_in_place(row);
            }
        }
        _ => with_known!(act, |act| {
            for (a, &z) in a.iter_mut().zip(z) {
                *a = apply(act, z);
            }
        }),
    }
}

/// In-place variant of [`forward`].
pub fn forward_in_place(act: Activation, width: usize, x: &mut [f32]) {
    match act {
        Activation::Identity => {}
        Activation::Softmax => {
            for row in x.chunks_exact_mut(width) {
                softmax_row_in_place(row);
            }
        }
        _ => with_known!(act, |act| {
            for v in x.iter_mut() {
                *v = apply(act, *v);
            }
        }),
    }
}

/// One element of a pointwise activation (softmax is handled per row by the callers).
#[inline]
pub fn apply(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Identity | Activation::Softmax => z,
        Activation::Sigmoid => math::sigmoid(z),
        Activation::Tanh => math::tanh(z),
        Activation::Relu => {
            if z > 0.0 {
                z
            } else {
                0.0
            }
        }
        Activation::LeakyRelu(alpha) => {
            if z > 0.0 {
                z
            } else {
                alpha * z
            }
        }
        Activation::Elu(alpha) => {
            if z > 0.0 {
                z
            } else {
                alpha * (math::exp(z) - 1.0)
            }
        }
        Activation::Gelu => 0.5 * z * (1.0 + math::erf(z * FRAC_1_SQRT_2)),
    }
}

/// Backward through `act`: turns `d` from ∂L/∂a into ∂L/∂z in place, given the forward's
/// `z` and `a`. Rows are `width` long.
pub fn backward_in_place(act: Activation, width: usize, z: &[f32], a: &[f32], d: &mut [f32]) {
    match act {
        Activation::Identity => {}
        Activation::Softmax => {
            // Jacobian-vector product of softmax: dz = a ⊙ (da - <da, a>).
            for (ar, dr) in a.chunks_exact(width).zip(d.chunks_exact_mut(width)) {
                let dot: f32 = ar.iter().zip(dr.iter()).map(|(a, d)| a * d).sum();
                for (d, &a) in dr.iter_mut().zip(ar) {
                    *d = a * (*d - dot);
                }
            }
        }
        _ => with_known!(act, |act| {
            for ((d, &z), &a) in d.iter_mut().zip(z).zip(a) {
                *d *= derivative(act, z, a);
            }
        }),
    }
}

/// `f'(z)` of a pointwise activation, given `z` and `a = f(z)` (whichever is cheaper).
#[inline]
pub fn derivative(act: Activation, z: f32, a: f32) -> f32 {
    match act {
        Activation::Identity | Activation::Softmax => 1.0,
        Activation::Sigmoid => a * (1.0 - a),
        Activation::Tanh => 1.0 - a * a,
        Activation::Relu => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu(alpha) => {
            if z > 0.0 {
                1.0
            } else {
                alpha
            }
        }
        Activation::Elu(alpha) => {
            if z > 0.0 {
                1.0
            } else {
                a + alpha
            }
        }
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + math::erf(z * FRAC_1_SQRT_2));
            cdf + z * FRAC_1_SQRT_2PI * math::exp(-0.5 * z * z)
        }
    }
}

/// Numerically stable softmax of one row, in place.
fn softmax_row_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = math::exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `log Σ exp(z)` of one row, stable for large values.
pub fn log_sum_exp(z: &[f32]) -> f32 {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = z.iter().map(|&v| math::exp(v - max)).sum();
    max + math::ln(sum)
}
