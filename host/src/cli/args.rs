//! The flags of every subcommand, as clap parses them. What they resolve to (settings, data
//! sets) is in [`super::settings`] and [`super::datasets`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use data::augment::Augment;
use data::catalog::IdxDataSet;

use crate::export::{ExportDType, Format};
use crate::schedule::Schedule;
use crate::train::{ActivationArg, DeviceArg, NormalizationArg, OptimizerArg, OptimizerOptions};

/// Where training data comes from.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// A folder of IDX files (MNIST, Fashion-MNIST, KMNIST; .gz or raw). Default: $MNIST_DIR,
    /// else ./data/mnist, else MNIST is downloaded into ./data/mnist.
    #[arg(long, value_name = "DIR", conflicts_with = "csv")]
    pub data: Option<PathBuf>,
    /// The IDX data set: mnist (default), fashion-mnist or kmnist. It gives the class names
    /// (stored in the model, drawn in the plots) and the folder when --data is not given:
    /// $FASHION_MNIST_DIR or $KMNIST_DIR, else ./data/fashion-mnist or ./data/kmnist, else it
    /// is downloaded there. E.g. `host train --dataset fashion-mnist`.
    #[arg(long, value_name = "NAME", value_parser = parse_dataset, conflicts_with = "csv")]
    pub dataset: Option<&'static IdxDataSet<'static>>,
    /// A CSV file of tabular data instead (one sample per row).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// A CSV file to report test metrics on (same columns as --csv).
    #[arg(long, value_name = "FILE", requires = "csv")]
    pub csv_test: Option<PathBuf>,
    /// The CSV label column: a header name or a 0-based index (default: the header column
    /// named label, class, target, species or y, in any case).
    #[arg(long, value_name = "COLUMN", requires = "csv")]
    pub label: Option<String>,
}

/// A named starting point for the training options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Recipe {
    /// 784-512-256-10 ReLU, dropout 0.2, Adam one-cycle peak 2e-3, batch 128, 12 epochs
    Default,
    /// The PyTorch tutorial: 784-256-10 ReLU, Adam 1e-3 constant, batch 256, 10 epochs
    Tutorial,
    /// The most accurate MNIST recipe within 3 minutes of a 2-core CPU (99.31%): 784-800-800-10
    /// ReLU, --augment default, Adam one-cycle peak 2e-3, batch 128, 24 epochs
    Best,
    /// For CSV tables (the default with --csv): per-feature standardization, one hidden layer
    /// sized to the features, batch and epochs sized to the rows, a stratified 20% test split
    /// held out when no --csv-test is given
    Tabular,
}

