//! What defines a training run: the model, optimizer and data options as `TrainSettings`,
//! the two recipes they start from, and the named choices (activation, optimizer,
//! normalization) as the command line spells them and the settings store them.

use anyhow::{bail, Context, Result};
use mlp::{Activation, LayerSpec, Optimizer, Topology, MAX_MAXOUT_PIECES};
use serde::{Deserialize, Serialize};

use super::optimizer_options::OptimizerOptions;
use crate::schedule::Schedule;
use data::augment::Augment;
use data::{Dataset, Features, Normalization};

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
    /// max of K affine pieces per unit (Goodfellow et al. 2013), K from --maxout-pieces
    Maxout,
}

impl ActivationArg {
    /// The core activation (`maxout_pieces`: the `k` of maxout, unused by the others).
    pub fn to_core(self, maxout_pieces: u8) -> Activation {
        match self {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::LeakyRelu => Activation::LeakyRelu(0.01),
            ActivationArg::Elu => Activation::Elu(1.0),
            ActivationArg::Gelu => Activation::Gelu,
            ActivationArg::Sigmoid => Activation::Sigmoid,
            ActivationArg::Tanh => Activation::Tanh,
            ActivationArg::Identity => Activation::Identity,
            ActivationArg::Maxout => Activation::Maxout(maxout_pieces),
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
    /// Rprop: sign-based steps, a step size per weight (best with large batches)
    Rprop,
    /// Averaged SGD: the saved model is the average of the iterates
    Asgd,
    /// L-BFGS, full batch: one epoch is one optimizer step of up to 20 iterations
    Lbfgs,
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
            OptimizerArg::Rprop => Optimizer::rprop(),
            OptimizerArg::Asgd => Optimizer::asgd(),
            OptimizerArg::Lbfgs => Optimizer::lbfgs(),
        };
        o.with_weight_decay(weight_decay)
    }
}

/// `--normalization`: which [`data::Normalization`] a run uses, named without its statistics
/// (those come from the training set, see [`NormalizationArg::resolve`]).
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

