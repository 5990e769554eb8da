//! The `host` command line: train, eval, predict, inspect, compare, quantize, export, download.
//!
//! This module is the top level (the subcommands, their help examples, the dispatch); the
//! flags are declared in [`args`], resolved into settings and data sets in [`settings`] and
//! [`datasets`], and each command's handler has its own file; [`report`] holds the
//! lines and plots several commands share.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod args;
mod compare;
mod datasets;
mod download;
mod eval;
mod export;
mod import;
mod inspect;
mod predict;
mod quantize;
mod report;
mod settings;
mod tabular;
mod train;

pub use train::Interrupted;

pub use args::{
    CompareArgs, DataArgs, DownloadArgs, EvalArgs, ExportArgs, ImportArgs, InspectArgs, PredictArgs, Preset,
    QuantizeArgs, Recipe, TrainArgs,
};

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
    Train(Box<TrainArgs>),
    /// Evaluate a model: loss, accuracy, per-class accuracy, confusion matrix.
    #[command(
        after_help = "Examples:\n  host eval model.mlp\n  host eval model.mlp --json\n  host eval model.mlp --csv iris-test.csv"
    )]
    Eval(EvalArgs),
    /// Classify digit images (PNG or PGM, any size) with a model: top-3 classes.
    #[command(
        after_help = "Examples:\n  host predict model.mlp my-digit.png\n  host predict model.mlp a.pgm b.png c.png\n  host predict iris.mlp --csv rows.csv"
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
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Import a model trained elsewhere: ONNX (torch.onnx.export), safetensors (a PyTorch
    /// nn.Sequential state_dict) or an int8 .tflite (the TF converter), into a model file.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
    /// Download MNIST (with SHA-256 checks) into a folder.
    #[command(
        after_help = "Examples:\n  host download\n  host download --dir /data/mnist\n  host download --dataset fashion-mnist   # into ./data/fashion-mnist\n  host download --dataset kmnist --dir /data/kmnist"
    )]
    Download(DownloadArgs),
}

/// `host import --help` examples.
const IMPORT_EXAMPLES: &str = "Examples:
  host import mlp.onnx --out model.mlp                  # torch.onnx.export of an nn.Sequential
  host import mlp.safetensors --out model.mlp --activation relu
  host import mlp.onnx --out model.mlp --normalization standardize   # Normalize((0.1307,), (0.3081,))
  host import keras_int8.tflite --out q8.mlp            # an int8 model from the TF converter
The input normalization the model was trained with is not in the weights: --normalization
says it (default scale: pixels / 255, torchvision's ToTensor), unless the file records it.";

/// `host train --help` examples.
const TRAIN_EXAMPLES: &str = "Examples:
  host train                                    # the default recipe on MNIST (>= 98.3%)
  host train --recipe tutorial                  # the PyTorch tutorial's 784-256-10, Adam 1e-3
  host train --hidden 256 --optimizer adam --lr 0.001 --batch-size 256 --epochs 10
                                                # options apply to the tutorial recipe
  host train --hidden 512,256 --batch-norm --schedule cosine --metrics run.json
  host train --csv iris.csv --label species --hidden 16 --epochs 200 --normalization per-feature
  host train --resume model.mlp.ckpt --epochs 20
  host train --recipe tutorial --epochs 50 --val-split 0.1 --early-stop 5 --max-norm 3
                                                # keeps the epoch with the lowest validation loss
  host train --hidden 256 --activation maxout --maxout-pieces 3
                                                # maxout units, each the max of 3 affine pieces
  host train --hidden 32 --epochs 12 --qat      # the last 4 of 12 epochs quantization-aware
  host train --recipe tutorial --device gpu     # on an NVIDIA GPU (CUDA 13)
  host train --dataset fashion-mnist --recipe tutorial
                                                # Fashion-MNIST, its class names in the model

MNIST comes from --data DIR, else $MNIST_DIR, else ./data/mnist, else it is downloaded there.
--dataset fashion-mnist (kmnist): --data DIR, else $FASHION_MNIST_DIR ($KMNIST_DIR), else
./data/fashion-mnist (./data/kmnist), else it is downloaded there.";

/// `host export --help` examples.
const EXPORT_EXAMPLES: &str = "Examples:
  host export model.mlp --format rust --out firmware/generated/model.rs --images 100 --train-images 300
                                  # int8 (quantized on 1000 MNIST training images) for firmware/
  host export model.mlp --format rust --dtype f32 --out firmware/generated/model_f32.rs --images 100
  host export q8.mlp --format bin --out model.bin      # the model file, for include_bytes! or flash
  host export model.mlp --format c --out model.h --images 10

With --images N, the first N MNIST test images, their labels and the host's outputs go to
<out stem>_images.rs (or .h), and the host's line per image to <out stem>_images.expected.txt.
An int8 --format c export also writes mlp_runtime.c and mlp_runtime.h beside the header: the
integer-only C99 code that runs it, bit-identical to the host (docs/C.md).";

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

/// Runs one subcommand.
pub fn run_command(command: Command) -> Result<()> {
    match command {
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Download(a) => download::run(a),
        Command::Export(a) => export::run(a),
        Command::Import(a) => import::run(a),
    }
}
