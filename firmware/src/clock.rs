//! Measuring cost: the DWT cycle counter on a board, or SysTick in QEMU.
//!
//! QEMU implements no DWT cycle counter (it reads 0). With `-icount shift=0` (see
//! `qemu-run.sh`) QEMU's virtual clock advances 1 ns per instruction, and SysTick (on the
//! processor clock) ticks once per clock period: 40 ns on the MPS2 boards (M3, M4, M7:
//! 25 MHz), 50 ns on the AN505 (M33: 20 MHz), 31.25 ns on the AN547 (M55: 32 MHz), 62.5 ns
//! on the micro:bit (M0: 16 MHz). So in QEMU costs are *instructions* (to within one tick
//! per measurement), [`Clock::check`] confirms the rate on a loop of known length; on a
//! board with DWT (M3 and up) they are *cycles*.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
#[cfg(not(mlp_core = "m0"))]
use cortex_m::peripheral::DWT;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

/// SysTick wraps counted by its exception, to extend the 24-bit counter.
static WRAPS: AtomicU32 = AtomicU32::new(0);
const RELOAD: u32 = 0x00FF_FFFF;
/// Instructions per SysTick tick under QEMU `-icount shift=0`, as a fraction
/// (numerator, denominator): the nanoseconds of one period of the machine's processor clock.
#[cfg(mlp_core = "m0")]
const INSTRUCTIONS_PER_TICK: (u64, u64) = (125, 2);
#[cfg(any(mlp_core = "m3", mlp_core = "m4", mlp_core = "m7"))]
const INSTRUCTIONS_PER_TICK: (u64, u64) = (40, 1);
#[cfg(mlp_core = "m33")]
const INSTRUCTIONS_PER_TICK: (u64, u64) = (50, 1);
#[cfg(mlp_core = "m55")]
const INSTRUCTIONS_PER_TICK: (u64, u64) = (125, 4);

#[exception]
fn SysTick() {
    // Load and store, not fetch_add: ARMv6-M has no atomic read-modify-write, and only this
    // handler writes WRAPS.
    WRAPS.store(WRAPS.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Where costs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// DWT CYCCNT: core clock cycles (a real Cortex-M3/M4/M7).
    #[cfg_attr(mlp_core = "m0", allow(dead_code))]
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
        // ARMv6-M (the M0) has no DWT cycle counter.
        #[cfg(not(mlp_core = "m0"))]
        {
            p.DCB.enable_trace();
            DWT::unlock();
            p.DWT.enable_cycle_counter();
            let a = DWT::cycle_count();
            cortex_m::asm::delay(100);
            if DWT::cycle_count() != a {
                return Clock { source: Source::Cycles };
            }
        }
        Clock { source: Source::QemuInstructions }
    }

    #[cfg(not(any(feature = "f32", feature = "train")))]
    /// Times a loop of known length (`subs` + `bne`, 2 instructions per pass): under QEMU its
    /// instruction count, measured, must be within 1% of what it is, else SysTick does not tick
    /// at the rate [`INSTRUCTIONS_PER_TICK`] assumes (QEMU without `-icount shift=0`, another
    /// machine). Returns (instructions run, measured) or the pair that failed.
    pub fn check(&self) -> Result<(u64, u64), (u64, u64)> {
        const PASSES: u32 = 50_000;
        let t = self.now();
        // SAFETY: a register-only countdown loop: writes r0 (declared) and the flags.
        unsafe {
            core::arch::asm!(
                "2:",
                "subs r0, r0, #1",
                "bne 2b",
                inout("r0") PASSES => _,
                options(nomem, nostack),
            );
        }
        let measured = self.since(t);
        let run = 2 * PASSES as u64;
        match self.source {
            Source::QemuInstructions if measured.abs_diff(run) * 100 > run => Err((run, measured)),
            _ => Ok((run, measured)),
        }
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
                "instructions: SysTick ticks x the ns of a processor clock period, under QEMU -icount shift=0 (no DWT cycle counter found)"
            }
        }
    }

    /// Now.
    pub fn now(&self) -> Stamp {
        match self.source {
            #[cfg(not(mlp_core = "m0"))]
            Source::Cycles => Stamp(DWT::cycle_count() as u64),
            #[cfg(mlp_core = "m0")]
            Source::Cycles => Stamp(0),
            Source::QemuInstructions => {
                let (num, den) = INSTRUCTIONS_PER_TICK;
                Stamp(systick_ticks() * num / den)
            }
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
