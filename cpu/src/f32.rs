//! Fast implementations of core's kernel seam for the host.
//!
//! [`Fast`] is what the host trains with, [`Prepared`] (`Fast` with one fixed model's wide
//! layers transposed once) what it infers with. `Fast` picks, per product:
//!
//! - one sample at a time (batches below [`SMALL_BATCH`]): [`gemv`], a matrix-vector product
//!   that skips all-zero chunks of the input;
//! - inputs that are mostly zeros (MNIST pixels, ReLU outputs; at most
//!   [`SPARSE_MAX_DENSITY`] nonzero, estimated on the first rows): [`sparse`], which visits
//!   only the nonzero inputs for `Y = X Wᵀ + b` and `dW = dYᵀ X`;
//! - anything else: [`Gemm`], our packed, cache-blocked SGEMM ([`gemm`]: AVX-512 and AVX2 +
//!   FMA micro-kernels, bias add fused, a one-vector-wide tile for narrow layers), which
//!   matches `matrixmultiply` ([`Matrixmultiply`], kept for comparison) on large products and
//!   beats it on narrow and small ones (measured in docs/PERFORMANCE.md with `benches/benches/cpu.rs`).
//!
//! Around the products, `Fast` implements the seam's provided methods: the activation (or
//! its derivative) fused into each task of a product, small products and passes kept on the
//! calling thread, and the optimizer's elementwise pass split over rayon's threads.
//!
//! The vector code is written once and compiled for AVX-512, AVX2 + FMA and the baseline,
//! chosen at run time ([`Isa`]); threads come from rayon's pool (sized by [`crate::pool::Threads`]), and
//! every output is computed by one task in a fixed order, so results do not depend on the
//! thread count. Results differ from [`mlp::Portable`] only by summation order;
//! `cpu/tests/f32.rs` checks the agreement on random and ragged shapes for every [`Isa`].

pub mod gemm;
pub mod gemv;
mod simd;
pub mod sparse;

use std::ops::Range;

use gemm::{Init, Mat};
use mlp::{activation, Activation, Kernels, Model, ParamChunk, Portable, Shape};
use rayon::prelude::*;

use crate::isa::Isa;
use sparse::Epilogue;

/// Our packed, cache-blocked SGEMM ([`gemm`]) alone, for every product: [`Fast`]'s dense
/// path, kept as a type of its own so benches can compare it with the zero-skipping kernels
/// and with [`Matrixmultiply`].
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    isa: Isa,
}

impl Default for Gemm {
    fn default() -> Self {
        Self::new()
    }
}

impl Gemm {
    /// The fastest instruction set this CPU supports.
    pub fn new() -> Self {
        Self { isa: Isa::best() }
    }

    /// A specific instruction set (a token from [`Isa::detect`] or [`Isa::available`]).
    pub fn with_isa(isa: Isa) -> Self {
        Self { isa }
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }
}

impl Kernels for Gemm {
    fn dense_forward(&self, s: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        // Y = X · Wᵀ + b; W is [out][in], so Wᵀ has strides (1, in).
        let (x, wt) = (Mat { data: x, rs: s.inputs, cs: 1 }, Mat { data: w, rs: 1, cs: s.inputs });
        gemm::gemm(self.isa, s.batch, s.inputs, s.outputs, x, wt, Init::Bias(bias), y);
    }

    fn dense_backward_input(&self, s: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        // dX[B×I] = dY[B×O] · W[O×I].
        let (dy, w) = (Mat { data: dy, rs: s.outputs, cs: 1 }, Mat { data: w, rs: s.inputs, cs: 1 });
        gemm::gemm(self.isa, s.batch, s.outputs, s.inputs, dy, w, Init::Zero, dx);
    }

    fn dense_backward_params(&self, s: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: &mut [f32]) {
        // dW[O×I] = dYᵀ[O×B] · X[B×I]; dYᵀ is dY with strides (1, O).
        let (dyt, x) = (Mat { data: dy, rs: 1, cs: s.outputs }, Mat { data: x, rs: s.inputs, cs: 1 });
        gemm::gemm(self.isa, s.outputs, s.batch, s.inputs, dyt, x, Init::Zero, dw);
        column_sums(s.outputs, dy, dbias);
    }
}

/// `matrixmultiply`'s SGEMM (AVX-512/AVX2/FMA chosen at run time, on its own threads:
/// `MATMUL_NUM_THREADS`), kept for comparison in benches and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Matrixmultiply;

/// Below this batch size the products are per sample: packing and threading cost more than
/// they save (the measured crossover: docs/PERFORMANCE.md, "Batch size and kernel choice").
pub const SMALL_BATCH: usize = 8;

/// The zero-skipping kernels run when at most this fraction of the inputs is nonzero.
pub const SPARSE_MAX_DENSITY: f32 = 0.5;

