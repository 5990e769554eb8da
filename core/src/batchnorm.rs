//! Batch normalization (Ioffe & Szegedy, 2015) over the batch dimension of a dense layer's
//! outputs, with PyTorch's `BatchNorm1d` conventions: `ε = 1e-5`, running statistics
//! updated with momentum 0.1, the biased batch variance for normalizing and the unbiased
//! one for the running variance. Running statistics start at mean 0, variance 1.
//!
//! The dense bias before batch norm is cancelled by the mean subtraction: its gradient is
//! exactly 0 and [`Trainer`](crate::Trainer) writes exactly 0.0 for it on every kernel
//! (PyTorch's `Linear(bias=False)` before `BatchNorm1d`, with the bias kept in the layout;
//! weight decay still applies to it). `β` plays its part.

use crate::error::{check_len, Buffer, Error};
use crate::math;
use crate::topology::{Activation, Topology};

/// Added to the variance before the square root.
pub const BN_EPS: f32 = 1e-5;
/// Weight of the current batch in the running statistics.
pub const BN_MOMENTUM: f32 = 0.1;

/// Training mode: normalizes the `batch × n` pre-activations `u` with batch statistics.
/// `u` is replaced by `x̂` in place; writes `z = γ x̂ + β`, the batch `mean` and `inv_std = 1/√(var + ε)` (kept for
/// backward), and moves `running_mean` / `running_var` toward the batch statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_train(
    n: usize,
    u: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    z: &mut [f32],
    mean: &mut [f32],
    inv_std: &mut [f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
) {
    let batch = u.len() / n;
    let inv_b = 1.0 / batch as f32;
    mean.fill(0.0);
    for row in u.chunks_exact(n) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m *= inv_b);
    // The variance goes through inv_std as a scratch accumulator.
    inv_std.fill(0.0);
    for row in u.chunks_exact(n) {
        for ((s, &v), &m) in inv_std.iter_mut().zip(row).zip(mean.iter()) {
            *s += (v - m) * (v - m);
        }
    }
    let unbias = if batch > 1 { batch as f32 / (batch - 1) as f32 } else { 1.0 };
    for (((s, &m), rm), rv) in
        inv_std.iter_mut().zip(mean.iter()).zip(running_mean.iter_mut()).zip(running_var.iter_mut())
    {
        let var = *s * inv_b;
        *rm = (1.0 - BN_MOMENTUM) * *rm + BN_MOMENTUM * m;
        *rv = (1.0 - BN_MOMENTUM) * *rv + BN_MOMENTUM * var * unbias;
        *s = 1.0 / math::sqrt(var + BN_EPS);
    }
    for (ur, zr) in u.chunks_exact_mut(n).zip(z.chunks_exact_mut(n)) {
        for o in 0..n {
            let xh = (ur[o] - mean[o]) * inv_std[o];
            ur[o] = xh;
            zr[o] = gamma[o] * xh + beta[o];
        }
    }
}

/// Eval mode, in place: `x = γ (x - running_mean) / √(running_var + ε) + β`.
pub(crate) fn forward_eval(n: usize, x: &mut [f32], gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32]) {
    for row in x.chunks_exact_mut(n) {
        for o in 0..n {
            let scale = gamma[o] / math::sqrt(var[o] + BN_EPS);
            row[o] = (row[o] - mean[o]) * scale + beta[o];
        }
    }
}

/// Backward: turns `d` from ∂L/∂z into ∂L/∂u in place and writes ∂L/∂γ, ∂L/∂β:
/// `dβ = Σ dz`, `dγ = Σ dz x̂`, `du = inv_std/B (B γ dz - Σ γ dz - x̂ Σ γ dz x̂)`.
pub(crate) fn backward(
    n: usize,
    d: &mut [f32],
    x_hat: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let batch = d.len() / n;
    dgamma.fill(0.0);
    dbeta.fill(0.0);
    for (dr, xr) in d.chunks_exact(n).zip(x_hat.chunks_exact(n)) {
        for o in 0..n {
            dbeta[o] += dr[o];
            dgamma[o] += dr[o] * xr[o];
        }
    }
    let inv_b = 1.0 / batch as f32;
    for (dr, xr) in d.chunks_exact_mut(n).zip(x_hat.chunks_exact(n)) {
        for o in 0..n {
            // Σ γ dz = γ dβ and Σ γ dz x̂ = γ dγ.
            dr[o] = gamma[o] * inv_std[o] * (dr[o] - inv_b * (dbeta[o] + xr[o] * dgamma[o]));
        }
    }
}

/// Folds every batch-norm layer's eval-mode transform into the weights and bias of its
/// dense layer, for deployment: with `s = γ / √(var + ε)`, `W' = s ⊙ W` (row-wise) and
/// `b' = s (b - mean) + β`. Dropout is dropped too (it is the identity in eval mode).
///
/// Writes the parameters of the returned topology (no batch norm, no dropout) into `out`,
/// whose length must be that topology's `param_len()`. Eval-mode outputs are unchanged up
/// to rounding.
pub fn fold_batch_norm(
    topology: &Topology,
    params: &[f32],
    running: &[f32],
    out: &mut [f32],
) -> Result<Topology, Error> {
    check_len(Buffer::Params, topology.param_len(), params.len())?;
    check_len(Buffer::Running, topology.running_len(), running.len())?;
    let mut specs = [crate::LayerSpec::dense(1, Activation::Identity); crate::MAX_LAYERS];
    let layers = topology.layers();
    for (s, l) in specs.iter_mut().zip(layers) {
        *s = crate::LayerSpec::dense(l.outputs, l.activation);
    }
    let folded = Topology::new(topology.input(), &specs[..layers.len()])?;
    check_len(Buffer::FoldedParams, folded.param_len(), out.len())?;
    for (i, layer) in layers.iter().enumerate() {
        let (Some(src), Some(dst)) = (topology.param_ranges(i), folded.param_ranges(i)) else {
            break;
        };
        let fan_in = topology.fan_in(i);
        out[dst.weights.clone()].copy_from_slice(&params[src.weights.clone()]);
        out[dst.bias.clone()].copy_from_slice(&params[src.bias.clone()]);
        if let (Some((g, b)), Some((m, v))) = (src.batch_norm, topology.running_ranges(i)) {
            let (gamma, beta, mean, var) = (&params[g], &params[b], &running[m], &running[v]);
            let (w, bias) = out[dst.weights.start..dst.bias.end].split_at_mut(dst.weights.len());
            for o in 0..layer.outputs {
                let s = gamma[o] / math::sqrt(var[o] + BN_EPS);
                w[o * fan_in..(o + 1) * fan_in].iter_mut().for_each(|x| *x *= s);
                bias[o] = s * (bias[o] - mean[o]) + beta[o];
            }
        }
    }
    Ok(folded)
}
