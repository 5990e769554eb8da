//! TFLite int8 in and out: `.tflite` flatbuffers of fully-connected int8 models, read into
//! and written from core's int8 model file, bit-identical to LiteRT's reference kernels
//! (`OpResolverType.BUILTIN_REF`, which TFLite Micro follows).
//!
//! Core's int8 arithmetic is TFLite's (per-channel symmetric int8 weights, asymmetric int8
//! activations, int32 bias at `s_in · s_w`, gemmlowp's `MultiplyByQuantizedMultiplier`, fused
//! ReLU as a clamp), so a FULLY_CONNECTED layer maps to a core layer one to one. The one
//! thing a `.tflite` file does not store is the requantization multipliers: LiteRT computes
//! them from the float scales at Prepare time, `double(s_in) · double(s_w) / double(s_out)`
//! per channel or per tensor alike (kernel_util.cc). The reader writes those into the model
//! file; the writer refuses a file whose stored multipliers are not what LiteRT would
//! compute from the scales it writes.
//!
//! Rounding: TFLite compiles `MultiplyByQuantizedMultiplier` one of two ways. LiteRT's PyPI
//! wheels (ai-edge-litert 2.3.0, measured) round once (`TFLITE_SINGLE_ROUNDING`); TFLite
//! Micro's reference kernels and core's default round twice, as gemmlowp. The two differ by
//! one in rare outputs (106 of 100,000 MNIST logits of a tutorial model). Imported files are
//! marked [`Rounding::Single`](mlp::int8::Rounding); `host quantize --rounding single` makes
//! a model whose export LiteRT runs bit for bit.
//!
//! Flatbuffers: the `flatbuffers` crate (Google's runtime: the verifier, `Table`, the
//! builder) with the ten schema tables read by hand in [`schema`] rather than flatc's
//! generated code (20k lines for the whole schema, and Debian's flatc is older than the
//! runtime crate). Every input is verified with limits before anything reads it.
//!
//! Not supported (clear errors): sigmoid/tanh layers (LOGISTIC, TANH: TFLite's integer
//! kernels are not transcribed; in export, core's table activations), other operators,
//! several subgraphs, batch sizes above 1, sparse or external tensors, RELU6 and other fused
//! activations.

mod op_names;
mod read;
pub mod schema;
mod write;

use mlp::InputTransform;

use crate::Result;

/// Reads a fully-connected int8 `.tflite` model into core's int8 model file bytes, with
/// `transform` as the raw-sample-to-input normalization the model was trained with (it
/// makes the model file's u8 input table, TFLite's QUANTIZE of `raw · scale + offset`).
/// Returns the file and notes for the user (what was dropped or assumed).
///
/// Reads: an int8 input, or a float input and QUANTIZE; RESHAPE before the first layer;
/// FULLY_CONNECTED layers (int8 weights, per-channel or per-tensor; int32 bias; fused RELU or
/// none); SOFTMAX at the end (the file then outputs the logits, whose argmax is the same);
/// DEQUANTIZE last.
pub fn read(bytes: &[u8], transform: &InputTransform<'_>) -> Result<(Vec<u8>, Vec<String>)> {
    read::read(bytes, transform)
}

/// Writes core's int8 model file `int8_file` as a `.tflite` flatbuffer LiteRT runs with
/// outputs bit-identical to core's: input `input` (int8, the model's input quantization),
/// FULLY_CONNECTED layers, and one int8 output (the last layer's; for a softmax model, the
/// logits). Table activations (sigmoid, tanh, leaky ReLU, ELU, GELU) are refused.
pub fn write(int8_file: &[u8]) -> Result<Vec<u8>> {
    write::write(int8_file)
}
