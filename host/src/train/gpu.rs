//! The epoch loop on a CUDA GPU (`host train --device gpu`) through the `gpu` crate. The data
//! sets are uploaded once; each epoch uploads the loader's sample order, the schedule's
//! learning rates and the dropout masks (drawn from the same RNG as on the CPU), and brings
//! back the epoch's loss and accuracy; parameters come back into core's flat layout after
//! every epoch for the checkpoint and the model file.

use anyhow::{anyhow, bail, Result};
use mlp::{Rng, TrainConfig};

use super::{Checkpoint, EpochPlan, EpochStats, Evaluation, RunData, EVAL_BATCH};
use data::{DataLoader, Dataset, Features};

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
    /// Uploads `run`'s model, optimizer state and step count, and the data sets, to `g`.
    pub(super) fn start(
        g: &gpu::Gpu,
        config: TrainConfig,
        run: &Checkpoint,
        data: &RunData,
    ) -> Result<GpuRun> {
        let m = &run.model;
        let start = gpu::Start {
            params: &m.params,
            running: &m.running,
            optimizer_state: &run.optimizer_state,
            steps: run.steps,
        };
        let trainer = gpu::GpuTrainer::new(g, &m.topology, config, start, &m.input.scale, &m.input.offset)?;
        Ok(GpuRun {
            trainer,
            train: upload(g, &data.train)?,
            val: data.val.as_ref().map(|d| upload(g, d)).transpose()?,
            test: data.test.as_ref().map(|d| upload(g, d)).transpose()?,
        })
    }

    /// One epoch in the loader's order (the loader must be set to the epoch), summed as the
    /// CPU loop sums it.
    pub(super) fn epoch(
        &mut self,
        loader: &DataLoader<'_>,
        plan: &EpochPlan<'_>,
        rng: &mut Rng,
    ) -> Result<EpochStats> {
        let EpochPlan { settings, epoch, base_lr, total_steps, per_epoch, .. } = *plan;
        let steps = self.trainer.steps();
        let lrs: Vec<f32> = (0..per_epoch)
            .map(|k| settings.schedule.lr(base_lr, steps + k, total_steps, per_epoch))
            .collect();
        let drop_last = loader.options().drop_last;
        match self.trainer.epoch(&self.train, loader.order(), settings.batch_size, drop_last, &lrs, rng) {
            Ok(s) => Ok(EpochStats {
                loss_sum: s.loss_sum,
                correct: s.correct,
                seen: s.samples,
                lr: lrs.last().copied().unwrap_or(base_lr),
                // An epoch is one graph on the device: a stop is seen between epochs.
                interrupted: false,
            }),
            Err(gpu::GpuError::Diverged { step }) => bail!(
                "training diverged at epoch {}, batch {step}: the loss is NaN or infinite; \
                 lower the learning rate (--lr {}) or clip gradients (--grad-clip 1.0)",
                epoch + 1,
                lrs.get(step.saturating_sub(1)).copied().unwrap_or(base_lr)
            ),
            Err(e) => Err(anyhow!(e).context(format!("epoch {} on the GPU", epoch + 1))),
        }
    }

    /// Copies the parameters, running statistics, optimizer state and step count back into
    /// `run`.
    pub(super) fn download(&self, run: &mut Checkpoint) -> Result<()> {
        self.trainer.download(&mut run.model.params, &mut run.model.running, &mut run.optimizer_state)?;
        run.steps = self.trainer.steps();
        Ok(())
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
