//! Bilinear resampling of byte images along fixed-point source coordinates: the inner loop of
//! the data loader's augmentation (`data::augment`). [`blend_row_portable`] is the reference;
//! [`blend_row`] runs the AVX2 version (8 pixels per step, two gathers) where the CPU has it,
//! and [`blend_grid`] a rectangle of rows at once, with AVX-512 (16 pixels per step, masked
//! at the row's end, no call or set-up per row). All give the same bytes (integer arithmetic
//! throughout; tested below).

use crate::isa::{Isa, Level};

/// Fractional bits of the source coordinates (and of the displacement fields).
pub const FRAC_BITS: u32 = 12;

/// A source image with a zero border, as [`blend_row`] reads it: row-major bytes, `stride`
/// per row, and the largest clamped coordinates. Every pixel whose coordinates clamp to
/// `max_x` or `max_y` must read zeros for a zero border to act as "zeros outside the image".
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pixels: &'a [u8],
    stride: usize,
    max_x: i32,
    max_y: i32,
    cutoff: u8,
    /// The pixels outside which the source holds only zeros: x from, x to, y from, y to
    /// (whole pixels, inclusive).
    ink: [i32; 4],
}

impl<'a> Source<'a> {
    /// A source of `pixels` with `stride` bytes per row whose coordinates clamp to
    /// `[0, max_x]` x `[0, max_y]` (fixed point, [`FRAC_BITS`]).
    ///
    /// # Panics
    /// If the bound is negative or `pixels` does not reach 4 bytes past the bottom-right
    /// tap `(max_y >> FRAC_BITS) + 1` rows down and `(max_x >> FRAC_BITS) + 1` across (the
    /// gathers read 4 bytes at each tap pair): a programming error of the caller.
    pub fn new(pixels: &'a [u8], stride: usize, max_x: i32, max_y: i32) -> Source<'a> {
        assert!(max_x >= 0 && max_y >= 0, "warp::Source: negative coordinate bound");
        let (x, y) = ((max_x >> FRAC_BITS) as usize, (max_y >> FRAC_BITS) as usize);
        let last = (y + 1).saturating_mul(stride).saturating_add(x).saturating_add(4);
        assert!(
            x + 1 < stride && last <= pixels.len() && i32::try_from(last).is_ok(),
            "warp::Source: {} bytes, stride {stride}, do not hold taps up to ({x}, {y}) plus 4 bytes",
            pixels.len()
        );
        Source { pixels, stride, max_x, max_y, cutoff: 0, ink: [i32::MIN, i32::MAX, i32::MIN, i32::MAX] }
    }

    /// The same source, told that it holds only zeros outside columns `x.0..=x.1` and rows
    /// `y.0..=y.1`: pixels whose taps all lie outside are 0 without reading the source.
    /// Leaving ink out of the box is a caller's error that changes the result (not safety).
    pub fn with_ink(self, x: (i32, i32), y: (i32, i32)) -> Source<'a> {
        Source { ink: [x.0, x.1, y.0, y.1], ..self }
    }

    /// The same source, blends under `cutoff` written as 0 (faint fringes dropped).
    pub fn with_cutoff(self, cutoff: u8) -> Source<'a> {
        Source { cutoff, ..self }
    }
}

/// One output row: pixel `k` samples the source at `(x0 + k * step_x + field_x[k],
/// y0 + k * step_y + field_y[k])` (fixed point), clamped to the source's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    /// Fixed-point source coordinates of the row's first pixel.
    pub start: (i32, i32),
    /// Their increments from one pixel to the next.
    pub step: (i32, i32),
    /// Per-pixel displacements (as long as the row) and a sign for each (1, or -1 to negate
    /// the field); `None` for none.
    pub field: Option<(&'a [i32], &'a [i32], i32, i32)>,
}

