//! The int8 dense product with Helium (MVE, the Cortex-M55's M-profile vector extension),
//! plugged into core through [`mlp::int8::Int8Kernels`]: the M55 build's kernel.
//!
//! # How
//! `Σ (x[j] + offset) · w[j] = Σ x[j] · w[j] + offset · Σ w[j]` (modulo 2^32, as every int8
//! kernel here sums). Per pair of rows, one loop takes 16 inputs at a time:
//!
//! ```text
//! vldrb.u8    q0, [x], #16      ; 16 int8 inputs, shared by both rows
//! vldrb.u8    q1, [w0], #16     ; 16 weights of row 0
//! vldrb.u8    q2, [w1], #16     ; 16 weights of row 1
//! vmladava.s8 s0, q0, q1        ; s0 += Σ x · w0 over the 16 lanes
//! vmladava.s8 s1, q0, q2
//! vaddva.s8   t0, q1            ; t0 += Σ w0
//! vaddva.s8   t1, q2
//! subs        n, n, #1
//! bne         loop
//! ```
//!
//! 9 instructions for 32 multiply-accumulates (0.28 per MAC); the offset is applied once per
//! row. It multiplies every input (no skipping: a run table would cost more per run than the
//! blank inputs do at this rate). The instructions are written as their encodings
//! (`.inst.w`, produced by `llvm-mc -triple=thumbv8.1m.main -mattr=+mve -show-encoding`):
//! the `thumbv8m.main` target does not enable MVE, and enabling it for the whole build would
//! let LLVM emit vector code the M33 build cannot run. The sums wrap modulo 2^32 like
//! [`PortableInt8`]'s, so the results are bit-identical; the firmware checks that on every
//! image and on random shapes (`kernel::self_test`). Layers whose inputs are not a multiple
//! of 16 take the SMLAD kernel; an odd last row plain loops.

use core::arch::asm;

use mlp::int8::{Int8Kernels, Int8Layer};
use mlp::Shape;

use crate::dsp::Smlad;
use crate::skip::dot;

/// The Helium kernel (Cortex-M55).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mve;

impl Int8Kernels for Mve {
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
        crate::skip::requantize(layer, acc, y);
    }

    fn dense_i8(&self, shape: Shape, x: &[i8], input_offset: i32, w: &[i8], acc: &mut [i32]) {
        let (m, n) = (shape.inputs, shape.outputs);
        if !m.is_multiple_of(16) || m == 0 || n == 0 || w.len() < m * n {
            Smlad.dense_i8(shape, x, input_offset, w, acc);
            return;
        }
        for (xr, ar) in x.chunks_exact(m).zip(acc.chunks_exact_mut(n)) {
            for (k, a) in ar.chunks_exact_mut(2).enumerate() {
                let rows = &w[2 * k * m..(2 * k + 2) * m];
                // SAFETY: `xr` and both rows are `m` long, `m` a positive multiple of 16.
                let (s0, s1, t0, t1) = unsafe { pair(xr, rows, m) };
                a[0] = s0.wrapping_add(input_offset.wrapping_mul(t0));
                a[1] = s1.wrapping_add(input_offset.wrapping_mul(t1));
            }
            if n % 2 == 1 {
                let o = n - 1;
                ar[o] = dot(0, xr, input_offset, &w[o * m..(o + 1) * m]);
            }
        }
    }
}

/// `(Σ x·w0, Σ x·w1, Σ w0, Σ w1)` for the rows `rows[..m]` and `rows[m..2m]`, wrapping.
///
/// # Safety
/// `x.len() == m`, `rows.len() == 2m`, `m` a positive multiple of 16.
unsafe fn pair(x: &[i8], rows: &[i8], m: usize) -> (i32, i32, i32, i32) {
    let (s0, s1, t0, t1): (i32, i32, i32, i32);
    // SAFETY: `m / 16 >= 1` passes each read 16 bytes from `x` and from both rows, all inside
    // them (the caller's contract); VLDRB needs no alignment. The asm writes the registers
    // it names and the flags, and q0-q2 (s0-s11), declared as clobbered. The sums wrap
    // modulo 2^32, as the Int8Kernels contract says.
    unsafe {
        asm!(
            "2:",
            ".inst.w 0xecb01e10", // vldrb.u8 q0, [r0], #16
            ".inst.w 0xecb13e10", // vldrb.u8 q1, [r1], #16
            ".inst.w 0xecb25e10", // vldrb.u8 q2, [r2], #16
            ".inst.w 0xeef04f22", // vmladava.s8 r4, q0, q1
            ".inst.w 0xeef08f24", // vmladava.s8 r8, q0, q2
            ".inst.w 0xeef1af22", // vaddva.s8 r10, q1
            ".inst.w 0xeef1cf24", // vaddva.s8 r12, q2
            "subs   r3, r3, #1",
            "bne    2b",
            inout("r0") x.as_ptr() => _,
            inout("r1") rows.as_ptr() => _,
            inout("r2") rows.as_ptr().add(m) => _,
            inout("r3") m / 16 => _,
            inout("r4") 0i32 => s0,
            inout("r8") 0i32 => s1,
            inout("r10") 0i32 => t0,
            inout("r12") 0i32 => t1,
            out("s0") _,
            out("s1") _,
            out("s2") _,
            out("s3") _,
            out("s4") _,
            out("s5") _,
            out("s6") _,
            out("s7") _,
            out("s8") _,
            out("s9") _,
            out("s10") _,
            out("s11") _,
            options(nostack, readonly),
        );
    }
    (s0, s1, t0, t1)
}
