//! The training step, epoch and evaluation on the device.
//!
//! The module root holds the trainer, its construction and the step and epoch loops; the
//! child modules hold the kernel codes (`codes`), the cuBLAS products (`products`), the
//! step's launches and graph capture (`step`), evaluation (`evaluate`) and read-back
//! (`readback`).

mod codes;
mod evaluate;
mod products;
mod readback;
mod step;

use std::fmt;

use mlp::{Error as CoreError, Rng, StepStats, Topology, TrainConfig};

use crate::backend::Graph;
use crate::dataset::DeviceDataset;
use crate::device::Gpu;
use crate::memory::{DevBuf, Elem};
use crate::GpuError;
use codes::act_code;
pub(crate) use codes::hyper;
#[cfg(test)]
pub(crate) use codes::optimizer_code;

/// Floats of per-step hyperparameters (kernels.cu's HP_STRIDE): lr, lr / (1 - β₁ᵗ),
/// √(1 - β₂ᵗ), unused.
const HP_STRIDE: usize = 4;
/// Blocks of the gradient-norm reduction (kernels.cu's sum_squares).
const NORM_BLOCKS: usize = 256;

/// Where training starts: parameters, running statistics and optimizer state in core's flat
/// layout, and the number of updates already done (for Adam's bias corrections).
#[derive(Clone, Copy, Debug)]
pub struct Start<'a> {
    /// `topology.param_len()` parameters.
    pub params: &'a [f32],
    /// `topology.running_len()` batch-norm running statistics.
    pub running: &'a [f32],
    /// `optimizer.state_len(param_len)` values.
    pub optimizer_state: &'a [f32],
    /// Updates already done.
    pub steps: u64,
}

/// Loss and accuracy of an epoch, summed as the CPU loop sums them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// Σ over batches of (mean batch loss × batch size), in f64.
    pub loss_sum: f64,
    /// Correct predictions (train mode, before each update).
    pub correct: usize,
    /// Samples trained on.
    pub samples: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Whether the full-batch steps ran as a replayed CUDA graph.
    pub graph: bool,
}

/// Eval-mode loss and accuracy of a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalStats {
    /// Mean loss per sample (as `mlp::Loss::value_from_outputs`, averaged over chunks
    /// weighted by their size like host's evaluation).
    pub loss: f64,
    /// Correctly classified samples.
    pub correct: usize,
    /// Samples evaluated.
    pub samples: usize,
}

/// One layer's device buffers and where its parameters sit in the flat buffers.
struct LayerDev {
    fan_in: usize,
    outputs: usize,
    act: i32,
    alpha: f32,
    /// Offsets (in floats) of W, b and (batch norm) γ, β in the parameter buffer.
    w: usize,
    b: usize,
    bn: Option<(usize, usize)>,
    /// Offsets of the running mean and variance in the running-statistics buffer.
    running: Option<(usize, usize)>,
    /// Dropout: rate, 1 / (1 - rate), offset of this layer's bits in a step's mask words.
    dropout: Option<(f32, f32, usize)>,
    /// Pre-activation z and activation a (`max_batch × outputs`).
    z: DevBuf<f32>,
    a: DevBuf<f32>,
    /// Dropout output a ⊙ mask.
    out: Option<DevBuf<f32>>,
    /// Batch norm: x̂ (the product lands here first) and mean, 1/std (`2 × outputs`).
    x_hat: Option<DevBuf<f32>>,
    stats: Option<DevBuf<f32>>,
}

/// Per-step arrays, indexed by the device step counter.
struct PerStep {
    capacity: usize,
    hyper: DevBuf<f32>,
    loss: DevBuf<f32>,
    correct: DevBuf<u32>,
    norm: DevBuf<f32>,
    masks: DevBuf<u32>,
}

/// Buffers of eval-mode inference in chunks.
struct EvalBufs {
    chunk: usize,
    x: DevBuf<f32>,
    labels: DevBuf<u32>,
    ping: DevBuf<f32>,
    pong: DevBuf<f32>,
    row_loss: DevBuf<f32>,
    row_correct: DevBuf<u32>,
    chunks: usize,
    chunk_loss: DevBuf<f32>,
    chunk_correct: DevBuf<u32>,
}