/// A rectangle of output rows resampled alike: row `r` is the [`Row`] that starts at
/// `starts[r]` with the common `step`, and its output and displacements lie `r * stride`
/// further in `out` and in the fields.
#[derive(Clone, Copy, Debug)]
pub struct Grid<'a> {
    /// Fixed-point source coordinates of each row's first pixel.
    pub starts: &'a [(i32, i32)],
    /// Their increments from one pixel to the next.
    pub step: (i32, i32),
    /// Pixels per row.
    pub width: usize,
    /// Distance between the rows' first pixels in the output and in the fields.
    pub stride: usize,
    /// Per-pixel displacements (laid out as the output) and a sign for each, as in [`Row`].
    pub field: Option<(&'a [i32], &'a [i32], i32, i32)>,
}

impl<'a> Grid<'a> {
    /// Row `r` as a [`Row`], its field slices starting at the row.
    fn row(&self, r: usize) -> Row<'a> {
        let at = r * self.stride;
        let field = self.field.map(|(fx, fy, sx, sy)| (&fx[at..], &fy[at..], sx, sy));
        Row { start: self.starts[r], step: self.step, field }
    }
}

/// Resamples every row of `grid` into `out` (see [`Grid`]), as [`blend_row`] would one row
/// at a time; with AVX-512 where `isa` allows it.
///
/// # Panics
/// If `out` or a field does not reach the last row's end, the rows overlap (`width >
/// stride` with more than one row), or a sign is not 1 or -1.
pub fn blend_grid(isa: Isa, source: &Source<'_>, grid: &Grid<'_>, out: &mut [u8]) {
    let rows = grid.starts.len();
    if rows == 0 || grid.width == 0 {
        return;
    }
    let end = (rows - 1) * grid.stride + grid.width;
    assert!(rows == 1 || grid.width <= grid.stride, "warp: grid rows of {} pixels overlap", grid.width);
    assert!(out.len() >= end, "warp: output shorter than the grid");
    if let Some((fx, fy, sx, sy)) = grid.field {
        assert!(fx.len() >= end && fy.len() >= end, "warp: fields shorter than the grid");
        assert!(sx.abs() == 1 && sy.abs() == 1, "warp: field signs must be 1 or -1");
    }
    #[cfg(target_arch = "x86_64")]
    if isa.level() == Level::Avx512 {
        // SAFETY: an Avx512 token exists only where detection found AVX-512F and BW
        // (`Isa::detect`); the asserts above and `Source::new` establish the bounds
        // `blend_grid_avx512` relies on.
        unsafe { blend_grid_avx512(source, grid, out) };
        return;
    }
    for r in 0..rows {
        let at = r * grid.stride;
        blend_row(isa, source, &grid.row(r), &mut out[at..at + grid.width]);
    }
}

/// Resamples one row into `out` (see [`Row`]): bilinear, 8-bit weights, rounded to bytes
/// (those under the source's cutoff to 0), with the AVX2 kernel where `isa` allows it.
///
/// # Panics
/// If a field is shorter than `out` or a sign is not 1 or -1.
pub fn blend_row(isa: Isa, source: &Source<'_>, row: &Row<'_>, out: &mut [u8]) {
    check_row(row, out.len());
    #[cfg(target_arch = "x86_64")]
    if isa.level() != Level::Baseline && out.len() >= 8 {
        // SAFETY: an Avx2 or Avx512 token exists only where detection found AVX2
        // (`Isa::detect`); `check_row` and `Source::new` establish the bounds
        // `blend_row_avx2` relies on, and the row holds at least 8 pixels.
        unsafe { blend_row_avx2(source, row, out) };
        return;
    }
    let _ = isa;
    blend_row_portable(source, row, out);
}

/// The reference: one pixel at a time.
///
/// # Panics
/// As [`blend_row`].
pub fn blend_row_portable(source: &Source<'_>, row: &Row<'_>, out: &mut [u8]) {
    check_row(row, out.len());
    let (mut sx, mut sy) = row.start;
    for (k, o) in out.iter_mut().enumerate() {
        let (mut px, mut py) = (sx, sy);
        sx = sx.wrapping_add(row.step.0);
        sy = sy.wrapping_add(row.step.1);
        if let Some((fx, fy, sign_x, sign_y)) = row.field {
            px = px.wrapping_add(sign_x.wrapping_mul(fx[k]));
            py = py.wrapping_add(sign_y.wrapping_mul(fy[k]));
        }
        *o = sample(source, px, py);
    }
}

