//! The epoch loop on the CPU: core's trainer with the host kernels, one step per batch of
//! the loader, the inputs transformed as the loader copies them; for L-BFGS, one full-batch
//! step per epoch, its loss and gradient summed over the loader's batches.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use mlp::int8::FakeQuant;
use mlp::loss::count_correct;
use mlp::optim::{Lbfgs, Objective};
use mlp::{Error as CoreError, Optimizer, Rng, Targets, Topology, TrainBuffers, TrainConfig, Trainer};

use super::{Checkpoint, EpochPlan, EpochStats};
use crate::quant;
use cpu::f32::Fast;
use cpu::pool::{with_spinning_pool, with_spinning_pool_and};
use data::DataLoader;

/// Quantization-aware steps between two calibrations of the activation ranges (and one at
/// the start of every such epoch), so the ranges follow the weights as they move and the last
/// ones used are within this many steps of what `host quantize` measures on the saved model.
pub const QAT_CALIBRATION_INTERVAL: usize = 50;

/// The CPU's scratch for a run: gradients, the trainer's workspace and one batch.
pub(super) struct CpuRun<'t> {
    topology: &'t Topology,
    config: TrainConfig,
    grads: Vec<f32>,
    workspace: Vec<f32>,
    x: Vec<f32>,
    y: Vec<u32>,
    /// The f32 master weights during a quantization-aware step (empty until the first).
    masters: Vec<f32>,
}

impl<'t> CpuRun<'t> {
    /// Buffers for `topology` trained with `config` on the loader's batches.
    pub(super) fn new(topology: &'t Topology, config: TrainConfig, loader: &DataLoader<'_>) -> Self {
        CpuRun {
            topology,
            config,
            grads: vec![0.0; topology.param_len()],
            workspace: vec![0.0; topology.train_workspace_len(config.max_batch)],
            x: loader.input_buffer(),
            y: loader.label_buffer(),
            masters: Vec::new(),
        }
    }

    /// One epoch over `loader` (set to the epoch), updating `run`'s parameters, running
    /// statistics, optimizer state and step count; `bar` shows the progress since `started`.
    pub(super) fn epoch(
        &mut self,
        run: &mut Checkpoint,
        loader: &mut DataLoader<'_>,
        plan: &EpochPlan<'_>,
        rng: &mut Rng,
        bar: &ProgressBar,
        started: Instant,
    ) -> Result<EpochStats> {
        let CpuRun { topology, config, grads, workspace, x, y, masters } = self;
        if plan.qat.is_some() {
            masters.resize(topology.param_len(), 0.0);
        }
        let model = &mut run.model;
        let input_len = topology.input();
        // The steps run on one of rayon's threads, so that the kernels' parallel parts
        // start on the pool directly instead of waking it from outside at every product,
        // and the pool's other threads poll for those parts instead of sleeping between
        // them (see `cpu::pool`); while they have none, they distort the next batch's images.
        let idle = loader.idle_work();
        let (stats, steps) = with_spinning_pool_and(&idle, || -> Result<_> {
            let mut trainer = Trainer::new(
                topology,
                *config,
                TrainBuffers {
                    params: &mut model.params,
                    grads,
                    running: &mut model.running,
                    optimizer_state: &mut run.optimizer_state,
                    workspace,
                },
            )?;
            trainer.set_steps(run.steps);
            let kernels = Fast::new();
            let mut stats =
                EpochStats { loss_sum: 0.0, correct: 0, seen: 0, lr: plan.base_lr, interrupted: false };
            let mut batch_index = 0;
            let mut fake_quant = None;
            while let Some(n) = loader.next_batch_affine(x, y, &model.input.scale, &model.input.offset) {
                if plan.stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                    stats.interrupted = true;
                    break;
                }
                if let Some(data) = plan.qat.filter(|_| batch_index % QAT_CALIBRATION_INTERVAL == 0) {
                    let (samples, method) = (quant::CALIBRATION_SAMPLES, quant::Calibration::MinMax);
                    let ranges = quant::calibrate_view(&trainer.model(), &model.input, data, samples, method)
                        .context("calibrating activation ranges for --qat")?;
                    fake_quant = Some(FakeQuant::from_ranges(topology, &ranges).context("--qat")?);
                }
                batch_index += 1;
                let inputs = &mut x[..n * input_len];
                let lr = plan.settings.schedule.lr(
                    plan.base_lr,
                    trainer.steps(),
                    plan.total_steps,
                    plan.per_epoch,
                );
                stats.lr = lr;
                let targets = Targets::Labels(&y[..n]);
                let step = match &fake_quant {
                    Some(fq) => trainer.step_fake_quant(&kernels, inputs, targets, lr, rng, fq, masters),
                    None => trainer.step(&kernels, inputs, targets, lr, rng),
                };
                let step = match step {
                    Err(CoreError::NonFinite { what }) => bail!(
                        "training diverged at epoch {}, batch {batch_index}: {what} is NaN or infinite; \
                         lower the learning rate (--lr {}) or clip gradients (--grad-clip 1.0)",
                        plan.epoch + 1,
                        lr
                    ),
                    other => {
                        other.with_context(|| format!("epoch {}, batch {batch_index}", plan.epoch + 1))?
                    }
                };
                if let Some(c) = plan.settings.max_norm {
                    trainer.apply_max_norm(c)?;
                }
                stats.loss_sum += step.loss as f64 * n as f64;
                stats.correct += step.correct;
                stats.seen += n;
                if batch_index % 8 == 0 || batch_index as u64 == plan.per_epoch {
                    let rate = stats.seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    bar.set_position(batch_index as u64);
                    bar.set_message(format!(
                        "loss {:.4}  {:.0} samples/s",
                        stats.loss_sum / stats.seen as f64,
                        rate
                    ));
                }
            }
            Ok((stats, trainer.steps()))
        })?;
        run.steps = steps;
        Ok(stats)
    }

    /// One L-BFGS step over the whole training set (the epoch of an L-BFGS run): the loss and
    /// gradient are the means over every sample, summed batch by batch in the loader's order
    /// for this epoch (the same order for every evaluation of the step). The epoch's training
    /// loss and accuracy are those at the start of the step.
    pub(super) fn lbfgs_epoch(
        &mut self,
        run: &mut Checkpoint,
        loader: &mut DataLoader<'_>,
        plan: &EpochPlan<'_>,
        lbfgs: Lbfgs,
    ) -> Result<EpochStats> {
        let CpuRun { topology, config, grads, workspace, x, y, .. } = self;
        let lr = plan.settings.schedule.lr(plan.base_lr, run.steps, plan.total_steps, plan.per_epoch);
        let model = &mut run.model;
        let mut objective = FullBatch {
            topology,
            // The objective only runs forward and backward: no optimizer state of its own.
            config: TrainConfig { optimizer: Optimizer::sgd(), ..*config },
            loader,
            epoch: plan.epoch as u64,
            params: vec![0.0; model.params.len()],
            grads,
            running: &mut model.running,
            workspace,
            x,
            y,
            scale: &model.input.scale,
            offset: &model.input.offset,
            first: None,
        };
        let step = with_spinning_pool(|| {
            lbfgs.step(&mut model.params, &mut run.optimizer_state, lr, &mut objective)
        });
        match step {
            Err(CoreError::NonFinite { what }) => bail!(
                "training diverged at epoch {} (L-BFGS step): {what} is NaN or infinite; lower the \
                 learning rate (--lr {lr}) or use --lbfgs-line-search strong-wolfe",
                plan.epoch + 1
            ),
            other => other.with_context(|| format!("epoch {} (L-BFGS step)", plan.epoch + 1))?,
        };
        run.steps += 1;
        let (loss_sum, correct, seen) = objective.first.unwrap_or((0.0, 0, 0));
        Ok(EpochStats { loss_sum, correct, seen, lr, interrupted: false })
    }
}

