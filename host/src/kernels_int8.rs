//! A fast host implementation of core's int8 kernel seam, [`mlp::int8::Int8Kernels`].
//!
//! [`Int8Fast`] computes `acc[b][o] = Σ_j (x[b][j] + input_offset) · w[o][j]` (wrapping i32)
//! bit-identically to [`PortableInt8`]: the trait defines the sum modulo 2^32, so any
//! summation order gives the same bits. Three paths, chosen once at run time with
//! `is_x86_feature_detected!` (or forced with [`Int8Fast::with_path`]):
//!
//! - [`Int8Path::Avx512Vnni`]: `vpdpbusd` (u8 × i8 → i32 sums of four). The signed input is
//!   biased to `u = x + 128` (an xor with `0x80`), so
//!   `Σ_j (x_j + off) · w_j = Σ_j u_j · w_j + (off - 128) · Σ_j w_j`; the row sums `Σ_j w_j`
//!   are recomputed on every call (`outputs × inputs` additions, small next to the product).
//!   Ragged lengths use masked (fault-suppressing) loads.
//! - [`Int8Path::Avx2`]: both operands sign-extended to i16 (`vpmovsxbw`) and multiplied with
//!   `vpmaddwd`, which is exact for int8 values (unlike the saturating `vpmaddubsw`);
//!   `Σ_j (x_j + off) · w_j = Σ_j x_j · w_j + off · Σ_j w_j`. Ragged lengths get a scalar tail.
//! - [`Int8Path::Portable`]: core's [`PortableInt8`] (also the only path off x86-64).
//!
//! Both vector paths compute register tiles of several batch rows × several output rows, so
//! each loaded input vector is reused across outputs and each weight vector across samples.
//! Large products (at least [`PARALLEL_MACS`] multiply-adds) are split by batch rows over
//! scoped threads; every output is computed by exactly one thread, so the result does not
//! depend on the thread count.

use std::sync::OnceLock;

use mlp::int8::{Int8Kernels, PortableInt8};
use mlp::Shape;

/// Products with at least this many multiply-adds (`batch × inputs × outputs`) are split over
/// threads; smaller ones run on the calling thread.
pub const PARALLEL_MACS: usize = 1 << 22;

/// An implementation path of [`Int8Fast`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Path {
    /// AVX-512 VNNI `vpdpbusd` (needs `avx512f`, `avx512bw` and `avx512vnni`).
    Avx512Vnni,
    /// AVX2 `vpmovsxbw` + `vpmaddwd`.
    Avx2,
    /// Core's [`PortableInt8`] plain loops.
    Portable,
}

impl Int8Path {
    /// Every path, fastest first.
    pub const ALL: [Int8Path; 3] = [Int8Path::Avx512Vnni, Int8Path::Avx2, Int8Path::Portable];

