//! The `host` command line: train, eval, predict, inspect, compare, quantize, export, download.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::quant::{self, AnyModel, Calibration};
use crate::schedule::Schedule;
use crate::train::{
    self, ActivationArg, Checkpoint, EpochMetrics, Evaluation, NormalizationArg, OptimizerArg, RunData,
    RunOptions, TrainSettings,
};
use data::{self, csv::CsvOptions, csv::LabelColumn, Dataset, Features, Row};

/// Train, evaluate and ship a multi-layer perceptron: MNIST in one command, then int8 and
/// a Cortex-M board.
#[derive(Debug, Parser)]
#[command(name = "host", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Threads for training, evaluation and the int8 kernels (default: one per core, or
    /// RAYON_NUM_THREADS). Results are the same bits for any count.
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a classifier (MNIST by default) and save the model, metrics and plots.
    #[command(after_help = TRAIN_EXAMPLES)]
    Train(TrainArgs),
    /// Evaluate a model: loss, accuracy, per-class accuracy, confusion matrix.
    #[command(
        after_help = "Examples:\n  host eval model.mlp\n  host eval model.mlp --json\n  host eval model.mlp --csv iris-test.csv"
    )]
    Eval(EvalArgs),
    /// Classify digit images (PNG or PGM, any size) with a model: top-3 classes.
    #[command(
        after_help = "Examples:\n  host predict model.mlp my-digit.png\n  host predict model.mlp a.pgm b.png c.png"
    )]
    Predict(PredictArgs),
    /// Show a model's layers, shapes, parameter counts and size.
    #[command(after_help = "Example:\n  host inspect model.mlp")]
    Inspect(InspectArgs),
    /// Train several configurations and draw their curves on one chart.
    #[command(
        after_help = "Examples:\n  host compare                       # six sigmoid vs six ReLU hidden layers\n  host compare --preset optimizers   # SGD vs Adam vs RMSprop\n  host compare --epochs 3 --plots out"
    )]
    Compare(CompareArgs),
    /// Quantize an f32 model to int8 (integer-only inference) and report the accuracy change.
    #[command(
        after_help = "Examples:\n  host quantize model.mlp --out model-q8.mlp\n  host quantize model.mlp --out model-q8.mlp --calibration 2000 --percentile 99.99"
    )]
    Quantize(QuantizeArgs),
    /// Export a model for firmware: Rust source (static arrays), a .bin model file or a C
    /// header, quantized to int8 by default; optionally with MNIST images and the host's outputs.
    #[command(after_help = crate::export::EXAMPLES)]
    Export(crate::export::ExportArgs),
    /// Download MNIST (with SHA-256 checks) into a folder.
    #[command(after_help = "Examples:\n  host download\n  host download --dir /data/mnist")]
    Download(DownloadArgs),
}

const TRAIN_EXAMPLES: &str = "Examples:
  host train                                    # the default recipe on MNIST (>= 98.3%)
  host train --recipe tutorial                  # the PyTorch tutorial's 784-256-10, Adam 1e-3
  host train --hidden 256 --optimizer adam --lr 0.001 --batch-size 256 --epochs 10
                                                # options apply to the tutorial recipe
  host train --hidden 512,256 --batch-norm --schedule cosine --metrics run.json
  host train --csv iris.csv --label species --hidden 16 --epochs 200 --normalization per-feature
  host train --resume model.mlp.ckpt --epochs 20
  host train --recipe tutorial --device gpu     # on an NVIDIA GPU (CUDA 13)

MNIST comes from --data DIR, else $MNIST_DIR, else ./data/mnist, else it is downloaded there.";

