//! The dense products of the step and evaluation: SGEMM / SGEMV (cuBLAS on a GPU, the
//! emulator's checked reference otherwise) on row-major buffers, as column-major products of
//! the transposes.

use super::GpuTrainer;
use crate::backend::{Gemm, Gemv};
use crate::GpuError;

impl GpuTrainer {
    /// `Y[batch×n] = X[batch×k] · W[n×k]ᵀ` (row-major): column-major `Yᵀ = op_T(W) · Xᵀ`.
    pub(super) fn forward_product(
        &self,
        x: u64,
        w: u64,
        y: u64,
        batch: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        self.gpu.sgemm(Gemm {
            ta: true,
            tb: false,
            m: n,
            n: batch,
            k,
            a: w,
            lda: k,
            b: x,
            ldb: k,
            c: y,
            ldc: n,
        })
    }

    /// `dX[batch×k] = dY[batch×n] · W[n×k]`: column-major `dXᵀ = Wᵀ · dYᵀ`.
    pub(super) fn input_grad_product(
        &self,
        dy: u64,
        w: u64,
        dx: u64,
        batch: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        self.gpu.sgemm(Gemm {
            ta: false,
            tb: false,
            m: k,
            n: batch,
            k: n,
            a: w,
            lda: k,
            b: dy,
            ldb: n,
            c: dx,
            ldc: k,
        })
    }

    /// `dW[n×k] = dY[batch×n]ᵀ · X[batch×k]`: column-major `dWᵀ = Xᵀ · op_T(dYᵀ)`.
    pub(super) fn weight_grad_product(
        &self,
        x: u64,
        dy: u64,
        dw: u64,
        batch: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        self.gpu.sgemm(Gemm {
            ta: false,
            tb: true,
            m: k,
            n,
            k: batch,
            a: x,
            lda: k,
            b: dy,
            ldb: n,
            c: dw,
            ldc: k,
        })
    }

    /// `db[n] = Σ_rows dY[batch×n]`: column-major `dYᵀ (n×batch) · ones`.
    pub(super) fn bias_grad(&self, dy: u64, db: u64, batch: usize, n: usize) -> Result<(), GpuError> {
        let ones = self.ptr(&self.ones);
        self.gpu.sgemv(Gemv { m: n, n: batch, a: dy, lda: n, x: ones, y: db })
    }
}
