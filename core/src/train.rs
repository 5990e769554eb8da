//! Training mode: a forward pass that keeps what backward needs, backward into the gradient
//! buffer, and the optimizer update, all on caller-owned buffers.
//!
//! ```
//! use mlp::{init::{initialize, Init}, layout, Activation, LayerSpec, Loss, Optimizer, Portable,
//!           Rng, Targets, Topology, TrainBuffers, TrainConfig, Trainer};
//! // XOR with one hidden layer, on buffers sized at compile time.
//! const LAYERS: [LayerSpec; 2] = [LayerSpec::dense(4, Activation::Tanh), LayerSpec::dense(2, Activation::Softmax)];
//! const P: usize = layout::param_len(2, &LAYERS);
//! const OPT: Optimizer = Optimizer::adam();
//! let mut params = [0.0f32; P];
//! let mut grads = [0.0f32; P];
//! let mut state = [0.0f32; OPT.state_len(P)];
//! let mut ws = [0.0f32; layout::train_workspace_len(&LAYERS, 4)];
//! let t = Topology::new(2, &LAYERS)?;
//! let mut rng = Rng::new(1);
//! initialize(&t, &mut params, Init::XavierNormal, &mut rng)?;
//! let mut trainer = Trainer::new(&t, TrainConfig::new(Loss::CrossEntropy, OPT, 4), TrainBuffers {
//!     params: &mut params, grads: &mut grads, running: &mut [],
//!     optimizer_state: &mut state, workspace: &mut ws,
//! })?;
//! let x = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
//! let y = [0, 1, 1, 0];
//! let mut stats = trainer.step(&Portable, &x, Targets::Labels(&y), 0.05, &mut rng)?;
//! for _ in 0..300 {
//!     stats = trainer.step(&Portable, &x, Targets::Labels(&y), 0.05, &mut rng)?;
//! }
//! assert_eq!(stats.correct, 4);
//! # Ok::<(), mlp::Error>(())
//! ```

use core::ops::Range;

use crate::activation;
use crate::batchnorm;
use crate::error::{check_len, Buffer, Error};
use crate::int8::{fake_quantize_weights, FakeQuant};
use crate::kernels::{Kernels, Portable, Shape};
use crate::loss::{count_correct, validate_targets, Loss, Targets};
use crate::model::Model;
use crate::optim::{clip_grad_norm, Optimizer};
use crate::rng::Rng;
use crate::topology::{layout, LayerSpec, Topology};

/// What a [`Trainer`] optimizes and how.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// The loss on the output layer.
    pub loss: Loss,
    /// The optimizer (its state lives in [`TrainBuffers::optimizer_state`]).
    pub optimizer: Optimizer,
    /// The largest batch the workspace is sized for.
    pub max_batch: usize,
    /// Clip gradients to this global L2 norm before each update (`None`: no clipping).
    pub grad_clip: Option<f32>,
}

impl TrainConfig {
    /// A config with no gradient clipping.
    pub const fn new(loss: Loss, optimizer: Optimizer, max_batch: usize) -> Self {
        TrainConfig { loss, optimizer, max_batch, grad_clip: None }
    }

    /// Checks the config against the `topology` it trains, as [`Trainer::new`] does besides
    /// buffer lengths: a `max_batch` of at least 1 ([`Error::EmptyBatch`]), the loss against
    /// the output activation ([`Loss::check_activation`]), the optimizer's hyperparameters
    /// ([`Optimizer::validate`]) and the clipping norm (finite and positive).
    pub fn validate(&self, topology: &Topology) -> Result<(), Error> {
        if self.max_batch == 0 {
            return Err(Error::EmptyBatch);
        }
        self.loss.check_activation(topology.output_layer().activation)?;
        self.optimizer.validate()?;
        if let Some(c) = self.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::InvalidHyperparameter { name: "max gradient norm", value: c });
            }
        }
        Ok(())
    }
}

/// The caller-owned buffers a [`Trainer`] works on.
#[derive(Debug)]
pub struct TrainBuffers<'a> {
    /// `topology.param_len()`: the model being trained.
    pub params: &'a mut [f32],
    /// `topology.param_len()`: gradients of the last backward pass.
    pub grads: &'a mut [f32],
    /// `topology.running_len()`: batch-norm running statistics (reset with
    /// [`Topology::reset_running`] before training a fresh model).
    pub running: &'a mut [f32],
    /// `optimizer.state_len(param_len)`, zero at the start of training.
    pub optimizer_state: &'a mut [f32],
    /// `topology.train_workspace_len(max_batch)` or more.
    pub workspace: &'a mut [f32],
}

