//! The stack high-water mark: paint the free RAM between the end of the statics and the
//! stack pointer at start, and find at exit how far down the paint was overwritten.

const PAINT: u32 = 0x5AFE_C0DE;
/// Left unpainted below the current stack pointer: the frame of the painter itself.
const MARGIN: usize = 256;

extern "C" {
    /// The lowest address the stack may grow to (cortex-m-rt: the end of `.bss`/`.uninit`).
    static mut _stack_end: u32;
    /// The initial stack pointer (cortex-m-rt: the top of RAM).
    static mut _stack_start: u32;
}

fn bounds() -> (usize, usize) {
    // Only the addresses of the linker symbols are used, never their contents.
    (core::ptr::addr_of!(_stack_end) as usize, core::ptr::addr_of!(_stack_start) as usize)
}

/// Fills the unused stack area with a pattern. Call first thing in `main`.
pub fn paint() {
    let (low, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = low;
    while p + 4 <= sp.saturating_sub(MARGIN) {
        // SAFETY: [low, sp - MARGIN) lies between the end of the statics and the live part
        // of the stack, memory nothing else uses yet; p is 4-byte aligned (cortex-m-rt aligns
        // _stack_end to 4) and inside RAM.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack used so far at most: from the top of RAM down to the lowest overwritten
/// word (an upper bound within 4 bytes; the painter's own frame counts as used).
pub fn high_water() -> usize {
    let (low, top) = bounds();
    let mut p = low;
    // SAFETY: reads of aligned words in [low, top), all RAM; stops at the first one the
    // stack overwrote.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}
