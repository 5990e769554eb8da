//! The shape of a network and the one flat layout that parameters, gradients, optimizer
//! state and running statistics share.
//!
//! # Parameter layout
//! For each layer `i` with `n_in` inputs and `n` outputs, in order:
//!
//! | what | length | meaning |
//! |---|---|---|
//! | weights | `n * n_in` | `W[o][j]` at `o * n_in + j` (row-major, one row per output) |
//! | bias | `n` | `b[o]` (before batch norm: kept, never trained; see [`Trainer`](crate::Trainer)) |
//! | gamma | `n` if batch norm | batch-norm scale `γ[o]` |
//! | beta | `n` if batch norm | batch-norm shift `β[o]` |
//!
//! A maxout layer with `n` units of `k` pieces ([`Activation::Maxout`]) has `k·n` affine rows
//! where the table says `n`: weights `k·n × n_in` and bias `k·n`, row `o·k + j` being piece
//! `j` of unit `o` (a unit's pieces are adjacent, as in PyTorch's `Linear(n_in, k·n)` then
//! `.view(-1, n, k).max(-1)`). The next layer sees the `n` unit outputs.
//!
//! Gradients and every optimizer state vector use the same layout. Batch-norm running
//! statistics are not trained, so they live in their own buffer (like PyTorch's buffers):
//! for each batch-norm layer, `mean[n]` then `var[n]`.
//!
//! All lengths are `const fn`s of the layer list, so firmware can size `static` arrays:
//!
//! ```
//! use mlp::{layout, Activation, LayerSpec};
//! const LAYERS: [LayerSpec; 2] = [
//!     LayerSpec::dense(256, Activation::Relu),
//!     LayerSpec::dense(10, Activation::Softmax),
//! ];
//! static PARAMS: [f32; layout::param_len(784, &LAYERS)] = [0.0; layout::param_len(784, &LAYERS)];
//! assert_eq!(PARAMS.len(), 203_530);
//! ```

use core::ops::Range;

use crate::error::Error;

/// The most layers a [`Topology`] holds (hidden layers plus the output layer).
pub const MAX_LAYERS: usize = 8;

/// The widest input or layer a [`Topology`] accepts (2^20), so that sizes stay far from
/// overflow on 32-bit targets for any realistic model.
pub const MAX_WIDTH: usize = 1 << 20;

/// The most pieces a maxout unit takes (Goodfellow et al. 2013 used 2 to 5).
pub const MAX_MAXOUT_PIECES: u8 = 16;

/// A layer's nonlinearity, applied after the affine map (and batch norm, if any).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `f(z) = z`.
    Identity,
    /// `f(z) = 1 / (1 + e^-z)`.
    Sigmoid,
    /// `f(z) = tanh z`.
    Tanh,
    /// `f(z) = max(0, z)`; `f'(0) = 0`.
    Relu,
    /// `f(z) = z` for `z > 0`, else `alpha * z`.
    LeakyRelu(f32),
    /// `f(z) = z` for `z > 0`, else `alpha * (e^z - 1)`.
    Elu(f32),
    /// The exact GELU, `z * Φ(z)` with `Φ` the standard normal CDF (PyTorch's default).
    Gelu,
    /// Row-wise softmax. Output layer only; with the cross-entropy loss it is fused.
    Softmax,
    /// Maxout (Goodfellow et al. 2013) with `k` pieces: unit `o` outputs `max_j z[o·k + j]`
    /// over its `k` affine pieces (see the module's parameter layout). Hidden layers only,
    /// `2 <= k <=` [`MAX_MAXOUT_PIECES`], no batch norm. The gradient flows to the arg-max
    /// piece alone; on a tie, to the first (lowest `j`), as PyTorch's `max(dim)` backward does.
    Maxout(u8),
}

impl Activation {
    /// The lowercase name used in messages and files.
    pub const fn name(&self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Elu(_) => "elu",
            Activation::Gelu => "gelu",
            Activation::Softmax => "softmax",
            Activation::Maxout(_) => "maxout",
        }
    }

    /// Affine rows per unit: `k` for maxout, 1 for every pointwise activation.
    pub const fn pieces(&self) -> usize {
        match self {
            Activation::Maxout(k) => *k as usize,
            _ => 1,
        }
    }
}

