//! The dense products of the step and evaluation: cuBLAS SGEMM / SGEMV on row-major buffers.

use std::ffi::c_int;

use cudarc::cublas::{result as blas_result, sys as blas_sys};

use super::GpuTrainer;
use crate::GpuError;

impl GpuTrainer {
    /// Row-major `C[rows×cols] = op(A) · op(B)` through column-major cuBLAS (see the callers).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sgemm(
        &self,
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: u64,
        lda: usize,
        b: u64,
        ldb: usize,
        c: u64,
        ldc: usize,
    ) -> Result<(), GpuError> {
        let op = |t: bool| {
            if t {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the handle is valid for the life of `self.gpu`; a, b, c are device
        // addresses of live allocations that hold the column-major shapes described by
        // (m, n, k, lda, ldb, ldc) as the callers derive them from the layer sizes; alpha and
        // beta are host scalars (the handle's default pointer mode) read during the call.
        unsafe {
            blas_result::sgemm(
                *self.gpu.inner.blas.handle(),
                op(ta),
                op(tb),
                m as c_int,
                n as c_int,
                k as c_int,
                &alpha,
                a as *const f32,
                lda as c_int,
                b as *const f32,
                ldb as c_int,
                &beta,
                c as *mut f32,
                ldc as c_int,
            )
        }
        .map_err(|e| GpuError::Blas(format!("sgemm {m}x{n}x{k}: {e}")))
    }

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
        self.sgemm(true, false, n, batch, k, w, k, x, k, y, n)
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
        self.sgemm(false, false, k, batch, n, w, k, dy, n, dx, k)
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
        self.sgemm(false, true, k, n, batch, x, k, dy, n, dw, k)
    }

    /// `db[n] = Σ_rows dY[batch×n]`: column-major `dYᵀ (n×batch) · ones`.
    pub(super) fn bias_grad(&self, dy: u64, db: u64, batch: usize, n: usize) -> Result<(), GpuError> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let ones = self.ptr(&self.ones);
        // SAFETY: as in `sgemm`: dy holds batch × n floats (column-major n × batch, lda n),
        // `ones` holds at least max_batch >= batch ones, db holds n floats.
        unsafe {
            blas_result::sgemv(
                *self.gpu.inner.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                n as c_int,
                batch as c_int,
                &alpha,
                dy as *const f32,
                n as c_int,
                ones as *const f32,
                1,
                &beta,
                db as *mut f32,
                1,
            )
        }
        .map_err(|e| GpuError::Blas(format!("sgemv {n}x{batch}: {e}")))
    }
}
