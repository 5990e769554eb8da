//! Finding the GPU: library presence, the driver, a context and stream, cuBLAS, and the
//! NVRTC-compiled kernels (once per process and architecture).

use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::{sys as blas_sys, CudaBlas};
use cudarc::driver::{
    sys as drv_sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::GpuError;

/// The kernels' CUDA C source.
pub(crate) const KERNEL_SOURCE: &str = include_str!("kernels.cu");

/// Every kernel in [`KERNEL_SOURCE`], in the order of [`Kernels`]' fields.
#[cfg(test)]
const KERNEL_NAMES: [&str; 13] = [
    "gather",
    "bias_act",
    "act_backward",
    "bn_train",
    "bn_backward",
    "bn_eval",
    "loss_train",
    "loss_eval",
    "finish_loss",
    "sum_squares",
    "clip_coef",
    "optimizer_update",
    "advance",
];

/// cuBLAS workspace set explicitly, so that products captured into a CUDA graph never
/// allocate (cuBLAS's advice for graph capture).
const CUBLAS_WORKSPACE_BYTES: usize = 32 << 20;

/// What to do when a library or the device is missing.
const WHAT_TO_DO: &str = "the GPU path needs an NVIDIA GPU with its driver (libcuda) and the CUDA 13 \
                          libraries libnvrtc and libcublas where the dynamic loader finds them \
                          (never a CUDA `stubs` folder on LD_LIBRARY_PATH); without one, train on the CPU";

/// How to set up the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// Let cuBLAS use TF32 tensor cores for the FP32 products (about 10 mantissa bits in the
    /// products' inputs; faster on Ampere and later). Off by default: FP32 is what the
    /// agreement tests check.
    pub tf32: bool,
}

/// A loaded kernel with its parameter list, read from [`KERNEL_SOURCE`]: every launch is
/// checked against it, so a mismatched argument list is an error, never a bad launch.
pub(crate) struct Kernel {
    func: CudaFunction,
    name: &'static str,
    params: Vec<ArgKind>,
}

/// The loaded kernels.
pub(crate) struct Kernels {
    pub gather: Kernel,
    pub bias_act: Kernel,
    pub act_backward: Kernel,
    pub bn_train: Kernel,
    pub bn_backward: Kernel,
    pub bn_eval: Kernel,
    pub loss_train: Kernel,
    pub loss_eval: Kernel,
    pub finish_loss: Kernel,
    pub sum_squares: Kernel,
    pub clip_coef: Kernel,
    pub optimizer_update: Kernel,
    pub advance: Kernel,
}

/// The C type of a kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgKind {
    Pointer,
    Int,
    Float,
}

/// The parameter kinds of `extern "C" __global__ void name(...)` in `src`, or `None` if it
/// is not there or has a parameter type other than a pointer, `int` or `float`.
pub(crate) fn kernel_params(src: &str, name: &str) -> Option<Vec<ArgKind>> {
    let start = src.find(&format!("__global__ void {name}("))? + "__global__ void (".len() + name.len();
    let end = start + src[start..].find(')')?;
    src[start..end]
        .split(',')
        .map(|p| {
            let p = p.trim();
            if p.contains('*') {
                Some(ArgKind::Pointer)
            } else if p.starts_with("int ") {
                Some(ArgKind::Int)
            } else if p.starts_with("float ") {
                Some(ArgKind::Float)
            } else {
                None
            }
        })
        .collect()
}

pub(crate) struct Inner {
    /// Held so the context outlives everything created on it (the stream also holds it).
    _ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    _blas_workspace: CudaSlice<u8>,
    pub kernels: Kernels,
    name: String,
    compute_capability: (i32, i32),
    options: GpuOptions,
}

/// One CUDA device, ready to train: a context, a stream, a cuBLAS handle on that stream and
/// the compiled kernels. Cheap to clone (shared).
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gpu")
            .field("name", &self.inner.name)
            .field("compute_capability", &self.inner.compute_capability)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// A kernel argument: a device pointer, an `int` or a `float`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    /// A device address (`T*` in the kernel); 0 is the null pointer.
    P(u64),
    /// `int`.
    I(i32),
    /// `float`.
    F(f32),
}