/// The bilinear sample at fixed-point `(px, py)`, clamped to the source.
#[inline(always)]
fn sample(source: &Source<'_>, px: i32, py: i32) -> u8 {
    let px = px.clamp(0, source.max_x);
    let py = py.clamp(0, source.max_y);
    let (x0, y0) = ((px >> FRAC_BITS) as usize, (py >> FRAC_BITS) as usize);
    let wx = ((px >> (FRAC_BITS - 8)) & 255) as u32;
    let wy = ((py >> (FRAC_BITS - 8)) & 255) as u32;
    let (p, i) = (source.pixels, y0 * source.stride + x0);
    let (t0, t1) = (u32::from(p[i]), u32::from(p[i + 1]));
    let (b0, b1) = (u32::from(p[i + source.stride]), u32::from(p[i + source.stride + 1]));
    let top = t0 * (256 - wx) + t1 * wx;
    let bottom = b0 * (256 - wx) + b1 * wx;
    let value = ((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16) as u8;
    if value < source.cutoff {
        0
    } else {
        value
    }
}

fn check_row(row: &Row<'_>, len: usize) {
    if let Some((fx, fy, sx, sy)) = row.field {
        assert!(fx.len() >= len && fy.len() >= len, "warp: fields shorter than the row");
        assert!(sx.abs() == 1 && sy.abs() == 1, "warp: field signs must be 1 or -1");
    }
}

/// [`blend_row_portable`], 8 pixels per step: the coordinates as i32 lanes, the two tap
/// pairs of each pixel fetched by two 4-byte gathers, the horizontal blends by `vpmaddwd`.
/// A row not a multiple of 8 ends with an 8-pixel step overlapping the previous one (the
/// same bytes again). Needs `out.len() >= 8`.
///
/// # Safety
/// The CPU must have AVX2; `out.len() >= 8`; the fields (if any) at least as long as `out`;
/// `source` built by [`Source::new`] (every clamped tap pair plus 4 bytes lies inside it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blend_row_avx2(source: &Source<'_>, row: &Row<'_>, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = out.len();
    debug_assert!(n >= 8);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let (step_x, step_y) = row.step;
    let lane_x = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(step_x));
    let lane_y = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(step_y));
    let (max_x, max_y) = (_mm256_set1_epi32(source.max_x), _mm256_set1_epi32(source.max_y));
    let zero = _mm256_setzero_si256();
    let stride = _mm256_set1_epi32(source.stride as i32);
    let byte = _mm256_set1_epi32(255);
    let full = _mm256_set1_epi32(256);
    let round = _mm256_set1_epi32(1 << 15);
    let below = _mm256_set1_epi32(i32::from(source.cutoff) - 1);
    // Per 32-bit lane: tap bytes 0 and 1 as two 16-bit values.
    let pairs = _mm256_setr_epi8(
        0, -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1, //
        0, -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1,
    );
    let base = source.pixels.as_ptr().cast::<i32>();
    let (sign_x, sign_y) =
        row.field.map_or((zero, zero), |(_, _, sx, sy)| (_mm256_set1_epi32(sx), _mm256_set1_epi32(sy)));
    let mut k = 0;
    loop {
        let at = k.min(n - 8);
        let (at32, mut px, mut py) = (at as i32, lane_x, lane_y);
        px = _mm256_add_epi32(px, _mm256_set1_epi32(row.start.0.wrapping_add(at32.wrapping_mul(step_x))));
        py = _mm256_add_epi32(py, _mm256_set1_epi32(row.start.1.wrapping_add(at32.wrapping_mul(step_y))));
        if let Some((fx, fy, _, _)) = row.field {
            // SAFETY: `at + 8 <= n <= fx.len(), fy.len()`.
            let (dx, dy) = unsafe {
                (
                    _mm256_loadu_si256(fx.as_ptr().add(at).cast()),
                    _mm256_loadu_si256(fy.as_ptr().add(at).cast()),
                )
            };
            px = _mm256_add_epi32(px, _mm256_sign_epi32(dx, sign_x));
            py = _mm256_add_epi32(py, _mm256_sign_epi32(dy, sign_y));
        }
        px = _mm256_min_epi32(_mm256_max_epi32(px, zero), max_x);
        py = _mm256_min_epi32(_mm256_max_epi32(py, zero), max_y);
        let x0 = _mm256_srli_epi32::<FRAC_BITS_I>(px);
        let y0 = _mm256_srli_epi32::<FRAC_BITS_I>(py);
        let wx = _mm256_and_si256(_mm256_srli_epi32::<WEIGHT_SHIFT>(px), byte);
        let wy = _mm256_and_si256(_mm256_srli_epi32::<WEIGHT_SHIFT>(py), byte);
        let index = _mm256_add_epi32(_mm256_mullo_epi32(y0, stride), x0);
        // SAFETY: the coordinates are clamped to the source's bounds, so each index is at
        // most `(max_y >> F) * stride + (max_x >> F)` and the 4 bytes read at it and at
        // `index + stride` lie inside `pixels` (`Source::new`); unaligned gathers are allowed.
        let (top, bottom) = unsafe {
            (
                _mm256_i32gather_epi32::<1>(base, index),
                _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(index, stride)),
            )
        };
        let weights = _mm256_or_si256(_mm256_sub_epi32(full, wx), _mm256_slli_epi32::<16>(wx));
        let top = _mm256_madd_epi16(_mm256_shuffle_epi8(top, pairs), weights);
        let bottom = _mm256_madd_epi16(_mm256_shuffle_epi8(bottom, pairs), weights);
        // top * (256 - wy) + bottom * wy, as top * 256 + (bottom - top) * wy: under 2^24.
        let blend = _mm256_add_epi32(
            _mm256_slli_epi32::<8>(top),
            _mm256_mullo_epi32(_mm256_sub_epi32(bottom, top), wy),
        );
        let value = _mm256_srli_epi32::<16>(_mm256_add_epi32(blend, round));
        let value = _mm256_and_si256(value, _mm256_cmpgt_epi32(value, below));
        let words = _mm256_packus_epi32(value, value);
        let bytes = _mm256_packus_epi16(words, words);
        let low = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes)) as u32;
        let high = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(bytes)) as u32;
        out[at..at + 4].copy_from_slice(&low.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&high.to_le_bytes());
        if at + 8 >= n {
            return;
        }
        k += 8;
    }
}