/// The result of one training step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean loss of the batch, before the update.
    pub loss: f32,
    /// Correctly classified samples of the batch, before the update (see
    /// [`count_correct`](crate::loss::count_correct)).
    pub correct: usize,
    /// Samples in the batch.
    pub batch: usize,
    /// Global gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<f32>,
}

/// What a training forward pass saved for one layer, for inspection and tests. Each slice is
/// `batch × outputs` (`mask` empty without dropout; `z` is `batch × k·outputs` for maxout).
#[derive(Clone, Copy, Debug)]
pub struct LayerActivations<'a> {
    /// Pre-activations (after batch norm, if any).
    pub z: &'a [f32],
    /// Activations, before dropout.
    pub a: &'a [f32],
    /// The dropout mask: 0 for dropped units, `1 / (1 - rate)` for kept ones.
    pub mask: &'a [f32],
    /// What the next layer sees: `a ⊙ mask` with dropout, else `a`.
    pub output: &'a [f32],
}

/// Trains a network in place: model.train() in PyTorch's terms (batch statistics, dropout
/// on). Use [`Trainer::model`] for eval-mode inference with the current parameters.
///
/// # The bias of a batch-norm layer never trains
///
/// Batch norm subtracts the batch mean right after the dense product, so the dense bias of a
/// batch-norm layer has no effect on the training loss and its true gradient is exactly 0.
/// Backward writes exactly 0.0 there, whatever [`Kernels`] implementation ran the product
/// (the kernel's sum over the batch is rounding noise, 1e-10 to 1e-8, whose sign depends on
/// the summation order, and Adam's first step `lr·g/(|g| + ε)` would turn it into a move of
/// about ±lr that differs between kernels). It is PyTorch's `Linear(bias=False)` before
/// `BatchNorm1d`, except that the bias keeps its place in the flat layout, so model files
/// do not change and old ones load as they are (in eval mode the bias is still added; the
/// running mean, measured with it, takes it back out). [`init::initialize`](crate::init::initialize)
/// sets it to 0 and there it stays. Weight decay still applies to it: a nonzero bias
/// (from an older model) decays toward 0 (`g = 0 + wd·θ`, or AdamW's decoupled decay), the
/// same on every path.
#[derive(Debug)]
pub struct Trainer<'a> {
    topology: &'a Topology,
    buf: TrainBuffers<'a>,
    config: TrainConfig,
    /// Samples in the last training forward pass (0: none yet).
    batch: usize,
    /// Optimizer updates done so far.
    steps: u64,
    /// Set during [`Trainer::step_fake_quant`] only: the forward and backward fake-quantize.
    fake_quant: Option<FakeQuant>,
}

impl<'a> Trainer<'a> {
    /// Checks every buffer length and the config ([`TrainConfig::validate`]).
    pub fn new(
        topology: &'a Topology,
        config: TrainConfig,
        buffers: TrainBuffers<'a>,
    ) -> Result<Self, Error> {
        let n = topology.param_len();
        check_len(Buffer::Params, n, buffers.params.len())?;
        check_len(Buffer::Grads, n, buffers.grads.len())?;
        check_len(Buffer::Running, topology.running_len(), buffers.running.len())?;
        check_len(Buffer::OptimizerState, config.optimizer.state_len(n), buffers.optimizer_state.len())?;
        config.validate(topology)?;
        let need = topology.train_workspace_len(config.max_batch);
        if buffers.workspace.len() < need {
            return Err(Error::BufferLength {
                buffer: Buffer::Workspace,
                expected: need,
                actual: buffers.workspace.len(),
            });
        }
        Ok(Trainer { topology, buf: buffers, config, batch: 0, steps: 0, fake_quant: None })
    }

    /// The topology being trained.
    pub fn topology(&self) -> &'a Topology {
        self.topology
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The parameters.
    pub fn params(&self) -> &[f32] {
        self.buf.params
    }

    /// The gradients of the last backward pass.
    pub fn grads(&self) -> &[f32] {
        self.buf.grads
    }

