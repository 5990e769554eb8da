//! The reference network in f64: forward (train and eval mode), the three losses and
//! analytic backprop, written from the math in core's module docs (PyTorch conventions)
//! without calling any of core's math. Only the layer list is read from an
//! [`mlp::Topology`]; the flat layout is recomputed here from its documented definition.

use mlp::{Activation, Loss, Topology};

use crate::special::{normal_cdf, normal_pdf, sigmoid, softplus};

/// Batch-norm epsilon (PyTorch's `BatchNorm1d` default).
pub const BN_EPS: f64 = 1e-5;
/// Batch-norm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// One dense layer of the reference network.
#[derive(Clone, Debug, PartialEq)]
pub struct RefLayer {
    /// Inputs per sample.
    pub inputs: usize,
    /// Output units.
    pub outputs: usize,
    /// Nonlinearity (its `alpha`, if any, is used as f64).
    pub activation: Activation,
    /// Affine pieces per unit: maxout's `k`, else 1. The layer has `pieces · outputs` rows
    /// of `W` and bias, row `o · k + j` being piece `j` of unit `o` (core's documented layout).
    pub pieces: usize,
    /// Batch norm between the affine map and the activation.
    pub batch_norm: bool,
    /// Dropout rate (0: none). The reference takes masks as input; the rate is only
    /// used to know which layers have one.
    pub dropout: f64,
}

/// Where one layer's parameters and running statistics sit, per the documented layout:
/// `W[out][in]` row-major, `bias[out]` (`out` counting every maxout piece's row), then `gamma[out]`, `beta[out]` with batch norm;
/// running statistics: `mean[out]`, `var[out]` per batch-norm layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerOffsets {
    /// Start of `W`.
    pub weights: usize,
    /// Start of the bias.
    pub bias: usize,
    /// Start of `gamma` and of `beta`, with batch norm.
    pub batch_norm: Option<(usize, usize)>,
    /// One past the layer's last parameter.
    pub end: usize,
    /// Start of the running mean and of the running variance, with batch norm.
    pub running: Option<(usize, usize)>,
}

/// A network description for the reference.
#[derive(Clone, Debug, PartialEq)]
pub struct RefNet {
    /// Input width.
    pub input: usize,
    /// Layers, first to last.
    pub layers: Vec<RefLayer>,
    offsets: Vec<LayerOffsets>,
    param_len: usize,
    running_len: usize,
}

/// What a training-mode forward pass computed for one layer (all `batch × outputs`
/// row-major, except `mean`/`var`, which are per unit).
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    /// The layer's input (`batch × inputs`).
    pub x: Vec<f64>,
    /// The affine map `x Wᵀ + b`.
    pub u: Vec<f64>,
    /// Batch mean of `u` (batch norm only).
    pub mean: Vec<f64>,
    /// Biased batch variance of `u` (batch norm only).
    pub var: Vec<f64>,
    /// Normalized `u` (batch norm only).
    pub x_hat: Vec<f64>,
    /// Pre-activation (after batch norm, if any).
    pub z: Vec<f64>,
    /// Activation.
    pub a: Vec<f64>,
    /// Dropout mask (empty without dropout).
    pub mask: Vec<f64>,
    /// What the next layer sees.
    pub out: Vec<f64>,
}

/// A training-mode forward pass.
#[derive(Clone, Debug)]
pub struct TrainPass {
    /// Samples.
    pub batch: usize,
    /// Per layer.
    pub layers: Vec<LayerCache>,
}

impl TrainPass {
    /// The network's outputs.
    pub fn output(&self) -> &[f64] {
        &self.layers.last().expect("at least one layer").out
    }
}

