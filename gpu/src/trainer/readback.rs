//! Reading parameters, gradients, optimizer state, running statistics and per-step metrics
//! back from the device.

use mlp::Error as CoreError;

use super::GpuTrainer;
use crate::memory::DevBuf;
use crate::GpuError;

impl GpuTrainer {
    pub(super) fn read_one(&self, s: &DevBuf<f32>) -> Result<f32, GpuError> {
        let mut v = [0.0f32];
        self.gpu.read(s, &mut v)?;
        Ok(v[0])
    }

    /// Waits for the queued steps and reads the first `steps` per-step losses, correct counts,
    /// and the divergence flag.
    pub(super) fn read_steps(&self, steps: usize) -> Result<(Vec<f32>, Vec<u32>, i32), GpuError> {
        let mut loss = vec![0.0f32; steps];
        let mut correct = vec![0u32; steps];
        let mut diverged = [0i32];
        self.gpu.read(&self.per_step.loss, &mut loss)?;
        self.gpu.read(&self.per_step.correct, &mut correct)?;
        self.gpu.read(&self.diverged, &mut diverged)?;
        Ok((loss, correct, diverged[0]))
    }

    /// Copies parameters, batch-norm running statistics and optimizer state back into core's
    /// flat layout (the buffers `mlp::Trainer` and the model file use).
    pub fn download(
        &self,
        params: &mut [f32],
        running: &mut [f32],
        optimizer_state: &mut [f32],
    ) -> Result<(), GpuError> {
        let lens = [
            (mlp::Buffer::Params, self.param_len, params.len()),
            (mlp::Buffer::Running, self.running_len, running.len()),
            (mlp::Buffer::OptimizerState, self.state_len, optimizer_state.len()),
        ];
        for (buffer, expected, actual) in lens {
            if expected != actual {
                return Err(CoreError::BufferLength { buffer, expected, actual }.into());
            }
        }
        for (src, dst) in [(&self.params, params), (&self.running, running), (&self.state, optimizer_state)] {
            self.gpu.read(src, dst)?;
        }
        Ok(())
    }

    /// The parameters, in core's flat layout.
    pub fn params(&self) -> Result<Vec<f32>, GpuError> {
        self.read_all(&self.params, self.param_len)
    }

    /// The gradients of the last step, in core's flat layout (before clipping).
    pub fn grads(&self) -> Result<Vec<f32>, GpuError> {
        self.read_all(&self.grads, self.param_len)
    }

    /// The optimizer state, in core's flat layout.
    pub fn optimizer_state(&self) -> Result<Vec<f32>, GpuError> {
        self.read_all(&self.state, self.state_len)
    }

    /// The batch-norm running statistics.
    pub fn running(&self) -> Result<Vec<f32>, GpuError> {
        self.read_all(&self.running, self.running_len)
    }

    fn read_all(&self, src: &DevBuf<f32>, len: usize) -> Result<Vec<f32>, GpuError> {
        let mut v = vec![0.0f32; len];
        self.gpu.read(src, &mut v)?;
        Ok(v)
    }
}
