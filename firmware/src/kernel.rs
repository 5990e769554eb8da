//! The firmware's int8 kernel for the core it is built for: [`Fast`], plugged into core
//! through [`mlp::int8::Int8Kernels`]; core's `PortableInt8` stays the reference it is
//! checked against.

#[cfg(all(mlp_dsp, not(mlp_core = "m55")))]
pub use crate::dsp::Smlad as Fast;
#[cfg(mlp_core = "m55")]
pub use crate::mve::Mve as Fast;
#[cfg(not(mlp_dsp))]
pub use crate::skip::PortableSkip as Fast;

/// [`Fast`]'s name in the log.
#[cfg(not(any(feature = "lean", feature = "train")))]
pub const NAME: &str = if cfg!(mlp_core = "m55") {
    "Helium"
} else if cfg!(mlp_dsp) {
    "SMLAD"
} else {
    "portable+skip"
};

/// Checks [`Fast`] against [`PortableInt8`](mlp::int8::PortableInt8) on random shapes (tails,
/// odd rows, several blocks, unaligned weights) and random values with extreme offsets and
/// weights, some of the samples with random stretches of blank inputs (equal to the zero
/// point) or randomly blank groups of 4 for the skipping; then the requantization's fast path against core's on random
/// and extreme values. Returns the number of shapes checked, or the first shape that differs
/// (for the requantization: batch 0, the sum and the shift as inputs and outputs).
#[cfg(not(any(feature = "lean", feature = "train")))]
pub fn self_test(rng: &mut mlp::Rng) -> Result<usize, mlp::Shape> {
    use mlp::int8::{fixed, Int8Kernels, PortableInt8, Rounding};
    use mlp::Shape;
    const M: [usize; 13] = [1, 4, 7, 8, 9, 16, 23, 36, 64, 129, 200, 408, 800];
    const N: [usize; 4] = [1, 2, 3, 5];
    let mut x = [0i8; 2 * 800];
    let mut w = [0i8; 2 * 800 + 4];
    let (mut want, mut got) = ([0i32; 10], [0i32; 10]);
    let mut checked = 0;
    for &m in &M {
        // Wide rows with few outputs, to keep this test's stack small.
        for &n in N.iter().filter(|&&n| n * m <= 2 * 800) {
            // blanks: 0 none, 1 random stretches, 2 every group of 4 blank with probability
            // 1/2 (runs of every length, more than a pass's MAX_RUNS in the widest rows).
            for (batch, skew, blanks) in [(1, 0, 0), (2, 0, 0), (1, 1, 0), (1, 0, 1), (2, 0, 1), (1, 0, 2)] {
                let shape = Shape { batch, inputs: m, outputs: n };
                let offset = rng.below(256) as i32 - 127;
                let x = &mut x[..batch * m];
                x.iter_mut().for_each(|v| *v = rng.below(256) as u8 as i8);
                if blanks == 2 {
                    for g in x.chunks_mut(4) {
                        if rng.below(2) == 0 {
                            g.fill(offset.wrapping_neg() as i8);
                        }
                    }
                } else if blanks == 1 {
                    // Stretches of 1 to 40 inputs at the zero point, at random places.
                    for _ in 0..rng.below(12) {
                        let start = rng.below(x.len() as u32) as usize;
                        let len = 1 + rng.below(40) as usize;
                        let end = (start + len).min(x.len());
                        x[start..end].fill(offset.wrapping_neg() as i8);
                    }
                }
                let w = &mut w[skew..skew + n * m];
                w.iter_mut().for_each(|v| *v = (rng.below(255) as i32 - 127) as i8);
                PortableInt8.dense_i8(shape, x, offset, w, &mut want[..batch * n]);
                got.fill(0x5555);
                Fast.dense_i8(shape, x, offset, w, &mut got[..batch * n]);
                if want[..batch * n] != got[..batch * n] {
                    return Err(shape);
                }
                checked += 1;
            }
        }
    }
    // The requantization's fast path against core's definition, both roundings (those the
    // build compiles: skip::MODEL_ROUNDING_ONLY), on the
    // parameters an Int8Layer holds: multipliers 0 or in [2^30, 2^31), shifts in [-31, 30].
    let extremes = [i32::MIN, i32::MIN + 1, -(1 << 30), -65_536, -1, 0, 1, 65_535, 1 << 30, i32::MAX];
    let multipliers = [0, 1 << 30, (1 << 30) + 1, i32::MAX - 1, i32::MAX];
    for i in 0..20_000u32 {
        let x = if i.is_multiple_of(4) {
            extremes[rng.below(extremes.len() as u32) as usize]
        } else {
            rng.next_u32() as i32 >> rng.below(32)
        };
        let m = if i.is_multiple_of(8) {
            multipliers[rng.below(multipliers.len() as u32) as usize]
        } else {
            (1 << 30) | (rng.next_u32() >> 2) as i32
        };
        let s = if i.is_multiple_of(16) { rng.below(62) as i32 - 31 } else { rng.below(36) as i32 - 31 };
        let zp = rng.below(256) as i32 - 128;
        let (lo, hi) = if i.is_multiple_of(2) { (zp.max(-128), 127) } else { (-128, 127) };
        // The roundings this build's requantization is compiled for.
        let compiled = |r: Rounding| {
            !crate::skip::MODEL_ROUNDING_ONLY || crate::int8_model::ROUNDING.is_none_or(|m| m == r)
        };
        let differs = |r: Rounding| {
            let fast = match r {
                Rounding::Double => crate::skip::requantize_one::<false>(x, m, s, zp, lo, hi),
                Rounding::Single => crate::skip::requantize_one::<true>(x, m, s, zp, lo, hi),
            };
            fast != fixed::requantize_rounded(r, x, m, s, zp, lo, hi)
        };
        if (compiled(Rounding::Double) && differs(Rounding::Double))
            || (compiled(Rounding::Single) && differs(Rounding::Single))
        {
            return Err(Shape { batch: 0, inputs: x as usize, outputs: s as usize });
        }
    }
    Ok(checked)
}
