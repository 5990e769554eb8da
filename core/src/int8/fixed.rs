//! gemmlowp's fixed-point primitives as TFLite uses them for requantization. Integer only.
//!
//! A real multiplier `M > 0` is stored as a Q31 `multiplier` in `[2^30, 2^31)` and a power-of-two
//! `shift` with `M ≈ multiplier · 2^(shift - 31)` (see
//! [`quantize_multiplier`](super::quantize_multiplier)).

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: the high 32 bits of `2 · a · b`, rounded
/// (ties toward +∞: `(a·b + 2^30) / 2^31` for `a·b ≥ 0`, `(a·b + 1 - 2^30) / 2^31`
/// truncated toward 0 otherwise). The one overflowing case, `a = b = i32::MIN`, saturates to
/// `i32::MAX`.
#[inline]
pub const fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, ties away from 0.
/// `exponent` is clamped to `[0, 31]`.
#[inline]
pub const fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let e = if exponent < 0 {
        0
    } else if exponent > 31 {
        31
    } else {
        exponent
    };
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + if x < 0 { 1 } else { 0 };
    (x >> e) + if remainder > threshold { 1 } else { 0 }
}

/// TFLite's `MultiplyByQuantizedMultiplier`:
/// `RoundingDivideByPOT(SRDHM(x · 2^max(shift, 0), multiplier), max(-shift, 0))`.
///
/// `shift` is clamped to `[-31, 30]` (the range model files allow). The left shift wraps on
/// overflow (TFLite leaves it undefined; quantized models never reach it, and wrapping is what
/// Cortex-M and x86 hardware do).
#[inline]
pub const fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let s = if shift < -31 {
        -31
    } else if shift > 30 {
        30
    } else {
        shift
    };
    let left = if s > 0 { s } else { 0 };
    let right = if s > 0 { 0 } else { -s };
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x.wrapping_mul(1 << left), multiplier),
        right,
    )
}

/// How `MultiplyByQuantizedMultiplier` rounds: the two variants TFLite compiles, chosen by
/// `TFLITE_SINGLE_ROUNDING`. A model file says which one its integers follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rounding {
    /// gemmlowp's two roundings, [`multiply_by_quantized_multiplier`]: TFLite's default
    /// build and TFLite Micro's reference kernels; what `quantize` writes.
    #[default]
    Double,
    /// One rounding, [`multiply_by_quantized_multiplier_single_rounding`]: TFLite built with
    /// `TFLITE_SINGLE_ROUNDING` (LiteRT's PyPI wheels, measured: ai-edge-litert 2.3.0).
    Single,
}

/// TFLite's `MultiplyByQuantizedMultiplier` under `TFLITE_SINGLE_ROUNDING`:
/// `(x · multiplier + 2^(30 - shift)) >> (31 - shift)` in 64 bits, one rounding (ties toward
/// +∞). `shift` is clamped to `[-31, 30]`; the result saturates to the `i32` range (TFLite
/// only DCHECKs it).
#[inline]
pub const fn multiply_by_quantized_multiplier_single_rounding(x: i32, multiplier: i32, shift: i32) -> i32 {
    let s = if shift < -31 {
        -31
    } else if shift > 30 {
        30
    } else {
        shift
    };
    let total = (31 - s) as u32;
    let v = (x as i64 * multiplier as i64 + (1i64 << (total - 1))) >> total;
    if v > i32::MAX as i64 {
        i32::MAX
    } else if v < i32::MIN as i64 {
        i32::MIN
    } else {
        v as i32
    }
}

/// [`requantize`] with the multiplication rounded as `rounding` says.
#[inline]
pub const fn requantize_rounded(
    rounding: Rounding,
    acc: i32,
    multiplier: i32,
    shift: i32,
    zero_point: i32,
    lo: i32,
    hi: i32,
) -> i8 {
    let m = match rounding {
        Rounding::Double => multiply_by_quantized_multiplier(acc, multiplier, shift),
        Rounding::Single => multiply_by_quantized_multiplier_single_rounding(acc, multiplier, shift),
    };
    clamp_i8(m.saturating_add(zero_point), lo, hi)
}

const fn clamp_i8(v: i32, lo: i32, hi: i32) -> i8 {
    let v = if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    };
    v as i8
}

/// Requantizes an int32 accumulator to int8: `clamp(MBQM(acc) + zero_point, lo, hi)`.
#[inline]
pub const fn requantize(acc: i32, multiplier: i32, shift: i32, zero_point: i32, lo: i32, hi: i32) -> i8 {
    let v = multiply_by_quantized_multiplier(acc, multiplier, shift).saturating_add(zero_point);
    let v = if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    };
    v as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_mul_examples_from_the_definition() {
        // 0.5 · 0.5 in Q31 is 0.25.
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 30, 1 << 30), 1 << 29);
        assert_eq!(saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN), i32::MAX);
        // a·b = 2^30 is exactly half of 2^31: rounds up; -2^30 rounds toward +∞ (to 0).
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 15, 1 << 15), 1);
        assert_eq!(saturating_rounding_doubling_high_mul(-(1 << 15), 1 << 15), 0);
    }

    #[test]
    fn divide_by_pot_rounds_half_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 3), 1);
        assert_eq!(rounding_divide_by_pot(-4, 3), -1);
        assert_eq!(rounding_divide_by_pot(3, 3), 0);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(rounding_divide_by_pot(7, 0), 7);
    }

    #[test]
    fn single_rounding_rounds_once() {
        // 0.5 · 2^-7 (multiplier 2^30, shift -7): 192 · 2^-8 = 0.75 -> 1; -0.75 -> -1.
        assert_eq!(multiply_by_quantized_multiplier_single_rounding(192, 1 << 30, -7), 1);
        assert_eq!(multiply_by_quantized_multiplier_single_rounding(-192, 1 << 30, -7), -1);
        // Ties go toward +∞: 128 · 2^-8 = 0.5 -> 1, -0.5 -> 0 (double rounding gives -1).
        assert_eq!(multiply_by_quantized_multiplier_single_rounding(128, 1 << 30, -7), 1);
        assert_eq!(multiply_by_quantized_multiplier_single_rounding(-128, 1 << 30, -7), 0);
        assert_eq!(multiply_by_quantized_multiplier(-128, 1 << 30, -7), -1);
        // Off ties (a Keras layer, measured in LiteRT): 8115 · 1202429194 / 2^38 = 35.4998...;
        // SRDHM first rounds it to 4543.99... -> 4544 = 35.5 · 2^7, and RDBP rounds that up.
        assert_eq!(multiply_by_quantized_multiplier_single_rounding(8115, 1202429194, -7), 35);
        assert_eq!(multiply_by_quantized_multiplier(8115, 1202429194, -7), 36);
        assert_eq!(requantize_rounded(Rounding::Single, 100, 1 << 30, 0, 3, -128, 127), 53);
    }

    #[test]
    fn requantize_clamps() {
        // multiplier 2^30 with shift 0 is 0.5.
        assert_eq!(requantize(100, 1 << 30, 0, 3, -128, 127), 53);
        assert_eq!(requantize(1000, 1 << 30, 0, 0, -128, 127), 127);
        assert_eq!(requantize(-1000, 1 << 30, 0, -10, -10, 127), -10);
    }
}
