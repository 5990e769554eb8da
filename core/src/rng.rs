//! A small deterministic random number generator: same seed, same numbers, on every platform.
//!
//! The generator is **xoshiro128\*\*** (Blackman & Vigna, 2018): 128 bits of state in four
//! `u32` words, 32-bit output, period 2^128 - 1. It only uses 32-bit integer operations, so it
//! is as fast on a Cortex-M0 as on a desktop. The 64-bit seed is expanded into the state with
//! **SplitMix64** (Steele, Lea & Flood), which never yields the all-zero state that xoshiro
//! must avoid.
//!
//! Floats are derived without platform-dependent math except where stated:
//! [`Rng::uniform`] takes the top 24 bits (exactly representable in `f32`), and
//! [`Rng::normal`] uses the Box-Muller transform (through `ln`, `sqrt` and `cos`, which come
//! from `libm`, or from `micromath` with that feature).

use crate::math;

/// xoshiro128\*\* seeded by SplitMix64. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u32; 4],
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub const fn new(seed: u64) -> Self {
        let mut sm = seed;
        let a = splitmix64(&mut sm);
        let b = splitmix64(&mut sm);
        Rng { s: [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32] }
    }

    /// The next 32 uniformly distributed bits.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 9;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(11);
        result
    }

    /// The next 64 uniformly distributed bits (two outputs, high word first).
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        (hi << 32) | self.next_u32() as u64
    }

    /// A uniform integer in `0..n` without modulo bias (Lemire's multiply-shift with
    /// rejection). Returns 0 when `n` is 0.
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = self.next_u32() as u64 * n as u64;
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }

    /// A uniform `f32` in `[0, 1)`, with 24 random bits.
    #[inline]
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// A uniform `f32` in `[low, high)`.
    #[inline]
    pub fn uniform_in(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.uniform()
    }

    /// A standard normal sample (mean 0, variance 1) by Box-Muller.
    pub fn normal(&mut self) -> f32 {
        // u1 in (0, 1]: never 0, so ln(u1) is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        math::sqrt(-2.0 * math::ln(u1)) * math::cos(core::f32::consts::TAU * u2)
    }

    /// Fisher-Yates shuffle of `items` in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        let mut i = items.len();
        while i > 1 {
            // `i <= items.len()`, which a slice keeps below isize::MAX; clamp for u32.
            let bound = if i > u32::MAX as usize { u32::MAX } else { i as u32 };
            let j = self.below(bound) as usize;
            i -= 1;
            items.swap(i, j);
        }
    }
}

const fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_seeds_differ() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let mut differs = false;
        for _ in 0..100 {
            let x = a.next_u32();
            assert_eq!(x, b.next_u32());
            differs |= x != c.next_u32();
        }
        assert!(differs);
    }

    #[test]
    fn splitmix64_matches_the_published_reference() {
        // First outputs of SplitMix64 from seed 1234567, as printed by Vigna's splitmix64.c.
        let mut s = 1_234_567u64;
        assert_eq!(splitmix64(&mut s), 6_457_827_717_110_365_317);
        assert_eq!(splitmix64(&mut s), 3_203_168_211_198_807_973);
    }

    #[test]
    fn xoshiro128starstar_matches_an_independent_transcription() {
        // Computed by a Python transcription of Vigna's xoshiro128starstar.c, seeded the same
        // way (two SplitMix64 outputs from 7, low word first).
        let mut rng = Rng::new(7);
        let expected = [1_801_096_769u32, 1_554_325_924, 2_992_800_842, 3_588_980_540];
        for e in expected {
            assert_eq!(rng.next_u32(), e);
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = rng.below(10) as usize;
            assert!(v < 10);
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let mut rng = Rng::new(3);
        let n = 20_000;
        let (mut su, mut sn, mut sn2) = (0.0f64, 0.0f64, 0.0f64);
        for _ in 0..n {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
            su += u as f64;
            let z = rng.normal() as f64;
            assert!(z.is_finite());
            sn += z;
            sn2 += z * z;
        }
        let n = n as f64;
        assert!((su / n - 0.5).abs() < 0.01);
        assert!((sn / n).abs() < 0.03);
        assert!((sn2 / n - 1.0).abs() < 0.05);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v = [0u32; 50];
        for (i, x) in v.iter_mut().enumerate() {
            *x = i as u32;
        }
        Rng::new(9).shuffle(&mut v);
        let mut sorted = v;
        sorted.sort_unstable();
        assert!(sorted.iter().enumerate().all(|(i, &x)| x == i as u32));
        assert_ne!(v, sorted);
    }
}
