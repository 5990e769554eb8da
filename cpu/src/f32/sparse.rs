//! Zero-skipping dense products: the inputs of an MLP are mostly zeros (MNIST pixels scaled
//! to [0, 1] are about 81% blank; ReLU outputs are often half zero), and a zero input
//! contributes nothing to `Y = X Wᵀ + b` or to `dW = dYᵀ X`. These kernels visit only the
//! nonzero inputs, so their cost follows the nonzero count instead of `batch × inputs`.
//!
//! Both products are one kernel, `sparse_times_panels`: `out[r] += Σ a[r][k] · B[k]` for a
//! sparse matrix `A` given by rows (`SparseRows`: each row's nonzero column indices and
//! values, compacted once) and a dense `B` stored as column `Panels` (128 outputs on
//! AVX-512: 8 accumulator vectors). For each panel, a block of `B`'s rows that fits in L1 is
//! visited by every sparse row in turn, each resuming from a per-row cursor.
//!
//! - [`forward`]: `A = X` (rows of the batch, 64 to 256 per thread task), `B = Wt`: `W` is
//!   transposed once per call into panels (16 × 16 in-register tiles on AVX-512).
//! - [`backward_params`]: `A = Xᵀ` (the columns of `X`, a range of inputs per task, built by
//!   transposing 16 columns at a time and compacting them), `B = dY` (copied into panels),
//!   which gives `dWt`, then transposed into `dW`.
//!
//! The arithmetic is written once, as plain loops over fixed-size `[f32; 16]` chunks that
//! LLVM turns into vector FMAs, and compiled three times: for AVX-512, for AVX2 + FMA, and
//! for the baseline target ([`Isa`], chosen at run time). Only the summation order differs
//! from [`mlp::Portable`] (skipping `0 · w` terms is exact for finite weights).

use std::cell::RefCell;

use mlp::{activation, Activation};

use super::simd::{Baseline4, Simd};
use crate::isa::{Isa, Level};
use crate::prefetch::{prefetch, Cache};
use crate::scratch::with_scratch;
use rayon::prelude::*;

/// Lanes per chunk: one AVX-512 vector.
pub const LANES: usize = 16;
/// Rows of the batch handed to one thread task at a time.
const ROWS_PER_TASK: usize = 64;
/// The most rows per task for large batches: every task streams all of `Wt` through L1 once,
/// so fewer, taller tasks read it fewer times (while leaving each thread several tasks).
const MAX_ROWS_PER_TASK: usize = 256;

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
    /// A thread's nonzero values (and padded output rows).
    static VALUES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `n` entries of this thread's index scratch (see [`with_scratch`]).
pub(crate) fn with_indices<R>(n: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    with_scratch(&INDICES, n, f)
}

/// `outputs` rounded up to whole chunks: the row stride of `Wt` and `dWt`.
fn padded(outputs: usize) -> usize {
    outputs.div_ceil(LANES) * LANES
}

/// Outputs per panel of the dense operand for `isa`: as many vectors as stay in registers
/// as accumulators (8) with room for the loaded operand.
fn panel_width(isa: Isa) -> usize {
    match isa.level() {
        Level::Avx512 => 128,
        Level::Avx2 => 64,
        Level::Baseline => 32,
    }
}

/// A dense `k × n` operand (`n` padded to `stride`, a multiple of [`LANES`]) stored as
/// column panels: panel `p` holds columns `p·width ..` (`width` of them, fewer in the last
/// panel), as `k` contiguous rows, so that a block of its rows is one contiguous piece of
/// memory that stays in L1.
#[derive(Clone, Copy)]
struct Panels<'a> {
    data: &'a [f32],
    k: usize,
    width: usize,
    stride: usize,
}

impl<'a> Panels<'a> {
    fn new(data: &'a [f32], k: usize, width: usize, stride: usize) -> Self {
        assert!(data.len() >= k * stride && stride.is_multiple_of(LANES) && width.is_multiple_of(LANES));
        Self { data, k, width, stride }
    }

    fn count(&self) -> usize {
        self.stride.div_ceil(self.width)
    }

    /// Panel `p`: its first column, its width and its `k × width` values.
    fn panel(&self, p: usize) -> (usize, usize, &'a [f32]) {
        let o0 = p * self.width;
        let w = self.width.min(self.stride - o0);
        (o0, w, &self.data[o0 * self.k..][..self.k * w])
    }
}

