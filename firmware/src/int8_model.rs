//! The exported int8 model's layers, built from its `static` arrays.

use mlp::int8::{Int8Layer, Rounding};
use mlp::MAX_LAYERS;

use crate::{model, Fail};

/// The model's layers, checked and borrowed from the `static` arrays (no parsing), into
/// `layers` (filled in place: returning the vector would copy all its `MAX_LAYERS` slots,
/// and pull `memcpy` into the lean build).
pub fn layers(layers: &mut Layers) -> Result<(), Fail> {
    for parts in &model::LAYER_PARTS {
        if ROUNDING.is_some_and(|r| r != parts.rounding) {
            return Err(Fail::Check("a layer rounds unlike the model's ROUNDING"));
        }
        layers
            .push(Int8Layer::from_parts(*parts).map_err(core_error)?)
            .map_err(|_| Fail::Check("more layers than MAX_LAYERS"))?;
    }
    Ok(())
}

/// How every layer of the model requantizes, when they all round alike (`None` if they
/// differ), read from the generated statics at compile time: the lean build compiles only
/// that rounding (`skip::requantize`).
pub const ROUNDING: Option<Rounding> = {
    let parts = &model::LAYER_PARTS;
    let mut i = 1;
    let mut same = !parts.is_empty();
    while i < parts.len() {
        same &= matches!(
            (parts[0].rounding, parts[i].rounding),
            (Rounding::Single, Rounding::Single) | (Rounding::Double, Rounding::Double)
        );
        i += 1;
    }
    if same {
        Some(parts[0].rounding)
    } else {
        None
    }
};

/// core's error as the build reports it: whole in the demo builds; the lean build keeps no
/// core message (about 600 bytes of strings it would otherwise carry for checks the
/// generated statics pass).
pub fn core_error(e: mlp::Error) -> Fail {
    if cfg!(feature = "lean") {
        let _ = e;
        Fail::Check("core refused the model or a buffer (an mlp::Error)")
    } else {
        Fail::Core(e)
    }
}

/// The model's layers.
pub type Layers = heapless::Vec<Int8Layer<'static>, MAX_LAYERS>;

/// The number of multiply-accumulates of one inference.
#[cfg(not(any(feature = "lean", feature = "train")))]
pub fn macs(layers: &[Int8Layer<'_>]) -> u64 {
    layers.iter().map(|l| (l.inputs() * l.outputs()) as u64).sum()
}
