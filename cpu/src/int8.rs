//! A fast host implementation of core's int8 kernel seam, [`mlp::int8::Int8Kernels`].
//!
//! [`FastInt8`] computes whole layers ([`Int8Kernels::dense_requantize`]: product, bias,
//! requantization, activation) and bare products ([`Int8Kernels::dense_i8`]) bit-identically
//! to core's [`PortableInt8`]: the product is defined modulo 2^32, so any summation order
//! gives the same bits, and the vector requantization reproduces `mlp::int8::fixed` exactly.
//! Paths, by the [`Isa`] token it is built with ([`FastInt8::new`]: the best one detected;
//! [`FastInt8::with_isa`]: a given one):
//!
//! - [`Level::Avx512`] (with AVX-512BW and VNNI): `vpdpbusd` (u8 × i8 → i32 sums of four). The signed input is
//!   biased to `u = x ^ 0x80 = x + 128`, so `Σ_j (x_j + off) · w_j = Σ_j u_j · w_j +
//!   (off - 128) · Σ_j w_j`. When `off == 128` (input zero point -128: inputs scaled to
//!   [0, 1] like MNIST pixels, every ReLU layer's output) there is nothing to correct;
//!   otherwise the row sums are computed with `vpdpbusd` against ones and folded into the
//!   bias. Inputs with `u == 0` (`x == -128`: blank pixels, ReLU zeros) add nothing and are
//!   skipped, exactly. A layer runs one of four strategies ([`Int8Strategy`]):
//!   - *GEMV* (batches below [`GEMV_MAX_BATCH`]): one sample at a time against the row-major
//!     weights, 16 output rows at a time, skipping all-zero 64-byte chunks of `u`, one
//!     transposing reduction per 16 outputs, then the requantization epilogue.
//!   - *sparse* (larger batches): the weights are repacked once per call into the VNNI "B"
//!     layout (per input quad, the quad's 4 weights of 16 consecutive outputs in one 64-byte
//!     line). Per sample the quads whose four `u` are all 0 are dropped (a compare and a
//!     `vpcompressd` per 64 inputs); per chunk of 64 outputs (50 KB of weights for 784
//!     inputs, about L1, reused by a block of samples) the sample's active quads are
//!     broadcast and `vpdpbusd`-ed into 4 accumulators; the epilogue requantizes them in
//!     registers. MNIST images have about 57 of 196 quads active.
//!   - *dense* (blocks of samples with more than 80% of their quads active): the same layout,
//!     every quad, 4 samples per weight load.
//!   - *AMX* (batches of at least [`AMX_MIN_BATCH`] where the CPU has AMX-INT8 and Linux
//!     grants the tile state): the same packed layout is exactly the `tdpbusd` weight tile;
//!     32 samples × 32 outputs per tile step, every 64-input chunk that is not blank in all
//!     32 samples, in inline assembly. 784-256 runs at about 4 M samples/s on one core.
//! - [`Level::Avx2`]: `u` zero-extended and weights sign-extended to i16, multiplied with
//!   `vpmaddwd` (exact for these ranges, unlike the saturating `vpmaddubsw`), in register
//!   tiles; the same correction; the requantization epilogue on 8 lanes.
//! - [`Level::Baseline`]: core's [`PortableInt8`] (also the only path off x86-64).
//!
//! Activation tables (sigmoid, tanh, ...) are looked up with scalar code after the vector
//! requantization. Large layers (at least [`PARALLEL_MACS`] multiply-adds) are split by batch
//! rows over the current rayon pool's threads (sized by [`crate::pool::Threads`]); every output is computed by exactly one thread, so results do
//! not depend on the thread count. Scratch (packed weights, constants) lives in a
//! thread-local buffer that grows once.

use std::cell::RefCell;

use mlp::int8::{Int8Kernels, Int8Layer, PortableInt8};
use mlp::Shape;

use crate::isa::{Isa, Level};

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Products with at least this many multiply-adds (`batch × inputs × outputs`) are split over
/// threads; smaller ones run on the calling thread.
pub const PARALLEL_MACS: usize = 1 << 22;

/// With [`Int8Strategy::Auto`], batches below this run the GEMV strategy (no repacking of
/// the weights); larger ones the packed sparse / dense one.
pub const GEMV_MAX_BATCH: usize = 6;

