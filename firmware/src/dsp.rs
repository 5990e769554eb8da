//! The int8 dense product with the Cortex-M4/M7 DSP extension: `SMLAD` does two 16 × 16-bit
//! multiply-accumulates per instruction, plugged into core through [`mlp::int8::Int8Kernels`].
//!
//! # How
//! Only the runs of inputs that are not blank are multiplied: the maximal runs of groups of 4
//! inputs that are not all at the zero point (one word compare per group; a blank input adds
//! exactly 0). The int8 inputs of those runs plus the input offset (in `[-255, 255]`: they
//! fit i16) are widened once, back to back, into pairs `(x0, x2), (x1, x3)` per group of four,
//! the order `SXTB16` produces from four weight bytes: `SXTB16 w` gives `(w0, w2)` and
//! `SXTB16 w, ROR #8` gives `(w1, w3)`. A table says, per run, where to enter the loop
//! below, how far to move the weight pointers (the gap since the previous run) and how many
//! loop passes it takes. One assembly routine then walks every pair of output rows through
//! every run:
//!
//! ```text
//! ldm    x!, {r2-r5}            ; 8 widened inputs, shared by both rows
//! ldrd   wa, wb, [w0], #8       ; row 0: 8 weights
//! sxtb16 t, wa, ror #8
//! sxtb16 wa, wa
//! smlad  a0, r2, wa, a0
//! smlad  a0, r3, t, a0
//! ... (wb: inputs 4-7, then row 1 the same from w1)
//! ... (the same again: 16 inputs per pass)
//! subs   n, n, #1
//! bne    loop
//! ```
//!
//! 40 instructions for 32 multiply-accumulates: 1.25 per MAC in the loop. A run of `8k + 4`
//! inputs starts with a 4-input step (11 instructions for 8 MACs), an odd number of 8-input
//! steps enters the loop at its second half, and the step to the next run is
//! `ldm table!, {entry, gap, passes}`, two `add`s and a `tbb` on the entry (5 instructions
//! per run and pair of rows with the loop's exit branch). The sums wrap modulo 2^32 like
//! [`PortableInt8`]'s (SMLAD keeps the low 32 bits and only sets the Q flag on overflow), so
//! the results are bit-identical; the firmware checks that at run time on every embedded
//! image and on random shapes (`kernel::self_test`).
//!
//! Layers whose inputs are not a multiple of 8 or whose weights are not 4-byte aligned (word
//! loads could fault on a core that traps unaligned access) take core's portable kernel, an
//! odd last row plain loops over the whole row.

use core::arch::asm;
use core::mem::MaybeUninit;

use mlp::int8::{Int8Kernels, Int8Layer, PortableInt8};
use mlp::Shape;

use crate::skip::dot;

/// Inputs widened at a time, at most: 1,600 bytes of stack for the i16 pairs, so that a
/// 784-input layer with nothing blank takes one pass over the rows (two passes of 400 cost
/// 0.013 instructions/MAC more in the dense product).
pub const BLOCK: usize = 800;
/// Runs per pass, at most (a pass with more runs is multiplied in several): 780 bytes of
/// stack for the table with its end marker. An MNIST image has about 22, a hidden layer of
/// 256 ReLU outputs about as many.
const MAX_RUNS: usize = 64;

/// The entry points of the assembly's run loop (`row_pairs`), by the shape of a run of `len`
/// inputs (a multiple of 4): `len % 8 == 4` starts with a 4-input step; the 8-input steps
/// are taken two per loop pass, entering at the second when their number is odd.
const EVEN: u32 = 0;
const ODD: u32 = 1;
const FOUR_EVEN: u32 = 2;
const FOUR_ODD: u32 = 3;
const FOUR: u32 = 4;
/// The end of a pair of rows.
const END: u32 = 5;

/// The SMLAD kernel (needs the DSP extension: Cortex-M4, M7, M33 with DSP, M55).
#[derive(Clone, Copy, Debug, Default)]
pub struct Smlad;

