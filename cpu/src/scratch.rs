//! Per-thread scratch buffers for the kernels: each grows to the largest size asked for and is
//! then reused, so a training loop allocates only in its first steps (cpu/tests/
//! step_allocations.rs checks that a warm step allocates nothing).

use std::cell::RefCell;
use std::thread::LocalKey;

/// Runs `f` on this thread's value of `key`, or on a fresh default value when it is in use
/// further up the stack (a thread-pool worker that picked up another product while waiting
/// in one): a re-entrant call never fails on a double borrow.
pub(crate) fn with_local<S: Default + 'static, R>(
    key: &'static LocalKey<RefCell<S>>,
    f: impl FnOnce(&mut S) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut S::default()),
    })
}

/// Runs `f` on `n` elements of this thread's buffer `key` (see [`with_local`]), which grows
/// to the largest size asked for and is then reused. The slice starts on a 64-byte boundary
/// (a cache line: whole-vector loads from it never straddle two lines).
pub(crate) fn with_scratch<T: Copy + Default + 'static, R>(
    key: &'static LocalKey<RefCell<Vec<T>>>,
    n: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let slack = 64 / std::mem::size_of::<T>().max(1);
    with_local(key, |v| {
        if v.len() < n + slack {
            v.resize(n + slack, T::default());
        }
        // `align_offset` may give up (usize::MAX): then the slice is merely unaligned.
        let off = v.as_ptr().align_offset(64);
        let off = if off < slack { off } else { 0 };
        f(&mut v[off..off + n])
    })
}
