//! An independent f64 reference MLP used to check core.
//!
//! [`reference`] recomputes the network (flat layout, dense layers, every activation,
//! batch norm in train and eval mode, dropout with given masks, the three losses and
//! backprop) in f64 from the math stated in core's module docs, [`optim`] every optimizer
//! rule and gradient clipping from PyTorch's formulas, and [`special`] the error function.
//! None of it calls core's math: from core it only reads a topology's layer list and the
//! optimizer's hyperparameters. `tests/reference.rs` checks the reference's gradients
//! against its own finite differences, so it can be trusted to check core.
//!
//! [`rounding`] sizes the tolerances of the comparisons (how much f32 rounding a result may
//! honestly carry), [`cases`] draws random networks and runs core and the reference on them,
//! [`util`] holds buffers and comparisons, [`fixtures`] the activation lists, random inputs and
//! tolerances every kernel's tests share, [`int8`] random quantized models for the int8 tests.

pub mod cases;
pub mod fixtures;
pub mod int8;
pub mod optim;
pub mod reference;
pub mod rounding;
pub mod special;
pub mod util;
