//! Skipping what contributes nothing. An input equal to the layer's input zero point
//! (`x == -input_offset`) adds `0 · w` to every sum: with zero point -128 that is every blank
//! pixel (about 80% of an MNIST image) and every ReLU zero. [`Runs`] finds the stretches of a
//! sample that are not blank, in groups of 4 inputs, as runs of whole 8-input steps the
//! kernels' inner loops take; the kernels multiply only those. The sums are exactly
//! `PortableInt8`'s: what is left out is exactly zero, and the sums wrap modulo 2^32 in any
//! order.

#[cfg(not(mlp_dsp))]
use mlp::int8::Int8Kernels;
#[cfg(not(mlp_dsp))]
use mlp::int8::PortableInt8;
use mlp::int8::{fixed, Int8Layer, Rounding};
#[cfg(not(mlp_dsp))]
use mlp::Shape;

/// Inputs per blank test (one word of int8 inputs).
#[cfg(not(mlp_dsp))]
const GROUP: usize = 4;

/// The non-blank runs of one sample: `(start, len)`, `start` a multiple of 4, `len` a
/// multiple of 8 and at most `max_len`, in order, disjoint, inside the sample. Every input
/// outside them equals the zero point. A single blank group between two runs is taken into
/// one run: its four zeros cost less than a second run's setup.
#[cfg(not(mlp_dsp))]
pub struct Runs<'a> {
    x: &'a [i8],
    zero: i8,
    /// The next group to look at.
    g: usize,
    /// The rest of a run longer than `max_len`: (start, len).
    rest: (usize, usize),
    max_len: usize,
}

#[cfg(not(mlp_dsp))]
impl<'a> Runs<'a> {
    /// The runs of `x` (its length a multiple of 8) for an input offset (minus the zero
    /// point, in `[-127, 128]`); `max_len` a positive multiple of 8.
    pub fn new(x: &'a [i8], input_offset: i32, max_len: usize) -> Runs<'a> {
        Runs { x, zero: input_offset.wrapping_neg() as i8, g: 0, rest: (0, 0), max_len }
    }

    fn blank(&self, g: usize) -> bool {
        let g = &self.x[g * GROUP..(g + 1) * GROUP];
        if cfg!(mlp_core = "m0") {
            // ARMv6-M has no unaligned word loads: bytes, stopping at the first non-blank one.
            g.iter().all(|&v| v == self.zero)
        } else {
            // One (unaligned) word load and compare.
            let word = [g[0] as u8, g[1] as u8, g[2] as u8, g[3] as u8];
            u32::from_ne_bytes(word) == u32::from_ne_bytes([self.zero as u8; GROUP])
        }
    }
}

#[cfg(not(mlp_dsp))]
impl Iterator for Runs<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.rest.1 == 0 {
            let groups = self.x.len() / GROUP;
            while self.g < groups && self.blank(self.g) {
                self.g += 1;
            }
            if self.g == groups {
                return None;
            }
            let mut s = self.g;
            let mut e = s + 1;
            while e < groups {
                if !self.blank(e) {
                    e += 1;
                } else if e + 1 < groups && !self.blank(e + 1) {
                    e += 2;
                } else {
                    break;
                }
            }
            // Whole 8-input steps: take one more blank group, after the run if there is one
            // (group e is blank), else before it (the previous run ended at least two groups
            // before s: a one-group gap would have joined them; `groups` is even, so a run
            // that reaches the end and started at 0 has an even length).
            if (e - s) % 2 == 1 {
                if e < groups {
                    e += 1;
                } else {
                    s -= 1;
                }
            }
            self.g = e;
            self.rest = (s * GROUP, (e - s) * GROUP);
        }
        let (start, len) = self.rest;
        let take = len.min(self.max_len);
        self.rest = (start + take, len - take);
        Some((start, take))
    }
}

/// Core's portable loops on the non-blank runs only: the kernel of the cores without the DSP
/// extension (M0, M3).
#[cfg(not(mlp_dsp))]
#[derive(Clone, Copy, Debug, Default)]
pub struct PortableSkip;

#[cfg(not(mlp_dsp))]
impl Int8Kernels for PortableSkip {
    fn dense_requantize(
        &self,
        shape: Shape,
        x: &[i8],
        input_offset: i32,
        layer: &Int8Layer<'_>,
        acc: &mut [i32],
        y: &mut [i8],
    ) {
        self.dense_i8(shape, x, input_offset, layer.weights(), acc);
        requantize(layer, acc, y);
    }

    fn dense_i8(&self, shape: Shape, x: &[i8], input_offset: i32, w: &[i8], acc: &mut [i32]) {
        let (m, n) = (shape.inputs, shape.outputs);
        if m % 8 != 0 || n == 0 || w.len() < m * n {
            PortableInt8.dense_i8(shape, x, input_offset, w, acc);
            return;
        }
        for (xr, ar) in x.chunks_exact(m).zip(acc.chunks_exact_mut(n)) {
            ar.fill(0);
            for (start, len) in Runs::new(xr, input_offset, m) {
                let xs = &xr[start..start + len];
                for (a, wr) in ar.iter_mut().zip(w.chunks_exact(m)) {
                    *a = dot(*a, xs, input_offset, &wr[start..start + len]);
                }
            }
        }
    }
}

