//! Zero-skipping dense products: the inputs of an MLP are mostly zeros (MNIST pixels scaled
//! to [0, 1] are about 81% blank; ReLU outputs are often half zero), and a zero input
//! contributes nothing to `Y = X Wᵀ + b` or to `dW = dYᵀ X`. These kernels visit only the
//! nonzero inputs, so their cost follows the nonzero count instead of `batch × inputs`.
//!
//! - [`forward`]: `W` is transposed once per call into `Wt` (`inputs × stride`, padded to a
//!   whole number of 16-lane vectors) so that each nonzero input `x[b][j]` adds the contiguous
//!   row `x[b][j] · Wt[j]` to accumulators that stay in registers (256 outputs = 16 AVX-512
//!   vectors); rows of the batch are split over threads.
//! - [`backward_params`]: each thread owns a range of inputs `j` and, sample by sample, adds
//!   `x[b][j] · dY[b]` into `dWt[j]` (with `dY[b]` held in registers), then `dWt` is
//!   transposed into `dW`.
//!
//! The arithmetic is written once, as plain loops over fixed-size `[f32; 16]` chunks that
//! LLVM turns into vector FMAs, and compiled three times: for AVX-512, for AVX2 + FMA, and
//! for the baseline target ([`Isa`], chosen at run time). Only the summation order differs
//! from [`mlp::Portable`] (skipping `0 · w` terms is exact for finite weights).

use std::cell::RefCell;

use rayon::prelude::*;

/// Lanes per chunk: one AVX-512 vector.
pub const LANES: usize = 16;
/// Rows of the batch handed to one thread task at a time.
const ROWS_PER_TASK: usize = 64;

/// The instruction set the loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F (16-lane FMAs, mask compress for the nonzero scan).
    Avx512,
    /// AVX2 + FMA (8-lane FMAs).
    Avx2Fma,
    /// The compilation target's baseline (SSE2 on x86-64), separate multiply and add.
    Baseline,
}

impl Isa {
    /// Every variant, fastest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2Fma, Isa::Baseline];

    /// Whether this CPU runs the variant (detected at run time; always true for `Baseline`).
    pub fn is_available(self) -> bool {
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest variant this CPU runs (detected once).
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Isa::ALL.into_iter().find(|i| i.is_available()).unwrap_or(Isa::Baseline))
    }
}

/// The fraction of nonzero values among the first rows of `x` (`rows × inputs`): a cheap
/// estimate that decides between the zero-skipping and the dense kernels.
pub fn density(x: &[f32], inputs: usize, rows: usize) -> f32 {
    let n = (rows.min(32) * inputs).min(x.len());
    if n == 0 {
        return 1.0;
    }
    let nonzero = x[..n].iter().filter(|v| **v != 0.0).count();
    nonzero as f32 / n as f32
}

thread_local! {
    /// The caller's transposed operands (`Wt`, `dWt`, padded `dY`).
    static FLOATS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A thread's list of nonzero indices (or active chunks, for the GEMV).
    static INDICES: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `n` elements of this thread's scratch buffer `key`, which grows to the
/// largest size asked for and is then reused, so a training loop allocates only in its
/// first steps. A re-entrant call (a thread-pool worker that picked up another product while
/// waiting) gets a fresh buffer instead of a double borrow.
fn with_scratch<T: Copy + Default + 'static, R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<T>>>,
    n: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < n {
                v.resize(n, T::default());
            }
            f(&mut v[..n])
        }
        Err(_) => f(&mut vec![T::default(); n]),
    })
}

/// Runs `f` on `n` entries of this thread's index scratch (see [`with_scratch`]).
pub(crate) fn with_indices<R>(n: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    with_scratch(&INDICES, n, f)
}

/// `outputs` rounded up to whole chunks: the row stride of `Wt` and `dWt`.
fn padded(outputs: usize) -> usize {
    outputs.div_ceil(LANES) * LANES
}

