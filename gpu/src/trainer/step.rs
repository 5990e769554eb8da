//! One training step's launches, its capture into a CUDA graph, and the graph's replay.

use cudarc::driver::LaunchConfig;
use mlp::{Error as CoreError, Loss};

use super::codes::{loss_code, optimizer_code};
use super::{GpuTrainer, F32, NORM_BLOCKS};
use crate::backend::{Arg, Graph};
use crate::dataset::DeviceDataset;
use crate::device::grid_1d;
use crate::GpuError;

/// Rows per block of the loss kernels (one warp per row).
const ROWS_PER_BLOCK: usize = 4;

pub(super) fn rows_config(batch: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (batch.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (32, ROWS_PER_BLOCK as u32, 1),
        shared_mem_bytes: 0,
    }
}

fn columns_config(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(32) as u32, 1, 1), block_dim: (32, 8, 1), shared_mem_bytes: 0 }
}

pub(super) fn single_block() -> LaunchConfig {
    LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

impl GpuTrainer {
    /// Queues one training step on `n` samples: the batch is `order[*ctr * stride ..][..n]`.
    /// Reads and writes only device memory, so it can be captured into a graph.
    pub(super) fn enqueue_step(&self, data: &DeviceDataset, n: usize, stride: usize) -> Result<(), GpuError> {
        let g = &self.gpu;
        let k = g.kernels();
        let (params, grads, running) =
            (self.ptr(&self.params), self.ptr(&self.grads), self.ptr(&self.running));
        let ctr = self.ptr(&self.ctr);
        let input = self.topology.input();
        let masks = self.ptr(&self.per_step.masks);
        let words = self.mask_step_words as i32;
        g.launch(
            &k.gather,
            grid_1d(n * input),
            &[
                Arg::P(self.opt_ptr(&data.bytes)),
                Arg::P(self.opt_ptr(&data.values)),
                Arg::P(self.ptr(&data.labels)),
                Arg::P(self.ptr(&self.order)),
                Arg::P(ctr),
                Arg::I(stride as i32),
                Arg::I(0),
                Arg::I(n as i32),
                Arg::I(input as i32),
                Arg::P(self.ptr(&self.scale)),
                Arg::P(self.ptr(&self.offset)),
                Arg::P(self.ptr(&self.x)),
                Arg::P(self.ptr(&self.labels)),
            ],
        )?;
        // Forward, train mode.
        let layer_input = |i: usize| -> u64 {
            if i == 0 {
                self.ptr(&self.x)
            } else {
                let p = &self.layers[i - 1];
                p.out.as_ref().map_or_else(|| self.ptr(&p.a), |o| self.ptr(o))
            }
        };
        for (i, l) in self.layers.iter().enumerate() {
            let total = n * l.outputs;
            let (w, b) = (params + F32 * l.w as u64, params + F32 * l.b as u64);
            let z = self.ptr(&l.z);
            let (mask_ptr, keep_scale) = match l.dropout {
                Some((_, scale, off)) => (masks + 4 * off as u64, scale),
                None => (0, 0.0),
            };
            let bias_for_act = if let (Some((gamma, beta)), Some((rm, rv)), Some(xh), Some(st)) =
                (l.bn, l.running, &l.x_hat, &l.stats)
            {
                let xh = self.ptr(xh);
                let st = self.ptr(st);
                self.forward_product(layer_input(i), w, xh, n, l.fan_in, l.outputs)?;
                g.launch(
                    &k.bn_train,
                    columns_config(l.outputs),
                    &[
                        Arg::P(xh),
                        Arg::P(b),
                        Arg::P(params + F32 * gamma as u64),
                        Arg::P(params + F32 * beta as u64),
                        Arg::P(z),
                        Arg::P(st),
                        Arg::P(st + F32 * l.outputs as u64),
                        Arg::P(running + F32 * rm as u64),
                        Arg::P(running + F32 * rv as u64),
                        Arg::I(n as i32),
                        Arg::I(l.outputs as i32),
                        Arg::P(self.ptr(&self.diverged)),
                    ],
                )?;
                0
            } else {
                self.forward_product(layer_input(i), w, z, n, l.fan_in, l.outputs)?;
                b
            };
            g.launch(
                &k.bias_act,
                grid_1d(total),
                &[
                    Arg::P(z),
                    Arg::P(self.ptr(&l.a)),
                    Arg::P(self.opt_ptr(&l.out)),
                    Arg::P(bias_for_act),
                    Arg::I(l.outputs as i32),
                    Arg::I(total as i32),
                    Arg::I(l.act),
                    Arg::F(l.alpha),
                    Arg::P(mask_ptr),
                    Arg::P(ctr),
                    Arg::I(words),
                    Arg::F(keep_scale),
                ],
            )?;
        }
        // Loss, its gradient and the batch's accuracy.
        let last = self.layers.last().ok_or(CoreError::NoLayers)?;
        let width = last.outputs;
        let loss = self.config.loss;
        let len = (n * width) as f32;
        let (grad_scale, mul, div) = match loss {
            Loss::CrossEntropy => {
                let inv_b = 1.0 / n as f32;
                (inv_b, inv_b, 1.0)
            }
            Loss::Mse => (2.0 / len, 1.0, len),
            Loss::BinaryCrossEntropy => {
                let inv = 1.0 / len;
                (inv, inv, 1.0)
            }
        };
        let d0 = self.ptr(&self.d0);
        let d1 = self.ptr(&self.d1);
        g.launch(
            &k.loss_train,
            rows_config(n),
            &[
                Arg::I(loss_code(loss)),
                Arg::I(last.act),
                Arg::F(last.alpha),
                Arg::P(self.ptr(&last.z)),
                Arg::P(self.ptr(&last.a)),
                Arg::P(d0),
                Arg::P(self.ptr(&self.labels)),
                Arg::I(n as i32),
                Arg::I(width as i32),
                Arg::F(grad_scale),
                Arg::F(loss.accuracy_threshold(self.topology.output_layer().activation)),
                Arg::P(self.ptr(&self.row_loss)),
                Arg::P(self.ptr(&self.row_correct)),
            ],
        )?;
        let diverged = self.ptr(&self.diverged);
        g.launch(
            &k.finish_loss,
            single_block(),
            &[
                Arg::P(self.ptr(&self.row_loss)),
                Arg::P(self.ptr(&self.row_correct)),
                Arg::I(n as i32),
                Arg::F(mul),
                Arg::F(div),
                Arg::P(ctr),
                Arg::I(0),
                Arg::P(self.ptr(&self.per_step.loss)),
                Arg::P(self.ptr(&self.per_step.correct)),
                Arg::P(diverged),
            ],
        )?;
        // Backward.
        let (mut d, mut d_next) = (d0, d1);
        for i in (0..self.layers.len()).rev() {
            let l = &self.layers[i];
            let w = params + F32 * l.w as u64;
            if let (Some((gamma, beta)), Some(xh), Some(st)) = (l.bn, &l.x_hat, &l.stats) {
                g.launch(
                    &k.bn_backward,
                    columns_config(l.outputs),
                    &[
                        Arg::P(d),
                        Arg::P(self.ptr(xh)),
                        Arg::P(self.ptr(st) + F32 * l.outputs as u64),
                        Arg::P(params + F32 * gamma as u64),
                        Arg::P(grads + F32 * gamma as u64),
                        Arg::P(grads + F32 * beta as u64),
                        Arg::I(n as i32),
                        Arg::I(l.outputs as i32),
                    ],
                )?;
            }
            self.weight_grad_product(layer_input(i), d, grads + F32 * l.w as u64, n, l.fan_in, l.outputs)?;
            // The bias of a batch-norm layer has a gradient of exactly zero (core's rule: batch
            // norm subtracts the batch mean); its slots in `grads` stay at their initial zeros.
            if l.bn.is_none() {
                self.bias_grad(d, grads + F32 * l.b as u64, n, l.outputs)?;
            }
            if i > 0 {
                let p = &self.layers[i - 1];
                self.input_grad_product(d, w, d_next, n, l.fan_in, l.outputs)?;
                let (mask_ptr, keep_scale) = match p.dropout {
                    Some((_, scale, off)) => (masks + 4 * off as u64, scale),
                    None => (0, 0.0),
                };
                let total = n * p.outputs;
                g.launch(
                    &k.act_backward,
                    grid_1d(total),
                    &[
                        Arg::P(d_next),
                        Arg::P(self.ptr(&p.z)),
                        Arg::P(self.ptr(&p.a)),
                        Arg::I(total as i32),
                        Arg::I(p.act),
                        Arg::F(p.alpha),
                        Arg::P(mask_ptr),
                        Arg::P(ctr),
                        Arg::I(words),
                        Arg::F(keep_scale),
                    ],
                )?;
                std::mem::swap(&mut d, &mut d_next);
            }
        }
        // Clipping and the update.
        let coef = if let Some(max) = self.config.grad_clip {
            let partials = self.ptr(&self.partials);
            g.launch(
                &k.sum_squares,
                LaunchConfig {
                    grid_dim: (NORM_BLOCKS as u32, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                },
                &[Arg::P(grads), Arg::I(self.param_len as i32), Arg::P(partials)],
            )?;
            g.launch(
                &k.clip_coef,
                single_block(),
                &[
                    Arg::P(partials),
                    Arg::I(NORM_BLOCKS as i32),
                    Arg::F(max),
                    Arg::P(ctr),
                    Arg::P(self.ptr(&self.per_step.norm)),
                    Arg::P(self.ptr(&self.coef)),
                    Arg::P(diverged),
                ],
            )?;
            self.ptr(&self.coef)
        } else {
            0
        };
        let (kind, [h0, h1, eps, wd]) = optimizer_code(self.config.optimizer);
        let state = self.ptr(&self.state);
        let vectors = self.config.optimizer.state_vectors();
        let s0 = if vectors >= 1 { state } else { 0 };
        let s1 = if vectors >= 2 { state + F32 * self.param_len as u64 } else { 0 };
        g.launch(
            &k.optimizer_update,
            grid_1d(self.param_len),
            &[
                Arg::P(params),
                Arg::P(grads),
                Arg::P(s0),
                Arg::P(s1),
                Arg::I(self.param_len as i32),
                Arg::I(kind),
                Arg::F(h0),
                Arg::F(h1),
                Arg::F(eps),
                Arg::F(wd),
                Arg::P(self.ptr(&self.per_step.hyper)),
                Arg::P(ctr),
                Arg::P(coef),
                Arg::P(diverged),
            ],
        )?;
        g.launch(
            &k.advance,
            LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 },
            &[Arg::P(ctr)],
        )
    }

    /// Captures one full-batch step into a CUDA graph (on the emulator: a recording).
    fn capture(&self, data: &DeviceDataset, batch: usize) -> Result<Graph, GpuError> {
        self.gpu.begin_capture()?;
        let queued = self.enqueue_step(data, batch, batch);
        // Always end the capture, even after a failed launch, so the stream is usable again.
        let ended = self.gpu.end_capture();
        queued?;
        ended
    }

    /// Runs `count` full-batch steps through the cached graph (capturing it first if needed);
    /// `Ok(false)` if capture is off or failed (nothing was run then).
    pub(super) fn run_graph(
        &mut self,
        data: &DeviceDataset,
        batch: usize,
        count: usize,
    ) -> Result<bool, GpuError> {
        if !self.use_graphs || count == 0 {
            return Ok(false);
        }
        let key = (data.id, batch);
        if self.graph.as_ref().is_none_or(|(k, _)| *k != key) {
            self.graph = None;
            match self.capture(data, batch) {
                Ok(graph) => self.graph = Some((key, graph)),
                Err(e) => {
                    self.graph_error = Some(e.to_string());
                    self.use_graphs = false;
                    return Ok(false);
                }
            }
        }
        if let Some((_, graph)) = &self.graph {
            for _ in 0..count {
                self.gpu.replay(graph)?;
            }
        }
        Ok(true)
    }
}
