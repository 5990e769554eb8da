//! The Cortex-M example of `mlp`: an MNIST model exported by `host export` runs on a
//! Cortex-M0, M3, M4, M7, M33 or M55 (in QEMU, or on a board), checked bit for bit against the
//! host. `MLP_CORE` and the target pick the core (build.rs, `qemu-run.sh`).
//!
//! One program, three builds:
//! - default: the int8 model (`generated/model.rs`) classifies the embedded test images with
//!   the SMLAD kernel ([`dsp::Smlad`]) and with core's portable kernel, checks both against
//!   each other and against the host's outputs, and measures instructions per inference and
//!   per multiply-accumulate;
//! - `--features f32`: the same with the f32 model (`generated/model_f32.rs`);
//! - `--features train`: trains a fresh classifier head on the device with core's f32
//!   [`mlp::Trainer`], on the int8 model's hidden features of the embedded training images.
//!
//! Every build prints through semihosting, paints the stack to report its high-water mark,
//! and exits QEMU with status 0 only if its checks pass.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::debug;

mod buffer;
#[cfg(not(feature = "lean"))]
mod clock;
#[cfg(all(mlp_dsp, not(feature = "f32")))]
mod dsp;
#[cfg(feature = "f32")]
mod infer_f32;
#[cfg(not(any(feature = "f32", feature = "train", feature = "lean")))]
mod infer_int8;
#[cfg(not(feature = "f32"))]
mod int8_model;
#[cfg(not(feature = "f32"))]
mod kernel;
#[cfg(all(feature = "lean", not(any(feature = "f32", feature = "train"))))]
mod lean;
#[cfg(all(mlp_core = "m55", not(feature = "f32")))]
mod mve;
mod out;
#[cfg(not(feature = "f32"))]
mod skip;
mod stack;
#[cfg(all(feature = "train", not(feature = "f32")))]
mod train;

/// The exported model: `static` arrays and `const` topology, written by `host export`.
#[allow(clippy::all, clippy::pedantic, dead_code, missing_docs)]
#[cfg(not(feature = "f32"))]
mod model {
    include!(concat!(env!("MLP_GENERATED"), "/model.rs"));
}
#[allow(clippy::all, clippy::pedantic, dead_code, missing_docs)]
#[cfg(not(feature = "f32"))]
mod images {
    include!(concat!(env!("MLP_GENERATED"), "/model_images.rs"));
}
#[allow(clippy::all, clippy::pedantic, dead_code, missing_docs)]
#[cfg(feature = "f32")]
mod model {
    include!(concat!(env!("MLP_GENERATED"), "/model_f32.rs"));
}
#[allow(clippy::all, clippy::pedantic, dead_code, missing_docs)]
#[cfg(feature = "f32")]
mod images {
    include!(concat!(env!("MLP_GENERATED"), "/model_f32_images.rs"));
}