/// Where training data comes from.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// A folder of IDX files (MNIST, Fashion-MNIST, KMNIST; .gz or raw). Default: $MNIST_DIR,
    /// else ./data/mnist, else MNIST is downloaded into ./data/mnist.
    #[arg(long, value_name = "DIR", conflicts_with = "csv")]
    pub data: Option<PathBuf>,
    /// A CSV file of tabular data instead (one sample per row).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// A CSV file to report test metrics on (same columns as --csv).
    #[arg(long, value_name = "FILE", requires = "csv")]
    pub csv_test: Option<PathBuf>,
    /// The CSV label column: a header name or a 0-based index (default: the last column).
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
    /// Hidden layer widths, e.g. 256 or 512,256.
    #[arg(long, value_delimiter = ',', value_name = "WIDTHS")]
    pub hidden: Option<Vec<usize>>,
    /// Hidden-layer activation.
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// Optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// (Peak) learning rate.
    #[arg(long)]
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
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Batch norm before each hidden activation.
    #[arg(long)]
    pub batch_norm: bool,
    /// Weight decay (L2; decoupled with adamw).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Fraction of the training set held out for validation.
    #[arg(long)]
    pub val_split: Option<f32>,
    /// Clip gradients to this global L2 norm.
    #[arg(long)]
    pub grad_clip: Option<f32>,
    /// Input normalization.
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationArg>,
    /// Where to train: the CPU, or an NVIDIA GPU through CUDA (the GPU path has not yet been
    /// run on hardware; see README.md, "GPU").
    #[arg(long, value_enum, default_value_t = train::DeviceArg::Cpu)]
    pub device: train::DeviceArg,
    /// With --device gpu: let cuBLAS use TF32 tensor cores for the products.
    #[arg(long)]
    pub tf32: bool,
    /// Where to save the trained model.
    #[arg(long, default_value = "model.mlp")]
    pub out: PathBuf,
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

impl TrainArgs {
    /// Whether any option that shapes the model or its optimization was given.
    fn any_training_option(&self) -> bool {
        self.hidden.is_some()
            || self.activation.is_some()
            || self.optimizer.is_some()
            || self.lr.is_some()
            || self.schedule.is_some()
            || self.batch_size.is_some()
            || self.epochs.is_some()
            || self.dropout.is_some()
            || self.batch_norm
            || self.weight_decay.is_some()
            || self.grad_clip.is_some()
            || self.normalization.is_some()
    }

    /// The recipe the options apply to: `--recipe`, else the default recipe when no
    /// training option is given, else the tutorial's.
    pub fn recipe(&self) -> Recipe {
        self.recipe.unwrap_or(if self.any_training_option() { Recipe::Tutorial } else { Recipe::Default })
    }

    /// The run's settings: the recipe with every given option applied.
    pub fn settings(&self) -> TrainSettings {
        let base = match self.recipe() {
            Recipe::Default => TrainSettings::default_recipe(),
            Recipe::Tutorial => TrainSettings::tutorial(),
        };
        let mut s = base.clone();
        if let Some(h) = &self.hidden {
            s.hidden = h.iter().copied().filter(|&w| w > 0).collect();
        }
        if let Some(v) = self.activation {
            s.activation = v;
        }
        if let Some(v) = self.optimizer {
            s.optimizer = v;
            // A different optimizer gets its own customary rate unless --lr says otherwise.
            if v != base.optimizer {
                s.lr = None;
            }
        }
        if let Some(v) = self.lr {
            s.lr = Some(v);
        }
        if let Some(v) = self.schedule {
            s.schedule = v;
        }
        if let Some(v) = self.batch_size {
            s.batch_size = v;
        }
        if let Some(v) = self.epochs {
            s.epochs = v;
        }
        if let Some(v) = self.seed {
            s.seed = v;
        }
        if let Some(v) = self.dropout {
            s.dropout = v;
        }
        s.batch_norm |= self.batch_norm;
        if let Some(v) = self.weight_decay {
            s.weight_decay = v;
        }
        if let Some(v) = self.val_split {
            s.val_split = v;
        }
        if self.grad_clip.is_some() {
            s.grad_clip = self.grad_clip;
        }
        if let Some(v) = self.normalization {
            s.normalization = v;
        }
        s
    }
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
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
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
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub calibration: usize,
    /// Use the P-th percentile of each activation instead of its min/max (e.g. 99.99).
    #[arg(long, value_name = "P")]
    pub percentile: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `host download` options.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Destination folder.
    #[arg(long, default_value = data::download::DEFAULT_MNIST_DIR)]
    pub dir: PathBuf,
    /// Mirror base URL to try (repeatable; default: the usual public mirrors).
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.threads {
        Some(n) => {
            let threads = cpu::pool::Threads::new(n).map_err(|e| anyhow::anyhow!("--threads {n}: {e}"))?;
            threads.install(|| run_command(cli.command))
        }
        None => run_command(cli.command),
    }
}

