//! The int8 kernel seam: the dense product of integer inference and its requantization.
//! Integer only.

use crate::kernels::Shape;

use super::fixed::requantize_rounded;
use super::view::Int8Layer;

/// The int8 dense product: int8 × int8 products accumulated in int32, per output channel.
///
/// Results are defined modulo 2^32 (wrapping arithmetic), so an implementation may sum in
/// any order, widen to i16 pairs (Cortex-M `SMLAD`), or use `u8 × i8` dot products with a
/// row-sum correction (x86 VNNI) and still be bit-identical to [`PortableInt8`].
pub trait Int8Kernels {
    /// `acc[b][o] = Σ_j (x[b][j] + input_offset) · w[o][j]` (wrapping i32).
    ///
    /// `x`: `batch × inputs`, `w`: `outputs × inputs` (row-major), `acc`: `batch × outputs`
    /// (overwritten). `input_offset` is minus the input zero point, in `[-127, 128]`. Core
    /// always passes slices of exactly these lengths.
    fn dense_i8(&self, shape: Shape, x: &[i8], input_offset: i32, w: &[i8], acc: &mut [i32]);

    /// One whole layer: `y[b][o] = requantize(Σ_j (x[b][j] + input_offset) · W[o][j] + bias[o])`
    /// with the layer's weights, bias, per-channel multiplier and shift, zero point, clamp and
    /// table, exactly as [`PortableInt8::requantize`] defines it. [`forward`](super::forward)
    /// calls this for every layer.
    ///
    /// The provided implementation is [`dense_i8`](Self::dense_i8) into `acc`, then
    /// [`PortableInt8::requantize`]. An implementation may fuse the two (and leave `acc` with
    /// any contents) but must give the same bytes in `y`.
    ///
    /// `shape.inputs == layer.inputs()`, `shape.outputs == layer.outputs()`; `x`:
    /// `batch × inputs`, `acc` (scratch) and `y`: `batch × outputs`. `input_offset` as for
    /// `dense_i8`. Core always passes exactly these lengths.
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
        PortableInt8::requantize(layer, acc, y);
    }
}

/// Plain loops: correct on every target, the reference other int8 kernels are tested against.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortableInt8;

impl PortableInt8 {
    /// The reference requantization of a layer's accumulators: for every row of `acc` (one
    /// sample, `layer.outputs()` long) and its row of `y`, adds the bias, requantizes each
    /// accumulator with its channel's multiplier and shift
    /// ([`fixed::requantize`](super::fixed::requantize), to the pre-activation zero point for a
    /// table layer, else the output zero point, clamped to [`Int8Layer::clamp_range`]; rounded
    /// as [`Int8Layer::rounding`] says), then
    /// looks up the activation table if the layer has one (entry `q + 128`).
    ///
    /// Only whole rows of the shorter of `acc` and `y` are written.
    pub fn requantize(layer: &Int8Layer<'_>, acc: &[i32], y: &mut [i8]) {
        let n = layer.outputs();
        if n == 0 {
            return;
        }
        let (lo, hi) = layer.clamp_range();
        let table = layer.table();
        let zp = if table.is_some() { layer.pre_zero_point() } else { layer.out_zero_point() };
        let (bias, mult, shift) = (layer.bias(), layer.multipliers(), layer.shifts());
        for (ar, yr) in acc.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            let params = bias.iter().zip(mult.iter()).zip(shift.iter());
            for ((y, &a), ((b, m), s)) in yr.iter_mut().zip(ar).zip(params) {
                let q = requantize_rounded(layer.rounding(), a.wrapping_add(b), m, s, zp, lo, hi);
                *y = match table {
                    // q + 128 as an index in 0..=255.
                    Some(t) => t[(q as u8 ^ 0x80) as usize],
                    None => q,
                };
            }
        }
    }
}

impl Int8Kernels for PortableInt8 {
    fn dense_i8(&self, shape: Shape, x: &[i8], input_offset: i32, w: &[i8], acc: &mut [i32]) {
        if shape.inputs == 0 || shape.outputs == 0 {
            acc.fill(0);
            return;
        }
        for (xr, ar) in x.chunks_exact(shape.inputs).zip(acc.chunks_exact_mut(shape.outputs)) {
            for (a, wr) in ar.iter_mut().zip(w.chunks_exact(shape.inputs)) {
                let mut s = 0i32;
                for (&xv, &wv) in xr.iter().zip(wr) {
                    s = s.wrapping_add((xv as i32).wrapping_add(input_offset).wrapping_mul(wv as i32));
                }
                *a = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_matches_hand_computed_values() {
        // x = [[1, -2, 3]], offset 1 -> [2, -1, 4]; W = [[1, 0, -1], [127, -127, 2]].
        let s = Shape { batch: 1, inputs: 3, outputs: 2 };
        let mut acc = [9; 2];
        PortableInt8.dense_i8(s, &[1, -2, 3], 1, &[1, 0, -1, 127, -127, 2], &mut acc);
        assert_eq!(acc, [2 - 4, 254 + 127 + 8]);
    }
}