impl RefNet {
    /// Reads the layer list of `t` and recomputes the flat layout from its definition.
    pub fn from_topology(t: &Topology) -> Self {
        let mut layers = Vec::new();
        let mut fan_in = t.input();
        for l in t.layers() {
            let pieces = match l.activation {
                Activation::Maxout(k) => k as usize,
                _ => 1,
            };
            layers.push(RefLayer {
                inputs: fan_in,
                outputs: l.outputs,
                activation: l.activation,
                pieces,
                batch_norm: l.batch_norm,
                dropout: l.dropout as f64,
            });
            fan_in = l.outputs;
        }
        let mut offsets = Vec::new();
        let (mut p, mut r) = (0, 0);
        for l in &layers {
            let weights = p;
            let rows = l.pieces * l.outputs;
            let bias = weights + rows * l.inputs;
            let mut end = bias + rows;
            let (mut batch_norm, mut running) = (None, None);
            if l.batch_norm {
                batch_norm = Some((end, end + l.outputs));
                end += 2 * l.outputs;
                running = Some((r, r + l.outputs));
                r += 2 * l.outputs;
            }
            offsets.push(LayerOffsets { weights, bias, batch_norm, end, running });
            p = end;
        }
        RefNet { input: t.input(), layers, offsets, param_len: p, running_len: r }
    }

    /// Where layer `i`'s parameters are.
    pub fn offsets(&self, i: usize) -> &LayerOffsets {
        &self.offsets[i]
    }

    /// Length of the parameter buffer.
    pub fn param_len(&self) -> usize {
        self.param_len
    }

    /// Length of the running-statistics buffer.
    pub fn running_len(&self) -> usize {
        self.running_len
    }