/// Why a run failed: a core error or a failed check.
#[derive(Debug)]
pub enum Fail {
    /// core refused an input.
    Core(mlp::Error),
    /// A check or a setup step failed.
    Check(&'static str),
}

impl From<mlp::Error> for Fail {
    fn from(e: mlp::Error) -> Self {
        Fail::Core(e)
    }
}

impl Fail {
    /// Prints the failure: core's own message in the builds that format floats anyway; the
    /// int8 builds (no float formatting: it would double their code) name the integer-only
    /// errors they can meet and print a generic line for the rest; the lean build prints the
    /// generic line only (core's messages are half a kilobyte of strings an application that
    /// ships its model does not need).
    pub fn print(&self) {
        match self {
            #[cfg(any(feature = "f32", feature = "train"))]
            Fail::Core(e) => cortex_m_semihosting::hprint!("{}", e),
            #[cfg(feature = "lean")]
            Fail::Core(_) => out::s("core refused the model or a buffer (an mlp::Error)"),
            #[cfg(not(any(feature = "f32", feature = "train", feature = "lean")))]
            Fail::Core(e) => match e {
                mlp::Error::BufferLength { expected, actual, .. } => {
                    out::s("a buffer has length ");
                    out::int(*actual as i32);
                    out::s(" where core needs ");
                    out::int(*expected as i32);
                }
                mlp::Error::CorruptPayload { what } => {
                    out::s("the exported model is inconsistent: ");
                    out::s(what);
                }
                _ => out::s("core refused the model or a buffer (an mlp::Error)"),
            },
            Fail::Check(s) => out::s(s),
        }
    }
}

#[entry]
fn main() -> ! {
    // First, before anything else uses the stack below us.
    stack::paint();
    #[cfg(not(feature = "lean"))]
    let clock = clock::Clock::start();
    #[cfg(not(any(feature = "f32", feature = "train", feature = "lean")))]
    let result = infer_int8::run(&clock);
    #[cfg(all(feature = "lean", not(any(feature = "f32", feature = "train"))))]
    let result = lean::run();
    #[cfg(feature = "f32")]
    let result = infer_f32::run(&clock);
    #[cfg(all(feature = "train", not(feature = "f32")))]
    let result = train::run(&clock);
    out::s("stack high-water mark: ");
    out::int(stack::high_water() as i32);
    out::s(" bytes (painted, measured at exit)\n");
    match result {
        Ok(()) => {
            out::s("PASS\n");
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(e) => {
            out::s("FAIL: ");
            e.print();
            out::s("\n");
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    loop {
        cortex_m::asm::wfi();
    }
}

/// Prints the panic and exits QEMU with a failure status (core never panics on input; this
/// is for bugs). The lean build prints no message, to stay free of `core::fmt`.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    #[cfg(not(feature = "lean"))]
    cortex_m_semihosting::hprintln!("panicked: {}", info);
    #[cfg(feature = "lean")]
    let _ = info;
    out::s("FAIL: panic\n");
    loop {
        debug::exit(debug::EXIT_FAILURE);
    }
}

/// The core this build is for, as the log names it.
pub const CORE: &str = if cfg!(mlp_core = "m0") {
    "Cortex-M0"
} else if cfg!(mlp_core = "m3") {
    "Cortex-M3"
} else if cfg!(mlp_core = "m7") {
    "Cortex-M7"
} else if cfg!(mlp_core = "m33") {
    "Cortex-M33"
} else if cfg!(mlp_core = "m55") {
    "Cortex-M55"
} else {
    "Cortex-M4"
};

/// The part number the CPUID register of [`CORE`] reads (bits 15:4), so a build that runs on
/// the wrong machine says so instead of reporting another core's numbers.
#[cfg(not(feature = "lean"))]
pub const CPUID_PARTNO: u32 = if cfg!(mlp_core = "m0") {
    0xC20
} else if cfg!(mlp_core = "m3") {
    0xC23
} else if cfg!(mlp_core = "m7") {
    0xC27
} else if cfg!(mlp_core = "m33") {
    0xD21
} else if cfg!(mlp_core = "m55") {
    0xD22
} else {
    0xC24
};

/// Fails unless the CPU is the core this build is for.
#[cfg(not(feature = "lean"))]
pub fn check_core() -> Result<(), Fail> {
    // SAFETY: a read of the SCB's CPUID register, which every Cortex-M has at this address.
    let cpuid = unsafe { core::ptr::read_volatile(0xE000_ED00 as *const u32) };
    if (cpuid >> 4) & 0xFFF != CPUID_PARTNO {
        return Err(Fail::Check(
            "the CPU is not the core this build is for (MLP_CORE and the QEMU machine differ)",
        ));
    }
    Ok(())
}

/// `x/y` with three decimals, without floating point (for the integer-only builds).
#[cfg(not(feature = "lean"))]
pub struct Ratio(pub u64, pub u64);

#[cfg(not(feature = "lean"))]
impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.1 == 0 {
            return f.write_str("n/a");
        }
        let thousandths = (self.0 * 1000 + self.1 / 2) / self.1;
        write!(f, "{}.{:03}", thousandths / 1000, thousandths % 1000)
    }
}
