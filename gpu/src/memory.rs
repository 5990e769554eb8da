//! Device buffers on either backend: a cudarc allocation on a GPU, or a host allocation the
//! emulated kernels read and write through its address.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};

use crate::backend::Backend;
use crate::device::dptr;
use crate::emulator::Emulator;
use crate::{Gpu, GpuError};

/// What a device buffer may hold: plain numbers that are valid as all-zero bytes.
pub(crate) trait Elem: DeviceRepr + ValidAsZeroBits + Copy + Send + Sync + 'static {}
impl Elem for f32 {}
impl Elem for u32 {}
impl Elem for i32 {}
impl Elem for u8 {}

/// A buffer in device memory (or, on the emulator, host memory standing in for it).
pub(crate) enum DevBuf<T: Elem> {
    Cuda(CudaSlice<T>),
    Host(HostBuf<T>),
}

impl<T: Elem> fmt::Debug for DevBuf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevBuf::Cuda(s) => write!(f, "DevBuf::Cuda({} elements)", s.len()),
            DevBuf::Host(h) => write!(f, "DevBuf::Host({} elements at {:#x})", h.len, h.addr()),
        }
    }
}

impl<T: Elem> DevBuf<T> {
    /// Elements.
    pub fn len(&self) -> usize {
        match self {
            DevBuf::Cuda(s) => s.len(),
            DevBuf::Host(h) => h.len,
        }
    }
}

/// A zeroed host allocation of exactly `len` elements, registered with its emulator as a
/// live allocation (the reference BLAS checks every operand against the live allocations)
/// and only ever accessed through raw pointers: the emulated kernels write to it through
/// its address while the trainer holds it.
pub(crate) struct HostBuf<T: Elem> {
    ptr: NonNull<T>,
    len: usize,
    emulator: std::sync::Arc<Emulator>,
}

// SAFETY: a HostBuf owns its allocation (like a Box<[T]>) and T is Send + Sync; concurrent
// access goes through the emulator, which serializes launches and copies.
unsafe impl<T: Elem> Send for HostBuf<T> {}
// SAFETY: as above; `&HostBuf` only reads the address and length.
unsafe impl<T: Elem> Sync for HostBuf<T> {}

impl<T: Elem> HostBuf<T> {
    fn layout(len: usize) -> Result<Layout, GpuError> {
        Layout::array::<T>(len.max(1))
            .map_err(|_| GpuError::Invalid(format!("a buffer of {len} elements is too large")))
    }

    pub(crate) fn zeroed(emulator: &std::sync::Arc<Emulator>, len: usize) -> Result<Self, GpuError> {
        let layout = Self::layout(len)?;
        // SAFETY: the layout has a non-zero size (at least one element of a non-zero-sized
        // type: every Elem is a number).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw.cast::<T>()).ok_or_else(|| GpuError::Driver {
            what: "allocating",
            error: "CUDA_ERROR_OUT_OF_MEMORY (emulator)".into(),
        })?;
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        emulator.register(ptr.as_ptr() as u64, bytes);
        Ok(HostBuf { ptr, len, emulator: emulator.clone() })
    }

    pub(crate) fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Copies `src` into the first `src.len()` elements.
    pub(crate) fn write(&mut self, src: &[T]) {
        let n = src.len().min(self.len);
        // SAFETY: `ptr` is valid for `len` elements and `n <= len`; `src` is a distinct
        // borrowed slice, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr(), n) };
    }

    /// Copies the first `dst.len()` elements out.
    pub(crate) fn read(&self, dst: &mut [T]) {
        let n = dst.len().min(self.len);
        // SAFETY: as in `write`, the other way round.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), dst.as_mut_ptr(), n) };
    }
}

impl<T: Elem> Drop for HostBuf<T> {
    fn drop(&mut self) {
        self.emulator.unregister(self.addr());
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `zeroed` with this same layout and not freed since.
            unsafe { alloc::dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

impl Gpu {
    /// A zeroed buffer of `len` elements (at least one).
    pub(crate) fn zeros<T: Elem>(&self, len: usize) -> Result<DevBuf<T>, GpuError> {
        match &*self.inner {
            Backend::Cuda(c) => c
                .stream
                .alloc_zeros::<T>(len.max(1))
                .map(DevBuf::Cuda)
                .map_err(|e| GpuError::driver("allocating", e)),
            Backend::Emulated(e) => {
                e.refuse_during_capture("allocating")?;
                HostBuf::zeroed(e, len.max(1)).map(DevBuf::Host)
            }
        }
    }

    /// A buffer holding a copy of `src` (one zero element if `src` is empty).
    pub(crate) fn upload<T: Elem>(&self, src: &[T]) -> Result<DevBuf<T>, GpuError> {
        if src.is_empty() {
            return self.zeros(1);
        }
        match &*self.inner {
            Backend::Cuda(c) => {
                c.stream.clone_htod(src).map(DevBuf::Cuda).map_err(|e| GpuError::driver("uploading", e))
            }
            Backend::Emulated(_) => {
                let mut b = self.zeros(src.len())?;
                self.write(&mut b, src)?;
                Ok(b)
            }
        }
    }

    /// Copies `src` into the start of `dst`.
    pub(crate) fn write<T: Elem>(&self, dst: &mut DevBuf<T>, src: &[T]) -> Result<(), GpuError> {
        if src.len() > dst.len() {
            return Err(GpuError::Invalid(format!(
                "internal error: copying {} elements into a buffer of {}",
                src.len(),
                dst.len()
            )));
        }
        match (&*self.inner, dst) {
            (Backend::Cuda(c), DevBuf::Cuda(d)) => {
                c.stream.memcpy_htod(src, d).map_err(|e| GpuError::driver("uploading", e))
            }
            (Backend::Emulated(e), DevBuf::Host(h)) => {
                e.refuse_during_capture("copying to the device")?;
                h.write(src);
                Ok(())
            }
            _ => Err(wrong_backend()),
        }
    }

    /// Copies the first `dst.len()` elements of `src` to the host, waiting for queued work.
    pub(crate) fn read<T: Elem>(&self, src: &DevBuf<T>, dst: &mut [T]) -> Result<(), GpuError> {
        if dst.is_empty() {
            return Ok(());
        }
        if dst.len() > src.len() {
            return Err(GpuError::Invalid(format!(
                "internal error: reading {} elements from a buffer of {}",
                dst.len(),
                src.len()
            )));
        }
        match (&*self.inner, src) {
            (Backend::Cuda(c), DevBuf::Cuda(s)) => {
                let err = |e| GpuError::driver("downloading", e);
                c.stream.memcpy_dtoh(&s.slice(0..dst.len()), dst).map_err(err)?;
                c.stream.synchronize().map_err(err)
            }
            (Backend::Emulated(e), DevBuf::Host(h)) => {
                e.refuse_during_capture("copying from the device")?;
                h.read(dst);
                Ok(())
            }
            _ => Err(wrong_backend()),
        }
    }

    /// The buffer's device address, for kernel arguments and BLAS calls.
    pub(crate) fn addr<T: Elem>(&self, b: &DevBuf<T>) -> u64 {
        match (&*self.inner, b) {
            (Backend::Cuda(c), DevBuf::Cuda(s)) => dptr(s, &c.stream),
            (_, DevBuf::Host(h)) => h.addr(),
            // A CUDA buffer on an emulator (impossible: buffers come from their own Gpu): the
            // null address, which every launch and product then rejects or skips.
            _ => 0,
        }
    }
}

fn wrong_backend() -> GpuError {
    GpuError::Invalid("internal error: a buffer used with a device other than its own".into())
}