    /// Output width.
    pub fn output(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// The weights `W[out][in]` of layer `i`.
    fn weights<'p>(&self, i: usize, params: &'p [f64]) -> &'p [f64] {
        let (o, l) = (&self.offsets[i], &self.layers[i]);
        &params[o.weights..o.weights + l.pieces * l.outputs * l.inputs]
    }

    /// `y = x Wᵀ + b` of layer `i` (`batch × pieces · outputs`).
    fn affine(&self, i: usize, params: &[f64], x: &[f64], batch: usize) -> Vec<f64> {
        let l = &self.layers[i];
        let rows = l.pieces * l.outputs;
        let w = self.weights(i, params);
        let b = &params[self.offsets[i].bias..self.offsets[i].bias + rows];
        let mut y = vec![0.0; batch * rows];
        for s in 0..batch {
            for o in 0..rows {
                let mut acc = b[o];
                for j in 0..l.inputs {
                    acc += w[o * l.inputs + j] * x[s * l.inputs + j];
                }
                y[s * rows + o] = acc;
            }
        }
        y
    }

    /// Training-mode forward pass on `batch` samples: batch norm with batch statistics
    /// (biased variance), dropout with the given masks (`masks[i]` empty for layers without
    /// dropout; each entry `0` or `1/(1-p)`).
    pub fn forward_train(
        &self,
        params: &[f64],
        input: &[f64],
        batch: usize,
        masks: &[Vec<f64>],
    ) -> TrainPass {
        assert_eq!(params.len(), self.param_len);
        assert_eq!(input.len(), batch * self.input);
        let mut caches: Vec<LayerCache> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let x = match caches.last() {
                Some(c) => c.out.clone(),
                None => input.to_vec(),
            };
            let u = self.affine(i, params, &x, batch);
            let n = l.outputs;
            let mut c = LayerCache { x, ..Default::default() };
            let z = if let Some((g, be)) = self.offsets[i].batch_norm {
                let mut mean = vec![0.0; n];
                let mut var = vec![0.0; n];
                for o in 0..n {
                    let m = (0..batch).map(|s| u[s * n + o]).sum::<f64>() / batch as f64;
                    let v = (0..batch).map(|s| (u[s * n + o] - m).powi(2)).sum::<f64>() / batch as f64;
                    mean[o] = m;
                    var[o] = v;
                }
                let mut x_hat = vec![0.0; batch * n];
                let mut z = vec![0.0; batch * n];
                for s in 0..batch {
                    for o in 0..n {
                        let xh = (u[s * n + o] - mean[o]) / (var[o] + BN_EPS).sqrt();
                        x_hat[s * n + o] = xh;
                        z[s * n + o] = params[g + o] * xh + params[be + o];
                    }
                }
                c.mean = mean;
                c.var = var;
                c.x_hat = x_hat;
                z
            } else {
                u.clone()
            };
            c.u = u;
            c.a = activate(l.activation, n, &z);
            c.z = z;
            let mask = masks.get(i).cloned().unwrap_or_default();
            if l.dropout > 0.0 {
                assert_eq!(mask.len(), batch * n, "layer {i} needs a dropout mask");
                c.out = c.a.iter().zip(&mask).map(|(a, m)| a * m).collect();
                c.mask = mask;
            } else {
                assert!(mask.is_empty(), "layer {i} has no dropout");
                c.out = c.a.clone();
            }
            caches.push(c);
        }
        TrainPass { batch, layers: caches }
    }

    /// Eval-mode forward pass: batch norm with the running statistics, no dropout.
    pub fn forward_eval(&self, params: &[f64], running: &[f64], input: &[f64], batch: usize) -> Vec<f64> {
        let layers = self.forward_eval_layers(params, running, input, batch);
        layers.into_iter().last().map(|(_, a)| a).unwrap_or_default()
    }

    /// [`forward_eval`](Self::forward_eval), keeping every layer's pre-activation `z` (after
    /// batch norm) and activation `a`.
    pub fn forward_eval_layers(
        &self,
        params: &[f64],
        running: &[f64],
        input: &[f64],
        batch: usize,
    ) -> Vec<(Vec<f64>, Vec<f64>)> {
        assert_eq!(params.len(), self.param_len);
        assert_eq!(running.len(), self.running_len);
        let mut out: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let x = out.last().map_or(input, |(_, a)| a.as_slice());
            let mut z = self.affine(i, params, x, batch);
            let n = l.outputs;
            if let (Some((g, be)), Some((m, v))) = (self.offsets[i].batch_norm, self.offsets[i].running) {
                for s in 0..batch {
                    for o in 0..n {
                        let xh = (z[s * n + o] - running[m + o]) / (running[v + o] + BN_EPS).sqrt();
                        z[s * n + o] = params[g + o] * xh + params[be + o];
                    }
                }
            }
            let a = activate(l.activation, n, &z);
            out.push((z, a));
        }
        out
    }

    /// Moves `running` toward the batch statistics of `pass` like PyTorch's `BatchNorm1d`
    /// in training mode: `r = (1 - 0.1) r + 0.1 · stat`, with the unbiased batch variance.
    pub fn update_running(&self, running: &mut [f64], pass: &TrainPass) {
        let b = pass.batch as f64;
        for (i, l) in self.layers.iter().enumerate() {
            if let Some((m, v)) = self.offsets[i].running {
                let c = &pass.layers[i];
                for o in 0..l.outputs {
                    running[m + o] = (1.0 - BN_MOMENTUM) * running[m + o] + BN_MOMENTUM * c.mean[o];
                    let unbiased = c.var[o] * b / (b - 1.0);
                    running[v + o] = (1.0 - BN_MOMENTUM) * running[v + o] + BN_MOMENTUM * unbiased;
                }
            }
        }
    }

    /// The mean loss of `pass` against dense `targets` (`batch × outputs`; labels are one-hot
    /// rows, see [`one_hot`]) and its gradient with respect to the output layer's `z`.
    pub fn loss_and_dz(&self, loss: Loss, pass: &TrainPass, targets: &[f64]) -> (f64, Vec<f64>) {
        let last = self.layers.last().expect("at least one layer");
        let c = pass.layers.last().expect("at least one layer");
        loss_and_dz(loss, last.activation, last.outputs, &c.z, &c.a, targets)
    }

    /// The mean loss of a training-mode forward pass (the function finite differences
    /// differentiate).
    pub fn loss(
        &self,
        loss: Loss,
        params: &[f64],
        input: &[f64],
        batch: usize,
        masks: &[Vec<f64>],
        targets: &[f64],
    ) -> f64 {
        let pass = self.forward_train(params, input, batch, masks);
        self.loss_and_dz(loss, &pass, targets).0
    }

    /// Gradient of every parameter, given ∂L/∂z of the output layer.
    pub fn backward_from_dz(&self, params: &[f64], pass: &TrainPass, dz_last: Vec<f64>) -> Vec<f64> {
        let batch = pass.batch;
        let mut grads = vec![0.0; self.param_len];
        let mut dz = dz_last;
        for i in (0..self.layers.len()).rev() {
            let l = &self.layers[i];
            let c = &pass.layers[i];
            let off = &self.offsets[i];
            let (n, m) = (l.pieces * l.outputs, l.inputs);
            // Through batch norm, by the textbook chain rule over u → (mean, var) → x̂ → z.
            let du = if let Some((g, be)) = off.batch_norm {
                let b = batch as f64;
                let mut du = vec![0.0; batch * n];
                for o in 0..n {
                    let gamma = params[g + o];
                    let std = (c.var[o] + BN_EPS).sqrt();
                    let mut dgamma = 0.0;
                    let mut dbeta = 0.0;
                    let mut dvar = 0.0;
                    let mut dmean = 0.0;
                    let mut sum_centered = 0.0;
                    for s in 0..batch {
                        let k = s * n + o;
                        dgamma += dz[k] * c.x_hat[k];
                        dbeta += dz[k];
                        let dxh = dz[k] * gamma;
                        let centered = c.u[k] - c.mean[o];
                        dvar += dxh * centered * -0.5 * std.powi(-3);
                        dmean += -dxh / std;
                        sum_centered += centered;
                    }
                    dmean += dvar * -2.0 * sum_centered / b;
                    for s in 0..batch {
                        let k = s * n + o;
                        let dxh = dz[k] * gamma;
                        du[k] = dxh / std + dvar * 2.0 * (c.u[k] - c.mean[o]) / b + dmean / b;
                    }
                    grads[g + o] = dgamma;
                    grads[be + o] = dbeta;
                }
                du
            } else {
                dz.clone()
            };
            for o in 0..n {
                let mut db = 0.0;
                for s in 0..batch {
                    let d = du[s * n + o];
                    db += d;
                    for j in 0..m {
                        grads[off.weights + o * m + j] += d * c.x[s * m + j];
                    }
                }
                grads[off.bias + o] = db;
            }
            if i > 0 {
                let w = self.weights(i, params);
                let mut dx = vec![0.0; batch * m];
                for s in 0..batch {
                    for j in 0..m {
                        dx[s * m + j] = (0..n).map(|o| du[s * n + o] * w[o * m + j]).sum();
                    }
                }
                let prev = &pass.layers[i - 1];
                if !prev.mask.is_empty() {
                    dx.iter_mut().zip(&prev.mask).for_each(|(d, k)| *d *= k);
                }
                dz = activation_backward(self.layers[i - 1].activation, m, &prev.z, &prev.a, &dx);
            }
        }
        grads
    }

    /// Gradient of every parameter for `loss` against `targets`; returns `(loss, grads)`.
    pub fn backward(&self, loss: Loss, params: &[f64], pass: &TrainPass, targets: &[f64]) -> (f64, Vec<f64>) {
        let (value, dz) = self.loss_and_dz(loss, pass, targets);
        (value, self.backward_from_dz(params, pass, dz))
    }

    /// Gradient of every parameter given ∂L/∂(network outputs).
    pub fn backward_from_output_grad(&self, params: &[f64], pass: &TrainPass, d_output: &[f64]) -> Vec<f64> {
        let last = self.layers.last().expect("at least one layer");
        let c = pass.layers.last().expect("at least one layer");
        let dz = activation_backward(last.activation, last.outputs, &c.z, &c.a, d_output);
        self.backward_from_dz(params, pass, dz)
    }

    /// For every layer whose activation has a kink at 0 (ReLU, leaky ReLU, ELU), whether
    /// each pre-activation of `pass` is positive. Finite differences are only valid when
    /// this pattern is the same at both perturbed points and the base point.
    pub fn kink_pattern(&self, pass: &TrainPass) -> Vec<bool> {
        let mut out = Vec::new();
        for (l, c) in self.layers.iter().zip(&pass.layers) {
            out.extend(kinks(l.activation, &c.z));
        }
        out
    }
}

