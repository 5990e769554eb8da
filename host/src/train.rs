//! The training loop: a PyTorch-tutorial workflow (DataLoader, model.train(), optimizer,
//! scheduler, per-epoch evaluation) on core's fixed-buffer trainer and the host kernels.
//!
//! [`train_on`] sets a run up (from scratch or from a checkpoint) and goes through the epochs;
//! each epoch's steps run in [`cpu`] (the host kernels) or [`gpu`] (CUDA), and both report the
//! same [`EpochMetrics`], checkpoints and model. The settings and recipes are in [`settings`],
//! the checkpoint file in [`checkpoint`], evaluation in [`evaluate`](mod@evaluate).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mlp::init::{initialize, Init};
use mlp::{Loss, Rng, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::model_io::{InputTransformBuf, ModelNames, SavedModel};
use data::{DataLoader, Dataset, Features, LoaderOptions, Normalization};

mod checkpoint;
mod cpu;
mod device;
mod evaluate;
mod gpu;
mod memory;
mod optimizer_options;
mod settings;

pub use checkpoint::{BestEpoch, Checkpoint, RunSource};
pub use device::{Device, DeviceArg};
pub use evaluate::{evaluate, evaluate_with, predict_proba, Evaluation, EVAL_BATCH};
pub use optimizer_options::{LineSearchArg, OptimizerOptions};
pub use settings::{ActivationArg, NormalizationArg, OptimizerArg, TrainSettings, DEFAULT_MAXOUT_PIECES};

/// Metrics of one epoch (accuracies are fractions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (train mode).
    pub train_loss: f64,
    /// Training accuracy over the epoch's batches (train mode, before each update).
    pub train_accuracy: f64,
    /// Validation loss, when a validation split is held out.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
    /// Test loss, when a test set is given.
    pub test_loss: Option<f64>,
    /// Test accuracy.
    pub test_accuracy: Option<f64>,
    /// Wall-clock seconds of training (without evaluation).
    pub seconds: f64,
    /// Training throughput.
    pub samples_per_second: f64,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// The learning rate the schedule gave the epoch's steps, as `(position, lr)` at up to
    /// [`LR_TRACE_POINTS`] evenly spaced steps (every step when there are fewer), first and
    /// last included; the position is in epochs from the start of the run, step `k` (0-based)
    /// of epoch `e` (1-based) at `e - 1 + (k + 1) / steps_per_epoch`, so the last step is at `e`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lr_trace: Vec<(f64, f64)>,
}

/// The most learning-rate samples [`EpochMetrics::lr_trace`] keeps per epoch.
pub const LR_TRACE_POINTS: u64 = 17;

/// The data of a run: what it trains on and what it reports on.
#[derive(Debug)]
pub struct RunData {
    /// Training samples (after any validation split).
    pub train: Dataset,
    /// The held-out validation split, if any.
    pub val: Option<Dataset>,
    /// The test set, if any.
    pub test: Option<Dataset>,
}

impl RunData {
    /// Splits `train` by the settings' validation fraction and seed.
    pub fn new(train: Dataset, test: Option<Dataset>, settings: &TrainSettings) -> Result<Self> {
        if settings.val_split > 0.0 {
            let (train, val) = train.split(settings.val_split as f64, settings.seed)?;
            Ok(RunData { train, val: Some(val), test })
        } else {
            Ok(RunData { train, val: None, test })
        }
    }
}

/// How a run reports and persists itself.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Draw a progress bar per epoch (on a terminal).
    pub progress: bool,
    /// Write a checkpoint here after every epoch.
    pub checkpoint: Option<PathBuf>,
    /// When this becomes true (a Ctrl-C handler sets it), the run stops after the current
    /// batch and abandons the epoch: the checkpoint keeps the last finished one.
    pub stop: Option<Arc<AtomicBool>>,
    /// Recorded in every checkpoint, so a resumed run finds its data and outputs.
    pub source: Option<RunSource>,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The final model.
    pub model: SavedModel,
    /// Metrics of every epoch (including those before a resume).
    pub history: Vec<EpochMetrics>,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Stopped by [`RunOptions::stop`] before its last epoch. `history` then has the
    /// finished epochs, and `model` the parameters at the interruption (mid-epoch; the
    /// checkpoint has the last finished epoch's, from which `--resume` continues exactly).
    pub interrupted: bool,
    /// With early stopping ([`TrainSettings::early_stop`]): the epoch whose model `model`
    /// is (the lowest validation loss; the last epoch's stays in the checkpoint).
    pub best_epoch: Option<usize>,
    /// Early stopping ended the run before its last epoch.
    pub stopped_early: bool,
}