/// `y = x Wᵀ + bias` for `batch = y.len() / outputs` rows, visiting only nonzero `x`.
pub fn forward(isa: Isa, inputs: usize, outputs: usize, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
    let stride = padded(outputs);
    with_scratch(&FLOATS, inputs * stride, |wt| {
        transpose_into(isa, w, outputs, inputs, wt, stride);
        let wt = &*wt;
        y.par_chunks_mut(ROWS_PER_TASK * outputs).zip(x.par_chunks(ROWS_PER_TASK * inputs)).for_each(
            |(yc, xc)| {
                with_scratch(&INDICES, inputs + LANES, |idx| {
                    dispatch_forward(isa, xc, inputs, wt, stride, bias, outputs, yc, idx)
                })
            },
        );
    });
}

/// `dW = dYᵀ X` and `dbias = Σ_b dY[b]`, visiting only nonzero `x`.
pub fn backward_params(
    isa: Isa,
    inputs: usize,
    outputs: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dbias: &mut [f32],
) {
    let stride = padded(outputs);
    let batch = dy.len() / outputs.max(1);
    with_scratch(&FLOATS, inputs * stride + batch * stride, |buf| {
        // dWt rows are split into one range of inputs per task; dY is copied into padded rows
        // so that whole chunks can be read.
        let (dwt, dyp) = buf.split_at_mut(inputs * stride);
        for (dst, src) in dyp.chunks_exact_mut(stride).zip(dy.chunks_exact(outputs)) {
            dst[..outputs].copy_from_slice(src);
            dst[outputs..].fill(0.0);
        }
        let dyp = &*dyp;
        let tasks = rayon::current_num_threads().max(1) * 2;
        let cols = inputs.div_ceil(tasks).max(1);
        dwt.par_chunks_mut(cols * stride).enumerate().for_each(|(t, rows)| {
            with_scratch(&INDICES, cols + LANES, |idx| {
                dispatch_params(isa, x, inputs, t * cols, dyp, stride, rows, idx)
            })
        });
        transpose_into(isa, dwt, inputs, stride, dw, inputs);
        // `transpose_into` wrote stride ≥ outputs rows: the first `outputs` are dW.
    });
    dbias.fill(0.0);
    for row in dy.chunks_exact(outputs) {
        for (d, &g) in dbias.iter_mut().zip(row) {
            *d += g;
        }
    }
}

