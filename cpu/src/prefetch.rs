//! Software prefetch: asking the CPU to bring memory into cache before it is read, where the
//! hardware prefetcher does not (rows scattered over a data set, rows that cross 4 KiB pages).
//! A hint only: it never faults and never changes a result.

/// Which cache [`prefetch`] fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// The L1 data cache (and the levels below it): data needed within a few hundred cycles.
    L1,
    /// L2 (not L1): data needed later, that would push more urgent data out of L1.
    L2,
}

/// Asks for `data[from .. from + len]` (clamped to `data`) to be brought into `cache`, one
/// request per 64-byte line. Does nothing on targets other than x86-64.
#[inline(always)]
pub fn prefetch<T>(cache: Cache, data: &[T], from: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        let step = (64 / std::mem::size_of::<T>().max(1)).max(1);
        let end = from.saturating_add(len).min(data.len());
        for at in (from..end).step_by(step) {
            // SAFETY: `at < data.len()`, so the address is inside the slice; a prefetch never
            // faults or changes memory, and SSE is part of the x86-64 baseline.
            unsafe {
                let p = data.as_ptr().add(at).cast();
                match cache {
                    Cache::L1 => _mm_prefetch::<_MM_HINT_T0>(p),
                    Cache::L2 => _mm_prefetch::<_MM_HINT_T1>(p),
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (cache, data, from, len);
}