    /// Whether this CPU can run the path (detected at run time; always true for `Portable`).
    pub fn is_available(self) -> bool {
        match self {
            Int8Path::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Int8Path::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Int8Path::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest path this CPU supports (detected once, then cached).
    pub fn best() -> Int8Path {
        static BEST: OnceLock<Int8Path> = OnceLock::new();
        *BEST.get_or_init(|| {
            Int8Path::ALL.into_iter().find(|p| p.is_available()).unwrap_or(Int8Path::Portable)
        })
    }
}

/// The fast int8 kernels (see the [module docs](self)). Construct with [`Int8Fast::new`] (the
/// best detected path) or [`Int8Fast::with_path`]; the path is fixed for the value's lifetime,
/// which is what makes the `unsafe` dispatch to the vector code sound.
#[derive(Clone, Copy, Debug)]
pub struct Int8Fast {
    path: Int8Path,
    threads: usize,
}

impl Default for Int8Fast {
    fn default() -> Self {
        Self::new()
    }
}

impl Int8Fast {
    /// The fastest path this CPU supports, threads up to the available parallelism (at most 8).
    pub fn new() -> Self {
        Self { path: Int8Path::best(), threads: default_threads() }
    }

    /// A specific path, or `None` when this CPU lacks the instructions it needs.
    pub fn with_path(path: Int8Path) -> Option<Self> {
        path.is_available().then(|| Self { path, threads: default_threads() })
    }

    /// The same kernels with at most `threads` threads per product (`0` is read as `1`).
    pub fn with_threads(self, threads: usize) -> Self {
        Self { threads: threads.max(1), ..self }
    }

    /// The path in use.
    pub fn path(&self) -> Int8Path {
        self.path
    }

    /// The most threads one product uses.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

fn default_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(8))
}

impl Int8Kernels for Int8Fast {
    fn dense_i8(&self, shape: Shape, x: &[i8], input_offset: i32, w: &[i8], acc: &mut [i32]) {
        let Shape { batch, inputs, outputs } = shape;
        if inputs == 0 || outputs == 0 {
            acc.fill(0);
            return;
        }
        assert!(
            x.len() >= batch * inputs && w.len() >= outputs * inputs && acc.len() >= batch * outputs,
            "dense_i8 operand too short"
        );
        let (x, w, acc) = (&x[..batch * inputs], &w[..outputs * inputs], &mut acc[..batch * outputs]);
        match self.path {
            #[cfg(target_arch = "x86_64")]
            Int8Path::Avx512Vnni => {
                // u = x + 128, so Σ (x + off)·w = Σ u·w + (off - 128)·Σ w.
                let corr = row_corrections(w, inputs, input_offset.wrapping_sub(128));
                run::<_, 4, 4>(&x86::Vnni(()), self.threads, shape, x, w, &corr, acc);
            }
            #[cfg(target_arch = "x86_64")]
            Int8Path::Avx2 => {
                let corr = row_corrections(w, inputs, input_offset);
                run::<_, 2, 4>(&x86::Avx2(()), self.threads, shape, x, w, &corr, acc);
            }
            _ => PortableInt8.dense_i8(shape, x, input_offset, w, acc),
        }
    }
}

/// `factor · Σ_j w[o][j]` per output row (wrapping).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn row_corrections(w: &[i8], inputs: usize, factor: i32) -> Vec<i32> {
    w.chunks_exact(inputs)
        .map(|row| row.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32)).wrapping_mul(factor))
        .collect()
}

/// A register-tile micro kernel: the raw dot products of `MB` consecutive rows of `x` with
/// `NO` consecutive rows of `w` (all `k` long), before the per-output correction.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
trait Micro: Sync {
    fn block<const MB: usize, const NO: usize>(&self, x: &[i8], w: &[i8], k: usize) -> [[i32; NO]; MB];
}

/// Splits the batch over up to `threads` threads (for large products) and runs [`tiles`].
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn run<M: Micro, const MB: usize, const NO: usize>(
    m: &M,
    threads: usize,
    s: Shape,
    x: &[i8],
    w: &[i8],
    corr: &[i32],
    acc: &mut [i32],
) {
    let macs = s.batch.saturating_mul(s.inputs).saturating_mul(s.outputs);
    let threads = threads.min(s.batch.div_ceil(MB));
    if threads <= 1 || macs < PARALLEL_MACS {
        tiles::<M, MB, NO>(m, s.batch, s.inputs, s.outputs, x, w, corr, acc);
        return;
    }
    // Whole tiles per thread, so the split adds no ragged rows.
    let rows = s.batch.div_ceil(threads).div_ceil(MB) * MB;
    std::thread::scope(|scope| {
        for (xc, ac) in x.chunks(rows * s.inputs).zip(acc.chunks_mut(rows * s.outputs)) {
            let b = xc.len() / s.inputs;
            scope.spawn(move || tiles::<M, MB, NO>(m, b, s.inputs, s.outputs, xc, w, corr, ac));
        }
    });
}

