//! ONNX in and out (f32 MLPs).
//!
//! **In** ([`read`]): the graphs `torch.onnx.export` writes for an `nn.Sequential` MLP, with
//! either of torch's exporters (the default dynamo one, opset 18+, and `dynamo=False`), and the
//! same built with `onnx.helper`: Gemm (transA=0, any transB/alpha/beta) or MatMul + Add,
//! Flatten/Reshape at the input, BatchNormalization (inference mode), Relu, Sigmoid, Tanh,
//! LeakyRelu, Elu, Gelu (opset 20's op, or the Erf decomposition older exporters write),
//! Softmax/LogSoftmax last, Dropout and Identity (dropped), opsets 13 and later. Initializers
//! come from the file or from external data files beside it. Anything else is an error that
//! names the node, its op and what is supported. The walk is in `import`.
//!
//! **Out** ([`write`]): Gemm + BatchNormalization + activation nodes, opset 20, outputs
//! "logits" and "probabilities"; the input normalization and class names go into
//! `metadata_props` ([`META_INPUT_SCALE`], [`META_INPUT_OFFSET`], [`META_CLASSES`]) rather than
//! ops, so the graph is exactly the network and a runtime user sees the normalization as data
//! (and our own import restores it). See `export`.
//!
//! **Protobuf layer.** `prost` (a well-kept, widely used protobuf crate; default features off,
//! no build script) with the few ONNX messages declared by hand in `proto`, field numbers from
//! onnx.proto. Compared with the alternatives: a crate of all ONNX messages generated from
//! onnx.proto pulls in far more code (and usually a protoc build step or a large committed
//! file) for fields an MLP never uses; a hand-written wire decoder would be ours to get right
//! and fuzz. With only the needed fields declared, prost skips everything else (sub-graphs,
//! functions, training info) without recursing into it, its length prefixes are checked
//! against the input, and every tensor size is checked against the bytes present
//! (`tensor`) before floats are allocated.

mod export;
mod import;
pub mod proto;
mod tensor;

use std::path::Path;

use prost::Message;

use crate::{Error, FloatModel, Result};

/// Metadata key: the per-feature input scale, a JSON array of numbers (raw sample `x` is fed
/// to the graph as `x * scale + offset`).
pub const META_INPUT_SCALE: &str = "mlp.input_scale";
/// Metadata key: the per-feature input offset, a JSON array of numbers.
pub const META_INPUT_OFFSET: &str = "mlp.input_offset";
/// Metadata key: class names by output index, a JSON array of strings.
pub const META_CLASSES: &str = "mlp.classes";
/// The oldest default-domain opset [`read`] accepts.
pub const MIN_OPSET: i64 = 13;
/// The opset [`write`] declares (20: the first with a Gelu op).
pub const WRITTEN_OPSET: i64 = 20;
/// The IR version [`write`] declares (9 goes with opset 20).
const WRITTEN_IR_VERSION: i64 = 9;

/// Reads an ONNX model (`bytes`; external-data initializers are looked up in `external_dir`,
/// the model file's folder, or refused when `None`).
pub fn read(bytes: &[u8], external_dir: Option<&Path>) -> Result<FloatModel> {
    let model = proto::ModelProto::decode(bytes).map_err(|e| {
        Error::new(format!(
            "not a readable ONNX file (protobuf decoding failed: {e}); is it truncated or not ONNX?"
        ))
    })?;
    import::model(&model, external_dir)
}

/// Writes `model` as an ONNX model onnxruntime runs unchanged (maxout layers are refused).
pub fn write(model: &FloatModel) -> Result<Vec<u8>> {
    Ok(export::model(model)?.encode_to_vec())
}
