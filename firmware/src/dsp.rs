//! The int8 dense product with the Cortex-M4/M7 DSP extension: `SMLAD` does two 16 × 16-bit
//! multiply-accumulates per instruction, plugged into core through [`mlp::int8::Int8Kernels`].
//!
//! # How
//! For a block of up to [`BLOCK`] inputs, the int8 inputs plus the input offset (in
//! `[-255, 255]`: they fit i16) are widened once into pairs `(x0, x2), (x1, x3)` per group
//! of four, the order `SXTB16` produces from four weight bytes: `SXTB16 w` gives
//! `(w0, w2)` and `SXTB16 w, ROR #8` gives `(w1, w3)`. The inner loop then takes two output
//! rows and eight inputs per iteration:
//!
//! ```text
//! ldm    x!, {r2-r5}            ; 8 widened inputs, shared by both rows
//! ldr    w, [w0], #4            ; row 0, inputs 0-3
//! sxtb16 t, w, ror #8
//! sxtb16 w, w
//! smlad  a0, r2, w, a0
//! smlad  a0, r3, t, a0
//! ... (inputs 4-7, then row 1 the same)
//! subs   n, n, #1
//! bne    loop
//! ```
//!
//! 23 instructions for 16 multiply-accumulates: 1.44 per MAC in the loop. The sums wrap
//! modulo 2^32 like [`PortableInt8`]'s (SMLAD keeps the low 32 bits and only sets the Q flag
//! on overflow), so the results are bit-identical; the firmware checks that at run time on
//! every embedded image and on random shapes ([`self_test`]).
//!
//! Only the runs of inputs that are not blank are widened and multiplied ([`crate::skip`]).
//! Layers whose inputs are not a multiple of 8 or whose weights are not 4-byte aligned (word
//! loads could fault on a core that traps unaligned access) take core's portable kernel, an
//! odd last row plain loops.

use core::arch::asm;

use mlp::int8::{Int8Kernels, PortableInt8};
use mlp::Shape;

use crate::skip::{dot, Runs};

/// Inputs widened at a time, at most: 800 bytes of stack for the i16 pairs. A 784-input
/// layer takes two blocks of 392.
pub const BLOCK: usize = 400;

/// The SMLAD kernel (needs the DSP extension: Cortex-M4, M7, M33 with DSP).
#[derive(Clone, Copy, Debug, Default)]
pub struct Smlad;

impl Int8Kernels for Smlad {
    fn dense_i8(&self, shape: Shape, x: &[i8], input_offset: i32, w: &[i8], acc: &mut [i32]) {
        let (m, n) = (shape.inputs, shape.outputs);
        let aligned = (w.as_ptr() as usize | m).is_multiple_of(4);
        if !m.is_multiple_of(8) || n == 0 || !aligned || w.len() < m * n {
            PortableInt8.dense_i8(shape, x, input_offset, w, acc);
            return;
        }
        let mut pairs = [0u32; BLOCK / 2];
        for (xr, ar) in x.chunks_exact(m).zip(acc.chunks_exact_mut(n)) {
            ar.fill(0);
            // Only the runs that are not blank (crate::skip): the rest adds exactly 0.
            for (start, len) in Runs::new(xr, input_offset, BLOCK) {
                let pairs = &mut pairs[..len / 2];
                widen(&xr[start..start + len], input_offset, pairs);
                row_pairs(&mut ar[..n / 2 * 2], &w[start..], m, pairs);
                if n % 2 == 1 {
                    let o = n - 1;
                    ar[o] = dot(
                        ar[o],
                        &xr[start..start + len],
                        input_offset,
                        &w[o * m + start..o * m + start + len],
                    );
                }
            }
        }
    }
}

/// `x` (a multiple of 4 long) plus `offset`, as i16 pairs `(x0, x2), (x1, x3)` per group of 4.
fn widen(x: &[i8], offset: i32, out: &mut [u32]) {
    let h = |v: i8| (v as i32 + offset) as u16 as u32;
    for (g, o) in x.chunks_exact(4).zip(out.chunks_exact_mut(2)) {
        o[0] = h(g[0]) | (h(g[2]) << 16);
        o[1] = h(g[1]) | (h(g[3]) << 16);
    }
}

/// What the assembly loop over row pairs keeps in memory (it has no registers left).
#[repr(C)]
struct Ctx {
    pairs: *const u32,
    groups: usize,
    m: usize,
    step: usize,
    rows_left: usize,
    acc: *mut i32,
}