/// `host train` options. Each one left out comes from the recipe.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The recipe the other options start from (default: `default` when no model or
    /// optimization option is given, else `tutorial`, so options mean what they mean in the
    /// PyTorch tutorial).
    #[arg(long, value_enum)]
    pub recipe: Option<Recipe>,
    /// Hidden layer widths, e.g. 256 or 512,256; `none` for no hidden layer.
    #[arg(long, value_name = "WIDTHS", value_parser = parse_hidden)]
    pub hidden: Option<Hidden>,
    /// Hidden-layer activation.
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// Pieces per unit of --activation maxout (default 2): each hidden unit is the max of K
    /// affine maps of its inputs, so a layer has K times the weights. CPU only for now; not
    /// quantizable to int8. E.g. --activation maxout --maxout-pieces 3 --hidden 256
    #[arg(long, value_name = "K")]
    pub maxout_pieces: Option<u8>,
    /// Optimizer. lbfgs trains full batch, one step per epoch, e.g.
    /// `--optimizer lbfgs --lbfgs-line-search strong-wolfe --lbfgs-history 10 --dropout 0`.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    // Boxed: the `Command` enum stays small (clippy's large_enum_variant).
    #[command(flatten)]
    pub optimizer_options: Box<OptimizerOptions>,
    /// (Peak) learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Learning-rate schedule, stepped every batch.
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// Samples per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Passes over the training set.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of initialization, shuffling, dropout and the validation split.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Dropout rate after each hidden layer (0 turns it off).
    #[arg(long, allow_negative_numbers = true)]
    pub dropout: Option<f32>,
    /// Batch norm before each hidden activation.
    #[arg(long)]
    pub batch_norm: bool,
    /// Weight decay (L2; decoupled with adamw, where it defaults to 0.01 as in PyTorch).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// Fraction of the training set held out for validation (its loss and accuracy are
    /// printed every epoch and drawn in the curves; needed by --early-stop).
    #[arg(long, allow_negative_numbers = true)]
    pub val_split: Option<f32>,
    /// Clip gradients to this global L2 norm.
    #[arg(long, allow_negative_numbers = true)]
    pub grad_clip: Option<f32>,
    /// Max-norm constraint (dropout paper; Keras MaxNorm): after every step, each hidden
    /// unit's incoming weights (a row of W, not the bias; output layer excluded) are
    /// rescaled to L2 norm at most C. 3 to 4 is customary with dropout. CPU only for now.
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    pub max_norm: Option<f32>,
    /// Early stopping on the validation loss: stop after PATIENCE epochs without a lower
    /// validation loss, and save the best epoch's model (weights and batch-norm statistics)
    /// to --out. Needs --val-split (e.g. --val-split 0.1); the checkpoint keeps the best
    /// model and the count, so --resume continues it.
    #[arg(long, value_name = "PATIENCE")]
    pub early_stop: Option<usize>,
    /// Quantization-aware training for the last EPOCHS epochs (default: the last third,
    /// rounded up): weights and activations fake-quantized as `host quantize` will, the
    /// gradient passing straight through. Then `host quantize` gives the int8 model it
    /// trained for. CPU only; not with --batch-norm. See ARCHITECTURE.md, "Training options".
    #[arg(long, value_name = "EPOCHS", num_args = 0..=1)]
    pub qat: Option<Option<usize>>,
    /// Distort every training image at random, anew each epoch (IDX image data only; the
    /// validation and test sets are never distorted). Alone: `default`, i.e.
    /// rotate=10,shift=1,scale=0.1,shear=10,elastic=34:4; or a SPEC of comma-separated
    /// rotate=DEG, shift=PX, scale=F, shear=DEG, elastic=ALPHA:SIGMA (Simard's elastic
    /// distortion), the keys left out being off. E.g. `--augment rotate=15,elastic=36:6`.
    /// Plots then include augmented.png (originals next to their distortions).
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "default",
          value_parser = parse_augment)]
    pub augment: Option<Augment>,
    /// Input normalization.
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationArg>,
    /// Where to train: the CPU, or an NVIDIA GPU through CUDA (the GPU path has not yet been
    /// run on hardware; see README.md, "GPU").
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// With --device gpu: let cuBLAS use TF32 tensor cores for the products.
    #[arg(long)]
    pub tf32: bool,
    /// Where to save the trained model [default: model.mlp, or with --resume the run's own].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write per-epoch metrics as JSON here.
    #[arg(long, value_name = "FILE.json")]
    pub metrics: Option<PathBuf>,
    /// Folder for the PNG plots (curves, 5x5 predictions, confusion matrix).
    #[arg(long, default_value = "plots")]
    pub plots: PathBuf,
    /// Skip the plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Checkpoint written after every epoch (default: the --out path + ".ckpt").
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue a run from its checkpoint (its settings; --epochs may extend it).
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `host eval` options.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model file.
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Evaluate on the training split instead of the test split (IDX data).
    #[arg(long)]
    pub train_split: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the 5x5 prediction grid and confusion matrix PNGs into this folder.
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

/// `host predict` options.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model file.
    pub model: PathBuf,
    /// Digit images: PNG or PGM, any size; a dark digit on light paper is inverted.
    #[arg(required_unless_present = "csv")]
    pub images: Vec<PathBuf>,
    /// A CSV file of rows to classify (a model trained on a CSV table): one line per row with
    /// the class and its probability. A label column, if the file has one, is left out.
    #[arg(long, value_name = "FILE", conflicts_with = "images")]
    pub csv: Option<PathBuf>,
}

/// `host inspect` options.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The model file.
    pub model: PathBuf,
}

/// What `host compare` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The tutorials' homework: six hidden layers of 64, sigmoid vs ReLU
    Homework,
    /// 784-256-10 with SGD (momentum) vs Adam vs RMSprop
    Optimizers,
}

/// `host compare` options.
#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The configurations to compare.
    #[arg(long, value_enum, default_value_t = Preset::Homework)]
    pub preset: Preset,
    /// Epochs per configuration.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Seed shared by every configuration.
    #[arg(long, default_value_t = 777)]
    pub seed: u64,
    /// Folder for the chart.
    #[arg(long, default_value = "plots")]
    pub plots: PathBuf,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE.json")]
    pub metrics: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `host quantize` options.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The f32 model file.
    pub model: PathBuf,
    /// Where to write the int8 model file.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Training samples used to calibrate activation ranges.
    #[arg(long, default_value_t = crate::quant::CALIBRATION_SAMPLES, value_name = "N")]
    pub calibration: usize,
    /// Use the P-th percentile of each activation instead of its min/max (e.g. 99.99).
    #[arg(long, value_name = "P")]
    pub percentile: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Overwrite the f32 model itself when --out names it.
    #[arg(long)]
    pub force: bool,
    /// How requantization rounds: double (gemmlowp: TFLite's default build, TFLite Micro's
    /// reference kernels) or single (TFLITE_SINGLE_ROUNDING: LiteRT's PyPI wheels; choose it
    /// for a `host export --format tflite` that LiteRT runs bit for bit).
    #[arg(long, value_enum, default_value_t = Rounding::Double)]
    pub rounding: Rounding,
}