/// Whether `act` is not differentiable somewhere (the finite-difference hazard): at 0 for
/// ReLU, leaky ReLU and ELU; where two maxout pieces tie.
pub fn has_kink(act: Activation) -> bool {
    matches!(act, Activation::Relu | Activation::LeakyRelu(_) | Activation::Elu(_) | Activation::Maxout(_))
}

/// Which side of its kinks each pre-activation in `z` is on (empty for smooth activations):
/// `z > 0` for the ReLU family; for maxout, per piece, whether it is its unit's winner.
pub fn kinks(act: Activation, z: &[f64]) -> Vec<bool> {
    match act {
        Activation::Maxout(k) => z
            .chunks(k as usize)
            .flat_map(|pieces| {
                let win = maxout_winner(pieces);
                (0..pieces.len()).map(move |j| j == win)
            })
            .collect(),
        a if has_kink(a) => z.iter().map(|&z| z > 0.0).collect(),
        _ => Vec::new(),
    }
}

/// The piece a maxout unit takes: the lowest index holding the largest value (PyTorch's
/// `max(dim)` returns the first maximal index, and its backward routes the gradient there).
pub fn maxout_winner(pieces: &[f64]) -> usize {
    let best = pieces.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    pieces.iter().position(|&v| v == best).unwrap_or(0)
}