impl Arg {
    fn kind(&self) -> ArgKind {
        match self {
            Arg::P(_) => ArgKind::Pointer,
            Arg::I(_) => ArgKind::Int,
            Arg::F(_) => ArgKind::Float,
        }
    }
}

impl Gpu {
    /// Opens CUDA device `ordinal` (0 for the first GPU).
    ///
    /// Errors: [`GpuError::NoDevice`] when the driver or the CUDA libraries are missing, the
    /// driver is a stub, or it sees no such device (never a panic: the libraries' presence
    /// is checked before cudarc loads them, and any panic from the loader is caught);
    /// [`GpuError::Compile`] if NVRTC rejects the kernels; other CUDA errors as they come.
    pub fn new(ordinal: usize, options: GpuOptions) -> Result<Gpu, GpuError> {
        probe_libraries(&SystemLibraries)?;
        match catch_unwind(AssertUnwindSafe(|| Self::open(ordinal, options))) {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the CUDA loader panicked".to_string());
                Err(GpuError::NoDevice(format!("{msg}; {WHAT_TO_DO}")))
            }
        }
    }

    fn open(ordinal: usize, options: GpuOptions) -> Result<Gpu, GpuError> {
        let count = CudaContext::device_count().map_err(no_device_or_driver)?;
        if count <= 0 {
            return Err(GpuError::NoDevice(format!("the CUDA driver sees no GPU; {WHAT_TO_DO}")));
        }
        if ordinal >= count as usize {
            return Err(GpuError::NoDevice(format!(
                "device {ordinal} was asked for but the CUDA driver sees {count} GPU(s), numbered from 0"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(no_device_or_driver)?;
        // SAFETY: called before this context allocates anything; everything here runs on
        // one stream, so cudarc's per-allocation events (which would also be recorded into
        // captured graphs) are not needed: stream order alone orders every access.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| GpuError::driver("creating a stream", e))?;
        let name = ctx.name().map_err(|e| GpuError::driver("reading the device name", e))?;
        let cc =
            ctx.compute_capability().map_err(|e| GpuError::driver("reading the compute capability", e))?;
        let blas =
            CudaBlas::new(stream.clone()).map_err(|e| GpuError::Blas(format!("creating a handle: {e}")))?;
        // SAFETY: `alloc` leaves the memory uninitialized, which is fine for a workspace
        // cuBLAS writes before it reads.
        let workspace = unsafe { stream.alloc::<u8>(CUBLAS_WORKSPACE_BYTES) }
            .map_err(|e| GpuError::driver("allocating the cuBLAS workspace", e))?;
        let (ws_ptr, guard) = workspace.device_ptr(&stream);
        // SAFETY: the handle is valid (just created), and the workspace lives as long as the
        // handle: both are fields of `Inner`, and the workspace is dropped after the handle
        // (fields drop in declaration order: `blas` before `_blas_workspace`).
        unsafe {
            blas_sys::cublasSetWorkspace_v2(*blas.handle(), ws_ptr as *mut c_void, CUBLAS_WORKSPACE_BYTES)
                .result()
                .map_err(|e| GpuError::Blas(format!("setting the workspace: {e}")))?;
            let mode = if options.tf32 {
                blas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
            } else {
                blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH
            };
            blas_sys::cublasSetMathMode(*blas.handle(), mode)
                .result()
                .map_err(|e| GpuError::Blas(format!("setting the math mode: {e}")))?;
        }
        drop(guard);
        let ptx = ptx_for(cc)?;
        let module = ctx.load_module(ptx).map_err(|e| GpuError::driver("loading the compiled kernels", e))?;
        let f = |name: &'static str| -> Result<Kernel, GpuError> {
            let func = module
                .load_function(name)
                .map_err(|e| GpuError::driver("finding a kernel in the module", e))?;
            let params = kernel_params(KERNEL_SOURCE, name).ok_or_else(|| {
                GpuError::Invalid(format!("internal error: no parameter list for kernel {name}"))
            })?;
            Ok(Kernel { func, name, params })
        };
        let kernels = Kernels {
            gather: f("gather")?,
            bias_act: f("bias_act")?,
            act_backward: f("act_backward")?,
            bn_train: f("bn_train")?,
            bn_backward: f("bn_backward")?,
            bn_eval: f("bn_eval")?,
            loss_train: f("loss_train")?,
            loss_eval: f("loss_eval")?,
            finish_loss: f("finish_loss")?,
            sum_squares: f("sum_squares")?,
            clip_coef: f("clip_coef")?,
            optimizer_update: f("optimizer_update")?,
            advance: f("advance")?,
        };
        Ok(Gpu {
            inner: Arc::new(Inner {
                _ctx: ctx,
                stream,
                blas,
                _blas_workspace: workspace,
                kernels,
                name,
                compute_capability: cc,
                options,
            }),
        })
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The compute capability (major, minor), e.g. (9, 0) for an H100.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.inner.compute_capability
    }

    /// The options it was opened with.
    pub fn options(&self) -> GpuOptions {
        self.inner.options
    }

    /// A one-line description: name, compute capability, math mode.
    pub fn describe(&self) -> String {
        let (ma, mi) = self.inner.compute_capability;
        format!(
            "{} (compute capability {ma}.{mi}, {} products)",
            self.inner.name,
            if self.inner.options.tf32 { "TF32" } else { "FP32" }
        )
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.inner.stream.synchronize().map_err(|e| GpuError::driver("synchronizing", e))
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Launches `kernel` with `args`, which must match its parameter list exactly (checked).
    pub(crate) fn launch(&self, kernel: &Kernel, cfg: LaunchConfig, args: &[Arg]) -> Result<(), GpuError> {
        let kinds: Vec<ArgKind> = args.iter().map(Arg::kind).collect();
        if kinds != kernel.params {
            return Err(GpuError::Invalid(format!(
                "internal error: kernel {} takes {:?} but was given {:?}",
                kernel.name, kernel.params, kinds
            )));
        }
        let stream = &self.inner.stream;
        let mut b = stream.launch_builder(&kernel.func);
        for a in args {
            match a {
                Arg::P(p) => b.arg(p),
                Arg::I(i) => b.arg(i),
                Arg::F(x) => b.arg(x),
            };
        }
        // SAFETY: every call site passes the kernel's parameters in order with their C types
        // (pointers as u64 device addresses of live allocations owned by the caller, `int` as
        // i32, `float` as f32), and sizes the grid so that kernels index only within the
        // lengths those allocations were created with (each kernel bounds-checks its index).
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| GpuError::driver("launching a kernel", e))
    }
}

/// The device address of an allocation, for kernel arguments and cuBLAS.
pub(crate) fn dptr<T>(slice: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    // Event tracking is off, so the returned guard records nothing.
    let (p, _guard) = slice.device_ptr(stream);
    p
}

/// Which libraries a machine has (abstracted so the no-device path is testable anywhere).
pub(crate) trait Libraries {
    /// Whether the driver library (libcuda) can be loaded.
    fn driver(&self) -> bool;
    /// Whether libnvrtc can be loaded.
    fn nvrtc(&self) -> bool;
    /// Whether libcublas can be loaded.
    fn cublas(&self) -> bool;
}

/// The real machine.
pub(crate) struct SystemLibraries;

fn present(check: unsafe fn() -> bool) -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the library by name and closes it
    // again; it has no preconditions. A panic inside counts as absent.
    catch_unwind(|| unsafe { check() }).unwrap_or(false)
}

impl Libraries for SystemLibraries {
    fn driver(&self) -> bool {
        present(drv_sys::is_culib_present)
    }
    fn nvrtc(&self) -> bool {
        present(cudarc::nvrtc::sys::is_culib_present)
    }
    fn cublas(&self) -> bool {
        present(blas_sys::is_culib_present)
    }
}

/// Checks that the driver and the CUDA libraries can be loaded, before cudarc's loader (which
/// panics on a missing library) ever runs.
pub(crate) fn probe_libraries(libs: &dyn Libraries) -> Result<(), GpuError> {
    if !libs.driver() {
        return Err(GpuError::NoDevice(format!(
            "the NVIDIA driver library (libcuda.so) is not installed or not on the loader path; {WHAT_TO_DO}"
        )));
    }
    let missing: Vec<&str> = [(libs.nvrtc(), "libnvrtc"), (libs.cublas(), "libcublas")]
        .into_iter()
        .filter_map(|(ok, name)| (!ok).then_some(name))
        .collect();
    if !missing.is_empty() {
        return Err(GpuError::NoDevice(format!(
            "the NVIDIA driver is there but {} (CUDA 13) cannot be loaded; {WHAT_TO_DO}",
            missing.join(" and ")
        )));
    }
    Ok(())
}

/// Driver errors that mean "there is no usable GPU here" become [`GpuError::NoDevice`].
fn no_device_or_driver(e: DriverError) -> GpuError {
    use drv_sys::CUresult as R;
    let why = match e.0 {
        R::CUDA_ERROR_NO_DEVICE => Some("the CUDA driver found no GPU (CUDA_ERROR_NO_DEVICE)"),
        R::CUDA_ERROR_STUB_LIBRARY => Some(
            "the libcuda that was loaded is the CUDA toolkit's stub, not the driver \
             (CUDA_ERROR_STUB_LIBRARY): remove the `stubs` folder from LD_LIBRARY_PATH",
        ),
        R::CUDA_ERROR_INVALID_DEVICE => Some("no such CUDA device (CUDA_ERROR_INVALID_DEVICE)"),
        R::CUDA_ERROR_SYSTEM_NOT_READY => {
            Some("the GPU system is not ready, e.g. its fabric manager is not running (CUDA_ERROR_SYSTEM_NOT_READY)")
        }
        R::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH => {
            Some("the NVIDIA kernel driver and libcuda versions differ (CUDA_ERROR_SYSTEM_DRIVER_MISMATCH)")
        }
        R::CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE => {
            Some("CUDA forward compatibility is not supported on this GPU (CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE)")
        }
        _ => None,
    };
    match why {
        Some(w) => GpuError::NoDevice(format!("{w}; {WHAT_TO_DO}")),
        None => GpuError::driver("initializing CUDA", e),
    }
}

/// The PTX of [`KERNEL_SOURCE`] for a compute capability, compiled by NVRTC at most once per
/// process and architecture.
fn ptx_for(cc: (i32, i32)) -> Result<Ptx, GpuError> {
    static CACHE: OnceLock<Mutex<HashMap<(i32, i32), Ptx>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(p) = map.get(&cc) {
        return Ok(p.clone());
    }
    let ptx = compile(cc)?;
    map.insert(cc, ptx.clone());
    Ok(ptx)
}

fn compile(cc: (i32, i32)) -> Result<Ptx, GpuError> {
    let opts = |arch: Option<String>| CompileOptions {
        // No contraction of a*b+c into FMA: the kernels round like core's Rust code.
        fmad: Some(false),
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        options: arch.map(|a| vec![format!("--gpu-architecture={a}")]).unwrap_or_default(),
        ..Default::default()
    };
    match compile_ptx_with_opts(KERNEL_SOURCE, opts(Some(format!("sm_{}{}", cc.0, cc.1)))) {
        Ok(p) => Ok(p),
        // An NVRTC older than the GPU does not know its sm_XY: fall back to NVRTC's default
        // virtual architecture, which the driver JIT-compiles for the device.
        Err(first) => compile_ptx_with_opts(KERNEL_SOURCE, opts(None))
            .map_err(|_| GpuError::Compile(compile_error_text(&first))),
    }
}

fn compile_error_text(e: &cudarc::nvrtc::CompileError) -> String {
    match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, options, log } => {
            format!("{nvrtc:?} with options {options:?}:\n{}", log.to_string_lossy())
        }
        other => format!("{other:?}"),
    }
}