/// With [`Int8Strategy::Auto`], packed batches of at least this many samples use AMX tiles
/// where available (below it, configuring the tiles costs more than they save).
pub const AMX_MIN_BATCH: usize = 12;

/// How the AVX-512 VNNI path runs a layer ([`Int8Kernels::dense_requantize`]); the other
/// paths ignore it. Every strategy gives the same bytes; forcing one is for tests and benches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Int8Strategy {
    /// GEMV below [`GEMV_MAX_BATCH`] samples, else packed: AMX tiles from [`AMX_MIN_BATCH`]
    /// samples where available, otherwise sparse or dense per block of samples by density.
    #[default]
    Auto,
    /// One sample at a time against the row-major weights.
    Gemv,
    /// Packed weights, every block of samples through the sparse kernel.
    Sparse,
    /// Packed weights, every block of samples through the dense kernel (4 samples at a time,
    /// the rest of a block sparse).
    Dense,
    /// Packed weights and AMX-INT8 tiles at any batch size where the CPU and OS allow them
    /// (else sparse or dense by density).
    Amx,
}

/// The fast int8 kernels (see the [module docs](self)). Construct with [`FastInt8::new`] (the
/// best detected path) or [`FastInt8::with_isa`]; the path is fixed for the value's lifetime.
#[derive(Clone, Copy, Debug)]
pub struct FastInt8 {
    isa: Isa,
    strategy: Int8Strategy,
}

impl Default for FastInt8 {
    fn default() -> Self {
        Self::new()
    }
}

impl FastInt8 {
    /// The fastest path this CPU supports.
    pub fn new() -> Self {
        Isa::available()
            .find_map(Self::with_isa)
            .unwrap_or(Self { isa: Isa::baseline(), strategy: Int8Strategy::Auto })
    }

    /// The path for `isa`, or `None` when the int8 kernels of that level need more than it
    /// proves (level [`Level::Avx512`] also needs AVX-512BW and AVX-512 VNNI).
    pub fn with_isa(isa: Isa) -> Option<Self> {
        let ok = match isa.level() {
            Level::Avx512 => cfg!(target_arch = "x86_64") && crate::isa::Vnni::detect().is_some(),
            Level::Avx2 => cfg!(target_arch = "x86_64"),
            Level::Baseline => true,
        };
        ok.then_some(Self { isa, strategy: Int8Strategy::Auto })
    }

    /// Every path this CPU runs, fastest first (always ending with the portable one).
    pub fn available() -> impl Iterator<Item = FastInt8> {
        Isa::available().filter_map(Self::with_isa)
    }

    /// The same kernels with a forced layer strategy (AVX-512 VNNI path only).
    pub fn with_strategy(self, strategy: Int8Strategy) -> Self {
        Self { strategy, ..self }
    }

    /// The instruction-set level in use.
    pub fn level(&self) -> Level {
        self.isa.level()
    }

    /// The layer strategy.
    pub fn strategy(&self) -> Int8Strategy {
        self.strategy
    }
}

/// 64 bytes, 64-byte aligned: one vector of packed weights or biased inputs.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Line([u32; 16]);

/// Requantization constants of 16 consecutive outputs (zero past the layer's outputs).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct ParamBlock {
    /// Bias plus the input correction `(off - 128) · Σ_j w[o][j]` (wrapping).
    bias: [i32; 16],
    /// Q31 multiplier.
    mult: [i32; 16],
    /// `max(shift, 0)` (shift clamped to `[-31, 30]` as `fixed` does).
    left: [i32; 16],
    /// `max(-shift, 0)`.
    right: [i32; 16],
    /// `2^right - 1`.
    mask: [i32; 16],
    /// `mask >> 1`.
    half: [i32; 16],
}

/// A layer's clamp `[lo, hi]` and requantization zero point, as `lo - zp`, `hi - zp`, `zp`.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Clamp {
    lo_minus_zp: i32,
    hi_minus_zp: i32,
    zp: i32,
}

