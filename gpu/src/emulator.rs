//! The CPU emulator behind the [`Gpu`](crate::Gpu) seam: **not a GPU**. It executes the
//! trainer's exact launches, products and graphs on the host so that the CUDA path runs in
//! every test run on machines without a GPU:
//! - buffers are host allocations of exactly the requested size, registered as live;
//! - kernels are kernels.cu itself, compiled as C++ against `emu/cuda_emu.h` (each CUDA
//!   thread of a block a real thread, `__syncthreads` a barrier, warp shuffles per warp;
//!   see [`kernels`]), with every pointer argument checked to lie in a live allocation;
//! - SGEMM/SGEMV are a strict column-major reference that checks every operand's extent
//!   (from m, n, k and the leading dimensions) against the live allocations, the leading
//!   dimensions as cuBLAS does, and that the output overlaps no input;
//! - capture records launches and products and replays them; what a CUDA driver refuses
//!   during stream capture (allocation, host copies, synchronization) is an error here too,
//!   and it invalidates the capture.
//!
//! The products sum in a different order than cuBLAS, and glibc's `expf`/`tanhf`/`erff`
//! differ from CUDA's in the last ulp, so agreement with core is tested with the same
//! tolerances on both backends.

pub(crate) mod kernels;

use std::collections::BTreeMap;
use std::sync::Mutex;

use cudarc::driver::LaunchConfig;

use crate::backend::{Arg, Gemm, Gemv};
use crate::device::Kernels;
use crate::GpuError;

/// One recorded operation of a captured graph.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Launch { name: &'static str, grid: (u32, u32, u32), block: (u32, u32, u32), args: Vec<Arg> },
    Gemm(Gemm),
    Gemv(Gemv),
}

enum Capture {
    Off,
    On { ops: Vec<Op>, broken: Option<String> },
}

/// The emulated device: its live allocations, its capture state and the kernel table.
pub(crate) struct Emulator {
    /// Live allocations: start address → length in bytes.
    live: Mutex<BTreeMap<u64, u64>>,
    capture: Mutex<Capture>,
    pub kernels: Kernels,
}

/// The error code a CUDA driver gives for work it cannot capture.
const CAPTURE_UNSUPPORTED: &str = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED";

impl Emulator {
    pub(crate) fn new() -> Result<Self, GpuError> {
        Ok(Emulator {
            live: Mutex::new(BTreeMap::new()),
            capture: Mutex::new(Capture::Off),
            kernels: Kernels::load(|_| Ok(None))?,
        })
    }

