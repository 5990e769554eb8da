//! ONNX in and out (f32). To be written (issue 16, ONNX part).

use std::path::Path;

use crate::{Error, FloatModel, Result};

/// Reads an ONNX model (`bytes`; external-data initializers are looked up in `external_dir`,
/// the model file's folder, or refused when `None`).
pub fn read(bytes: &[u8], external_dir: Option<&Path>) -> Result<FloatModel> {
    let _ = (bytes, external_dir);
    Err(Error::new("ONNX import is not written yet"))
}

/// Writes `model` as an ONNX model onnxruntime runs unchanged.
pub fn write(model: &FloatModel) -> Result<Vec<u8>> {
    let _ = model;
    Err(Error::new("ONNX export is not written yet"))
}