    /// The batch-norm running statistics.
    pub fn running(&self) -> &[f32] {
        self.buf.running
    }

    /// The optimizer state.
    pub fn optimizer_state(&self) -> &[f32] {
        self.buf.optimizer_state
    }

    /// Optimizer updates done so far (Adam's `t` is this plus one at the next update).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Sets the update counter, when resuming from a checkpoint.
    pub fn set_steps(&mut self, steps: u64) {
        self.steps = steps;
    }

    /// An eval-mode view of the current parameters (model.eval()).
    pub fn model(&self) -> Model<'_> {
        // Lengths were checked in `new`.
        Model::from_checked(self.topology, self.buf.params, self.buf.running)
    }

    /// Forward pass in training mode on `batch` samples (`input`: `batch × input width`):
    /// batch norm uses and updates batch statistics, dropout draws its masks from `rng`
    /// (one [`dropout_keeps`] per unit, in the order that function documents).
    /// Returns the outputs and keeps what [`backward`](Self::backward) needs.
    pub fn forward<K: Kernels + ?Sized>(
        &mut self,
        kernels: &K,
        input: &[f32],
        batch: usize,
        rng: &mut Rng,
    ) -> Result<&[f32], Error> {
        let t = self.topology;
        self.batch = 0;
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        if batch > self.config.max_batch {
            return Err(Error::BatchTooLarge { batch, max: self.config.max_batch });
        }
        if batch < 2 && t.has_batch_norm() {
            return Err(Error::BatchNormNeedsTwoSamples);
        }
        check_len(Buffer::Input, batch.saturating_mul(t.input()), input.len())?;
        let max_batch = self.config.max_batch;
        let (fake_quant, last) = (self.fake_quant, t.layers().len() - 1);
        for (i, layer) in t.layers().iter().enumerate() {
            let (Some(p), Some(r)) = (t.param_ranges(i), saved_ranges(t, max_batch, i)) else {
                break;
            };
            let n = layer.outputs;
            let len = batch * n;
            // Maxout: k affine rows per unit, so z is k times as long as a.
            let shape = Shape { batch, inputs: t.fan_in(i), outputs: layer.rows() };
            let (before, here) = self.buf.workspace.split_at_mut(r.z.start);
            let Some(x) = layer_input(t, max_batch, i, batch, input, before) else { break };
            let (mut here, after) = here.split_at_mut((r.end - r.z.start).min(here.len()));
            let z = &mut take(&mut here, r.z.len())[..batch * shape.outputs];
            let a = &mut take(&mut here, r.a.len())[..len];
            let params = &*self.buf.params;
            if let (Some((g, b)), Some((m, v))) = (p.batch_norm, t.running_ranges(i)) {
                let x_hat = &mut take(&mut here, r.x_hat.len())[..len];
                let stats = take(&mut here, r.stats.len());
                let (mean, inv_std) = stats.split_at_mut(n);
                kernels.dense_forward(shape, x, &params[p.weights], &params[p.bias], x_hat);
                let (rm, rv) = self.buf.running[m.start..v.end].split_at_mut(n);
                batchnorm::forward_train(n, x_hat, &params[g], &params[b], z, mean, inv_std, rm, rv);
                activation::forward(layer.activation, n, z, a);
            } else if let Some(fq) = &fake_quant {
                kernels.dense_forward(shape, x, &params[p.weights], &params[p.bias], z);
                if i == last {
                    // The output layer ends the layers, so `after` is the delta buffers; the
                    // second keeps the raw logits for the STE mask until backward.
                    let width = layout::max_width(t.layers()) * max_batch;
                    let raw = after.get_mut(width..width + len).unwrap_or_default();
                    fq.forward_logits(i, z, raw);
                    activation::forward(layer.activation, n, z, a);
                } else {
                    fq.forward_hidden(i, layer.activation, z, a);
                }
            } else if layer.activation.pieces() > 1 {
                // Maxout is not a kernel's fused activation: product, then the max.
                kernels.dense_forward(shape, x, &params[p.weights], &params[p.bias], z);
                activation::forward(layer.activation, n, z, a);
            } else {
                let (w, b) = (&params[p.weights], &params[p.bias]);
                kernels.dense_forward_activation(shape, x, w, b, layer.activation, z, a);
            }
            if layer.has_dropout() {
                let mask = &mut take(&mut here, r.mask.len())[..len];
                let out = &mut take(&mut here, r.output.len())[..len];
                let keep = 1.0 - layer.dropout;
                let scale = 1.0 / keep;
                for ((m, o), &a) in mask.iter_mut().zip(out.iter_mut()).zip(a.iter()) {
                    *m = if dropout_keeps(rng, layer.dropout) { scale } else { 0.0 };
                    *o = a * *m;
                }
            }
        }
        self.batch = batch;
        self.outputs()
    }

    /// The outputs of the last training forward pass.
    fn outputs(&self) -> Result<&[f32], Error> {
        let last = self.topology.layers().len() - 1;
        self.layer_activations(last).map(|l| l.output).ok_or(Error::NoForwardPass)
    }

    /// What the last training forward pass saved for layer `i` (`None` before any forward
    /// pass or past the last layer).
    pub fn layer_activations(&self, i: usize) -> Option<LayerActivations<'_>> {
        if self.batch == 0 {
            return None;
        }
        let r = saved_ranges(self.topology, self.config.max_batch, i)?;
        let layer = &self.topology.layers()[i];
        let len = self.batch * layer.outputs;
        let ws = &*self.buf.workspace;
        Some(LayerActivations {
            z: &ws[r.z][..self.batch * layer.rows()],
            a: &ws[r.a][..len],
            mask: if r.mask.is_empty() { &[] } else { &ws[r.mask][..len] },
            output: &ws[r.output][..len],
        })
    }

    /// Backward from the loss: computes the mean loss of the last forward pass against
    /// `targets` and writes the gradient of every parameter into the gradient buffer (the
    /// dense bias of a batch-norm layer gets exactly 0: see [`Trainer`]).
    /// `input` must be the batch given to [`forward`](Self::forward).
    pub fn backward<K: Kernels + ?Sized>(
        &mut self,
        kernels: &K,
        input: &[f32],
        targets: Targets<'_>,
    ) -> Result<f32, Error> {
        let t = self.topology;
        let (batch, n) = (self.batch, t.output());
        if batch == 0 {
            return Err(Error::NoForwardPass);
        }
        let last = t.layers().len() - 1;
        let r = saved_ranges(t, self.config.max_batch, last).ok_or(Error::NoForwardPass)?;
        let (layers, deltas) = self.buf.workspace.split_at_mut(r.end);
        let (z, a) = (&layers[r.z][..batch * n], &layers[r.a][..batch * n]);
        let loss = self.config.loss.loss_and_grad(
            t.output_layer().activation,
            n,
            z,
            a,
            targets,
            &mut deltas[..batch * n],
        )?;
        if !loss.is_finite() {
            return Err(Error::NonFinite { what: "the loss" });
        }
        if let Some(fq) = &self.fake_quant {
            let width = layout::max_width(t.layers()) * self.config.max_batch;
            let (d, raw) = deltas.split_at_mut(width);
            fq.mask_logits(last, raw.get(..batch * n).unwrap_or_default(), &mut d[..batch * n]);
        }
        self.backpropagate(kernels, input)?;
        Ok(loss)
    }

    /// Backward from a custom loss: `d_output` is ∂L/∂(outputs of the last forward pass),
    /// `batch × outputs`. Writes every parameter's gradient. `input` must be the batch given
    /// to [`forward`](Self::forward).
    pub fn backward_from_output_grad<K: Kernels + ?Sized>(
        &mut self,
        kernels: &K,
        input: &[f32],
        d_output: &[f32],
    ) -> Result<(), Error> {
        let t = self.topology;
        let (batch, n) = (self.batch, t.output());
        if batch == 0 {
            return Err(Error::NoForwardPass);
        }
        check_len(Buffer::OutputGrad, batch * n, d_output.len())?;
        if d_output.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "the output gradient" });
        }
        let last = t.layers().len() - 1;
        let r = saved_ranges(t, self.config.max_batch, last).ok_or(Error::NoForwardPass)?;
        let (layers, deltas) = self.buf.workspace.split_at_mut(r.end);
        let d = &mut deltas[..batch * n];
        d.copy_from_slice(d_output);
        activation::backward_in_place(
            t.output_layer().activation,
            n,
            &layers[r.z][..batch * n],
            &layers[r.a][..batch * n],
            d,
        );
        self.backpropagate(kernels, input)
    }

    /// Propagates ∂L/∂z of the output layer (in the first delta buffer) back through every
    /// layer into the gradient buffer.
    fn backpropagate<K: Kernels + ?Sized>(&mut self, kernels: &K, input: &[f32]) -> Result<(), Error> {
        let t = self.topology;
        let batch = self.batch;
        check_len(Buffer::Input, batch.saturating_mul(t.input()), input.len())?;
        let max_batch = self.config.max_batch;
        let layers_end = saved_ranges(t, max_batch, t.layers().len() - 1).map_or(0, |r| r.end);
        let (saved, deltas) = self.buf.workspace.split_at_mut(layers_end);
        let saved = &*saved;
        let width = layout::max_width(t.layers()) * max_batch;
        let (mut d, mut d_next) = deltas[..2 * width].split_at_mut(width);
        let params = &*self.buf.params;
        let fake_quant = self.fake_quant;
        for i in (0..t.layers().len()).rev() {
            let layer = &t.layers()[i];
            let (Some(p), Some(r)) = (t.param_ranges(i), saved_ranges(t, max_batch, i)) else {
                break;
            };
            let n = layer.outputs;
            let shape = Shape { batch, inputs: t.fan_in(i), outputs: layer.rows() };
            let dz = &mut d[..batch * shape.outputs];
            let (grads_w, grads_rest) =
                self.buf.grads[p.weights.start..p.end()].split_at_mut(p.weights.len());
            let (grads_b, grads_bn) = grads_rest.split_at_mut(p.bias.len());
            let batch_norm = p.batch_norm.is_some();
            if let Some((g, _)) = p.batch_norm {
                let (dgamma, dbeta) = grads_bn.split_at_mut(n);
                let (_, inv_std) = saved[r.stats].split_at(n);
                batchnorm::backward(n, dz, &saved[r.x_hat][..batch * n], inv_std, &params[g], dgamma, dbeta);
            }
            let Some(x) = layer_input(t, max_batch, i, batch, input, saved) else { break };
            kernels.dense_backward_params(shape, x, dz, grads_w, grads_b);
            if batch_norm {
                // Batch norm subtracts the batch mean, so this bias's true gradient is 0; the
                // kernel's sum of dz is rounding noise that Adam would turn into ±lr steps
                // depending on the summation order. Exactly 0, on every kernel.
                grads_b.fill(0.0);
            }
            if i > 0 {
                let Some(prev) = saved_ranges(t, max_batch, i - 1) else {
                    break;
                };
                let prev_layer: &LayerSpec = &t.layers()[i - 1];
                let m = batch * shape.inputs;
                // Maxout: ∂L/∂a (m values) is spread over the k·m pre-activations in place.
                let dx = &mut d_next[..batch * prev_layer.rows()];
                let (act, z, a) = (prev_layer.activation, &saved[prev.z][..dx.len()], &saved[prev.a][..m]);
                if let Some(fq) = &fake_quant {
                    // Fake quantization refuses maxout (FakeQuant::check_topology).
                    let dx = &mut dx[..m];
                    kernels.dense_backward_input(shape, dz, &params[p.weights], dx);
                    for (g, &mask) in dx.iter_mut().zip(&saved[prev.mask]) {
                        *g *= mask;
                    }
                    fq.backward_hidden(i - 1, act, &z[..m], dx);
                } else if prev_layer.has_dropout() || act.pieces() > 1 {
                    // The mask comes between the product and the derivative, and maxout is
                    // not a kernel's fused activation: no fusing.
                    kernels.dense_backward_input(shape, dz, &params[p.weights], &mut dx[..m]);
                    for (g, &mask) in dx[..m].iter_mut().zip(&saved[prev.mask]) {
                        *g *= mask;
                    }
                    activation::backward_in_place(act, shape.inputs, z, a, dx);
                } else {
                    kernels.dense_backward_input_activation(shape, dz, &params[p.weights], act, z, a, dx);
                }
                core::mem::swap(&mut d, &mut d_next);
            }
        }
        Ok(())
    }

    /// Applies one optimizer update with learning rate `lr` (clipping first, if configured).
    /// Returns the gradient norm before clipping when clipping is on.
    pub fn update(&mut self, lr: f32) -> Result<Option<f32>, Error> {
        self.update_with(&Portable, lr)
    }

    /// [`Trainer::update`], with the optimizer's elementwise pass run through `kernels`
    /// ([`Kernels::update_params`]; the same result on every implementation).
    pub fn update_with<K: Kernels + ?Sized>(&mut self, kernels: &K, lr: f32) -> Result<Option<f32>, Error> {
        let norm = match self.config.grad_clip {
            Some(max) => Some(clip_grad_norm(self.buf.grads, max)?),
            None => None,
        };
        self.config.optimizer.update_with(
            kernels,
            self.buf.params,
            self.buf.grads,
            self.buf.optimizer_state,
            self.steps + 1,
            lr,
        )?;
        self.steps += 1;
        Ok(norm)
    }

    /// Applies the max-norm constraint [`crate::optim::max_norm`] with bound `c` to the
    /// parameters being trained (call it after [`Trainer::step`] or [`Trainer::update`]).
    /// Returns how many rows were rescaled.
    pub fn apply_max_norm(&mut self, c: f32) -> Result<usize, Error> {
        crate::optim::max_norm(self.topology, self.buf.params, c)
    }

    /// One minibatch step: forward (train mode), loss, backward, update. `input` holds
    /// `targets`' batch of samples row by row. Statistics describe the batch before the
    /// update. A NaN or infinite loss is an error and leaves the parameters untouched.
    pub fn step<K: Kernels + ?Sized>(
        &mut self,
        kernels: &K,
        input: &[f32],
        targets: Targets<'_>,
        lr: f32,
        rng: &mut Rng,
    ) -> Result<StepStats, Error> {
        let t = self.topology;
        let batch = match targets {
            Targets::Labels(l) => l.len(),
            Targets::Dense(d) => d.len() / t.output(),
        };
        validate_targets(targets, batch, t.output())?;
        self.forward(kernels, input, batch, rng)?;
        let threshold = self.config.loss.accuracy_threshold(t.output_layer().activation);
        let correct = count_correct(self.outputs()?, t.output(), targets, threshold);
        let loss = self.backward(kernels, input, targets)?;
        let grad_norm = self.update_with(kernels, lr)?;
        Ok(StepStats { loss, correct, batch, grad_norm })
    }
}

