//! Where training runs: the `--device` flag and the device it opens.

use anyhow::{anyhow, bail, Result};

/// Where training runs, as named on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The CPU (host kernels)
    #[default]
    Cpu,
    /// An NVIDIA GPU through CUDA (driver, NVRTC and cuBLAS 13 needed at run time)
    Gpu,
}

/// Where [`super::train_on`] runs the training steps.
#[derive(Clone, Debug, Default)]
pub enum Device {
    /// The CPU, with the host's kernels.
    #[default]
    Cpu,
    /// A CUDA GPU.
    Gpu(gpu::Gpu),
}

impl Device {
    /// Opens the device named on the command line; `tf32` lets cuBLAS use TF32 tensor cores
    /// (GPU only). Errors: "no CUDA device found: ..." with what to do, when there is none.
    pub fn open(arg: DeviceArg, tf32: bool) -> Result<Device> {
        match arg {
            DeviceArg::Cpu if tf32 => bail!("--tf32 applies to --device gpu"),
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Gpu => gpu::Gpu::new(0, gpu::GpuOptions { tf32 })
                .map(Device::Gpu)
                .map_err(|e| anyhow!("{e} (--device cpu, the default)")),
        }
    }

    /// A one-line description for the run's header, `None` for the CPU.
    pub fn describe(&self) -> Option<String> {
        match self {
            Device::Cpu => None,
            Device::Gpu(g) => Some(format!("GPU {}", g.describe())),
        }
    }
}