/// Layers narrower than this stay on the dense kernels: too little work per nonzero input.
pub const SPARSE_MIN_OUTPUTS: usize = 32;

/// The host's kernels (see the [module docs](self)).
#[derive(Clone, Copy, Debug)]
pub struct Fast {
    isa: Isa,
}

impl Default for Fast {
    fn default() -> Self {
        Self::new()
    }
}

impl Fast {
    /// The fastest instruction set this CPU supports.
    pub fn new() -> Self {
        Self { isa: Isa::best() }
    }

    /// A specific instruction set (a token from [`Isa::detect`] or [`Isa::available`]).
    pub fn with_isa(isa: Isa) -> Self {
        Self { isa }
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    fn gemm(&self) -> Gemm {
        Gemm { isa: self.isa }
    }

    fn sparse(&self, s: Shape, x: &[f32]) -> bool {
        s.outputs >= SPARSE_MIN_OUTPUTS && sparse::density(x, s.inputs, s.batch) <= SPARSE_MAX_DENSITY
    }
}

impl Kernels for Fast {
    fn dense_forward(&self, s: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        if s.outputs == 0 {
            return;
        }
        if s.batch < SMALL_BATCH {
            sparse::with_indices(s.inputs / sparse::LANES, |active| {
                let rows = x.chunks_exact(s.inputs.max(1)).take(s.batch);
                for (xr, yr) in rows.zip(y.chunks_exact_mut(s.outputs)) {
                    gemv::forward(self.isa, xr, w, bias, yr, active);
                }
            });
            if s.inputs == 0 {
                y.chunks_exact_mut(s.outputs).for_each(|r| r.copy_from_slice(bias));
            }
        } else if self.sparse(s, x) {
            sparse::forward(self.isa, s.inputs, s.outputs, x, w, bias, y, Epilogue::None);
        } else {
            self.gemm().dense_forward(s, x, w, bias, y);
        }
    }

    fn dense_backward_input(&self, s: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        self.gemm().dense_backward_input(s, dy, w, dx)
    }

    fn dense_backward_params(&self, s: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: &mut [f32]) {
        if s.batch >= SMALL_BATCH && self.sparse(s, x) {
            sparse::backward_params(self.isa, s.inputs, s.outputs, x, dy, dw, dbias);
        } else {
            self.gemm().dense_backward_params(s, x, dy, dw, dbias);
        }
    }

    fn dense_forward_activation(
        &self,
        s: Shape,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        act: Activation,
        z: &mut [f32],
        a: &mut [f32],
    ) {
        if s.batch >= SMALL_BATCH && s.outputs > 0 && self.sparse(s, x) {
            // Fused: each task applies the activation to its rows right after computing them.
            return sparse::forward(self.isa, s.inputs, s.outputs, x, w, bias, z, Epilogue::Into(act, a));
        }
        self.dense_forward(s, x, w, bias, z);
        if s.batch < SMALL_BATCH {
            return activation::forward(act, s.outputs, z, a);
        }
        let z = &*z;
        by_rows(s.outputs, a, |rows, a| activation::forward(act, s.outputs, &z[rows], a));
    }

    fn dense_forward_activation_in_place(
        &self,
        s: Shape,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        act: Activation,
        y: &mut [f32],
    ) {
        if s.batch >= SMALL_BATCH && s.outputs > 0 && self.sparse(s, x) {
            return sparse::forward(self.isa, s.inputs, s.outputs, x, w, bias, y, Epilogue::InPlace(act));
        }
        self.dense_forward(s, x, w, bias, y);
        if s.batch < SMALL_BATCH {
            return activation::forward_in_place(act, s.outputs, y);
        }
        by_rows(s.outputs, y, |_, y| activation::forward_in_place(act, s.outputs, y));
    }

    fn dense_backward_input_activation(
        &self,
        s: Shape,
        dy: &[f32],
        w: &[f32],
        act: Activation,
        z: &[f32],
        a: &[f32],
        dx: &mut [f32],
    ) {
        if s.batch * s.inputs * s.outputs < SERIAL_PRODUCT {
            // Less work than a hand-off to another thread costs (the output layer's dx at
            // batch 256: about 15 µs alone, about 50 µs split over two threads).
            self.dense_backward_input(s, dy, w, dx);
            return activation::backward_in_place(act, s.inputs, z, a, dx);
        }
        if s.batch >= SMALL_BATCH && s.outputs <= NARROW_OUTPUTS {
            // A narrow product (the output layer's, into the last hidden layer): its `W` is a
            // few KiB, so each task computes its own rows of `dx` and applies the derivative
            // while they are in cache.
            let gemm = self.gemm();
            let rows_of = |r: &Range<usize>| r.start / s.inputs.max(1)..r.end / s.inputs.max(1);
            return by_rows(s.inputs, dx, |r, dx| {
                let b = rows_of(&r);
                let block = Shape { batch: b.len(), ..s };
                gemm.dense_backward_input(block, &dy[b.start * s.outputs..b.end * s.outputs], w, dx);
                activation::backward_in_place(act, s.inputs, &z[r.clone()], &a[r], dx)
            });
        }
        self.dense_backward_input(s, dy, w, dx);
        by_rows(s.inputs, dx, |rows, dx| {
            activation::backward_in_place(act, s.inputs, &z[rows.clone()], &a[rows], dx)
        });
    }

