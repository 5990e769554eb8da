//! Finding the GPU: library presence, the driver, a context and stream, cuBLAS, and the
//! NVRTC-compiled kernels (once per process and architecture).

use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::{sys as blas_sys, CudaBlas};
use cudarc::driver::{
    sys as drv_sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::backend::{Arg, Backend, CudaDevice};
use crate::emulator::Emulator;
use crate::GpuError;

/// The kernels' CUDA C source.
pub(crate) const KERNEL_SOURCE: &str = include_str!("kernels.cu");

/// Every kernel in [`KERNEL_SOURCE`], in the order of [`Kernels`]' fields.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const KERNEL_NAMES: [&str; 13] = [
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

/// A kernel with its parameter list, read from [`KERNEL_SOURCE`]: every launch is checked
/// against it, so a mismatched argument list is an error, never a bad launch. On a GPU it
/// holds the loaded function; on the emulator the name is what is launched.
pub(crate) struct Kernel {
    pub func: Option<CudaFunction>,
    pub name: &'static str,
    params: Vec<ArgKind>,
}

impl Kernel {
    /// Errors unless `args` match the kernel's parameter list, kind for kind.
    pub(crate) fn check_args(&self, args: &[Arg]) -> Result<(), GpuError> {
        let kinds: Vec<ArgKind> = args.iter().map(Arg::kind).collect();
        if kinds != self.params {
            return Err(GpuError::Invalid(format!(
                "internal error: kernel {} takes {:?} but was given {:?}",
                self.name, self.params, kinds
            )));
        }
        Ok(())
    }
}

/// The kernels.
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

impl Kernels {
    /// Every kernel of [`KERNEL_NAMES`] with its parameter list, and the function `load`
    /// gives for it (`None` on the emulator).
    pub(crate) fn load(
        mut load: impl FnMut(&'static str) -> Result<Option<CudaFunction>, GpuError>,
    ) -> Result<Kernels, GpuError> {
        let mut f = |name: &'static str| -> Result<Kernel, GpuError> {
            let params = kernel_params(KERNEL_SOURCE, name).ok_or_else(|| {
                GpuError::Invalid(format!("internal error: no parameter list for kernel {name}"))
            })?;
            Ok(Kernel { func: load(name)?, name, params })
        };
        Ok(Kernels {
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
        })
    }
}

/// The C type of a kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgKind {
    Pointer,
    Int,
    Float,
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

/// A CUDA device or the CPU emulator, ready to train: on a GPU a context, a stream, a
/// cuBLAS handle on that stream and the compiled kernels. Cheap to clone (shared).
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<Backend>,
    /// Distinguishes devices, so that a data set is used only with the device it is on.
    pub(crate) id: u64,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gpu")
            .field("name", &self.name())
            .field("compute_capability", &self.compute_capability())
            .field("options", &self.options())
            .finish()
    }
}

