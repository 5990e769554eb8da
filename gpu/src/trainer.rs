//! The training step, epoch and evaluation on the device.

use std::ffi::c_int;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::cublas::{result as blas_result, sys as blas_sys};
use cudarc::driver::{sys as drv_sys, CudaGraph, CudaSlice, DeviceRepr, LaunchConfig, ValidAsZeroBits};
use mlp::{Activation, Error as CoreError, Loss, Optimizer, Rng, StepStats, Topology, TrainConfig};

use crate::device::{dptr, grid_1d, Arg, Gpu};
use crate::GpuError;

/// Floats of per-step hyperparameters (kernels.cu's HP_STRIDE): lr, lr / (1 - β₁ᵗ),
/// √(1 - β₂ᵗ), unused.
const HP_STRIDE: usize = 4;
/// Blocks of the gradient-norm reduction (kernels.cu's sum_squares).
const NORM_BLOCKS: usize = 256;
/// Rows per block of the loss kernels (one warp per row).
const ROWS_PER_BLOCK: usize = 4;

/// A data set's features as stored on the host.
#[derive(Clone, Copy, Debug)]
pub enum Features<'a> {
    /// Bytes (pixels), normalized on the device.
    U8(&'a [u8]),
    /// Values (tabular data).
    F32(&'a [f32]),
}

/// A data set resident on the device: features as stored (`u8` or `f32`) and labels.
pub struct DeviceDataset {
    id: u64,
    len: usize,
    input_len: usize,
    max_label: u32,
    bytes: Option<CudaSlice<u8>>,
    values: Option<CudaSlice<f32>>,
    labels: CudaSlice<u32>,
}

impl fmt::Debug for DeviceDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceDataset")
            .field("len", &self.len)
            .field("input_len", &self.input_len)
            .field("dtype", &if self.bytes.is_some() { "u8" } else { "f32" })
            .finish()
    }
}

impl DeviceDataset {
    /// Samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no samples (never: uploads need at least one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Features per sample.
    pub fn input_len(&self) -> usize {
        self.input_len
    }
}

impl Gpu {
    /// Copies a data set to the device: `features` holds `labels.len()` rows of `input_len`.
    pub fn upload_dataset(
        &self,
        features: Features<'_>,
        labels: &[u32],
        input_len: usize,
    ) -> Result<DeviceDataset, GpuError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let len = labels.len();
        let feature_len = match features {
            Features::U8(v) => v.len(),
            Features::F32(v) => v.len(),
        };
        if len == 0 || input_len == 0 {
            return Err(GpuError::Invalid("cannot upload an empty data set to the GPU".into()));
        }
        if len > u32::MAX as usize || Some(feature_len) != len.checked_mul(input_len) {
            return Err(GpuError::Invalid(format!(
                "data set of {len} labels has {feature_len} feature values, not {len} x {input_len}"
            )));
        }
        let s = self.stream();
        let up = |what| move |e| GpuError::driver(what, e);
        let (bytes, values) = match features {
            Features::U8(v) => (Some(s.clone_htod(v).map_err(up("uploading the data set"))?), None),
            Features::F32(v) => (None, Some(s.clone_htod(v).map_err(up("uploading the data set"))?)),
        };
        let labels_dev = s.clone_htod(labels).map_err(up("uploading the labels"))?;
        Ok(DeviceDataset {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            len,
            input_len,
            max_label: labels.iter().copied().max().unwrap_or(0),
            bytes,
            values,
            labels: labels_dev,
        })
    }
}

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
    z: CudaSlice<f32>,
    a: CudaSlice<f32>,
    /// Dropout output a ⊙ mask.
    out: Option<CudaSlice<f32>>,
    /// Batch norm: x̂ (the product lands here first) and mean, 1/std (`2 × outputs`).
    x_hat: Option<CudaSlice<f32>>,
    stats: Option<CudaSlice<f32>>,
}

/// Per-step arrays, indexed by the device step counter.
struct PerStep {
    capacity: usize,
    hyper: CudaSlice<f32>,
    loss: CudaSlice<f32>,
    correct: CudaSlice<u32>,
    norm: CudaSlice<f32>,
    masks: CudaSlice<u32>,
}

