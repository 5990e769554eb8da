//! The AVX-512 VNNI paths (`avx512f`, `avx512bw`, `avx512vnni`): the packed sparse/dense
//! layer kernels, the GEMV kernel for small batches, the vectorized requantization epilogue,
//! row sums, and the register-tile micro kernel of [`Int8Kernels::dense_i8`](mlp::int8::Int8Kernels).
//!
//! Every product is `Σ_j u_j · w_j` with `u = x ^ 0x80 = x + 128` (u8) and `w` (i8), by
//! `vpdpbusd`; the true sum `Σ_j (x_j + off) · w_j` is that plus `(off - 128) · Σ_j w_j`, a
//! per-output constant folded into the bias (nothing to add when `off == 128`). A group of
//! inputs whose `u` are all 0 (`x == -128`: blank pixels, ReLU zeros) adds nothing, so the
//! kernels skip them and stay bit-identical.

use std::arch::x86_64::*;

use mlp::int8::Int8Layer;

use super::amx::{Amx, Tiles};
use super::{Clamp, Line, ParamBlock};

/// 16-lane vectors of outputs per chunk of the packed layout (64 outputs): one chunk's
/// weights for 784 inputs are 50 KB, about L1, and stay there while a block of samples
/// streams through them.
pub(super) const NV: usize = 4;

/// Samples prepared (biased, their active quads listed) at a time in the packed path.
pub(super) const BLOCK: usize = 32;

/// A block of samples whose average fraction of active quads is above this runs the dense
/// kernel (several samples per weight load, every quad); below it, the sparse one.
pub(super) const DENSE_ABOVE: f64 = 0.80;

pub(super) use crate::isa::Vnni;

/// The packed ("VNNI B") layout of a weight matrix: per chunk of `NV` output vectors, per
/// input quad `k`, per output vector `v`: one line of 16 dwords, the 4 weights of inputs
/// `4k .. 4k + 4` of the vector's 16 outputs (zero past the inputs and the outputs).
#[derive(Clone, Copy, Debug)]
pub(super) struct Packed {
    pub inputs: usize,
    pub outputs: usize,
    /// Input quads rounded up to 16 (whole 64-byte lines of `u`).
    pub nqp: usize,
    /// Output vectors (`ceil(outputs / 16)`).
    pub nvec: usize,
}

impl Packed {
    pub(super) fn new(inputs: usize, outputs: usize) -> Self {
        Packed { inputs, outputs, nqp: inputs.div_ceil(64) * 16, nvec: outputs.div_ceil(16) }
    }

    /// Lines of the packed weights.
    pub(super) fn lines(&self) -> usize {
        self.nqp * self.nvec
    }

    /// Output vectors in chunk `c`.
    fn nvc(&self, c: usize) -> usize {
        (self.nvec - c * NV).min(NV)
    }

    /// First line of chunk `c` (earlier chunks are full).
    fn chunk_base(&self, c: usize) -> usize {
        c * self.nqp * NV
    }

    /// Output vector `gv`: its line for quad 0, and the lines between consecutive quads.
    fn vector(&self, gv: usize) -> (usize, usize) {
        let (c, v) = (gv / NV, gv % NV);
        (self.chunk_base(c) + v, self.nvc(c))
    }
}

/// Packs row-major `w` (`outputs × inputs`) into `out` (resized to `p.lines()`).
pub(super) fn pack(_: Vnni, p: &Packed, w: &[i8], out: &mut Vec<Line>) {
    assert!(w.len() >= p.outputs * p.inputs);
    if out.len() < p.lines() {
        out.resize(p.lines(), Line([0; 16]));
    }
    // SAFETY: the `Vnni` token exists only after run-time detection of avx512f/bw/vnni.
    unsafe { pack_impl(p, w, &mut out[..p.lines()]) }
}