impl Int8Kernels for Smlad {
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
        let aligned = (w.as_ptr() as usize | m).is_multiple_of(4);
        if !m.is_multiple_of(8) || n == 0 || !aligned || w.len() < m * n {
            PortableInt8.dense_i8(shape, x, input_offset, w, acc);
            return;
        }
        // Uninitialized: the kernel writes every word it reads (zeroing 2.4 KB would cost
        // about 600 instructions per call).
        let mut pass = Pass {
            pairs: [MaybeUninit::uninit(); BLOCK / 2],
            table: [MaybeUninit::uninit(); 3 * (MAX_RUNS + 1)],
            len: 0,
            runs: 0,
            end: 0,
        };
        // A group of 4 inputs all at the zero point (one word compare) adds exactly 0.
        let zero = u32::from_ne_bytes([input_offset.wrapping_neg() as u8; 4]);
        for (xr, ar) in x.chunks_exact(m).zip(acc.chunks_exact_mut(n)) {
            // Zeros through a value the optimizer cannot see: a store loop, not a call to
            // memset (174 bytes the lean build would carry for this line alone).
            ar.fill(core::hint::black_box(0));
            // The maximal runs of groups that are not blank, multiplied in passes of at most
            // BLOCK inputs and MAX_RUNS runs.
            let groups = xr.as_chunks::<4>().0;
            let blank = |g: &[i8; 4]| u32::from_ne_bytes(g.map(|v| v as u8)) == zero;
            let mut g = 0;
            while g < groups.len() {
                if blank(&groups[g]) {
                    g += 1;
                    continue;
                }
                let start = g;
                while g < groups.len() && !blank(&groups[g]) {
                    g += 1;
                }
                let (mut start, end) = (4 * start, 4 * g);
                while start < end {
                    let len = (end - start).min(BLOCK);
                    if pass.len + len > BLOCK || pass.runs == MAX_RUNS {
                        pass.run(ar, w, m);
                    }
                    pass.add(xr, input_offset, start, len);
                    start += len;
                }
            }
            pass.run(ar, w, m);
            // An odd last row: plain loops over the whole row (no model here has one).
            if n % 2 == 1 {
                let o = n - 1;
                ar[o] = dot(0, xr, input_offset, &w[o * m..(o + 1) * m]);
            }
        }
    }
}

/// The runs of one pass: their widened inputs back to back, and the table the assembly reads.
struct Pass {
    pairs: [MaybeUninit<u32>; BLOCK / 2],
    /// Per run: its entry point (`EVEN` .. `FOUR`), the gap in bytes from the end of the
    /// previous run (or the row start) to its start, and its number of loop passes (two
    /// 8-input steps each, the first maybe skipped); after the last run, `END`, the gap to
    /// the next pair of rows and 0.
    table: [MaybeUninit<u32>; 3 * (MAX_RUNS + 1)],
    /// Inputs widened so far.
    len: usize,
    runs: usize,
    /// The end of the last run, in inputs from the row start.
    end: usize,
}

impl Pass {
    /// Adds the run `xr[start..start + len]` (`start` and `len` multiples of 4,
    /// `self.len + len <= BLOCK`, `self.runs < MAX_RUNS`).
    fn add(&mut self, xr: &[i8], offset: i32, start: usize, len: usize) {
        widen(&xr[start..start + len], offset, &mut self.pairs[self.len / 2..(self.len + len) / 2]);
        let steps = len / 8;
        let entry = match (len % 8 == 4, steps % 2 == 1) {
            (false, false) => EVEN,
            (false, true) => ODD,
            (true, _) if steps == 0 => FOUR,
            (true, false) => FOUR_EVEN,
            (true, true) => FOUR_ODD,
        };
        let t = &mut self.table[3 * self.runs..3 * self.runs + 3];
        t[0] = MaybeUninit::new(entry);
        t[1] = MaybeUninit::new((start - self.end) as u32);
        t[2] = MaybeUninit::new(steps.div_ceil(2) as u32);
        self.len += len;
        self.runs += 1;
        self.end = start + len;
    }