    fn update_params(&self, chunk: ParamChunk<'_>, update: &(dyn Fn(ParamChunk<'_>) + Sync)) {
        split_update(chunk, update)
    }
}

/// [`Fast`] for inference with one model whose weights stay fixed: each layer that the
/// zero-skipping kernel would take (at least [`SPARSE_MIN_OUTPUTS`] outputs) has its `W`
/// transposed once, here, instead of at every call. A single sample then reads only the `W`
/// columns of its nonzero inputs (about 150 of 784 for a digit) instead of the rows' chunks
/// that hold any (about 58%), and a batch skips the per-call transpose.
///
/// It borrows the parameters, so they cannot change while it exists; a product with any
/// other weights goes to [`Fast`].
///
/// ```
/// use cpu::Prepared;
/// use mlp::{Activation, LayerSpec, Model, Topology};
///
/// let t = Topology::new(4, &[LayerSpec::dense(32, Activation::Relu), LayerSpec::dense(2, Activation::Softmax)])?;
/// let params = vec![0.01; t.param_len()];
/// let model = Model::new(&t, &params, &[])?;
/// let kernels = Prepared::new(&model);
/// let mut ws = vec![0.0; t.infer_workspace_len(1)];
/// let out = model.forward(&kernels, &[0.0, 1.0, 0.0, 0.5], 1, &mut ws)?;
/// assert!((out[0] + out[1] - 1.0).abs() < 1e-6);
/// # Ok::<(), mlp::Error>(())
/// ```
#[derive(Debug)]
pub struct Prepared<'m> {
    fast: Fast,
    /// Per prepared layer: its weights (to recognise them) and their transpose.
    layers: Vec<(&'m [f32], sparse::TransposedWeights)>,
}

impl<'m> Prepared<'m> {
    /// Prepares every wide layer of `model` (with the fastest instruction set).
    pub fn new(model: &Model<'m>) -> Self {
        let fast = Fast::new();
        let t = model.topology();
        let layers = (0..t.layers().len())
            .filter_map(|i| {
                // Rows, not units: a maxout layer's product has k rows per unit.
                let (r, outputs, inputs) = (t.param_ranges(i)?, t.layers()[i].rows(), t.fan_in(i));
                let w = &model.params()[r.weights];
                (outputs >= SPARSE_MIN_OUTPUTS)
                    .then(|| (w, sparse::TransposedWeights::new(fast.isa, w, outputs, inputs)))
            })
            .collect();
        Self { fast, layers }
    }

    /// The prepared transpose of `w`, when `w` is one of the model's layers (the same
    /// memory) and the input is sparse enough for the zero-skipping kernel.
    fn transposed(&self, s: Shape, x: &[f32], w: &[f32]) -> Option<&sparse::TransposedWeights> {
        let (_, t) = self.layers.iter().find(|(pw, t)| {
            std::ptr::eq(pw.as_ptr(), w.as_ptr()) && pw.len() == w.len() && t.shape() == (s.inputs, s.outputs)
        })?;
        (sparse::density(x, s.inputs, s.batch) <= SPARSE_MAX_DENSITY).then_some(t)
    }
}

impl Kernels for Prepared<'_> {
    fn dense_forward(&self, s: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        match self.transposed(s, x, w) {
            Some(t) => t.forward(x, bias, y, Epilogue::None),
            None => self.fast.dense_forward(s, x, w, bias, y),
        }
    }

    fn dense_backward_input(&self, s: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        self.fast.dense_backward_input(s, dy, w, dx)
    }

    fn dense_backward_params(&self, s: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: &mut [f32]) {
        self.fast.dense_backward_params(s, x, dy, dw, dbias)
    }

    fn dense_forward_activation_in_place(
        &self,
        s: Shape,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        act: Activation,
        y: &mut [f32],
    ) {
        match self.transposed(s, x, w) {
            Some(t) => t.forward(x, bias, y, Epilogue::InPlace(act)),
            None => self.fast.dense_forward_activation_in_place(s, x, w, bias, act, y),
        }
    }
}

/// Products with at most this many outputs compute `dx` block by block with the derivative
/// fused in (see `dense_backward_input_activation`): one vector of outputs.
const NARROW_OUTPUTS: usize = 16;

