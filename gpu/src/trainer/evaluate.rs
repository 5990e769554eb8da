//! Eval-mode loss and accuracy of a data set on the device.

use mlp::Loss;

use super::codes::{act_code, loss_code};
use super::step::{rows_config, single_block};
use super::{EvalBufs, EvalStats, GpuTrainer, F32};
use crate::backend::Arg;
use crate::dataset::DeviceDataset;
use crate::device::grid_1d;
use crate::GpuError;

impl GpuTrainer {
    /// Eval-mode loss and accuracy of the whole of `data` (batch norm with running
    /// statistics, no dropout), in chunks of `chunk` samples on the device; only the
    /// per-chunk sums come back.
    pub fn evaluate(&mut self, data: &DeviceDataset, chunk: usize) -> Result<EvalStats, GpuError> {
        self.check_data(data)?;
        let chunk = chunk.clamp(1, data.len);
        let chunks = data.len.div_ceil(chunk);
        let width = self.topology.output();
        let max_width = self.layers.iter().map(|l| l.outputs).max().unwrap_or(1);
        if chunk.checked_mul(max_width.max(self.topology.input())).is_none_or(|v| v > i32::MAX as usize / 2) {
            return Err(GpuError::Invalid(format!("evaluation chunk {chunk} is too large")));
        }
        let g = &self.gpu;
        if self.eval.as_ref().is_none_or(|e| e.chunk != chunk || e.chunks < chunks) {
            self.eval = Some(EvalBufs {
                chunk,
                x: g.zeros(chunk * self.topology.input())?,
                labels: g.zeros(chunk)?,
                ping: g.zeros(chunk * max_width)?,
                pong: g.zeros(chunk * max_width)?,
                row_loss: g.zeros(chunk)?,
                row_correct: g.zeros(chunk)?,
                chunks,
                chunk_loss: g.zeros(chunks)?,
                chunk_correct: g.zeros(chunks)?,
            });
        }
        let Some(e) = self.eval.as_ref() else {
            return Err(GpuError::Invalid("no evaluation buffers".into()));
        };
        let k = g.kernels();
        let params = self.ptr(&self.params);
        let running = self.ptr(&self.running);
        let zero = self.ptr(&self.zero);
        let (ex, el) = (self.ptr(&e.x), self.ptr(&e.labels));
        let bufs = [self.ptr(&e.ping), self.ptr(&e.pong)];
        let input = self.topology.input();
        let loss = self.config.loss;
        let out_act = self.topology.output_layer().activation;
        for c in 0..chunks {
            let base = c * chunk;
            let n = chunk.min(data.len - base);
            g.launch(
                &k.gather,
                grid_1d(n * input),
                &[
                    Arg::P(self.opt_ptr(&data.bytes)),
                    Arg::P(self.opt_ptr(&data.values)),
                    Arg::P(self.ptr(&data.labels)),
                    Arg::P(0),
                    Arg::P(zero),
                    Arg::I(0),
                    Arg::I(base as i32),
                    Arg::I(n as i32),
                    Arg::I(input as i32),
                    Arg::P(self.ptr(&self.scale)),
                    Arg::P(self.ptr(&self.offset)),
                    Arg::P(ex),
                    Arg::P(el),
                ],
            )?;
            let mut cur = ex;
            for (i, l) in self.layers.iter().enumerate() {
                let next = bufs[i % 2];
                let total = n * l.outputs;
                let b = params + F32 * l.b as u64;
                self.forward_product(cur, params + F32 * l.w as u64, next, n, l.fan_in, l.outputs)?;
                let bias = if let (Some((gamma, beta)), Some((rm, rv))) = (l.bn, l.running) {
                    g.launch(
                        &k.bn_eval,
                        grid_1d(total),
                        &[
                            Arg::P(next),
                            Arg::P(b),
                            Arg::P(params + F32 * gamma as u64),
                            Arg::P(params + F32 * beta as u64),
                            Arg::P(running + F32 * rm as u64),
                            Arg::P(running + F32 * rv as u64),
                            Arg::I(l.outputs as i32),
                            Arg::I(total as i32),
                        ],
                    )?;
                    0
                } else {
                    b
                };
                g.launch(
                    &k.bias_act,
                    grid_1d(total),
                    &[
                        Arg::P(next),
                        Arg::P(next),
                        Arg::P(0),
                        Arg::P(bias),
                        Arg::I(l.outputs as i32),
                        Arg::I(total as i32),
                        Arg::I(l.act),
                        Arg::F(l.alpha),
                        Arg::P(0),
                        Arg::P(zero),
                        Arg::I(0),
                        Arg::F(0.0),
                    ],
                )?;
                cur = next;
            }
            g.launch(
                &k.loss_eval,
                rows_config(n),
                &[
                    Arg::I(loss_code(loss)),
                    Arg::I(act_code(out_act).0),
                    Arg::P(cur),
                    Arg::P(el),
                    Arg::I(n as i32),
                    Arg::I(width as i32),
                    Arg::F(loss.accuracy_threshold(out_act)),
                    Arg::P(self.ptr(&e.row_loss)),
                    Arg::P(self.ptr(&e.row_correct)),
                ],
            )?;
            let div = match loss {
                Loss::CrossEntropy => n as f32,
                _ => (n * width) as f32,
            };
            g.launch(
                &k.finish_loss,
                single_block(),
                &[
                    Arg::P(self.ptr(&e.row_loss)),
                    Arg::P(self.ptr(&e.row_correct)),
                    Arg::I(n as i32),
                    Arg::F(1.0),
                    Arg::F(div),
                    Arg::P(0),
                    Arg::I(c as i32),
                    Arg::P(self.ptr(&e.chunk_loss)),
                    Arg::P(self.ptr(&e.chunk_correct)),
                    Arg::P(0),
                ],
            )?;
        }
        let mut losses = vec![0.0f32; chunks];
        let mut correct = vec![0u32; chunks];
        g.read(&e.chunk_loss, &mut losses)?;
        g.read(&e.chunk_correct, &mut correct)?;
        let loss_sum: f64 =
            losses.iter().enumerate().map(|(c, &l)| l as f64 * chunk.min(data.len - c * chunk) as f64).sum();
        Ok(EvalStats {
            loss: loss_sum / data.len as f64,
            correct: correct.iter().map(|&c| c as usize).sum(),
            samples: data.len,
        })
    }
}
