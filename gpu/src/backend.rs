//! The seam between the trainer and what executes it: a CUDA device (cudarc: driver, NVRTC
//! kernels, cuBLAS, graphs) or the CPU emulator (the same kernels.cu compiled as C++, a
//! reference BLAS that bounds-checks every operand, recorded graphs). The trainer speaks
//! only to [`Gpu`]'s methods here and in `memory.rs`.

use std::ffi::c_int;
use std::sync::Arc;

use cudarc::cublas::{result as blas_result, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    sys as drv_sys, CudaContext, CudaGraph, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};

use crate::device::{Kernel, Kernels};
use crate::emulator::Emulator;
use crate::{Gpu, GpuError, GpuOptions};

/// What a [`Gpu`] runs on.
pub(crate) enum Backend {
    Cuda(Box<CudaDevice>),
    Emulated(Arc<Emulator>),
}

/// One CUDA device, ready to train: a context, a stream, a cuBLAS handle on that stream and
/// the compiled kernels.
pub(crate) struct CudaDevice {
    /// Held so the context outlives everything created on it (the stream also holds it).
    pub _ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    pub _blas_workspace: CudaSlice<u8>,
    pub kernels: Kernels,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub options: GpuOptions,
}

/// A kernel argument: a device pointer, an `int` or a `float`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Arg {
    /// A device address (`T*` in the kernel); 0 is the null pointer.
    P(u64),
    /// `int`.
    I(i32),
    /// `float`.
    F(f32),
}

/// A column-major `C[m×n] = op(A)[m×k] · op(B)[k×n]` (α = 1, β = 0), as cuBLAS's SGEMM
/// takes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Gemm {
    pub ta: bool,
    pub tb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: u64,
    pub lda: usize,
    pub b: u64,
    pub ldb: usize,
    pub c: u64,
    pub ldc: usize,
}

/// A column-major `y[m] = A[m×n] · x` (α = 1, β = 0, no transpose, unit strides), as
/// cuBLAS's SGEMV takes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Gemv {
    pub m: usize,
    pub n: usize,
    pub a: u64,
    pub lda: usize,
    pub x: u64,
    pub y: u64,
}

/// A captured step: a CUDA graph, or the emulator's recording of the same launches.
pub(crate) enum Graph {
    Cuda(CudaGraph),
    Emulated(Vec<crate::emulator::Op>),
}

impl Gpu {
    pub(crate) fn kernels(&self) -> &Kernels {
        match &*self.inner {
            Backend::Cuda(c) => &c.kernels,
            Backend::Emulated(e) => &e.kernels,
        }
    }

