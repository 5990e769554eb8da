//! `gpu`: core's MLP training step on an NVIDIA GPU through [cudarc].
//!
//! **Status: not yet run on a GPU.** Every line runs on the CPU emulator ([`Gpu::emulator`]:
//! kernels.cu compiled as C++, a bounds-checking reference BLAS, recorded graphs), where the
//! kernel and agreement tests pass against core; on a GPU the same tests are
//! `cargo test -p gpu -- --ignored cuda::` (or `scripts/gpu-check.sh`). See docs/GPU.md.
//!
//! What runs where:
//! - the data set lives on the device as stored (`u8` pixels or `f32` values) with its
//!   labels; each step gathers its batch through the epoch's sample order (uploaded once per
//!   epoch, the CPU loader's order for the same seed) and normalizes it on the fly with the
//!   model's input pipeline (`x = raw · scale + offset`);
//! - dense products are cuBLAS SGEMMs on the row-major buffers (row-major `C = A·B` is
//!   column-major `Cᵀ = Bᵀ·Aᵀ`), bias gradients an SGEMV against a vector of ones;
//! - everything else is CUDA C compiled once per process by NVRTC (`kernels.cu`): bias +
//!   activation + dropout, activation backward, batch norm (train, backward, eval), the three
//!   losses with their gradients and accuracy, gradient-norm clipping, and one optimizer
//!   kernel for all nine of core's optimizers over the flat parameter buffer;
//! - per-step values (learning rate, Adam's bias corrections, computed on the host in f64 as
//!   core does; dropout bits; the loss slot) are indexed by a step counter that lives on the
//!   device, so every launch is identical from step to step and the full-batch step is
//!   captured once into a CUDA graph and replayed; only per-epoch losses and counts come
//!   back;
//! - parameters, optimizer state and batch-norm running statistics use core's flat layout
//!   ([`mlp::Topology::param_ranges`]), so [`GpuTrainer::download`] fills the same buffers
//!   `mlp::Trainer` works on and the host writes the same model file.
//!
//! Dropout masks are drawn on the host from the caller's [`mlp::Rng`] in exactly the order
//! `mlp::Trainer::forward` draws them and uploaded as bits, so a GPU run sees the same masks
//! as the CPU run with the same seed.
//!
//! With no GPU, [`Gpu::new`] returns [`GpuError::NoDevice`] (the crate builds without any
//! CUDA installed: the libraries are loaded at run time; the emulator needs a C++17
//! compiler at build time, g++ or clang++, through the `cc` crate).

mod backend;
mod dataset;
mod device;
mod emulator;
#[cfg(test)]
mod kernel_tests;
mod memory;
mod trainer;

pub use dataset::{DeviceDataset, Features};
pub use device::{Gpu, GpuOptions};
pub use trainer::{EpochStats, EvalStats, GpuTrainer, Start};

use std::fmt;

/// What can go wrong on the GPU path.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuError {
    /// No usable CUDA device: no driver, no CUDA libraries, a stub driver, or no GPU. The
    /// message says which and what to do.
    NoDevice(String),
    /// A CUDA driver call failed.
    Driver {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        error: String,
    },
    /// A cuBLAS call failed.
    Blas(String),
    /// NVRTC could not compile the kernels (with its log).
    Compile(String),
    /// The model, optimizer or data are invalid (the same checks as core's trainer).
    Core(mlp::Error),
    /// Arguments that do not fit (lengths, batch sizes, labels).
    Invalid(String),
    /// The loss (or, with clipping, the gradient norm) became NaN or infinite at this step of
    /// the epoch (1-based). As core's trainer leaves them: the parameters and optimizer state
    /// are those from before that step; batch-norm running statistics include that step's
    /// batch (its forward pass ran) and nothing after it.
    Diverged {
        /// The 1-based step within the epoch (the batch number).
        step: usize,
    },
}

impl GpuError {
    pub(crate) fn driver(what: &'static str, e: cudarc::driver::DriverError) -> Self {
        // The error code's name (e.g. CUDA_ERROR_OUT_OF_MEMORY); cuGetErrorString is not
        // called so that formatting an error never needs the driver library.
        GpuError::Driver { what, error: format!("{:?}", e.0) }
    }
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoDevice(why) => write!(f, "no CUDA device found: {why}"),
            GpuError::Driver { what, error } => write!(f, "CUDA error while {what}: {error}"),
            GpuError::Blas(e) => write!(f, "cuBLAS error: {e}"),
            GpuError::Compile(log) => write!(f, "NVRTC could not compile the GPU kernels: {log}"),
            GpuError::Core(e) => write!(f, "{e}"),
            GpuError::Invalid(e) => f.write_str(e),
            GpuError::Diverged { step } => {
                write!(f, "the loss or gradient norm is NaN or infinite at batch {step} of the epoch")
            }
        }
    }
}

impl std::error::Error for GpuError {}

impl From<mlp::Error> for GpuError {
    fn from(e: mlp::Error) -> Self {
        GpuError::Core(e)
    }
}