impl Trainer<'_> {
    /// One quantization-aware training step ([`int8::FakeQuant`](crate::int8::FakeQuant)):
    /// fake-quantizes `input` in place (the input range), runs forward and backward with
    /// per-channel fake-quantized weights and the activations rounded to `fq`, the gradient
    /// passing straight through (zero where an activation was clamped), then updates the f32
    /// master weights. `masters` (`param_len`) holds the masters during the pass; the
    /// parameters are the masters again when this returns, also on error.
    #[allow(clippy::too_many_arguments)]
    pub fn step_fake_quant<K: Kernels + ?Sized>(
        &mut self,
        kernels: &K,
        input: &mut [f32],
        targets: Targets<'_>,
        lr: f32,
        rng: &mut Rng,
        fq: &FakeQuant,
        masters: &mut [f32],
    ) -> Result<StepStats, Error> {
        let t = self.topology;
        FakeQuant::check_topology(t)?;
        check_len(Buffer::Params, t.param_len(), masters.len())?;
        let batch = match targets {
            Targets::Labels(l) => l.len(),
            Targets::Dense(d) => d.len() / t.output(),
        };
        validate_targets(targets, batch, t.output())?;
        fq.quantize_input(input);
        masters.copy_from_slice(self.buf.params);
        fake_quantize_weights(t, self.buf.params)?;
        self.fake_quant = Some(*fq);
        let pass = self.forward_backward(kernels, input, batch, targets, rng);
        self.fake_quant = None;
        self.buf.params.copy_from_slice(masters);
        let (loss, correct) = pass?;
        let grad_norm = self.update_with(kernels, lr)?;
        Ok(StepStats { loss, correct, batch, grad_norm })
    }

    /// Forward, accuracy and backward of one step: the loss and the correct count.
    fn forward_backward<K: Kernels + ?Sized>(
        &mut self,
        kernels: &K,
        input: &[f32],
        batch: usize,
        targets: Targets<'_>,
        rng: &mut Rng,
    ) -> Result<(f32, usize), Error> {
        let t = self.topology;
        self.forward(kernels, input, batch, rng)?;
        let threshold = self.config.loss.accuracy_threshold(t.output_layer().activation);
        let correct = count_correct(self.outputs()?, t.output(), targets, threshold);
        let loss = self.backward(kernels, input, targets)?;
        Ok((loss, correct))
    }
}