/// Writes `rows × cols` row-major `src` transposed (`cols × rows`, rows padded to `stride`
/// with zeros) into `dst` as [`Panels`] of `width` columns.
fn transpose_to_panels(
    isa: Isa,
    src: &[f32],
    rows: usize,
    cols: usize,
    stride: usize,
    width: usize,
    dst: &mut [f32],
) {
    // One task per panel (one parallel region per call, not one per panel).
    let dst = &mut dst[..stride * cols];
    dst.par_chunks_mut(width * cols).enumerate().for_each(|(p, panel)| {
        let (o0, w) = (p * width, panel.len() / cols.max(1));
        let r = w.min(rows.saturating_sub(o0));
        for (cb, block) in panel.chunks_mut(LANES * w).enumerate() {
            transpose_block(isa, &src[(o0 * cols).min(src.len())..], r, cols, cb * LANES, block, w);
        }
    });
}

/// What each task of [`forward`] does with its rows of `y` once they are computed, while they
/// are in cache: the fused epilogues of [`mlp::Kernels::dense_forward_activation`] and
/// [`mlp::Kernels::dense_forward_activation_in_place`].
#[derive(Debug)]
pub enum Epilogue<'a> {
    /// Nothing: `y = x Wᵀ + bias`.
    None,
    /// Also write `a = f(y)` (training keeps both).
    Into(Activation, &'a mut [f32]),
    /// Replace `y` with `f(y)` (inference).
    InPlace(Activation),
}

/// `y = x Wᵀ + bias` for `batch = y.len() / outputs` rows, visiting only nonzero `x`, then
/// the `epilogue` on each task's rows.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    isa: Isa,
    inputs: usize,
    outputs: usize,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    y: &mut [f32],
    epilogue: Epilogue<'_>,
) {
    let stride = padded(outputs);
    let width = panel_width(isa);
    with_scratch(&FLOATS, inputs * stride, |wt| {
        transpose_to_panels(isa, w, outputs, inputs, stride, width, wt);
        forward_panels(isa, outputs, x, Panels::new(wt, inputs, width, stride), bias, y, epilogue)
    });
}

/// A layer's `W` (`outputs × inputs`) transposed once into the panels [`forward`] builds at
/// every call: for weights that do not change between calls (inference; see
/// [`super::Prepared`]).
#[derive(Clone, Debug)]
pub struct TransposedWeights {
    isa: Isa,
    inputs: usize,
    outputs: usize,
    /// The panels start at `start`, the first 64-byte boundary: whole-vector loads that
    /// straddle two cache lines cost about a quarter of the kernel's speed.
    buffer: Vec<f32>,
    start: usize,
}

impl TransposedWeights {
    /// Transposes `w` (`outputs × inputs`, row-major) for `isa`.
    pub fn new(isa: Isa, w: &[f32], outputs: usize, inputs: usize) -> Self {
        assert!(w.len() >= outputs * inputs, "TransposedWeights: W shorter than outputs × inputs");
        let (stride, len) = (padded(outputs), inputs * padded(outputs));
        let mut buffer = vec![0.0; len + LANES];
        let start = buffer.as_ptr().align_offset(64).min(LANES);
        transpose_to_panels(
            isa,
            w,
            outputs,
            inputs,
            stride,
            panel_width(isa),
            &mut buffer[start..start + len],
        );
        Self { isa, inputs, outputs, buffer, start }
    }

    /// `(inputs, outputs)` of the layer.
    pub fn shape(&self) -> (usize, usize) {
        (self.inputs, self.outputs)
    }

    /// [`forward`] with these weights.
    pub fn forward(&self, x: &[f32], bias: &[f32], y: &mut [f32], epilogue: Epilogue<'_>) {
        let (stride, len) = (padded(self.outputs), self.inputs * padded(self.outputs));
        let data = &self.buffer[self.start..self.start + len];
        let panels = Panels::new(data, self.inputs, panel_width(self.isa), stride);
        forward_panels(self.isa, self.outputs, x, panels, bias, y, epilogue)
    }
}

