//! The transcendental functions core uses, in one place so that the `micromath` feature can
//! swap all of them at once.
//!
//! Default: `libm`, a port of musl's correctly rounded-or-close implementations, identical
//! on every target. With `micromath`: fast approximations (a few ULP to ~1e-4 relative error)
//! for small cores without an FPU or with a slow one; `tanh` and `erf` are then built from
//! the approximate `exp`.

#[cfg(not(feature = "micromath"))]
mod imp {
    #[inline]
    pub fn exp(x: f32) -> f32 {
        libm::expf(x)
    }
    #[inline]
    pub fn ln(x: f32) -> f32 {
        libm::logf(x)
    }
    /// On x86-64 the SSE2 intrinsic (correctly rounded, like libm's): unlike libm's inline
    /// assembly, LLVM sees through it and vectorizes loops such as Adam's update.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline]
    pub fn sqrt(x: f32) -> f32 {
        use core::arch::x86_64::{_mm_cvtss_f32, _mm_set_ss, _mm_sqrt_ss};
        // SAFETY: these SSE2 intrinsics only need the `sse2` target feature, which the `cfg`
        // above guarantees is enabled for the whole build; they touch no memory.
        unsafe { _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    #[inline]
    pub fn sqrt(x: f32) -> f32 {
        libm::sqrtf(x)
    }
    #[inline]
    pub fn cos(x: f32) -> f32 {
        libm::cosf(x)
    }
    #[inline]
    pub fn tanh(x: f32) -> f32 {
        libm::tanhf(x)
    }
    #[inline]
    pub fn erf(x: f32) -> f32 {
        libm::erff(x)
    }
    #[inline]
    pub fn ln_1p(x: f32) -> f32 {
        libm::log1pf(x)
    }
}

#[cfg(feature = "micromath")]
mod imp {
    use micromath::F32Ext;

    #[inline]
    pub fn exp(x: f32) -> f32 {
        F32Ext::exp(x)
    }
    #[inline]
    pub fn ln(x: f32) -> f32 {
        F32Ext::ln(x)
    }
    #[inline]
    pub fn sqrt(x: f32) -> f32 {
        F32Ext::sqrt(x)
    }
    #[inline]
    pub fn cos(x: f32) -> f32 {
        F32Ext::cos(x)
    }
    #[inline]
    pub fn tanh(x: f32) -> f32 {
        // tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) <= 1: no overflow.
        let e = exp(-2.0 * x.abs());
        let t = (1.0 - e) / (1.0 + e);
        if x < 0.0 {
            -t
        } else {
            t
        }
    }
    #[inline]
    pub fn erf(x: f32) -> f32 {
        // Abramowitz & Stegun 7.1.26, absolute error <= 1.5e-7 with exact exp.
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let poly = t
            * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
        let y = 1.0 - poly * exp(-x * x);
        if x < 0.0 {
            -y
        } else {
            y
        }
    }
    #[inline]
    pub fn ln_1p(x: f32) -> f32 {
        ln(1.0 + x)
    }
}

pub use imp::*;

/// Logistic sigmoid, stable for large |x| (never computes exp of a large positive number).
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + exp(-x))
    } else {
        let e = exp(x);
        e / (1.0 + e)
    }
}
