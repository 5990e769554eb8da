//! Measuring cost: the DWT cycle counter on a board, or SysTick in QEMU.
//!
//! QEMU implements no DWT cycle counter (it reads 0). With `-icount shift=0` (see
//! `.cargo/config.toml`) QEMU's virtual clock advances 1 ns per instruction, and the MPS2
//! AN386's SysTick (processor clock, 25 MHz) ticks once per 40 ns: every tick is exactly 40
//! instructions, repeatably. So in QEMU costs are *instructions* (to within 40 per
//! measurement); on a board with DWT they are *cycles*.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{DWT, SCB, SYST};
use cortex_m_rt::exception;

/// SysTick wraps counted by its exception, to extend the 24-bit counter.
static WRAPS: AtomicU32 = AtomicU32::new(0);
const RELOAD: u32 = 0x00FF_FFFF;
/// Instructions per SysTick tick under QEMU `-icount shift=0` at the AN386's 25 MHz.
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Where costs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// DWT CYCCNT: core clock cycles (a real Cortex-M3/M4/M7).
    Cycles,
    /// SysTick × 40: instructions under QEMU `-icount shift=0`.
    QemuInstructions,
}

/// A running clock.
#[derive(Debug)]
pub struct Clock {
    source: Source,
}

/// A point in time, in the clock's unit.
#[derive(Clone, Copy, Debug)]
pub struct Stamp(u64);

impl Clock {
    /// Takes SysTick and the DWT, starts both, and picks the DWT if its counter runs.
    pub fn start() -> Clock {
        let Some(mut p) = cortex_m::Peripherals::take() else {
            // Only `main` takes the peripherals, once; fall back to SysTick readings.
            return Clock { source: Source::QemuInstructions };
        };
        p.SYST.set_clock_source(SystClkSource::Core);
        p.SYST.set_reload(RELOAD);
        p.SYST.clear_current();
        p.SYST.enable_interrupt();
        p.SYST.enable_counter();
        p.DCB.enable_trace();
        DWT::unlock();
        p.DWT.enable_cycle_counter();
        let a = DWT::cycle_count();
        cortex_m::asm::delay(100);
        let source = if DWT::cycle_count() != a { Source::Cycles } else { Source::QemuInstructions };
        Clock { source }
    }

    /// "instructions" or "cycles".
    pub fn unit(&self) -> &'static str {
        match self.source {
            Source::Cycles => "cycles",
            Source::QemuInstructions => "instructions",
        }
    }

    /// How costs are measured, for the log.
    pub fn describe(&self) -> &'static str {
        match self.source {
            Source::Cycles => "cycles from the DWT cycle counter",
            Source::QemuInstructions => {
                "instructions: SysTick x 40 under QEMU -icount shift=0 (no DWT cycle counter found)"
            }
        }
    }

    /// Now.
    pub fn now(&self) -> Stamp {
        match self.source {
            Source::Cycles => Stamp(DWT::cycle_count() as u64),
            Source::QemuInstructions => Stamp(systick_ticks() * INSTRUCTIONS_PER_TICK),
        }
    }

    /// Cost since `start`, in [`unit`](Self::unit)s.
    pub fn since(&self, start: Stamp) -> u64 {
        let now = self.now();
        match self.source {
            // A 32-bit counter: fine for intervals below 2^32 cycles (25 s at 168 MHz).
            Source::Cycles => (now.0 as u32).wrapping_sub(start.0 as u32) as u64,
            Source::QemuInstructions => now.0.saturating_sub(start.0),
        }
    }
}

/// SysTick ticks since start, 64-bit.
fn systick_ticks() -> u64 {
    loop {
        let wraps = WRAPS.load(Ordering::Acquire);
        let current = SYST::get_current();
        // If the counter wrapped before `current` was read, its exception is either still
        // pending or has run by the second load of WRAPS: both mean "read again". (Checked in
        // this order, there is no moment where a wrap goes unseen.)
        let pending = SCB::is_pendst_pending();
        if !pending && WRAPS.load(Ordering::Acquire) == wraps {
            return wraps as u64 * (RELOAD as u64 + 1) + (RELOAD - current) as u64;
        }
    }
}
