//! The int8 kernel seam: the one dense product of integer inference. Integer only.

use crate::kernels::Shape;

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
}

/// Plain loops: correct on every target, the reference other int8 kernels are tested against.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortableInt8;

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