/// Buffers of eval-mode inference in chunks.
struct EvalBufs {
    chunk: usize,
    x: CudaSlice<f32>,
    labels: CudaSlice<u32>,
    ping: CudaSlice<f32>,
    pong: CudaSlice<f32>,
    row_loss: CudaSlice<f32>,
    row_correct: CudaSlice<u32>,
    chunks: usize,
    chunk_loss: CudaSlice<f32>,
    chunk_correct: CudaSlice<u32>,
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
    params: CudaSlice<f32>,
    grads: CudaSlice<f32>,
    state: CudaSlice<f32>,
    running: CudaSlice<f32>,
    scale: CudaSlice<f32>,
    offset: CudaSlice<f32>,
    x: CudaSlice<f32>,
    labels: CudaSlice<u32>,
    d0: CudaSlice<f32>,
    d1: CudaSlice<f32>,
    row_loss: CudaSlice<f32>,
    row_correct: CudaSlice<u32>,
    ones: CudaSlice<f32>,
    ctr: CudaSlice<i32>,
    zero: CudaSlice<i32>,
    diverged: CudaSlice<i32>,
    partials: CudaSlice<f32>,
    coef: CudaSlice<f32>,
    per_step: PerStep,
    mask_step_words: usize,
    order: CudaSlice<u32>,
    order_capacity: usize,
    eval: Option<EvalBufs>,
    graph: Option<((u64, usize), CudaGraph)>,
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

/// The activation's code in kernels.cu: the model file's numbering.
fn act_code(a: Activation) -> (i32, f32) {
    let (code, alpha) = mlp::format::activation_code(a);
    (i32::from(code), alpha)
}

fn loss_code(l: Loss) -> i32 {
    match l {
        Loss::Mse => 0,
        Loss::CrossEntropy => 1,
        Loss::BinaryCrossEntropy => 2,
    }
}

/// kernels.cu's optimizer code and (h0, h1, eps, weight decay).
fn optimizer_code(o: Optimizer) -> (i32, [f32; 4]) {
    match o {
        Optimizer::Sgd { weight_decay } => (0, [0.0, 0.0, 0.0, weight_decay]),
        Optimizer::Momentum { momentum, weight_decay } => (1, [momentum, 0.0, 0.0, weight_decay]),
        Optimizer::Nesterov { momentum, weight_decay } => (2, [momentum, 0.0, 0.0, weight_decay]),
        Optimizer::Adagrad { eps, weight_decay } => (3, [0.0, 0.0, eps, weight_decay]),
        Optimizer::RmsProp { alpha, eps, weight_decay } => (4, [alpha, 0.0, eps, weight_decay]),
        Optimizer::Adadelta { rho, eps, weight_decay } => (5, [rho, 0.0, eps, weight_decay]),
        Optimizer::Adam { beta1, beta2, eps, weight_decay } => (6, [beta1, beta2, eps, weight_decay]),
        Optimizer::AdamW { beta1, beta2, eps, weight_decay } => (7, [beta1, beta2, eps, weight_decay]),
        Optimizer::Adamax { beta1, beta2, eps, weight_decay } => (8, [beta1, beta2, eps, weight_decay]),
    }
}

/// `1 - β^t` in f64, exactly as core's optimizer computes it.
fn bias_correction(beta: f32, t: u64) -> f64 {
    1.0 - libm::pow(beta as f64, t.min(1 << 30) as f64)
}

/// The per-step hyperparameters of update `t` (1-based) at learning rate `lr`.
fn hyper(optimizer: Optimizer, t: u64, lr: f32) -> [f32; HP_STRIDE] {
    match optimizer {
        Optimizer::Adam { beta1, beta2, .. } | Optimizer::AdamW { beta1, beta2, .. } => [
            lr,
            (lr as f64 / bias_correction(beta1, t)) as f32,
            libm::sqrt(bias_correction(beta2, t)) as f32,
            0.0,
        ],
        Optimizer::Adamax { beta1, .. } => [lr, (lr as f64 / bias_correction(beta1, t)) as f32, 1.0, 0.0],
        _ => [lr, 0.0, 1.0, 0.0],
    }
}

/// The accuracy threshold of a single-output model, as core's step uses it.
fn threshold(loss: Loss, act: Activation) -> f32 {
    match (loss, act) {
        (Loss::BinaryCrossEntropy, Activation::Identity) => 0.0,
        _ => 0.5,
    }
}

fn rows_config(batch: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (batch.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (32, ROWS_PER_BLOCK as u32, 1),
        shared_mem_bytes: 0,
    }
}

fn columns_config(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(32) as u32, 1, 1), block_dim: (32, 8, 1), shared_mem_bytes: 0 }
}