/// A pointwise activation in f64 (softmax and maxout are handled by [`activate`]).
pub fn act(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Maxout(_) => panic!("maxout is not pointwise: use activate"),
        Activation::Identity | Activation::Softmax => z,
        Activation::Sigmoid => sigmoid(z),
        Activation::Tanh => z.tanh(),
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
                alpha as f64 * z
            }
        }
        Activation::Elu(alpha) => {
            if z > 0.0 {
                z
            } else {
                alpha as f64 * z.exp_m1()
            }
        }
        Activation::Gelu => z * normal_cdf(z),
    }
}

/// `f'(z)` of a pointwise activation, from `z` alone (ReLU-family: the left derivative at 0,
/// i.e. `f'(0) = 0` for ReLU and `alpha` for leaky ReLU; ELU: `alpha`).
pub fn act_derivative(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Maxout(_) => panic!("maxout is not pointwise: use activation_backward"),
        Activation::Identity | Activation::Softmax => 1.0,
        Activation::Sigmoid => {
            let s = sigmoid(z);
            s * (1.0 - s)
        }
        Activation::Tanh => {
            let c = z.cosh();
            1.0 / (c * c)
        }
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
                alpha as f64
            }
        }
        Activation::Elu(alpha) => {
            if z > 0.0 {
                1.0
            } else {
                alpha as f64 * z.exp()
            }
        }
        Activation::Gelu => normal_cdf(z) + z * normal_pdf(z),
    }
}