/// A 1-D launch of `total` elements in blocks of 256 (grid-stride kernels: the grid is capped).
pub(crate) fn grid_1d(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(256).clamp(1, 4096) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        driver: bool,
        nvrtc: bool,
        cublas: bool,
    }

    impl Libraries for Fake {
        fn driver(&self) -> bool {
            self.driver
        }
        fn nvrtc(&self) -> bool {
            self.nvrtc
        }
        fn cublas(&self) -> bool {
            self.cublas
        }
    }

    #[test]
    fn a_machine_without_the_driver_has_no_cuda_device() {
        let err = probe_libraries(&Fake { driver: false, nvrtc: true, cublas: true }).unwrap_err();
        assert!(matches!(err, GpuError::NoDevice(_)));
        let msg = err.to_string();
        assert!(msg.starts_with("no CUDA device found: "), "{msg}");
        assert!(msg.contains("libcuda") && msg.contains("train on the CPU"), "{msg}");
    }

    #[test]
    fn missing_toolkit_libraries_are_named() {
        let err = probe_libraries(&Fake { driver: true, nvrtc: false, cublas: false }).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("no CUDA device found: "), "{msg}");
        assert!(msg.contains("libnvrtc and libcublas"), "{msg}");
        let err = probe_libraries(&Fake { driver: true, nvrtc: true, cublas: false }).unwrap_err();
        assert!(err.to_string().contains("but libcublas (CUDA 13) cannot be loaded"), "{err}");
        assert!(probe_libraries(&Fake { driver: true, nvrtc: true, cublas: true }).is_ok());
    }

    #[test]
    fn driver_errors_that_mean_no_gpu_are_no_device_errors() {
        use drv_sys::CUresult as R;
        for (code, needle) in [
            (R::CUDA_ERROR_NO_DEVICE, "found no GPU"),
            (R::CUDA_ERROR_STUB_LIBRARY, "stubs"),
            (R::CUDA_ERROR_SYSTEM_NOT_READY, "not ready"),
        ] {
            let e = no_device_or_driver(DriverError(code));
            assert!(matches!(e, GpuError::NoDevice(_)), "{code:?}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        assert!(matches!(
            no_device_or_driver(DriverError(R::CUDA_ERROR_OUT_OF_MEMORY)),
            GpuError::Driver { .. }
        ));
    }

    #[test]
    fn opening_a_device_never_panics() {
        // On a machine without CUDA this is the no-device error; on a GPU machine it opens
        // the GPU (and compiles the kernels). Either way: no panic, and a clear message.
        match Gpu::new(0, GpuOptions::default()) {
            Ok(gpu) => assert!(!gpu.name().is_empty()),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        if !SystemLibraries.driver() {
            let err = Gpu::new(0, GpuOptions::default()).unwrap_err();
            assert!(err.to_string().starts_with("no CUDA device found: "), "{err}");
        }
    }

    #[test]
    fn the_kernel_source_defines_every_kernel_with_a_checkable_parameter_list() {
        for name in KERNEL_NAMES {
            let params = kernel_params(KERNEL_SOURCE, name);
            assert!(params.as_ref().is_some_and(|p| !p.is_empty()), "{name}: {params:?}");
        }
        use ArgKind::*;
        assert_eq!(kernel_params(KERNEL_SOURCE, "advance"), Some(vec![Pointer]));
        assert_eq!(kernel_params(KERNEL_SOURCE, "sum_squares"), Some(vec![Pointer, Int, Pointer]));
    }

    /// NVRTC needs no GPU: with libnvrtc (CUDA 13) on the loader path this compiles the
    /// kernels exactly as `Gpu::new` does, e.g. with pip's `nvidia-cuda-nvrtc` wheel:
    /// `LD_LIBRARY_PATH=$VENV/lib/python3.11/site-packages/nvidia/cu13/lib cargo test -p gpu -- --ignored nvrtc`.
    #[test]
    #[ignore = "needs libnvrtc (CUDA 13)"]
    fn kernels_compile_with_nvrtc() {
        assert!(SystemLibraries.nvrtc(), "libnvrtc is not on the loader path");
        for cc in [(9, 0), (8, 0)] {
            let ptx = compile(cc).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            for name in KERNEL_NAMES {
                assert!(text.contains(&format!(".entry {name}(")), "{name} missing from the PTX for {cc:?}");
            }
        }
    }
}