/// Per 16 outputs × 64 inputs: 16 row loads (masked at the ragged edges, zero past them), a
/// 16 × 16 dword transpose, 16 line stores. Writes every line of `out`.
#[target_feature(enable = "avx512f,avx512bw")]
fn pack_impl(p: &Packed, w: &[i8], out: &mut [Line]) {
    for gv in 0..p.nvec {
        let (base, stride) = p.vector(gv);
        let nr = (p.outputs - gv * 16).min(16);
        for kb in 0..p.nqp / 16 {
            let j = kb * 64;
            let m = byte_mask(p.inputs - j);
            let mut r = [_mm512_setzero_si512(); 16];
            for (i, v) in r.iter_mut().enumerate().take(nr) {
                // SAFETY: row gv·16 + i < outputs, lanes j .. min(j + 64, inputs) of it, all
                // inside `w` (outputs × inputs, asserted by the caller); masked loads suppress
                // faults on disabled lanes.
                *v = unsafe { _mm512_maskz_loadu_epi8(m, w.as_ptr().add((gv * 16 + i) * p.inputs + j)) };
            }
            // Rows a, b, c, d = 4g .. 4g + 4: per 128-bit lane B, vq[g][e] holds dword 4B + e
            // of the four rows.
            let mut vq = [[_mm512_setzero_si512(); 4]; 4];
            for (g, vg) in vq.iter_mut().enumerate() {
                let [a, b, c, d] = [r[4 * g], r[4 * g + 1], r[4 * g + 2], r[4 * g + 3]];
                let (ab_lo, ab_hi) = (_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
                let (cd_lo, cd_hi) = (_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
                vg[0] = _mm512_unpacklo_epi64(ab_lo, cd_lo);
                vg[1] = _mm512_unpackhi_epi64(ab_lo, cd_lo);
                vg[2] = _mm512_unpacklo_epi64(ab_hi, cd_hi);
                vg[3] = _mm512_unpackhi_epi64(ab_hi, cd_hi);
            }
            for e in 0..4 {
                let [v0, v1, v2, v3] = [vq[0][e], vq[1][e], vq[2][e], vq[3][e]];
                let x0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(v0, v1);
                let x1 = _mm512_shuffle_i32x4::<0b11_10_11_10>(v0, v1);
                let x2 = _mm512_shuffle_i32x4::<0b01_00_01_00>(v2, v3);
                let x3 = _mm512_shuffle_i32x4::<0b11_10_11_10>(v2, v3);
                let lines = [
                    _mm512_shuffle_i32x4::<0b10_00_10_00>(x0, x2),
                    _mm512_shuffle_i32x4::<0b11_01_11_01>(x0, x2),
                    _mm512_shuffle_i32x4::<0b10_00_10_00>(x1, x3),
                    _mm512_shuffle_i32x4::<0b11_01_11_01>(x1, x3),
                ];
                for (bl, &v) in lines.iter().enumerate() {
                    // Quad k = 16kb + 4B + e of this vector's 16 outputs.
                    let line = &mut out[base + (kb * 16 + 4 * bl + e) * stride];
                    // SAFETY: a line is 64 bytes, aligned to 64 (bounds-checked index).
                    unsafe { _mm512_store_si512(line.0.as_mut_ptr().cast(), v) };
                }
            }
        }
    }
}

/// Broadcast clamp constants of a layer.
#[derive(Clone, Copy)]
struct ClampV {
    lo: __m512i,
    hi: __m512i,
    zp: __m512i,
}

#[target_feature(enable = "avx512f")]
fn clamp_v(c: &Clamp) -> ClampV {
    ClampV {
        lo: _mm512_set1_epi32(c.lo_minus_zp),
        hi: _mm512_set1_epi32(c.hi_minus_zp),
        zp: _mm512_set1_epi32(c.zp),
    }
}

#[target_feature(enable = "avx512f")]
fn load_params(a: &[i32; 16]) -> __m512i {
    // SAFETY: `a` is 16 i32s (64 bytes); loadu has no alignment requirement.
    unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
}

/// `fixed::requantize(acc + bias, multiplier, shift, zp, lo, hi)` on 16 lanes, bit for bit:
///
/// - `x = (acc + bias) << left` (wrapping);
/// - SRDHM: `(x · m + 2^30) >> 31` in 64 bits (floor), which equals gemmlowp's
///   `(x · m + nudge) / 2^31` truncated (for `x · m < 0`, `trunc((v + 1 - 2^30) / 2^31) =
///   floor((v + 2^30) / 2^31)`), and `i32::MAX` for `x = m = i32::MIN`;
/// - rounding divide by `2^right`: `(h >> right) + (h & mask > mask / 2 + (h < 0))`;
/// - `clamp(h, lo - zp, hi - zp) + zp`, equal to `clamp(h.saturating_add(zp), lo, hi)`.
#[target_feature(enable = "avx512f")]
fn requant16(acc: __m512i, p: &ParamBlock, c: &ClampV) -> __m512i {
    let x = _mm512_sllv_epi32(_mm512_add_epi32(acc, load_params(&p.bias)), load_params(&p.left));
    let m = load_params(&p.mult);
    let round = _mm512_set1_epi64(1 << 30);
    let even = _mm512_add_epi64(_mm512_mul_epi32(x, m), round);
    let odd =
        _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64::<32>(x), _mm512_srli_epi64::<32>(m)), round);
    // Bits 31..62 of each product: in the low dword of `even >> 31`, the high dword of `odd << 1`.
    let h = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<31>(even), _mm512_slli_epi64::<1>(odd));
    let min = _mm512_set1_epi32(i32::MIN);
    let both_min = _mm512_cmpeq_epi32_mask(x, min) & _mm512_cmpeq_epi32_mask(m, min);
    let h = _mm512_mask_mov_epi32(h, both_min, _mm512_set1_epi32(i32::MAX));
    let rem = _mm512_and_si512(h, load_params(&p.mask));
    let threshold = _mm512_add_epi32(load_params(&p.half), _mm512_srli_epi32::<31>(h));
    let q = _mm512_srav_epi32(h, load_params(&p.right));
    let up = _mm512_cmpgt_epi32_mask(rem, threshold);
    let q = _mm512_mask_sub_epi32(q, up, q, _mm512_set1_epi32(-1));
    _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, c.lo), c.hi), c.zp)
}

