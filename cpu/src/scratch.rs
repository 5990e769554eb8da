//! Per-thread scratch buffers for the kernels: each grows to the largest size asked for and is
//! then reused, so a training loop allocates only in its first steps (cpu/tests/
//! step_allocations.rs checks that a warm step allocates nothing).

use std::cell::RefCell;
use std::thread::LocalKey;

/// Runs `f` on `n` elements of this thread's scratch buffer `key`, which grows to the
/// largest size asked for and is then reused, so a training loop allocates only in its
/// first steps. The slice starts on a 64-byte boundary (a cache line: whole-vector loads
/// from it never straddle two lines). A re-entrant call (a thread-pool worker that picked up
/// another product while waiting) gets a fresh buffer instead of a double borrow.
pub(crate) fn with_scratch<T: Copy + Default + 'static, R>(
    key: &'static LocalKey<RefCell<Vec<T>>>,
    n: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let slack = 64 / std::mem::size_of::<T>().max(1);
    let aligned = |v: &mut [T]| {
        // `align_offset` may give up (usize::MAX): then the slice is merely unaligned.
        let off = v.as_ptr().align_offset(64);
        if off < slack {
            off
        } else {
            0
        }
    };
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < n + slack {
                v.resize(n + slack, T::default());
            }
            let off = aligned(&mut v);
            f(&mut v[off..off + n])
        }
        Err(_) => {
            let mut v = vec![T::default(); n + slack];
            let off = aligned(&mut v);
            f(&mut v[off..off + n])
        }
    })
}