/// The forward product through `W`'s transposed panels, rows of the batch split over rayon's
/// tasks (one task runs on the calling thread), each followed by the `epilogue`.
fn forward_panels(
    isa: Isa,
    outputs: usize,
    x: &[f32],
    wt: Panels<'_>,
    bias: &[f32],
    y: &mut [f32],
    epilogue: Epilogue<'_>,
) {
    let (inputs, stride) = (wt.k, wt.stride);
    let task = |yc: &mut [f32], xc: &[f32]| {
        let rows = yc.len() / outputs;
        let entries = rows * (inputs + 1) + LANES;
        with_scratch(&INDICES, entries + 2 * rows, |ib| {
            let pad = if outputs == stride { 0 } else { rows * stride };
            with_scratch(&VALUES, entries + pad, |vb| {
                dispatch_forward(isa, xc, inputs, wt, bias, outputs, yc, ib, vb)
            })
        })
    };
    let batch = y.len() / outputs.max(1);
    let per_task =
        (batch / (4 * rayon::current_num_threads().max(1))).clamp(ROWS_PER_TASK, MAX_ROWS_PER_TASK);
    if batch <= per_task {
        // One task (a single sample's latency path): no hand-off to the pool.
        task(y, x);
        return match epilogue {
            Epilogue::None => {}
            Epilogue::Into(f, a) => activation::forward(f, outputs, y, a),
            Epilogue::InPlace(f) => activation::forward_in_place(f, outputs, y),
        };
    }
    // Where `x` is too large to be in cache already (inference over a data set, not a
    // training batch), each task gets its rows followed by the next task's (which this thread
    // most likely runs next: rayon hands each thread a contiguous range), to fetch into L2
    // while it computes (see `sparse_times_panels`).
    let ahead = if std::mem::size_of_val(x) > STREAMED_INPUT_BYTES { 2 } else { 1 };
    let rows_ahead = |i: usize| &x[i * per_task * inputs..x.len().min((i + ahead) * per_task * inputs)];
    let (ys, xs) =
        (y.par_chunks_mut(per_task * outputs), (0..batch.div_ceil(per_task)).into_par_iter().map(rows_ahead));
    match epilogue {
        Epilogue::None => ys.zip(xs).for_each(|(yc, xc)| task(yc, xc)),
        Epilogue::Into(f, a) => {
            let acts = a.par_chunks_mut(per_task * outputs);
            ys.zip(xs).zip(acts).for_each(|((yc, xc), ac)| {
                task(yc, xc);
                activation::forward(f, outputs, yc, ac);
            })
        }
        Epilogue::InPlace(f) => ys.zip(xs).for_each(|(yc, xc)| {
            task(yc, xc);
            activation::forward_in_place(f, outputs, yc);
        }),
    }
}

