//! The exported int8 model's layers, built from its `static` arrays.

use mlp::int8::Int8Layer;
use mlp::MAX_LAYERS;

use crate::{model, Fail};

/// The model's layers, checked and borrowed from the `static` arrays (no parsing), into
/// `layers` (filled in place: returning the vector would copy all its `MAX_LAYERS` slots,
/// and pull `memcpy` into the lean build).
pub fn layers(layers: &mut Layers) -> Result<(), Fail> {
    for parts in &model::LAYER_PARTS {
        layers
            .push(Int8Layer::from_parts(*parts)?)
            .map_err(|_| Fail::Check("more layers than MAX_LAYERS"))?;
    }
    Ok(())
}

/// The model's layers.
pub type Layers = heapless::Vec<Int8Layer<'static>, MAX_LAYERS>;

/// The number of multiply-accumulates of one inference.
#[cfg(not(any(feature = "lean", feature = "train")))]
pub fn macs(layers: &[Int8Layer<'_>]) -> u64 {
    layers.iter().map(|l| (l.inputs() * l.outputs()) as u64).sum()
}