/// Softmax of one row, stable.
pub fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// `ln Σ e^z` of one row, stable.
pub fn log_sum_exp(z: &[f64]) -> f64 {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// Applies `act` to `batch × width` values (softmax row-wise; maxout with `k` pieces takes
/// `batch × k · width` values, each unit's `k` adjacent, and gives `batch × width`).
pub fn activate(act_fn: Activation, width: usize, z: &[f64]) -> Vec<f64> {
    match act_fn {
        Activation::Softmax => z.chunks(width).flat_map(softmax).collect(),
        Activation::Maxout(k) => z.chunks(k as usize).map(|p| p[maxout_winner(p)]).collect(),
        _ => z.iter().map(|&v| act(act_fn, v)).collect(),
    }
}

/// ∂L/∂z from ∂L/∂a through `act` (softmax: the full Jacobian of each row; maxout: each
/// unit's ∂L/∂a to its winning piece, 0 to the others, so ∂L/∂z is `k` times as long).
pub fn activation_backward(act_fn: Activation, width: usize, z: &[f64], a: &[f64], da: &[f64]) -> Vec<f64> {
    match act_fn {
        Activation::Maxout(k) => {
            let k = k as usize;
            let mut dz = vec![0.0; z.len()];
            for (u, &d) in da.iter().enumerate() {
                dz[u * k + maxout_winner(&z[u * k..(u + 1) * k])] = d;
            }
            dz
        }
        Activation::Softmax => {
            let mut dz = vec![0.0; z.len()];
            for r in 0..z.len() / width {
                let row = r * width..(r + 1) * width;
                let s = &a[row.clone()];
                let d = &da[row];
                // J[k][j] = s_k (δ_kj - s_j); dz_j = Σ_k d_k J[k][j].
                for j in 0..width {
                    dz[r * width + j] =
                        (0..width).map(|k| d[k] * s[k] * (if k == j { 1.0 } else { 0.0 } - s[j])).sum();
                }
            }
            dz
        }
        _ => z.iter().zip(da).map(|(&z, &d)| d * act_derivative(act_fn, z)).collect(),
    }
}

/// Mean loss and ∂L/∂z for an output layer with activation `act_fn`, `z`/`a` its
/// pre-activations and activations (`batch × width`) and dense `targets`.
///
/// MSE: `Σ (a - t)² / (B n)` on the activations. Cross-entropy: `1/B Σ_b Σ_k t_bk (lse(z_b) -
/// z_bk)` on the logits. BCE with logits: `1/(B n) Σ softplus(z) - t z`, which is
/// `-t ln σ(z) - (1 - t) ln(1 - σ(z))`.
pub fn loss_and_dz(
    loss: Loss,
    act_fn: Activation,
    width: usize,
    z: &[f64],
    a: &[f64],
    targets: &[f64],
) -> (f64, Vec<f64>) {
    assert_eq!(z.len(), targets.len());
    let len = z.len() as f64;
    let batch = (z.len() / width) as f64;
    match loss {
        Loss::Mse => {
            let value = a.iter().zip(targets).map(|(a, t)| (a - t).powi(2)).sum::<f64>() / len;
            let da: Vec<f64> = a.iter().zip(targets).map(|(a, t)| 2.0 * (a - t) / len).collect();
            (value, activation_backward(act_fn, width, z, a, &da))
        }
        Loss::CrossEntropy => {
            let mut value = 0.0;
            let mut dz = vec![0.0; z.len()];
            for r in 0..z.len() / width {
                let row = r * width..(r + 1) * width;
                let (zr, tr) = (&z[row.clone()], &targets[row]);
                let lse = log_sum_exp(zr);
                let mass: f64 = tr.iter().sum();
                let p = softmax(zr);
                for k in 0..width {
                    value += tr[k] * (lse - zr[k]);
                    dz[r * width + k] = (p[k] * mass - tr[k]) / batch;
                }
            }
            (value / batch, dz)
        }
        Loss::BinaryCrossEntropy => {
            let value = z.iter().zip(targets).map(|(&z, &t)| softplus(z) - t * z).sum::<f64>() / len;
            let dz = z.iter().zip(targets).map(|(&z, &t)| (sigmoid(z) - t) / len).collect();
            (value, dz)
        }
    }
}

/// Integer labels as one-hot rows of `width`; with one output (a binary classifier) the label
/// 0 or 1 is the target itself.
pub fn one_hot(labels: &[u32], width: usize) -> Vec<f64> {
    if width == 1 {
        return labels.iter().map(|&l| l as f64).collect();
    }
    let mut t = vec![0.0; labels.len() * width];
    for (r, &l) in labels.iter().enumerate() {
        t[r * width + l as usize] = 1.0;
    }
    t
}
