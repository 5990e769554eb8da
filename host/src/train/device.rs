//! `host train --device gpu`: the epochs of [`super::train_on`] on a CUDA GPU through the
//! `gpu` crate. The data sets are uploaded once; each epoch uploads the loader's sample order,
//! the schedule's learning rates and the dropout masks (drawn from the same RNG as on the
//! CPU), and brings back the epoch's loss and accuracy; parameters come back into core's flat
//! layout after every epoch for the checkpoint and the model file.

use anyhow::{anyhow, bail, Result};
use mlp::{Rng, Topology, TrainConfig};

use super::{Evaluation, RunData, TrainSettings, EVAL_BATCH};
use crate::model_io::InputPipeline;
use data::{DataLoader, Dataset, Features};

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

/// A run's state on the GPU: the trainer and the data sets on the device.
pub(super) struct GpuRun {
    trainer: gpu::GpuTrainer,
    train: gpu::DeviceDataset,
    val: Option<gpu::DeviceDataset>,
    test: Option<gpu::DeviceDataset>,
}

fn upload(g: &gpu::Gpu, d: &Dataset) -> Result<gpu::DeviceDataset> {
    let features = match d.features() {
        Features::U8(v) => gpu::Features::U8(v),
        Features::F32(v) => gpu::Features::F32(v),
    };
    Ok(g.upload_dataset(features, d.labels(), d.input_len())?)
}

/// The loss and accuracy of a device evaluation, as an [`Evaluation`] without the confusion
/// matrix and predictions (only the metrics come back from the GPU).
fn evaluation(s: gpu::EvalStats) -> Evaluation {
    Evaluation {
        loss: s.loss,
        accuracy: s.correct as f64 / s.samples.max(1) as f64,
        correct: s.correct,
        samples: s.samples,
        confusion: Vec::new(),
        predictions: Vec::new(),
    }
}

impl GpuRun {
    /// Uploads the model, optimizer state and data sets when `device` is a GPU; `None` for
    /// the CPU.
    pub(super) fn start(
        device: &Device,
        topology: &Topology,
        config: TrainConfig,
        start: gpu::Start<'_>,
        pipeline: &InputPipeline,
        data: &RunData,
    ) -> Result<Option<GpuRun>> {
        let Device::Gpu(g) = device else { return Ok(None) };
        let trainer = gpu::GpuTrainer::new(g, topology, config, start, &pipeline.scale, &pipeline.offset)?;
        Ok(Some(GpuRun {
            trainer,
            train: upload(g, &data.train)?,
            val: data.val.as_ref().map(|d| upload(g, d)).transpose()?,
            test: data.test.as_ref().map(|d| upload(g, d)).transpose()?,
        }))
    }

    /// Optimizer steps taken so far.
    pub(super) fn steps(&self) -> u64 {
        self.trainer.steps()
    }

    /// One epoch in the loader's order for `epoch` (the loader must be set to it):
    /// `(loss sum, correct, samples, last learning rate)`, summed as the CPU loop sums them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn epoch(
        &mut self,
        loader: &DataLoader<'_>,
        epoch: usize,
        settings: &TrainSettings,
        base_lr: f32,
        total_steps: u64,
        per_epoch: u64,
        rng: &mut Rng,
    ) -> Result<(f64, usize, usize, f32)> {
        let steps = self.trainer.steps();
        let lrs: Vec<f32> = (0..per_epoch)
            .map(|k| settings.schedule.lr(base_lr, steps + k, total_steps, per_epoch))
            .collect();
        let drop_last = loader.options().drop_last;
        match self.trainer.epoch(&self.train, loader.order(), settings.batch_size, drop_last, &lrs, rng) {
            Ok(s) => Ok((s.loss_sum, s.correct, s.samples, lrs.last().copied().unwrap_or(base_lr))),
            Err(gpu::GpuError::Diverged { step }) => bail!(
                "training diverged at epoch {}, batch {step}: the loss is NaN or infinite; \
                 lower the learning rate (--lr {}) or clip gradients (--grad-clip 1.0)",
                epoch + 1,
                lrs.get(step.saturating_sub(1)).copied().unwrap_or(base_lr)
            ),
            Err(e) => Err(anyhow!(e).context(format!("epoch {} on the GPU", epoch + 1))),
        }
    }

    /// Copies the parameters, running statistics and optimizer state back.
    pub(super) fn download(&self, params: &mut [f32], running: &mut [f32], state: &mut [f32]) -> Result<()> {
        Ok(self.trainer.download(params, running, state)?)
    }

    /// Eval-mode loss and accuracy of the validation split and the test set, on the device.
    pub(super) fn evaluate(&mut self) -> Result<(Option<Evaluation>, Option<Evaluation>)> {
        let mut eval = |d: &Option<gpu::DeviceDataset>| -> Result<Option<Evaluation>> {
            match d {
                Some(d) => Ok(Some(evaluation(self.trainer.evaluate(d, EVAL_BATCH)?))),
                None => Ok(None),
            }
        };
        Ok((eval(&self.val)?, eval(&self.test)?))
    }
}