fn single_block() -> LaunchConfig {
    LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
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
        if config.max_batch == 0 {
            return Err(CoreError::EmptyBatch.into());
        }
        config.loss.check_activation(topology.output_layer().activation)?;
        config.optimizer.validate()?;
        if let Some(c) = config.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(CoreError::InvalidHyperparameter { name: "max gradient norm", value: c }.into());
            }
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
        let s = gpu.stream().clone();
        let alloc =
            |len: usize| s.alloc_zeros::<f32>(len.max(1)).map_err(|e| GpuError::driver("allocating", e));
        let upload = |v: &[f32]| -> Result<CudaSlice<f32>, GpuError> {
            if v.is_empty() {
                alloc(1)
            } else {
                s.clone_htod(v).map_err(|e| GpuError::driver("uploading", e))
            }
        };
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
        let zeros_i32 = |len: usize| s.alloc_zeros::<i32>(len).map_err(|e| GpuError::driver("allocating", e));
        let zeros_u32 =
            |len: usize| s.alloc_zeros::<u32>(len.max(1)).map_err(|e| GpuError::driver("allocating", e));
        let ones = s.clone_htod(&vec![1.0f32; max_batch]).map_err(|e| GpuError::driver("uploading", e))?;
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

    fn ptr<T>(&self, s: &CudaSlice<T>) -> u64 {
        dptr(s, self.gpu.stream())
    }

    fn opt_ptr<T>(&self, s: &Option<CudaSlice<T>>) -> u64 {
        s.as_ref().map_or(0, |s| self.ptr(s))
    }

    fn check_data(&self, data: &DeviceDataset) -> Result<(), GpuError> {
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
        let s = self.gpu.stream().clone();
        let err = |e| GpuError::driver("allocating", e);
        fn zeros<T: DeviceRepr + ValidAsZeroBits>(
            s: &std::sync::Arc<cudarc::driver::CudaStream>,
            len: usize,
        ) -> Result<CudaSlice<T>, cudarc::driver::DriverError> {
            s.alloc_zeros::<T>(len.max(1))
        }
        if steps > self.per_step.capacity {
            self.graph = None;
            self.per_step = PerStep {
                capacity: steps,
                hyper: zeros(&s, steps * HP_STRIDE).map_err(err)?,
                loss: zeros(&s, steps).map_err(err)?,
                correct: zeros(&s, steps).map_err(err)?,
                norm: zeros(&s, steps).map_err(err)?,
                masks: zeros(&s, steps * self.mask_step_words).map_err(err)?,
            };
        }
        if order > self.order_capacity {
            self.graph = None;
            self.order = zeros(&s, order).map_err(err)?;
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
        let s = self.gpu.stream().clone();
        let err = |e| GpuError::driver("uploading the epoch's order and hyperparameters", e);
        s.memcpy_htod(order, &mut self.order).map_err(err)?;
        s.memcpy_htod(&hp, &mut self.per_step.hyper).map_err(err)?;
        if self.mask_step_words > 0 {
            s.memcpy_htod(&self.mask_host, &mut self.per_step.masks).map_err(err)?;
        }
        s.memcpy_htod(&[0i32], &mut self.ctr).map_err(err)?;
        s.memcpy_htod(&[0i32], &mut self.diverged).map_err(err)?;
        Ok(())
    }

    /// Draws every step's dropout masks from `rng` in the order `mlp::Trainer::forward` draws
    /// them (per step, per dropout layer, `batch × outputs` uniforms), as bits: 1 = kept.
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
                        if rng.uniform() >= rate {
                            bits[i >> 5] |= 1 << (i & 31);
                        }
                    }
                }
            }
        }
    }

    /// Row-major `C[rows×cols] = op(A) · op(B)` through column-major cuBLAS (see the callers).
    #[allow(clippy::too_many_arguments)]
    fn sgemm(
        &self,
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: u64,
        lda: usize,
        b: u64,
        ldb: usize,
        c: u64,
        ldc: usize,
    ) -> Result<(), GpuError> {
        let op = |t: bool| {
            if t {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the handle is valid for the life of `self.gpu`; a, b, c are device
        // addresses of live allocations that hold the column-major shapes described by
        // (m, n, k, lda, ldb, ldc) as the callers derive them from the layer sizes; alpha and
        // beta are host scalars (the handle's default pointer mode) read during the call.
        unsafe {
            blas_result::sgemm(
                *self.gpu.inner.blas.handle(),
                op(ta),
                op(tb),
                m as c_int,
                n as c_int,
                k as c_int,
                &alpha,
                a as *const f32,
                lda as c_int,
                b as *const f32,
                ldb as c_int,
                &beta,
                c as *mut f32,
                ldc as c_int,
            )
        }
        .map_err(|e| GpuError::Blas(format!("sgemm {m}x{n}x{k}: {e}")))
    }

    /// `Y[batch×n] = X[batch×k] · W[n×k]ᵀ` (row-major): column-major `Yᵀ = op_T(W) · Xᵀ`.
    fn forward_product(
        &self,
        x: u64,
        w: u64,
        y: u64,
        batch: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        self.sgemm(true, false, n, batch, k, w, k, x, k, y, n)
    }

    /// `dX[batch×k] = dY[batch×n] · W[n×k]`: column-major `dXᵀ = Wᵀ · dYᵀ`.
    fn input_grad_product(
        &self,
        dy: u64,
        w: u64,
        dx: u64,
        batch: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        self.sgemm(false, false, k, batch, n, w, k, dy, n, dx, k)
    }

    /// `dW[n×k] = dY[batch×n]ᵀ · X[batch×k]`: column-major `dWᵀ = Xᵀ · op_T(dYᵀ)`.
    fn weight_grad_product(
        &self,
        x: u64,
        dy: u64,
        dw: u64,
        batch: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        self.sgemm(false, true, k, n, batch, x, k, dy, n, dw, k)
    }

    /// `db[n] = Σ_rows dY[batch×n]`: column-major `dYᵀ (n×batch) · ones`.
    fn bias_grad(&self, dy: u64, db: u64, batch: usize, n: usize) -> Result<(), GpuError> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let ones = self.ptr(&self.ones);
        // SAFETY: as in `sgemm`: dy holds batch × n floats (column-major n × batch, lda n),
        // `ones` holds at least max_batch >= batch ones, db holds n floats.
        unsafe {
            blas_result::sgemv(
                *self.gpu.inner.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                n as c_int,
                batch as c_int,
                &alpha,
                dy as *const f32,
                n as c_int,
                ones as *const f32,
                1,
                &beta,
                db as *mut f32,
                1,
            )
        }
        .map_err(|e| GpuError::Blas(format!("sgemv {n}x{batch}: {e}")))
    }

    /// Queues one training step on `n` samples: the batch is `order[*ctr * stride ..][..n]`.
    /// Reads and writes only device memory, so it can be captured into a graph.
    fn enqueue_step(&self, data: &DeviceDataset, n: usize, stride: usize) -> Result<(), GpuError> {
        let k = &self.gpu.inner.kernels;
        let g = &self.gpu;
        let (params, grads, running) =
            (self.ptr(&self.params), self.ptr(&self.grads), self.ptr(&self.running));
        let ctr = self.ptr(&self.ctr);
        let input = self.topology.input();
        let masks = self.ptr(&self.per_step.masks);
        let words = self.mask_step_words as i32;
        g.launch(
            &k.gather,
            grid_1d(n * input),
            &[
                Arg::P(self.opt_ptr(&data.bytes)),
                Arg::P(self.opt_ptr(&data.values)),
                Arg::P(self.ptr(&data.labels)),
                Arg::P(self.ptr(&self.order)),
                Arg::P(ctr),
                Arg::I(stride as i32),
                Arg::I(0),
                Arg::I(n as i32),
                Arg::I(input as i32),
                Arg::P(self.ptr(&self.scale)),
                Arg::P(self.ptr(&self.offset)),
                Arg::P(self.ptr(&self.x)),
                Arg::P(self.ptr(&self.labels)),
            ],
        )?;
        // Forward, train mode.
        let layer_input = |i: usize| -> u64 {
            if i == 0 {
                self.ptr(&self.x)
            } else {
                let p = &self.layers[i - 1];
                p.out.as_ref().map_or_else(|| self.ptr(&p.a), |o| self.ptr(o))
            }
        };
        for (i, l) in self.layers.iter().enumerate() {
            let total = n * l.outputs;
            let (w, b) = (params + F32 * l.w as u64, params + F32 * l.b as u64);
            let z = self.ptr(&l.z);
            let (mask_ptr, keep_scale) = match l.dropout {
                Some((_, scale, off)) => (masks + 4 * off as u64, scale),
                None => (0, 0.0),
            };
            let bias_for_act = if let (Some((gamma, beta)), Some((rm, rv)), Some(xh), Some(st)) =
                (l.bn, l.running, &l.x_hat, &l.stats)
            {
                let xh = self.ptr(xh);
                let st = self.ptr(st);
                self.forward_product(layer_input(i), w, xh, n, l.fan_in, l.outputs)?;
                g.launch(
                    &k.bn_train,
                    columns_config(l.outputs),
                    &[
                        Arg::P(xh),
                        Arg::P(b),
                        Arg::P(params + F32 * gamma as u64),
                        Arg::P(params + F32 * beta as u64),
                        Arg::P(z),
                        Arg::P(st),
                        Arg::P(st + F32 * l.outputs as u64),
                        Arg::P(running + F32 * rm as u64),
                        Arg::P(running + F32 * rv as u64),
                        Arg::I(n as i32),
                        Arg::I(l.outputs as i32),
                    ],
                )?;
                0
            } else {
                self.forward_product(layer_input(i), w, z, n, l.fan_in, l.outputs)?;
                b
            };
            g.launch(
                &k.bias_act,
                grid_1d(total),
                &[
                    Arg::P(z),
                    Arg::P(self.ptr(&l.a)),
                    Arg::P(self.opt_ptr(&l.out)),
                    Arg::P(bias_for_act),
                    Arg::I(l.outputs as i32),
                    Arg::I(total as i32),
                    Arg::I(l.act),
                    Arg::F(l.alpha),
                    Arg::P(mask_ptr),
                    Arg::P(ctr),
                    Arg::I(words),
                    Arg::F(keep_scale),
                ],
            )?;
        }
        // Loss, its gradient and the batch's accuracy.
        let last = self.layers.last().ok_or(CoreError::NoLayers)?;
        let width = last.outputs;
        let loss = self.config.loss;
        let len = (n * width) as f32;
        let (grad_scale, mul, div) = match loss {
            Loss::CrossEntropy => {
                let inv_b = 1.0 / n as f32;
                (inv_b, inv_b, 1.0)
            }
            Loss::Mse => (2.0 / len, 1.0, len),
            Loss::BinaryCrossEntropy => {
                let inv = 1.0 / len;
                (inv, inv, 1.0)
            }
        };
        let d0 = self.ptr(&self.d0);
        let d1 = self.ptr(&self.d1);
        g.launch(
            &k.loss_train,
            rows_config(n),
            &[
                Arg::I(loss_code(loss)),
                Arg::I(last.act),
                Arg::F(last.alpha),
                Arg::P(self.ptr(&last.z)),
                Arg::P(self.ptr(&last.a)),
                Arg::P(d0),
                Arg::P(self.ptr(&self.labels)),
                Arg::I(n as i32),
                Arg::I(width as i32),
                Arg::F(grad_scale),
                Arg::F(threshold(loss, self.topology.output_layer().activation)),
                Arg::P(self.ptr(&self.row_loss)),
                Arg::P(self.ptr(&self.row_correct)),
            ],
        )?;
        let diverged = self.ptr(&self.diverged);
        g.launch(
            &k.finish_loss,
            single_block(),
            &[
                Arg::P(self.ptr(&self.row_loss)),
                Arg::P(self.ptr(&self.row_correct)),
                Arg::I(n as i32),
                Arg::F(mul),
                Arg::F(div),
                Arg::P(ctr),
                Arg::I(0),
                Arg::P(self.ptr(&self.per_step.loss)),
                Arg::P(self.ptr(&self.per_step.correct)),
                Arg::P(diverged),
            ],
        )?;
        // Backward.
        let (mut d, mut d_next) = (d0, d1);
        for i in (0..self.layers.len()).rev() {
            let l = &self.layers[i];
            let w = params + F32 * l.w as u64;
            if let (Some((gamma, beta)), Some(xh), Some(st)) = (l.bn, &l.x_hat, &l.stats) {
                g.launch(
                    &k.bn_backward,
                    columns_config(l.outputs),
                    &[
                        Arg::P(d),
                        Arg::P(self.ptr(xh)),
                        Arg::P(self.ptr(st) + F32 * l.outputs as u64),
                        Arg::P(params + F32 * gamma as u64),
                        Arg::P(grads + F32 * gamma as u64),
                        Arg::P(grads + F32 * beta as u64),
                        Arg::I(n as i32),
                        Arg::I(l.outputs as i32),
                    ],
                )?;
            }
            self.weight_grad_product(layer_input(i), d, grads + F32 * l.w as u64, n, l.fan_in, l.outputs)?;
            self.bias_grad(d, grads + F32 * l.b as u64, n, l.outputs)?;
            if i > 0 {
                let p = &self.layers[i - 1];
                self.input_grad_product(d, w, d_next, n, l.fan_in, l.outputs)?;
                let (mask_ptr, keep_scale) = match p.dropout {
                    Some((_, scale, off)) => (masks + 4 * off as u64, scale),
                    None => (0, 0.0),
                };
                let total = n * p.outputs;
                g.launch(
                    &k.act_backward,
                    grid_1d(total),
                    &[
                        Arg::P(d_next),
                        Arg::P(self.ptr(&p.z)),
                        Arg::P(self.ptr(&p.a)),
                        Arg::I(total as i32),
                        Arg::I(p.act),
                        Arg::F(p.alpha),
                        Arg::P(mask_ptr),
                        Arg::P(ctr),
                        Arg::I(words),
                        Arg::F(keep_scale),
                    ],
                )?;
                std::mem::swap(&mut d, &mut d_next);
            }
        }
        // Clipping and the update.
        let coef = if let Some(max) = self.config.grad_clip {
            let partials = self.ptr(&self.partials);
            g.launch(
                &k.sum_squares,
                LaunchConfig {
                    grid_dim: (NORM_BLOCKS as u32, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                },
                &[Arg::P(grads), Arg::I(self.param_len as i32), Arg::P(partials)],
            )?;
            g.launch(
                &k.clip_coef,
                single_block(),
                &[
                    Arg::P(partials),
                    Arg::I(NORM_BLOCKS as i32),
                    Arg::F(max),
                    Arg::P(ctr),
                    Arg::P(self.ptr(&self.per_step.norm)),
                    Arg::P(self.ptr(&self.coef)),
                    Arg::P(diverged),
                ],
            )?;
            self.ptr(&self.coef)
        } else {
            0
        };
        let (kind, [h0, h1, eps, wd]) = optimizer_code(self.config.optimizer);
        let state = self.ptr(&self.state);
        let vectors = self.config.optimizer.state_vectors();
        let s0 = if vectors >= 1 { state } else { 0 };
        let s1 = if vectors >= 2 { state + F32 * self.param_len as u64 } else { 0 };
        g.launch(
            &k.optimizer_update,
            grid_1d(self.param_len),
            &[
                Arg::P(params),
                Arg::P(grads),
                Arg::P(s0),
                Arg::P(s1),
                Arg::I(self.param_len as i32),
                Arg::I(kind),
                Arg::F(h0),
                Arg::F(h1),
                Arg::F(eps),
                Arg::F(wd),
                Arg::P(self.ptr(&self.per_step.hyper)),
                Arg::P(ctr),
                Arg::P(coef),
                Arg::P(diverged),
            ],
        )?;
        g.launch(
            &k.advance,
            LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 },
            &[Arg::P(ctr)],
        )
    }

    /// Captures one full-batch step into a CUDA graph.
    fn capture(&self, data: &DeviceDataset, batch: usize) -> Result<CudaGraph, GpuError> {
        let s = self.gpu.stream();
        s.begin_capture(drv_sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| GpuError::driver("starting graph capture", e))?;
        let queued = self.enqueue_step(data, batch, batch);
        // Always end the capture, even after a failed launch, so the stream is usable again.
        let ended = s.end_capture(drv_sys::CUgraphInstantiate_flags(0));
        queued?;
        match ended {
            Ok(Some(graph)) => Ok(graph),
            Ok(None) => Err(GpuError::Invalid("graph capture produced no graph".into())),
            Err(e) => Err(GpuError::driver("ending graph capture", e)),
        }
    }

    /// Runs `count` full-batch steps through the cached graph (capturing it first if needed);
    /// `Ok(false)` if capture is off or failed (nothing was run then).
    fn run_graph(&mut self, data: &DeviceDataset, batch: usize, count: usize) -> Result<bool, GpuError> {
        if !self.use_graphs || count == 0 {
            return Ok(false);
        }
        let key = (data.id, batch);
        if self.graph.as_ref().is_none_or(|(k, _)| *k != key) {
            self.graph = None;
            match self.capture(data, batch) {
                Ok(graph) => {
                    graph.upload().map_err(|e| GpuError::driver("uploading the step graph", e))?;
                    self.graph = Some((key, graph));
                }
                Err(e) => {
                    self.graph_error = Some(e.to_string());
                    self.use_graphs = false;
                    return Ok(false);
                }
            }
        }
        if let Some((_, graph)) = &self.graph {
            for _ in 0..count {
                graph.launch().map_err(|e| GpuError::driver("launching the step graph", e))?;
            }
        }
        Ok(true)
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

    fn read_one(&self, s: &CudaSlice<f32>) -> Result<f32, GpuError> {
        let mut v = [0.0f32];
        self.gpu
            .stream()
            .memcpy_dtoh(&s.slice(0..1), &mut v[..])
            .map_err(|e| GpuError::driver("downloading", e))?;
        Ok(v[0])
    }

    /// Waits for the queued steps and reads the first `steps` per-step losses, correct counts,
    /// and the divergence flag.
    fn read_steps(&self, steps: usize) -> Result<(Vec<f32>, Vec<u32>, i32), GpuError> {
        let s = self.gpu.stream();
        let err = |e| GpuError::driver("reading the epoch's metrics", e);
        let mut loss = vec![0.0f32; steps];
        let mut correct = vec![0u32; steps];
        let mut diverged = [0i32];
        s.memcpy_dtoh(&self.per_step.loss.slice(0..steps), &mut loss[..]).map_err(err)?;
        s.memcpy_dtoh(&self.per_step.correct.slice(0..steps), &mut correct[..]).map_err(err)?;
        s.memcpy_dtoh(&self.diverged, &mut diverged[..]).map_err(err)?;
        s.synchronize().map_err(err)?;
        Ok((loss, correct, diverged[0]))
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

    /// Eval-mode loss and accuracy of the whole of `data` (batch norm with running
    /// statistics, no dropout), in chunks of `chunk` samples on the device; only the
    /// per-chunk sums come back.
    pub fn evaluate(&mut self, data: &DeviceDataset, chunk: usize) -> Result<EvalStats, GpuError> {
        self.check_data(data)?;
        let chunk = chunk.clamp(1, data.len);
        let chunks = data.len.div_ceil(chunk);
        let width = self.topology.output();
        let max_width = self.layers.iter().map(|l| l.outputs).max().unwrap_or(1);
        if chunk.checked_mul(max_width.max(self.topology.input())).is_none_or(|v| v > i32::MAX as usize / 2) {
            return Err(GpuError::Invalid(format!("evaluation chunk {chunk} is too large")));
        }
        let s = self.gpu.stream().clone();
        let err = |e| GpuError::driver("allocating evaluation buffers", e);
        if self.eval.as_ref().is_none_or(|e| e.chunk != chunk || e.chunks < chunks) {
            self.eval = Some(EvalBufs {
                chunk,
                x: s.alloc_zeros(chunk * self.topology.input()).map_err(err)?,
                labels: s.alloc_zeros(chunk).map_err(err)?,
                ping: s.alloc_zeros(chunk * max_width).map_err(err)?,
                pong: s.alloc_zeros(chunk * max_width).map_err(err)?,
                row_loss: s.alloc_zeros(chunk).map_err(err)?,
                row_correct: s.alloc_zeros(chunk).map_err(err)?,
                chunks,
                chunk_loss: s.alloc_zeros(chunks).map_err(err)?,
                chunk_correct: s.alloc_zeros(chunks).map_err(err)?,
            });
        }
        let Some(e) = self.eval.as_ref() else {
            return Err(GpuError::Invalid("no evaluation buffers".into()));
        };
        let k = &self.gpu.inner.kernels;
        let g = &self.gpu;
        let params = self.ptr(&self.params);
        let running = self.ptr(&self.running);
        let zero = self.ptr(&self.zero);
        let (ex, el) = (self.ptr(&e.x), self.ptr(&e.labels));
        let bufs = [self.ptr(&e.ping), self.ptr(&e.pong)];
        let input = self.topology.input();
        let loss = self.config.loss;
        let out_act = self.topology.output_layer().activation;
        for c in 0..chunks {
            let base = c * chunk;
            let n = chunk.min(data.len - base);
            g.launch(
                &k.gather,
                grid_1d(n * input),
                &[
                    Arg::P(self.opt_ptr(&data.bytes)),
                    Arg::P(self.opt_ptr(&data.values)),
                    Arg::P(self.ptr(&data.labels)),
                    Arg::P(0),
                    Arg::P(zero),
                    Arg::I(0),
                    Arg::I(base as i32),
                    Arg::I(n as i32),
                    Arg::I(input as i32),
                    Arg::P(self.ptr(&self.scale)),
                    Arg::P(self.ptr(&self.offset)),
                    Arg::P(ex),
                    Arg::P(el),
                ],
            )?;
            let mut cur = ex;
            for (i, l) in self.layers.iter().enumerate() {
                let next = bufs[i % 2];
                let total = n * l.outputs;
                let b = params + F32 * l.b as u64;
                self.forward_product(cur, params + F32 * l.w as u64, next, n, l.fan_in, l.outputs)?;
                let bias = if let (Some((gamma, beta)), Some((rm, rv))) = (l.bn, l.running) {
                    g.launch(
                        &k.bn_eval,
                        grid_1d(total),
                        &[
                            Arg::P(next),
                            Arg::P(b),
                            Arg::P(params + F32 * gamma as u64),
                            Arg::P(params + F32 * beta as u64),
                            Arg::P(running + F32 * rm as u64),
                            Arg::P(running + F32 * rv as u64),
                            Arg::I(l.outputs as i32),
                            Arg::I(total as i32),
                        ],
                    )?;
                    0
                } else {
                    b
                };
                g.launch(
                    &k.bias_act,
                    grid_1d(total),
                    &[
                        Arg::P(next),
                        Arg::P(next),
                        Arg::P(0),
                        Arg::P(bias),
                        Arg::I(l.outputs as i32),
                        Arg::I(total as i32),
                        Arg::I(l.act),
                        Arg::F(l.alpha),
                        Arg::P(0),
                        Arg::P(zero),
                        Arg::I(0),
                        Arg::F(0.0),
                    ],
                )?;
                cur = next;
            }
            g.launch(
                &k.loss_eval,
                rows_config(n),
                &[
                    Arg::I(loss_code(loss)),
                    Arg::I(act_code(out_act).0),
                    Arg::P(cur),
                    Arg::P(el),
                    Arg::I(n as i32),
                    Arg::I(width as i32),
                    Arg::F(threshold(loss, out_act)),
                    Arg::P(self.ptr(&e.row_loss)),
                    Arg::P(self.ptr(&e.row_correct)),
                ],
            )?;
            let div = match loss {
                Loss::CrossEntropy => n as f32,
                _ => (n * width) as f32,
            };
            g.launch(
                &k.finish_loss,
                single_block(),
                &[
                    Arg::P(self.ptr(&e.row_loss)),
                    Arg::P(self.ptr(&e.row_correct)),
                    Arg::I(n as i32),
                    Arg::F(1.0),
                    Arg::F(div),
                    Arg::P(0),
                    Arg::I(c as i32),
                    Arg::P(self.ptr(&e.chunk_loss)),
                    Arg::P(self.ptr(&e.chunk_correct)),
                    Arg::P(0),
                ],
            )?;
        }
        let rerr = |e| GpuError::driver("reading evaluation results", e);
        let mut losses = vec![0.0f32; chunks];
        let mut correct = vec![0u32; chunks];
        s.memcpy_dtoh(&e.chunk_loss.slice(0..chunks), &mut losses[..]).map_err(rerr)?;
        s.memcpy_dtoh(&e.chunk_correct.slice(0..chunks), &mut correct[..]).map_err(rerr)?;
        s.synchronize().map_err(rerr)?;
        let loss_sum: f64 =
            losses.iter().enumerate().map(|(c, &l)| l as f64 * chunk.min(data.len - c * chunk) as f64).sum();
        Ok(EvalStats {
            loss: loss_sum / data.len as f64,
            correct: correct.iter().map(|&c| c as usize).sum(),
            samples: data.len,
        })
    }

    /// Copies parameters, batch-norm running statistics and optimizer state back into core's
    /// flat layout (the buffers `mlp::Trainer` and the model file use).
    pub fn download(
        &self,
        params: &mut [f32],
        running: &mut [f32],
        optimizer_state: &mut [f32],
    ) -> Result<(), GpuError> {
        let lens = [
            (mlp::Buffer::Params, self.param_len, params.len()),
            (mlp::Buffer::Running, self.running_len, running.len()),
            (mlp::Buffer::OptimizerState, self.state_len, optimizer_state.len()),
        ];
        for (buffer, expected, actual) in lens {
            if expected != actual {
                return Err(CoreError::BufferLength { buffer, expected, actual }.into());
            }
        }
        let s = self.gpu.stream();
        let err = |e| GpuError::driver("downloading the model", e);
        for (src, dst) in [(&self.params, params), (&self.running, running), (&self.state, optimizer_state)] {
            if !dst.is_empty() {
                let len = dst.len();
                s.memcpy_dtoh(&src.slice(0..len), dst).map_err(err)?;
            }
        }
        s.synchronize().map_err(err)
    }

    /// The parameters, in core's flat layout.
    pub fn params(&self) -> Result<Vec<f32>, GpuError> {
        self.read_all(&self.params, self.param_len)
    }

    /// The gradients of the last step, in core's flat layout (before clipping).
    pub fn grads(&self) -> Result<Vec<f32>, GpuError> {
        self.read_all(&self.grads, self.param_len)
    }

    /// The optimizer state, in core's flat layout.
    pub fn optimizer_state(&self) -> Result<Vec<f32>, GpuError> {
        self.read_all(&self.state, self.state_len)
    }

    /// The batch-norm running statistics.
    pub fn running(&self) -> Result<Vec<f32>, GpuError> {
        self.read_all(&self.running, self.running_len)
    }

    fn read_all(&self, src: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>, GpuError> {
        let mut v = vec![0.0f32; len];
        if len > 0 {
            let s = self.gpu.stream();
            let err = |e| GpuError::driver("downloading", e);
            s.memcpy_dtoh(&src.slice(0..len), &mut v[..]).map_err(err)?;
            s.synchronize().map_err(err)?;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_corrections_match_core_adam() {
        // Core's Adam after one step from zero state moves each weight by lr · g/(|g| + eps·…);
        // here: the per-step values themselves, against the closed forms.
        let h = hyper(Optimizer::adam(), 1, 0.1);
        assert!((h[1] as f64 - 0.1 / (1.0 - 0.9f32 as f64)).abs() < 1e-6);
        assert!((h[2] as f64 - (1.0 - 0.999f32 as f64).sqrt()).abs() < 1e-7);
        assert_eq!(hyper(Optimizer::sgd(), 5, 0.3), [0.3, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn codes_follow_kernels_cu() {
        let src = crate::device::KERNEL_SOURCE;
        for (name, code) in [
            ("ACT_IDENTITY", act_code(Activation::Identity).0),
            ("ACT_SIGMOID", act_code(Activation::Sigmoid).0),
            ("ACT_TANH", act_code(Activation::Tanh).0),
            ("ACT_RELU", act_code(Activation::Relu).0),
            ("ACT_LEAKY_RELU", act_code(Activation::LeakyRelu(0.1)).0),
            ("ACT_ELU", act_code(Activation::Elu(1.0)).0),
            ("ACT_GELU", act_code(Activation::Gelu).0),
            ("ACT_SOFTMAX", act_code(Activation::Softmax).0),
            ("LOSS_MSE", loss_code(Loss::Mse)),
            ("LOSS_CE", loss_code(Loss::CrossEntropy)),
            ("LOSS_BCE", loss_code(Loss::BinaryCrossEntropy)),
            ("OPT_SGD", optimizer_code(Optimizer::sgd()).0),
            ("OPT_MOMENTUM", optimizer_code(Optimizer::momentum(0.9)).0),
            ("OPT_NESTEROV", optimizer_code(Optimizer::nesterov(0.9)).0),
            ("OPT_ADAGRAD", optimizer_code(Optimizer::adagrad()).0),
            ("OPT_RMSPROP", optimizer_code(Optimizer::rmsprop()).0),
            ("OPT_ADADELTA", optimizer_code(Optimizer::adadelta()).0),
            ("OPT_ADAM", optimizer_code(Optimizer::adam()).0),
            ("OPT_ADAMW", optimizer_code(Optimizer::adamw()).0),
            ("OPT_ADAMAX", optimizer_code(Optimizer::adamax()).0),
            ("HP_STRIDE", HP_STRIDE as i32),
        ] {
            assert!(
                src.contains(&format!("#define {name} {code}\n")),
                "kernels.cu lacks #define {name} {code}"
            );
        }
    }
}
