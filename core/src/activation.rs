//! Activation functions and their backward passes, over a batch of rows.
//!
//! Maxout is not pointwise: its `z` has `k` pre-activations per output (see
//! [`Activation::Maxout`]), so [`forward`], [`forward_in_place`] and [`backward_in_place`]
//! take `z` `k` times longer than `a` for it, and [`apply`] / [`derivative`] treat a value as
//! a single piece (`max` of one value is itself).

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
/// `z` and `a` have the same length, a multiple of `width` (for maxout with `k` pieces, `z`
/// is `k` times longer: [`maxout_forward`]).
pub fn forward(act: Activation, width: usize, z: &[f32], a: &mut [f32]) {
    match act {
        Activation::Maxout(k) => maxout_forward(k as usize, z, a),
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

/// In-place variant of [`forward`]. For maxout with `k` pieces, `x` holds the `k·m`
/// pre-activations and its first `m` elements become the outputs.
pub fn forward_in_place(act: Activation, width: usize, x: &mut [f32]) {
    match act {
        Activation::Identity => {}
        Activation::Maxout(k) => {
            let k = (k as usize).max(1);
            // Output u is read from x[u·k..] before it is written at x[u] <= u·k, and later
            // outputs read only past u·k: the compaction never reads what it wrote.
            for u in 0..x.len() / k {
                let best = first_max(&x[u * k..u * k + k]).1;
                x[u] = best;
            }
        }
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

/// One element of a pointwise activation (softmax is handled per row by the callers; a
/// maxout value is one piece, returned as is).
#[inline]
pub fn apply(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Identity | Activation::Softmax | Activation::Maxout(_) => z,
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
/// `z` and `a`. Rows are `width` long. For maxout, `d` is as long as `z` and holds ∂L/∂a in
/// its first `z.len() / k` elements on entry ([`maxout_backward_in_place`]).
pub fn backward_in_place(act: Activation, width: usize, z: &[f32], a: &[f32], d: &mut [f32]) {
    match act {
        Activation::Identity => {}
        Activation::Maxout(k) => maxout_backward_in_place(k as usize, z, d),
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
        Activation::Identity | Activation::Softmax | Activation::Maxout(_) => 1.0,
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

/// Maxout forward: `a[u] = max_j z[u·k + j]` for each unit `u` (`z` is `k` times as long
/// as `a`; its extra elements, if any, are ignored).
pub fn maxout_forward(k: usize, z: &[f32], a: &mut [f32]) {
    for (a, pieces) in a.iter_mut().zip(z.chunks_exact(k.max(1))) {
        *a = first_max(pieces).1;
    }
}

/// Maxout backward, in place: on entry `d[u]` is ∂L/∂a[u] for the `d.len() / k` units; on
/// exit `d[u·k + j]` is ∂L/∂z[u·k + j]: the unit's gradient at its arg-max piece (on a tie
/// the first, as PyTorch's `max(dim)` backward routes it), 0 at the other pieces. `z` is the
/// forward's pre-activations, as long as `d`.
pub fn maxout_backward_in_place(k: usize, z: &[f32], d: &mut [f32]) {
    let k = k.max(1);
    let units = d.len().min(z.len()) / k;
    // Last unit first: unit u reads d[u] and writes d[u·k..u·k + k], all at or past u, and
    // every unit still to do reads below u, so nothing is read after it is overwritten.
    for u in (0..units).rev() {
        let g = d[u];
        let (arg, _) = first_max(&z[u * k..u * k + k]);
        for (j, slot) in d[u * k..u * k + k].iter_mut().enumerate() {
            *slot = if j == arg { g } else { 0.0 };
        }
    }
}

/// The index and value of the first largest element (a later equal value does not win).
#[inline]
fn first_max(pieces: &[f32]) -> (usize, f32) {
    let mut best = (0, pieces.first().copied().unwrap_or(0.0));
    for (j, &v) in pieces.iter().enumerate().skip(1) {
        if v > best.1 {
            best = (j, v);
        }
    }
    best
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two units of three pieces, two samples; values picked by hand, with a tie in unit 1 of
    /// sample 0 (pieces 0 and 2 both 2.0: the first wins).
    const Z: [f32; 12] = [2.0, -1.0, 2.0, 0.5, 3.0, -4.0, -2.0, -3.0, -1.5, 7.0, 7.5, 1.0];

    #[test]
    fn maxout_takes_each_units_largest_piece() {
        let mut a = [0.0; 4];
        forward(Activation::Maxout(3), 2, &Z, &mut a);
        assert_eq!(a, [2.0, 3.0, -1.5, 7.5]);
        let mut x = Z;
        forward_in_place(Activation::Maxout(3), 2, &mut x);
        assert_eq!(x[..4], a);
    }

    #[test]
    fn maxout_gradient_goes_to_the_first_largest_piece_only() {
        let mut d = [10.0, 20.0, 30.0, 40.0, -9.0, -9.0, -9.0, -9.0, -9.0, -9.0, -9.0, -9.0];
        backward_in_place(Activation::Maxout(3), 2, &Z, &[2.0, 3.0, -1.5, 7.5], &mut d);
        // Winners: piece 0 (tie with 2, first wins), 1, 2, 1.
        assert_eq!(d, [10.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 30.0, 0.0, 40.0, 0.0]);
    }
}
