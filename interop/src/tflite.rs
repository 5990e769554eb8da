//! TFLite int8 in and out. To be written (issue 16, TFLite part).

use mlp::InputTransform;

use crate::{Error, Result};

/// Reads a fully-connected int8 `.tflite` model into core's int8 model file bytes, with
/// `transform` as the raw-sample-to-input normalization the model was trained with.
pub fn read(bytes: &[u8], transform: &InputTransform<'_>) -> Result<(Vec<u8>, Vec<String>)> {
    let _ = (bytes, transform);
    Err(Error::new("TFLite import is not written yet"))
}

/// Writes core's int8 model file `int8_file` as a `.tflite` flatbuffer LiteRT runs with
/// outputs bit-identical to core's.
pub fn write(int8_file: &[u8]) -> Result<Vec<u8>> {
    let _ = int8_file;
    Err(Error::new("TFLite export is not written yet"))
}
