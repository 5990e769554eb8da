//! safetensors in and out, with PyTorch `nn.Sequential` `state_dict` names. To be written
//! (issue 16, safetensors part).

use mlp::Activation;

use crate::{Error, FloatModel, Result};

/// Reads a `state_dict` of an `nn.Sequential` MLP; the hidden activation comes from the
/// file's metadata, else `activation`, else ReLU (said in the notes).
pub fn read(bytes: &[u8], activation: Option<Activation>) -> Result<FloatModel> {
    let _ = (bytes, activation);
    Err(Error::new("safetensors import is not written yet"))
}

/// Writes `model` with `state_dict` names and metadata describing the topology and input
/// normalization.
pub fn write(model: &FloatModel) -> Result<Vec<u8>> {
    let _ = model;
    Err(Error::new("safetensors export is not written yet"))
}
