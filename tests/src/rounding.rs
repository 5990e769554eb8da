//! How much f32 rounding an implementation of the network may honestly accumulate, for
//! sizing the tolerances of the comparisons with core.
//!
//! [`loss_magnitude`] is a first-order running error analysis (Higham, *Accuracy and
//! Stability of Numerical Algorithms*, §3) of the training forward pass and the loss: every
//! computed quantity `q` gets a *magnitude* `m(q) >= |q|` such that rounding at unit
//! roundoff `u` perturbs `q` by about `u · m(q)`, up to a modest factor for the length of the
//! sums. The rules are the usual first-order ones: `m(a ± b) = m(a) + m(b)`,
//! `m(Σ aₖ bₖ) = Σ m(aₖ) m(bₖ)`, `m(f(z)) = |f(z)| + |f'(z)| m(z)`, and division by a
//! quantity known to good relative accuracy (`σ = √(var + ε) >= √ε`) divides the magnitude.
//! Where the exact computation cancels (`u - mean` in batch norm, `lse(z) - z_k`, `a - t`),
//! the magnitude stays large while the value is small.
//!
//! [`batch_norm_amplification`] is the factor by which batch norm scales rounding errors:
//! `1/σ` per layer, up to `1/√ε ≈ 316` when a unit's batch variance is far below `ε`
//! (identical rows after a fully dropped or dead unit, two nearly equal samples).

use mlp::{Activation, Loss};

use crate::reference::{act_derivative, log_sum_exp, softmax, RefNet, TrainPass, BN_EPS};
use crate::special::{sigmoid, softplus};

/// Forward magnitudes of one layer.
struct ForwardMagnitudes {
    z: Vec<f64>,
    a: Vec<f64>,
    out: Vec<f64>,
}

/// `m(u)` of the affine map `u = x Wᵀ + b` of layer `i`, given `m(x)`.
fn affine_magnitudes(net: &RefNet, i: usize, params: &[f64], x_mag: &[f64], batch: usize) -> Vec<f64> {
    let (off, l) = (net.offsets(i), &net.layers[i]);
    let (n, m) = (l.pieces * l.outputs, l.inputs);
    let mut u_mag = vec![0.0; batch * n];
    for s in 0..batch {
        for o in 0..n {
            let mut acc = params[off.bias + o].abs();
            for j in 0..m {
                acc += params[off.weights + o * m + j].abs() * x_mag[s * m + j];
            }
            u_mag[s * n + o] = acc;
        }
    }
    u_mag
}

/// `m(z)` after batch norm `z = γ (u - mean) / σ + β` of layer `i`, given `m(u)`, the
/// magnitude of each unit's mean and its `σ` (computed to good relative accuracy: `σ >= √ε`).
fn batch_norm_magnitudes(
    net: &RefNet,
    i: usize,
    params: &[f64],
    u_mag: &[f64],
    mean_mag: &[f64],
    sigma: &[f64],
) -> Vec<f64> {
    let n = net.layers[i].outputs;
    let (g, be) = net.offsets(i).batch_norm.expect("a batch-norm layer");
    u_mag
        .iter()
        .enumerate()
        .map(|(k, um)| {
            let o = k % n;
            params[g + o].abs() * (um + mean_mag[o]) / sigma[o] + params[be + o].abs()
        })
        .collect()
}

/// `m(a)` of `a = f(z)` given the exact `z`, `a` and `m(z)`: `|a| + |f'(z)| m(z)`; softmax
/// with its Jacobian `∂p_j/∂z_k = p_j(δ_jk - p_k)`.
fn activation_magnitudes(act: Activation, n: usize, z: &[f64], a: &[f64], z_mag: &[f64]) -> Vec<f64> {
    match act {
        // The max is exact: the winner's own magnitude.
        Activation::Maxout(k) => {
            let k = k as usize;
            (0..a.len())
                .map(|u| z_mag[u * k + crate::reference::maxout_winner(&z[u * k..(u + 1) * k])])
                .collect()
        }
        Activation::Softmax => {
            let mut out = vec![0.0; a.len()];
            for (s, (p, zm)) in a.chunks(n).zip(z_mag.chunks(n)).enumerate() {
                let weighted: f64 = p.iter().zip(zm).map(|(p, z)| p * z).sum();
                for j in 0..n {
                    out[s * n + j] = p[j] + p[j] * (zm[j] + weighted);
                }
            }
            out
        }
        act => a
            .iter()
            .zip(z)
            .zip(z_mag)
            .map(|((a, &zv), zm)| a.abs() + act_derivative(act, zv).abs() * zm)
            .collect(),
    }
}