/// Whether inverted dropout at `rate` keeps a unit: one uniform draw from `rng`, kept when
/// it is `>= rate` (so rate 0 keeps every unit). A kept unit is scaled by `1 / (1 - rate)`,
/// a dropped one is 0.
///
/// The drawing order, which any path that wants [`Trainer`]'s masks from the same seed must
/// follow (the GPU path draws its masks on the host this way): one draw per unit, nothing
/// else drawn in between; per [`Trainer::forward`] call (one per [`Trainer::step`]), the
/// dropout layers in layer order (layers without dropout draw nothing), and within a layer
/// the `batch × outputs` units row-major (sample by sample, each sample's units in order).
/// Nothing else in a training step draws from `rng`.
pub fn dropout_keeps(rng: &mut Rng, rate: f32) -> bool {
    rng.uniform() >= rate
}

/// Where one layer's saved tensors sit in the training workspace (sized for `max_batch`).
#[derive(Clone, Debug)]
struct SavedRanges {
    z: Range<usize>,
    a: Range<usize>,
    x_hat: Range<usize>,
    /// Batch mean then 1/std, `n` each.
    stats: Range<usize>,
    mask: Range<usize>,
    /// The layer's output as the next layer sees it: `a`, or the dropout output.
    output: Range<usize>,
    end: usize,
}

