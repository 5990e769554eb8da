//! int8 post-training quantization and integer-only inference, following TFLite's int8
//! conventions (the "integer-arithmetic-only" scheme of Jacob et al., 2018).
//!
//! # The arithmetic
//! A real value `r` is represented by an int8 `q` with `r = s · (q - z)` (scale `s`, zero
//! point `z`). For a dense layer with input `x` (`s_in`, `z_in`), weights `W` quantized
//! symmetrically per output channel (`s_w[o]`, zero point 0, values in `[-127, 127]`) and
//! bias `b` quantized to int32 with scale `s_in · s_w[o]` and zero point 0:
//!
//! ```text
//! acc[o] = Σ_j (x_q[j] - z_in) · W_q[o][j] + b_q[o]               (int32, wrapping)
//! y_q[o] = clamp(MBQM(acc[o], M0[o], shift[o]) + z_out, lo, hi)   (int8)
//! ```
//!
//! where `M0[o] · 2^(shift[o] - 31) ≈ s_in · s_w[o] / s_out` ([`quantize_multiplier`]) and
//! `MBQM` is gemmlowp's `MultiplyByQuantizedMultiplier`
//! ([`fixed::multiply_by_quantized_multiplier`]), or for a model file marked
//! [`Rounding::Single`] TFLite's single-rounding variant (what LiteRT's PyPI wheels compute;
//! imported `.tflite` models are marked so). `[lo, hi]` is `[z_out, 127]` for ReLU (the
//! fused activation) and `[-128, 127]` otherwise. Sigmoid, tanh, leaky ReLU, ELU and GELU
//! requantize to an int8 pre-activation with its own scale and zero point, then look up a
//! 256-entry table computed at quantization time. A softmax output layer returns its int8
//! logits (softmax is monotonic, so their argmax is the prediction); a float-capable caller
//! gets probabilities with [`Int8Model::dequantize_output`].
//!
//! The sum is specified modulo 2^32 (wrapping), so every kernel order gives the same bits;
//! it cannot overflow while `fan_in · 255 · 127 + |b_q|` stays below 2^31 (fan-in up to
//! about 66 000 for typical biases).
//!
//! # Float-free inference
//! [`forward`], [`Int8Model::quantize_u8`], the [`fixed`] primitives, the [`Int8Kernels`]
//! seam, and the [`Int8Model`] accessors other than the scale getters use no floating point:
//! the modules `fixed`, `kernels`, `view` and `infer` never touch `f32`/`f64`. The test
//! `core/tests/int8_float_free.rs` (`cargo test -p mlp --test int8_float_free -- --ignored`)
//! builds core for `thumbv6m-none-eabi` (no FPU), emits assembly and checks that no function
//! reachable from `forward` calls a soft-float routine (`__aeabi_f*`, `__aeabi_d*`, ...).
//! Parsing ([`Int8Model::parse`]) runs once and validates the topology's `f32` fields with
//! comparisons; quantization ([`quantize`]), calibration ([`calibrate`]) and the
//! dequantization helpers are float code for the host.
//!
//! # Workflow
//! 1. Host: [`calibrate`] the f32 model on a few hundred training samples (or fill
//!    [`Ranges`] from percentiles), then [`quantize`] into a model file buffer of
//!    [`encoded_len`] bytes (batch norm is folded, dropout dropped).
//! 2. Anywhere: [`Int8Model::parse`] the bytes (from flash, any alignment), quantize the input
//!    ([`Int8Model::quantize_u8`] for raw u8 samples with no floats, or
//!    [`Int8Model::quantize_input`]), run [`forward`], read [`argmax`] or dequantize.
//!
//! ```
//! use mlp::{init, int8, Activation, InputTransform, LayerSpec, Model, Portable, Rng, Topology};
//! let t = Topology::new(4, &[LayerSpec::dense(8, Activation::Relu), LayerSpec::dense(3, Activation::Softmax)])?;
//! let mut params = vec![0.0; t.param_len()];
//! init::initialize(&t, &mut params, init::Init::HeNormal, &mut Rng::new(7))?;
//! let samples: Vec<f32> = (0..64).map(|i| ((i * 37 % 255) as f32) / 255.0).collect();
//!
//! // Calibrate on the f32 model, then quantize into a model file.
//! let mut ranges = int8::Ranges::new();
//! let model = Model::new(&t, &params, &[])?;
//! let mut ws = vec![0.0; t.infer_workspace_len(16)];
//! int8::calibrate(&Portable, &model, &samples, 16, &mut ws, &mut ranges)?;
//! let transform = InputTransform::Global { scale: 1.0 / 255.0, offset: 0.0 };
//! let mut scratch = vec![0.0; int8::scratch_len(&t)];
//! let mut file = vec![0u8; int8::encoded_len(&t, &transform)];
//! int8::quantize(&t, &params, &[], &ranges, &transform, &mut scratch, &mut file)?;
//!
//! // Integer-only inference on raw u8 input.
//! let q = int8::Int8Model::parse(&file)?;
//! let mut x = [0i8; 4];
//! q.quantize_u8(&[0, 64, 128, 255], &mut x)?;
//! let mut act = vec![0i8; q.act_workspace_len(1)];
//! let mut acc = vec![0i32; q.acc_workspace_len(1)];
//! let logits = int8::forward(&int8::PortableInt8, &q, &x, 1, &mut act, &mut acc)?;
//! assert!(int8::argmax(logits) < 3);
//! # Ok::<(), mlp::Error>(())
//! ```