/// One dense layer: `outputs` units, then optional batch norm, the activation, then
/// optional dropout (in training mode).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerSpec {
    /// Number of output units.
    pub outputs: usize,
    /// The nonlinearity.
    pub activation: Activation,
    /// Dropout rate in `[0, 1)`; 0 disables it.
    pub dropout: f32,
    /// Batch norm between the affine map and the activation.
    pub batch_norm: bool,
}

impl LayerSpec {
    /// A dense layer with no dropout and no batch norm.
    pub const fn dense(outputs: usize, activation: Activation) -> Self {
        LayerSpec { outputs, activation, dropout: 0.0, batch_norm: false }
    }

    /// The same layer with inverted dropout at `rate` in training mode.
    pub const fn with_dropout(self, rate: f32) -> Self {
        LayerSpec { dropout: rate, ..self }
    }

    /// The same layer with batch norm before the activation.
    pub const fn with_batch_norm(self) -> Self {
        LayerSpec { batch_norm: true, ..self }
    }

    /// Whether dropout is active in training mode.
    pub const fn has_dropout(&self) -> bool {
        self.dropout > 0.0
    }

    /// Affine rows (pre-activations per sample): `k · outputs` for maxout, else `outputs`.
    pub const fn rows(&self) -> usize {
        self.outputs.saturating_mul(self.activation.pieces())
    }
}

/// `const fn` buffer lengths of a layer list, for sizing `static` arrays. The same numbers
/// come from [`Topology`]'s methods at run time. Arithmetic saturates, so an absurd layer
/// list yields `usize::MAX`, which no real buffer matches.
pub mod layout {
    use super::LayerSpec;

    /// Parameters of all layers (weights, bias, and gamma/beta where batch norm is on).
    pub const fn param_len(input: usize, layers: &[LayerSpec]) -> usize {
        let mut total = 0usize;
        let mut fan_in = input;
        let mut i = 0;
        while i < layers.len() {
            let l = &layers[i];
            let per_row = fan_in.saturating_add(if l.batch_norm { 3 } else { 1 });
            total = total.saturating_add(l.rows().saturating_mul(per_row));
            fan_in = l.outputs;
            i += 1;
        }
        total
    }

    /// Batch-norm running statistics: `mean` and `var` for every batch-norm layer.
    pub const fn running_len(layers: &[LayerSpec]) -> usize {
        let mut total = 0usize;
        let mut i = 0;
        while i < layers.len() {
            if layers[i].batch_norm {
                total = total.saturating_add(layers[i].outputs.saturating_mul(2));
            }
            i += 1;
        }
        total
    }

    /// The widest layer's pre-activations ([`LayerSpec::rows`]: its outputs, or `k` times
    /// them for maxout), which bounds every per-sample buffer of a pass.
    pub const fn max_width(layers: &[LayerSpec]) -> usize {
        let mut m = 0;
        let mut i = 0;
        while i < layers.len() {
            if layers[i].rows() > m {
                m = layers[i].rows();
            }
            i += 1;
        }
        m
    }

    /// Workspace for inference on `batch` samples: two ping-pong activation buffers.
    pub const fn infer_workspace_len(layers: &[LayerSpec], batch: usize) -> usize {
        max_width(layers).saturating_mul(batch).saturating_mul(2)
    }

    /// Workspace a training layer keeps for backward on `batch` samples.
    pub const fn train_layer_len(layer: &LayerSpec, batch: usize) -> usize {
        let bn = layer.outputs;
        // z (k rows per unit for maxout) and a; batch norm: x_hat, then mean and 1/std per
        // unit; dropout: mask and output.
        let mut per_sample = 1usize.saturating_add(layer.activation.pieces());
        if layer.batch_norm {
            per_sample += 1;
        }
        if layer.has_dropout() {
            per_sample += 2;
        }
        let mut len = bn.saturating_mul(batch).saturating_mul(per_sample);
        if layer.batch_norm {
            len = len.saturating_add(bn.saturating_mul(2));
        }
        len
    }

    /// Workspace for a training step on up to `batch` samples: every layer's saved
    /// activations plus two ping-pong gradient buffers.
    pub const fn train_workspace_len(layers: &[LayerSpec], batch: usize) -> usize {
        let mut total = max_width(layers).saturating_mul(batch).saturating_mul(2);
        let mut i = 0;
        while i < layers.len() {
            total = total.saturating_add(train_layer_len(&layers[i], batch));
            i += 1;
        }
        total
    }
}

