//! Special functions in f64, written here so the reference shares no math with core
//! (core uses libm's f32 `erff`; the tests cross-check these against libm's f64 `erf`).

/// `2 / √π`.
const TWO_OVER_SQRT_PI: f64 = core::f64::consts::FRAC_2_SQRT_PI;
/// `1 / √π`.
const ONE_OVER_SQRT_PI: f64 = core::f64::consts::FRAC_2_SQRT_PI * 0.5;
/// `1 / √(2π)`.
pub const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// The error function, within about 1e-15 relative (a few ulp); the reference needs ~1e-12.
///
/// For `|x| < 2`: the everywhere-convergent series with positive terms (Abramowitz &
/// Stegun 7.1.6) `erf x = 2/√π e^{-x²} Σ_n 2^n x^{2n+1} / (1·3·…·(2n+1))`, which has no
/// cancellation. For `|x| >= 2`: `1 - erfc x` with erfc from its continued fraction
/// (A&S 7.1.14), evaluated bottom-up.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let v = if ax < 2.0 {
        let two_x2 = 2.0 * ax * ax;
        let mut term = ax;
        let mut sum = ax;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= two_x2 / (2.0 * n + 1.0);
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        TWO_OVER_SQRT_PI * (-ax * ax).exp() * sum
    } else {
        1.0 - erfc_cf(ax)
    };
    if x < 0.0 {
        -v
    } else {
        v
    }
}

/// `erfc x` for `x >= 2` (200 terms: converged to double precision there) by the continued fraction
/// `erfc x = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`.
fn erfc_cf(x: f64) -> f64 {
    if x > 27.0 {
        return 0.0;
    }
    let mut f = x;
    for k in (1..=200).rev() {
        f = x + (k as f64 * 0.5) / f;
    }
    ONE_OVER_SQRT_PI * (-x * x).exp() / f
}

/// The standard normal CDF `Φ(x) = (1 + erf(x/√2)) / 2`.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x * core::f64::consts::FRAC_1_SQRT_2))
}

/// The standard normal density `φ(x)`.
pub fn normal_pdf(x: f64) -> f64 {
    FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
}

/// The logistic sigmoid, stable for large `|x|`.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^x)`, stable for large `|x|`.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}
