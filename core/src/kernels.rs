//! The kernel seam: the three dense products that dominate an MLP's time.
//!
//! Everything else in core (activations, batch norm, losses, optimizers) is cheap,
//! elementwise work. The products go through [`Kernels`], so a host can plug in SIMD and
//! threaded implementations, and firmware DSP ones, without the rest of core knowing.
//! [`Portable`] is the plain reference every fast implementation is tested against.
//!
//! All matrices are row-major `f32`. Core always calls these methods with slices of exactly
//! the lengths documented, so implementations may rely on them.
//!
//! Core never passes [`Activation::Maxout`] to the fused methods: a maxout layer is a plain
//! [`Kernels::dense_forward`] with `k` rows per unit (`outputs` is then `k ·` units), then
//! [`activation::maxout_forward`]; backward likewise calls [`Kernels::dense_backward_input`]
//! and [`activation::maxout_backward_in_place`]. So every implementation, fast or not, is
//! correct for maxout as long as its plain products are.

use crate::activation;
use crate::topology::Activation;

/// The dimensions of one dense product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Samples in the batch (rows of `x` and `y`).
    pub batch: usize,
    /// Input features per sample (columns of `x` and of `W`).
    pub inputs: usize,
    /// Output units (rows of `W`, columns of `y`).
    pub outputs: usize,
}

/// The same index range of the flat parameter, gradient and optimizer-state buffers: the
/// unit of the optimizer's elementwise update (see [`Kernels::update_params`]).
#[derive(Debug)]
pub struct ParamChunk<'a> {
    /// Parameters (updated in place).
    pub params: &'a mut [f32],
    /// Their gradients.
    pub grads: &'a [f32],
    /// The optimizer's state vectors over the same range (updated in place); a vector the
    /// optimizer does not keep is empty.
    pub state: [&'a mut [f32]; 2],
}

impl<'a> ParamChunk<'a> {
    /// Elements in the chunk.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the chunk holds no element.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Splits into the elements before `mid` and the rest (`mid` is clamped to the length;
    /// empty state vectors stay empty on both sides).
    pub fn split_at(self, mid: usize) -> (ParamChunk<'a>, ParamChunk<'a>) {
        let mid = mid.min(self.params.len());
        let (p0, p1) = self.params.split_at_mut(mid);
        let (g0, g1) = self.grads.split_at(mid.min(self.grads.len()));
        let [s0, s1] = self.state;
        let split = |s: &'a mut [f32]| {
            let at = mid.min(s.len());
            s.split_at_mut(at)
        };
        let ((a0, a1), (b0, b1)) = (split(s0), split(s1));
        (
            ParamChunk { params: p0, grads: g0, state: [a0, b0] },
            ParamChunk { params: p1, grads: g1, state: [a1, b1] },
        )
    }
}

/// The dense products of forward and backward, and the optimizer's elementwise pass.
pub trait Kernels {
    /// Forward: `y[b][o] = Σ_j x[b][j] · w[o][j] + bias[o]`, i.e. `Y = X Wᵀ + b`.
    ///
    /// `x`: `batch × inputs`, `w`: `outputs × inputs`, `bias`: `outputs`, `y`: `batch × outputs`
    /// (overwritten).
    fn dense_forward(&self, shape: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]);

    /// Backward to the inputs: `dx[b][j] = Σ_o dy[b][o] · w[o][j]`, i.e. `dX = dY W`.
    ///
    /// `dy`: `batch × outputs`, `w`: `outputs × inputs`, `dx`: `batch × inputs` (overwritten).
    fn dense_backward_input(&self, shape: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]);

    /// Backward to the parameters: `dw[o][j] = Σ_b dy[b][o] · x[b][j]` and
    /// `dbias[o] = Σ_b dy[b][o]`, i.e. `dW = dYᵀ X`.
    ///
    /// `x`: `batch × inputs`, `dy`: `batch × outputs`, `dw`: `outputs × inputs` and `dbias`:
    /// `outputs` (both overwritten).
    fn dense_backward_params(&self, shape: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: &mut [f32]);

    /// Forward with the layer's activation fused in: `z = X Wᵀ + b`, then `a = act(z)` as
    /// [`activation::forward`] computes it (row by row for softmax). `z` and `a`:
    /// `batch × outputs`. The default runs the two passes; a fast implementation applies the
    /// activation to each block of `z` while the block is still in cache.
    #[allow(clippy::too_many_arguments)]
    fn dense_forward_activation(
        &self,
        shape: Shape,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        act: Activation,
        z: &mut [f32],
        a: &mut [f32],
    ) {
        self.dense_forward(shape, x, w, bias, z);
        activation::forward(act, shape.outputs, z, a);
    }

    /// [`Kernels::dense_forward_activation`] for inference, where the pre-activations are not
    /// kept: `y = act(X Wᵀ + b)`, written once. `y`: `batch × outputs`.
    fn dense_forward_activation_in_place(
        &self,
        shape: Shape,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        act: Activation,
        y: &mut [f32],
    ) {
        self.dense_forward(shape, x, w, bias, y);
        activation::forward_in_place(act, shape.outputs, y);
    }

    /// Backward to the inputs with the previous layer's activation derivative fused in:
    /// `dx = dY W`, then multiplied by `act'` as [`activation::backward_in_place`] does, with
    /// `z` and `a` that layer's saved pre-activations and activations (`batch × inputs`).
    /// The default runs the two passes.
    #[allow(clippy::too_many_arguments)]
    fn dense_backward_input_activation(
        &self,
        shape: Shape,
        dy: &[f32],
        w: &[f32],
        act: Activation,
        z: &[f32],
        a: &[f32],
        dx: &mut [f32],
    ) {
        self.dense_backward_input(shape, dy, w, dx);
        activation::backward_in_place(act, shape.inputs, z, a, dx);
    }

    /// Runs the optimizer's update `update` over `chunk`: at once (the default), or split into
    /// disjoint pieces with [`ParamChunk::split_at`] and run in any order, on any threads.
    /// Each element's update reads and writes that element alone, so every split gives the
    /// same bits. A pass over the whole model (with Adam: 4 reads and 3 writes per
    /// parameter), so on a multi-core host it is worth spreading over the cores.
    fn update_params(&self, chunk: ParamChunk<'_>, update: &(dyn Fn(ParamChunk<'_>) + Sync)) {
        update(chunk)
    }
}