    /// Launches `kernel` with `args`, which must match its parameter list exactly (checked).
    pub(crate) fn launch(&self, kernel: &Kernel, cfg: LaunchConfig, args: &[Arg]) -> Result<(), GpuError> {
        kernel.check_args(args)?;
        match &*self.inner {
            Backend::Cuda(c) => {
                let Some(func) = &kernel.func else {
                    return Err(GpuError::Invalid(format!(
                        "internal error: kernel {} is not loaded",
                        kernel.name
                    )));
                };
                let mut b = c.stream.launch_builder(func);
                for a in args {
                    match a {
                        Arg::P(p) => b.arg(p),
                        Arg::I(i) => b.arg(i),
                        Arg::F(x) => b.arg(x),
                    };
                }
                // SAFETY: every call site passes the kernel's parameters in order with their
                // C types (checked above against the source's parameter list; pointers as
                // u64 device addresses of live allocations owned by the caller, `int` as i32,
                // `float` as f32), and sizes the grid so that kernels index only within the
                // lengths those allocations were created with (each kernel bounds-checks its
                // index).
                unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| GpuError::driver("launching a kernel", e))
            }
            Backend::Emulated(e) => e.launch(kernel.name, cfg, args),
        }
    }

    /// `C = op(A) · op(B)`, column-major (see [`Gemm`]).
    pub(crate) fn sgemm(&self, g: Gemm) -> Result<(), GpuError> {
        match &*self.inner {
            Backend::Cuda(c) => {
                let op = |t: bool| {
                    if t {
                        blas_sys::cublasOperation_t::CUBLAS_OP_T
                    } else {
                        blas_sys::cublasOperation_t::CUBLAS_OP_N
                    }
                };
                let (alpha, beta) = (1.0f32, 0.0f32);
                // SAFETY: the handle is valid for the life of `self`; a, b, c are device
                // addresses of live allocations that hold the column-major shapes described
                // by (m, n, k, lda, ldb, ldc) as the callers derive them from the layer
                // sizes (the emulator checks exactly this against its live allocations in
                // the tests); alpha and beta are host scalars read during the call.
                unsafe {
                    blas_result::sgemm(
                        *c.blas.handle(),
                        op(g.ta),
                        op(g.tb),
                        g.m as c_int,
                        g.n as c_int,
                        g.k as c_int,
                        &alpha,
                        g.a as *const f32,
                        g.lda as c_int,
                        g.b as *const f32,
                        g.ldb as c_int,
                        &beta,
                        g.c as *mut f32,
                        g.ldc as c_int,
                    )
                }
                .map_err(|e| GpuError::Blas(format!("sgemm {}x{}x{}: {e}", g.m, g.n, g.k)))
            }
            Backend::Emulated(e) => e.sgemm(g),
        }
    }

    /// `y = A · x`, column-major (see [`Gemv`]).
    pub(crate) fn sgemv(&self, g: Gemv) -> Result<(), GpuError> {
        match &*self.inner {
            Backend::Cuda(c) => {
                let (alpha, beta) = (1.0f32, 0.0f32);
                // SAFETY: as in `sgemm`: A holds m × n floats (column-major, lda >= m), x
                // holds n floats and y holds m floats, all live device allocations.
                unsafe {
                    blas_result::sgemv(
                        *c.blas.handle(),
                        blas_sys::cublasOperation_t::CUBLAS_OP_N,
                        g.m as c_int,
                        g.n as c_int,
                        &alpha,
                        g.a as *const f32,
                        g.lda as c_int,
                        g.x as *const f32,
                        1,
                        &beta,
                        g.y as *mut f32,
                        1,
                    )
                }
                .map_err(|e| GpuError::Blas(format!("sgemv {}x{}: {e}", g.m, g.n)))
            }
            Backend::Emulated(e) => e.sgemv(g),
        }
    }

    /// Starts recording the launches and products queued by this thread into a graph.
    pub(crate) fn begin_capture(&self) -> Result<(), GpuError> {
        match &*self.inner {
            Backend::Cuda(c) => c
                .stream
                .begin_capture(drv_sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(|e| GpuError::driver("starting graph capture", e)),
            Backend::Emulated(e) => e.begin_capture(),
        }
    }

    /// Ends the capture begun by [`begin_capture`](Self::begin_capture) (always call it, even
    /// after a failed launch, so the stream is usable again) and returns the graph, ready to
    /// launch.
    pub(crate) fn end_capture(&self) -> Result<Graph, GpuError> {
        match &*self.inner {
            Backend::Cuda(c) => match c.stream.end_capture(drv_sys::CUgraphInstantiate_flags(0)) {
                Ok(Some(graph)) => {
                    graph.upload().map_err(|e| GpuError::driver("uploading the step graph", e))?;
                    Ok(Graph::Cuda(graph))
                }
                Ok(None) => Err(GpuError::Invalid("graph capture produced no graph".into())),
                Err(e) => Err(GpuError::driver("ending graph capture", e)),
            },
            Backend::Emulated(e) => e.end_capture().map(Graph::Emulated),
        }
    }

    /// Replays a captured graph once.
    pub(crate) fn replay(&self, graph: &Graph) -> Result<(), GpuError> {
        match (&*self.inner, graph) {
            (Backend::Cuda(_), Graph::Cuda(g)) => {
                g.launch().map_err(|e| GpuError::driver("launching the step graph", e))
            }
            (Backend::Emulated(e), Graph::Emulated(ops)) => e.replay(ops),
            _ => Err(GpuError::Invalid("internal error: a graph replayed on another device".into())),
        }
    }
}

impl Gpu {
    /// The rate, in TFLOP/s, of `reps` FP32 products `C[m×n] = A[m×k]·B[k×n]` (2mnk
    /// floating-point operations each) through this device's SGEMM — cuBLAS in the device's
    /// math mode (FP32 or TF32), or the emulator's reference — after one untimed warm-up: the
    /// yardstick for the training step's achieved rate.
    pub fn sgemm_tflops(&self, m: usize, n: usize, k: usize, reps: usize) -> Result<f64, GpuError> {
        let (a, b, c) = (self.zeros::<f32>(m * k)?, self.zeros::<f32>(k * n)?, self.zeros::<f32>(m * n)?);
        let g = Gemm {
            ta: false,
            tb: false,
            m,
            n,
            k,
            a: self.addr(&a),
            lda: m.max(1),
            b: self.addr(&b),
            ldb: k.max(1),
            c: self.addr(&c),
            ldc: m.max(1),
        };
        self.sgemm(g)?;
        self.synchronize()?;
        let start = std::time::Instant::now();
        for _ in 0..reps.max(1) {
            self.sgemm(g)?;
        }
        self.synchronize()?;
        let secs = start.elapsed().as_secs_f64();
        Ok(2.0 * (m * n * k) as f64 * reps.max(1) as f64 / secs / 1e12)
    }
}
