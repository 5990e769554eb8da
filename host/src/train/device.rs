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
    /// Not a GPU: the GPU path's kernels run on the CPU by an emulator, to check the GPU code
    /// where there is no GPU (far slower than --device cpu)
    GpuEmulator,
}

/// Where [`super::train_on`] runs the training steps.
#[derive(Clone, Debug, Default)]
pub enum Device {
    /// The CPU, with the host's kernels.
    #[default]
    Cpu,
    /// A CUDA GPU (or the GPU path's CPU emulator).
    Gpu(gpu::Gpu),
}

impl Device {
    /// Opens the device named on the command line; `tf32` lets cuBLAS use TF32 tensor cores
    /// (GPU only). Errors: "no CUDA device found: ..." with what to do, when there is none.
    pub fn open(arg: DeviceArg, tf32: bool) -> Result<Device> {
        match arg {
            DeviceArg::Cpu | DeviceArg::GpuEmulator if tf32 => bail!("--tf32 applies to --device gpu"),
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Gpu => gpu::Gpu::new(0, gpu::GpuOptions { tf32 })
                .map(Device::Gpu)
                .map_err(|e| anyhow!("{e} (--device cpu, the default)")),
            DeviceArg::GpuEmulator => gpu::Gpu::emulator().map(Device::Gpu).map_err(|e| anyhow!("{e}")),
        }
    }

    /// A one-line description for the run's header, `None` for the CPU.
    pub fn describe(&self) -> Option<String> {
        match self {
            Device::Cpu => None,
            Device::Gpu(g) if g.is_emulator() => Some(g.describe()),
            Device::Gpu(g) => Some(format!("GPU {}", g.describe())),
        }
    }
}
