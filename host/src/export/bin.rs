//! The model file itself (the `MLPM` format of `mlp::format`), for `include_bytes!` or
//! flashing to a partition.

use anyhow::Result;

use crate::model_io::SavedModel;

/// An int8 model's file: its bytes as they are.
pub(super) fn int8(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

/// An f32 model's file.
pub(super) fn f32(m: &SavedModel) -> Result<Vec<u8>> {
    m.to_bytes()
}