/// Stores the low bytes of the first `n` (1..=16) lanes of `q` to `y[..n]`.
#[target_feature(enable = "avx512f")]
fn store_i8(q: __m512i, y: &mut [i8], n: usize) {
    assert!(n <= 16 && n <= y.len());
    let mask: __mmask16 = (u32::MAX >> (32 - n)) as u16;
    // SAFETY: the mask enables lanes 0..n only, all inside `y` (asserted); masked stores do
    // not touch disabled lanes.
    unsafe { _mm512_mask_cvtepi32_storeu_epi8(y.as_mut_ptr().cast(), mask, q) }
}

/// 16 vectors to one: lane `r` of the result is the sum of the 16 lanes of `a[r]` (wrapping).
#[target_feature(enable = "avx512f")]
fn reduce16(a: &[__m512i; 16]) -> __m512i {
    let mut r = [_mm512_setzero_si512(); 8];
    for (i, o) in r.iter_mut().enumerate() {
        let (x, y) = (a[2 * i], a[2 * i + 1]);
        *o = _mm512_add_epi32(_mm512_unpacklo_epi32(x, y), _mm512_unpackhi_epi32(x, y));
    }
    let mut s = [_mm512_setzero_si512(); 4];
    for (i, o) in s.iter_mut().enumerate() {
        let (x, y) = (r[2 * i], r[2 * i + 1]);
        *o = _mm512_add_epi32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
    }
    // Each s[i] holds, per 128-bit lane, partial sums of outputs 4i .. 4i + 4.
    let t0 = _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0b10_00_10_00>(s[0], s[1]),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(s[0], s[1]),
    );
    let t1 = _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0b10_00_10_00>(s[2], s[3]),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(s[2], s[3]),
    );
    _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0b10_00_10_00>(t0, t1),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(t0, t1),
    )
}

/// Lanes `0..len` of a 64-lane byte mask (`len` in 1..=64).
fn byte_mask(len: usize) -> __mmask64 {
    u64::MAX >> (64 - len.clamp(1, 64))
}

/// Biases one row of `x` into `u` (`inputs.div_ceil(64)` lines, zero past the inputs), lists
/// the indices of its 64-byte lines that are not all zero in `active` (as long as `u`), and
/// returns how many there are.
#[target_feature(enable = "avx512f,avx512bw")]
fn bias_row(x: &[i8], u: &mut [Line], active: &mut [u32]) -> usize {
    let inputs = x.len();
    assert!(u.len() == inputs.div_ceil(64) && active.len() == u.len());
    let flip = _mm512_set1_epi8(i8::MIN);
    let mut n = 0;
    for (c, line) in u.iter_mut().enumerate() {
        let j = c * 64;
        let m = byte_mask(inputs - j);
        // SAFETY: the mask enables lanes j .. min(j + 64, inputs) only, inside `x`; masked
        // loads suppress faults on disabled lanes.
        let xv = unsafe { _mm512_maskz_loadu_epi8(m, x.as_ptr().add(j)) };
        let uv = _mm512_maskz_mov_epi8(m, _mm512_xor_si512(xv, flip));
        // SAFETY: a line is 64 bytes, aligned to 64.
        unsafe { _mm512_store_si512(line.0.as_mut_ptr().cast(), uv) };
        active[n] = c as u32;
        n += (_mm512_test_epi8_mask(uv, uv) != 0) as usize;
    }
    n
}

/// Raw `Σ_j u_j · w[r0 + r][j]` for `r < nr` (≤ 16) over the listed 64-byte lines of `u`, as
/// the lanes of one vector (lanes `nr..` are 0).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn gemv16(u: &[Line], lines: &[u32], w: &[i8], inputs: usize, r0: usize, nr: usize) -> __m512i {
    assert!(nr <= 16 && w.len() >= (r0 + nr) * inputs);
    let mut acc = [_mm512_setzero_si512(); 16];
    for &c in lines {
        let j = c as usize * 64;
        assert!(j < inputs);
        let m = byte_mask(inputs - j);
        // SAFETY: `u[c]` is a 64-byte aligned line (bounds-checked index).
        let uv = unsafe { _mm512_load_si512(u[c as usize].0.as_ptr().cast()) };
        // All 16 rows (a constant trip count keeps the accumulators in registers); rows
        // r >= nr load nothing (an all-zero mask) and add 0.
        for (r, a) in acc.iter_mut().enumerate() {
            let mr = if r < nr { m } else { 0 };
            // SAFETY: for r < nr, row r0 + r lies in `w` (asserted) and the mask enables lanes
            // j .. min(j + 64, inputs) of it only; for r >= nr the mask is empty and nothing
            // is read. Masked loads suppress faults on disabled lanes; the address is formed
            // with wrapping arithmetic, never dereferenced outside enabled lanes.
            let wv = unsafe { _mm512_maskz_loadu_epi8(mr, w.as_ptr().wrapping_add((r0 + r) * inputs + j)) };
            *a = _mm512_dpbusd_epi32(*a, uv, wv);
        }
    }
    reduce16(&acc)
}