/// Where one layer's parameters sit in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamRanges {
    /// `W[o][j]`, row-major (`k` rows per unit for maxout: see the module's layout).
    pub weights: Range<usize>,
    /// `b[o]`.
    pub bias: Range<usize>,
    /// Batch-norm `γ` and `β`, when the layer has batch norm.
    pub batch_norm: Option<(Range<usize>, Range<usize>)>,
}

impl ParamRanges {
    /// First index after this layer's parameters.
    pub fn end(&self) -> usize {
        match &self.batch_norm {
            Some((_, beta)) => beta.end,
            None => self.bias.end,
        }
    }
}

/// A validated network shape: input width and 1 to [`MAX_LAYERS`] dense layers.
///
/// ```
/// use mlp::{Activation, LayerSpec, Topology};
/// let t = Topology::new(784, &[
///     LayerSpec::dense(256, Activation::Relu).with_dropout(0.2),
///     LayerSpec::dense(10, Activation::Softmax),
/// ])?;
/// assert_eq!(t.param_len(), 203_530);
/// assert!(Topology::new(784, &[LayerSpec::dense(10, Activation::Softmax),
///                              LayerSpec::dense(10, Activation::Relu)]).is_err());
/// # Ok::<(), mlp::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    input: usize,
    layers: heapless::Vec<LayerSpec, MAX_LAYERS>,
}

impl Topology {
    /// Validates and builds a topology. Errors: no layers, too many, a zero or too large
    /// width, softmax before the last layer, dropout outside `[0, 1)` or on the output
    /// layer, a negative or non-finite activation parameter.
    pub fn new(input: usize, layers: &[LayerSpec]) -> Result<Self, Error> {
        if layers.is_empty() {
            return Err(Error::NoLayers);
        }
        if layers.len() > MAX_LAYERS {
            return Err(Error::TooManyLayers { layers: layers.len(), max: MAX_LAYERS });
        }
        check_width(None, input)?;
        let last = layers.len() - 1;
        for (i, l) in layers.iter().enumerate() {
            check_width(Some(i), l.outputs)?;
            if l.activation == Activation::Softmax && i != last {
                return Err(Error::SoftmaxInHiddenLayer { layer: i });
            }
            if let Activation::Maxout(pieces) = l.activation {
                if !(2..=MAX_MAXOUT_PIECES).contains(&pieces) {
                    return Err(Error::InvalidMaxoutPieces { layer: i, pieces, max: MAX_MAXOUT_PIECES });
                }
                if i == last {
                    return Err(Error::MaxoutOnOutputLayer);
                }
                if l.batch_norm {
                    return Err(Error::MaxoutWithBatchNorm { layer: i });
                }
                check_width(Some(i), l.rows())?;
            }
            if let Activation::LeakyRelu(alpha) | Activation::Elu(alpha) = l.activation {
                if !(alpha.is_finite() && alpha >= 0.0) {
                    return Err(Error::InvalidActivationParameter { layer: i, alpha });
                }
            }
            if !(l.dropout.is_finite() && (0.0..1.0).contains(&l.dropout)) {
                return Err(Error::InvalidDropout { layer: i, rate: l.dropout });
            }
            if i == last && l.has_dropout() {
                return Err(Error::DropoutOnOutputLayer);
            }
        }
        let sizes = [layout::param_len(input, layers), layout::train_workspace_len(layers, 1)];
        if sizes.contains(&usize::MAX) {
            return Err(Error::ModelTooLarge);
        }
        let mut list = heapless::Vec::new();
        // Cannot fail: the length was checked against the capacity above.
        list.extend_from_slice(layers)
            .map_err(|_| Error::TooManyLayers { layers: layers.len(), max: MAX_LAYERS })?;
        Ok(Topology { input, layers: list })
    }

    /// Width of one input sample.
    pub fn input(&self) -> usize {
        self.input
    }