/// The name [`Gpu::emulator`] reports.
const EMULATOR_NAME: &str = "CPU emulator of the CUDA kernels (not a GPU)";

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Gpu {
    /// Opens CUDA device `ordinal` (0 for the first GPU).
    ///
    /// Errors: [`GpuError::NoDevice`] when the driver or the CUDA libraries are missing, the
    /// driver is a stub, or it sees no such device (never a panic: the libraries' presence
    /// is checked before cudarc loads them, and any panic from the loader is caught);
    /// [`GpuError::Compile`] if NVRTC rejects the kernels or is newer than the driver;
    /// other CUDA errors as they come.
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

    /// The CPU emulator: **not a GPU**. kernels.cu compiled as C++ and run with one host
    /// thread per CUDA thread, a bounds-checking reference BLAS and recorded graphs, on
    /// host memory. It runs the GPU trainer's exact launches where no GPU exists, for tests
    /// and for checking the GPU path; it is far slower than the CPU trainer.
    pub fn emulator() -> Result<Gpu, GpuError> {
        Ok(Gpu { inner: Arc::new(Backend::Emulated(Arc::new(Emulator::new()?))), id: next_id() })
    }

    /// Whether this is the CPU emulator rather than a GPU.
    pub fn is_emulator(&self) -> bool {
        matches!(&*self.inner, Backend::Emulated(_))
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
        // handle: both are fields of `CudaDevice`, and the workspace is dropped after the
        // handle (fields drop in declaration order: `blas` before `_blas_workspace`).
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
        check_nvrtc_against_driver(nvrtc_version()?, driver_version()?).map_err(GpuError::Compile)?;
        let ptx = ptx_for(cc)?;
        let module = ctx.load_module(ptx).map_err(|e| match e.0 {
            drv_sys::CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION => GpuError::Compile(
                "the CUDA driver cannot load the PTX NVRTC wrote (CUDA_ERROR_UNSUPPORTED_PTX_VERSION): \
                 NVRTC is newer than the driver; install the NVRTC of the driver's CUDA version \
                 (e.g. `pip install nvidia-cuda-nvrtc==13.0.*` for a CUDA 13.0 driver) or update the driver"
                    .into(),
            ),
            _ => GpuError::driver("loading the compiled kernels", e),
        })?;
        let kernels = Kernels::load(|name| {
            module
                .load_function(name)
                .map(Some)
                .map_err(|e| GpuError::driver("finding a kernel in the module", e))
        })?;
        Ok(Gpu {
            inner: Arc::new(Backend::Cuda(Box::new(CudaDevice {
                _ctx: ctx,
                stream,
                blas,
                _blas_workspace: workspace,
                kernels,
                name,
                compute_capability: cc,
                options,
            }))),
            id: next_id(),
        })
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3" (the emulator says it is one).
    pub fn name(&self) -> &str {
        match &*self.inner {
            Backend::Cuda(c) => &c.name,
            Backend::Emulated(_) => EMULATOR_NAME,
        }
    }

    /// The compute capability (major, minor), e.g. (9, 0) for an H100; (0, 0) for the
    /// emulator.
    pub fn compute_capability(&self) -> (i32, i32) {
        match &*self.inner {
            Backend::Cuda(c) => c.compute_capability,
            Backend::Emulated(_) => (0, 0),
        }
    }

    /// The options it was opened with.
    pub fn options(&self) -> GpuOptions {
        match &*self.inner {
            Backend::Cuda(c) => c.options,
            Backend::Emulated(_) => GpuOptions::default(),
        }
    }

    /// A one-line description: name, compute capability, math mode.
    pub fn describe(&self) -> String {
        match &*self.inner {
            Backend::Cuda(c) => {
                let (ma, mi) = c.compute_capability;
                format!(
                    "{} (compute capability {ma}.{mi}, {} products)",
                    c.name,
                    if c.options.tf32 { "TF32" } else { "FP32" }
                )
            }
            Backend::Emulated(_) => {
                format!("{EMULATOR_NAME}: kernels.cu compiled as C++, reference FP32 products")
            }
        }
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        match &*self.inner {
            Backend::Cuda(c) => c.stream.synchronize().map_err(|e| GpuError::driver("synchronizing", e)),
            Backend::Emulated(e) => e.synchronize(),
        }
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

/// NVRTC's options: no contraction of a*b+c into FMA (the kernels round like core's Rust
/// code), IEEE division and square root, no flush to zero; for `arch` (e.g. "sm_90"), or
/// NVRTC's default virtual architecture.
fn compile_options(arch: Option<&str>) -> CompileOptions {
    CompileOptions {
        fmad: Some(false),
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        options: arch.map(|a| vec![format!("--gpu-architecture={a}")]).unwrap_or_default(),
        ..Default::default()
    }
}

/// [`KERNEL_SOURCE`] compiled for exactly `sm_XY`: any failure is an error.
fn compile_for_arch(cc: (i32, i32)) -> Result<Ptx, GpuError> {
    let arch = format!("sm_{}{}", cc.0, cc.1);
    compile_ptx_with_opts(KERNEL_SOURCE, compile_options(Some(&arch)))
        .map_err(|e| GpuError::Compile(compile_error_text(&e)))
}

/// [`compile_for_arch`]; only when NVRTC does not know the architecture (an NVRTC older than
/// the GPU) its default virtual architecture instead, which the driver JIT-compiles for the
/// device. Any other failure is an error.
fn compile(cc: (i32, i32)) -> Result<Ptx, GpuError> {
    match compile_for_arch(cc) {
        Ok(p) => Ok(p),
        Err(GpuError::Compile(log)) if log.contains("--gpu-architecture") => {
            compile_ptx_with_opts(KERNEL_SOURCE, compile_options(None)).map_err(|e| {
                GpuError::Compile(format!("{log}\nand without an architecture: {}", compile_error_text(&e)))
            })
        }
        Err(e) => Err(e),
    }
}

/// NVRTC's version (major, minor).
fn nvrtc_version() -> Result<(i32, i32), GpuError> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: nvrtcVersion writes two ints through the given pointers, which point to live
    // locals; libnvrtc was found by `probe_libraries` before this runs.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| GpuError::Compile(format!("asking NVRTC for its version: {e:?}")))?;
    Ok((major, minor))
}

/// The CUDA version the driver supports, as `cuDriverGetVersion` gives it (13000 = 13.0).
fn driver_version() -> Result<i32, GpuError> {
    let mut v = 0;
    // SAFETY: writes one int through a pointer to a live local; the driver library is loaded
    // (a context was created before this runs).
    unsafe { drv_sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(|e| GpuError::driver("asking the driver for its CUDA version", e))?;
    Ok(v)
}

/// An NVRTC newer than the driver writes PTX of an ISA version the driver's JIT rejects
/// (CUDA_ERROR_UNSUPPORTED_PTX_VERSION; e.g. NVRTC 13.5 emits PTX ISA 9.5, which a CUDA 13.0
/// driver cannot load): refuse it up front, saying which NVRTC to install.
pub(crate) fn check_nvrtc_against_driver(nvrtc: (i32, i32), driver: i32) -> Result<(), String> {
    let driver_mm = (driver / 1000, (driver % 1000) / 10);
    if nvrtc > driver_mm {
        return Err(format!(
            "NVRTC {}.{} is newer than the CUDA {}.{} driver, whose JIT cannot load the PTX it writes \
             (CUDA_ERROR_UNSUPPORTED_PTX_VERSION): install the NVRTC of the driver's CUDA version, \
             e.g. `pip install nvidia-cuda-nvrtc=={}.{}.*`, and put its lib folder first on \
             LD_LIBRARY_PATH, or update the NVIDIA driver",
            nvrtc.0, nvrtc.1, driver_mm.0, driver_mm.1, driver_mm.0, driver_mm.1
        ));
    }
    Ok(())
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
    fn an_nvrtc_newer_than_the_driver_is_refused_naming_the_one_to_install() {
        let err = check_nvrtc_against_driver((13, 5), 13000).unwrap_err();
        assert!(err.contains("NVRTC 13.5 is newer than the CUDA 13.0 driver"), "{err}");
        assert!(err.contains("nvidia-cuda-nvrtc==13.0.*"), "{err}");
        assert!(check_nvrtc_against_driver((13, 0), 13000).is_ok());
        assert!(check_nvrtc_against_driver((12, 8), 13000).is_ok());
        assert!(check_nvrtc_against_driver((13, 1), 13020).is_ok());
        assert!(check_nvrtc_against_driver((14, 0), 13090).is_err());
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
    /// kernels exactly as `Gpu::new` does, strictly for sm_90 and sm_80; with `PTXAS` set to
    /// a ptxas binary it also assembles each PTX and fails on any warning, spill or local
    /// memory. CI runs it with pinned pip wheels (see .ci/run), e.g.
    /// `LD_LIBRARY_PATH=$VENV/lib/python3.11/site-packages/nvidia/cu13/lib PTXAS=.../cu13/bin/ptxas
    /// cargo test -p gpu --lib -- --ignored nvrtc --nocapture`.
    #[test]
    #[ignore = "needs libnvrtc (CUDA 13)"]
    fn kernels_compile_with_nvrtc() {
        assert!(SystemLibraries.nvrtc(), "libnvrtc is not on the loader path");
        let version = nvrtc_version().unwrap();
        eprintln!("NVRTC {}.{}", version.0, version.1);
        let ptxas = std::env::var_os("PTXAS");
        // An architecture NVRTC cannot compile for is an error here, not a silent retry.
        let err = compile_for_arch((1, 0)).unwrap_err().to_string();
        assert!(err.contains("sm_10"), "{err}");
        for cc in [(9, 0), (8, 0)] {
            // Exactly this architecture: a failure must not hide behind the fallback.
            let ptx = compile_for_arch(cc).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            for name in KERNEL_NAMES {
                assert!(text.contains(&format!(".entry {name}(")), "{name} missing from the PTX for {cc:?}");
            }
            if let Some(ptxas) = &ptxas {
                let report = ptxas_report(ptxas, &text, cc);
                eprintln!("ptxas sm_{}{}:\n{report}", cc.0, cc.1);
                assert!(!report.contains("arning"), "ptxas warned for sm_{}{}:\n{report}", cc.0, cc.1);
                // Each kernel's "Function properties" line: no stack frame (local memory),
                // no spills.
                let props: Vec<&str> = report.lines().filter(|l| l.contains("bytes stack frame")).collect();
                assert_eq!(props.len(), KERNEL_NAMES.len(), "one properties line per kernel:\n{report}");
                for line in props {
                    assert!(
                        line.trim() == "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads",
                        "sm_{}{}: {line}",
                        cc.0,
                        cc.1
                    );
                }
            }
        }
    }

    /// `ptxas -v` on `ptx` for `cc`: its whole report (stderr and stdout).
    fn ptxas_report(ptxas: &std::ffi::OsStr, ptx: &str, cc: (i32, i32)) -> String {
        let dir = std::env::temp_dir().join(format!("mlp-ptxas-{}-{}{}", std::process::id(), cc.0, cc.1));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kernels.ptx");
        std::fs::write(&file, ptx).unwrap();
        let out = std::process::Command::new(ptxas)
            .arg("-v")
            .arg(format!("--gpu-name=sm_{}{}", cc.0, cc.1))
            .arg("--warn-on-spills")
            .arg("--warn-on-local-memory-usage")
            .arg("-o")
            .arg(dir.join("kernels.cubin"))
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", ptxas.to_string_lossy()));
        let _ = std::fs::remove_dir_all(&dir);
        let report =
            format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        assert!(out.status.success(), "ptxas failed:\n{report}");
        report
    }
}
