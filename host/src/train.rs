//! The training loop: a PyTorch-tutorial workflow (DataLoader, model.train(), optimizer,
//! scheduler, per-epoch evaluation) on core's fixed-buffer trainer and the host kernels.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mlp::{
    init::{initialize, Init},
    Activation, Error as CoreError, LayerSpec, Loss, Model, Optimizer, Rng, Targets, Topology, TrainBuffers,
    TrainConfig, Trainer,
};
use serde::{Deserialize, Serialize};

use crate::model_io::{write_atomic, InputPipeline, SavedModel};
use crate::schedule::Schedule;
use cpu::f32::{Fast, Prepared};
use cpu::pool::with_spinning_pool;
use data::{DataLoader, Dataset, Features, LoaderOptions, Normalization};

mod device;
pub use device::{Device, DeviceArg};

/// Hidden-layer activation, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationArg {
    /// max(0, x)
    Relu,
    /// x for x > 0, else 0.01 x
    LeakyRelu,
    /// x for x > 0, else e^x - 1
    Elu,
    /// x Φ(x), exact
    Gelu,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh x
    Tanh,
    /// x (a linear model when every layer is linear)
    Identity,
}

impl ActivationArg {
    /// The core activation.
    pub fn to_core(self) -> Activation {
        match self {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::LeakyRelu => Activation::LeakyRelu(0.01),
            ActivationArg::Elu => Activation::Elu(1.0),
            ActivationArg::Gelu => Activation::Gelu,
            ActivationArg::Sigmoid => Activation::Sigmoid,
            ActivationArg::Tanh => Activation::Tanh,
            ActivationArg::Identity => Activation::Identity,
        }
    }
}

/// Optimizer, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerArg {
    /// Plain SGD
    Sgd,
    /// SGD with momentum 0.9
    Momentum,
    /// SGD with Nesterov momentum 0.9
    Nesterov,
    /// Adagrad
    Adagrad,
    /// RMSprop (alpha 0.99)
    Rmsprop,
    /// Adadelta (rho 0.9; its customary lr is 1.0)
    Adadelta,
    /// Adam (0.9, 0.999)
    Adam,
    /// Adam with decoupled weight decay
    Adamw,
    /// Adam with the infinity norm
    Adamax,
}

impl OptimizerArg {
    /// The core optimizer with `weight_decay`.
    pub fn to_core(self, weight_decay: f32) -> Optimizer {
        let o = match self {
            OptimizerArg::Sgd => Optimizer::sgd(),
            OptimizerArg::Momentum => Optimizer::momentum(0.9),
            OptimizerArg::Nesterov => Optimizer::nesterov(0.9),
            OptimizerArg::Adagrad => Optimizer::adagrad(),
            OptimizerArg::Rmsprop => Optimizer::rmsprop(),
            OptimizerArg::Adadelta => Optimizer::adadelta(),
            OptimizerArg::Adam => Optimizer::adam(),
            OptimizerArg::Adamw => Optimizer::adamw(),
            OptimizerArg::Adamax => Optimizer::adamax(),
        };
        o.with_weight_decay(weight_decay)
    }
}

/// Input normalization, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NormalizationArg {
    /// Pixels / 255 (torchvision's ToTensor); tabular features as they are
    Scale,
    /// Global mean/std of the training set (MNIST: Normalize((0.1307,), (0.3081,)))
    Standardize,
    /// Mean/std per feature, from the training set (tabular data)
    PerFeature,
    /// Raw values
    None,
}

/// Everything that defines a training run: the `train` command's options resolved against a
/// recipe, the `config` of `--metrics` JSON, and what a checkpoint remembers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Hidden layer widths, first to last.
    pub hidden: Vec<usize>,
    /// Hidden-layer activation.
    pub activation: ActivationArg,
    /// Optimizer.
    pub optimizer: OptimizerArg,
    /// Peak learning rate (`None`: the optimizer's customary rate, e.g. 0.001 for Adam).
    pub lr: Option<f32>,
    /// Learning-rate schedule, applied per batch.
    pub schedule: Schedule,
    /// Samples per batch.
    pub batch_size: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Seed for initialization, shuffling, dropout and the validation split.
    pub seed: u64,
    /// Dropout rate after each hidden layer (0 disables it).
    pub dropout: f32,
    /// Batch norm before each hidden activation.
    pub batch_norm: bool,
    /// Weight decay (L2; decoupled for AdamW).
    pub weight_decay: f32,
    /// Fraction of the training set held out for validation (0 to 0.9).
    pub val_split: f32,
    /// Clip gradients to this global L2 norm.
    pub grad_clip: Option<f32>,
    /// Input normalization.
    pub normalization: NormalizationArg,
}