    pub(crate) fn register(&self, addr: u64, bytes: u64) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(addr, bytes.max(1));
    }

    pub(crate) fn unregister(&self, addr: u64) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr);
    }

    /// Whether `[addr, addr + bytes)` lies inside one live allocation.
    fn inside(&self, addr: u64, bytes: u64) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.range(..=addr)
            .next_back()
            .is_some_and(|(&start, &len)| addr.checked_add(bytes).is_some_and(|end| end <= start + len))
    }

    /// Errors (and invalidates the capture) when called during capture: allocation, copies
    /// and synchronization are not capturable on a CUDA stream either.
    pub(crate) fn refuse_during_capture(&self, what: &'static str) -> Result<(), GpuError> {
        let mut c = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        if let Capture::On { broken, .. } = &mut *c {
            let error = format!("{CAPTURE_UNSUPPORTED} (emulator: {what} during graph capture)");
            broken.get_or_insert_with(|| error.clone());
            return Err(GpuError::Driver { what, error });
        }
        Ok(())
    }

    /// Records `op` if capturing; `Ok(false)` means run it now.
    fn record(&self, op: impl FnOnce() -> Op) -> bool {
        let mut c = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *c {
            Capture::On { ops, .. } => {
                ops.push(op());
                true
            }
            Capture::Off => false,
        }
    }

    pub(crate) fn begin_capture(&self) -> Result<(), GpuError> {
        let mut c = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*c, Capture::On { .. }) {
            return Err(GpuError::Driver {
                what: "starting graph capture",
                error: "CUDA_ERROR_ILLEGAL_STATE (emulator: already capturing)".into(),
            });
        }
        *c = Capture::On { ops: Vec::new(), broken: None };
        Ok(())
    }

    pub(crate) fn end_capture(&self) -> Result<Vec<Op>, GpuError> {
        let mut c = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *c, Capture::Off) {
            Capture::On { ops, broken: None } => Ok(ops),
            Capture::On { broken: Some(why), .. } => {
                Err(GpuError::Driver { what: "ending graph capture", error: why })
            }
            Capture::Off => Err(GpuError::Driver {
                what: "ending graph capture",
                error: "CUDA_ERROR_ILLEGAL_STATE (emulator: not capturing)".into(),
            }),
        }
    }

    pub(crate) fn replay(&self, ops: &[Op]) -> Result<(), GpuError> {
        self.refuse_during_capture("launching a graph")?;
        for op in ops {
            match op {
                Op::Launch { name, grid, block, args } => self.run_kernel(name, *grid, *block, args)?,
                Op::Gemm(g) => self.run_gemm(*g)?,
                Op::Gemv(g) => self.run_gemv(*g)?,
            }
        }
        Ok(())
    }

    pub(crate) fn synchronize(&self) -> Result<(), GpuError> {
        // Launches run to completion before they return; only capture makes this an error.
        self.refuse_during_capture("synchronizing")
    }

    pub(crate) fn launch(&self, name: &'static str, cfg: LaunchConfig, args: &[Arg]) -> Result<(), GpuError> {
        let (grid, block) = (cfg.grid_dim, cfg.block_dim);
        if cfg.shared_mem_bytes != 0 {
            return Err(GpuError::Invalid(format!(
                "kernel {name}: the emulator supports only static shared memory"
            )));
        }
        if self.record(|| Op::Launch { name, grid, block, args: args.to_vec() }) {
            return Ok(());
        }
        self.run_kernel(name, grid, block, args)
    }

    fn run_kernel(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[Arg],
    ) -> Result<(), GpuError> {
        let mut words = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            words.push(match *a {
                Arg::P(0) => 0,
                Arg::P(p) => {
                    if !self.inside(p, 1) {
                        return Err(launch_error(
                            name,
                            format!(
                                "argument {i} ({p:#x}) points into no live allocation \
                                 (CUDA_ERROR_ILLEGAL_ADDRESS on a GPU)"
                            ),
                        ));
                    }
                    p
                }
                Arg::I(v) => u64::from(v as u32),
                Arg::F(v) => u64::from(v.to_bits()),
            });
        }
        // SAFETY: every non-null pointer argument was checked above to point into a live
        // allocation of this emulator, which is where the trainer's buffers live; the
        // argument list matches the kernel's parameters (checked by `Gpu::launch` against
        // kernels.cu); the trainer sizes each launch so the kernel indexes within those
        // allocations — which is what the sanitizer build (ASan) checks in CI.
        unsafe { kernels::launch(name, grid, block, &words) }.map_err(|e| launch_error(name, e))
    }

    pub(crate) fn sgemm(&self, g: Gemm) -> Result<(), GpuError> {
        if self.record(|| Op::Gemm(g)) {
            return Ok(());
        }
        self.run_gemm(g)
    }

    pub(crate) fn sgemv(&self, g: Gemv) -> Result<(), GpuError> {
        if self.record(|| Op::Gemv(g)) {
            return Ok(());
        }
        self.run_gemv(g)
    }

    /// Checks that a column-major `rows × cols` operand with leading dimension `ld` at `addr`
    /// lies in one live allocation; returns its extent in elements.
    fn operand(&self, what: &str, addr: u64, rows: usize, cols: usize, ld: usize) -> Result<usize, String> {
        if ld < rows.max(1) {
            return Err(format!(
                "{what}: leading dimension {ld} < {rows} rows (CUBLAS_STATUS_INVALID_VALUE)"
            ));
        }
        if rows == 0 || cols == 0 {
            return Ok(0);
        }
        let extent = (cols - 1) * ld + rows;
        if addr == 0 || !self.inside(addr, 4 * extent as u64) {
            return Err(format!(
                "{what}: {rows}x{cols} (ld {ld}, {extent} floats) at {addr:#x} is not inside one live allocation"
            ));
        }
        Ok(extent)
    }

    fn run_gemm(&self, g: Gemm) -> Result<(), GpuError> {
        let (ar, ac) = if g.ta { (g.k, g.m) } else { (g.m, g.k) };
        let (br, bc) = if g.tb { (g.n, g.k) } else { (g.k, g.n) };
        let shape = format!("sgemm {}x{}x{} (ta {}, tb {})", g.m, g.n, g.k, g.ta, g.tb);
        let checked = (|| {
            let ea = self.operand("A", g.a, ar, ac, g.lda)?;
            let eb = self.operand("B", g.b, br, bc, g.ldb)?;
            let ec = self.operand("C", g.c, g.m, g.n, g.ldc)?;
            for (what, addr, e) in [("A", g.a, ea), ("B", g.b, eb)] {
                if e > 0 && ec > 0 && overlaps(addr, e, g.c, ec) {
                    return Err(format!("C overlaps {what}"));
                }
            }
            Ok((ea, eb, ec))
        })();
        let (ea, eb, ec) = checked.map_err(|e| GpuError::Blas(format!("{shape}: {e} (emulator)")))?;
        if ec == 0 {
            return Ok(());
        }
        // SAFETY: each range was checked above to lie inside one live allocation of this
        // emulator (host memory, accessed only through raw pointers while launches run one
        // at a time), and C overlaps neither A nor B.
        let (a, b, c) = unsafe {
            (
                std::slice::from_raw_parts(g.a as *const f32, ea),
                std::slice::from_raw_parts(g.b as *const f32, eb),
                std::slice::from_raw_parts_mut(g.c as *mut f32, ec),
            )
        };
        reference_gemm(&g, a, b, c);
        Ok(())
    }

    fn run_gemv(&self, g: Gemv) -> Result<(), GpuError> {
        let shape = format!("sgemv {}x{}", g.m, g.n);
        let checked = (|| {
            let ea = self.operand("A", g.a, g.m, g.n, g.lda)?;
            let ex = self.operand("x", g.x, g.n, 1, g.n.max(1))?;
            let ey = self.operand("y", g.y, g.m, 1, g.m.max(1))?;
            if ey > 0 && (overlaps(g.a, ea, g.y, ey) || overlaps(g.x, ex, g.y, ey)) {
                return Err("y overlaps an input".to_string());
            }
            Ok((ea, ex, ey))
        })();
        let (ea, ex, ey) = checked.map_err(|e| GpuError::Blas(format!("{shape}: {e} (emulator)")))?;
        if ey == 0 {
            return Ok(());
        }
        // SAFETY: as in `run_gemm`.
        let (a, x, y) = unsafe {
            (
                std::slice::from_raw_parts(g.a as *const f32, ea),
                std::slice::from_raw_parts(g.x as *const f32, ex),
                std::slice::from_raw_parts_mut(g.y as *mut f32, ey),
            )
        };
        y.fill(0.0);
        for (j, &xj) in x.iter().enumerate().take(g.n) {
            let col = &a[j * g.lda..j * g.lda + g.m];
            for (yi, &aij) in y.iter_mut().zip(col) {
                *yi += aij * xj;
            }
        }
        Ok(())
    }
}