/// The ranges of layer `i`, in the order `layout::train_layer_len` counts them: z, a,
/// [x_hat, mean, inv_std], [mask, dropout output].
fn saved_ranges(t: &Topology, max_batch: usize, i: usize) -> Option<SavedRanges> {
    let layers = t.layers();
    let layer = layers.get(i)?;
    let start: usize = layers[..i].iter().map(|l| layout::train_layer_len(l, max_batch)).sum();
    let full = layer.outputs * max_batch;
    let mut next = start;
    let mut range = |len: usize| {
        let r = next..next + len;
        next += len;
        r
    };
    let z = range(layer.rows() * max_batch);
    let a = range(full);
    let (x_hat, stats) =
        if layer.batch_norm { (range(full), range(2 * layer.outputs)) } else { (range(0), range(0)) };
    let (mask, output) = if layer.has_dropout() { (range(full), range(full)) } else { (range(0), a.clone()) };
    Some(SavedRanges { z, a, x_hat, stats, mask, output, end: next })
}

/// What layer `i` reads: the batch `input` for the first layer, else the previous layer's
/// output as saved in the training workspace `saved`.
fn layer_input<'a>(
    t: &Topology,
    max_batch: usize,
    i: usize,
    batch: usize,
    input: &'a [f32],
    saved: &'a [f32],
) -> Option<&'a [f32]> {
    if i == 0 {
        return Some(input);
    }
    let prev = saved_ranges(t, max_batch, i - 1)?;
    saved.get(prev.output)?.get(..batch * t.fan_in(i))
}