/// Trains a topology on the device, like `mlp::Trainer` with the same configuration: the
/// same forward (train mode: batch statistics, dropout), loss, backward, clipping and
/// optimizer formulas, on parameters in core's flat layout.
pub struct GpuTrainer {
    gpu: Gpu,
    topology: Topology,
    config: TrainConfig,
    layers: Vec<LayerDev>,
    param_len: usize,
    state_len: usize,
    running_len: usize,
    params: DevBuf<f32>,
    grads: DevBuf<f32>,
    state: DevBuf<f32>,
    running: DevBuf<f32>,
    scale: DevBuf<f32>,
    offset: DevBuf<f32>,
    x: DevBuf<f32>,
    labels: DevBuf<u32>,
    d0: DevBuf<f32>,
    d1: DevBuf<f32>,
    row_loss: DevBuf<f32>,
    row_correct: DevBuf<u32>,
    ones: DevBuf<f32>,
    ctr: DevBuf<i32>,
    zero: DevBuf<i32>,
    diverged: DevBuf<i32>,
    partials: DevBuf<f32>,
    coef: DevBuf<f32>,
    per_step: PerStep,
    mask_step_words: usize,
    order: DevBuf<u32>,
    order_capacity: usize,
    eval: Option<EvalBufs>,
    graph: Option<((u64, usize), Graph)>,
    use_graphs: bool,
    graph_error: Option<String>,
    steps: u64,
    mask_host: Vec<u32>,
}

impl fmt::Debug for GpuTrainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuTrainer")
            .field("gpu", &self.gpu)
            .field("layers", &self.topology.layers())
            .field("config", &self.config)
            .field("steps", &self.steps)
            .field("graphs", &self.use_graphs)
            .finish()
    }
}

const F32: u64 = std::mem::size_of::<f32>() as u64;