/// `Σ_j w[o][j]` for every output row (wrapping), into `out[..outputs]`.
pub(super) fn row_sums(_: Vnni, w: &[i8], inputs: usize, out: &mut [i32]) {
    // SAFETY: the `Vnni` token exists only after run-time detection of avx512f/bw/vnni.
    unsafe { row_sums_impl(w, inputs, out) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn row_sums_impl(w: &[i8], inputs: usize, out: &mut [i32]) {
    let n = inputs.div_ceil(64);
    let ones = vec![Line([0x0101_0101; 16]); n];
    let lines: Vec<u32> = (0..n as u32).collect();
    let outputs = out.len();
    for (g, o) in out.chunks_mut(16).enumerate() {
        let v = gemv16(&ones, &lines, w, inputs, g * 16, o.len());
        let mut tmp = [0i32; 16];
        // SAFETY: `tmp` is 16 i32s; storeu has no alignment requirement.
        unsafe { _mm512_storeu_si512(tmp.as_mut_ptr().cast(), v) };
        o.copy_from_slice(&tmp[..o.len()]);
    }
    debug_assert_eq!(out.len(), outputs);
}

/// What one layer call needs: geometry, requantization constants, the table.
#[derive(Clone, Copy)]
pub(super) struct Layer<'a> {
    pub inputs: usize,
    pub outputs: usize,
    pub params: &'a [ParamBlock],
    pub clamp: Clamp,
    pub table: Option<&'a [i8; 256]>,
}

fn apply_table(y: &mut [i8], table: Option<&[i8; 256]>) {
    if let Some(t) = table {
        for v in y {
            *v = t[(*v as u8 ^ 0x80) as usize];
        }
    }
}

/// Small batches: one sample at a time against the row-major weights, skipping all-zero
/// 64-byte lines of `u`, with the requantization epilogue on each group of 16 outputs.
pub(super) fn gemv_layer(_: Vnni, l: &Layer<'_>, x: &[i8], w: &[i8], y: &mut [i8]) {
    // SAFETY: the `Vnni` token exists only after run-time detection of avx512f/bw/vnni.
    unsafe { gemv_layer_impl(l, x, w, y) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn gemv_layer_impl(l: &Layer<'_>, x: &[i8], w: &[i8], y: &mut [i8]) {
    // Up to 1,024 inputs on the stack, wider rows on the heap.
    let lines = l.inputs.div_ceil(64);
    let (mut stack_u, mut stack_a) = ([Line([0; 16]); 16], [0u32; 16]);
    let (mut heap_u, mut heap_a) = (Vec::new(), Vec::new());
    let (u, active): (&mut [Line], &mut [u32]) = if lines <= 16 {
        (&mut stack_u[..lines], &mut stack_a[..lines])
    } else {
        heap_u.resize(lines, Line([0; 16]));
        heap_a.resize(lines, 0);
        (&mut heap_u, &mut heap_a)
    };
    let cv = clamp_v(&l.clamp);
    assert!(l.params.len() * 16 >= l.outputs);
    for (xr, yr) in x.chunks_exact(l.inputs).zip(y.chunks_exact_mut(l.outputs)) {
        let n = bias_row(xr, u, active);
        for (g, (yo, p)) in yr.chunks_mut(16).zip(l.params).enumerate() {
            let v = gemv16(u, &active[..n], w, l.inputs, g * 16, yo.len());
            store_i8(requant16(v, p, &cv), yo, yo.len());
        }
        apply_table(yr, l.table);
    }
}

/// The layer's requantization constants (see [`ParamBlock`]) into `out`, 16 outputs per
/// vector, the bias corrected by `factor · sums[o]` when given (wrapping); returns the clamp.
pub(super) fn build_params(
    _: Vnni,
    layer: &Int8Layer<'_>,
    corr: Option<(&[i32], i32)>,
    out: &mut Vec<ParamBlock>,
) -> Clamp {
    let n = layer.outputs();
    let (b, m, s) = (layer.bias().as_bytes(), layer.multipliers().as_bytes(), layer.shifts().as_bytes());
    assert!(
        b.len() >= 4 * n && m.len() >= 4 * n && s.len() >= 4 * n && corr.is_none_or(|(c, _)| c.len() >= n)
    );
    out.clear();
    out.resize(n.div_ceil(16), ParamBlock::default());
    // SAFETY: the `Vnni` token exists only after run-time detection of avx512f/bw/vnni; the
    // assertion gives the lengths `build_params_impl` relies on.
    unsafe { build_params_impl(n, [b, m, s], corr, out) };
    super::clamp_of(layer)
}

/// Callers guarantee `raw[i].len() >= 4n`, `corr` sums at least `n` long, `out` `ceil(n / 16)`.
#[target_feature(enable = "avx512f")]
fn build_params_impl(n: usize, raw: [&[u8]; 3], corr: Option<(&[i32], i32)>, out: &mut [ParamBlock]) {
    let one = _mm512_set1_epi32(1);
    for (g, p) in out.iter_mut().enumerate() {
        let lanes = (n - 16 * g).min(16);
        let k: __mmask16 = (u32::MAX >> (32 - lanes)) as u16;
        // SAFETY: lanes 16g .. 16g + lanes < n of each array (4n bytes, or n sums); masked
        // loads suppress faults on disabled lanes.
        let [bias, mult, shift, sums] = unsafe {
            [
                _mm512_maskz_loadu_epi32(k, raw[0].as_ptr().add(64 * g).cast()),
                _mm512_maskz_loadu_epi32(k, raw[1].as_ptr().add(64 * g).cast()),
                _mm512_maskz_loadu_epi32(k, raw[2].as_ptr().add(64 * g).cast()),
                match corr {
                    Some((c, _)) => _mm512_maskz_loadu_epi32(k, c.as_ptr().add(16 * g)),
                    None => _mm512_setzero_si512(),
                },
            ]
        };
        let factor = _mm512_set1_epi32(corr.map_or(0, |(_, f)| f));
        let bias = _mm512_add_epi32(bias, _mm512_mullo_epi32(sums, factor));
        let shift = _mm512_min_epi32(_mm512_max_epi32(shift, _mm512_set1_epi32(-31)), _mm512_set1_epi32(30));
        let left = _mm512_max_epi32(shift, _mm512_setzero_si512());
        let right = _mm512_max_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), shift), _mm512_setzero_si512());
        let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
        let half = _mm512_srli_epi32::<1>(mask);
        for (dst, v) in [
            (&mut p.bias, bias),
            (&mut p.mult, mult),
            (&mut p.left, left),
            (&mut p.right, right),
            (&mut p.mask, mask),
            (&mut p.half, half),
        ] {
            // SAFETY: each destination is 16 i32s; storeu has no alignment requirement.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) };
        }
    }
}

