//! Zeroed `static` buffers in `.bss`, each handed out once as `&'static mut` (like
//! `cortex_m::singleton!`, but never built on the stack first, so big buffers cost no stack).

/// `buffer!(T; N)`: `Some(&'static mut [T; N])` the first time this line runs, `None` after.
/// `T` must be a number type (the buffer starts as zeros).
#[macro_export]
macro_rules! buffer {
    ($t:ty; $n:expr) => {{
        static mut BUF: [$t; $n] = [0 as $t; $n];
        static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        // Load and store with interrupts off, not swap: ARMv6-M has no atomic swap.
        let taken = cortex_m::interrupt::free(|_| {
            let taken = TAKEN.load(core::sync::atomic::Ordering::Acquire);
            TAKEN.store(true, core::sync::atomic::Ordering::Release);
            taken
        });
        if taken {
            None
        } else {
            // SAFETY: TAKEN is set once (with interrupts off) and never cleared, so this is the only reference
            // ever made to BUF, and nothing else names BUF (it is local to this block).
            Some(unsafe { &mut *core::ptr::addr_of_mut!(BUF) })
        }
    }};
}
