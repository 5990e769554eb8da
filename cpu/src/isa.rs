//! Which vector instructions this CPU runs: detected once, handed out as tokens.
//!
//! Every kernel in this crate that uses instructions beyond the compilation target's baseline
//! takes a token: [`Isa`] for the f32 kernels and the choice of int8 path, and crate-private
//! proofs ([`Vnni`], [`Avx2`], [`Amx`]) for the int8 kernels' inner parts. A token has private
//! fields and is built only here, after run-time detection found the instructions, so no safe
//! function can reach an instruction the CPU lacks. The `#[target_feature]` functions
//! themselves are private to the kernel modules and called only with a token in hand.
//!
//! A token cannot be made outside this module:
//!
//! ```compile_fail
//! let forged = cpu::Isa { level: cpu::isa::Level::Avx512 };
//! ```
//!
//! Only [`Isa::detect`], [`Isa::best`], [`Isa::available`] and [`Isa::baseline`] build one:
//!
//! ```
//! use cpu::isa::{Isa, Level};
//! let levels: Vec<Level> = Isa::available().map(|isa| isa.level()).collect();
//! assert_eq!(levels.last(), Some(&Level::Baseline)); // always available
//! assert_eq!(Isa::best().level(), levels[0]);
//! ```

use std::sync::OnceLock;

/// An instruction-set level the kernels are compiled for. A name only: the permission to
/// run it is an [`Isa`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// AVX-512F and BW (with AVX2 and FMA): 16-lane f32 FMAs and mask compresses, 64-lane
    /// byte and 32-lane word operations (every AVX-512 CPU but the Xeon Phi has BW). The int8
    /// kernels also need AVX-512 VNNI (`vpdpbusd`) at this level, and use AMX-INT8 tiles where
    /// present.
    Avx512,
    /// AVX2 + FMA: 8-lane f32 FMAs; int8 products with `vpmaddwd`.
    Avx2,
    /// The compilation target's baseline (SSE2 on x86-64): f32 with separate multiply and add;
    /// int8 through core's portable kernels.
    Baseline,
}

impl Level {
    /// Every level, fastest first.
    pub const ALL: [Level; 3] = [Level::Avx512, Level::Avx2, Level::Baseline];
}

/// Proof that this CPU runs the instructions of a [`Level`]: built only by detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Isa {
    level: Level,
}

impl Isa {
    /// The token for `level`, or `None` when this CPU lacks its instructions.
    pub fn detect(level: Level) -> Option<Isa> {
        let f = features();
        let ok = match level {
            // AVX2 and FMA too: kernels at this level also run the AVX2 ones (every CPU with
            // AVX-512F has them; the token then proves both).
            Level::Avx512 => f.avx512f && f.avx512bw && f.avx2 && f.fma,
            Level::Avx2 => f.avx2 && f.fma,
            Level::Baseline => true,
        };
        ok.then_some(Isa { level })
    }

    /// The fastest level this CPU runs.
    pub fn best() -> Isa {
        Self::available().next().unwrap_or(Isa::baseline())
    }

    /// Every level this CPU runs, fastest first (always ending with the baseline).
    pub fn available() -> impl Iterator<Item = Isa> {
        Level::ALL.into_iter().filter_map(Isa::detect)
    }

    /// The baseline: available everywhere.
    pub fn baseline() -> Isa {
        Isa { level: Level::Baseline }
    }

    /// The level this token allows.
    pub fn level(self) -> Level {
        self.level
    }
}

/// What the CPU (and, for AMX, the OS) offers, read once per process.
#[derive(Clone, Copy, Debug, Default)]
struct Features {
    avx512f: bool,
    avx512bw: bool,
    avx512vnni: bool,
    avx2: bool,
    fma: bool,
}

fn features() -> &'static Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    FEATURES.get_or_init(detect_features)
}

#[cfg(target_arch = "x86_64")]
fn detect_features() -> Features {
    use std::arch::is_x86_feature_detected as has;
    Features {
        avx512f: has!("avx512f"),
        avx512bw: has!("avx512bw"),
        avx512vnni: has!("avx512vnni"),
        avx2: has!("avx2"),
        fma: has!("fma"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_features() -> Features {
    Features::default()
}

/// Linux grants a process the AMX tile data state only on request:
/// `arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18) == 0`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    let ret: i64;
    // SAFETY: the arch_prctl system call (158 on x86-64 Linux) with this request only changes
    // the process's permitted extended state; it reads and writes no memory of ours. The
    // syscall instruction clobbers rcx and r11, declared as outputs.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") 0x1023i64,
            in("rsi") 18i64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

/// Proof that the CPU has `avx512f`, `avx512bw` and `avx512vnni`: built only by
/// [`Vnni::detect`].
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Vnni(());

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Vnni {
    pub(crate) fn detect() -> Option<Self> {
        let f = features();
        (f.avx512f && f.avx512bw && f.avx512vnni).then_some(Vnni(()))
    }
}

/// Proof that the CPU has `avx2`: built only by [`Avx2::detect`].
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Avx2(());

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Avx2 {
    pub(crate) fn detect() -> Option<Self> {
        features().avx2.then_some(Avx2(()))
    }
}

/// Proof that the CPU has AMX-TILE and AMX-INT8 and that the OS granted this process the tile
/// state: built only by [`Amx::detect`].
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Amx(());

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Amx {
    /// Checked once, on first use (only then is the OS asked for the tile state).
    pub(crate) fn detect() -> Option<Self> {
        static USABLE: OnceLock<bool> = OnceLock::new();
        USABLE.get_or_init(amx_usable).then_some(Amx(()))
    }
}

#[cfg(target_arch = "x86_64")]
fn amx_usable() -> bool {
    // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8 (an unsupported leaf answers zeros).
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 25) != 0 && request_tile_permission()
}

#[cfg(not(target_arch = "x86_64"))]
fn amx_usable() -> bool {
    false
}