/// The magnitudes `m(y)` of the eval-mode outputs of `net` (batch norm with the running
/// statistics): an f32 implementation's outputs may differ from the exact ones by a small
/// multiple of `u · m(y)`.
pub fn eval_output_magnitudes(
    net: &RefNet,
    params: &[f64],
    running: &[f64],
    input: &[f64],
    batch: usize,
) -> Vec<f64> {
    let exact = net.forward_eval_layers(params, running, input, batch);
    let mut x_mag: Vec<f64> = input.iter().map(|v| v.abs()).collect();
    for (i, l) in net.layers.iter().enumerate() {
        let u_mag = affine_magnitudes(net, i, params, &x_mag, batch);
        let z_mag = match net.offsets(i).running {
            Some((m, v)) => {
                let n = l.outputs;
                let mean: Vec<f64> = running[m..m + n].iter().map(|v| v.abs()).collect();
                let sigma: Vec<f64> = running[v..v + n].iter().map(|v| (v + BN_EPS).sqrt()).collect();
                batch_norm_magnitudes(net, i, params, &u_mag, &mean, &sigma)
            }
            None => u_mag,
        };
        let (z, a) = &exact[i];
        x_mag = activation_magnitudes(l.activation, l.outputs, z, a, &z_mag);
    }
    x_mag
}

/// The magnitude `m(L)` of the mean loss of a training pass of `net` (`pass` from
/// [`RefNet::forward_train`] on the same `params`) against dense `targets`: an f32
/// implementation's loss may differ from the exact one by a small multiple of `u · m(L)`.
pub fn loss_magnitude(net: &RefNet, loss: Loss, params: &[f64], pass: &TrainPass, targets: &[f64]) -> f64 {
    let batch = pass.batch;
    let mut fwd: Vec<ForwardMagnitudes> = Vec::new();
    for (i, l) in net.layers.iter().enumerate() {
        let c = &pass.layers[i];
        let n = l.outputs;
        let x_mag: Vec<f64> = match fwd.last() {
            Some(prev) => prev.out.clone(),
            None => c.x.iter().map(|v| v.abs()).collect(),
        };
        let u_mag = affine_magnitudes(net, i, params, &x_mag, batch);
        let z = if net.offsets(i).batch_norm.is_some() {
            // The batch mean is computed from the u's: its magnitude is their mean's.
            let mean: Vec<f64> =
                (0..n).map(|o| (0..batch).map(|s| u_mag[s * n + o]).sum::<f64>() / batch as f64).collect();
            let sigma: Vec<f64> = c.var.iter().map(|v| (v + BN_EPS).sqrt()).collect();
            batch_norm_magnitudes(net, i, params, &u_mag, &mean, &sigma)
        } else {
            u_mag
        };
        let a = activation_magnitudes(l.activation, n, &c.z, &c.a, &z);
        let out =
            if c.mask.is_empty() { a.clone() } else { a.iter().zip(&c.mask).map(|(a, k)| a * k).collect() };
        fwd.push(ForwardMagnitudes { z, a, out });
    }

    // The loss.
    let last = net.layers.len() - 1;
    let (c_out, f_out) = (&pass.layers[last], &fwd[last]);
    let n = net.layers[last].outputs;
    let len = (batch * n) as f64;
    let loss_mag = match loss {
        Loss::Mse => {
            // Σ (a - t)²: m = Σ 2|a - t| m(a - t) + (a - t)², m(a - t) = m(a) + |t|.
            c_out
                .a
                .iter()
                .zip(&f_out.a)
                .zip(targets)
                .map(|((a, am), t)| (a - t).abs() * 2.0 * (am + t.abs()) + (a - t).powi(2))
                .sum::<f64>()
                / len
        }
        Loss::CrossEntropy => {
            let mut total = 0.0;
            for s in 0..batch {
                let r = s * n..(s + 1) * n;
                let (zr, zm, t) = (&c_out.z[r.clone()], &f_out.z[r.clone()], &targets[r]);
                let p = softmax(zr);
                let lse = log_sum_exp(zr);
                // m(lse) = |lse| + Σ p_k m(z_k) (its derivative is the softmax).
                let spread: f64 = p.iter().zip(zm).map(|(p, m)| p * m).sum();
                for k in 0..n {
                    total += t[k].abs() * (lse.abs() + spread + zr[k].abs() + zm[k]);
                }
            }
            total / batch as f64
        }
        Loss::BinaryCrossEntropy => {
            // softplus(z) - t z; ∂/∂z = σ(z) - t.
            c_out
                .z
                .iter()
                .zip(&f_out.z)
                .zip(targets)
                .map(|((&z, zm), t)| softplus(z) + (t * z).abs() + (sigmoid(z) + t.abs()) * zm)
                .sum::<f64>()
                / len
        }
    };
    loss_mag
}

/// `Π` over batch-norm layers of `max(1, max_unit 1/√(var + ε))`, the batch variance taken
/// from `pass`: 1 without batch norm.
pub fn batch_norm_amplification(net: &RefNet, pass: &TrainPass) -> f64 {
    net.layers
        .iter()
        .zip(&pass.layers)
        .filter(|(l, _)| l.batch_norm)
        .map(|(_, c)| c.var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).fold(1.0, f64::max))
        .product()
}