fn run_command(command: Command) -> Result<()> {
    match command {
        Command::Train(a) => cmd_train(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Predict(a) => cmd_predict(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Compare(a) => cmd_compare(a),
        Command::Quantize(a) => cmd_quantize(a),
        Command::Download(a) => cmd_download(a),
        Command::Export(a) => crate::export::run(a),
    }
}

/// Training and test data named by the data options.
fn load_data(args: &DataArgs) -> Result<(Dataset, Option<Dataset>)> {
    match &args.csv {
        Some(path) => {
            let mut opts = CsvOptions::default();
            if let Some(l) = &args.label {
                opts.label = match l.parse::<usize>() {
                    Ok(i) => LabelColumn::Index(i),
                    Err(_) => LabelColumn::Name(l.clone()),
                };
            }
            let train = data::csv::load_csv(path, &opts)?;
            let test = match &args.csv_test {
                Some(p) => {
                    // Same class numbering as the training file.
                    if let Some(names) = train.class_names() {
                        opts.labels = data::csv::Labels::Classes(names.to_vec());
                    }
                    opts.num_classes = Some(train.num_classes());
                    Some(data::csv::load_csv(p, &opts)?)
                }
                None => None,
            };
            Ok((train, test))
        }
        None => {
            let dir = data::download::resolve_mnist_dir(args.data.as_deref())?;
            let (train, test) = data::idx::load_mnist(&dir)?;
            Ok((train, Some(test)))
        }
    }
}

fn describe(s: &TrainSettings, inputs: usize, classes: usize) -> String {
    let mut widths = vec![inputs.to_string()];
    widths.extend(s.hidden.iter().map(|w| w.to_string()));
    widths.push(classes.to_string());
    let mut extras = Vec::new();
    if s.dropout > 0.0 {
        extras.push(format!("dropout {}", s.dropout));
    }
    if s.batch_norm {
        extras.push("batch norm".to_string());
    }
    if s.weight_decay > 0.0 {
        extras.push(format!("weight decay {}", s.weight_decay));
    }
    if let Some(c) = s.grad_clip {
        extras.push(format!("clip {c}"));
    }
    format!(
        "{} {:?}{}, {:?} lr {} ({:?} schedule), batch {}, {} epochs, seed {}",
        widths.join("-"),
        s.activation,
        if extras.is_empty() { String::new() } else { format!(" + {}", extras.join(", ")) },
        s.optimizer,
        s.learning_rate(),
        s.schedule,
        s.batch_size,
        s.epochs,
        s.seed
    )
    .to_lowercase()
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{:.2}%", 100.0 * v))
}

fn loss(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

fn print_epoch(m: &EpochMetrics, epochs: usize) {
    let mut line = format!(
        "epoch {:>2}/{epochs}  train loss {:.4} acc {}",
        m.epoch,
        m.train_loss,
        pct(Some(m.train_accuracy))
    );
    if m.val_loss.is_some() {
        line += &format!("  val loss {} acc {}", loss(m.val_loss), pct(m.val_accuracy));
    }
    if m.test_loss.is_some() {
        line += &format!("  test loss {} acc {}", loss(m.test_loss), pct(m.test_accuracy));
    }
    line += &format!("  {:.2}s ({:.0} samples/s)", m.seconds, m.samples_per_second);
    println!("{line}");
}

fn curves(name: &str, history: &[EpochMetrics]) -> crate::plot::RunCurves {
    let (eval_loss, eval_accuracy, eval_label): (Vec<f64>, Vec<f64>, &str) =
        if history.iter().all(|m| m.test_loss.is_some()) {
            (
                history.iter().filter_map(|m| m.test_loss).collect(),
                history.iter().filter_map(|m| m.test_accuracy).collect(),
                "test",
            )
        } else {
            (
                history.iter().filter_map(|m| m.val_loss).collect(),
                history.iter().filter_map(|m| m.val_accuracy).collect(),
                "validation",
            )
        };
    crate::plot::RunCurves {
        name: name.to_string(),
        train_loss: history.iter().map(|m| m.train_loss).collect(),
        train_accuracy: history.iter().map(|m| m.train_accuracy).collect(),
        eval_loss,
        eval_accuracy,
        eval_label: eval_label.to_string(),
    }
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let resume = a.resume.as_deref().map(Checkpoint::load).transpose()?;
    let settings = match &resume {
        Some(ck) => {
            let mut s = ck.settings.clone();
            if let Some(e) = a.epochs {
                s.epochs = e;
            }
            if s.epochs <= ck.epochs_done {
                bail!(
                    "the checkpoint already has {} of {} epochs; pass --epochs N with N > {} to train further",
                    ck.epochs_done,
                    s.epochs,
                    ck.epochs_done
                );
            }
            s
        }
        None => a.settings(),
    };
    settings.validate()?;
    let device = train::Device::open(a.device, a.tf32)?;
    let (train_set, test_set) = load_data(&a.data)?;
    let data = RunData::new(train_set, test_set, &settings)?;
    let (inputs, classes) = (data.train.input_len(), data.train.num_classes());
    match &resume {
        Some(ck) => println!(
            "Resuming {} at epoch {} of {}: {}",
            a.resume.as_deref().unwrap_or(Path::new("")).display(),
            ck.epochs_done + 1,
            settings.epochs,
            describe(&settings, inputs, classes)
        ),
        None => println!(
            "Training {} on {} ({} samples{}): {}",
            match (a.recipe(), a.any_training_option()) {
                (Recipe::Default, false) =>
                    "the default recipe (options or --recipe tutorial for the PyTorch tutorial's)",
                (Recipe::Default, true) => "the default recipe with your options",
                (Recipe::Tutorial, false) => "the tutorial recipe",
                (Recipe::Tutorial, true) => "the tutorial recipe with your options",
            },
            data.train.name(),
            data.train.len(),
            data.val.as_ref().map_or(String::new(), |v| format!(", {} held out for validation", v.len())),
            describe(&settings, inputs, classes)
        ),
    }
    if let Some(d) = device.describe() {
        println!("Device: {d}");
    }
    let checkpoint = a.checkpoint.clone().unwrap_or_else(|| {
        let mut p = a.out.clone().into_os_string();
        p.push(".ckpt");
        PathBuf::from(p)
    });
    let options = RunOptions { progress: !a.quiet, checkpoint: Some(checkpoint.clone()) };
    let epochs = settings.epochs;
    let trained = train::train_on(&device, &settings, &data, resume, &options, &mut |m| {
        print_epoch(m, epochs);
        ControlFlow::Continue(())
    })?;
    trained.model.save(&a.out)?;
    let params = trained.model.topology.param_len();
    let final_test = trained.history.last().and_then(|m| m.test_accuracy);
    println!("Saved {} ({} parameters); checkpoint {}", a.out.display(), params, checkpoint.display());
    if let Some(path) = &a.metrics {
        let doc = json!({
            "config": settings,
            "epochs": trained.history,
            "test_accuracy": final_test,
            "parameters": params,
            "steps": trained.steps,
        });
        crate::model_io::write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
        println!("Metrics: {}", path.display());
    }
    if !a.no_plots {
        std::fs::create_dir_all(&a.plots).with_context(|| format!("cannot create {}", a.plots.display()))?;
        let curves_path = a.plots.join("curves.png");
        crate::plot::training_curves(
            &curves_path,
            &describe(&settings, inputs, classes),
            &[curves("this run", &trained.history)],
        )?;
        let mut written = vec![curves_path];
        if let Some(test) = &data.test {
            let eval = train::evaluate(&trained.model, test)?;
            written.extend(eval_plots(&a.plots, test, &eval)?);
        }
        let list: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!("Plots: {}", list.join(", "));
    }
    if let Some(acc) = final_test {
        println!("Final test accuracy: {:.2}%", 100.0 * acc);
    }
    Ok(())
}

/// The 5x5 grid of the first 25 samples (when they are images) and the confusion matrix.
fn eval_plots(dir: &Path, data: &Dataset, eval: &Evaluation) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let names: Vec<String> = match data.class_names() {
        Some(n) => n.to_vec(),
        None => (0..eval.confusion.len()).map(|c| c.to_string()).collect(),
    };
    if let (Some((h, w)), Features::U8(_)) = (data.image_shape(), data.features()) {
        let n = data.len().min(25);
        let images: Vec<&[u8]> = (0..n)
            .filter_map(|i| match data.row(i) {
                Some(Row::U8(r)) => Some(r),
                _ => None,
            })
            .collect();
        let predicted: Vec<usize> = eval.predictions[..n].iter().map(|&p| p as usize).collect();
        let labels: Vec<usize> = data.labels()[..n].iter().map(|&l| l as usize).collect();
        let path = dir.join("predictions.png");
        crate::plot::prediction_grid(&path, &images, w, h, &predicted, &labels, data.class_names())?;
        written.push(path);
    }
    let path = dir.join("confusion.png");
    crate::plot::confusion_matrix(
        &path,
        &eval.confusion,
        &names,
        &format!("{}: confusion matrix", data.name()),
    )?;
    written.push(path);
    Ok(written)
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let model = AnyModel::load(&a.model)?;
    let data = if a.train_split {
        if a.data.csv.is_some() {
            bail!("--train-split is for IDX data; pass the CSV file you want to evaluate with --csv");
        }
        let dir = data::download::resolve_mnist_dir(a.data.data.as_deref())?;
        data::idx::load_split(&dir, data::idx::Split::Train)?
    } else {
        let (train, test) = load_data(&a.data)?;
        // With only --csv, evaluate that file.
        test.unwrap_or(train)
    };
    let eval = model.evaluate(&data)?;
    let classes = eval.confusion.len();
    let per_class: Vec<Option<f64>> = eval
        .confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: u64 = row.iter().sum();
            (total > 0).then(|| row[c] as f64 / total as f64)
        })
        .collect();
    if a.json {
        let doc = json!({
            "model": a.model.display().to_string(),
            "dtype": match model { AnyModel::F32(_) => "f32", AnyModel::Int8(_) => "int8" },
            "dataset": data.name(),
            "samples": eval.samples,
            "correct": eval.correct,
            "accuracy": eval.accuracy,
            "loss": eval.loss,
            "per_class_accuracy": per_class,
            "confusion": eval.confusion,
        });
        println!("{doc}");
    } else {
        println!("{} on {} ({} samples)", a.model.display(), data.name(), eval.samples);
        println!("accuracy {:.2}% ({} correct), loss {:.4}", 100.0 * eval.accuracy, eval.correct, eval.loss);
        println!("\nper class:");
        for (c, acc) in per_class.iter().enumerate() {
            let name = data.class_names().and_then(|n| n.get(c)).cloned().unwrap_or_else(|| c.to_string());
            println!("  {name:>10}  {}", pct(*acc));
        }
        println!("\nconfusion (rows: label, columns: predicted):");
        print!("{:>6}", "");
        for c in 0..classes {
            print!("{c:>6}");
        }
        println!();
        for (c, row) in eval.confusion.iter().enumerate() {
            print!("{c:>6}");
            for v in row {
                print!("{v:>6}");
            }
            println!();
        }
    }
    if let Some(dir) = &a.plots {
        let written = eval_plots(dir, &data, &eval)?;
        if !a.json {
            let list: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            println!("Plots: {}", list.join(", "));
        }
    }
    Ok(())
}

