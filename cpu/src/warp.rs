//! Bilinear resampling of byte images along fixed-point source coordinates: the inner loop of
//! the data loader's augmentation (`data::augment`). [`blend_row_portable`] is the reference;
//! [`blend_row`] runs the AVX2 version (8 pixels per step, two gathers) where the CPU has it,
//! and gives the same bytes (integer arithmetic throughout; tested below).

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
        Source { pixels, stride, max_x, max_y, cutoff: 0 }
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

    #[test]
    fn every_level_gives_the_portable_bytes() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..2000 {
            let (w, h) = (rng.range(1, 40) as usize, rng.range(1, 40) as usize);
            let (pw, ph) = (w + 4, h + 4);
            let mut pixels = vec![0u8; pw * ph + 4];
            for y in 2..h + 2 {
                for x in 2..w + 2 {
                    pixels[y * pw + x] = rng.next() as u8;
                }
            }
            let (max_x, max_y) = (((w + 2) << FRAC_BITS) as i32, ((h + 2) << FRAC_BITS) as i32);
            let cutoff = if case % 2 == 0 { 0 } else { rng.range(1, 255) as u8 };
            let source = Source::new(&pixels, pw, max_x, max_y).with_cutoff(cutoff);
            let len = rng.range(0, 45) as usize;
            let span = 1 << (FRAC_BITS + 6);
            let fx: Vec<i32> = (0..len).map(|_| rng.range(-span, span)).collect();
            let fy: Vec<i32> = (0..len).map(|_| rng.range(-span, span)).collect();
            let sign = |r: &mut Rng| if r.next() & 1 == 0 { 1 } else { -1 };
            let field = (case % 3 != 0).then(|| (&fx[..], &fy[..], sign(&mut rng), sign(&mut rng)));
            let row = Row {
                start: (rng.range(-span, span), rng.range(-span, span)),
                step: (rng.range(-8192, 8192), rng.range(-8192, 8192)),
                field,
            };
            let mut want = vec![0u8; len];
            blend_row_portable(&source, &row, &mut want);
            for isa in Isa::available() {
                let mut got = vec![0xAAu8; len];
                blend_row(isa, &source, &row, &mut got);
                assert_eq!(got, want, "case {case}, {:?}, {w}x{h}, row of {len}", isa.level());
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