/// Covers the `batch × outputs` result with `MB × NO` tiles, then `MB × 1`, `1 × NO` and
/// `1 × 1` tiles for the ragged edges, and adds the per-output correction.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn tiles<M: Micro, const MB: usize, const NO: usize>(
    m: &M,
    batch: usize,
    k: usize,
    outputs: usize,
    x: &[i8],
    w: &[i8],
    corr: &[i32],
    acc: &mut [i32],
) {
    fn store<const R: usize, const C: usize>(
        acc: &mut [i32],
        outputs: usize,
        b: usize,
        o: usize,
        t: [[i32; C]; R],
        corr: &[i32],
    ) {
        for (r, row) in t.iter().enumerate() {
            let dst = &mut acc[(b + r) * outputs + o..][..C];
            for ((d, &v), &c) in dst.iter_mut().zip(row).zip(&corr[o..o + C]) {
                *d = v.wrapping_add(c);
            }
        }
    }
    let full_b = batch / MB * MB;
    let full_o = outputs / NO * NO;
    let mut b = 0;
    while b < full_b {
        let xb = &x[b * k..(b + MB) * k];
        let mut o = 0;
        while o < full_o {
            let t = m.block::<MB, NO>(xb, &w[o * k..(o + NO) * k], k);
            store(acc, outputs, b, o, t, corr);
            o += NO;
        }
        while o < outputs {
            let t = m.block::<MB, 1>(xb, &w[o * k..(o + 1) * k], k);
            store(acc, outputs, b, o, t, corr);
            o += 1;
        }
        b += MB;
    }
    while b < batch {
        let xb = &x[b * k..(b + 1) * k];
        let mut o = 0;
        while o < full_o {
            let t = m.block::<1, NO>(xb, &w[o * k..(o + NO) * k], k);
            store(acc, outputs, b, o, t, corr);
            o += NO;
        }
        while o < outputs {
            let t = m.block::<1, 1>(xb, &w[o * k..(o + 1) * k], k);
            store(acc, outputs, b, o, t, corr);
            o += 1;
        }
        b += 1;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Micro;

    /// The AVX-512 VNNI micro kernel. Only [`super::Int8Fast`] builds one (the private field),
    /// and only on its `Avx512Vnni` path, which [`super::Int8Fast::with_path`] / `new` select
    /// only after detecting `avx512f`, `avx512bw` and `avx512vnni`.
    pub(super) struct Vnni(pub(super) ());

    /// The AVX2 micro kernel, built only on the `Avx2` path (after detecting `avx2`).
    pub(super) struct Avx2(pub(super) ());

    impl Micro for Vnni {
        #[inline]
        fn block<const MB: usize, const NO: usize>(&self, x: &[i8], w: &[i8], k: usize) -> [[i32; NO]; MB] {
            assert!(x.len() == MB * k && w.len() == NO * k);
            // SAFETY: a `Vnni` exists only on the `Avx512Vnni` path, chosen only after
            // `is_x86_feature_detected!` confirmed avx512f, avx512bw and avx512vnni; the
            // assertion above gives the slice lengths `vnni_block` relies on.
            unsafe { vnni_block::<MB, NO>(x, w, k) }
        }
    }

    impl Micro for Avx2 {
        #[inline]
        fn block<const MB: usize, const NO: usize>(&self, x: &[i8], w: &[i8], k: usize) -> [[i32; NO]; MB] {
            assert!(x.len() == MB * k && w.len() == NO * k);
            // SAFETY: an `Avx2` exists only on the `Avx2` path, chosen only after
            // `is_x86_feature_detected!("avx2")`; the assertion gives the slice lengths.
            unsafe { avx2_block::<MB, NO>(x, w, k) }
        }
    }

    /// Σ_j (x[r][j] ^ 0x80 as u8) · w[c][j] for each of `MB` rows of `x` and `NO` rows of `w`.
    /// Callers guarantee `x.len() == MB * k` and `w.len() == NO * k`.
    // The AVX-512 intrinsics and the `avx512vnni` target feature are stable since Rust 1.89,
    // the workspace's rust-version.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn vnni_block<const MB: usize, const NO: usize>(x: &[i8], w: &[i8], k: usize) -> [[i32; NO]; MB] {
        debug_assert!(x.len() == MB * k && w.len() == NO * k);
        let flip = _mm512_set1_epi8(i8::MIN);
        // acc[c][r]: output row c, batch row r.
        let mut acc = [[_mm512_setzero_si512(); MB]; NO];
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut j = 0;
        while j + 64 <= k {
            let mut xv = [flip; MB];
            for (r, v) in xv.iter_mut().enumerate() {
                // SAFETY: j + 64 <= k, so bytes r·k + j .. r·k + j + 64 lie in row r < MB of x
                // (x.len() == MB·k); loadu has no alignment requirement.
                *v = _mm512_xor_si512(unsafe { _mm512_loadu_si512(xp.add(r * k + j).cast()) }, flip);
            }
            for (c, ac) in acc.iter_mut().enumerate() {
                // SAFETY: as above, for row c < NO of w (w.len() == NO·k).
                let wv = unsafe { _mm512_loadu_si512(wp.add(c * k + j).cast()) };
                for (a, &xr) in ac.iter_mut().zip(&xv) {
                    *a = _mm512_dpbusd_epi32(*a, xr, wv);
                }
            }
            j += 64;
        }
        if j < k {
            // The last k - j (< 64) bytes; masked-off lanes are neither read nor faulted on
            // and load as 0, so their weights are 0 and they add nothing.
            let mask: __mmask64 = u64::MAX >> (64 - (k - j));
            let mut xv = [flip; MB];
            for (r, v) in xv.iter_mut().enumerate() {
                // SAFETY: the mask enables only lanes j .. k of row r, all inside x; masked
                // loads suppress faults on disabled lanes.
                *v = _mm512_xor_si512(unsafe { _mm512_maskz_loadu_epi8(mask, xp.add(r * k + j)) }, flip);
            }
            for (c, ac) in acc.iter_mut().enumerate() {
                // SAFETY: as above, for lanes j .. k of row c of w.
                let wv = unsafe { _mm512_maskz_loadu_epi8(mask, wp.add(c * k + j)) };
                for (a, &xr) in ac.iter_mut().zip(&xv) {
                    *a = _mm512_dpbusd_epi32(*a, xr, wv);
                }
            }
        }
        let mut out = [[0i32; NO]; MB];
        for (c, ac) in acc.iter().enumerate() {
            for (o, &a) in out.iter_mut().zip(ac) {
                o[c] = _mm512_reduce_add_epi32(a);
            }
        }
        out
    }

    /// Σ_j x[r][j] · w[c][j] for each of `MB` rows of `x` and `NO` rows of `w` (wrapping).
    /// Callers guarantee `x.len() == MB * k` and `w.len() == NO * k`.
    #[target_feature(enable = "avx2")]
    fn avx2_block<const MB: usize, const NO: usize>(x: &[i8], w: &[i8], k: usize) -> [[i32; NO]; MB] {
        debug_assert!(x.len() == MB * k && w.len() == NO * k);
        // acc[c][r]: output row c, batch row r.
        let mut acc = [[_mm256_setzero_si256(); MB]; NO];
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut j = 0;
        while j + 16 <= k {
            let mut xv = [_mm256_setzero_si256(); MB];
            for (r, v) in xv.iter_mut().enumerate() {
                // SAFETY: j + 16 <= k, so bytes r·k + j .. r·k + j + 16 lie in row r < MB of x
                // (x.len() == MB·k); loadu has no alignment requirement.
                *v = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(xp.add(r * k + j).cast()) });
            }
            for (c, ac) in acc.iter_mut().enumerate() {
                // SAFETY: as above, for row c < NO of w (w.len() == NO·k).
                let wv = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(wp.add(c * k + j).cast()) });
                for (a, &xr) in ac.iter_mut().zip(&xv) {
                    // Products of int8 values fit i16·i16 → i32 exactly; pairs sum in i32.
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xr, wv));
                }
            }
            j += 16;
        }
        let mut out = [[0i32; NO]; MB];
        for (c, ac) in acc.iter().enumerate() {
            for (r, (o, &v)) in out.iter_mut().zip(ac).enumerate() {
                let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
                let mut t = _mm_cvtsi128_si32(s);
                for (&xv, &wv) in x[r * k + j..(r + 1) * k].iter().zip(&w[c * k + j..(c + 1) * k]) {
                    t = t.wrapping_add(xv as i32 * wv as i32);
                }
                o[c] = t;
            }
        }
        out
    }
}
