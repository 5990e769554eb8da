//! The vector operations shared by the zero-skipping kernels ([`super::sparse`]) and our
//! SGEMM ([`super::gemm`]): their loops are written once against [`Simd`] and compiled for
//! each instruction set through these implementations.

/// The few vector operations the kernels' loops need, for one instruction set. Every method
/// is `unsafe`: it may only run on a CPU with that instruction set, which the callers ensure
/// by calling the loops from `#[target_feature]` functions chosen by [`super::Isa`].
pub(crate) trait Simd {
    /// A vector of `LANES` f32s.
    type V: Copy;
    /// Lanes per vector.
    const LANES: usize;
    /// # Safety
    /// The CPU has this instruction set.
    unsafe fn zero() -> Self::V;
    /// # Safety
    /// As for `zero`, and `p` points to `LANES` readable f32s.
    unsafe fn load(p: *const f32) -> Self::V;
    /// # Safety
    /// As for `zero`, and `p` points to `LANES` writable f32s.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// # Safety
    /// As for `zero`.
    unsafe fn splat(v: f32) -> Self::V;
    /// `a + b`.
    /// # Safety
    /// As for `zero`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `a · b + c`.
    /// # Safety
    /// As for `zero`.
    unsafe fn madd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
}

/// Four lanes of plain arithmetic, which LLVM maps onto SSE2: the baseline.
pub(crate) struct Baseline4;

impl Simd for Baseline4 {
    type V = [f32; 4];
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> [f32; 4] {
        [0.0; 4]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 4] {
        // SAFETY: the caller guarantees 4 readable f32s at `p`.
        unsafe { p.cast::<[f32; 4]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 4]) {
        // SAFETY: the caller guarantees 4 writable f32s at `p`.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> [f32; 4] {
        [v; 4]
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        core::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    unsafe fn madd(a: [f32; 4], b: [f32; 4], c: [f32; 4]) -> [f32; 4] {
        core::array::from_fn(|l| c[l] + a[l] * b[l])
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::Simd;

    /// AVX-512F: 16 lanes.
    pub(crate) struct Avx512;

    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F and 16 readable f32s.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: the caller guarantees AVX-512F and 16 writable f32s.
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn madd(a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
    }

    /// AVX2 + FMA: 8 lanes.
    pub(crate) struct Avx2;

    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            // SAFETY: the caller guarantees AVX2.
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees AVX2 and 8 readable f32s.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: the caller guarantees AVX2 and 8 writable f32s.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            // SAFETY: the caller guarantees AVX2.
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            // SAFETY: the caller guarantees AVX.
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn madd(a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: the caller guarantees FMA.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
    }
}