    /// Multiplies the runs added so far into `acc` (one sample's `n` accumulators, rows of
    /// `w` `m` long; an odd last row is the caller's), then empties the pass.
    fn run(&mut self, acc: &mut [i32], w: &[i8], m: usize) {
        if self.runs == 0 {
            return;
        }
        let n = acc.len();
        let pairs = n / 2;
        let t = &mut self.table[3 * self.runs..3 * self.runs + 3];
        t[0] = MaybeUninit::new(END);
        t[1] = MaybeUninit::new((2 * m - self.end) as u32);
        t[2] = MaybeUninit::new(0);
        if pairs > 0 {
            let ctx = Ctx {
                pairs: self.pairs.as_ptr().cast(),
                table: self.table.as_ptr().cast(),
                acc: acc.as_mut_ptr(),
                rows: pairs,
                w: w.as_ptr(),
                m,
            };
            // SAFETY: see `row_pairs`: the table holds (written) `self.runs` runs inside the rows
            // (`start >= previous end`, `end <= m`), each with its entry and pass count, and the
            // end marker; `self.len` written widened inputs; `acc` has `2 · pairs` values; `w`
            // has `n · m` weights, 4-byte aligned at every row start (the caller's check).
            unsafe { row_pairs(&ctx) };
        }
        self.len = 0;
        self.runs = 0;
        self.end = 0;
    }
}