fn cmd_predict(a: PredictArgs) -> Result<()> {
    let model = AnyModel::load(&a.model)?;
    let inputs = model.topology()?.input();
    if inputs != 784 {
        bail!("{} takes {inputs} inputs, not a 28x28 image; predict is for digit models", a.model.display());
    }
    for path in &a.images {
        let pixels = crate::digit_image::load_digit(path)?;
        let raw: Vec<f32> = pixels.iter().map(|&p| p as f32).collect();
        let probs = model.probabilities(&raw, 1, true)?;
        let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
        let top: Vec<String> =
            ranked.iter().take(3).map(|(c, p)| format!("{c} ({:.1}%)", 100.0 * p)).collect();
        println!("{}: {}", path.display(), top.join(", "));
    }
    Ok(())
}

fn cmd_inspect(a: InspectArgs) -> Result<()> {
    let bytes = std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let file = mlp::ModelFile::parse(&bytes)
        .with_context(|| format!("{}: not a valid model file", a.model.display()))?;
    let t = file.topology();
    let int8 = file.dtype() == mlp::DType::Int8;
    println!(
        "{}: mlp model, {}, {} bytes (the flash it needs: {:.1} KiB)",
        a.model.display(),
        file.dtype().name(),
        bytes.len(),
        bytes.len() as f64 / 1024.0
    );
    println!("{:<7} {:>12} {:<12} {:>10}  extras", "layer", "shape", "activation", "params");
    for (i, l) in t.layers().iter().enumerate() {
        let r = t.param_ranges(i).context("layer ranges")?;
        let count = r.end() - r.weights.start;
        let mut extras = Vec::new();
        if l.batch_norm {
            extras.push("batch norm".to_string());
        }
        if l.dropout > 0.0 {
            extras.push(format!("dropout {}", l.dropout));
        }
        if int8 {
            extras.push("int8 weights, int32 bias".to_string());
        }
        println!(
            "{:<7} {:>12} {:<12} {:>10}  {}",
            i,
            format!("{}x{}", t.fan_in(i), l.outputs),
            l.activation.name(),
            count,
            extras.join(", ")
        );
    }
    println!("total parameters: {}", t.param_len());
    if file.has_input_transform() {
        let scales: Vec<(f32, f32)> = (0..t.input()).map(|j| file.input_scale_offset(j)).collect();
        match scales.windows(2).all(|w| w[0] == w[1]) {
            true => println!("input: x = raw * {} + {}", scales[0].0, scales[0].1),
            false => println!("input: per-feature scale and offset"),
        }
    } else {
        println!("input: raw values");
    }
    Ok(())
}

