//! The AVX2 path: `u = x ^ 0x80` zero-extended to i16 (`vpmovzxbw`), weights sign-extended
//! (`vpmovsxbw`), multiplied with `vpmaddwd` (exact: `255 · 127 · 2` fits i32, unlike the
//! saturating `vpmaddubsw`); the requantization epilogue on 8 lanes; row sums.

use std::arch::x86_64::*;

use super::{Clamp, ParamBlock};

pub(super) use crate::isa::Avx2;

/// Σ_j (x[r][j] ^ 0x80 as u8) · w[c][j] for each of `MB` rows of `x` and `NO` rows of `w`.
pub(super) fn block<const MB: usize, const NO: usize>(
    _: Avx2,
    x: &[i8],
    w: &[i8],
    k: usize,
) -> [[i32; NO]; MB] {
    assert!(x.len() == MB * k && w.len() == NO * k);
    // SAFETY: the `Avx2` token exists only after run-time detection of avx2; the assertion
    // gives the slice lengths `avx2_block` relies on.
    unsafe { avx2_block::<MB, NO>(x, w, k) }
}

/// Callers guarantee `x.len() == MB * k` and `w.len() == NO * k`.
#[target_feature(enable = "avx2")]
fn avx2_block<const MB: usize, const NO: usize>(x: &[i8], w: &[i8], k: usize) -> [[i32; NO]; MB] {
    debug_assert!(x.len() == MB * k && w.len() == NO * k);
    let flip = _mm_set1_epi8(i8::MIN);
    // acc[c][r]: output row c, batch row r.
    let mut acc = [[_mm256_setzero_si256(); MB]; NO];
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut j = 0;
    while j + 16 <= k {
        let mut xv = [_mm256_setzero_si256(); MB];
        for (r, v) in xv.iter_mut().enumerate() {
            // SAFETY: j + 16 <= k, so bytes r·k + j .. r·k + j + 16 lie in row r < MB of x
            // (x.len() == MB·k); loadu has no alignment requirement.
            let xb = unsafe { _mm_loadu_si128(xp.add(r * k + j).cast()) };
            *v = _mm256_cvtepu8_epi16(_mm_xor_si128(xb, flip));
        }
        for (c, ac) in acc.iter_mut().enumerate() {
            // SAFETY: as above, for row c < NO of w (w.len() == NO·k).
            let wv = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(wp.add(c * k + j).cast()) });
            for (a, &xr) in ac.iter_mut().zip(&xv) {
                // u8 · i8 products fit i16 · i16 → i32 exactly; pairs sum in i32.
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
                t = t.wrapping_add((xv as u8 ^ 0x80) as i32 * wv as i32);
            }
            o[c] = t;
        }
    }
    out
}

/// `Σ_j w[o][j]` for every output row (wrapping), into `out[..outputs]`.
pub(super) fn row_sums(_: Avx2, w: &[i8], inputs: usize, out: &mut [i32]) {
    assert!(w.len() >= out.len() * inputs);
    // SAFETY: the `Avx2` token exists only after run-time detection of avx2.
    unsafe { row_sums_impl(w, inputs, out) }
}

#[target_feature(enable = "avx2")]
fn row_sums_impl(w: &[i8], inputs: usize, out: &mut [i32]) {
    let ones = _mm256_set1_epi16(1);
    for (o, row) in out.iter_mut().zip(w.chunks_exact(inputs)) {
        let mut acc = _mm256_setzero_si256();
        let mut chunks = row.chunks_exact(16);
        for c in &mut chunks {
            // SAFETY: `c` is 16 bytes; loadu has no alignment requirement.
            let v = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(c.as_ptr().cast()) });
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(v, ones));
        }
        let s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256::<1>(acc));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        *o = chunks.remainder().iter().fold(_mm_cvtsi128_si32(s), |t, &v| t.wrapping_add(v as i32));
    }
}

/// Requantizes `acc` (rows of `outputs`) into `y` with the per-output constants (16 per
/// block; bias included) and the clamp: `fixed::requantize` bit for bit, 8 lanes at a time
/// (see `avx512::requant16` for the identities). Tables are the caller's.
pub(super) fn requantize_rows(
    _: Avx2,
    acc: &[i32],
    outputs: usize,
    params: &[ParamBlock],
    clamp: &Clamp,
    y: &mut [i8],
) {
    assert!(params.len() * 16 >= outputs && outputs > 0);
    // SAFETY: the `Avx2` token exists only after run-time detection of avx2.
    unsafe { requantize_rows_impl(acc, outputs, params, clamp, y) }
}

#[target_feature(enable = "avx2")]
fn load8(a: &[i32]) -> __m256i {
    assert!(a.len() >= 8);
    // SAFETY: 8 i32s (asserted); loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn requantize_rows_impl(acc: &[i32], outputs: usize, params: &[ParamBlock], clamp: &Clamp, y: &mut [i8]) {
    let lo = _mm256_set1_epi32(clamp.lo_minus_zp);
    let hi = _mm256_set1_epi32(clamp.hi_minus_zp);
    let zp = _mm256_set1_epi32(clamp.zp);
    let round = _mm256_set1_epi64x(1 << 30);
    let min = _mm256_set1_epi32(i32::MIN);
    let max = _mm256_set1_epi32(i32::MAX);
    // Low byte of each dword, per 128-bit lane, then the two lanes' dwords together.
    let bytes = _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1,
    );
    let gather = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
    for (ar, yr) in acc.chunks_exact(outputs).zip(y.chunks_exact_mut(outputs)) {
        for (o0, yo) in (0..outputs).step_by(8).zip(yr.chunks_mut(8)) {
            let n = yo.len();
            let mut a8 = [0i32; 8];
            a8[..n].copy_from_slice(&ar[o0..o0 + n]);
            let p = &params[o0 / 16];
            let h8 = o0 % 16;
            let x =
                _mm256_sllv_epi32(_mm256_add_epi32(load8(&a8), load8(&p.bias[h8..])), load8(&p.left[h8..]));
            let m = load8(&p.mult[h8..]);
            let even = _mm256_add_epi64(_mm256_mul_epi32(x, m), round);
            let odd = _mm256_add_epi64(
                _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(m)),
                round,
            );
            let h =
                _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<31>(even), _mm256_slli_epi64::<1>(odd));
            let both_min = _mm256_and_si256(_mm256_cmpeq_epi32(x, min), _mm256_cmpeq_epi32(m, min));
            let h = _mm256_blendv_epi8(h, max, both_min);
            let rem = _mm256_and_si256(h, load8(&p.mask[h8..]));
            let threshold = _mm256_add_epi32(load8(&p.half[h8..]), _mm256_srli_epi32::<31>(h));
            let q = _mm256_srav_epi32(h, load8(&p.right[h8..]));
            // cmpgt is -1 where the quotient rounds away: subtracting it adds 1.
            let q = _mm256_sub_epi32(q, _mm256_cmpgt_epi32(rem, threshold));
            let q = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo), hi), zp);
            let packed = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(q, bytes), gather);
            let mut out = [0i8; 8];
            // SAFETY: `out` is 8 bytes; storel writes the low 8 bytes, unaligned.
            unsafe { _mm_storel_epi64(out.as_mut_ptr().cast(), _mm256_castsi256_si128(packed)) };
            yo.copy_from_slice(&out[..n]);
        }
    }
}