/// `host quantize --rounding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Rounding {
    /// Two roundings (gemmlowp's SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT).
    Double,
    /// One rounding of the 64-bit product.
    Single,
}

/// `host export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model file (f32 or int8).
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to write the model.
    #[arg(long)]
    pub out: PathBuf,
    /// Parameter type: int8 quantizes an f32 model on training images first [default: int8
    /// for rust, bin, c and tflite; f32 for onnx and safetensors].
    #[arg(long, value_enum)]
    pub dtype: Option<ExportDType>,
    /// MNIST folder (IDX files), for calibration and images. Default: $MNIST_DIR, else
    /// ./data/mnist, else it is downloaded there.
    #[arg(long, value_name = "DIR", conflicts_with = "csv")]
    pub data: Option<PathBuf>,
    /// A CSV file to calibrate on instead (a model trained on a CSV table).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// The CSV label column (as for `host train`).
    #[arg(long, value_name = "COLUMN", requires = "csv")]
    pub label: Option<String>,
    /// Training samples used to calibrate activation ranges when quantizing.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub calibration: usize,
    /// Calibrate on the P-th percentile of each activation instead of its min/max.
    #[arg(long, value_name = "P")]
    pub percentile: Option<f64>,
    /// Also write the first N test images with their labels and the host's outputs.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub images: usize,
    /// Also write the first N training images and labels (for on-device training).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub train_images: usize,
    /// Where to write the images (default: next to --out, named `<stem>_images.rs` or `.h`).
    #[arg(long, value_name = "PATH")]
    pub images_out: Option<PathBuf>,
    /// The part's flash (bytes, or K/M, e.g. 256K): fail, naming the sizes, if the model, the
    /// images and about 6 KiB of firmware code do not fit (rust, c and bin).
    #[arg(long, value_name = "SIZE", value_parser = crate::export::flash::parse_flash)]
    pub flash: Option<crate::export::flash::FlashSize>,
}

/// `host import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The model to import: ONNX, safetensors or TFLite (told apart by their bytes).
    /// An ONNX model's external data files are read from its folder, never outside it. TFLite:
    /// int8 FULLY_CONNECTED MLPs as the TF converter writes them from Keras, run bit-identically
    /// to LiteRT.
    pub file: PathBuf,
    /// Where to write the model file (f32 for ONNX and safetensors, int8 for TFLite).
    #[arg(long)]
    pub out: PathBuf,
    /// The input normalization the model was trained with, which its weights do not show
    /// [default: what the file records (our exports do), else scale].
    #[arg(long, value_enum)]
    pub normalization: Option<ImportNormalization>,
    /// The hidden activation of a safetensors state_dict whose metadata does not name it
    /// (as `train --activation` spells it) [default: relu, said in the output].
    #[arg(long, value_enum, value_name = "NAME")]
    pub activation: Option<ActivationArg>,
}

/// `host import --normalization`: how raw pixels became the model's inputs in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportNormalization {
    /// Pixels / 255 (torchvision's ToTensor; Keras' Rescaling(1/255))
    Scale,
    /// ToTensor then Normalize((0.1307,), (0.3081,)), the MNIST tutorials' statistics
    Standardize,
    /// Raw values as stored (pixels 0..255)
    None,
}

/// `host download` options.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The data set: mnist, fashion-mnist or kmnist, e.g. `host download --dataset kmnist`.
    #[arg(long, value_name = "NAME", value_parser = parse_dataset, default_value = "mnist")]
    pub dataset: &'static IdxDataSet<'static>,
    /// Destination folder [default: ./data/mnist, ./data/fashion-mnist or ./data/kmnist].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Mirror base URL to try (repeatable; default: the usual public mirrors).
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
}

/// `--dataset`: one of the IDX data sets the data crate knows.
fn parse_dataset(text: &str) -> Result<&'static IdxDataSet<'static>, String> {
    data::catalog::find(text).map_err(|e| e.to_string())
}

/// `--augment`: a strength SPEC (see `data::augment::Augment`).
fn parse_augment(text: &str) -> Result<Augment, String> {
    text.parse().map_err(|e: data::Error| e.to_string())
}

/// `--hidden`: layer widths, each at least 1, or `none` for no hidden layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden(pub Vec<usize>);

fn parse_hidden(text: &str) -> Result<Hidden, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Hidden(Vec::new()));
    }
    let mut widths = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let w: usize = part
            .parse()
            .map_err(|_| format!("'{part}' is not a layer width: give widths like 512,256, or none"))?;
        if w == 0 {
            return Err(
                "a hidden layer needs at least 1 unit; for no hidden layer write --hidden none".into()
            );
        }
        widths.push(w);
    }
    Ok(Hidden(widths))
}