impl NormalizationArg {
    /// The [`data::Normalization`] this names, with statistics from `train`.
    pub fn resolve(self, train: &Dataset) -> Result<Normalization> {
        Ok(match self {
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
    /// Early stopping: stop after this many epochs without a lower validation loss, and
    /// keep the best epoch's model (needs `val_split > 0`).
    #[serde(default)]
    pub early_stop: Option<usize>,
    /// Max-norm constraint: after each step, rescale every hidden unit's incoming weight
    /// vector to L2 norm at most this ([`mlp::optim::max_norm`]).
    #[serde(default)]
    pub max_norm: Option<f32>,
    /// Pieces per maxout unit (`--activation maxout` only; runs from before maxout read 2).
    #[serde(default = "default_maxout_pieces")]
    pub maxout_pieces: u8,
    /// Rprop's, ASGD's and L-BFGS's hyperparameters (PyTorch's defaults when left out).
    #[serde(default)]
    pub optimizer_options: OptimizerOptions,
    /// Quantization-aware training for this many last epochs (`host train --qat`).
    #[serde(default)]
    pub qat: Option<usize>,
    /// Random image distortions for the training batches (never the validation or test
    /// sets), drawn per sample from (seed, epoch, index).
    #[serde(default)]
    pub augment: Option<Augment>,
}

/// `--maxout-pieces` when not given: 2, the smallest maxout (max of two lines), which can
/// already learn ReLU, leaky ReLU and |x| and doubles the layer's rows, not more.
pub const DEFAULT_MAXOUT_PIECES: u8 = 2;

fn default_maxout_pieces() -> u8 {
    DEFAULT_MAXOUT_PIECES
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
            early_stop: None,
            max_norm: None,
            maxout_pieces: DEFAULT_MAXOUT_PIECES,
            optimizer_options: OptimizerOptions::default(),
            qat: None,
            augment: None,
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
            early_stop: None,
            max_norm: None,
            maxout_pieces: DEFAULT_MAXOUT_PIECES,
            optimizer_options: OptimizerOptions::default(),
            qat: None,
            augment: None,
        }
    }

    /// The best-accuracy recipe for MNIST-like images within three minutes of a 2-core CPU:
    /// Simard et al.'s 800-unit widths, 784-800-800-10 ReLU, trained on distorted images
    /// ([`Augment::DEFAULT`]; the distortions regularize, so no dropout) with Adam one-cycle
    /// peaking at 2e-3, batch 128, 24 epochs (99.31% on MNIST in 124 s on the 2-core
    /// development machine).
    pub fn best() -> Self {
        TrainSettings {
            hidden: vec![800, 800],
            activation: ActivationArg::Relu,
            optimizer: OptimizerArg::Adam,
            lr: Some(2e-3),
            schedule: Schedule::OneCycle,
            batch_size: 128,
            epochs: 24,
            seed: 777,
            dropout: 0.0,
            batch_norm: false,
            weight_decay: 0.0,
            val_split: 0.0,
            grad_clip: None,
            normalization: NormalizationArg::Scale,
            early_stop: None,
            max_norm: None,
            augment: Some(Augment::DEFAULT),
            maxout_pieces: DEFAULT_MAXOUT_PIECES,
            optimizer_options: OptimizerOptions::default(),
            qat: None,
        }
    }

    /// The tabular recipe, sized to a training table of `rows` samples, `inputs` features and
    /// `classes` classes: features standardized per column, one ReLU hidden layer of
    /// `clamp(2 · inputs, 16, 64)` units, Adam one-cycle peaking at 1e-2, batch
    /// `clamp(rows / 10, 8, 32)`, enough epochs for about 3,000 steps (20 to 300), dropout
    /// 0.2. (`host train --csv` also holds out a stratified 20% test split without
    /// `--csv-test`.)
    pub fn tabular(rows: usize, inputs: usize, classes: usize) -> Self {
        let _ = classes;
        let batch_size = (rows / 10).clamp(8, 32);
        let per_epoch = (rows / batch_size).max(1);
        TrainSettings {
            hidden: vec![(2 * inputs).clamp(16, 64)],
            activation: ActivationArg::Relu,
            optimizer: OptimizerArg::Adam,
            lr: Some(1e-2),
            schedule: Schedule::OneCycle,
            batch_size,
            epochs: 3000usize.div_ceil(per_epoch).clamp(20, 300),
            seed: 777,
            dropout: 0.2,
            batch_norm: false,
            weight_decay: 0.0,
            val_split: 0.0,
            grad_clip: None,
            normalization: NormalizationArg::PerFeature,
            early_stop: None,
            max_norm: None,
            maxout_pieces: DEFAULT_MAXOUT_PIECES,
            optimizer_options: OptimizerOptions::default(),
            qat: None,
            augment: None,
        }
    }

    /// The hidden layers' core activation.
    pub fn hidden_activation(&self) -> Activation {
        self.activation.to_core(self.maxout_pieces)
    }

    /// Whether 0-based `epoch` trains quantization-aware: the last `qat` epochs.
    pub fn is_qat_epoch(&self, epoch: usize) -> bool {
        self.qat.is_some_and(|q| epoch + q >= self.epochs)
    }

    /// The optimizer.
    pub fn optimizer(&self) -> Optimizer {
        self.optimizer_options.apply(self.optimizer.to_core(self.weight_decay))
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
                let l = LayerSpec::dense(w, self.hidden_activation()).with_dropout(self.dropout);
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
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay {} must be 0 or a positive number", self.weight_decay);
        }
        if let Some(c) = self.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                bail!("--grad-clip {c} must be a positive number");
            }
        }
        if let Some(c) = self.max_norm {
            if !(c.is_finite() && c > 0.0) {
                bail!("--max-norm {c} must be a positive number");
            }
        }
        if self.activation != ActivationArg::Maxout && self.maxout_pieces != DEFAULT_MAXOUT_PIECES {
            bail!("--maxout-pieces applies to maxout units only: add --activation maxout");
        }
        if self.activation == ActivationArg::Maxout {
            let k = self.maxout_pieces;
            if !(2..=MAX_MAXOUT_PIECES).contains(&k) {
                bail!("--maxout-pieces {k} is outside 2 to {MAX_MAXOUT_PIECES}: each maxout unit takes the max of K >= 2 affine pieces");
            }
            if self.batch_norm {
                bail!("--activation maxout with --batch-norm is not supported (batch norm would normalize each of the K pieces): leave out --batch-norm or use --activation relu");
            }
        }
        match self.qat {
            Some(0) => bail!("--qat needs at least 1 epoch of quantization-aware training (e.g. --qat 3)"),
            Some(q) if q > self.epochs => bail!(
                "--qat {q} asks for more quantization-aware epochs than the run has (--epochs {}): \
                 give --qat at most {}, or more --epochs",
                self.epochs,
                self.epochs
            ),
            _ => {}
        }
        match self.early_stop {
            Some(0) => bail!("--early-stop needs a patience of at least 1 epoch"),
            Some(p) if self.val_split <= 0.0 => bail!(
                "--early-stop {p} watches the validation loss, and this run has no validation split: \
                 add --val-split 0.1 (10% of the training set held out)"
            ),
            _ => {}
        }
        let optimizer = self.optimizer();
        self.optimizer_options.check_for(&optimizer)?;
        if self.weight_decay > 0.0 && !optimizer.has_weight_decay() {
            bail!(
                "--optimizer {} has no weight decay (PyTorch's has none either): leave --weight-decay out",
                optimizer.name()
            );
        }
        if matches!(optimizer, Optimizer::Lbfgs(_)) && self.dropout > 0.0 {
            bail!(
                "--optimizer lbfgs evaluates the full-batch loss several times per step, and its \
                 line search and curvature pairs assume the same function each time, which random \
                 dropout masks break: add --dropout 0"
            );
        }
        if matches!(optimizer, Optimizer::Lbfgs(_)) && self.qat.is_some() {
            bail!(
                "--qat is not implemented for --optimizer lbfgs (its full-batch steps do not run \
                 fake-quantized): train with another optimizer, or leave --qat out and quantize \
                 afterwards (host quantize)"
            );
        }
        optimizer.validate().context("invalid optimizer settings")?;
        Ok(())
    }
}