/// Fills `out` with the layer's constants, the bias corrected by `factor · sums[o]` when
/// given, and returns its clamp.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn build_params(layer: &Int8Layer<'_>, corr: Option<(&[i32], i32)>, out: &mut Vec<ParamBlock>) -> Clamp {
    let n = layer.outputs();
    out.clear();
    out.resize(n.div_ceil(16), ParamBlock::default());
    let params = layer.bias().iter().zip(layer.multipliers().iter()).zip(layer.shifts().iter());
    for (o, ((b, m), s)) in params.enumerate().take(n) {
        let p = &mut out[o / 16];
        let l = o % 16;
        let c = corr.map_or(0, |(sums, f)| sums[o].wrapping_mul(f));
        let s = s.clamp(-31, 30);
        let right = (-s).max(0);
        p.bias[l] = b.wrapping_add(c);
        p.mult[l] = m;
        p.left[l] = s.max(0);
        p.right[l] = right;
        p.mask[l] = ((1i64 << right) - 1) as i32;
        p.half[l] = p.mask[l] >> 1;
    }
    clamp_of(layer)
}

/// The layer's clamp and requantization zero point.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn clamp_of(layer: &Int8Layer<'_>) -> Clamp {
    let (lo, hi) = layer.clamp_range();
    let zp = if layer.table().is_some() { layer.pre_zero_point() } else { layer.out_zero_point() };
    // lo, hi and zp are in [-128, 127] for valid layers; saturate anyway.
    Clamp { lo_minus_zp: lo.saturating_sub(zp), hi_minus_zp: hi.saturating_sub(zp), zp }
}

