//! The mlp application: the training loop on core's trainer with the `cpu` kernels (or the
//! `gpu` crate), evaluation, model files, plots, quantization, export, and the `host`
//! command line. Data sets come from the `data` crate.

#[macro_use]
mod out;

pub mod cli;
pub mod digit_image;
pub mod export;
pub mod interop_io;
pub mod model_io;
pub mod plot;
pub mod quant;
pub mod schedule;
pub mod train;