fn cmd_quantize(a: QuantizeArgs) -> Result<()> {
    let model = match AnyModel::load(&a.model)? {
        AnyModel::F32(m) => m,
        AnyModel::Int8(_) => {
            bail!("{} is already an int8 model; quantize its f32 original", a.model.display())
        }
    };
    let (train_set, test_set) = load_data(&a.data)?;
    let method = a.percentile.map_or(Calibration::MinMax, Calibration::Percentile);
    let ranges = quant::calibrate(&model, &train_set, a.calibration, method)?;
    let bytes = quant::quantize(&model, &ranges)?;
    crate::model_io::write_atomic(&a.out, &bytes)?;
    let f32_bytes = model.to_bytes()?.len();
    let eval_set = test_set.as_ref().unwrap_or(&train_set);
    let before = train::evaluate(&model, eval_set)?;
    let after = quant::evaluate_int8(&bytes, eval_set)?;
    let changed = before.predictions.iter().zip(&after.predictions).filter(|(x, y)| x != y).count();
    let calibration = match method {
        Calibration::MinMax => "min/max".to_string(),
        Calibration::Percentile(p) => format!("percentile {p}"),
    };
    if a.json {
        let doc = json!({
            "model": a.model.display().to_string(),
            "out": a.out.display().to_string(),
            "calibration": {"samples": a.calibration.min(train_set.len()), "method": calibration},
            "dataset": eval_set.name(),
            "samples": before.samples,
            "f32_accuracy": before.accuracy,
            "int8_accuracy": after.accuracy,
            "changed_predictions": changed,
            "f32_bytes": f32_bytes,
            "int8_bytes": bytes.len(),
        });
        println!("{doc}");
    } else {
        println!(
            "Calibrated on {} samples of {} ({calibration}); wrote {} ({} bytes, f32: {f32_bytes})",
            a.calibration.min(train_set.len()),
            train_set.name(),
            a.out.display(),
            bytes.len()
        );
        println!(
            "{}: f32 {:.2}%, int8 {:.2}% ({:+.2} pp); {changed} of {} predictions changed",
            eval_set.name(),
            100.0 * before.accuracy,
            100.0 * after.accuracy,
            100.0 * (after.accuracy - before.accuracy),
            before.samples
        );
    }
    Ok(())
}

