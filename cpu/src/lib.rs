//! Fast x86-64 implementations of core's kernel seams, beside `gpu` (CUDA) and the
//! firmware's DSP kernels: each mirrors `mlp`'s portable kernels and is tested against them.
//!
//! - [`f32`]: [`Fast`] (training: zero-skipping products, our SGEMM, fused epilogues) and
//!   [`Prepared`] (inference with a fixed model), for [`mlp::Kernels`];
//! - [`int8`]: [`FastInt8`] (AVX-512 VNNI, AMX, AVX2), bit-identical to
//!   [`mlp::int8::PortableInt8`], for [`mlp::int8::Int8Kernels`];
//! - [`isa`]: which instructions this CPU has, detected once, as tokens only detection builds;
//! - [`pool`]: the threads every kernel runs on ([`pool::Threads`]) and the spinning pool a
//!   training epoch runs in;
//! - [`prefetch`]: software prefetch, shared with the data loader;
//! - [`warp`]: bilinear resampling of byte images, the data loader's augmentation.

pub mod f32;
pub mod int8;
pub mod isa;
pub mod pool;
pub mod prefetch;
mod scratch;
pub mod warp;

pub use f32::{Fast, Gemm, Matrixmultiply, Prepared};
pub use int8::FastInt8;
pub use isa::Isa;
