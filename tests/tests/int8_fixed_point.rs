//! The fixed-point requantization primitives against independent references: the exact
//! rational semantics in i128, and the real-valued product in f64.

use mlp::int8::fixed::{
    multiply_by_quantized_multiplier, rounding_divide_by_pot, saturating_rounding_doubling_high_mul,
};
use mlp::int8::quantize_multiplier;
use proptest::prelude::*;

/// TFLite's QuantizeMultiplier, re-derived without frexp: find `e` with
/// `2^(e-1) <= m < 2^e` by exact doubling/halving, then round `m · 2^(31-e)`.
fn reference_multiplier(m: f64) -> (i32, i32) {
    if m <= 0.0 {
        return (0, 0);
    }
    let mut e = 0i32;
    let mut mant = m;
    while mant >= 1.0 {
        mant /= 2.0;
        e += 1;
    }
    while mant < 0.5 {
        mant *= 2.0;
        e -= 1;
    }
    let scaled = mant * 2f64.powi(31); // exact: a power-of-two scaling
    let mut q = (scaled + 0.5).floor() as i64; // half away from zero, for a positive value
    if q == 1 << 31 {
        q = 1 << 30;
        e += 1;
    }
    if e < -31 {
        (0, 0)
    } else if e > 30 {
        (i32::MAX, 30)
    } else {
        (q as i32, e)
    }
}

/// `SaturatingRoundingDoublingHighMul` as a rational: `floor((a·b + 2^30) / 2^31)`, i.e.
/// `a·b / 2^31` rounded to nearest with ties toward +∞.
fn reference_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    ((a as i128 * b as i128 + (1 << 30)).div_euclid(1 << 31)) as i32
}

/// `RoundingDivideByPOT` as a rational: `x / 2^e` rounded to nearest, ties away from zero.
fn reference_div_pot(x: i32, e: i32) -> i32 {
    if e == 0 {
        return x;
    }
    let (mag, half) = ((x as i128).abs(), 1i128 << (e - 1));
    let q = (mag + half) >> e;
    (if x < 0 { -q } else { q }) as i32
}

fn reference_mbqm(x: i32, m: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    reference_div_pot(reference_high_mul(x.wrapping_mul(1 << left), m), right)
}

#[test]
fn quantize_multiplier_matches_the_reference_over_a_sweep() {
    let mut checked = 0;
    // Log-uniform from 2^-40 to 2^35, plus the edges where rounding carries into the exponent.
    let mut m = 2f64.powi(-40);
    while m < 2f64.powi(35) {
        for v in [m, m * 1.000_000_1, m * 0.999_999_999_9, m * 1.7] {
            assert_eq!(quantize_multiplier(v), reference_multiplier(v), "M = {v:e}");
            checked += 1;
        }
        m *= 1.013;
    }
    for k in -40..35 {
        let p = 2f64.powi(k);
        for v in [p, p * (1.0 - 2f64.powi(-33)), p * (1.0 - 2f64.powi(-31)), p * (1.0 + 2f64.powi(-32))] {
            assert_eq!(quantize_multiplier(v), reference_multiplier(v), "M = {v:e}");
            checked += 1;
        }
    }
    assert!(checked > 10_000);
    assert_eq!(quantize_multiplier(0.0), (0, 0));
    assert_eq!(quantize_multiplier(-1.0), (0, 0));
    assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
    assert_eq!(quantize_multiplier(f64::INFINITY), (0, 0));
    // Rounding up to 2^31 renormalizes: 1 - 2^-33 is 2^30 with shift 1.
    assert_eq!(quantize_multiplier(1.0 - 2f64.powi(-33)), (1 << 30, 1));
}

#[test]
fn high_mul_and_divide_match_the_rational_definitions_at_the_edges() {
    let edges =
        [i32::MIN, i32::MIN + 1, -(1 << 30), -65_536, -3, -2, -1, 0, 1, 2, 3, 65_535, 1 << 30, i32::MAX];
    for &a in &edges {
        for &b in &edges {
            assert_eq!(saturating_rounding_doubling_high_mul(a, b), reference_high_mul(a, b), "{a} {b}");
        }
        for e in 0..=31 {
            assert_eq!(rounding_divide_by_pot(a, e), reference_div_pot(a, e), "{a} >> {e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn quantize_multiplier_is_within_half_an_ulp_of_q31(v in 1e-9f64..1e9f64) {
        let (m, s) = quantize_multiplier(v);
        prop_assert_eq!((m, s), reference_multiplier(v));
        prop_assert!(m >= 1 << 30);
        let back = m as f64 * 2f64.powi(s - 31);
        prop_assert!((back - v).abs() <= v * 2f64.powi(-31), "{v} -> {m} {s} = {back}");
    }

    #[test]
    fn high_mul_matches_exact_rational(a in any::<i32>(), b in any::<i32>()) {
        prop_assert_eq!(saturating_rounding_doubling_high_mul(a, b), reference_high_mul(a, b));
    }

    #[test]
    fn divide_by_pot_matches_exact_rational(x in any::<i32>(), e in 0i32..=31) {
        prop_assert_eq!(rounding_divide_by_pot(x, e), reference_div_pot(x, e));
    }

    #[test]
    fn mbqm_matches_exact_rational(x in any::<i32>(), m in (1i32 << 30)..=i32::MAX, shift in -31i32..=30) {
        prop_assert_eq!(multiply_by_quantized_multiplier(x, m, shift), reference_mbqm(x, m, shift));
    }

    /// The requantization of an accumulator by a real multiplier, against f64: two roundings
    /// of at most half a unit each, plus the Q31 representation error of the multiplier
    /// (relative 2^-31), bound the difference by `1 + |acc · M| · 2^-31`.
    #[test]
    fn requantization_is_within_one_unit_of_the_real_product(
        acc in -(1i32 << 24)..(1i32 << 24),
        log_m in -20.0f64..2.0,
    ) {
        let real = 2f64.powf(log_m);
        let (m, s) = quantize_multiplier(real);
        let got = multiply_by_quantized_multiplier(acc, m, s) as f64;
        let want = acc as f64 * real;
        prop_assert!((got - want).abs() <= 1.0 + want.abs() * 2f64.powi(-31) + 1e-9,
            "acc {acc} · {real} = {want}, got {got}");
    }
}