/// The mean loss and gradient over a whole training set: the objective of an L-BFGS step.
struct FullBatch<'r, 'd> {
    topology: &'r Topology,
    config: TrainConfig,
    loader: &'r mut DataLoader<'d>,
    epoch: u64,
    /// The point being evaluated (the trainer needs its own, writable copy).
    params: Vec<f32>,
    grads: &'r mut [f32],
    running: &'r mut [f32],
    workspace: &'r mut [f32],
    x: &'r mut [f32],
    y: &'r mut [u32],
    scale: &'r [f32],
    offset: &'r [f32],
    /// The first evaluation's loss sum, correct count and samples: the epoch's train metrics.
    first: Option<(f64, usize, usize)>,
}

impl Objective for FullBatch<'_, '_> {
    fn evaluate(&mut self, params: &[f32], grads_out: &mut [f32]) -> Result<f32, CoreError> {
        self.params.copy_from_slice(params);
        grads_out.fill(0.0);
        let mut trainer = Trainer::new(
            self.topology,
            self.config,
            TrainBuffers {
                params: &mut self.params,
                grads: &mut *self.grads,
                running: &mut *self.running,
                optimizer_state: &mut [],
                workspace: &mut *self.workspace,
            },
        )?;
        let kernels = Fast::new();
        // Dropout is refused with L-BFGS, so this generator draws nothing.
        let mut rng = Rng::new(0);
        let (classes, input_len) = (self.topology.output(), self.topology.input());
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        self.loader.set_epoch(self.epoch);
        while let Some(n) = self.loader.next_batch_affine(self.x, self.y, self.scale, self.offset) {
            let inputs = &self.x[..n * input_len];
            let labels = Targets::Labels(&self.y[..n]);
            let outputs = trainer.forward(&kernels, inputs, n, &mut rng)?;
            correct += count_correct(outputs, classes, labels, 0.5);
            let loss = trainer.backward(&kernels, inputs, labels)?;
            // Each batch's gradient is its mean: weighted by its size, then divided by the total.
            for (o, &g) in grads_out.iter_mut().zip(trainer.grads()) {
                *o += g * n as f32;
            }
            loss_sum += loss as f64 * n as f64;
            seen += n;
        }
        if seen == 0 {
            return Err(CoreError::EmptyBatch);
        }
        let inv = 1.0 / seen as f32;
        grads_out.iter_mut().for_each(|g| *g *= inv);
        self.first.get_or_insert((loss_sum, correct, seen));
        Ok((loss_sum / seen as f64) as f32)
    }
}