/// Trains a classifier on `data` with `settings`, from scratch or from `resume`, calling
/// `on_epoch` after each epoch (and after its checkpoint is written); it returns
/// `ControlFlow::Break(())` to stop early.
///
/// With [`TrainSettings::early_stop`] `Some(patience)`, the run keeps the model of the epoch
/// with the lowest validation loss (strictly lower than every earlier one), stops once
/// `patience` epochs have passed without one, and returns that model; the checkpoint holds
/// both the last epoch's state (to resume from) and the best epoch's model.
pub fn train(
    settings: &TrainSettings,
    data: &RunData,
    resume: Option<Checkpoint>,
    options: &RunOptions,
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<Trained> {
    train_on(&Device::Cpu, settings, data, resume, options, on_epoch)
}

/// [`train`] on `device`: on a GPU the same batches (the loader's order), learning rates and
/// dropout masks, with the steps, the loss and the per-epoch evaluation on the device; the
/// same checkpoints and model.
pub fn train_on(
    device: &Device,
    settings: &TrainSettings,
    data: &RunData,
    resume: Option<Checkpoint>,
    options: &RunOptions,
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<Trained> {
    settings.validate()?;
    let train = &data.train;
    if train.is_empty() {
        bail!("the training set is empty");
    }
    if let (Some(p), None) = (settings.early_stop, &data.val) {
        bail!("--early-stop {p} needs a validation split: add --val-split 0.1");
    }
    if matches!(device, Device::Gpu(_)) {
        check_gpu_support(settings)?;
    }
    if let Some(ck) = resume.as_ref().filter(|ck| ck.stopped_early) {
        bail!(
            "this run already stopped early after epoch {} (no lower validation loss in {} epochs; \
             its model is epoch {}'s): there is nothing to resume; start a new run to train further",
            ck.epochs_done,
            settings.early_stop.unwrap_or(0),
            ck.best.as_ref().map_or(0, |b| b.epoch)
        );
    }
    // The run's state is what its checkpoint holds, from the file or from scratch.
    let mut run = start(settings, train, resume)?;
    if settings.qat.is_some() {
        mlp::int8::FakeQuant::check_topology(&run.model.topology)
            .context("--qat cannot train this network")?;
    }
    if options.source.is_some() {
        run.source = options.source.clone();
    }
    let loader_opts = LoaderOptions {
        batch_size: settings.batch_size,
        shuffle: true,
        seed: settings.seed,
        drop_last: settings.batch_norm,
        normalization: Normalization::None,
        augment: settings.augment,
    };
    let mut loader = DataLoader::new(train, loader_opts)?;
    if loader.batches_per_epoch() == 0 {
        bail!("the training set has fewer samples than one batch; lower --batch-size");
    }
    // L-BFGS: one full-batch optimizer step per epoch (its batches are only how the loss
    // over the whole set is summed).
    let lbfgs = match settings.optimizer() {
        mlp::Optimizer::Lbfgs(l) => Some(l),
        _ => None,
    };
    let per_epoch = if lbfgs.is_some() { 1 } else { loader.batches_per_epoch() as u64 };
    let config = TrainConfig {
        loss: Loss::CrossEntropy,
        optimizer: settings.optimizer(),
        max_batch: settings.batch_size,
        grad_clip: settings.grad_clip,
    };
    let topology = run.model.topology.clone();
    // --device gpu: the model, optimizer state and data move to the GPU once.
    let mut steps = match device {
        Device::Cpu => Steps::Cpu(cpu::CpuRun::new(&topology, config, &loader)),
        Device::Gpu(g) => Steps::Gpu(Box::new(gpu::GpuRun::start(g, config, &run, data)?)),
    };
    let (base_lr, total_steps) = (settings.learning_rate(), per_epoch * settings.epochs as u64);
    let stopped = || options.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
    for epoch in run.epochs_done..settings.epochs {
        if stopped() {
            return Ok(interrupted(run));
        }
        let lr_trace = lr_trace(settings, epoch, run.steps, base_lr, total_steps, per_epoch);
        let qat = settings.is_qat_epoch(epoch).then_some(train);
        let plan = EpochPlan {
            settings,
            epoch,
            base_lr,
            total_steps,
            per_epoch,
            stop: options.stop.as_deref(),
            qat,
        };
        loader.set_epoch(epoch as u64);
        // Dropout masks depend on (seed, epoch) only, so a resumed run draws the same ones.
        let mut rng =
            Rng::new(Rng::new(settings.seed ^ 0x5EED_D209_0000_0000).next_u64().wrapping_add(epoch as u64));
        let bar = progress_bar(options.progress, per_epoch, epoch + 1, settings.epochs);
        let started = Instant::now();
        let stats = match &mut steps {
            Steps::Cpu(cpu) => match lbfgs {
                Some(l) => cpu.lbfgs_epoch(&mut run, &mut loader, &plan, l)?,
                None => cpu.epoch(&mut run, &mut loader, &plan, &mut rng, &bar, started)?,
            },
            Steps::Gpu(gpu) => gpu.epoch(&loader, &plan, &mut rng)?,
        };
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if stats.interrupted {
            return Ok(interrupted(run));
        }
        let (val, test) = match &mut steps {
            Steps::Cpu(_) => {
                // ASGD is evaluated (and saved) as its averaged parameters.
                let model = averaged_model(&run, settings);
                let model = model.as_ref().unwrap_or(&run.model);
                (
                    data.val.as_ref().map(|d| evaluate(model, d)).transpose()?,
                    data.test.as_ref().map(|d| evaluate(model, d)).transpose()?,
                )
            }
            Steps::Gpu(gpu) => {
                gpu.download(&mut run)?;
                gpu.evaluate()?
            }
        };
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: stats.loss_sum / stats.seen.max(1) as f64,
            train_accuracy: stats.correct as f64 / stats.seen.max(1) as f64,
            val_loss: val.as_ref().map(|e| e.loss),
            val_accuracy: val.as_ref().map(|e| e.accuracy),
            test_loss: test.as_ref().map(|e| e.loss),
            test_accuracy: test.as_ref().map(|e| e.accuracy),
            seconds,
            samples_per_second: stats.seen as f64 / seconds.max(1e-9),
            lr: stats.lr as f64,
            lr_trace,
        };
        run.history.push(metrics.clone());
        run.epochs_done = epoch + 1;
        if let Some(patience) = settings.early_stop {
            let averaged = averaged_model(&run, settings).map(|m| m.params);
            early_stopping(&mut run, &metrics, patience, averaged);
        }
        if let Some(path) = &options.checkpoint {
            run.save(path)?;
        }
        if on_epoch(&metrics).is_break() || run.stopped_early {
            break;
        }
    }
    let best_epoch = run.best.as_ref().map(|b| b.epoch);
    if let Some(averaged) = averaged_model(&run, settings) {
        run.model = averaged;
    }
    let mut model = run.model;
    if let Some(best) = run.best {
        model.params = best.params;
        model.running = best.running;
    }
    Ok(Trained {
        model,
        history: run.history,
        steps: run.steps,
        interrupted: false,
        best_epoch,
        stopped_early: run.stopped_early,
    })
}

/// The error for `--max-norm` on the GPU path.
const MAX_NORM_ON_GPU: &str = "--max-norm is not implemented on the GPU path yet (--device gpu and \
     gpu-emulator): train with --device cpu (the default), or leave --max-norm out";

/// The error for `--activation maxout` on the GPU path.
const MAXOUT_ON_GPU: &str = "--activation maxout is not implemented on the GPU path yet (--device gpu and \
     gpu-emulator): train with --device cpu (the default), or pick another --activation";

/// The error for `--qat` on the GPU path.
const QAT_ON_GPU: &str = "--qat (quantization-aware training) is not implemented on the GPU path yet \
     (--device gpu and gpu-emulator): train with --device cpu (the default), or train on the GPU \
     without --qat and quantize afterwards (host quantize)";

/// The error for `--augment` on the GPU path, which keeps the training set on the device and
/// only sends indices.
const AUGMENT_ON_GPU: &str = "--augment is not implemented on the GPU path yet (--device gpu and \
     gpu-emulator keep the training images on the device): train with --device cpu (the default), \
     or leave --augment out";

/// Checks that `settings` can run on `device` before any data is loaded: `--max-norm`,
/// maxout, `--qat`, `--augment` and the newer optimizers are not on the GPU path yet.
pub fn check_device(settings: &TrainSettings, device: DeviceArg) -> Result<()> {
    if device != DeviceArg::Cpu {
        check_gpu_support(settings)?;
    }
    Ok(())
}

/// What the GPU path does not have yet, refused with one message each (and again by
/// `train_on`, for callers that skip [`check_device`]).
fn check_gpu_support(settings: &TrainSettings) -> Result<()> {
    if settings.max_norm.is_some() {
        bail!(MAX_NORM_ON_GPU);
    }
    if settings.activation == ActivationArg::Maxout {
        bail!(MAXOUT_ON_GPU);
    }
    if settings.qat.is_some() {
        bail!(QAT_ON_GPU);
    }
    if settings.augment.is_some() {
        bail!(AUGMENT_ON_GPU);
    }
    let optimizer = settings.optimizer();
    if optimizer.code() > mlp::Optimizer::adamax().code() {
        bail!(
            "--optimizer {} is not implemented on the GPU path yet (--device gpu and gpu-emulator): \
             train with --device cpu (the default), or choose sgd, momentum, nesterov, adagrad, \
             rmsprop, adadelta, adam, adamw or adamax",
            optimizer.name()
        );
    }
    Ok(())
}

/// ASGD's model: the run's with the averaged parameters `ax` (PyTorch's `state['ax']`, what
/// ASGD users evaluate and save); `None` for the other optimizers.
fn averaged_model(run: &Checkpoint, settings: &TrainSettings) -> Option<SavedModel> {
    let ax = settings.optimizer().averaged(&run.optimizer_state, run.model.params.len())?;
    Some(SavedModel { params: ax.to_vec(), ..run.model.clone() })
}

/// A run stopped by [`RunOptions::stop`]: the model as it is (mid-epoch).
fn interrupted(run: Checkpoint) -> Trained {
    Trained {
        model: run.model,
        history: run.history,
        steps: run.steps,
        interrupted: true,
        best_epoch: run.best.as_ref().map(|b| b.epoch),
        stopped_early: false,
    }
}

/// Early stopping after an epoch whose `metrics` are the last of `run.history`: a strictly
/// lower validation loss than the best so far makes this epoch the best (its model is
/// copied); `patience` epochs after the best without one, the run is stopped. A NaN loss is
/// never an improvement.
/// `averaged`: the parameters that were evaluated, when not the model's (ASGD's average).
fn early_stopping(run: &mut Checkpoint, metrics: &EpochMetrics, patience: usize, averaged: Option<Vec<f32>>) {
    let Some(loss) = metrics.val_loss else { return };
    if run.best.as_ref().is_none_or(|b| loss < b.val_loss) {
        run.best = Some(BestEpoch {
            epoch: metrics.epoch,
            val_loss: loss,
            params: averaged.unwrap_or_else(|| run.model.params.clone()),
            running: run.model.running.clone(),
        });
    }
    let since = metrics.epoch - run.best.as_ref().map_or(0, |b| b.epoch);
    run.stopped_early = since >= patience;
}

/// The learning rates of 0-based `epoch`'s steps, which start at step `first`, sampled as
/// [`EpochMetrics::lr_trace`] describes. Both the CPU and the GPU loops take step `k`'s rate
/// from the schedule this way.
fn lr_trace(
    settings: &TrainSettings,
    epoch: usize,
    first: u64,
    base_lr: f32,
    total_steps: u64,
    per_epoch: u64,
) -> Vec<(f64, f64)> {
    let points = per_epoch.min(LR_TRACE_POINTS);
    (0..points)
        .map(|i| if points == 1 { per_epoch - 1 } else { i * (per_epoch - 1) / (points - 1) })
        .map(|k| {
            let lr = settings.schedule.lr(base_lr, first + k, total_steps, per_epoch);
            (epoch as f64 + (k + 1) as f64 / per_epoch as f64, lr as f64)
        })
        .collect()
}

/// The state a run starts from: `resume` checked against `settings`, or a freshly
/// initialized model with the settings' input normalization and a zero optimizer state.
fn start(settings: &TrainSettings, train: &Dataset, resume: Option<Checkpoint>) -> Result<Checkpoint> {
    let topology = settings.topology(train.input_len(), train.num_classes())?;
    memory::check(&topology, settings)?;
    let n_params = topology.param_len();
    let optimizer = settings.optimizer();
    let normalization = settings.normalization.resolve(train)?;
    let from_u8 = matches!(train.features(), Features::U8(_));
    match resume {
        Some(ck) => {
            if ck.model.topology != topology {
                bail!(
                    "the checkpoint's network is {} but this data and these settings make {}: \
                     resume with the data the run was trained on",
                    shape(&ck.model.topology),
                    shape(&topology)
                );
            }
            if ck.optimizer_state.len() != optimizer.state_len(n_params) {
                bail!(
                    "the checkpoint's optimizer state ({} values) does not fit {} for {n_params} parameters",
                    ck.optimizer_state.len(),
                    format!("{:?}", settings.optimizer).to_lowercase()
                );
            }
            // The run's settings (--epochs may extend it) go into its next checkpoints.
            Ok(Checkpoint { settings: settings.clone(), ..ck })
        }
        None => {
            let mut params = vec![0.0; n_params];
            let mut running = vec![0.0; topology.running_len()];
            topology.reset_running(&mut running)?;
            let init = Init::for_activation(settings.hidden_activation());
            initialize(&topology, &mut params, init, &mut Rng::new(settings.seed))?;
            let input = InputTransformBuf::from_normalization(&normalization, train.input_len(), from_u8);
            Ok(Checkpoint {
                settings: settings.clone(),
                epochs_done: 0,
                steps: 0,
                history: Vec::new(),
                model: SavedModel { topology, params, running, input, names: ModelNames::of(train) },
                optimizer_state: vec![0.0; optimizer.state_len(n_params)],
                source: None,
                best: None,
                stopped_early: false,
            })
        }
    }
}

/// A network's widths, e.g. `784-256-10`.
fn shape(t: &mlp::Topology) -> String {
    let widths: Vec<String> = std::iter::once(t.input())
        .chain(t.layers().iter().map(|l| l.outputs))
        .map(|w| w.to_string())
        .collect();
    widths.join("-")
}

/// Where the steps of a run go.
enum Steps<'t> {
    Cpu(cpu::CpuRun<'t>),
    Gpu(Box<gpu::GpuRun>),
}

/// An epoch's place in the run: what the CPU and GPU epoch loops need besides the model.
#[derive(Clone, Copy)]
struct EpochPlan<'a> {
    settings: &'a TrainSettings,
    /// 0-based.
    epoch: usize,
    /// The schedule's peak learning rate.
    base_lr: f32,
    /// Steps in the whole run.
    total_steps: u64,
    /// Steps (batches) per epoch.
    per_epoch: u64,
    /// Stop after the current batch when this becomes true.
    stop: Option<&'a AtomicBool>,
    /// A quantization-aware epoch: the training set, whose first samples calibrate the
    /// activation ranges as `host quantize` does.
    qat: Option<&'a Dataset>,
}

/// The sums of an epoch's training steps (train mode, before each update).
struct EpochStats {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    /// The learning rate of the epoch's last step.
    lr: f32,
    /// The epoch was stopped part-way ([`RunOptions::stop`]).
    interrupted: bool,
}

fn progress_bar(enabled: bool, batches: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(batches);
    let style = ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