/// Per-thread scratch of the packed path: a block of biased rows and their active quads.
struct Prep {
    /// `BLOCK × nqp / 16` lines.
    u: Vec<Line>,
    /// Per sample: `nqp` values (the active quads' 4 u bytes) and quad indices.
    vals: Vec<u32>,
    ks: Vec<u32>,
    count: [usize; BLOCK],
}

/// How the packed path multiplies a block of samples.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kernel {
    /// Sparse or dense by the block's density.
    Auto,
    /// Every sample through the sparse kernel.
    Sparse,
    /// 4 samples at a time through the dense kernel.
    Dense,
    /// AMX tiles (32 samples × 32 outputs), skipping 64-input chunks blank in every sample.
    Amx(Amx),
}

/// Large batches: the packed weights `wq` (see [`Packed`]), blocks of [`BLOCK`] samples, per
/// chunk of 64 outputs the sparse kernel (each sample's active quads only) or, for dense
/// blocks, the dense one (4 samples per weight load), or AMX tiles; then the epilogue.
pub(super) fn packed_layer(
    _: Vnni,
    l: &Layer<'_>,
    p: &Packed,
    wq: &[Line],
    x: &[i8],
    y: &mut [i8],
    kernel: Kernel,
) {
    // SAFETY: the `Vnni` token exists only after run-time detection of avx512f/bw/vnni.
    unsafe { packed_layer_impl(l, p, wq, x, y, kernel) }
}