    /// Width of one output sample (the last layer's units).
    pub fn output(&self) -> usize {
        // Never empty: `new` rejects an empty list.
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    /// The output layer.
    pub fn output_layer(&self) -> &LayerSpec {
        // `new` guarantees at least one layer; index 0 is the fallback that cannot happen.
        &self.layers[self.layers.len().saturating_sub(1)]
    }

    /// Inputs of layer `i` (the input width for layer 0).
    pub fn fan_in(&self, i: usize) -> usize {
        if i == 0 {
            self.input
        } else {
            self.layers.get(i - 1).map_or(0, |l| l.outputs)
        }
    }

    /// Length of the parameter buffer (also of gradients and each optimizer state vector).
    pub fn param_len(&self) -> usize {
        layout::param_len(self.input, &self.layers)
    }

    /// Length of the batch-norm running-statistics buffer (0 without batch norm).
    pub fn running_len(&self) -> usize {
        layout::running_len(&self.layers)
    }

    /// Length of the inference workspace for `batch` samples.
    pub fn infer_workspace_len(&self, batch: usize) -> usize {
        layout::infer_workspace_len(&self.layers, batch)
    }

    /// Length of the training workspace for batches of up to `batch` samples.
    pub fn train_workspace_len(&self, batch: usize) -> usize {
        layout::train_workspace_len(&self.layers, batch)
    }

    /// Whether any layer uses batch norm.
    pub fn has_batch_norm(&self) -> bool {
        self.layers.iter().any(|l| l.batch_norm)
    }

    /// Where layer `i`'s parameters are in the flat buffer, or `None` past the last layer.
    pub fn param_ranges(&self, i: usize) -> Option<ParamRanges> {
        let mut start = 0usize;
        for (k, l) in self.layers.iter().enumerate() {
            let fan_in = self.fan_in(k);
            let w = start..start + l.rows() * fan_in;
            let b = w.end..w.end + l.rows();
            let bn =
                l.batch_norm.then(|| (b.end..b.end + l.outputs, b.end + l.outputs..b.end + 2 * l.outputs));
            let ranges = ParamRanges { weights: w, bias: b, batch_norm: bn };
            if k == i {
                return Some(ranges);
            }
            start = ranges.end();
        }
        None
    }

    /// Where layer `i`'s running `mean` and `var` are in the running-statistics buffer, or
    /// `None` if layer `i` has no batch norm.
    pub fn running_ranges(&self, i: usize) -> Option<(Range<usize>, Range<usize>)> {
        let mut start = 0usize;
        for (k, l) in self.layers.iter().enumerate() {
            if l.batch_norm {
                if k == i {
                    return Some((start..start + l.outputs, start + l.outputs..start + 2 * l.outputs));
                }
                start += 2 * l.outputs;
            }
        }
        None
    }

    /// Resets running statistics to PyTorch's initial values: mean 0, variance 1.
    pub fn reset_running(&self, running: &mut [f32]) -> Result<(), Error> {
        crate::error::check_len(crate::error::Buffer::Running, self.running_len(), running.len())?;
        for i in 0..self.layers.len() {
            if let Some((mean, var)) = self.running_ranges(i) {
                running[mean].fill(0.0);
                running[var].fill(1.0);
            }
        }
        Ok(())
    }
}

fn check_width(layer: Option<usize>, width: usize) -> Result<(), Error> {
    if width == 0 {
        Err(Error::ZeroWidth { layer })
    } else if width > MAX_WIDTH {
        Err(Error::WidthTooLarge { layer, width, max: MAX_WIDTH })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relu(n: usize) -> LayerSpec {
        LayerSpec::dense(n, Activation::Relu)
    }

    #[test]
    fn lengths_of_the_tutorial_model() {
        let t = Topology::new(784, &[relu(256), LayerSpec::dense(10, Activation::Softmax)]).unwrap();
        // 784*256 + 256 + 256*10 + 10, counted by hand.
        assert_eq!(t.param_len(), 200_704 + 256 + 2_560 + 10);
        assert_eq!(t.running_len(), 0);
        assert_eq!(t.infer_workspace_len(4), 2 * 4 * 256);
        // Layer 1 starts after 784*256 weights and 256 biases.
        assert_eq!(t.param_ranges(1).unwrap().weights, 200_960..200_960 + 2_560);
    }

    #[test]
    fn ranges_tile_the_buffer_with_batch_norm() {
        let t = Topology::new(
            3,
            &[
                relu(4).with_batch_norm(),
                relu(5),
                LayerSpec::dense(2, Activation::Identity).with_batch_norm(),
            ],
        )
        .unwrap();
        let mut next = 0;
        for i in 0..3 {
            let r = t.param_ranges(i).unwrap();
            assert_eq!(r.weights.start, next);
            assert_eq!(r.weights.len(), t.layers()[i].outputs * t.fan_in(i));
            next = r.end();
        }
        assert_eq!(next, t.param_len());
        assert_eq!(t.param_len(), 4 * (3 + 3) + 5 * (4 + 1) + 2 * (5 + 3));
        assert_eq!(t.running_len(), 2 * 4 + 2 * 2);
        assert_eq!(t.running_ranges(2), Some((8..10, 10..12)));
        assert_eq!(t.running_ranges(1), None);
        assert!(t.param_ranges(3).is_none());
    }

    #[test]
    fn invalid_topologies_are_errors() {
        let soft = LayerSpec::dense(3, Activation::Softmax);
        assert_eq!(Topology::new(3, &[]), Err(Error::NoLayers));
        assert_eq!(Topology::new(0, &[soft]), Err(Error::ZeroWidth { layer: None }));
        assert_eq!(Topology::new(3, &[relu(0), soft]), Err(Error::ZeroWidth { layer: Some(0) }));
        assert_eq!(Topology::new(3, &[soft, soft]), Err(Error::SoftmaxInHiddenLayer { layer: 0 }));
        assert_eq!(Topology::new(3, &[relu(2); 9]), Err(Error::TooManyLayers { layers: 9, max: 8 }));
        assert!(matches!(
            Topology::new(3, &[relu(2).with_dropout(1.0), soft]),
            Err(Error::InvalidDropout { layer: 0, .. })
        ));
        assert!(matches!(
            Topology::new(3, &[relu(2).with_dropout(f32::NAN), soft]),
            Err(Error::InvalidDropout { .. })
        ));
        assert_eq!(Topology::new(3, &[relu(2), relu(2).with_dropout(0.5)]), Err(Error::DropoutOnOutputLayer));
        assert!(matches!(
            Topology::new(3, &[LayerSpec::dense(2, Activation::Elu(-1.0)), soft]),
            Err(Error::InvalidActivationParameter { layer: 0, .. })
        ));
        assert!(matches!(
            Topology::new(MAX_WIDTH + 1, &[soft]),
            Err(Error::WidthTooLarge { layer: None, .. })
        ));
    }

    #[test]
    fn maxout_layers_have_k_rows_per_unit() {
        let t = Topology::new(
            3,
            &[
                LayerSpec::dense(4, Activation::Maxout(3)).with_dropout(0.5),
                LayerSpec::dense(2, Activation::Softmax),
            ],
        )
        .unwrap();
        // 12 rows of 3 weights, 12 biases, then 2 rows of 4 weights (the 4 units) and 2 biases.
        assert_eq!(t.param_len(), 12 * 3 + 12 + 2 * 4 + 2);
        let r = t.param_ranges(0).unwrap();
        assert_eq!((r.weights, r.bias), (0..36, 36..48));
        assert_eq!(t.param_ranges(1).unwrap().weights, 48..56);
        assert_eq!(t.fan_in(1), 4);
        // Training keeps z (12 per sample), a, mask and dropout output (4 each); the
        // ping-pong buffers hold the widest pre-activation, 12.
        assert_eq!(t.train_workspace_len(2), 2 * (12 + 3 * 4) + 2 * (2 + 2) + 2 * 2 * 12);
        assert_eq!(t.infer_workspace_len(2), 2 * 2 * 12);
    }

    #[test]
    fn invalid_maxout_layers_are_errors() {
        let soft = LayerSpec::dense(3, Activation::Softmax);
        for k in [0, 1, MAX_MAXOUT_PIECES + 1, u8::MAX] {
            assert_eq!(
                Topology::new(3, &[LayerSpec::dense(2, Activation::Maxout(k)), soft]),
                Err(Error::InvalidMaxoutPieces { layer: 0, pieces: k, max: MAX_MAXOUT_PIECES })
            );
        }
        assert_eq!(
            Topology::new(3, &[LayerSpec::dense(2, Activation::Maxout(2))]),
            Err(Error::MaxoutOnOutputLayer)
        );
        assert_eq!(
            Topology::new(3, &[LayerSpec::dense(2, Activation::Maxout(2)).with_batch_norm(), soft]),
            Err(Error::MaxoutWithBatchNorm { layer: 0 })
        );
        // The rows, not only the units, stay within MAX_WIDTH.
        assert!(matches!(
            Topology::new(3, &[LayerSpec::dense(MAX_WIDTH / 2 + 1, Activation::Maxout(2)), soft]),
            Err(Error::WidthTooLarge { layer: Some(0), .. })
        ));
    }

    #[test]
    fn absurd_lengths_saturate_instead_of_overflowing() {
        let huge = [LayerSpec::dense(usize::MAX / 2, Activation::Relu); 3];
        assert_eq!(layout::param_len(usize::MAX, &huge), usize::MAX);
        assert_eq!(layout::train_workspace_len(&huge, usize::MAX), usize::MAX);
    }
}