/// Straightforward loops in the order that keeps memory access contiguous. Correct on every
/// target; the reference that faster kernels are checked against.
#[derive(Clone, Copy, Debug, Default)]
pub struct Portable;

impl Kernels for Portable {
    fn dense_forward(&self, shape: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        for (xr, yr) in x.chunks_exact(shape.inputs).zip(y.chunks_exact_mut(shape.outputs)) {
            for ((y, wr), &b) in yr.iter_mut().zip(w.chunks_exact(shape.inputs)).zip(bias) {
                *y = dot(xr, wr) + b;
            }
        }
    }

    fn dense_backward_input(&self, shape: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        for (dyr, dxr) in dy.chunks_exact(shape.outputs).zip(dx.chunks_exact_mut(shape.inputs)) {
            dxr.fill(0.0);
            for (&g, wr) in dyr.iter().zip(w.chunks_exact(shape.inputs)) {
                axpy(g, wr, dxr);
            }
        }
    }

    fn dense_backward_params(&self, shape: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: &mut [f32]) {
        dw.fill(0.0);
        dbias.fill(0.0);
        for (xr, dyr) in x.chunks_exact(shape.inputs).zip(dy.chunks_exact(shape.outputs)) {
            for ((&g, dwr), db) in dyr.iter().zip(dw.chunks_exact_mut(shape.inputs)).zip(dbias.iter_mut()) {
                *db += g;
                if g != 0.0 {
                    axpy(g, xr, dwr);
                }
            }
        }
    }
}

/// Dot product with four independent accumulators, so the compiler can keep several FMAs in
/// flight (and vectorize) while staying deterministic.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let (a4, a_tail) = a.split_at(a.len() - a.len() % 4);
    let (b4, b_tail) = b.split_at(a4.len().min(b.len()));
    for (ca, cb) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        for k in 0..4 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut tail = 0.0;
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `y += alpha · x`.
#[inline]
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_hand_computed_values() {
        // x = [[1, 2, 3]], W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1]
        let s = Shape { batch: 1, inputs: 3, outputs: 2 };
        let (x, w, b) = ([1.0, 2.0, 3.0], [1.0, 0.0, -1.0, 2.0, 1.0, 0.0], [0.5, -1.0]);
        let mut y = [0.0; 2];
        Portable.dense_forward(s, &x, &w, &b, &mut y);
        assert_eq!(y, [1.0 - 3.0 + 0.5, 2.0 + 2.0 - 1.0]);
        let dy = [1.0, 2.0];
        let mut dx = [9.0; 3];
        Portable.dense_backward_input(s, &dy, &w, &mut dx);
        assert_eq!(dx, [1.0 + 4.0, 2.0, -1.0]);
        let (mut dw, mut db) = ([9.0; 6], [9.0; 2]);
        Portable.dense_backward_params(s, &x, &dy, &mut dw, &mut db);
        assert_eq!(dw, [1.0, 2.0, 3.0, 2.0, 4.0, 6.0]);
        assert_eq!(db, [1.0, 2.0]);
    }

    #[test]
    fn dot_handles_every_tail_length() {
        for n in 0..11 {
            let a: [f32; 10] = core::array::from_fn(|i| i as f32 + 1.0);
            let expected: f32 = a[..n].iter().map(|v| v * v).sum();
            assert_eq!(dot(&a[..n], &a[..n]), expected);
        }
    }
}