/// The AMX variant of the packed path: per block, `u` rows and the 64-input chunks that are
/// not blank in every sample; per pair of output vectors, the tile product and the epilogue.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn packed_layer_amx(amx: Amx, l: &Layer<'_>, p: &Packed, wq: &[Line], x: &[i8], y: &mut [i8]) {
    assert!(wq.len() == p.lines() && p.inputs == l.inputs && p.outputs == l.outputs);
    assert!(l.params.len() >= p.nvec);
    let ul = p.nqp / 16;
    let mut u = vec![Line([0; 16]); BLOCK * ul];
    let mut any = vec![false; ul];
    let mut kcs: Vec<u32> = Vec::with_capacity(ul);
    let mut c = Box::new([[0i32; 256]; 4]);
    let cv = clamp_v(&l.clamp);
    let flip = _mm512_set1_epi8(i8::MIN);
    let tiles = Tiles::configure(amx);
    const { assert!(BLOCK == 32) };
    for (xb, yb) in x.chunks(BLOCK * l.inputs).zip(y.chunks_mut(BLOCK * l.outputs)) {
        let rows = xb.len() / l.inputs;
        any.fill(false);
        for (xr, ur) in xb.chunks_exact(l.inputs).zip(u.chunks_exact_mut(ul)) {
            for (cl, (line, a)) in ur.iter_mut().zip(any.iter_mut()).enumerate() {
                let j = cl * 64;
                let m = byte_mask(l.inputs - j);
                // SAFETY: the mask enables lanes j .. min(j + 64, inputs) only, inside the
                // row; masked loads suppress faults on disabled lanes.
                let xv = unsafe { _mm512_maskz_loadu_epi8(m, xr.as_ptr().add(j)) };
                let uv = _mm512_maskz_mov_epi8(m, _mm512_xor_si512(xv, flip));
                // SAFETY: a line is 64 bytes, aligned to 64.
                unsafe { _mm512_store_si512(line.0.as_mut_ptr().cast(), uv) };
                *a |= _mm512_test_epi8_mask(uv, uv) != 0;
            }
        }
        // Rows past `rows` in a short last block keep older contents; their results are
        // never stored.
        kcs.clear();
        kcs.extend((0..ul as u32).filter(|&k| any[k as usize]));
        for gv in (0..p.nvec).step_by(2) {
            let b = [Some(p.vector(gv)), (gv + 1 < p.nvec).then(|| p.vector(gv + 1))];
            tiles.zero();
            tiles.product_32x32(&u, ul, wq, b, &kcs, &mut c);
            for (i, yr) in yb.chunks_exact_mut(l.outputs).enumerate().take(rows) {
                let (g, m) = (i / 16, i % 16);
                for j in 0..2 {
                    let o0 = (gv + j) * 16;
                    if o0 >= l.outputs {
                        break;
                    }
                    let row: &[i32; 16] = c[g * 2 + j][m * 16..][..16].try_into().expect("16 lanes");
                    let yo = &mut yr[o0..];
                    let n = yo.len().min(16);
                    store_i8(requant16(load_params(row), &l.params[gv + j], &cv), yo, n);
                }
            }
        }
        if l.table.is_some() {
            for yr in yb.chunks_exact_mut(l.outputs) {
                apply_table(yr, l.table);
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn packed_layer_impl(l: &Layer<'_>, p: &Packed, wq: &[Line], x: &[i8], y: &mut [i8], kernel: Kernel) {
    let dense = match kernel {
        Kernel::Amx(amx) => return packed_layer_amx(amx, l, p, wq, x, y),
        Kernel::Auto => None,
        Kernel::Sparse => Some(false),
        Kernel::Dense => Some(true),
    };
    assert!(wq.len() == p.lines() && p.inputs == l.inputs && p.outputs == l.outputs);
    assert!(l.params.len() >= p.nvec);
    let ul = p.nqp / 16;
    let mut s = Prep {
        u: vec![Line([0; 16]); BLOCK * ul],
        vals: vec![0; BLOCK * p.nqp],
        ks: vec![0; BLOCK * p.nqp],
        count: [0; BLOCK],
    };
    let cv = clamp_v(&l.clamp);
    let flip = _mm512_set1_epi8(i8::MIN);
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (xb, yb) in x.chunks(BLOCK * l.inputs).zip(y.chunks_mut(BLOCK * l.outputs)) {
        let rows = xb.len() / l.inputs;
        // Prepare: u rows, and per sample the compressed list of active quads.
        let mut total = 0;
        for (i, xr) in xb.chunks_exact(l.inputs).enumerate() {
            let u = &mut s.u[i * ul..][..ul];
            let vals = &mut s.vals[i * p.nqp..][..p.nqp];
            let ks = &mut s.ks[i * p.nqp..][..p.nqp];
            let mut n = 0;
            for (c, line) in u.iter_mut().enumerate() {
                let j = c * 64;
                let m = byte_mask(l.inputs - j);
                // SAFETY: the mask enables lanes j .. min(j + 64, inputs) only, inside the
                // row; masked loads suppress faults on disabled lanes.
                let xv = unsafe { _mm512_maskz_loadu_epi8(m, xr.as_ptr().add(j)) };
                let uv = _mm512_maskz_mov_epi8(m, _mm512_xor_si512(xv, flip));
                // SAFETY: a line is 64 bytes, aligned to 64.
                unsafe { _mm512_store_si512(line.0.as_mut_ptr().cast(), uv) };
                let am = _mm512_test_epi32_mask(uv, uv);
                let vq = _mm512_maskz_compress_epi32(am, uv);
                let kq =
                    _mm512_maskz_compress_epi32(am, _mm512_add_epi32(iota, _mm512_set1_epi32(16 * c as i32)));
                // n <= 16c, so n + 16 <= 16 (c + 1) <= nqp: the 16 stored values fit.
                assert!(n + 16 <= p.nqp);
                // SAFETY: elements n .. n + 16 lie in `vals` / `ks` (asserted just above).
                unsafe {
                    _mm512_storeu_si512(vals.as_mut_ptr().add(n).cast(), vq);
                    _mm512_storeu_si512(ks.as_mut_ptr().add(n).cast(), kq);
                }
                n += am.count_ones() as usize;
            }
            s.count[i] = n;
            total += n;
        }
        let nq = l.inputs.div_ceil(4);
        let is_dense = dense.unwrap_or((total as f64) > DENSE_ABOVE * (rows * nq) as f64);
        for c in 0..p.nvec.div_ceil(NV) {
            let wc = &wq[p.chunk_base(c)..][..p.nqp * p.nvc(c)];
            let params = &l.params[c * NV..];
            let o0 = c * NV * 16;
            let mut i = 0;
            if is_dense {
                while i + 4 <= rows {
                    let us = [
                        &s.u[i * ul..][..ul],
                        &s.u[(i + 1) * ul..][..ul],
                        &s.u[(i + 2) * ul..][..ul],
                        &s.u[(i + 3) * ul..][..ul],
                    ];
                    let y4 = &mut yb[i * l.outputs..][..4 * l.outputs];
                    match p.nvc(c) {
                        1 => epilogue4(&dense_acc::<1>(us, nq, wc), params, &cv, y4, l.outputs, o0),
                        2 => epilogue4(&dense_acc::<2>(us, nq, wc), params, &cv, y4, l.outputs, o0),
                        3 => epilogue4(&dense_acc::<3>(us, nq, wc), params, &cv, y4, l.outputs, o0),
                        _ => epilogue4(&dense_acc::<4>(us, nq, wc), params, &cv, y4, l.outputs, o0),
                    }
                    i += 4;
                }
            }
            while i < rows {
                let n = s.count[i];
                let vals = &s.vals[i * p.nqp..][..n];
                let ks = &s.ks[i * p.nqp..][..n];
                let yo = &mut yb[i * l.outputs..][o0..l.outputs];
                // The accumulators go straight from registers to the epilogue.
                match p.nvc(c) {
                    1 => epilogue(&sparse_acc::<1>(vals, ks, wc), params, &cv, yo),
                    2 => epilogue(&sparse_acc::<2>(vals, ks, wc), params, &cv, yo),
                    3 => epilogue(&sparse_acc::<3>(vals, ks, wc), params, &cv, yo),
                    _ => epilogue(&sparse_acc::<4>(vals, ks, wc), params, &cv, yo),
                }
                i += 1;
            }
        }
        if l.table.is_some() {
            for yr in yb.chunks_exact_mut(l.outputs) {
                apply_table(yr, l.table);
            }
        }
    }
}

/// Requantizes `N` vectors of 16 outputs into `y` (the chunk's outputs onward).
#[target_feature(enable = "avx512f")]
#[inline]
fn epilogue<const N: usize>(acc: &[__m512i; N], params: &[ParamBlock], cv: &ClampV, y: &mut [i8]) {
    for ((a, p), yo) in acc.iter().zip(params).zip(y.chunks_mut(16)) {
        store_i8(requant16(*a, p, cv), yo, yo.len());
    }
}

/// [`epilogue`] for the 4 samples of a dense step: rows of `outputs` in `y`, from `o0`.
#[target_feature(enable = "avx512f")]
#[inline]
fn epilogue4<const N: usize>(
    acc: &[[__m512i; N]; 4],
    params: &[ParamBlock],
    cv: &ClampV,
    y: &mut [i8],
    outputs: usize,
    o0: usize,
) {
    for (a, yr) in acc.iter().zip(y.chunks_exact_mut(outputs)) {
        epilogue(a, params, cv, &mut yr[o0..]);
    }
}

/// `Σ` over one sample's active quads `ks` (with their u bytes `vals`) of `u · W[k]` for the
/// chunk's `N` output vectors (`wc`: `nqp × N` lines). Two accumulator sets hide latency.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
fn sparse_acc<const N: usize>(vals: &[u32], ks: &[u32], wc: &[Line]) -> [__m512i; N] {
    assert!(vals.len() == ks.len() && wc.len().is_multiple_of(N));
    let nq = wc.len() / N;
    let mut a = [_mm512_setzero_si512(); N];
    let mut b = [_mm512_setzero_si512(); N];
    let wp = wc.as_ptr();
    let mut pairs = vals.chunks_exact(2).zip(ks.chunks_exact(2));
    for (vv, kk) in &mut pairs {
        let (u0, u1) = (_mm512_set1_epi32(vv[0] as i32), _mm512_set1_epi32(vv[1] as i32));
        let (k0, k1) = (kk[0] as usize, kk[1] as usize);
        assert!(k0 < nq && k1 < nq);
        for v in 0..N {
            // SAFETY: k0, k1 < nq (asserted) and v < N, so lines k·N + v lie in `wc`; lines
            // are 64-byte aligned.
            let (w0, w1) = unsafe {
                (_mm512_load_si512(wp.add(k0 * N + v).cast()), _mm512_load_si512(wp.add(k1 * N + v).cast()))
            };
            a[v] = _mm512_dpbusd_epi32(a[v], u0, w0);
            b[v] = _mm512_dpbusd_epi32(b[v], u1, w1);
        }
    }
    if let (Some(&vv), Some(&k0), true) = (vals.last(), ks.last(), vals.len() % 2 == 1) {
        let u0 = _mm512_set1_epi32(vv as i32);
        let k0 = k0 as usize;
        assert!(k0 < nq);
        for (v, av) in a.iter_mut().enumerate() {
            // SAFETY: as above.
            let w0 = unsafe { _mm512_load_si512(wp.add(k0 * N + v).cast()) };
            *av = _mm512_dpbusd_epi32(*av, u0, w0);
        }
    }
    for (av, bv) in a.iter_mut().zip(b) {
        *av = _mm512_add_epi32(*av, bv);
    }
    a
}

/// Four samples over every quad `0..nq` of the chunk: each weight line feeds 4 `vpdpbusd`.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
fn dense_acc<const N: usize>(us: [&[Line]; 4], nq: usize, wc: &[Line]) -> [[__m512i; N]; 4] {
    assert!(wc.len() >= nq * N && us.iter().all(|u| u.len() * 16 >= nq));
    let mut acc = [[_mm512_setzero_si512(); N]; 4];
    for k in 0..nq {
        let mut b = [_mm512_setzero_si512(); 4];
        for (bs, u) in b.iter_mut().zip(&us) {
            *bs = _mm512_set1_epi32(u[k / 16].0[k % 16] as i32);
        }
        for v in 0..N {
            // SAFETY: k < nq, v < N, so line k·N + v lies in `wc` (asserted); lines are aligned.
            let wv = unsafe { _mm512_load_si512(wc.as_ptr().add(k * N + v).cast()) };
            for (a, &bs) in acc.iter_mut().zip(&b) {
                a[v] = _mm512_dpbusd_epi32(a[v], bs, wv);
            }
        }
    }
    acc
}

/// Σ_j (x[r][j] ^ 0x80 as u8) · w[c][j] for each of `MB` rows of `x` and `NO` rows of `w`:
/// the register-tile micro kernel of `dense_i8`.
pub(super) fn block<const MB: usize, const NO: usize>(
    _: Vnni,
    x: &[i8],
    w: &[i8],
    k: usize,
) -> [[i32; NO]; MB] {
    assert!(x.len() == MB * k && w.len() == NO * k);
    // SAFETY: the `Vnni` token exists only after run-time detection of avx512f/bw/vnni; the
    // assertion gives the slice lengths `vnni_block` relies on.
    unsafe { vnni_block::<MB, NO>(x, w, k) }
}

/// Callers guarantee `x.len() == MB * k` and `w.len() == NO * k`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn vnni_block<const MB: usize, const NO: usize>(x: &[i8], w: &[i8], k: usize) -> [[i32; NO]; MB] {
    debug_assert!(x.len() == MB * k && w.len() == NO * k);
    let flip = _mm512_set1_epi8(i8::MIN);
    // acc[c][r]: output row c, batch row r.
    let mut acc = [[_mm512_setzero_si512(); MB]; NO];
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut j = 0;
    while j < k {
        // Masked-off lanes are neither read nor faulted on and load as 0, so their weights
        // are 0 and they add nothing.
        let mask = byte_mask(k - j);
        let mut xv = [flip; MB];
        for (r, v) in xv.iter_mut().enumerate() {
            // SAFETY: the mask enables only lanes j .. min(j + 64, k) of row r < MB, inside x.
            *v = _mm512_xor_si512(unsafe { _mm512_maskz_loadu_epi8(mask, xp.add(r * k + j)) }, flip);
        }
        for (c, ac) in acc.iter_mut().enumerate() {
            // SAFETY: as above, for row c < NO of w.
            let wv = unsafe { _mm512_maskz_loadu_epi8(mask, wp.add(c * k + j)) };
            for (a, &xr) in ac.iter_mut().zip(&xv) {
                *a = _mm512_dpbusd_epi32(*a, xr, wv);
            }
        }
        j += 64;
    }
    let mut out = [[0i32; NO]; MB];
    for (c, ac) in acc.iter().enumerate() {
        for (o, &a) in out.iter_mut().zip(ac) {
            o[c] = _mm512_reduce_add_epi32(a);
        }
    }
    out
}