mod encode;
mod fake_quant;
pub mod fixed;
mod infer;
mod kernels;
mod quantize;
mod view;

pub use encode::{encode, set_rounding, Int8Input};
pub use fake_quant::{fake_quantize_weights, FakeQuant, QuantParams};
pub use fixed::Rounding;
pub use infer::{argmax, forward, forward_layers};
pub use kernels::{Int8Kernels, PortableInt8};
pub use quantize::{
    calibrate, dequantize, encoded_len, observe, quantize, quantize_multiplier, quantize_values,
    refuse_maxout, scratch_len, MinMax, Ranges, Tap,
};
pub use view::{I32s, Int8Layer, Int8LayerParts, Int8Model};

use crate::topology::Activation;

/// Whether a layer with activation `a` ends in a 256-entry lookup table (sigmoid, tanh,
/// leaky ReLU, ELU, GELU) rather than a clamp (identity, ReLU, softmax logits).
pub const fn uses_table(a: Activation) -> bool {
    matches!(
        a,
        Activation::Sigmoid
            | Activation::Tanh
            | Activation::LeakyRelu(_)
            | Activation::Elu(_)
            | Activation::Gelu
    )
}

/// `const fn` lengths for int8 models, for sizing `static` buffers. Arithmetic saturates.
pub mod layout {
    use crate::topology::LayerSpec;

    /// int8 activation workspace for `batch` samples: two ping-pong buffers of the widest layer.
    pub const fn act_len(layers: &[LayerSpec], batch: usize) -> usize {
        crate::topology::layout::max_width(layers).saturating_mul(batch).saturating_mul(2)
    }

    /// int32 accumulator workspace for `batch` samples: one row per sample of the widest layer.
    pub const fn acc_len(layers: &[LayerSpec], batch: usize) -> usize {
        crate::topology::layout::max_width(layers).saturating_mul(batch)
    }

    /// Bytes of one layer's int8 payload with `outputs` outputs and `inputs` inputs.
    pub const fn layer_payload_len(layer: &LayerSpec, inputs: usize) -> usize {
        let n = layer.outputs;
        let weights = n.saturating_mul(inputs);
        let padded = weights.saturating_add((4 - weights % 4) % 4);
        let table = if super::uses_table(layer.activation) { 256 } else { 0 };
        16usize.saturating_add(n.saturating_mul(16)).saturating_add(padded).saturating_add(table)
    }

    /// Bytes of the int8 payload after the input transform: input quantization, the optional
    /// u8 input table, then every layer.
    pub const fn payload_len(layers: &[LayerSpec], input: usize, input_table: bool) -> usize {
        let mut total: usize = if input_table { 12 + 256 } else { 12 };
        let mut fan_in = input;
        let mut i = 0;
        while i < layers.len() {
            total = total.saturating_add(layer_payload_len(&layers[i], fan_in));
            fan_in = layers[i].outputs;
            i += 1;
        }
        total
    }
}
