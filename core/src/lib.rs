#![no_std]
#![doc = include_str!("../README.md")]

mod math;
pub mod rng;

pub use rng::Rng;
