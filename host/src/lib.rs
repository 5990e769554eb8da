//! The host side of mlp: data sets and loaders, the training loop on core's trainer with
//! fast kernels, model files, plots, and the `host` command line.

pub mod cli;
pub mod data;
pub mod digit_image;
pub mod export;
pub mod kernels;
pub mod kernels_int8;
pub mod model_io;
pub mod plot;
mod prefetch;
pub mod quant;
pub mod schedule;
pub mod train;