/// Splits the first `n` elements off `buf` (fewer if it is shorter: never panics).
fn take<'b>(buf: &mut &'b mut [f32], n: usize) -> &'b mut [f32] {
    let whole = core::mem::take(buf);
    let (head, tail) = whole.split_at_mut(n.min(whole.len()));
    *buf = tail;
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Activation;

    const LAYERS: [LayerSpec; 3] = [
        LayerSpec::dense(4, Activation::Tanh).with_dropout(0.5),
        LayerSpec::dense(5, Activation::Relu).with_batch_norm().with_dropout(0.25),
        LayerSpec::dense(2, Activation::Softmax),
    ];
    const P: usize = layout::param_len(3, &LAYERS);
    const BATCH: usize = 3;

    #[test]
    fn config_validation_is_what_the_trainer_checks() {
        let t = Topology::new(3, &LAYERS).unwrap();
        let good = TrainConfig {
            grad_clip: Some(1.0),
            ..TrainConfig::new(Loss::CrossEntropy, Optimizer::adam(), 4)
        };
        assert_eq!(good.validate(&t), Ok(()));
        let bad = [
            (TrainConfig { max_batch: 0, ..good }, Error::EmptyBatch),
            (
                TrainConfig { loss: Loss::BinaryCrossEntropy, ..good },
                Error::LossActivationMismatch {
                    loss: "binary cross-entropy",
                    activation: "softmax",
                    expected: "sigmoid or identity",
                },
            ),
            (
                TrainConfig { optimizer: Optimizer::momentum(1.0), ..good },
                Error::InvalidHyperparameter { name: "momentum", value: 1.0 },
            ),
            (
                TrainConfig { grad_clip: Some(0.0), ..good },
                Error::InvalidHyperparameter { name: "max gradient norm", value: 0.0 },
            ),
            (
                TrainConfig { grad_clip: Some(f32::INFINITY), ..good },
                Error::InvalidHyperparameter { name: "max gradient norm", value: f32::INFINITY },
            ),
        ];
        for (config, error) in bad {
            assert_eq!(config.validate(&t), Err(error), "{config:?}");
            // Trainer::new rejects it with the same error (its buffers fit the valid config).
            let (mut params, mut grads, mut running) = ([0.0; P], [0.0; P], [0.0; 10]);
            let mut state = [0.0; 2 * P];
            let mut ws = [0.0; layout::train_workspace_len(&LAYERS, 4)];
            let bufs = TrainBuffers {
                params: &mut params,
                grads: &mut grads,
                running: &mut running,
                optimizer_state: &mut state[..config.optimizer.state_len(P)],
                workspace: &mut ws,
            };
            assert_eq!(Trainer::new(&t, config, bufs).err(), Some(error));
        }
        // A NaN clipping norm too (NaN != NaN, so not in the table above).
        let nan = TrainConfig { grad_clip: Some(f32::NAN), ..good };
        assert!(matches!(
            nan.validate(&t),
            Err(Error::InvalidHyperparameter { name: "max gradient norm", .. })
        ));
    }

    #[test]
    fn dropout_keeps_a_unit_when_its_uniform_is_at_least_the_rate() {
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        for _ in 0..1000 {
            assert_eq!(dropout_keeps(&mut a, 0.3), b.uniform() >= 0.3);
        }
        let mut rng = Rng::new(1);
        assert!((0..1000).all(|_| dropout_keeps(&mut rng, 0.0)));
        // One draw per call, whatever the answer.
        let (mut a, mut b) = (Rng::new(2), Rng::new(2));
        dropout_keeps(&mut a, 0.9);
        b.uniform();
        assert_eq!(a, b);
    }

    /// The masks of a training forward pass are `dropout_keeps` draws in the documented order:
    /// dropout layers in layer order, each `batch × outputs` row-major, nothing in between.
    #[test]
    fn trainer_draws_dropout_masks_in_the_documented_order() {
        let t = Topology::new(3, &LAYERS).unwrap();
        let opt = Optimizer::sgd();
        let (mut params, mut grads, mut running) = ([0.0; P], [0.0; P], [0.0; 10]);
        for (i, p) in params.iter_mut().enumerate() {
            *p = (i % 7) as f32 * 0.1 - 0.3;
        }
        t.reset_running(&mut running).unwrap();
        let mut ws = [0.0; layout::train_workspace_len(&LAYERS, BATCH)];
        let mut trainer = Trainer::new(
            &t,
            TrainConfig::new(Loss::CrossEntropy, opt, BATCH),
            TrainBuffers {
                params: &mut params,
                grads: &mut grads,
                running: &mut running,
                optimizer_state: &mut [],
                workspace: &mut ws,
            },
        )
        .unwrap();
        let x = [0.5, -1.0, 0.25, 1.0, 0.0, -0.5, 2.0, 1.5, -2.0];
        let mut rng = Rng::new(7);
        let mut expected = rng.clone();
        for _pass in 0..2 {
            trainer.forward(&Portable, &x, BATCH, &mut rng).unwrap();
            for (i, layer) in LAYERS.iter().enumerate() {
                let mask = trainer.layer_activations(i).unwrap().mask;
                let rate = layer.dropout;
                assert_eq!(mask.len(), if layer.has_dropout() { BATCH * layer.outputs } else { 0 });
                for &m in mask {
                    assert_eq!(m, if dropout_keeps(&mut expected, rate) { 1.0 / (1.0 - rate) } else { 0.0 });
                }
            }
            assert_eq!(rng, expected, "the forward pass drew exactly one uniform per unit");
        }
    }
}
