#![no_std]
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod activation;
pub mod batchnorm;
mod error;
pub mod format;
pub mod init;
pub mod int8;
pub mod kernels;
pub mod loss;
mod math;
mod model;
pub mod optim;
pub mod rng;
mod topology;
pub mod train;

pub use batchnorm::fold_batch_norm;
pub use error::{Buffer, Error};
pub use format::{DType, InputTransform, ModelFile};
pub use init::Init;
pub use int8::{Int8Kernels, Int8Model, PortableInt8};
pub use kernels::{Kernels, ParamChunk, Portable, Shape};
pub use loss::{Loss, Targets};
pub use model::Model;
pub use optim::{Optimizer, StepScalars};
pub use rng::Rng;
pub use topology::{
    layout, Activation, LayerSpec, ParamRanges, Topology, MAX_LAYERS, MAX_MAXOUT_PIECES, MAX_WIDTH,
};
pub use train::{dropout_keeps, LayerActivations, StepStats, TrainBuffers, TrainConfig, Trainer};
