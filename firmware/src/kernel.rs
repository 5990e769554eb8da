//! The firmware's int8 kernel for the core it is built for: [`Fast`], plugged into core
//! through [`mlp::int8::Int8Kernels`]; core's `PortableInt8` stays the reference it is
//! checked against.

#[cfg(mlp_dsp)]
pub use crate::dsp::Smlad as Fast;
#[cfg(not(mlp_dsp))]
pub use mlp::int8::PortableInt8 as Fast;

/// [`Fast`]'s name in the log.
#[cfg(not(any(feature = "lean", feature = "train")))]
pub const NAME: &str = if cfg!(mlp_dsp) { "SMLAD" } else { "portable" };