fn overlaps(a: u64, a_len: usize, b: u64, b_len: usize) -> bool {
    a < b + 4 * b_len as u64 && b < a + 4 * a_len as u64
}

fn launch_error(name: &str, why: String) -> GpuError {
    GpuError::Driver { what: "launching a kernel", error: format!("{name}: {why} (emulator)") }
}

/// `C = op(A) · op(B)` column-major, each element summed over `p = 0..k` in order in f32.
fn reference_gemm(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    let bt = |p: usize, j: usize| if g.tb { b[j + p * g.ldb] } else { b[p + j * g.ldb] };
    let mut col = vec![0.0f32; g.m];
    for j in 0..g.n {
        col.fill(0.0);
        if g.ta {
            // Rows of op(A) are contiguous columns of A: dot products.
            for (i, ci) in col.iter_mut().enumerate() {
                let arow = &a[i * g.lda..i * g.lda + g.k];
                let mut s = 0.0f32;
                for (p, &ap) in arow.iter().enumerate() {
                    s += ap * bt(p, j);
                }
                *ci = s;
            }
        } else {
            // Columns of A are contiguous: accumulate column by column (the same order per
            // element: p = 0, 1, ..., k-1).
            for p in 0..g.k {
                let bp = bt(p, j);
                let acol = &a[p * g.lda..p * g.lda + g.m];
                for (ci, &ap) in col.iter_mut().zip(acol) {
                    *ci += ap * bp;
                }
            }
        }
        c[j * g.ldc..j * g.ldc + g.m].copy_from_slice(&col);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{DevBuf, HostBuf};
    use std::sync::Arc;

    fn emu() -> Arc<Emulator> {
        Arc::new(Emulator::new().unwrap())
    }

    fn buf(e: &Arc<Emulator>, v: &[f32]) -> HostBuf<f32> {
        let mut b = HostBuf::zeroed(e, v.len()).unwrap();
        b.write(v);
        b
    }

    #[test]
    fn the_reference_gemm_multiplies_every_transpose_combination() {
        let e = emu();
        // Row-major 2x3 X and 4x3 W: Y = X·Wᵀ (2x4) is column-major Yᵀ = op_T(W)·Xᵀ.
        let x = [1.0, 2.0, 3.0, -1.0, 0.5, 2.0];
        let w: Vec<f32> = (0..12).map(|v| v as f32 * 0.25 - 1.0).collect();
        let (xb, wb) = (buf(&e, &x), buf(&e, &w));
        let yb = buf(&e, &[0.0; 8]);
        let g = Gemm {
            ta: true,
            tb: false,
            m: 4,
            n: 2,
            k: 3,
            a: wb.addr(),
            lda: 3,
            b: xb.addr(),
            ldb: 3,
            c: yb.addr(),
            ldc: 4,
        };
        e.sgemm(g).unwrap();
        let mut y = [0.0f32; 8];
        yb.read(&mut y);
        for r in 0..2 {
            for o in 0..4 {
                let want: f32 = (0..3).map(|j| x[r * 3 + j] * w[o * 3 + j]).sum();
                assert_eq!(y[r * 4 + o], want, "row {r} out {o}");
            }
        }
        // dW = dYᵀ·X (4x3): column-major dWᵀ (3x4) = Xᵀ (3x2, lda 3) · op_T(dYᵀ) (ldb 4).
        let dwb = buf(&e, &[0.0; 12]);
        let g = Gemm {
            ta: false,
            tb: true,
            m: 3,
            n: 4,
            k: 2,
            a: xb.addr(),
            lda: 3,
            b: yb.addr(),
            ldb: 4,
            c: dwb.addr(),
            ldc: 3,
        };
        e.sgemm(g).unwrap();
        let mut dw = [0.0f32; 12];
        dwb.read(&mut dw);
        for o in 0..4 {
            for j in 0..3 {
                let want: f32 = (0..2).map(|r| y[r * 4 + o] * x[r * 3 + j]).sum();
                assert_eq!(dw[o * 3 + j], want);
            }
        }
    }

    #[test]
    fn an_operand_past_its_allocation_is_an_error_naming_it() {
        let e = emu();
        let (a, b, c) = (buf(&e, &[1.0; 12]), buf(&e, &[1.0; 6]), buf(&e, &[0.0; 7]));
        // C is 4x2 (8 floats) but only 7 were allocated: a one-element overrun.
        let g = Gemm {
            ta: true,
            tb: false,
            m: 4,
            n: 2,
            k: 3,
            a: a.addr(),
            lda: 3,
            b: b.addr(),
            ldb: 3,
            c: c.addr(),
            ldc: 4,
        };
        let err = e.sgemm(g).unwrap_err().to_string();
        assert!(err.contains("C: 4x2") && err.contains("not inside one live allocation"), "{err}");
        // A leading dimension smaller than the rows, as cuBLAS refuses it.
        let g = Gemm { lda: 2, ..g };
        let err = e.sgemm(g).unwrap_err().to_string();
        assert!(err.contains("leading dimension 2 < 3"), "{err}");
        // A freed buffer is no longer live.
        let addr = a.addr();
        drop(a);
        let g = Gemm { a: addr, lda: 3, ldc: 4, c: b.addr(), m: 2, n: 1, k: 3, ..g };
        assert!(e.sgemm(g).is_err());
    }

    #[test]
    fn capture_records_launches_and_refuses_what_a_driver_refuses() {
        let e = emu();
        let ctr: HostBuf<i32> = HostBuf::zeroed(&e, 1).unwrap();
        let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
        e.begin_capture().unwrap();
        e.launch("advance", one, &[Arg::P(ctr.addr())]).unwrap();
        e.launch("advance", one, &[Arg::P(ctr.addr())]).unwrap();
        let ops = e.end_capture().unwrap();
        assert_eq!(ops.len(), 2);
        let mut v = [0i32];
        ctr.read(&mut v);
        assert_eq!(v[0], 0, "captured launches must not run");
        e.replay(&ops).unwrap();
        e.replay(&ops).unwrap();
        ctr.read(&mut v);
        assert_eq!(v[0], 4);
        // Allocation during capture fails and invalidates the capture.
        e.begin_capture().unwrap();
        let gpu_err = e.synchronize().unwrap_err().to_string();
        assert!(gpu_err.contains(CAPTURE_UNSUPPORTED), "{gpu_err}");
        let end = e.end_capture().unwrap_err().to_string();
        assert!(end.contains("synchronizing during graph capture"), "{end}");
        let _ = DevBuf::<f32>::Host(buf(&e, &[1.0]));
    }

    #[test]
    fn the_sgemm_rate_is_measured_through_the_seam() {
        let g = crate::Gpu::emulator().unwrap();
        let rate = g.sgemm_tflops(48, 33, 17, 3).unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
    }

    #[test]
    fn a_pointer_outside_every_allocation_is_refused() {
        let e = emu();
        let v = [0i32; 4];
        let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
        let err = e.launch("advance", one, &[Arg::P(v.as_ptr() as u64)]).unwrap_err().to_string();
        assert!(err.contains("no live allocation"), "{err}");
    }
}