/// Products of fewer multiply-adds than this, with their epilogue, run on the calling thread
/// (our SGEMM splits only above 1 M as well).
const SERIAL_PRODUCT: usize = 1 << 20;

/// Elementwise passes over fewer values than this run on the calling thread.
const SERIAL_PASS: usize = 16 * 1024;

/// Rows of a batch per task of an elementwise pass.
const ROWS_PER_PASS: usize = 32;

/// Runs `f` on blocks of whole rows (`width` wide) of `out` on rayon's threads, with the
/// block's range of indices into `out` (to slice the pass's other operands alike).
fn by_rows(width: usize, out: &mut [f32], f: impl Fn(Range<usize>, &mut [f32]) + Sync) {
    if out.len() < SERIAL_PASS {
        // Less work than waking another thread costs (the 10-class output layer's softmax).
        return f(0..out.len(), out);
    }
    let block = ROWS_PER_PASS * width.max(1);
    out.par_chunks_mut(block).enumerate().for_each(|(i, o)| f(i * block..i * block + o.len(), o));
}

/// Elements per task of the optimizer's pass: enough work (tens of µs with Adam) to
/// outweigh handing the task to another thread.
const UPDATE_GRAIN: usize = 32 * 1024;

/// Runs `update` over halves of `chunk` on rayon's threads, down to [`UPDATE_GRAIN`]. Every
/// element is updated once, by itself, so the split never changes the result.
fn split_update(chunk: ParamChunk<'_>, update: &(dyn Fn(ParamChunk<'_>) + Sync)) {
    if chunk.len() <= UPDATE_GRAIN {
        return update(chunk);
    }
    // Split on a 64-byte boundary, so the two tasks never write the same cache line.
    let mid = (chunk.len() / 2).next_multiple_of(16);
    let (a, b) = chunk.split_at(mid);
    rayon::join(|| split_update(a, update), || split_update(b, update));
}

/// `C[m×n] = alpha · A[m×k] · B[k×n] + beta · C`, with A and B given by row and column
/// strides, over safe slices whose lengths the caller has checked.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    beta: f32,
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: matrixmultiply would leave C scaled by beta.
        c[..m * n].iter_mut().for_each(|v| *v *= beta);
        return;
    }
    // Out-of-range strides would make matrixmultiply read out of bounds: refuse loudly
    // (a bug in this file, never a user input: core checks every length first).
    let span = |(s, rs, cs): (&[f32], isize, isize), rows: usize, cols: usize| {
        (rows - 1) as isize * rs + (cols - 1) as isize * cs < s.len() as isize
    };
    assert!(span(a, m, k) && span(b, k, n) && c.len() >= m * n, "sgemm operand too short");
    // SAFETY: the assertion above proves every element A[i][p] (i < m, p < k), B[p][j]
    // and C[i][j] addressed through these strides lies inside its slice; C is exclusively
    // borrowed and does not alias A or B (distinct Rust borrows).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.0.as_ptr(),
            a.1,
            a.2,
            b.0.as_ptr(),
            b.1,
            b.2,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

impl Kernels for Matrixmultiply {
    fn dense_forward(&self, s: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        if s.batch < SMALL_BATCH {
            return Portable.dense_forward(s, x, w, bias, y);
        }
        // Y = bias (broadcast), then Y += X · Wᵀ; W is [out][in], so Wᵀ has strides (1, in).
        for row in y.chunks_exact_mut(s.outputs) {
            row.copy_from_slice(bias);
        }
        let i = s.inputs as isize;
        sgemm(s.batch, s.inputs, s.outputs, (x, i, 1), (w, 1, i), 1.0, y);
    }

    fn dense_backward_input(&self, s: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        if s.batch < SMALL_BATCH {
            return Portable.dense_backward_input(s, dy, w, dx);
        }
        // dX[B×I] = dY[B×O] · W[O×I].
        sgemm(s.batch, s.outputs, s.inputs, (dy, s.outputs as isize, 1), (w, s.inputs as isize, 1), 0.0, dx);
    }

    fn dense_backward_params(&self, s: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: &mut [f32]) {
        if s.batch < SMALL_BATCH {
            return Portable.dense_backward_params(s, x, dy, dw, dbias);
        }
        // dW[O×I] = dYᵀ[O×B] · X[B×I]; dYᵀ is dY with strides (1, O).
        sgemm(s.outputs, s.batch, s.inputs, (dy, 1, s.outputs as isize), (x, s.inputs as isize, 1), 0.0, dw);
        column_sums(s.outputs, dy, dbias);
    }
}

/// `dbias[o] = Σ_b dy[b][o]`.
fn column_sums(outputs: usize, dy: &[f32], dbias: &mut [f32]) {
    dbias.fill(0.0);
    for row in dy.chunks_exact(outputs.max(1)) {
        for (d, &g) in dbias.iter_mut().zip(row) {
            *d += g;
        }
    }
}