impl TrainSettings {
    /// The default recipe, chosen for accuracy on MNIST within a minute or two of CPU time:
    /// 784-512-256-10, ReLU, dropout 0.2, Adam with a one-cycle schedule peaking at 2e-3,
    /// batch 128, 12 epochs.
    pub fn default_recipe() -> Self {
        TrainSettings {
            hidden: vec![512, 256],
            activation: ActivationArg::Relu,
            optimizer: OptimizerArg::Adam,
            lr: Some(2e-3),
            schedule: Schedule::OneCycle,
            batch_size: 128,
            epochs: 12,
            seed: 777,
            dropout: 0.2,
            batch_norm: false,
            weight_decay: 0.0,
            val_split: 0.0,
            grad_clip: None,
            normalization: NormalizationArg::Scale,
        }
    }

    /// The PyTorch tutorial recipe (and `../shared/reference/torch_mlp.py`): 784-256-10, ReLU,
    /// He-normal init, Adam 1e-3 constant, batch 256, 10 epochs, no dropout, pixels / 255.
    pub fn tutorial() -> Self {
        TrainSettings {
            hidden: vec![256],
            activation: ActivationArg::Relu,
            optimizer: OptimizerArg::Adam,
            lr: Some(1e-3),
            schedule: Schedule::Constant,
            batch_size: 256,
            epochs: 10,
            seed: 777,
            dropout: 0.0,
            batch_norm: false,
            weight_decay: 0.0,
            val_split: 0.0,
            grad_clip: None,
            normalization: NormalizationArg::Scale,
        }
    }

    /// The optimizer.
    pub fn optimizer(&self) -> Optimizer {
        self.optimizer.to_core(self.weight_decay)
    }

    /// The peak learning rate.
    pub fn learning_rate(&self) -> f32 {
        self.lr.unwrap_or_else(|| self.optimizer().default_lr())
    }

    /// The network for `inputs` features and `classes` classes: the hidden layers, then a
    /// softmax output trained with cross-entropy.
    pub fn topology(&self, inputs: usize, classes: usize) -> Result<Topology> {
        let mut layers: Vec<LayerSpec> = self
            .hidden
            .iter()
            .map(|&w| {
                let l = LayerSpec::dense(w, self.activation.to_core()).with_dropout(self.dropout);
                if self.batch_norm {
                    l.with_batch_norm()
                } else {
                    l
                }
            })
            .collect();
        layers.push(LayerSpec::dense(classes, Activation::Softmax));
        Topology::new(inputs, &layers).context("invalid network shape")
    }

    /// Checks ranges the type system does not.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if !(0.0..=0.9).contains(&self.val_split) {
            bail!("--val-split {} is outside 0 to 0.9", self.val_split);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("--dropout {} is outside [0, 1)", self.dropout);
        }
        let lr = self.learning_rate();
        if !(lr.is_finite() && lr > 0.0) {
            bail!("--lr {lr} must be a positive number");
        }
        self.optimizer().validate().context("invalid optimizer settings")?;
        Ok(())
    }

    fn normalization(&self, train: &Dataset) -> Result<Normalization> {
        Ok(match self.normalization {
            NormalizationArg::None => Normalization::None,
            NormalizationArg::Scale => match train.features() {
                Features::U8(_) => Normalization::Scale01,
                Features::F32(_) => Normalization::None,
            },
            NormalizationArg::Standardize => Normalization::standardize_from(train)?,
            NormalizationArg::PerFeature => Normalization::per_feature_from(train)?,
        })
    }
}

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
}

/// Loss, accuracy and confusion matrix of a model on a data set (eval mode).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction correct.
    pub accuracy: f64,
    /// Samples correct.
    pub correct: usize,
    /// Samples evaluated.
    pub samples: usize,
    /// `confusion[label][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// The predicted class of every sample, in data set order.
    pub predictions: Vec<u32>,
}

