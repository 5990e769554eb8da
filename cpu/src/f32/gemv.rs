//! Single-sample forward (`y = W x + b`, a matrix-vector product): the latency path.
//!
//! `W` is `outputs × inputs` row-major, so each output is a dot product of a contiguous row
//! with `x`. Four rows share each loaded chunk of `x`, and 16-value chunks of `x` that are
//! all zero are skipped (most of an MNIST image: its border rows are blank), which halves
//! the weights read for a digit. Written once as plain loops over `[f32; 16]` chunks and
//! compiled for AVX-512, AVX2 + FMA and the baseline, like [`super::sparse`].

use super::sparse::LANES;
use crate::isa::{Isa, Level};

/// Rows of `W` that share one pass over `x`.
const ROWS: usize = 4;

/// `y = W x + bias` for one sample; `active` is scratch of at least `x.len() / 16` entries.
pub fn forward(isa: Isa, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32], active: &mut [u32]) {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` token of level Avx512 exists only after detection confirmed AVX-512F.
        Level::Avx512 => unsafe { x86::avx512(x, w, bias, y, active) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` token of level Avx2 exists only after detection confirmed AVX2 and FMA.
        Level::Avx2 => unsafe { x86::avx2(x, w, bias, y, active) },
        _ => body::<false>(x, w, bias, y, active),
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        c + a * b
    }
}

/// The sum of 16 lanes as a fixed tree (8 + 8, 4 + 4, ...): vectorizes, and is deterministic.
#[inline(always)]
fn lane_sum(a: &[f32; LANES]) -> f32 {
    let mut s8 = [0.0f32; 8];
    for l in 0..8 {
        s8[l] = a[l] + a[l + 8];
    }
    let mut s4 = [0.0f32; 4];
    for l in 0..4 {
        s4[l] = s8[l] + s8[l + 4];
    }
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

#[inline(always)]
fn body<const FMA: bool>(x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32], active: &mut [u32]) {
    let inputs = x.len();
    if inputs == 0 {
        y.copy_from_slice(bias);
        return;
    }
    let full = inputs / LANES;
    let mut n = 0;
    for (c, chunk) in x.chunks_exact(LANES).enumerate() {
        active[n] = c as u32;
        n += chunk.iter().fold(false, |any, v| any | (*v != 0.0)) as usize;
    }
    let active = &active[..n];
    let tail = full * LANES..inputs;
    let mut rows = w.chunks_exact(inputs * ROWS);
    let mut outs = y.chunks_exact_mut(ROWS);
    let mut bias_rows = bias.chunks_exact(ROWS);
    for ((wr, yr), br) in (&mut rows).zip(&mut outs).zip(&mut bias_rows) {
        let mut acc = [[0.0f32; LANES]; ROWS];
        for &c in active {
            let at = c as usize * LANES;
            let xc = &x[at..at + LANES];
            for (r, a) in acc.iter_mut().enumerate() {
                let wc = &wr[r * inputs + at..][..LANES];
                for l in 0..LANES {
                    a[l] = madd::<FMA>(wc[l], xc[l], a[l]);
                }
            }
        }
        for (r, (y, &b)) in yr.iter_mut().zip(br).enumerate() {
            let mut t = 0.0;
            for j in tail.clone() {
                t = madd::<FMA>(wr[r * inputs + j], x[j], t);
            }
            *y = lane_sum(&acc[r]) + t + b;
        }
    }
    // The last outputs % 4 rows, one at a time.
    for ((wr, y), &b) in
        rows.remainder().chunks_exact(inputs).zip(outs.into_remainder()).zip(bias_rows.remainder())
    {
        let mut acc = [0.0f32; LANES];
        for &c in active {
            let at = c as usize * LANES;
            for l in 0..LANES {
                acc[l] = madd::<FMA>(wr[at + l], x[at + l], acc[l]);
            }
        }
        let mut t = 0.0;
        for j in tail.clone() {
            t = madd::<FMA>(wr[j], x[j], t);
        }
        *y = lane_sum(&acc) + t + b;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// [`super::body`] compiled for AVX-512.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn avx512(x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32], active: &mut [u32]) {
        super::body::<true>(x, w, bias, y, active)
    }

    /// [`super::body`] compiled for AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2(x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32], active: &mut [u32]) {
        super::body::<true>(x, w, bias, y, active)
    }
}
