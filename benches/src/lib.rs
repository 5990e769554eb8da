//! Shared setup for the criterion benches in `benches/cpu.rs`: the data (MNIST from
//! `$MNIST_DIR`, else synthetic data of the same shape), the PyTorch tutorial's 784-256-10
//! model with He init, and its int8 quantization.
//!
//! Run the benches with `cargo bench -p benches` (or `MNIST_DIR=../shared/data/mnist cargo
//! bench -p benches` for the real data set; inference and step timings hardly depend on it).

use std::path::PathBuf;

use anyhow::{Context, Result};
use data::{idx, Dataset, Features};
use mlp::init::{initialize, Init};
use mlp::{int8, Activation, InputTransform, LayerSpec, Model, Portable, Rng, Topology};

/// MNIST's image width × height.
pub const INPUTS: usize = 784;
/// MNIST's classes.
pub const CLASSES: usize = 10;
/// The tutorial model's hidden width.
pub const HIDDEN: usize = 256;
/// The MNIST training set size.
pub const TRAIN_SAMPLES: usize = 60_000;
/// The MNIST test set size.
pub const TEST_SAMPLES: usize = 10_000;

/// The benches' data: MNIST or a synthetic stand-in of the same shape.
#[derive(Debug)]
pub struct BenchData {
    /// 60,000 training samples (u8 pixels).
    pub train: Dataset,
    /// 10,000 test samples (u8 pixels).
    pub test: Dataset,
    /// Whether the data is synthetic (no `$MNIST_DIR`).
    pub synthetic: bool,
}

impl BenchData {
    /// MNIST from `$MNIST_DIR` when set, else synthetic data (saying so on stderr).
    pub fn load() -> Result<Self> {
        match std::env::var_os("MNIST_DIR") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                let (train, test) =
                    idx::load_mnist(&dir).with_context(|| format!("loading MNIST from {}", dir.display()))?;
                eprintln!(
                    "benches: MNIST from {} ({} train, {} test)",
                    dir.display(),
                    train.len(),
                    test.len()
                );
                Ok(BenchData { train, test, synthetic: false })
            }
            None => {
                eprintln!(
                    "benches: MNIST_DIR is not set: using synthetic data of MNIST's shape \
                     ({TRAIN_SAMPLES} train, {TEST_SAMPLES} test, 784 u8 pixels, 10 classes)"
                );
                Ok(BenchData {
                    train: synthetic("synthetic train", TRAIN_SAMPLES, 1)?,
                    test: synthetic("synthetic test", TEST_SAMPLES, 2)?,
                    synthetic: true,
                })
            }
        }
    }
}

/// `samples` random MNIST-shaped samples: about 80% zero pixels like MNIST, random labels.
pub fn synthetic(name: &str, samples: usize, seed: u64) -> Result<Dataset> {
    let mut rng = Rng::new(seed);
    let pixels: Vec<u8> =
        (0..samples * INPUTS).map(|_| if rng.below(5) == 0 { rng.below(256) as u8 } else { 0 }).collect();
    let labels: Vec<u32> = (0..samples).map(|_| rng.below(CLASSES as u32)).collect();
    Ok(Dataset::new(name, Features::U8(pixels), INPUTS, labels, CLASSES, None)?.with_image_shape(28, 28)?)
}

/// The raw u8 pixels of the first `samples` rows of `data` (cycling when it has fewer).
pub fn raw_u8(data: &Dataset, samples: usize) -> Vec<u8> {
    let n = data.input_len();
    let all: Vec<u8> = match data.features() {
        Features::U8(v) => v.clone(),
        Features::F32(v) => v.iter().map(|&x| x.clamp(0.0, 255.0) as u8).collect(),
    };
    all.chunks_exact(n).cycle().take(samples).flatten().copied().collect()
}

/// The first `samples` rows of `data` scaled to [0, 1] (pixels / 255, the tutorial's input).
pub fn scaled_f32(data: &Dataset, samples: usize) -> Vec<f32> {
    raw_u8(data, samples).into_iter().map(|p| p as f32 / 255.0).collect()
}

/// The first `samples` labels of `data` (cycling when it has fewer).
pub fn labels(data: &Dataset, samples: usize) -> Vec<u32> {
    data.labels().iter().cycle().take(samples).copied().collect()
}

/// The PyTorch tutorial's network: 784-256-10, ReLU, softmax output.
pub fn tutorial_topology() -> Topology {
    Topology::new(
        INPUTS,
        &[LayerSpec::dense(HIDDEN, Activation::Relu), LayerSpec::dense(CLASSES, Activation::Softmax)],
    )
    .expect("784-256-10 is a valid topology")
}

/// He-normal initial parameters for `topology` (seed 777, the tutorial recipe's).
pub fn he_params(topology: &Topology) -> Vec<f32> {
    let mut params = vec![0.0; topology.param_len()];
    initialize(topology, &mut params, Init::HeNormal, &mut Rng::new(777)).expect("initialize");
    params
}

/// Quantizes the f32 model to an int8 model file, calibrated with min/max ranges on
/// `calibration` (network inputs, pixels / 255), for raw u8 pixels (input transform / 255).
pub fn quantize_int8(topology: &Topology, params: &[f32], calibration: &[f32]) -> Result<Vec<u8>> {
    let model = Model::new(topology, params, &[])?;
    let samples = calibration.len() / topology.input();
    let batch = 250.min(samples).max(1);
    let mut ws = vec![0.0; topology.infer_workspace_len(batch)];
    let mut ranges = int8::Ranges::new();
    for chunk in calibration.chunks(batch * topology.input()) {
        int8::calibrate(&Portable, &model, chunk, chunk.len() / topology.input(), &mut ws, &mut ranges)?;
    }
    let transform = InputTransform::Global { scale: 1.0 / 255.0, offset: 0.0 };
    let mut scratch = vec![0.0; int8::scratch_len(topology)];
    let mut file = vec![0u8; int8::encoded_len(topology, &transform)];
    int8::quantize(topology, params, &[], &ranges, &transform, &mut scratch, &mut file)?;
    Ok(file)
}
