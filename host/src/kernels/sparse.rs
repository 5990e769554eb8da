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
/// Chunks of outputs kept in registers at once: 16 × 16 = 256 outputs.
const BLOCK_CHUNKS: usize = 16;
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
    /// A thread task's list of nonzero indices.
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

/// `outputs` rounded up to whole chunks: the row stride of `Wt` and `dWt`.
fn padded(outputs: usize) -> usize {
    outputs.div_ceil(LANES) * LANES
}

/// `y = x Wᵀ + bias` for `batch = y.len() / outputs` rows, visiting only nonzero `x`.
pub fn forward(isa: Isa, inputs: usize, outputs: usize, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
    let stride = padded(outputs);
    with_scratch(&FLOATS, inputs * stride, |wt| {
        transpose_into(w, outputs, inputs, wt, stride);
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
        transpose_into(dwt, inputs, stride, dw, inputs);
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
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32], dst_stride: usize) {
    const B: usize = 16;
    let dst_rows = cols.min(dst.len() / dst_stride.max(1));
    let dst = &mut dst[..dst_rows * dst_stride];
    dst.par_chunks_mut(B * dst_stride).enumerate().for_each(|(cb, block)| {
        let c0 = cb * B;
        let cn = block.len() / dst_stride;
        for r0 in (0..rows).step_by(B) {
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
        _ => forward_rows::<false>(x, inputs, wt, stride, bias, outputs, y, idx, nonzeros_scalar),
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
        _ => params_cols::<false>(x, inputs, j0, dy, stride, dwt, idx, nonzeros_scalar),
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

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        c + a * b
    }
}

/// Calls `$f::<C>(args)` for a chunk count `C` in `1..=16` known only at run time.
macro_rules! by_chunks {
    ($n:expr, $f:ident::<$fma:ident>($($arg:expr),*)) => {
        match $n {
            1 => $f::<$fma, 1>($($arg),*), 2 => $f::<$fma, 2>($($arg),*), 3 => $f::<$fma, 3>($($arg),*),
            4 => $f::<$fma, 4>($($arg),*), 5 => $f::<$fma, 5>($($arg),*), 6 => $f::<$fma, 6>($($arg),*),
            7 => $f::<$fma, 7>($($arg),*), 8 => $f::<$fma, 8>($($arg),*), 9 => $f::<$fma, 9>($($arg),*),
            10 => $f::<$fma, 10>($($arg),*), 11 => $f::<$fma, 11>($($arg),*), 12 => $f::<$fma, 12>($($arg),*),
            13 => $f::<$fma, 13>($($arg),*), 14 => $f::<$fma, 14>($($arg),*), 15 => $f::<$fma, 15>($($arg),*),
            _ => $f::<$fma, 16>($($arg),*),
        }
    };
}

/// The forward product for rows of `x`, each a list of nonzeros times rows of `Wt`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_rows<const FMA: bool>(
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
    for (xr, yr) in x.chunks_exact(inputs).zip(y.chunks_exact_mut(outputs)) {
        let n = nonzeros(xr, 0, idx);
        let nz = &idx[..n];
        let mut o0 = 0;
        while o0 < outputs {
            let chunks = (outputs - o0).div_ceil(LANES).min(BLOCK_CHUNKS);
            by_chunks!(chunks, forward_block::<FMA>(xr, nz, wt, stride, o0, bias, yr));
            o0 += chunks * LANES;
        }
    }
}

/// Outputs `o0 .. o0 + 16·C` of one row: bias plus the nonzero inputs times their `Wt` rows.
#[inline(always)]
fn forward_block<const FMA: bool, const C: usize>(
    xr: &[f32],
    nz: &[u32],
    wt: &[f32],
    stride: usize,
    o0: usize,
    bias: &[f32],
    yr: &mut [f32],
) {
    let mut acc = [[0.0f32; LANES]; C];
    for &j in nz {
        let j = j as usize;
        let v = xr[j];
        let w = &wt[j * stride + o0..][..C * LANES];
        for (a, wc) in acc.iter_mut().zip(w.chunks_exact(LANES)) {
            for (a, &w) in a.iter_mut().zip(wc) {
                *a = madd::<FMA>(w, v, *a);
            }
        }
    }
    let n = (yr.len() - o0).min(C * LANES);
    for (k, (y, &b)) in yr[o0..o0 + n].iter_mut().zip(&bias[o0..o0 + n]).enumerate() {
        *y = acc[k / LANES][k % LANES] + b;
    }
}

/// Rows `j0 ..` of `dWt` (as many as `dwt` holds): `dWt[j] = Σ_b x[b][j] · dY[b]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn params_cols<const FMA: bool>(
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
    let outputs = stride;
    for (xr, dyr) in x.chunks_exact(inputs).zip(dy.chunks_exact(stride)) {
        let n = nonzeros(&xr[j0..j0 + cols], 0, idx);
        let nz = &idx[..n];
        let mut o0 = 0;
        while o0 < outputs {
            let chunks = ((outputs - o0) / LANES).min(BLOCK_CHUNKS);
            by_chunks!(chunks, params_block::<FMA>(&xr[j0..j0 + cols], nz, dyr, o0, stride, dwt));
            o0 += chunks * LANES;
        }
    }
}

/// Adds `x[j] · dY[o0 .. o0 + 16·C]` to row `j` of `dWt` for each nonzero `x[j]`.
#[inline(always)]
fn params_block<const FMA: bool, const C: usize>(
    xr: &[f32],
    nz: &[u32],
    dyr: &[f32],
    o0: usize,
    stride: usize,
    dwt: &mut [f32],
) {
    let mut g = [[0.0f32; LANES]; C];
    for (g, d) in g.iter_mut().zip(dyr[o0..o0 + C * LANES].chunks_exact(LANES)) {
        g.copy_from_slice(d);
    }
    for &j in nz {
        let j = j as usize;
        let v = xr[j];
        let row = &mut dwt[j * stride + o0..][..C * LANES];
        for (g, r) in g.iter().zip(row.chunks_exact_mut(LANES)) {
            for (r, &g) in r.iter_mut().zip(g) {
                *r = madd::<FMA>(g, v, *r);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{forward_rows, nonzeros_scalar, params_cols, LANES};

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
        forward_rows::<true>(x, inputs, wt, stride, bias, outputs, y, idx, nonzeros_avx512_safe)
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
        forward_rows::<true>(x, inputs, wt, stride, bias, outputs, y, idx, nonzeros_scalar)
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
        params_cols::<true>(x, inputs, j0, dy, stride, dwt, idx, nonzeros_avx512_safe)
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
        params_cols::<true>(x, inputs, j0, dy, stride, dwt, idx, nonzeros_scalar)
    }
}