/// `dW = dYᵀ X` and `dbias = Σ_b dY[b]`, visiting only nonzero `x`: `dWt = Xᵀ dY` with the
/// columns of `X` as the sparse rows and `dY` as the dense operand (the forward's kernel),
/// then `dWt` is transposed into `dW`.
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
    let width = panel_width(isa);
    let batch = dy.len() / outputs.max(1);
    with_scratch(&FLOATS, inputs * stride + batch * stride, |buf| {
        let (dwt, dyp) = buf.split_at_mut(inputs * stride);
        // dY as panels (a copy with zero padding).
        for o0 in (0..stride).step_by(width) {
            let w = width.min(stride - o0);
            let n = w.min(outputs - o0);
            for (dst, src) in dyp[o0 * batch..][..batch * w].chunks_exact_mut(w).zip(dy.chunks_exact(outputs))
            {
                dst[..n].copy_from_slice(&src[o0..o0 + n]);
                dst[n..].fill(0.0);
            }
        }
        let dyp = Panels::new(dyp, batch, width, stride);
        let tasks = rayon::current_num_threads().max(1) * 2;
        let cols = inputs.div_ceil(tasks).max(1);
        dwt.par_chunks_mut(cols * stride).enumerate().for_each(|(t, out)| {
            let n = out.len() / stride;
            let entries = n * (batch + 1) + LANES;
            with_scratch(&INDICES, 2 * n + entries, |ib| {
                with_scratch(&VALUES, entries + LANES * batch, |vb| {
                    dispatch_params(isa, x, inputs, t * cols, dyp, out, ib, vb)
                })
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
    assert!(src.len() >= rows * cols && dst_stride >= rows);
    let dst_rows = cols.min(dst.len() / dst_stride.max(1));
    let dst = &mut dst[..dst_rows * dst_stride];
    dst.par_chunks_mut(LANES * dst_stride)
        .enumerate()
        .for_each(|(cb, block)| transpose_block(isa, src, rows, cols, cb * LANES, block, dst_stride));
}

/// One 16-row block of [`transpose_into`]'s `dst`: source columns `c0 ..`, zero padding
/// after the `rows` values of each.
fn transpose_block(
    isa: Isa,
    src: &[f32],
    rows: usize,
    cols: usize,
    c0: usize,
    block: &mut [f32],
    dst_stride: usize,
) {
    transpose_columns(isa, src, rows, cols, c0, block, dst_stride);
    let cn = block.len() / dst_stride;
    for c in 0..cn {
        block[c * dst_stride + rows..(c + 1) * dst_stride].fill(0.0);
    }
}

/// Columns `c0 .. c0 + cn` (`cn = block.len() / dst_stride ≤ 16`) of `src` (`rows × cols`)
/// into the rows of `block`: `block[c][r] = src[r][c0 + c]` for `r < rows`.
fn transpose_columns(
    isa: Isa,
    src: &[f32],
    rows: usize,
    cols: usize,
    c0: usize,
    block: &mut [f32],
    dst_stride: usize,
) {
    let cn = block.len() / dst_stride;
    assert!(cn <= LANES && c0 + cn <= cols && src.len() >= rows * cols && dst_stride >= rows);
    let mut r0 = 0;
    #[cfg(target_arch = "x86_64")]
    if isa.level() == Level::Avx512 {
        // SAFETY: an `Isa` token of level Avx512 exists only after detection confirmed AVX-512F;
        // the bounds it needs are checked inside.
        r0 = unsafe { x86::transpose_rows_avx512(src, rows, cols, c0, block, dst_stride) };
    }
    #[cfg(target_arch = "x86_64")]
    if isa.level() == Level::Avx2 {
        // SAFETY: an `Isa` token of level Avx2 exists only after detection confirmed AVX2; the
        // bounds it needs are checked inside.
        r0 = unsafe { x86::transpose_rows_avx2(src, rows, cols, c0, block, dst_stride) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    for r0 in (r0..rows).step_by(LANES) {
        let rn = LANES.min(rows - r0);
        for c in 0..cn {
            let d = &mut block[c * dst_stride + r0..][..rn];
            for (r, v) in d.iter_mut().enumerate() {
                *v = src[(r0 + r) * cols + c0 + c];
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch_forward(
    isa: Isa,
    x: &[f32],
    inputs: usize,
    wt: Panels,
    bias: &[f32],
    outputs: usize,
    y: &mut [f32],
    ib: &mut [u32],
    vb: &mut [f32],
) {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` token of level Avx512 exists only after detection confirmed
        // the CPU has AVX-512F, which is all `forward_avx512` requires.
        Level::Avx512 => unsafe { x86::forward_avx512(x, inputs, wt, bias, outputs, y, ib, vb) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        Level::Avx2 => unsafe { x86::forward_avx2(x, inputs, wt, bias, outputs, y, ib, vb) },
        _ => forward_rows::<Baseline4>(x, inputs, wt, bias, outputs, y, ib, vb, nonzeros_scalar),
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch_params(
    isa: Isa,
    x: &[f32],
    inputs: usize,
    j0: usize,
    dy: Panels,
    dwt: &mut [f32],
    ib: &mut [u32],
    vb: &mut [f32],
) {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` token of level Avx512 exists only after detection confirmed AVX-512F.
        Level::Avx512 => unsafe { x86::params_avx512(isa, x, inputs, j0, dy, dwt, ib, vb) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        Level::Avx2 => unsafe { x86::params_avx2(isa, x, inputs, j0, dy, dwt, ib, vb) },
        _ => params_cols::<Baseline4>(isa, x, inputs, j0, dy, dwt, ib, vb, nonzeros_scalar),
    }
}

/// Writes the indices `j` (plus `base`) of the nonzero values of `row` to the front of `idx`
/// and the values to the front of `val` (both hold at least `row.len() + LANES` entries) and
/// returns how many there are. NaN counts as nonzero, so it propagates as in the dense
/// product.
pub(crate) type Nonzeros = fn(&[f32], u32, &mut [u32], &mut [f32]) -> usize;

/// Branch-free compaction (a nonzero test per value, no unpredictable jumps).
#[inline(always)]
fn nonzeros_scalar(row: &[f32], base: u32, idx: &mut [u32], val: &mut [f32]) -> usize {
    let mut n = 0;
    for (j, &v) in row.iter().enumerate() {
        idx[n] = base + j as u32;
        val[n] = v;
        n += (v != 0.0) as usize;
    }
    n
}

/// Inputs larger than this (bytes) are taken to come from memory rather than cache, so the
/// forward fetches each next task's rows ahead: 2 MiB, one core's L2 on the development
/// machine. Measured (`f32_inference/prepared/10000`, three alternating runs each): 1.19-1.23
/// M samples/s without, 1.29-1.30 M with.
const STREAMED_INPUT_BYTES: usize = 2 << 20;

/// Rows of `x` ahead of the one being compacted whose cache lines are requested early: rows
/// of MNIST (3 KiB) cross 4 KiB pages, where the hardware's stream prefetcher stops.
const PREFETCH_ROWS: usize = 2;

/// Ends every row of a [`SparseRows`]: larger than any index, so the kernel's scan of a
/// row stops there without a separate length test.
const END: u32 = u32::MAX;

/// A sparse matrix by rows: row `r`'s nonzero entries (column index and value, columns
/// increasing) start at `start[r]` in `idx` and `val` and are followed by [`END`]. Built
/// only by [`SparseRows::from_rows`] and [`SparseRows::from_columns`], which guarantee that
/// every index is below `k` or is `END` and that every row ends with `END`.
struct SparseRows<'a> {
    start: &'a [u32],
    idx: &'a [u32],
    val: &'a [f32],
    k: usize,
}

impl<'a> SparseRows<'a> {
    /// The rows of `x` (`rows × k`). `idx` and `val` hold at least `rows · (k + 1) + LANES`
    /// entries, `start` at least `rows`.
    fn from_rows(
        x: &[f32],
        k: usize,
        start: &'a mut [u32],
        idx: &'a mut [u32],
        val: &'a mut [f32],
        nonzeros: Nonzeros,
    ) -> Self {
        let rows = x.len() / k.max(1);
        let need = rows * (k + 1) + LANES;
        assert!(idx.len() >= need && val.len() >= need && start.len() >= rows);
        let mut e = 0;
        for (r, xr) in x.chunks_exact(k.max(1)).enumerate() {
            prefetch(Cache::L1, x, (r + PREFETCH_ROWS) * k, k);
            start[r] = e as u32;
            e += nonzeros(&xr[..k], 0, &mut idx[e..], &mut val[e..]);
            idx[e] = END;
            e += 1;
        }
        Self { start: &start[..rows], idx, val, k }
    }

    /// Columns `j0 .. j0 + cols` of `x` (`batch × inputs`) as rows (`Xᵀ`, `k = batch`):
    /// 16 columns at a time are transposed into `strip` (`16 · batch` values), then
    /// compacted like rows. `idx` and `val` hold at least `cols · (batch + 1) + LANES`
    /// entries, `start` at least `cols`.
    #[allow(clippy::too_many_arguments)]
    fn from_columns(
        isa: Isa,
        x: &[f32],
        inputs: usize,
        j0: usize,
        cols: usize,
        start: &'a mut [u32],
        idx: &'a mut [u32],
        val: &'a mut [f32],
        strip: &mut [f32],
        nonzeros: Nonzeros,
    ) -> Self {
        let batch = x.len() / inputs.max(1);
        let need = cols * (batch + 1) + LANES;
        assert!(j0 + cols <= inputs && idx.len() >= need && val.len() >= need && start.len() >= cols);
        let mut e = 0;
        for g0 in (0..cols).step_by(LANES) {
            let cn = LANES.min(cols - g0);
            let strip = &mut strip[..cn * batch];
            transpose_columns(isa, &x[..batch * inputs], batch, inputs, j0 + g0, strip, batch);
            for (c, column) in strip.chunks_exact(batch.max(1)).enumerate() {
                start[g0 + c] = e as u32;
                e += nonzeros(&column[..batch], 0, &mut idx[e..], &mut val[e..]);
                idx[e] = END;
                e += 1;
            }
        }
        Self { start: &start[..cols], idx, val, k: batch }
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

/// Bytes of a panel's rows worked on at a time: they stay in the L1 data cache (48 KiB on
/// recent x86 cores, 32 KiB on older ones) while every sparse row visits them, next to the
/// accumulators' loads and stores.
const L1_BYTES: usize = 32 * 1024;

/// Rows of a `width`-wide panel that fit in [`L1_BYTES`] (at least one).
fn rows_in_l1(width: usize) -> usize {
    (L1_BYTES / (width * 4).max(1)).max(1)
}

/// `out[r][..] += Σ_e a.val[e] · b[a.idx[e]][..]` over the entries `e` of each row `r` of
/// `a`: for each panel of `b`, for each block of its rows that fits in L1, each row adds its
/// entries in that block (its cursor in `cur` moves on from block to block). `out` has row
/// stride `ostride ≥ b.stride`. `first` says whether the first block adds to `out` or
/// stores its sums (plus a bias row) there.
///
/// `ahead` (the rows of `x` the next task will read; may be empty) is requested into L2 a
/// few cache lines per row visited, so that memory works while the FMAs do: the batched
/// forward over MNIST streams 31 MB of input and otherwise waits on it in the compaction.
#[inline(always)]
fn sparse_times_panels<S: Simd>(
    a: &SparseRows,
    b: Panels,
    out: &mut [f32],
    ostride: usize,
    cur: &mut [u32],
    first: First<'_>,
    ahead: &[f32],
) {
    let rows = a.start.len();
    assert!(a.k == b.k && ostride >= b.stride && out.len() >= rows * ostride && cur.len() >= rows);
    let visits = b.count() * b.k.div_ceil(rows_in_l1(b.width)).max(1) * rows;
    let per_visit = (ahead.len().div_ceil(16)).div_ceil(visits.max(1)) * 16;
    let mut fetched = 0;
    for p in 0..b.count() {
        let (o0, w, panel) = b.panel(p);
        cur[..rows].copy_from_slice(a.start);
        let kb = rows_in_l1(w);
        with_chunks!(w / S::LANES, C => {
            for k0 in (0..b.k).step_by(kb) {
                let kend = (k0 + kb).min(b.k) as u32;
                for (r, cur) in cur[..rows].iter_mut().enumerate() {
                    if fetched < ahead.len() {
                        prefetch(Cache::L2, ahead, fetched, per_visit);
                        fetched += per_visit;
                    }
                    let out = &mut out[r * ostride + o0..][..w];
                    let start = match first {
                        First::Add => None,
                        First::Store => Some(None),
                        First::StoreWithBias(bias) => Some(Some(&bias[o0..o0 + w])),
                    };
                    let start = if k0 == 0 { start } else { None };
                    *cur = panel_rows::<S, C>(a, *cur as usize, kend, panel, out, start) as u32;
                }
            }
        });
    }
}

/// What the first block of `k` does with `out` in [`sparse_times_panels`].
#[derive(Clone, Copy)]
enum First<'a> {
    /// Adds to `out` (which holds a starting value).
    Add,
    /// Stores the sum (`out` need not be initialized).
    Store,
    /// Stores the sum plus this row of `ostride` values (the forward's bias): no pass that
    /// first fills every output row with the bias.
    StoreWithBias(&'a [f32]),
}

/// Adds the entries of one sparse row from `e` up to the first index `≥ kend` times their
/// panel rows to `out` (`C` vectors), or stores the sum there (even an empty one) with
/// `start = Some(base)`, plus the `base` row when given; returns where it stopped.
#[inline(always)]
fn panel_rows<S: Simd, const C: usize>(
    a: &SparseRows,
    e: usize,
    kend: u32,
    panel: &[f32],
    out: &mut [f32],
    start: Option<Option<&[f32]>>,
) -> usize {
    assert!(out.len() == C * S::LANES && panel.len() == a.k * C * S::LANES && e < a.idx.len());
    assert!(start.flatten().is_none_or(|base| base.len() == C * S::LANES));
    // SAFETY: the caller's Isa guarantees the instruction set. Entries from `e` on are read
    // up to the row's `END` (`END ≥ kend` stops the loop), which lies inside `idx` and `val`
    // ([`SparseRows`]' invariant; `e` starts at a row start or where the last call stopped,
    // which is at most that `END`). Every other index `j` is below `kend ≤ k`, so the panel
    // row `j · C·LANES .. + C·LANES` is inside `panel` (len k · C·LANES, asserted); `out`
    // and a `base` row hold C·LANES values (asserted).
    unsafe {
        if *a.idx.get_unchecked(e) >= kend && start.is_none() {
            return e;
        }
        let mut e = e;
        // Start from zero (not from `out`): the FMA chains need not wait for `out`'s load.
        let mut acc = [S::zero(); C];
        loop {
            let j = *a.idx.get_unchecked(e);
            if j >= kend {
                break;
            }
            let v = S::splat(*a.val.get_unchecked(e));
            let row = panel.as_ptr().add(j as usize * C * S::LANES);
            for (c, acc) in acc.iter_mut().enumerate() {
                *acc = S::madd(S::load(row.add(c * S::LANES)), v, *acc);
            }
            e += 1;
        }
        for (c, acc) in acc.iter().enumerate() {
            let p = out.as_mut_ptr().add(c * S::LANES);
            let sum = match start {
                None => S::add(S::load(p), *acc),
                Some(None) => *acc,
                // `bias` holds C·LANES values (the caller slices one panel's width).
                Some(Some(bias)) => S::add(S::load(bias.as_ptr().add(c * S::LANES)), *acc),
            };
            S::store(p, sum);
        }
        e
    }
}

/// The forward product for the rows of `x`: `y = bias`, then `y += X Wᵀ` with `X` as
/// [`SparseRows`] (built once) and `Wt` as panels. A ragged `outputs` goes through padded rows
/// at the end of `vb`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_rows<S: Simd>(
    x: &[f32],
    inputs: usize,
    wt: Panels,
    bias: &[f32],
    outputs: usize,
    y: &mut [f32],
    ib: &mut [u32],
    vb: &mut [f32],
    nonzeros: Nonzeros,
) {
    let rows = y.len() / outputs;
    let stride = wt.stride;
    let entries = rows * (inputs + 1) + LANES;
    let (start, rest) = ib.split_at_mut(rows);
    let (cur, idx) = rest.split_at_mut(rows);
    let (val, pad) = vb.split_at_mut(entries);
    let (x, ahead) = x.split_at(rows * inputs);
    let a = SparseRows::from_rows(x, inputs, start, &mut idx[..entries], val, nonzeros);
    if outputs == stride {
        sparse_times_panels::<S>(&a, wt, y, outputs, cur, First::StoreWithBias(&bias[..outputs]), ahead);
    } else {
        let pad = &mut pad[..rows * stride];
        for yr in pad.chunks_exact_mut(stride) {
            yr[..outputs].copy_from_slice(&bias[..outputs]);
            yr[outputs..].fill(0.0);
        }
        sparse_times_panels::<S>(&a, wt, pad, stride, cur, First::Add, ahead);
        for (yr, pr) in y.chunks_exact_mut(outputs).zip(pad.chunks_exact(stride)) {
            yr.copy_from_slice(&pr[..outputs]);
        }
    }
}

/// Rows `j0 ..` of `dWt` (as many as `dwt` holds, row stride `dy.stride`):
/// `dWt[j] = Σ_b x[b][j] · dY[b]`, with the columns of `x` as [`SparseRows`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn params_cols<S: Simd>(
    isa: Isa,
    x: &[f32],
    inputs: usize,
    j0: usize,
    dy: Panels,
    dwt: &mut [f32],
    ib: &mut [u32],
    vb: &mut [f32],
    nonzeros: Nonzeros,
) {
    let cols = dwt.len() / dy.stride;
    let entries = cols * (dy.k + 1) + LANES;
    let (start, rest) = ib.split_at_mut(cols);
    let (cur, idx) = rest.split_at_mut(cols);
    let (val, strip) = vb.split_at_mut(entries);
    let x = &x[..dy.k * inputs];
    let a =
        SparseRows::from_columns(isa, x, inputs, j0, cols, start, &mut idx[..entries], val, strip, nonzeros);
    sparse_times_panels::<S>(&a, dy, dwt, dy.stride, cur, First::Store, &[]);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::x86::{Avx2, Avx512};
    use super::{forward_rows, nonzeros_scalar, params_cols, Isa, Panels, LANES};

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

    /// Transposes the 8 × 8 tile held in `r` in registers (`r[k]` then holds column `k`).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose8(r: &mut [__m256; 8]) {
        let mut t = [_mm256_setzero_ps(); 8];
        for i in 0..4 {
            t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [_mm256_setzero_ps(); 8];
        for h in [0, 4] {
            u[h] = _mm256_shuffle_ps::<0x44>(t[h], t[h + 2]);
            u[h + 1] = _mm256_shuffle_ps::<0xee>(t[h], t[h + 2]);
            u[h + 2] = _mm256_shuffle_ps::<0x44>(t[h + 1], t[h + 3]);
            u[h + 3] = _mm256_shuffle_ps::<0xee>(t[h + 1], t[h + 3]);
        }
        for k in 0..4 {
            r[k] = _mm256_permute2f128_ps::<0x20>(u[k], u[k + 4]);
            r[k + 4] = _mm256_permute2f128_ps::<0x31>(u[k], u[k + 4]);
        }
    }

    /// [`transpose_rows_avx512`] with AVX2: 8 × 8 tiles (two per 16 columns), masked row
    /// loads for fewer than 8 columns. Returns the first source row it did not do.
    #[target_feature(enable = "avx2")]
    pub(super) fn transpose_rows_avx2(
        src: &[f32],
        rows: usize,
        cols: usize,
        c0: usize,
        block: &mut [f32],
        dst_stride: usize,
    ) -> usize {
        let cn = block.len() / dst_stride;
        let full = rows / 8 * 8;
        assert!(cn <= LANES && c0 + cn <= cols && src.len() >= rows * cols && dst_stride >= rows);
        for h in (0..cn).step_by(8) {
            let hn = 8.min(cn - h);
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(hn as i32), lane);
            for r0 in (0..full).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, v) in r.iter_mut().enumerate() {
                    // SAFETY: the masked load reads src[(r0 + i) · cols + c0 + h + k] for
                    // k < hn only: r0 + i < rows and c0 + h + k < c0 + cn ≤ cols, so inside
                    // `src` (asserted).
                    *v = unsafe { _mm256_maskload_ps(src.as_ptr().add((r0 + i) * cols + c0 + h), mask) };
                }
                transpose8(&mut r);
                for (k, v) in r.iter().take(hn).enumerate() {
                    // SAFETY: writes block[(h + k) · dst_stride + r0 .. + 8]: h + k < cn and
                    // r0 + 8 ≤ rows ≤ dst_stride, so inside `block`.
                    unsafe { _mm256_storeu_ps(block.as_mut_ptr().add((h + k) * dst_stride + r0), *v) };
                }
            }
        }
        full
    }

    /// [`super::nonzeros_scalar`] with AVX-512: a compare mask and two compresses (indices,
    /// values) per 16 values.
    #[target_feature(enable = "avx512f")]
    fn nonzeros_avx512(row: &[f32], base: u32, idx: &mut [u32], val: &mut [f32]) -> usize {
        assert!(idx.len() >= row.len() + LANES && val.len() >= row.len() + LANES, "scratch too short");
        let mut n = 0;
        let mut iota = _mm512_add_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(base as i32),
        );
        let step = _mm512_set1_epi32(LANES as i32);
        let zero = _mm512_setzero_ps();
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            // SAFETY: `c` holds 16 f32s; the stores write 16 entries at `idx[n..n + 16]` and
            // `val[n..n + 16]`, in bounds because n ≤ the values seen so far ≤
            // row.len() - 16 and both hold ≥ row.len() + 16 (asserted above).
            unsafe {
                let v = _mm512_loadu_ps(c.as_ptr());
                let m = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
                _mm512_storeu_si512(idx.as_mut_ptr().add(n).cast(), _mm512_maskz_compress_epi32(m, iota));
                _mm512_storeu_ps(val.as_mut_ptr().add(n), _mm512_maskz_compress_ps(m, v));
                n += m.count_ones() as usize;
            }
            iota = _mm512_add_epi32(iota, step);
        }
        let done = row.len() - chunks.remainder().len();
        n + nonzeros_scalar(chunks.remainder(), base + done as u32, &mut idx[n..], &mut val[n..])
    }

    fn nonzeros_avx512_safe(row: &[f32], base: u32, idx: &mut [u32], val: &mut [f32]) -> usize {
        // SAFETY: only reached from `forward_avx512`/`params_avx512`, whose callers
        // guarantee AVX-512F.
        unsafe { nonzeros_avx512(row, base, idx, val) }
    }

    /// [`super::forward_rows`] compiled for AVX-512.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn forward_avx512(
        x: &[f32],
        inputs: usize,
        wt: Panels,
        bias: &[f32],
        outputs: usize,
        y: &mut [f32],
        ib: &mut [u32],
        vb: &mut [f32],
    ) {
        forward_rows::<Avx512>(x, inputs, wt, bias, outputs, y, ib, vb, nonzeros_avx512_safe)
    }

    /// [`super::forward_rows`] compiled for AVX2 + FMA.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_avx2(
        x: &[f32],
        inputs: usize,
        wt: Panels,
        bias: &[f32],
        outputs: usize,
        y: &mut [f32],
        ib: &mut [u32],
        vb: &mut [f32],
    ) {
        forward_rows::<Avx2>(x, inputs, wt, bias, outputs, y, ib, vb, nonzeros_scalar)
    }

    /// [`super::params_cols`] compiled for AVX-512.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn params_avx512(
        isa: Isa,
        x: &[f32],
        inputs: usize,
        j0: usize,
        dy: Panels,
        dwt: &mut [f32],
        ib: &mut [u32],
        vb: &mut [f32],
    ) {
        params_cols::<Avx512>(isa, x, inputs, j0, dy, dwt, ib, vb, nonzeros_avx512_safe)
    }

    /// [`super::params_cols`] compiled for AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn params_avx2(
        isa: Isa,
        x: &[f32],
        inputs: usize,
        j0: usize,
        dy: Panels,
        dwt: &mut [f32],
        ib: &mut [u32],
        vb: &mut [f32],
    ) {
        params_cols::<Avx2>(isa, x, inputs, j0, dy, dwt, ib, vb, nonzeros_scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_scalar_on_ragged_shapes() {
        for isa in Isa::available() {
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