/// `x` (a multiple of 4 long) plus `offset`, as i16 pairs `(x0, x2), (x1, x3)` per group of 4:
/// `SXTAB16` adds the sign-extended bytes 0 and 2 (1 and 3 after `ROR #8`) of a word to the
/// offset in both halves. Exact: `x + offset` is in `[-255, 255]` and fits the i16 halves.
fn widen(x: &[i8], offset: i32, out: &mut [MaybeUninit<u32>]) {
    let both = (offset as u16 as u32) * 0x0001_0001;
    for (g, o) in x.chunks_exact(4).zip(out.chunks_exact_mut(2)) {
        let v = u32::from_ne_bytes([g[0] as u8, g[1] as u8, g[2] as u8, g[3] as u8]);
        let (even, odd): (u32, u32);
        // SAFETY: two register-only DSP instructions (the DSP builds have them); no memory,
        // no flags.
        unsafe {
            asm!(
                "sxtab16 {e}, {b}, {v}",
                "sxtab16 {o}, {b}, {v}, ror #8",
                e = out(reg) even,
                o = out(reg) odd,
                b = in(reg) both,
                v = in(reg) v,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        o[0] = MaybeUninit::new(even);
        o[1] = MaybeUninit::new(odd);
    }
}

/// What the assembly reads at its start.
#[repr(C)]
struct Ctx {
    pairs: *const u32,
    table: *const u32,
    acc: *mut i32,
    rows: usize,
    w: *const i8,
    m: usize,
}

/// The assembly's 4-input step on both rows of a pair (one copy, used by three entries).
macro_rules! four_inputs {
    () => {
        concat!(
            "ldrd   r2, r3, [r11], #8\n",
            "ldr    r0, [r8], #4\n",
            "sxtb16 r12, r0, ror #8\n",
            "sxtb16 r0, r0\n",
            "smlad  r6, r2, r0, r6\n",
            "smlad  r6, r3, r12, r6\n",
            "ldr    r0, [r10], #4\n",
            "sxtb16 r12, r0, ror #8\n",
            "sxtb16 r0, r0\n",
            "smlad  r7, r2, r0, r7\n",
            "smlad  r7, r3, r12, r7\n",
        )
    };
}

/// The assembly's 8-input step on both rows of a pair (the loop body takes two).
macro_rules! eight_inputs {
    () => {
        concat!(
            "ldm    r11!, {{r2, r3, r4, r5}}\n",
            "ldrd   r0, r1, [r8], #8\n",
            "sxtb16 r12, r0, ror #8\n",
            "sxtb16 r0, r0\n",
            "smlad  r6, r2, r0, r6\n",
            "smlad  r6, r3, r12, r6\n",
            "sxtb16 r12, r1, ror #8\n",
            "sxtb16 r1, r1\n",
            "smlad  r6, r4, r1, r6\n",
            "smlad  r6, r5, r12, r6\n",
            "ldrd   r0, r1, [r10], #8\n",
            "sxtb16 r12, r0, ror #8\n",
            "sxtb16 r0, r0\n",
            "smlad  r7, r2, r0, r7\n",
            "smlad  r7, r3, r12, r7\n",
            "sxtb16 r12, r1, ror #8\n",
            "sxtb16 r1, r1\n",
            "smlad  r7, r4, r1, r7\n",
            "smlad  r7, r5, r12, r7\n",
        )
    };
}

/// For every pair of rows `(2k, 2k + 1)` of `w` (`m` long each): adds the products of the
/// widened inputs `pairs` with the rows' weights at the runs `table` names to
/// `acc[2k]` and `acc[2k + 1]`.
///
/// # Safety
/// `ctx.rows >= 1`; `acc` has `2 · rows` values; the table holds runs `(entry, gap, passes)`
/// as [`Pass::add`] writes them, whose inputs lie inside a row (`Σ gaps + lengths <= m`),
/// then `(END, 2m - end of the last run, 0)`; `pairs` holds the widened inputs of all the
/// runs (2 words per 4 inputs, word aligned); `w` has `2 · rows · m` bytes, each row start
/// 4-byte aligned.
unsafe fn row_pairs(ctx: &Ctx) {
    // SAFETY: per pair of rows the asm reads `acc[2k..2k + 2]` and writes it back, reads every
    // run's weights from both rows (inside them, by the table's contract) and the same bytes
    // of `pairs` (word aligned, as LDM and LDRD need), then moves both weight pointers to the
    // next pair of rows. `tbb` jumps to one of the six entries the table's first word names
    // (always below 6). It saves r6 and r7 (which Rust reserves) on the stack and restores
    // them, with 16 bytes of its own below them, and restores sp; it writes only the
    // registers it names and the flags. SMLAD's sticky Q flag is state nothing in Rust reads.
    // The sums wrap modulo 2^32, as the Int8Kernels contract says.
    unsafe {
        asm!(
            "push   {{r6, r7}}",
            "sub    sp, sp, #16",
            "ldr    r1, [r0, #0]",
            "str    r1, [sp, #0]",
            "ldr    r1, [r0, #4]",
            "str    r1, [sp, #4]",
            "ldr    r1, [r0, #8]",
            "str    r1, [sp, #8]",
            "ldr    r1, [r0, #12]",
            "str    r1, [sp, #12]",
            "ldr    r8, [r0, #16]",
            "ldr    r1, [r0, #20]",
            "add    r10, r8, r1",
            // Per pair of rows: inputs and table from the start, the two sums from acc.
            "1:",
            "ldr    r11, [sp, #0]",
            "ldr    r9, [sp, #4]",
            "ldr    r1, [sp, #8]",
            "ldrd   r6, r7, [r1]",
            // Per run: its entry, the gap to move both weight pointers by, its loop passes.
            "2:",
            "ldm    r9!, {{r0, r12, lr}}",
            "add    r8, r8, r12",
            "add    r10, r10, r12",
            "tbb    [pc, r0]",
            "3:",
            ".byte  (20f - 3b) / 2",
            ".byte  (21f - 3b) / 2",
            ".byte  (22f - 3b) / 2",
            ".byte  (23f - 3b) / 2",
            ".byte  (24f - 3b) / 2",
            ".byte  (25f - 3b) / 2",
            ".p2align 1",
            // FOUR_ODD: 4 inputs, then an odd number of 8-input steps.
            "23:",
            four_inputs!(),
            "b      21f",
            // FOUR_EVEN: 4 inputs, then an even number of 8-input steps.
            "22:",
            four_inputs!(),
            // EVEN: two 8-input steps per pass; ODD enters at the second.
            "20:",
            eight_inputs!(),
            "21:",
            eight_inputs!(),
            "subs   lr, lr, #1",
            "bne    20b",
            "b      2b",
            // FOUR: 4 inputs alone.
            "24:",
            four_inputs!(),
            "b      2b",
            // END: the pair is done: store its sums, next pair.
            "25:",
            "ldr    r1, [sp, #8]",
            "strd   r6, r7, [r1], #8",
            "str    r1, [sp, #8]",
            "ldr    r1, [sp, #12]",
            "subs   r1, r1, #1",
            "str    r1, [sp, #12]",
            "bne    1b",
            "add    sp, sp, #16",
            "pop    {{r6, r7}}",
            inout("r0") ctx as *const Ctx => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
}