impl GpuTrainer {
    /// A trainer for `topology` with `config` (the same checks as `mlp::Trainer::new`),
    /// starting from `start`; `input_scale` and `input_offset` (one per input feature) turn
    /// stored values into network inputs: `x = raw · scale + offset`.
    pub fn new(
        gpu: &Gpu,
        topology: &Topology,
        config: TrainConfig,
        start: Start<'_>,
        input_scale: &[f32],
        input_offset: &[f32],
    ) -> Result<Self, GpuError> {
        let param_len = topology.param_len();
        let state_len = config.optimizer.state_len(param_len);
        let running_len = topology.running_len();
        let check = |buffer, expected: usize, actual: usize| {
            if expected == actual {
                Ok(())
            } else {
                Err(GpuError::Core(CoreError::BufferLength { buffer, expected, actual }))
            }
        };
        check(mlp::Buffer::Params, param_len, start.params.len())?;
        check(mlp::Buffer::Running, running_len, start.running.len())?;
        check(mlp::Buffer::OptimizerState, state_len, start.optimizer_state.len())?;
        config.validate(topology)?;
        // The kernels have no maxout (k rows per unit, a max and an arg-max backward) yet.
        if let Some(i) =
            topology.layers().iter().position(|l| matches!(l.activation, mlp::Activation::Maxout(_)))
        {
            return Err(GpuError::Invalid(format!(
                "layer {i} is maxout, which the GPU kernels do not implement yet: train it on the CPU"
            )));
        }
        if codes::optimizer_code(config.optimizer).0 > codes::LAST_DEVICE_OPTIMIZER {
            return Err(GpuError::Invalid(format!(
                "the {} optimizer is not implemented on the GPU path yet: train it with --device cpu",
                config.optimizer.name()
            )));
        }
        let input = topology.input();
        if input_scale.len() != input || input_offset.len() != input {
            return Err(GpuError::Invalid(format!(
                "the input pipeline has {} scales and {} offsets for {input} inputs",
                input_scale.len(),
                input_offset.len()
            )));
        }
        let max_batch = config.max_batch;
        let max_width = topology.layers().iter().map(|l| l.outputs).max().unwrap_or(1).max(input);
        let fits = |n: usize| n <= i32::MAX as usize / 2;
        if !(fits(param_len)
            && fits(state_len)
            && max_batch.checked_mul(max_width).is_some_and(fits)
            && max_batch <= u32::MAX as usize / 4)
        {
            return Err(GpuError::Invalid(format!(
                "model or batch too large for the GPU kernels' 32-bit indices ({param_len} parameters, \
                 batch {max_batch} x width {max_width})"
            )));
        }
        let alloc = |len: usize| gpu.zeros::<f32>(len);
        let upload = |v: &[f32]| gpu.upload(v);
        let mut layers = Vec::with_capacity(topology.layers().len());
        let mut mask_words = 0usize;
        for (i, l) in topology.layers().iter().enumerate() {
            let r = topology.param_ranges(i).ok_or(CoreError::NoLayers)?;
            let (act, alpha) = act_code(l.activation);
            let len = max_batch * l.outputs;
            let dropout = if l.has_dropout() {
                let keep = 1.0 - l.dropout;
                let d = (l.dropout, 1.0 / keep, mask_words);
                mask_words += len.div_ceil(32);
                Some(d)
            } else {
                None
            };
            layers.push(LayerDev {
                fan_in: topology.fan_in(i),
                outputs: l.outputs,
                act,
                alpha,
                w: r.weights.start,
                b: r.bias.start,
                bn: r.batch_norm.map(|(g, b)| (g.start, b.start)),
                running: topology.running_ranges(i).map(|(m, v)| (m.start, v.start)),
                dropout,
                z: alloc(len)?,
                a: alloc(len)?,
                out: if l.has_dropout() { Some(alloc(len)?) } else { None },
                x_hat: if l.batch_norm { Some(alloc(len)?) } else { None },
                stats: if l.batch_norm { Some(alloc(2 * l.outputs)?) } else { None },
            });
        }
        let zeros_i32 = |len: usize| gpu.zeros::<i32>(len);
        let zeros_u32 = |len: usize| gpu.zeros::<u32>(len);
        let ones = gpu.upload(&vec![1.0f32; max_batch])?;
        let per_step = PerStep {
            capacity: 1,
            hyper: alloc(HP_STRIDE)?,
            loss: alloc(1)?,
            correct: zeros_u32(1)?,
            norm: alloc(1)?,
            masks: zeros_u32(mask_words)?,
        };
        let trainer = GpuTrainer {
            gpu: gpu.clone(),
            topology: topology.clone(),
            config,
            layers,
            param_len,
            state_len,
            running_len,
            params: upload(start.params)?,
            grads: alloc(param_len)?,
            state: upload(start.optimizer_state)?,
            running: upload(start.running)?,
            scale: upload(input_scale)?,
            offset: upload(input_offset)?,
            x: alloc(max_batch * input)?,
            labels: zeros_u32(max_batch)?,
            d0: alloc(max_batch * max_width)?,
            d1: alloc(max_batch * max_width)?,
            row_loss: alloc(max_batch)?,
            row_correct: zeros_u32(max_batch)?,
            ones,
            ctr: zeros_i32(1)?,
            zero: zeros_i32(1)?,
            diverged: zeros_i32(1)?,
            partials: alloc(NORM_BLOCKS)?,
            coef: alloc(1)?,
            per_step,
            mask_step_words: mask_words,
            order: zeros_u32(1)?,
            order_capacity: 1,
            eval: None,
            graph: None,
            use_graphs: std::env::var_os("MLP_GPU_NO_GRAPHS").is_none(),
            graph_error: None,
            steps: start.steps,
            mask_host: Vec::new(),
        };
        gpu.synchronize()?;
        Ok(trainer)
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The topology being trained.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Optimizer updates done so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Whether full-batch steps are captured into a CUDA graph and replayed (the default;
    /// the environment variable `MLP_GPU_NO_GRAPHS` turns it off).
    pub fn set_graphs(&mut self, on: bool) {
        self.use_graphs = on;
        self.graph = None;
    }

    /// Why graph capture failed and the trainer fell back to plain launches, if it did.
    pub fn graph_error(&self) -> Option<&str> {
        self.graph_error.as_deref()
    }

    fn ptr<T: Elem>(&self, s: &DevBuf<T>) -> u64 {
        self.gpu.addr(s)
    }

    fn opt_ptr<T: Elem>(&self, s: &Option<DevBuf<T>>) -> u64 {
        s.as_ref().map_or(0, |s| self.ptr(s))
    }

    fn check_data(&self, data: &DeviceDataset) -> Result<(), GpuError> {
        if data.device != self.gpu.id {
            return Err(GpuError::Invalid(format!(
                "the data set was uploaded to another device than this trainer's ({}): upload it with \
                 the trainer's Gpu",
                self.gpu.name()
            )));
        }
        if data.input_len != self.topology.input() {
            return Err(GpuError::Invalid(format!(
                "the data set has {} features per sample but the model takes {}",
                data.input_len,
                self.topology.input()
            )));
        }
        let width = self.topology.output();
        let classes = if width == 1 { 2 } else { width };
        if data.max_label as usize >= classes {
            return Err(GpuError::Invalid(format!(
                "the data set has label {} but the model has {classes} classes",
                data.max_label
            )));
        }
        Ok(())
    }

    /// Grows the per-step arrays to `steps` steps and the order buffer to `order` entries.
    fn ensure_capacity(&mut self, steps: usize, order: usize) -> Result<(), GpuError> {
        let g = &self.gpu;
        if steps > self.per_step.capacity {
            self.graph = None;
            self.per_step = PerStep {
                capacity: steps,
                hyper: g.zeros(steps * HP_STRIDE)?,
                loss: g.zeros(steps)?,
                correct: g.zeros(steps)?,
                norm: g.zeros(steps)?,
                masks: g.zeros(steps * self.mask_step_words)?,
            };
        }
        if order > self.order_capacity {
            self.graph = None;
            self.order = g.zeros(order)?;
            self.order_capacity = order;
        }
        Ok(())
    }

    /// Uploads a step's inputs: the sample order, per-step hyperparameters and dropout bits
    /// for `batches` (the batch sizes of the steps to come), and resets the step counter.
    fn prepare(
        &mut self,
        order: &[u32],
        batches: &[usize],
        lrs: &[f32],
        rng: &mut Rng,
    ) -> Result<(), GpuError> {
        let mut hp = Vec::with_capacity(batches.len() * HP_STRIDE);
        for (k, &lr) in lrs.iter().enumerate() {
            if !(lr.is_finite() && lr >= 0.0) {
                return Err(CoreError::InvalidHyperparameter { name: "learning rate", value: lr }.into());
            }
            hp.extend_from_slice(&hyper(self.config.optimizer, self.steps + 1 + k as u64, lr));
        }
        self.draw_masks(batches, rng);
        let g = &self.gpu;
        g.write(&mut self.order, order)?;
        g.write(&mut self.per_step.hyper, &hp)?;
        if self.mask_step_words > 0 {
            g.write(&mut self.per_step.masks, &self.mask_host)?;
        }
        g.write(&mut self.ctr, &[0i32])?;
        g.write(&mut self.diverged, &[0i32])?;
        Ok(())
    }

    /// Draws every step's dropout masks from `rng` with [`mlp::dropout_keeps`], in the order
    /// `mlp::Trainer::forward` draws them (per step, per dropout layer, `batch × outputs`
    /// units), as bits: 1 = kept.
    fn draw_masks(&mut self, batches: &[usize], rng: &mut Rng) {
        let words = self.mask_step_words;
        self.mask_host.clear();
        if words == 0 {
            return;
        }
        self.mask_host.resize(batches.len() * words, 0);
        for (step, &n) in self.mask_host.chunks_exact_mut(words).zip(batches) {
            for l in &self.layers {
                if let Some((rate, _, off)) = l.dropout {
                    let bits = &mut step[off..];
                    for i in 0..n * l.outputs {
                        if mlp::dropout_keeps(rng, rate) {
                            bits[i >> 5] |= 1 << (i & 31);
                        }
                    }
                }
            }
        }
    }

    /// One training step on the samples `indices` of `data` at learning rate `lr` (plain
    /// launches, no graph): forward in train mode, loss, backward, update, like
    /// `mlp::Trainer::step` on the same samples normalized by the input pipeline. Dropout
    /// masks are drawn from `rng` as core draws them.
    pub fn step(
        &mut self,
        data: &DeviceDataset,
        indices: &[u32],
        lr: f32,
        rng: &mut Rng,
    ) -> Result<StepStats, GpuError> {
        self.check_data(data)?;
        let n = indices.len();
        if n == 0 {
            return Err(CoreError::EmptyBatch.into());
        }
        if n > self.config.max_batch {
            return Err(CoreError::BatchTooLarge { batch: n, max: self.config.max_batch }.into());
        }
        if n < 2 && self.topology.has_batch_norm() {
            return Err(CoreError::BatchNormNeedsTwoSamples.into());
        }
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= data.len) {
            return Err(GpuError::Invalid(format!("sample index {bad} is past the data set's {}", data.len)));
        }
        self.ensure_capacity(1, n)?;
        self.prepare(indices, &[n], &[lr], rng)?;
        self.enqueue_step(data, n, n)?;
        let (loss, correct, diverged) = self.read_steps(1)?;
        if diverged != 0 {
            return Err(GpuError::Diverged { step: 1 });
        }
        let grad_norm = match self.config.grad_clip {
            Some(_) => Some(self.read_one(&self.per_step.norm)?),
            None => None,
        };
        self.steps += 1;
        Ok(StepStats { loss: loss[0], correct: correct[0] as usize, batch: n, grad_norm })
    }

    /// One epoch over `data` in the sample order `order` (e.g. the CPU loader's order for the
    /// epoch), in batches of `batch_size` (the last one smaller unless `drop_last`), with
    /// learning rate `lrs[k]` for the k-th batch. The first full batch runs as plain
    /// launches, the other full batches as replays of one captured CUDA graph, a last partial
    /// batch as plain launches; only the per-step losses and counts come back, at the end.
    ///
    /// Errors: as [`step`](Self::step); [`GpuError::Diverged`] when a step's loss is NaN or
    /// infinite (the parameters then are those before that step).
    pub fn epoch(
        &mut self,
        data: &DeviceDataset,
        order: &[u32],
        batch_size: usize,
        drop_last: bool,
        lrs: &[f32],
        rng: &mut Rng,
    ) -> Result<EpochStats, GpuError> {
        self.check_data(data)?;
        if batch_size == 0 {
            return Err(CoreError::EmptyBatch.into());
        }
        if batch_size > self.config.max_batch {
            return Err(CoreError::BatchTooLarge { batch: batch_size, max: self.config.max_batch }.into());
        }
        if let Some(&bad) = order.iter().find(|&&i| i as usize >= data.len) {
            return Err(GpuError::Invalid(format!("sample index {bad} is past the data set's {}", data.len)));
        }
        let full = order.len() / batch_size;
        let rest = order.len() % batch_size;
        let mut batches = vec![batch_size; full];
        if rest > 0 && !drop_last {
            batches.push(rest);
        }
        if batches.is_empty() {
            return Err(GpuError::Invalid(format!(
                "{} samples make no batch of {batch_size} (drop_last)",
                order.len()
            )));
        }
        if lrs.len() != batches.len() {
            return Err(GpuError::Invalid(format!(
                "{} learning rates for an epoch of {} batches",
                lrs.len(),
                batches.len()
            )));
        }
        if self.topology.has_batch_norm() && batches.iter().any(|&b| b < 2) {
            return Err(CoreError::BatchNormNeedsTwoSamples.into());
        }
        self.ensure_capacity(batches.len(), order.len())?;
        self.prepare(order, &batches, lrs, rng)?;
        let mut graph = false;
        if full > 0 {
            // The first step runs eagerly: it loads every kernel (cuBLAS's too) outside capture.
            self.enqueue_step(data, batch_size, batch_size)?;
            if full > 1 {
                graph = self.run_graph(data, batch_size, full - 1)?;
                if !graph {
                    for _ in 1..full {
                        self.enqueue_step(data, batch_size, batch_size)?;
                    }
                }
            }
        }
        if batches.len() > full {
            self.enqueue_step(data, rest, batch_size)?;
        }
        let (loss, correct, diverged) = self.read_steps(batches.len())?;
        if diverged != 0 {
            let done = diverged as usize - 1;
            self.steps += done as u64;
            return Err(GpuError::Diverged { step: diverged as usize });
        }
        self.steps += batches.len() as u64;
        Ok(EpochStats {
            loss_sum: loss.iter().zip(&batches).map(|(&l, &n)| l as f64 * n as f64).sum(),
            correct: correct.iter().map(|&c| c as usize).sum(),
            samples: batches.iter().sum(),
            steps: batches.len(),
            graph,
        })
    }
}