/// Per-thread scratch of the calling thread: packed weights, constants, row sums.
#[derive(Default)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Scratch {
    packed: Vec<Line>,
    params: Vec<ParamBlock>,
    sums: Vec<i32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch (see [`crate::scratch::with_local`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    crate::scratch::with_local(&SCRATCH, f)
}

/// Splits `rows` rows of `x` (`k` wide) and `y` (`n` wide) into one contiguous part of whole
/// multiples of `align` rows per thread of the current rayon pool and runs `f` on each, in
/// parallel when `macs >= PARALLEL_MACS`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[allow(clippy::too_many_arguments)]
fn split_rows<T: Send, F>(
    macs: usize,
    align: usize,
    rows: usize,
    k: usize,
    x: &[i8],
    n: usize,
    y: &mut [T],
    f: F,
) where
    F: Fn(&[i8], &mut [T]) + Sync,
{
    let threads = rayon::current_num_threads().min(rows.div_ceil(align)).max(1);
    if threads <= 1 || macs < PARALLEL_MACS {
        f(x, y);
        return;
    }
    let part = rows.div_ceil(threads).div_ceil(align) * align;
    let f = &f;
    rayon::scope(|s| {
        for (xc, yc) in x.chunks(part * k).zip(y.chunks_mut(part * n)) {
            s.spawn(move |_| f(xc, yc));
        }
    });
}

impl Int8Kernels for FastInt8 {
    fn dense_i8(&self, shape: Shape, x: &[i8], input_offset: i32, w: &[i8], acc: &mut [i32]) {
        let Shape { batch, inputs, outputs } = shape;
        if inputs == 0 || outputs == 0 {
            acc.fill(0);
            return;
        }
        assert!(
            x.len() >= batch * inputs && w.len() >= outputs * inputs && acc.len() >= batch * outputs,
            "dense_i8 operand too short"
        );
        let (x, w, acc) = (&x[..batch * inputs], &w[..outputs * inputs], &mut acc[..batch * outputs]);
        match self.level() {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 | Level::Avx2 => with_scratch(|s| {
                // u = x + 128, so Σ (x + off)·w = Σ u·w + (off - 128)·Σ w.
                let factor = input_offset.wrapping_sub(128);
                s.sums.resize(outputs, 0);
                let sums = &mut s.sums[..outputs];
                let vnni = avx512::Vnni::detect().filter(|_| self.level() == Level::Avx512);
                let avx = avx2::Avx2::detect();
                if factor != 0 {
                    match (vnni, avx) {
                        (Some(v), _) => avx512::row_sums(v, w, inputs, sums),
                        (None, Some(a)) => avx2::row_sums(a, w, inputs, sums),
                        (None, None) => unreachable!("FastInt8 paths are checked against the CPU"),
                    }
                    for v in sums.iter_mut() {
                        *v = v.wrapping_mul(factor);
                    }
                }
                let corr = (factor != 0).then_some(&*sums);
                let macs = batch.saturating_mul(inputs).saturating_mul(outputs);
                match (vnni, avx) {
                    (Some(v), _) => split_rows(macs, 4, batch, inputs, x, outputs, acc, |xc, ac| {
                        tiles::<4, 4>(
                            &|x, w, k| avx512::block::<4, 4>(v, x, w, k),
                            &|x, w, k| avx512::block::<4, 1>(v, x, w, k),
                            &|x, w, k| avx512::block::<1, 4>(v, x, w, k),
                            &|x, w, k| avx512::block::<1, 1>(v, x, w, k),
                            xc.len() / inputs,
                            inputs,
                            outputs,
                            xc,
                            w,
                            corr,
                            ac,
                        )
                    }),
                    (None, Some(a)) => split_rows(macs, 2, batch, inputs, x, outputs, acc, |xc, ac| {
                        tiles::<2, 4>(
                            &|x, w, k| avx2::block::<2, 4>(a, x, w, k),
                            &|x, w, k| avx2::block::<2, 1>(a, x, w, k),
                            &|x, w, k| avx2::block::<1, 4>(a, x, w, k),
                            &|x, w, k| avx2::block::<1, 1>(a, x, w, k),
                            xc.len() / inputs,
                            inputs,
                            outputs,
                            xc,
                            w,
                            corr,
                            ac,
                        )
                    }),
                    (None, None) => unreachable!("FastInt8 paths are checked against the CPU"),
                }
            }),
            _ => PortableInt8.dense_i8(shape, x, input_offset, w, acc),
        }
    }

    fn dense_requantize(
        &self,
        shape: Shape,
        x: &[i8],
        input_offset: i32,
        layer: &Int8Layer<'_>,
        acc: &mut [i32],
        y: &mut [i8],
    ) {
        let Shape { batch, inputs, outputs } = shape;
        // Single rounding (models imported from LiteRT) has no vector path: core's definition.
        let simple = self.level() == Level::Baseline
            || layer.rounding() != mlp::int8::Rounding::Double
            || inputs == 0
            || outputs == 0
            || batch == 0
            || layer.inputs() != inputs
            || layer.outputs() != outputs;
        if simple {
            // Core's definition, on whatever this kernel's dense_i8 is.
            self.dense_i8(shape, x, input_offset, layer.weights(), acc);
            PortableInt8::requantize(layer, acc, y);
            return;
        }
        assert!(
            x.len() >= batch * inputs && acc.len() >= batch * outputs && y.len() >= batch * outputs,
            "dense_requantize operand too short"
        );
        let (x, y) = (&x[..batch * inputs], &mut y[..batch * outputs]);
        #[cfg(target_arch = "x86_64")]
        {
            let acc = &mut acc[..batch * outputs];
            let w = layer.weights();
            let factor = input_offset.wrapping_sub(128);
            let macs = batch.saturating_mul(inputs).saturating_mul(outputs);
            let vnni = avx512::Vnni::detect().filter(|_| self.level() == Level::Avx512);
            let avx = avx2::Avx2::detect();
            with_scratch(|s| match (vnni, avx) {
                (Some(v), _) => {
                    if factor != 0 {
                        s.sums.resize(outputs, 0);
                        avx512::row_sums(v, w, inputs, &mut s.sums[..outputs]);
                    }
                    let corr = (factor != 0).then(|| (&s.sums[..outputs], factor));
                    let clamp = avx512::build_params(v, layer, corr, &mut s.params);
                    let l = avx512::Layer { inputs, outputs, params: &s.params, clamp, table: layer.table() };
                    let gemv = match self.strategy {
                        Int8Strategy::Auto => batch < GEMV_MAX_BATCH,
                        Int8Strategy::Gemv => true,
                        Int8Strategy::Sparse | Int8Strategy::Dense | Int8Strategy::Amx => false,
                    };
                    if gemv {
                        split_rows(macs, 1, batch, inputs, x, outputs, y, |xc, yc| {
                            avx512::gemv_layer(v, &l, xc, w, yc)
                        });
                    } else {
                        let p = avx512::Packed::new(inputs, outputs);
                        avx512::pack(v, &p, w, &mut s.packed);
                        let wq = &s.packed[..p.lines()];
                        let kernel = match (self.strategy, amx::Amx::detect()) {
                            (Int8Strategy::Sparse, _) => avx512::Kernel::Sparse,
                            (Int8Strategy::Dense, _) => avx512::Kernel::Dense,
                            (Int8Strategy::Amx, Some(a)) => avx512::Kernel::Amx(a),
                            (_, Some(a)) if batch >= AMX_MIN_BATCH => avx512::Kernel::Amx(a),
                            _ => avx512::Kernel::Auto,
                        };
                        split_rows(macs, avx512::BLOCK, batch, inputs, x, outputs, y, |xc, yc| {
                            avx512::packed_layer(v, &l, &p, wq, xc, yc, kernel)
                        });
                    }
                }
                (None, Some(a)) => {
                    if factor != 0 {
                        s.sums.resize(outputs, 0);
                        avx2::row_sums(a, w, inputs, &mut s.sums[..outputs]);
                    }
                    let corr = (factor != 0).then(|| (&s.sums[..outputs], factor));
                    let clamp = build_params(layer, corr, &mut s.params);
                    let params = &s.params[..];
                    split_rows(macs, 2, batch, inputs, x, outputs, acc, |xc, ac| {
                        let b = xc.len() / inputs;
                        tiles::<2, 4>(
                            &|x, w, k| avx2::block::<2, 4>(a, x, w, k),
                            &|x, w, k| avx2::block::<2, 1>(a, x, w, k),
                            &|x, w, k| avx2::block::<1, 4>(a, x, w, k),
                            &|x, w, k| avx2::block::<1, 1>(a, x, w, k),
                            b,
                            inputs,
                            outputs,
                            xc,
                            w,
                            None,
                            ac,
                        )
                    });
                    avx2::requantize_rows(a, acc, outputs, params, &clamp, y);
                    if let Some(t) = layer.table() {
                        for v in y.iter_mut() {
                            *v = t[(*v as u8 ^ 0x80) as usize];
                        }
                    }
                }
                (None, None) => unreachable!("FastInt8 paths are checked against the CPU"),
            });
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.dense_i8(shape, x, input_offset, layer.weights(), acc);
            PortableInt8::requantize(layer, acc, y);
        }
    }
}

/// Covers the `batch × outputs` result with `MB × NO` tiles (`full`), then `MB × 1`
/// (`col`), `1 × NO` (`row`) and `1 × 1` (`one`) tiles for the ragged edges, and adds the
/// per-output correction when there is one. Each micro kernel returns the raw dot products of
/// its rows of `x` (`k` long) with its rows of `w`.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn tiles<const MB: usize, const NO: usize>(
    full: &dyn Fn(&[i8], &[i8], usize) -> [[i32; NO]; MB],
    col: &dyn Fn(&[i8], &[i8], usize) -> [[i32; 1]; MB],
    row: &dyn Fn(&[i8], &[i8], usize) -> [[i32; NO]; 1],
    one: &dyn Fn(&[i8], &[i8], usize) -> [[i32; 1]; 1],
    batch: usize,
    k: usize,
    outputs: usize,
    x: &[i8],
    w: &[i8],
    corr: Option<&[i32]>,
    acc: &mut [i32],
) {
    fn store<const R: usize, const C: usize>(
        acc: &mut [i32],
        outputs: usize,
        b: usize,
        o: usize,
        t: [[i32; C]; R],
        corr: Option<&[i32]>,
    ) {
        for (r, row) in t.iter().enumerate() {
            let dst = &mut acc[(b + r) * outputs + o..][..C];
            match corr {
                Some(corr) => {
                    for ((d, &v), &c) in dst.iter_mut().zip(row).zip(&corr[o..o + C]) {
                        *d = v.wrapping_add(c);
                    }
                }
                None => dst.copy_from_slice(row),
            }
        }
    }
    let full_b = batch / MB * MB;
    let full_o = outputs / NO * NO;
    let mut b = 0;
    while b < batch {
        let mb = if b < full_b { MB } else { 1 };
        let xb = &x[b * k..(b + mb) * k];
        let mut o = 0;
        while o < outputs {
            let no = if o < full_o { NO } else { 1 };
            let wo = &w[o * k..(o + no) * k];
            match (mb == MB, no == NO) {
                (true, true) => store(acc, outputs, b, o, full(xb, wo, k), corr),
                (true, false) => store(acc, outputs, b, o, col(xb, wo, k), corr),
                (false, true) => store(acc, outputs, b, o, row(xb, wo, k), corr),
                (false, false) => store(acc, outputs, b, o, one(xb, wo, k), corr),
            }
            o += no;
        }
        b += mb;
    }
}