/// [`PortableInt8::requantize`](mlp::int8::PortableInt8::requantize), the same bytes, with
/// fewer instructions: the rounding is decided once per layer (one loop per rounding,
/// [`requantize_one`] for the value), and a shortcut for the sums that end at the bottom of a
/// ReLU's range: with no table, the clamp's low end at or above the output zero point and no
/// left shift, a sum (with bias) `<= 0` times a multiplier `>= 0` (an [`Int8Layer`]'s always
/// are) requantizes to a value `<= 0` under either rounding, so to the zero point or below,
/// clamped to `lo`: the same byte, without the multiply. About half of a hidden layer's
/// outputs take it.
///
/// The lean and M0 builds compile only the rounding their model uses when all its layers
/// round alike ([`MODEL_ROUNDING_ONLY`]).
pub fn requantize(layer: &Int8Layer<'_>, acc: &[i32], y: &mut [i8]) {
    let model = if MODEL_ROUNDING_ONLY { crate::int8_model::ROUNDING } else { None };
    match model.unwrap_or(layer.rounding()) {
        Rounding::Single => requantize_as::<true>(layer, acc, y),
        Rounding::Double => requantize_as::<false>(layer, acc, y),
    }
}

/// Whether [`requantize`] is compiled for the model's rounding alone
/// ([`crate::int8_model::ROUNDING`], when all its layers round alike) instead of both: in the
/// lean build (bytes count there) and on the M0 (the micro:bit's 256 KiB of flash hold the
/// model, 30 images and the demo's checks with a few hundred bytes to spare). Their layers
/// come from that model alone (`int8_model::layers` checks).
pub const MODEL_ROUNDING_ONLY: bool = cfg!(any(feature = "lean", mlp_core = "m0"));

/// [`requantize`] for one rounding: single (TFLite's `TFLITE_SINGLE_ROUNDING`) when `SINGLE`,
/// else gemmlowp's double rounding.
fn requantize_as<const SINGLE: bool>(layer: &Int8Layer<'_>, acc: &[i32], y: &mut [i8]) {
    let n = layer.outputs();
    if n == 0 {
        return;
    }
    let (lo, hi) = layer.clamp_range();
    let table = layer.table();
    let zp = if table.is_some() { layer.pre_zero_point() } else { layer.out_zero_point() };
    // The shortcut as one comparison: `x < cut` is `x <= 0` where it applies, never elsewhere.
    let cut = if table.is_none() && lo >= zp { 1 } else { i32::MIN };
    // The parameters as slices of little-endian words (one load each; core's I32s::iter
    // maps would cost a call per value here).
    let (bias, mult, shift) =
        (layer.bias().as_bytes(), layer.multipliers().as_bytes(), layer.shifts().as_bytes());
    let (bias, mult, shift) = (bias.as_chunks::<4>().0, mult.as_chunks::<4>().0, shift.as_chunks::<4>().0);
    for (ar, yr) in acc.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        for ((y, &a), (b, (m, s))) in yr.iter_mut().zip(ar).zip(bias.iter().zip(mult.iter().zip(shift))) {
            let (b, m, s) = (i32::from_le_bytes(*b), i32::from_le_bytes(*m), i32::from_le_bytes(*s));
            let x = a.wrapping_add(b);
            *y = if x < cut && s <= 0 { lo as i8 } else { requantize_one::<SINGLE>(x, m, s, zp, lo, hi) };
        }
        if let Some(t) = table {
            // q + 128 as an index in 0..=255, as PortableInt8 does.
            yr.iter_mut().for_each(|q| *q = t[(*q as u8 ^ 0x80) as usize]);
        }
    }
}

/// `fixed::requantize_rounded`, the same value, for the parameters an [`Int8Layer`] holds (a
/// multiplier 0 or in `[2^30, 2^31)`, a shift in `[-31, 30]`), with 32-bit steps after one
/// 32 × 32 -> 64-bit multiply. With `u = floor(x·m / 2^31)` and `b` bit 30 of `x·m`:
/// - double rounding: `SaturatingRoundingDoublingHighMul` is `floor((x·m + 2^30) / 2^31) =
///   u + b` for either sign of `x·m` (its nudge `1 - 2^30` for a negative product, with
///   truncation toward zero, gives the same integer), never saturating for `m >= 0`; then
///   `RoundingDivideByPOT` by `-s` as gemmlowp writes it;
/// - single rounding, `s <= -1`: `floor((x·m + 2^(30-s)) / 2^(31-s))` is
///   `floor((u + 2^(e-1)) / 2^e)` with `e = -s`, which is `(u >> e) + bit e-1 of u`; for
///   `s = 0` it is `u + b`.
///
/// Left shifts (`s > 0`, multipliers above 1: rare) go to core's definition. `kernel::self_test`
/// checks both roundings against core's on random and extreme values.
#[inline(always)]
pub fn requantize_one<const SINGLE: bool>(x: i32, m: i32, s: i32, zp: i32, lo: i32, hi: i32) -> i8 {
    let rounding = if SINGLE { Rounding::Single } else { Rounding::Double };
    if s > 0 {
        return fixed::requantize_rounded(rounding, x, m, s, zp, lo, hi);
    }
    let ab = x as i64 * m as i64;
    // |x·m| < 2^62: u fits in i32, and u + b does not overflow.
    let u = (ab >> 31) as i32;
    let b = ((ab as u32) >> 30) as i32 & 1;
    let e = (-s) as u32;
    let v = if SINGLE {
        if e == 0 {
            u + b
        } else {
            (u >> e) + ((u >> (e - 1)) & 1)
        }
    } else {
        let high = u + b;
        let mask = ((1u32 << e) - 1) as i32;
        let threshold = (mask >> 1) + (high < 0) as i32;
        (high >> e) + ((high & mask) > threshold) as i32
    };
    let v = v.saturating_add(zp);
    (if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }) as i8
}

/// `acc + Σ (x[j] + offset) · w[j]`, wrapping.
pub fn dot(acc: i32, x: &[i8], offset: i32, w: &[i8]) -> i32 {
    x.iter().zip(w).fold(acc, |s, (&xv, &wv)| s.wrapping_add((xv as i32 + offset).wrapping_mul(wv as i32)))
}