fn cmd_compare(a: CompareArgs) -> Result<()> {
    let (train_set, test_set) = load_data(&a.data)?;
    let base = TrainSettings { epochs: a.epochs, seed: a.seed, ..TrainSettings::tutorial() };
    let runs: Vec<(String, TrainSettings)> = match a.preset {
        Preset::Homework => [ActivationArg::Sigmoid, ActivationArg::Relu]
            .into_iter()
            .map(|act| {
                (
                    format!("6x64 {act:?}").to_lowercase(),
                    TrainSettings { hidden: vec![64; 6], activation: act, ..base.clone() },
                )
            })
            .collect(),
        Preset::Optimizers => [
            ("sgd momentum 0.9, lr 0.01", OptimizerArg::Momentum, 0.01),
            ("adam, lr 0.001", OptimizerArg::Adam, 1e-3),
            ("rmsprop, lr 0.001", OptimizerArg::Rmsprop, 1e-3),
        ]
        .into_iter()
        .map(|(name, opt, lr)| {
            (name.to_string(), TrainSettings { optimizer: opt, lr: Some(lr), ..base.clone() })
        })
        .collect(),
    };
    let data = RunData::new(train_set, test_set, &base)?;
    let mut all = Vec::new();
    let mut results = Vec::new();
    for (name, settings) in &runs {
        println!("== {name}: {}", describe(settings, data.train.input_len(), data.train.num_classes()));
        let options = RunOptions { progress: !a.quiet, checkpoint: None };
        let trained = train::train(settings, &data, None, &options, &mut |m| {
            print_epoch(m, settings.epochs);
            ControlFlow::Continue(())
        })?;
        all.push(curves(name, &trained.history));
        results.push((name.clone(), trained.history));
    }
    println!("\n{:<28} {:>12} {:>12} {:>10}", "configuration", "train loss", "test acc", "s/epoch");
    for (name, h) in &results {
        let last = h.last().context("no epochs")?;
        let secs = h.iter().map(|m| m.seconds).sum::<f64>() / h.len() as f64;
        println!("{name:<28} {:>12.4} {:>12} {secs:>10.2}", last.train_loss, pct(last.test_accuracy));
    }
    std::fs::create_dir_all(&a.plots).with_context(|| format!("cannot create {}", a.plots.display()))?;
    let path = a.plots.join(format!("compare-{:?}.png", a.preset).to_lowercase());
    let title = match a.preset {
        Preset::Homework => "six hidden layers of 64 units: sigmoid vs relu (adam 1e-3, batch 256)",
        Preset::Optimizers => "784-256-10 relu: sgd with momentum vs adam vs rmsprop (batch 256)",
    };
    crate::plot::training_curves(&path, title, &all)?;
    println!("Chart: {}", path.display());
    if let Some(p) = &a.metrics {
        let doc: Vec<_> = results.iter().map(|(n, h)| json!({"name": n, "epochs": h})).collect();
        crate::model_io::write_atomic(p, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}

fn cmd_download(a: DownloadArgs) -> Result<()> {
    let mirrors: Vec<&str> = if a.mirrors.is_empty() {
        data::download::MNIST_MIRRORS.to_vec()
    } else {
        a.mirrors.iter().map(String::as_str).collect()
    };
    data::download::download_mnist(&a.dir, &mirrors, true)?;
    println!("MNIST is in {}", a.dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_args(args: &[&str]) -> TrainArgs {
        let argv = ["host", "train"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Train(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn bare_train_uses_the_default_recipe_and_options_apply_to_the_tutorial() {
        assert_eq!(train_args(&[]).settings(), TrainSettings::default_recipe());
        assert_eq!(train_args(&["--data", "d", "--quiet"]).settings(), TrainSettings::default_recipe());
        let literal = train_args(&[
            "--hidden",
            "256",
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
            "--batch-size",
            "256",
            "--epochs",
            "10",
        ]);
        assert_eq!(literal.settings(), TrainSettings::tutorial());
        let explicit = train_args(&["--recipe", "default", "--epochs", "3"]).settings();
        assert_eq!(explicit, TrainSettings { epochs: 3, ..TrainSettings::default_recipe() });
    }

    #[test]
    fn another_optimizer_gets_its_customary_rate_unless_lr_is_given() {
        let s = train_args(&["--optimizer", "sgd"]).settings();
        assert_eq!(s.learning_rate(), 0.01);
        let s = train_args(&["--optimizer", "adadelta"]).settings();
        assert_eq!(s.learning_rate(), 1.0);
        let s = train_args(&["--optimizer", "sgd", "--lr", "0.5"]).settings();
        assert_eq!(s.learning_rate(), 0.5);
    }
}