/// [`blend_grid`] with 16-lane vectors: each row in steps of 16 pixels, the last step masked
/// (masked field loads, gathers and stores touch no memory in the lanes past the row), so
/// a row costs no more set-up than two broadcasts.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512BW; `out` and the fields (if any) must reach
/// `(rows - 1) * stride + width`; `source` built by [`Source::new`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn blend_grid_avx512(source: &Source<'_>, grid: &Grid<'_>, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let (step_x, step_y) = grid.step;
    let lane_x = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(step_x));
    let lane_y = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(step_y));
    let (next_x, next_y) =
        (_mm512_set1_epi32(step_x.wrapping_mul(16)), _mm512_set1_epi32(step_y.wrapping_mul(16)));
    let (max_x, max_y) = (_mm512_set1_epi32(source.max_x), _mm512_set1_epi32(source.max_y));
    let zero = _mm512_setzero_si512();
    let stride = _mm512_set1_epi32(source.stride as i32);
    let byte = _mm512_set1_epi32(255);
    let full = _mm512_set1_epi32(256);
    let round = _mm512_set1_epi32(1 << 15);
    let below = _mm512_set1_epi32(i32::from(source.cutoff) - 1);
    let [ink_x0, ink_x1, ink_y0, ink_y1] = source.ink;
    let (ink_x0, ink_y0) =
        (_mm512_set1_epi32(ink_x0.saturating_sub(1)), _mm512_set1_epi32(ink_y0.saturating_sub(1)));
    let (ink_x1, ink_y1) = (_mm512_set1_epi32(ink_x1), _mm512_set1_epi32(ink_y1));
    // Per 32-bit lane: tap bytes 0 and 1 as two 16-bit values.
    let pairs =
        _mm512_broadcast_i32x4(_mm_setr_epi8(0, -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1));
    let base = source.pixels.as_ptr().cast::<i32>();
    // A field is negated as (d ^ -1) - (-1); kept as (d ^ 0) - 0.
    let negate = |sign: i32| _mm512_set1_epi32(if sign < 0 { -1 } else { 0 });
    let (neg_x, neg_y) = grid.field.map_or((zero, zero), |(_, _, sx, sy)| (negate(sx), negate(sy)));
    let steps = grid.width.div_ceil(16);
    let last: __mmask16 = match grid.width % 16 {
        0 => 0xFFFF,
        rest => (1 << rest) - 1,
    };
    for (r, &(start_x, start_y)) in grid.starts.iter().enumerate() {
        let mut px = _mm512_add_epi32(_mm512_set1_epi32(start_x), lane_x);
        let mut py = _mm512_add_epi32(_mm512_set1_epi32(start_y), lane_y);
        for s in 0..steps {
            let at = r * grid.stride + s * 16;
            let mask = if s + 1 == steps { last } else { 0xFFFF };
            let (mut x, mut y) = (px, py);
            if let Some((fx, fy, _, _)) = grid.field {
                // SAFETY: the lanes in `mask` lie within the row, so below `fx.len()` and
                // `fy.len()` (the caller's bound); masked-off lanes read nothing.
                let (dx, dy) = unsafe {
                    (
                        _mm512_maskz_loadu_epi32(mask, fx.as_ptr().add(at)),
                        _mm512_maskz_loadu_epi32(mask, fy.as_ptr().add(at)),
                    )
                };
                x = _mm512_add_epi32(x, _mm512_sub_epi32(_mm512_xor_si512(dx, neg_x), neg_x));
                y = _mm512_add_epi32(y, _mm512_sub_epi32(_mm512_xor_si512(dy, neg_y), neg_y));
            }
            x = _mm512_min_epi32(_mm512_max_epi32(x, zero), max_x);
            y = _mm512_min_epi32(_mm512_max_epi32(y, zero), max_y);
            let x0 = _mm512_srli_epi32::<FRAC_BITS_U>(x);
            let y0 = _mm512_srli_epi32::<FRAC_BITS_U>(y);
            let wx = _mm512_and_si512(_mm512_srli_epi32::<WEIGHT_SHIFT_U>(x), byte);
            let wy = _mm512_and_si512(_mm512_srli_epi32::<WEIGHT_SHIFT_U>(y), byte);
            // The lanes whose taps (x0 or x0 + 1, y0 or y0 + 1) can reach ink; the others
            // blend four zeros into 0.
            let live = _mm512_mask_cmpge_epi32_mask(mask, x0, ink_x0);
            let live = _mm512_mask_cmple_epi32_mask(live, x0, ink_x1);
            let live = _mm512_mask_cmpge_epi32_mask(live, y0, ink_y0);
            let live = _mm512_mask_cmple_epi32_mask(live, y0, ink_y1);
            let to = out.as_mut_ptr().wrapping_add(at).cast::<i8>();
            if live == 0 {
                // SAFETY: the lanes in `mask` lie within the row, below `out.len()` (the
                // caller's bound); masked-off lanes store nothing.
                unsafe { _mm512_mask_cvtepi32_storeu_epi8(to, mask, zero) };
                px = _mm512_add_epi32(px, next_x);
                py = _mm512_add_epi32(py, next_y);
                continue;
            }
            let index = _mm512_add_epi32(_mm512_mullo_epi32(y0, stride), x0);
            // SAFETY: the coordinates are clamped to the source's bounds, so each index is at
            // most `(max_y >> F) * stride + (max_x >> F)` and the 4 bytes read at it and at
            // `index + stride` lie inside `pixels` (`Source::new`); masked-off lanes read
            // nothing; unaligned gathers are allowed.
            let (top, bottom) = unsafe {
                (
                    _mm512_mask_i32gather_epi32::<1>(zero, live, index, base),
                    _mm512_mask_i32gather_epi32::<1>(zero, live, _mm512_add_epi32(index, stride), base),
                )
            };
            let weights = _mm512_or_si512(_mm512_sub_epi32(full, wx), _mm512_slli_epi32::<16>(wx));
            let top = _mm512_madd_epi16(_mm512_shuffle_epi8(top, pairs), weights);
            let bottom = _mm512_madd_epi16(_mm512_shuffle_epi8(bottom, pairs), weights);
            // top * (256 - wy) + bottom * wy, as top * 256 + (bottom - top) * wy: under 2^24.
            let blend = _mm512_add_epi32(
                _mm512_slli_epi32::<8>(top),
                _mm512_mullo_epi32(_mm512_sub_epi32(bottom, top), wy),
            );
            let value = _mm512_srli_epi32::<16>(_mm512_add_epi32(blend, round));
            let keep = _mm512_mask_cmpgt_epi32_mask(mask, value, below);
            // SAFETY: as for the zeros above.
            unsafe { _mm512_mask_cvtepi32_storeu_epi8(to, mask, _mm512_maskz_mov_epi32(keep, value)) };
            px = _mm512_add_epi32(px, next_x);
            py = _mm512_add_epi32(py, next_y);
        }
    }
}