/// Writes the transpose of `src` (`rows × cols`, row-major) into `dst` with row stride
/// `dst_stride`: `dst[c][r] = src[r][c]` for `c < cols`; columns `rows..dst_stride` of `dst`
/// are zeroed. Blocked so both sides stay in cache; split over threads by rows of `dst`.
fn transpose_into(isa: Isa, src: &[f32], rows: usize, cols: usize, dst: &mut [f32], dst_stride: usize) {
    const B: usize = 16;
    assert!(src.len() >= rows * cols && dst_stride >= rows);
    let dst_rows = cols.min(dst.len() / dst_stride.max(1));
    let dst = &mut dst[..dst_rows * dst_stride];
    dst.par_chunks_mut(B * dst_stride).enumerate().for_each(|(cb, block)| {
        let c0 = cb * B;
        let cn = block.len() / dst_stride;
        let mut r0 = 0;
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && cn <= B {
            // SAFETY: `Isa::Avx512` is only used after `is_available` confirmed AVX-512F;
            // the bounds it needs are checked inside.
            r0 = unsafe { x86::transpose_rows_avx512(src, rows, cols, c0, block, dst_stride) };
        }
        for r0 in (r0..rows).step_by(B) {
            let rn = B.min(rows - r0);
            for c in 0..cn {
                let d = &mut block[c * dst_stride + r0..][..rn];
                for (r, v) in d.iter_mut().enumerate() {
                    *v = src[(r0 + r) * cols + c0 + c];
                }
            }
        }
        for c in 0..cn {
            block[c * dst_stride + rows..(c + 1) * dst_stride].fill(0.0);
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn dispatch_forward(
    isa: Isa,
    x: &[f32],
    inputs: usize,
    wt: &[f32],
    stride: usize,
    bias: &[f32],
    outputs: usize,
    y: &mut [f32],
    idx: &mut [u32],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512` is only constructed for use after `is_available` confirmed
        // the CPU has AVX-512F (see `Fast`), which is all `forward_avx512` requires.
        Isa::Avx512 => unsafe { x86::forward_avx512(x, inputs, wt, stride, bias, outputs, y, idx) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        Isa::Avx2Fma => unsafe { x86::forward_avx2(x, inputs, wt, stride, bias, outputs, y, idx) },
        _ => forward_rows::<Baseline4>(x, inputs, wt, stride, bias, outputs, y, idx, nonzeros_scalar),
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch_params(
    isa: Isa,
    x: &[f32],
    inputs: usize,
    j0: usize,
    dy: &[f32],
    stride: usize,
    dwt: &mut [f32],
    idx: &mut [u32],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512` is only used after `is_available` confirmed AVX-512F.
        Isa::Avx512 => unsafe { x86::params_avx512(x, inputs, j0, dy, stride, dwt, idx) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        Isa::Avx2Fma => unsafe { x86::params_avx2(x, inputs, j0, dy, stride, dwt, idx) },
        _ => params_cols::<Baseline4>(x, inputs, j0, dy, stride, dwt, idx, nonzeros_scalar),
    }
}

/// Writes the indices `j` (plus `base`) of the nonzero values of `row` to the front of `idx`
/// (which holds at least `row.len() + LANES` entries) and returns how many there are. NaN
/// counts as nonzero, so it propagates as in the dense product.
pub(crate) type Nonzeros = fn(&[f32], u32, &mut [u32]) -> usize;

/// Branch-free compaction (a nonzero test per value, no unpredictable jumps).
#[inline(always)]
fn nonzeros_scalar(row: &[f32], base: u32, idx: &mut [u32]) -> usize {
    let mut n = 0;
    for (j, &v) in row.iter().enumerate() {
        idx[n] = base + j as u32;
        n += (v != 0.0) as usize;
    }
    n
}

/// The few vector operations the loops need, for one instruction set. Every method is
/// `unsafe`: it may only run on a CPU with that instruction set, which the callers ensure by
/// calling the loops from `#[target_feature]` functions chosen by [`Isa`].
trait Simd {
    /// A vector of `LANES` f32s.
    type V: Copy;
    /// Lanes per vector.
    const LANES: usize;
    /// Vectors of outputs kept in registers at once.
    const BLOCK: usize;
    /// # Safety
    /// The CPU has this instruction set.
    unsafe fn zero() -> Self::V;
    /// # Safety
    /// As for `zero`, and `p` points to `LANES` readable f32s.
    unsafe fn load(p: *const f32) -> Self::V;
    /// # Safety
    /// As for `zero`, and `p` points to `LANES` writable f32s.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// # Safety
    /// As for `zero`.
    unsafe fn splat(v: f32) -> Self::V;
    /// `a · b + c`.
    /// # Safety
    /// As for `zero`.
    unsafe fn madd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
}

/// Four lanes of plain arithmetic, which LLVM maps onto SSE2: the baseline.
struct Baseline4;

impl Simd for Baseline4 {
    type V = [f32; 4];
    const LANES: usize = 4;
    const BLOCK: usize = 12;
    #[inline(always)]
    unsafe fn zero() -> [f32; 4] {
        [0.0; 4]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 4] {
        // SAFETY: the caller guarantees 4 readable f32s at `p`.
        unsafe { p.cast::<[f32; 4]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 4]) {
        // SAFETY: the caller guarantees 4 writable f32s at `p`.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> [f32; 4] {
        [v; 4]
    }
    #[inline(always)]
    unsafe fn madd(a: [f32; 4], b: [f32; 4], c: [f32; 4]) -> [f32; 4] {
        core::array::from_fn(|l| c[l] + a[l] * b[l])
    }
}

/// Runs `$body` with `$c` bound to a chunk count in `1..=16` known only at run time, as a
/// constant (so the accumulator arrays have a fixed size and live in registers).
macro_rules! with_chunks {
    ($n:expr, $c:ident => $body:expr) => {
        match $n {
            1 => {
                const $c: usize = 1;
                $body
            }
            2 => {
                const $c: usize = 2;
                $body
            }
            3 => {
                const $c: usize = 3;
                $body
            }
            4 => {
                const $c: usize = 4;
                $body
            }
            5 => {
                const $c: usize = 5;
                $body
            }
            6 => {
                const $c: usize = 6;
                $body
            }
            7 => {
                const $c: usize = 7;
                $body
            }
            8 => {
                const $c: usize = 8;
                $body
            }
            9 => {
                const $c: usize = 9;
                $body
            }
            10 => {
                const $c: usize = 10;
                $body
            }
            11 => {
                const $c: usize = 11;
                $body
            }
            12 => {
                const $c: usize = 12;
                $body
            }
            13 => {
                const $c: usize = 13;
                $body
            }
            14 => {
                const $c: usize = 14;
                $body
            }
            15 => {
                const $c: usize = 15;
                $body
            }
            _ => {
                const $c: usize = 16;
                $body
            }
        }
    };
}

/// Bytes of `Wt` or `dWt` rows worked on at a time: they stay in the L1 data cache
/// (32 KiB on most x86 cores, 48 KiB on recent ones) while every row of the batch visits them.
const L1_BYTES: usize = 32 * 1024;

/// Rows of a `stride`-wide `Wt` or `dWt` that fit in [`L1_BYTES`] (at least one).
fn rows_in_l1(stride: usize) -> usize {
    (L1_BYTES / (stride * 4).max(1)).max(1)
}

/// The forward product for the rows of `x`: `y = bias`, then for each block of inputs small
/// enough for `Wt`'s rows to stay in L1, each row of the batch adds its nonzero inputs times
/// their `Wt` rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_rows<S: Simd>(
    x: &[f32],
    inputs: usize,
    wt: &[f32],
    stride: usize,
    bias: &[f32],
    outputs: usize,
    y: &mut [f32],
    idx: &mut [u32],
    nonzeros: Nonzeros,
) {
    assert!(
        wt.len() >= inputs * stride && stride >= outputs.div_ceil(LANES) * LANES && bias.len() >= outputs
    );
    for yr in y.chunks_exact_mut(outputs) {
        yr.copy_from_slice(&bias[..outputs]);
    }
    let jb = rows_in_l1(stride);
    for j0 in (0..inputs).step_by(jb) {
        let j1 = inputs.min(j0 + jb);
        for (xr, yr) in x.chunks_exact(inputs).zip(y.chunks_exact_mut(outputs)) {
            let n = nonzeros(&xr[j0..j1], j0 as u32, idx);
            if n == 0 {
                continue;
            }
            let nz = &idx[..n];
            let mut o0 = 0;
            while o0 < outputs {
                let chunks = (outputs - o0).div_ceil(S::LANES).min(S::BLOCK);
                with_chunks!(chunks, C => forward_block::<S, C>(xr, nz, wt, stride, o0, yr));
                o0 += chunks * S::LANES;
            }
        }
    }
}

/// Adds the nonzero inputs `nz` of one row times their `Wt` rows to outputs
/// `o0 .. o0 + C·LANES` of the row.
#[inline(always)]
fn forward_block<S: Simd, const C: usize>(
    xr: &[f32],
    nz: &[u32],
    wt: &[f32],
    stride: usize,
    o0: usize,
    yr: &mut [f32],
) {
    let n = (yr.len() - o0).min(C * S::LANES);
    let mut tail = [0.0f32; 256];
    // Whole chunks work on `y` in place; a ragged last block goes through `tail`.
    let out: &mut [f32] = if n == C * S::LANES {
        &mut yr[o0..o0 + n]
    } else {
        tail[..n].copy_from_slice(&yr[o0..o0 + n]);
        &mut tail
    };
    // SAFETY: the caller's Isa guarantees the instruction set. Reads of
    // `Wt` cover `j · stride + o0 .. + C·LANES`, inside `wt` because j < inputs (indices come
    // from a row of `inputs` values), o0 + C·LANES ≤ the padded stride, and
    // wt.len() ≥ inputs · stride (asserted in `forward_rows`); `out` holds ≥ C·LANES values.
    unsafe {
        let mut acc = [S::zero(); C];
        for (c, a) in acc.iter_mut().enumerate() {
            *a = S::load(out.as_ptr().add(c * S::LANES));
        }
        for &j in nz {
            let j = j as usize;
            let v = S::splat(*xr.get_unchecked(j));
            let w = wt.as_ptr().add(j * stride + o0);
            for (c, a) in acc.iter_mut().enumerate() {
                *a = S::madd(S::load(w.add(c * S::LANES)), v, *a);
            }
        }
        for (c, a) in acc.iter().enumerate() {
            S::store(out.as_mut_ptr().add(c * S::LANES), *a);
        }
    }
    if n < C * S::LANES {
        yr[o0..o0 + n].copy_from_slice(&tail[..n]);
    }
}

/// Rows `j0 ..` of `dWt` (as many as `dwt` holds): `dWt[j] = Σ_b x[b][j] · dY[b]`, a block of
/// rows small enough to stay in L1 at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn params_cols<S: Simd>(
    x: &[f32],
    inputs: usize,
    j0: usize,
    dy: &[f32],
    stride: usize,
    dwt: &mut [f32],
    idx: &mut [u32],
    nonzeros: Nonzeros,
) {
    dwt.fill(0.0);
    let cols = dwt.len() / stride;
    assert!(stride.is_multiple_of(LANES) && j0 + cols <= inputs && dwt.len() == cols * stride);
    let jb = rows_in_l1(stride);
    for (bi, block) in dwt.chunks_mut(jb * stride).enumerate() {
        let (start, rows) = (j0 + bi * jb, block.len() / stride);
        for (xr, dyr) in x.chunks_exact(inputs).zip(dy.chunks_exact(stride)) {
            let xr = &xr[start..start + rows];
            let n = nonzeros(xr, 0, idx);
            if n == 0 {
                continue;
            }
            let nz = &idx[..n];
            let mut o0 = 0;
            while o0 < stride {
                let chunks = ((stride - o0) / S::LANES).min(S::BLOCK);
                with_chunks!(chunks, C => params_block::<S, C>(xr, nz, dyr, o0, stride, block));
                o0 += chunks * S::LANES;
            }
        }
    }
}

/// Adds `x[j] · dY[o0 .. o0 + C·LANES]` to row `j` of `dWt` for each nonzero `x[j]`.
#[inline(always)]
fn params_block<S: Simd, const C: usize>(
    xr: &[f32],
    nz: &[u32],
    dyr: &[f32],
    o0: usize,
    stride: usize,
    dwt: &mut [f32],
) {
    assert!(o0 + C * S::LANES <= dyr.len());
    // SAFETY: the caller's Isa guarantees the instruction set; `dY` reads
    // are inside `dyr` (asserted); `dWt` accesses cover `j · stride + o0 .. + C·LANES` with
    // j < rows = dwt.len() / stride (indices come from a row of `rows` values) and
    // o0 + C·LANES ≤ stride (the caller's loop), so they stay inside `dwt`.
    unsafe {
        let mut g = [S::zero(); C];
        for (c, g) in g.iter_mut().enumerate() {
            *g = S::load(dyr.as_ptr().add(o0 + c * S::LANES));
        }
        for &j in nz {
            let j = j as usize;
            let v = S::splat(*xr.get_unchecked(j));
            let row = dwt.as_mut_ptr().add(j * stride + o0);
            for (c, g) in g.iter().enumerate() {
                let p = row.add(c * S::LANES);
                S::store(p, S::madd(*g, v, S::load(p)));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{forward_rows, nonzeros_scalar, params_cols, Simd, LANES};

    struct Avx512;

    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        const BLOCK: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F and 16 readable f32s.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: the caller guarantees AVX-512F and 16 writable f32s.
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn madd(a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
    }

    struct Avx2;

    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        const BLOCK: usize = 12;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            // SAFETY: the caller guarantees AVX2.
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees AVX2 and 8 readable f32s.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: the caller guarantees AVX2 and 8 writable f32s.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            // SAFETY: the caller guarantees AVX2.
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn madd(a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: the caller guarantees FMA.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
    }

    /// Transposes the 16 × 16 tile held in `r` (row `i` in `r[i]`) in registers: afterwards
    /// `r[k]` holds column `k`. Four rounds of lane shuffles (32-bit pairs, 64-bit pairs,
    /// 128-bit quarters twice), no memory traffic.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let pd = _mm512_castps_pd;
        for i in 0..4 {
            let (a, b, c, d) = (pd(t[4 * i]), pd(t[4 * i + 1]), pd(t[4 * i + 2]), pd(t[4 * i + 3]));
            r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
            r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
            r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
            r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
        }
        for h in [0, 8] {
            for k in 0..4 {
                t[h + k] = _mm512_shuffle_f32x4::<0x88>(r[h + k], r[h + k + 4]);
                t[h + k + 4] = _mm512_shuffle_f32x4::<0xdd>(r[h + k], r[h + k + 4]);
            }
        }
        for k in 0..8 {
            r[k] = _mm512_shuffle_f32x4::<0x88>(t[k], t[k + 8]);
            r[k + 8] = _mm512_shuffle_f32x4::<0xdd>(t[k], t[k + 8]);
        }
    }

    /// Columns `c0 .. c0 + block.len() / dst_stride` (at most 16) of `src` (`rows × cols`)
    /// into the rows of `block` (`dst[c][r] = src[r][c0 + c]`), one 16 × 16 tile at a time:
    /// 16 (masked) row loads, an in-register transpose, and one store per column. Returns the
    /// first source row it did not do (the last `rows % 16` are left to the caller).
    #[target_feature(enable = "avx512f")]
    pub(super) fn transpose_rows_avx512(
        src: &[f32],
        rows: usize,
        cols: usize,
        c0: usize,
        block: &mut [f32],
        dst_stride: usize,
    ) -> usize {
        let cn = block.len() / dst_stride;
        let full = rows / LANES * LANES;
        assert!(cn <= LANES && c0 + cn <= cols && src.len() >= rows * cols && dst_stride >= rows);
        let mask: __mmask16 = ((1u32 << cn) - 1) as __mmask16;
        for r0 in (0..full).step_by(LANES) {
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate() {
                // SAFETY: the masked load reads src[(r0 + i) · cols + c0 + k] for k < cn only:
                // r0 + i < rows and c0 + k < cols, so inside `src` (asserted).
                *v = unsafe { _mm512_maskz_loadu_ps(mask, src.as_ptr().add((r0 + i) * cols + c0)) };
            }
            transpose16(&mut r);
            for (k, v) in r.iter().take(cn).enumerate() {
                // SAFETY: writes block[k · dst_stride + r0 .. + 16]: k < cn and
                // r0 + 16 ≤ rows ≤ dst_stride, so inside `block`.
                unsafe { _mm512_storeu_ps(block.as_mut_ptr().add(k * dst_stride + r0), *v) };
            }
        }
        full
    }

    /// [`super::nonzeros_scalar`] with AVX-512: a compare mask and a compress per 16 values.
    #[target_feature(enable = "avx512f")]
    fn nonzeros_avx512(row: &[f32], base: u32, idx: &mut [u32]) -> usize {
        assert!(idx.len() >= row.len() + LANES, "index scratch too short");
        let mut n = 0;
        let mut iota = _mm512_add_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(base as i32),
        );
        let step = _mm512_set1_epi32(LANES as i32);
        let zero = _mm512_setzero_ps();
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            // SAFETY: `c` holds 16 f32s; the store writes 16 u32s at `idx[n..n + 16]`, in
            // bounds because n ≤ the values seen so far ≤ row.len() - 16 and idx.len() ≥
            // row.len() + 16 (asserted above).
            unsafe {
                let v = _mm512_loadu_ps(c.as_ptr());
                let m = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
                _mm512_storeu_si512(idx.as_mut_ptr().add(n).cast(), _mm512_maskz_compress_epi32(m, iota));
                n += m.count_ones() as usize;
            }
            iota = _mm512_add_epi32(iota, step);
        }
        let done = row.len() - chunks.remainder().len();
        n + nonzeros_scalar(chunks.remainder(), base + done as u32, &mut idx[n..])
    }

    fn nonzeros_avx512_safe(row: &[f32], base: u32, idx: &mut [u32]) -> usize {
        // SAFETY: only reached from `forward_avx512`/`params_avx512`, whose callers
        // guarantee AVX-512F.
        unsafe { nonzeros_avx512(row, base, idx) }
    }

    /// [`super::forward_rows`] compiled for AVX-512.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn forward_avx512(
        x: &[f32],
        inputs: usize,
        wt: &[f32],
        stride: usize,
        bias: &[f32],
        outputs: usize,
        y: &mut [f32],
        idx: &mut [u32],
    ) {
        forward_rows::<Avx512>(x, inputs, wt, stride, bias, outputs, y, idx, nonzeros_avx512_safe)
    }

    /// [`super::forward_rows`] compiled for AVX2 + FMA.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_avx2(
        x: &[f32],
        inputs: usize,
        wt: &[f32],
        stride: usize,
        bias: &[f32],
        outputs: usize,
        y: &mut [f32],
        idx: &mut [u32],
    ) {
        forward_rows::<Avx2>(x, inputs, wt, stride, bias, outputs, y, idx, nonzeros_scalar)
    }

    /// [`super::params_cols`] compiled for AVX-512.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn params_avx512(
        x: &[f32],
        inputs: usize,
        j0: usize,
        dy: &[f32],
        stride: usize,
        dwt: &mut [f32],
        idx: &mut [u32],
    ) {
        params_cols::<Avx512>(x, inputs, j0, dy, stride, dwt, idx, nonzeros_avx512_safe)
    }

    /// [`super::params_cols`] compiled for AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn params_avx2(
        x: &[f32],
        inputs: usize,
        j0: usize,
        dy: &[f32],
        stride: usize,
        dwt: &mut [f32],
        idx: &mut [u32],
    ) {
        params_cols::<Avx2>(x, inputs, j0, dy, stride, dwt, idx, nonzeros_scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_scalar_on_ragged_shapes() {
        for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
            for (rows, cols) in
                [(1usize, 1usize), (3, 17), (16, 16), (17, 33), (32, 48), (47, 5), (64, 300), (256, 784)]
            {
                let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
                for dst_stride in [rows, rows.div_ceil(LANES) * LANES, rows + 3] {
                    let mut dst = vec![f32::NAN; cols * dst_stride];
                    transpose_into(isa, &src, rows, cols, &mut dst, dst_stride);
                    for c in 0..cols {
                        for r in 0..dst_stride {
                            let want = if r < rows { src[r * cols + c] } else { 0.0 };
                            assert_eq!(dst[c * dst_stride + r], want, "{isa:?} {rows}x{cols} [{c}][{r}]");
                        }
                    }
                }
            }
        }
    }
}