/// Evaluates `model` on `data` in eval mode, with its input pipeline.
pub fn evaluate(model: &SavedModel, data: &Dataset) -> Result<Evaluation> {
    let m = model.model()?;
    if m.topology().output_layer().activation != Activation::Softmax {
        bail!(
            "host evaluates classifiers, whose output layer is softmax; this model's is {}",
            m.topology().output_layer().activation.name()
        );
    }
    let mut ws = vec![0.0; m.topology().infer_workspace_len(EVAL_BATCH)];
    let mut x = Vec::new();
    let kernels = Prepared::new(&m);
    evaluate_with(data, m.topology().input(), m.topology().output(), |raw, n| {
        x.clear();
        x.extend_from_slice(raw);
        model.input.apply(&mut x);
        Ok(m.forward(&kernels, &x, n, &mut ws)?.to_vec())
    })
}

/// Samples per batch when evaluating.
pub const EVAL_BATCH: usize = 1000;

/// The evaluation loop shared by every model type: `probabilities(raw, n)` maps `n` raw
/// samples (as stored: pixels 0-255, or CSV values) to `n × classes` class probabilities.
pub fn evaluate_with(
    data: &Dataset,
    inputs: usize,
    classes: usize,
    mut probabilities: impl FnMut(&[f32], usize) -> Result<Vec<f32>>,
) -> Result<Evaluation> {
    if data.input_len() != inputs {
        bail!(
            "{} has {} features per sample but the model expects {}",
            data.name(),
            data.input_len(),
            inputs
        );
    }
    if data.num_classes() > classes {
        bail!("{} has {} classes but the model outputs {}", data.name(), data.num_classes(), classes);
    }
    let opts = LoaderOptions {
        batch_size: EVAL_BATCH,
        normalization: Normalization::None,
        ..LoaderOptions::default()
    };
    let mut loader = DataLoader::new(data, opts)?;
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut predictions = Vec::with_capacity(data.len());
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    while let Some(n) = loader.next_batch(&mut x, &mut y) {
        let probs = probabilities(&x[..n * inputs], n)?;
        let labels = Targets::Labels(&y[..n]);
        let loss = Loss::CrossEntropy.value_from_outputs(Activation::Softmax, classes, &probs, labels)?;
        loss_sum += loss as f64 * n as f64;
        for (row, &label) in probs.chunks_exact(classes).zip(&y[..n]) {
            let p = mlp::loss::argmax(row);
            predictions.push(p as u32);
            confusion[label as usize][p] += 1;
            correct += (p == label as usize) as usize;
        }
    }
    let samples = predictions.len();
    Ok(Evaluation {
        loss: loss_sum / samples.max(1) as f64,
        accuracy: correct as f64 / samples.max(1) as f64,
        correct,
        samples,
        confusion,
        predictions,
    })
}

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

/// Where a run is, saved after every epoch so `--resume` continues exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The run's settings.
    pub settings: TrainSettings,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Metrics of the completed epochs.
    pub history: Vec<EpochMetrics>,
    /// The model after the last completed epoch.
    pub model: SavedModel,
    /// The optimizer state (Adam's m and v, ...), in core's flat layout.
    pub optimizer_state: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointHeader {
    settings: TrainSettings,
    epochs_done: usize,
    steps: u64,
    history: Vec<EpochMetrics>,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"MLPCKPT1";

impl Checkpoint {
    /// The checkpoint file: magic `MLPCKPT1`, a JSON header (settings, progress, history),
    /// the model file, the optimizer state, and a CRC-32 of everything before it; lengths
    /// are little-endian u64.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&CheckpointHeader {
            settings: self.settings.clone(),
            epochs_done: self.epochs_done,
            steps: self.steps,
            history: self.history.clone(),
        })?;
        let model = self.model.to_bytes()?;
        let mut out = Vec::with_capacity(64 + header.len() + model.len() + 4 * self.optimizer_state.len());
        out.extend_from_slice(CHECKPOINT_MAGIC);
        for part in [&header, &model] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&(self.optimizer_state.len() as u64).to_le_bytes());
        self.optimizer_state.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        out.extend_from_slice(&mlp::format::crc32(&out).to_le_bytes());
        Ok(out)
    }

    /// Parses a checkpoint; `name` is used in errors.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self> {
        let corrupt = |what: &str| anyhow::anyhow!("{name}: not a valid checkpoint ({what})");
        if bytes.len() < CHECKPOINT_MAGIC.len() + 4 || &bytes[..8] != CHECKPOINT_MAGIC {
            return Err(corrupt("missing MLPCKPT1 header"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if mlp::format::crc32(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(corrupt("checksum mismatch: the file is damaged"));
        }
        let mut rest = &body[8..];
        let mut take = |what: &str, elem: usize| -> Result<&[u8]> {
            if rest.len() < 8 {
                return Err(corrupt(what));
            }
            let (len, tail) = rest.split_at(8);
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
            let bytes_len =
                len.checked_mul(elem).filter(|&b| b <= tail.len()).ok_or_else(|| corrupt(what))?;
            let (part, tail) = tail.split_at(bytes_len);
            rest = tail;
            Ok(part)
        };
        let header: CheckpointHeader =
            serde_json::from_slice(take("header", 1)?).map_err(|e| corrupt(&format!("header: {e}")))?;
        let model = SavedModel::from_bytes(name, take("model", 1)?)?;
        let state = take("optimizer state", 4)?;
        let optimizer_state =
            state.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Checkpoint {
            settings: header.settings,
            epochs_done: header.epochs_done,
            steps: header.steps,
            history: header.history,
            model,
            optimizer_state,
        })
    }

    /// Reads a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

/// How a run reports and persists itself.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Draw a progress bar per epoch (on a terminal).
    pub progress: bool,
    /// Write a checkpoint here after every epoch.
    pub checkpoint: Option<PathBuf>,
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
}