#[cfg(target_arch = "x86_64")]
const FRAC_BITS_U: u32 = FRAC_BITS;
#[cfg(target_arch = "x86_64")]
const WEIGHT_SHIFT_U: u32 = FRAC_BITS - 8;
#[cfg(target_arch = "x86_64")]
const FRAC_BITS_I: i32 = FRAC_BITS as i32;
#[cfg(target_arch = "x86_64")]
const WEIGHT_SHIFT: i32 = FRAC_BITS as i32 - 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift: the test's own random numbers.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn range(&mut self, lo: i32, hi: i32) -> i32 {
            lo + (self.next() % (hi - lo + 1) as u64) as i32
        }
    }

    /// A random image of 1 to 40 pixels a side, with a 2-pixel zero border as the blend
    /// expects, its ink (random bytes) in a random rectangle of it.
    struct Image {
        pixels: Vec<u8>,
        stride: usize,
        max: (i32, i32),
        /// The ink's columns and rows, inclusive, in padded pixels.
        ink: ((i32, i32), (i32, i32)),
    }

    impl Image {
        fn random(rng: &mut Rng) -> Image {
            let (w, h) = (rng.range(1, 40), rng.range(1, 40));
            let stride = w as usize + 4;
            let mut pixels = vec![0u8; stride * (h as usize + 4) + 4];
            let x0 = rng.range(2, w + 1);
            let y0 = rng.range(2, h + 1);
            let ink = ((x0, rng.range(x0, w + 1)), (y0, rng.range(y0, h + 1)));
            for y in ink.1 .0..=ink.1 .1 {
                for x in ink.0 .0..=ink.0 .1 {
                    pixels[y as usize * stride + x as usize] = rng.next() as u8;
                }
            }
            Image { pixels, stride, max: ((w + 2) << FRAC_BITS, (h + 2) << FRAC_BITS), ink }
        }

        /// The image as a source, blends under `cutoff` dropped.
        fn source(&self, cutoff: u8) -> Source<'_> {
            Source::new(&self.pixels, self.stride, self.max.0, self.max.1).with_cutoff(cutoff)
        }
    }

    /// Coordinates up to 64 pixels beyond the image either way (fixed point).
    const SPAN: i32 = 1 << (FRAC_BITS + 6);

    /// Random displacement fields of `len` values and their signs.
    fn random_fields(rng: &mut Rng, len: usize) -> (Vec<i32>, Vec<i32>, i32, i32) {
        let fx = (0..len).map(|_| rng.range(-SPAN, SPAN)).collect();
        let fy = (0..len).map(|_| rng.range(-SPAN, SPAN)).collect();
        let mut sign = || if rng.next() & 1 == 0 { 1 } else { -1 };
        (fx, fy, sign(), sign())
    }

    #[test]
    fn every_level_gives_the_portable_bytes() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..2000 {
            let image = Image::random(&mut rng);
            let cutoff = if case % 2 == 0 { 0 } else { rng.range(1, 255) as u8 };
            let source = image.source(cutoff);
            let len = rng.range(0, 45) as usize;
            let (fx, fy, sx, sy) = random_fields(&mut rng, len);
            let field = (case % 3 != 0).then_some((&fx[..], &fy[..], sx, sy));
            let row = Row {
                start: (rng.range(-SPAN, SPAN), rng.range(-SPAN, SPAN)),
                step: (rng.range(-8192, 8192), rng.range(-8192, 8192)),
                field,
            };
            let mut want = vec![0u8; len];
            blend_row_portable(&source, &row, &mut want);
            for isa in Isa::available() {
                let mut got = vec![0xAAu8; len];
                blend_row(isa, &source, &row, &mut got);
                assert_eq!(got, want, "case {case}, {:?}, row of {len}", isa.level());
            }
        }
    }

    #[test]
    fn every_level_blends_a_grid_as_the_portable_rows() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for case in 0..1000 {
            let image = Image::random(&mut rng);
            let cutoff = if case % 2 == 0 { 0 } else { rng.range(1, 255) as u8 };
            // The reference reads every pixel; the kernels may skip where the ink's box
            // says there is none.
            let source = image.source(cutoff);
            let told = if case % 4 == 0 { source } else { source.with_ink(image.ink.0, image.ink.1) };
            let (rows, width) = (rng.range(0, 6) as usize, rng.range(0, 40) as usize);
            let stride = width + rng.range(0, 5) as usize;
            let len = rows.saturating_sub(1) * stride + width;
            let (fx, fy, sx, sy) = random_fields(&mut rng, len);
            let field = (case % 3 != 0).then_some((&fx[..], &fy[..], sx, sy));
            let starts: Vec<(i32, i32)> =
                (0..rows).map(|_| (rng.range(-SPAN, SPAN), rng.range(-SPAN, SPAN))).collect();
            let step = (rng.range(-8192, 8192), rng.range(-8192, 8192));
            let grid = Grid { starts: &starts, step, width, stride, field };
            // The reference: each row by the portable blend; the gaps between rows untouched.
            let mut want = vec![0xAAu8; len];
            for r in 0..rows {
                let at = r * stride;
                blend_row_portable(&source, &grid.row(r), &mut want[at..at + width]);
            }
            for isa in Isa::available() {
                let mut got = vec![0xAAu8; len];
                blend_grid(isa, &told, &grid, &mut got);
                assert_eq!(
                    got,
                    want,
                    "case {case}, {:?}, {rows} rows of {width}, stride {stride}",
                    isa.level()
                );
            }
        }
    }

    #[test]
    fn a_whole_pixel_step_copies_and_a_half_pixel_step_averages() {
        let pixels: Vec<u8> = (0..8 * 4 + 4).map(|v| (v * 7) as u8).collect();
        let source = Source::new(&pixels, 8, 6 << FRAC_BITS, 2 << FRAC_BITS);
        let one = 1 << FRAC_BITS;
        for isa in Isa::available() {
            let mut out = [0u8; 6];
            let row = Row { start: (0, one), step: (one, 0), field: None };
            blend_row(isa, &source, &row, &mut out);
            assert_eq!(out, [56, 63, 70, 77, 84, 91], "{:?}", isa.level());
            let row = Row { start: (one / 2, one), step: (one, 0), field: None };
            let mut out = [0u8; 9];
            blend_row(isa, &source, &Row { step: (one / 2, 0), ..row }, &mut out);
            // Between 56 + 7k and its neighbour: the mean of the two, rounded half up.
            assert_eq!(out[..3], [60, 63, 67], "{:?}", isa.level());
            let mut out = [0u8; 9];
            let faint = Row { step: (one / 2, 0), ..row };
            blend_row(isa, &source.with_cutoff(63), &faint, &mut out);
            assert_eq!(out[..3], [0, 63, 67], "{:?}", isa.level());
        }
    }

    #[test]
    #[should_panic(expected = "do not hold taps")]
    fn a_source_too_short_for_its_bounds_is_refused() {
        let pixels = [0u8; 30];
        let _ = Source::new(&pixels, 8, 6 << FRAC_BITS, 2 << FRAC_BITS);
    }
}
