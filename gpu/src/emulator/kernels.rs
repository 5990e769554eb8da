//! kernels.cu on the CPU: the FFI side of `emu/launch.cpp`, which compiles the kernels
//! unmodified as C++ against `emu/cuda_emu.h` (built by build.rs with the `cc` crate).
//!
//! In kernels with barriers or warp operations each CUDA thread of a block is its own thread
//! of execution, so `__syncthreads`, `__syncwarp` and `__shfl_xor_sync` are real
//! synchronization: a fiber on the launching thread by default (fast), an OS thread in the
//! sanitizer builds or with `MLP_GPU_EMU_THREADS=threads` (so ThreadSanitizer sees real
//! concurrency). The other kernels run their threads as a loop (`MLP_GPU_EMU_THREADS=all`:
//! on OS threads too). Blocks run one after another. See cuda_emu.h for the model and
//! build.rs for the AddressSanitizer / ThreadSanitizer builds.

use std::ffi::{c_char, c_int, CStr};

extern "C" {
    /// emu/launch.cpp: runs kernel `name` (`name_len` bytes) with `grid[3]`, `block[3]` and
    /// `nargs` argument words. 0 on success; otherwise a NUL-terminated message in `err`.
    fn mlp_emu_launch(
        name: *const c_char,
        name_len: usize,
        grid: *const u32,
        block: *const u32,
        args: *const u64,
        nargs: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Runs kernel `name` of kernels.cu on the CPU with this grid and block, to completion.
///
/// `args` holds one word per kernel parameter, in order: a pointer is its address (0 for
/// null), an `int` is the `i32` in the low 32 bits, a `float` is its `f32::to_bits` in the
/// low 32 bits. The argument count, the grid and the block are checked (as a driver would),
/// and so is the emulator's own model (a barrier in a kernel launch.cpp runs as a loop, a
/// deadlock, a shuffle from an exited lane): all are `Err` with a message, never a crash.
///
/// # Safety
///
/// The kernel dereferences the pointer words as the types of its parameters, from other
/// threads, with no bounds checks of its own. The caller must ensure that:
/// - each word is of the kind of the kernel's parameter at that position (a pointer where it
///   takes a pointer; only the count is checked here);
/// - every non-null pointer is the address of a live host allocation, suitably aligned for
///   its element type, large enough for every element the kernel reads or writes given the
///   other arguments, the grid and the block;
/// - nothing else reads or writes memory the kernel writes while the call runs, and
///   allocations the kernel writes do not overlap ones it reads unless the kernel allows it.
pub(crate) unsafe fn launch(
    name: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    args: &[u64],
) -> Result<(), String> {
    let grid = [grid.0, grid.1, grid.2];
    let block = [block.0, block.1, block.2];
    let mut err = [0u8; 1024];
    // SAFETY: name, grid, block and args are valid for the lengths passed (the name is not
    // read past name_len; grid and block are 3 words each); err is writable for err.len()
    // bytes and the callee NUL-terminates what it writes there. The memory the kernel
    // touches through the argument words is the caller's obligation (see # Safety).
    let rc = unsafe {
        mlp_emu_launch(
            name.as_ptr().cast(),
            name.len(),
            grid.as_ptr(),
            block.as_ptr(),
            args.as_ptr(),
            args.len(),
            err.as_mut_ptr().cast(),
            err.len(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    Err(match CStr::from_bytes_until_nul(&err) {
        Ok(msg) if !msg.is_empty() => msg.to_string_lossy().into_owned(),
        _ => format!("kernel {name}: the emulator failed with code {rc} and no message"),
    })
}

#[cfg(test)]
mod tests {
    use super::launch;
    use crate::device::{kernel_params, KERNEL_SOURCE};

    // kernels.cu's codes.
    const ACT_IDENTITY: i32 = 0;
    const ACT_RELU: i32 = 3;
    const ACT_SOFTMAX: i32 = 7;
    const LOSS_CE: i32 = 1;

    fn p<T>(v: &mut [T]) -> u64 {
        v.as_mut_ptr() as u64
    }
    fn i(v: i32) -> u64 {
        u64::from(v as u32)
    }
    fn f(v: f32) -> u64 {
        u64::from(v.to_bits())
    }

    /// Deterministic test values in about [-3, 3].
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|k| {
                let h =
                    (k.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)).wrapping_mul(2_246_822_519);
                (h >> 8) as f32 / (1u32 << 24) as f32 * 6.0 - 3.0
            })
            .collect()
    }

    fn close(got: f32, want: f64, tol: f64) -> bool {
        (f64::from(got) - want).abs() <= tol * want.abs().max(1.0)
    }

    #[test]
    fn advance_increments_the_counter_once_per_launch() {
        let mut ctr = vec![41i32];
        // SAFETY: advance writes ctr[0] only, from thread 0 of block 0.
        unsafe { launch("advance", (3, 1, 1), (64, 1, 1), &[p(&mut ctr)]) }.unwrap();
        assert_eq!(ctr, [42]);
    }

    #[test]
    fn bias_act_runs_a_grid_stride_loop_over_several_blocks() {
        let (n, rows) = (10usize, 100usize);
        let total = n * rows;
        let mut z = values(total, 1);
        let z0 = z.clone();
        let mut bias = values(n, 2);
        let mut a = vec![f32::NAN; total];
        // SAFETY: z and a hold `total` floats, bias `n`; out, mask_bits and ctr are null
        // (no dropout), which bias_act never dereferences then.
        unsafe {
            launch(
                "bias_act",
                (2, 1, 1),
                (256, 1, 1),
                &[
                    p(&mut z),
                    p(&mut a),
                    0,
                    p(&mut bias),
                    i(n as i32),
                    i(total as i32),
                    i(ACT_RELU),
                    f(0.0),
                    0,
                    0,
                    i(0),
                    f(1.0),
                ],
            )
        }
        .unwrap();
        for k in 0..total {
            let v = z0[k] + bias[k % n];
            assert_eq!(z[k], v, "z[{k}]");
            assert_eq!(a[k], v.max(0.0), "a[{k}]");
        }
    }

    #[test]
    fn sum_squares_gives_one_partial_per_block() {
        let n = 1000;
        let mut g = values(n, 3);
        let mut partials = vec![f32::NAN; 256];
        // SAFETY: g holds n floats; partials one float per block (256).
        unsafe {
            launch("sum_squares", (256, 1, 1), (256, 1, 1), &[p(&mut g), i(n as i32), p(&mut partials)])
        }
        .unwrap();
        let want: f64 = g.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let got: f64 = partials.iter().map(|&x| f64::from(x)).sum();
        assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
        // Block b sums g[256 b .. 256 (b + 1)]: blocks 4 and later have nothing.
        for (b, &part) in partials.iter().enumerate() {
            let lo = (256 * b).min(n);
            let hi = (256 * (b + 1)).min(n);
            let want: f64 = g[lo..hi].iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            assert!(close(part, want, 1e-5), "block {b}: {part} vs {want}");
        }
    }

    /// finish_loss on 300 rows: (loss, correct count, diverged) for one NaN-free or not batch.
    fn finish(rows: &mut [f32], correct: &mut [u32], diverged_before: i32) -> (Vec<f32>, Vec<u32>, i32) {
        let (mul, div) = (3.0f32, 4.0f32);
        let mut ctr = vec![2i32];
        let mut step_loss = vec![-1.0f32; 4];
        let mut step_correct = vec![7u32; 4];
        let mut diverged = vec![diverged_before];
        let batch = rows.len() as i32;
        // SAFETY: rows and correct hold `batch` values; ctr and diverged one; slot_base 1 +
        // *ctr 2 = slot 3 < 4 = the length of step_loss and step_correct.
        unsafe {
            launch(
                "finish_loss",
                (1, 1, 1),
                (256, 1, 1),
                &[
                    p(rows),
                    p(correct),
                    i(batch),
                    f(mul),
                    f(div),
                    p(&mut ctr),
                    i(1),
                    p(&mut step_loss),
                    p(&mut step_correct),
                    p(&mut diverged),
                ],
            )
        }
        .unwrap();
        (step_loss, step_correct, diverged[0])
    }

    #[test]
    fn finish_loss_sums_the_rows_into_the_steps_slot() {
        let mut rows: Vec<f32> = values(300, 4).iter().map(|v| v.abs()).collect();
        let mut correct: Vec<u32> = (0..300).map(|k| u32::from(k % 3 == 0)).collect();
        let (loss, count, diverged) = finish(&mut rows, &mut correct, 0);
        let want = rows.iter().map(|&x| f64::from(x)).sum::<f64>() * 3.0 / 4.0;
        assert!(close(loss[3], want, 1e-5), "{} vs {want}", loss[3]);
        assert_eq!(&loss[..3], [-1.0; 3]);
        assert_eq!(count, [7, 7, 7, 100]);
        assert_eq!(diverged, 0);

        // A NaN row marks the step (1-based: *ctr + 1) as diverged, unless one already was.
        rows[299] = f32::NAN;
        let (loss, _, diverged) = finish(&mut rows, &mut correct, 0);
        assert!(loss[3].is_nan());
        assert_eq!(diverged, 3);
        rows[299] = f32::INFINITY;
        assert_eq!(finish(&mut rows, &mut correct, 0).2, 3);
        assert_eq!(finish(&mut rows, &mut correct, 1).2, 1);
    }

    /// Softmax cross-entropy of one row in f64: (loss, softmax).
    fn softmax_ce(z: &[f32], label: usize) -> (f64, Vec<f64>) {
        let mx = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let sum: f64 = z.iter().map(|&v| (f64::from(v) - mx).exp()).sum();
        let lse = mx + sum.ln();
        (lse - f64::from(z[label]), z.iter().map(|&v| (f64::from(v) - lse).exp()).collect())
    }

    #[test]
    fn loss_train_cross_entropy_on_a_3x7_batch() {
        let (batch, width) = (3usize, 7usize);
        let mut z = values(batch * width, 5);
        // Row 1's largest logit is its label (counted correct); rows 0 and 2 are not.
        z[width + 4] = 5.0;
        let mut labels: Vec<u32> = vec![2, 4, 6];
        z[2] = -5.0;
        z[2 * width + 6] = -5.0;
        let grad_scale = 1.0 / batch as f32;
        for (act, grid, block) in [(ACT_SOFTMAX, 1, 4), (ACT_SOFTMAX, 2, 2), (ACT_IDENTITY, 3, 1)] {
            // With identity outputs the kernel reads `a` (the activations, = z) for accuracy.
            let mut a = if act == ACT_IDENTITY { z.clone() } else { vec![f32::NAN; batch * width] };
            let mut dz = vec![f32::NAN; batch * width];
            let mut row_loss = vec![f32::NAN; batch];
            let mut row_correct = vec![9u32; batch];
            // SAFETY: z, a and dz hold batch x width floats, labels `batch` labels (< width),
            // row_loss and row_correct `batch` values; rows past `batch` (the last warps of
            // the last block) return before touching anything.
            unsafe {
                launch(
                    "loss_train",
                    (grid, 1, 1),
                    (32, block, 1),
                    &[
                        i(LOSS_CE),
                        i(act),
                        f(0.0),
                        p(&mut z),
                        p(&mut a),
                        p(&mut dz),
                        p(&mut labels),
                        i(batch as i32),
                        i(width as i32),
                        f(grad_scale),
                        f(0.5),
                        p(&mut row_loss),
                        p(&mut row_correct),
                    ],
                )
            }
            .unwrap();
            for b in 0..batch {
                let row = &z[b * width..(b + 1) * width];
                let (loss, probs) = softmax_ce(row, labels[b] as usize);
                assert!(close(row_loss[b], loss, 1e-5), "act {act}, row {b}: {} vs {loss}", row_loss[b]);
                for k in 0..width {
                    let t = if k == labels[b] as usize { 1.0 } else { 0.0 };
                    let want = (probs[k] - t) * f64::from(grad_scale);
                    assert!((f64::from(dz[b * width + k]) - want).abs() < 1e-6, "act {act}, dz[{b}][{k}]");
                    if act == ACT_SOFTMAX {
                        assert!((f64::from(a[b * width + k]) - probs[k]).abs() < 1e-6, "a[{b}][{k}]");
                    }
                }
            }
            assert_eq!(row_correct, [0, 1, 0], "act {act}");
        }
    }

    #[test]
    fn bn_train_on_5_rows_of_40_columns() {
        let (batch, n) = (5usize, 40usize);
        let u0 = values(batch * n, 6);
        let mut bias = values(n, 7);
        let mut gamma: Vec<f32> = values(n, 8).iter().map(|v| 1.0 + v / 4.0).collect();
        let mut beta = values(n, 9);
        let rm0 = values(n, 10);
        let rv0: Vec<f32> = values(n, 11).iter().map(|v| v.abs() + 0.5).collect();
        for diverged_before in [0, 2] {
            let mut u = u0.clone();
            let mut z = vec![f32::NAN; batch * n];
            let mut mean = vec![f32::NAN; n];
            let mut inv_std = vec![f32::NAN; n];
            let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
            let mut diverged = vec![diverged_before];
            // SAFETY: u and z hold batch x n floats; bias, gamma, beta, mean, inv_std and the
            // running stats n each; diverged one int. Columns past n (the second block's
            // last 24) are skipped by the kernel.
            unsafe {
                launch(
                    "bn_train",
                    (n.div_ceil(32) as u32, 1, 1),
                    (32, 8, 1),
                    &[
                        p(&mut u),
                        p(&mut bias),
                        p(&mut gamma),
                        p(&mut beta),
                        p(&mut z),
                        p(&mut mean),
                        p(&mut inv_std),
                        p(&mut rm),
                        p(&mut rv),
                        i(batch as i32),
                        i(n as i32),
                        p(&mut diverged),
                    ],
                )
            }
            .unwrap();
            for o in 0..n {
                let x: Vec<f64> = (0..batch).map(|r| f64::from(u0[r * n + o]) + f64::from(bias[o])).collect();
                let m = x.iter().sum::<f64>() / batch as f64;
                let var = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / batch as f64;
                let is = 1.0 / (var + 1e-5).sqrt();
                assert!(close(mean[o], m, 1e-5), "mean[{o}]: {} vs {m}", mean[o]);
                assert!(close(inv_std[o], is, 1e-4), "inv_std[{o}]: {} vs {is}", inv_std[o]);
                for r in 0..batch {
                    let xh = (x[r] - m) * is;
                    assert!(close(u[r * n + o], xh, 1e-4), "x_hat[{r}][{o}]: {} vs {xh}", u[r * n + o]);
                    let zz = f64::from(gamma[o]) * xh + f64::from(beta[o]);
                    assert!(close(z[r * n + o], zz, 1e-4), "z[{r}][{o}]: {} vs {zz}", z[r * n + o]);
                }
                if diverged_before == 0 {
                    let want_rm = 0.9 * f64::from(rm0[o]) + 0.1 * m;
                    let want_rv = 0.9 * f64::from(rv0[o]) + 0.1 * var * batch as f64 / (batch - 1) as f64;
                    assert!(close(rm[o], want_rm, 1e-5), "running_mean[{o}]");
                    assert!(close(rv[o], want_rv, 1e-4), "running_var[{o}]");
                } else {
                    assert_eq!((rm[o], rv[o]), (rm0[o], rv0[o]), "a diverged epoch keeps the running stats");
                }
            }
        }
    }

    #[test]
    fn every_kernel_of_kernels_cu_is_launchable_with_its_parameter_count() {
        let names: Vec<&str> = KERNEL_SOURCE
            .split("__global__ void ")
            .skip(1)
            .map(|rest| rest.split('(').next().unwrap().trim())
            .collect();
        assert!(names.len() >= 13, "{names:?}");
        for name in names {
            let count = kernel_params(KERNEL_SOURCE, name).unwrap_or_else(|| panic!("{name}")).len();
            // SAFETY: the argument count is wrong on purpose, so the launch is refused
            // before anything runs.
            let err = unsafe { launch(name, (1, 1, 1), (1, 1, 1), &vec![0; count + 1]) }.unwrap_err();
            assert_eq!(err, format!("kernel {name} takes {count} arguments, got {}", count + 1));
        }
    }

    #[test]
    fn bad_launches_are_errors() {
        let mut ctr = vec![0i32];
        let one = (1, 1, 1);
        // SAFETY: this launch and the ones below are refused before any kernel code runs,
        // except the last, which runs advance: it writes ctr[0] only.
        let err = unsafe { launch("no_such_kernel", one, one, &[]) }.unwrap_err();
        assert!(err.starts_with("unknown kernel 'no_such_kernel' (the emulator has: gather, "), "{err}");
        // SAFETY: as above.
        let err = unsafe { launch("advance", one, one, &[]) }.unwrap_err();
        assert_eq!(err, "kernel advance takes 1 arguments, got 0");
        // SAFETY: as above.
        let err = unsafe { launch("advance", (0, 1, 1), one, &[p(&mut ctr)]) }.unwrap_err();
        assert!(err.ends_with("a zero-sized grid or block"), "{err}");
        // SAFETY: as above.
        let err = unsafe { launch("advance", one, (1025, 1, 1), &[p(&mut ctr)]) }.unwrap_err();
        assert!(err.ends_with("more than 1024 threads per block, or blockDim.z > 64"), "{err}");
        // SAFETY: as above.
        let err = unsafe { launch("advance", one, (32, 32, 2), &[p(&mut ctr)]) }.unwrap_err();
        assert!(err.contains("more than 1024 threads"), "{err}");
        assert_eq!(ctr, [0]);
        // SAFETY: as above.
        unsafe { launch("advance", one, (1024, 1, 1), &[p(&mut ctr)]) }.unwrap();
        assert_eq!(ctr, [1]);
    }

    #[test]
    fn a_barrier_in_a_kernel_the_table_runs_as_a_loop_fails_the_launch() {
        let mut out = vec![0i32; 64];
        // SAFETY: the self-test kernel writes out[threadIdx.x] < 64.
        let err = unsafe { launch("emu_selftest_barrier_in_loop", (1, 1, 1), (64, 1, 1), &[p(&mut out)]) };
        // With MLP_GPU_EMU_THREADS=all every kernel runs on threads and the barrier is fine.
        if std::env::var("MLP_GPU_EMU_THREADS").as_deref() == Ok("all") {
            err.unwrap();
            return;
        }
        let err = err.unwrap_err();
        assert!(
            err.starts_with("kernel emu_selftest_barrier_in_loop, block (0,0,0), thread (0,0,0): __syncthreads() in a kernel that launch.cpp's table"),
            "{err}"
        );
        assert!(err.ends_with("mark it Sync::Threads"), "{err}");
    }

    #[test]
    fn threads_that_return_early_leave_barriers_and_warps() {
        let mut input = values(128, 12);
        let mut out = vec![f32::NAN; 2];
        // SAFETY: threads 0..64 read input[t] < 128 and write out[t / 32] < 2.
        unsafe { launch("emu_selftest_early_exit", (1, 1, 1), (128, 1, 1), &[p(&mut input), p(&mut out)]) }
            .unwrap();
        for w in 0..2 {
            let want: f64 = input[32 * w..32 * (w + 1)].iter().map(|&v| f64::from(v)).sum();
            assert!(close(out[w], want, 1e-5), "warp {w}: {} vs {want}", out[w]);
        }
    }

    #[test]
    fn undefined_warp_and_barrier_use_is_an_error_not_a_hang() {
        let mut out = vec![0i32; 64];
        // SAFETY: the kernel writes out[threadIdx.x] < 64 (and here never gets that far).
        let err =
            unsafe { launch("emu_selftest_divergent", (1, 1, 1), (64, 1, 1), &[p(&mut out)]) }.unwrap_err();
        assert!(err.contains("deadlock: all 64 running threads of the block wait"), "{err}");
        let mut outf = vec![0f32; 32];
        // SAFETY: the kernel writes outf[threadIdx.x] < 32.
        let err = unsafe { launch("emu_selftest_read_exited", (1, 1, 1), (32, 1, 1), &[p(&mut outf)]) }
            .unwrap_err();
        assert_eq!(
            err,
            "kernel emu_selftest_read_exited, block (0,0,0), thread (4,0,0): __shfl_xor_sync reads lane 5, \
             which has returned from the kernel or does not exist (undefined on a GPU)"
        );
        // The emulator is still usable after failed launches.
        let mut ctr = vec![0i32];
        // SAFETY: advance writes ctr[0] only.
        unsafe { launch("advance", (1, 1, 1), (1, 1, 1), &[p(&mut ctr)]) }.unwrap();
        assert_eq!(ctr, [1]);
    }
}