/// For every pair of rows `(2k, 2k + 1)`: adds the products of their weights `w[2k · m..]`
/// and `w[(2k + 1) · m..]` (each `8 × groups` long, `groups = pairs.len() / 4`) with the
/// widened inputs to `acc[2k]` and `acc[2k + 1]`. `acc.len()` is even; the weights are
/// 4-byte aligned at every row start (the caller's check).
fn row_pairs(acc: &mut [i32], w: &[i8], m: usize, pairs: &[u32]) {
    let groups = pairs.len() / 4;
    let len = 8 * groups;
    let rows = acc.len() / 2 * 2;
    if groups == 0 || rows == 0 || m < len || w.len() < (rows - 1) * m + len {
        return;
    }
    let mut ctx = Ctx {
        pairs: pairs.as_ptr(),
        groups,
        m,
        step: 2 * m - len,
        rows_left: rows / 2,
        acc: acc.as_mut_ptr(),
    };
    // SAFETY: `rows / 2 >= 1` pairs, `groups >= 1` (checked above). Per pair the asm reads
    // and writes `acc[2k..2k + 2]` (inside `acc`: k < rows / 2), reads `16 · groups` bytes of
    // `pairs` (a `[u32]`, word aligned as LDM needs) and `len` bytes from each of the rows at
    // `2k · m` and `(2k + 1) · m` of `w`, the last of which ends at
    // `(rows - 1) · m + len <= w.len()` (checked above). Weight rows are 4-byte aligned (the
    // caller's check), though LDR also accepts unaligned addresses on ARMv7-M. It reads and
    // writes `ctx` (a live local), pushes one word and pops it (balanced; no `nostack`), and
    // writes only the named registers and the flags. SMLAD's sticky Q flag is state nothing
    // in Rust reads. The sums wrap modulo 2^32, as the Int8Kernels contract says.
    unsafe {
        asm!(
            "push   {{{t}}}",
            "3:",
            "ldr    {t}, [sp]",
            "ldr    {w}, [{t}, #20]",
            "ldrd   {a0}, {a1}, [{w}]",
            "ldr    {xp}, [{t}]",
            "ldr    {n}, [{t}, #4]",
            "ldr    {w}, [{t}, #8]",
            "add    {w1}, {w0}, {w}",
            "2:",
            "ldm    {xp}!, {{r2, r3, r4, r5}}",
            "ldr    {w}, [{w0}], #4",
            "sxtb16 {t}, {w}, ror #8",
            "sxtb16 {w}, {w}",
            "smlad  {a0}, r2, {w}, {a0}",
            "smlad  {a0}, r3, {t}, {a0}",
            "ldr    {w}, [{w0}], #4",
            "sxtb16 {t}, {w}, ror #8",
            "sxtb16 {w}, {w}",
            "smlad  {a0}, r4, {w}, {a0}",
            "smlad  {a0}, r5, {t}, {a0}",
            "ldr    {w}, [{w1}], #4",
            "sxtb16 {t}, {w}, ror #8",
            "sxtb16 {w}, {w}",
            "smlad  {a1}, r2, {w}, {a1}",
            "smlad  {a1}, r3, {t}, {a1}",
            "ldr    {w}, [{w1}], #4",
            "sxtb16 {t}, {w}, ror #8",
            "sxtb16 {w}, {w}",
            "smlad  {a1}, r4, {w}, {a1}",
            "smlad  {a1}, r5, {t}, {a1}",
            "subs   {n}, {n}, #1",
            "bne    2b",
            "ldr    {t}, [sp]",
            "ldr    {w}, [{t}, #20]",
            "strd   {a0}, {a1}, [{w}], #8",
            "str    {w}, [{t}, #20]",
            "ldr    {w}, [{t}, #12]",
            "add    {w0}, {w0}, {w}",
            "ldr    {w}, [{t}, #16]",
            "subs   {w}, {w}, #1",
            "str    {w}, [{t}, #16]",
            "bne    3b",
            "pop    {{{t}}}",
            t = inout(reg) &mut ctx as *mut Ctx => _,
            w0 = inout(reg) w.as_ptr() => _,
            a0 = out(reg) _,
            a1 = out(reg) _,
            xp = out(reg) _,
            w1 = out(reg) _,
            n = out(reg) _,
            w = out(reg) _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
        );
    }
}