/// Trains a classifier on `data` with `settings`, from scratch or from `resume`, calling
/// `on_epoch` after each epoch (and after its checkpoint is written); it returns
/// `ControlFlow::Break(())` to stop early, e.g. when validation accuracy stops improving.
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
    let topology = settings.topology(train.input_len(), train.num_classes())?;
    let n_params = topology.param_len();
    let optimizer = settings.optimizer();
    let normalization = settings.normalization(train)?;
    let from_u8 = matches!(train.features(), Features::U8(_));

    let (mut params, mut running, mut state, mut history, mut steps, start_epoch, pipeline);
    match resume {
        Some(ck) => {
            if ck.model.topology != topology {
                bail!(
                    "the checkpoint's network ({:?}) differs from this run's settings",
                    ck.model.topology.layers()
                );
            }
            if ck.optimizer_state.len() != optimizer.state_len(n_params) {
                bail!("the checkpoint's optimizer state does not match --optimizer {:?}", settings.optimizer);
            }
            params = ck.model.params;
            running = ck.model.running;
            pipeline = ck.model.input;
            state = ck.optimizer_state;
            history = ck.history;
            steps = ck.steps;
            start_epoch = ck.epochs_done;
        }
        None => {
            params = vec![0.0; n_params];
            running = vec![0.0; topology.running_len()];
            topology.reset_running(&mut running)?;
            let init = Init::for_activation(settings.activation.to_core());
            initialize(&topology, &mut params, init, &mut Rng::new(settings.seed))?;
            pipeline = InputPipeline::from_normalization(&normalization, train.input_len(), from_u8);
            state = vec![0.0; optimizer.state_len(n_params)];
            history = Vec::new();
            steps = 0;
            start_epoch = 0;
        }
    }

    let loader_opts = LoaderOptions {
        batch_size: settings.batch_size,
        shuffle: true,
        seed: settings.seed,
        drop_last: settings.batch_norm,
        normalization: Normalization::None,
    };
    let mut loader = DataLoader::new(train, loader_opts)?;
    let per_epoch = loader.batches_per_epoch() as u64;
    if per_epoch == 0 {
        bail!("the training set has fewer samples than one batch; lower --batch-size");
    }
    let total_steps = per_epoch * settings.epochs as u64;
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    let mut grads = vec![0.0; n_params];
    let mut ws = vec![0.0; topology.train_workspace_len(settings.batch_size)];
    let config = TrainConfig {
        loss: Loss::CrossEntropy,
        optimizer,
        max_batch: settings.batch_size,
        grad_clip: settings.grad_clip,
    };
    let base_lr = settings.learning_rate();
    // --device gpu: the model, optimizer state and data move to the GPU once (None: CPU).
    let start = gpu::Start { params: &params, running: &running, optimizer_state: &state, steps };
    let mut gpu_run = device::GpuRun::start(device, &topology, config, start, &pipeline, data)?;

    for epoch in start_epoch..settings.epochs {
        loader.set_epoch(epoch as u64);
        // Dropout masks depend on (seed, epoch) only, so a resumed run draws the same ones.
        let mut rng =
            Rng::new(Rng::new(settings.seed ^ 0x5EED_D209_0000_0000).next_u64().wrapping_add(epoch as u64));
        let bar = progress_bar(options.progress, per_epoch, epoch + 1, settings.epochs);
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = base_lr;
        if let Some(run) = gpu_run.as_mut() {
            (loss_sum, correct, seen, lr) =
                run.epoch(&loader, epoch, settings, base_lr, total_steps, per_epoch, &mut rng)?;
            steps = run.steps();
        } else {
            // The steps run on one of rayon's threads, so that the kernels' parallel parts
            // start on the pool directly instead of waking it from outside at every product,
            // and the pool's other threads poll for those parts instead of sleeping between
            // them (see `cpu::pool`).
            (loss_sum, correct, seen, lr, steps) = with_spinning_pool(|| -> Result<_> {
                let mut trainer = Trainer::new(
                    &topology,
                    config,
                    TrainBuffers {
                        params: &mut params,
                        grads: &mut grads,
                        running: &mut running,
                        optimizer_state: &mut state,
                        workspace: &mut ws,
                    },
                )?;
                trainer.set_steps(steps);
                let kernels = Fast::new();
                let mut batch_index = 0;
                while let Some(n) =
                    loader.next_batch_affine(&mut x, &mut y, &pipeline.scale, &pipeline.offset)
                {
                    batch_index += 1;
                    let inputs = &x[..n * train.input_len()];
                    lr = settings.schedule.lr(base_lr, trainer.steps(), total_steps, per_epoch);
                    let stats = match trainer.step(&kernels, inputs, Targets::Labels(&y[..n]), lr, &mut rng) {
                        Err(CoreError::NonFinite { what }) => bail!(
                            "training diverged at epoch {}, batch {batch_index}: {what} is NaN or infinite; \
                             lower the learning rate (--lr {}) or clip gradients (--grad-clip 1.0)",
                            epoch + 1,
                            lr
                        ),
                        other => {
                            other.with_context(|| format!("epoch {}, batch {batch_index}", epoch + 1))?
                        }
                    };
                    loss_sum += stats.loss as f64 * n as f64;
                    correct += stats.correct;
                    seen += n;
                    if batch_index % 8 == 0 || batch_index as u64 == per_epoch {
                        let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
                        bar.set_position(batch_index as u64);
                        bar.set_message(format!("loss {:.4}  {:.0} samples/s", loss_sum / seen as f64, rate));
                    }
                }
                Ok((loss_sum, correct, seen, lr, trainer.steps()))
            })?;
        }
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if let Some(run) = gpu_run.as_ref() {
            run.download(&mut params, &mut running, &mut state)?;
        }
        let model = SavedModel {
            topology: topology.clone(),
            params: params.clone(),
            running: running.clone(),
            input: pipeline.clone(),
        };
        let (val, test) = match gpu_run.as_mut() {
            Some(run) => run.evaluate()?,
            None => (
                data.val.as_ref().map(|d| evaluate(&model, d)).transpose()?,
                data.test.as_ref().map(|d| evaluate(&model, d)).transpose()?,
            ),
        };
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss: val.as_ref().map(|e| e.loss),
            val_accuracy: val.as_ref().map(|e| e.accuracy),
            test_loss: test.as_ref().map(|e| e.loss),
            test_accuracy: test.as_ref().map(|e| e.accuracy),
            seconds,
            samples_per_second: seen as f64 / seconds.max(1e-9),
            lr: lr as f64,
        };
        history.push(metrics.clone());
        if let Some(path) = &options.checkpoint {
            Checkpoint {
                settings: settings.clone(),
                epochs_done: epoch + 1,
                steps,
                history: history.clone(),
                model,
                optimizer_state: state.clone(),
            }
            .save(path)?;
        }
        if on_epoch(&metrics).is_break() {
            break;
        }
    }
    Ok(Trained { model: SavedModel { topology, params, running, input: pipeline }, history, steps })
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

/// Eval-mode predictions of `model` for raw samples (rows of `topology.input()` values as
/// stored, e.g. pixels 0-255): class probabilities per row.
pub fn predict_proba(model: &SavedModel, raw: &[f32]) -> Result<Vec<f32>> {
    let m: Model<'_> = model.model()?;
    let n_in = m.topology().input();
    if raw.is_empty() || !raw.len().is_multiple_of(n_in) {
        bail!("expected whole samples of {n_in} values, got {}", raw.len());
    }
    let batch = raw.len() / n_in;
    let mut x = raw.to_vec();
    model.input.apply(&mut x);
    let mut ws = vec![0.0; m.topology().infer_workspace_len(batch)];
    Ok(m.forward(&Prepared::new(&m), &x, batch, &mut ws)?.to_vec())
}
