//! Models in and out of mlp's own format: ONNX ([`onnx`]), safetensors with PyTorch
//! `state_dict` names ([`safetensors`]) and TFLite int8 flatbuffers ([`tflite`]).
//!
//! Every reader is a parser of untrusted bytes: it returns an [`Error`] that says what is
//! wrong and what is supported, never panics, and bounds every allocation by the input's
//! size. Floats come in as a [`FloatModel`] (core's topology and flat parameter layout);
//! TFLite int8 models come in as core's int8 model file, bytes that
//! [`mlp::int8::Int8Model::parse`] accepts.

use std::fmt;

use mlp::Topology;

pub mod onnx;
pub mod safetensors;
pub mod tflite;

/// An f32 model in core's layout, as an importer produces it and an f32 exporter takes it.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatModel {
    /// The network shape.
    pub topology: Topology,
    /// Flat parameters in core's layout (`mlp::topology` documents it).
    pub params: Vec<f32>,
    /// Batch-norm running statistics in core's layout (empty without batch norm).
    pub running: Vec<f32>,
    /// How raw samples become network inputs, `x[j] = raw[j] * scale[j] + offset[j]`, when the
    /// file says (our own exports record it); `None`: the file does not say, the caller decides.
    pub input: Option<InputNormalization>,
    /// Class names by output index (empty: unnamed).
    pub classes: Vec<String>,
    /// What the importer assumed or dropped, one sentence each, for the user to read (e.g.
    /// "Dropout node 'x' dropped: inference only").
    pub notes: Vec<String>,
}

/// Per-feature input normalization, `x[j] = raw[j] * scale[j] + offset[j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputNormalization {
    /// One scale per input feature.
    pub scale: Vec<f32>,
    /// One offset per input feature.
    pub offset: Vec<f32>,
}

/// Why a file could not be read or written: a sentence for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error { message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<mlp::Error> for Error {
    fn from(e: mlp::Error) -> Self {
        Error::new(e.to_string())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The interchange formats, as `host import` detects them and `host export --format` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ONNX protobuf (`.onnx`).
    Onnx,
    /// safetensors (`.safetensors`): an 8-byte header length, a JSON header, raw tensors.
    Safetensors,
    /// TFLite flatbuffer (`.tflite`): file identifier "TFL3" at bytes 4..8.
    Tflite,
}

impl Format {
    /// The format of `bytes` by their content (TFLite's identifier, safetensors' JSON
    /// header), else ONNX when the first byte is a protobuf field tag ONNX models start with;
    /// `None` when nothing matches.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        if bytes.get(4..8) == Some(b"TFL3") {
            return Some(Format::Tflite);
        }
        if bytes.len() >= 9 && bytes[8] == b'{' {
            let n = u64::from_le_bytes(bytes[..8].try_into().ok()?);
            if n > 0 && n <= (bytes.len() - 8) as u64 {
                return Some(Format::Safetensors);
            }
        }
        // ModelProto's fields: ir_version (1, varint) usually first; producer_name (2),
        // graph (7), opset_import (8) and friends are length-delimited.
        match bytes.first() {
            Some(0x08 | 0x12 | 0x1a | 0x22 | 0x2a | 0x32 | 0x3a | 0x42) => Some(Format::Onnx),
            _ => None,
        }
    }

    /// The lowercase name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Onnx => "ONNX",
            Format::Safetensors => "safetensors",
            Format::Tflite => "TFLite",
        }
    }
}
