//! safetensors in and out, with the `state_dict` names of a PyTorch `nn.Sequential` MLP.
//!
//! # Names
//! An `nn.Sequential` numbers its modules from 0, parameterless ones (activations, Dropout,
//! Flatten) included, so `Linear, ReLU, Linear, ReLU, Linear` saves `0.weight`, `0.bias`,
//! `2.weight`, `2.bias`, `4.weight`, `4.bias`. A `BatchNorm1d` right after a Linear saves
//! `N.weight` (γ), `N.bias` (β), `N.running_mean`, `N.running_var` and
//! `N.num_batches_tracked`; core applies it as PyTorch's eval mode does (affine, batch norm
//! with ε = [`mlp::batchnorm::BN_EPS`], activation). All names may share one prefix
//! (`net.0.weight`, `model.layers.0.weight`), as a Sequential inside another module saves them.
//!
//! # What is read
//! Layer widths come from the weights' shapes (`[out, in]`, row-major: core's layout), each
//! layer's input checked against the previous output. The hidden activation comes from the
//! file's `mlp.activation` metadata (our exports write it), else the caller's, else ReLU,
//! and the notes say which. A gap of no module between two Linears is an identity; more than
//! one parameterless module between them is taken as the activation followed by Dropout.
//! The output layer is softmax unless `mlp.output` says otherwise (PyTorch models usually
//! end in logits; softmax keeps their argmax). F32 tensors are read as they are; F16 and BF16
//! widen to f32 exactly and F64 rounds to f32, each said in the notes. Non-finite values and
//! negative running variances are refused.
//!
//! # What is written
//! The same names, F32 little-endian, every activation as its own module (`nn.Identity()`
//! for identity) so indices step by one per module: `Linear, [BatchNorm1d,] activation` per
//! layer, the output layer's activation last (`nn.Softmax(dim=1)`). `num_batches_tracked`
//! is written as an I64 scalar 0 (core does not count batches; eval mode ignores it) so that
//! `load_state_dict(strict=True)` accepts the file. The metadata describes the model:
//! `mlp.topology` (`784-256-10`), `mlp.activation` (one name, or one per hidden layer
//! separated by commas; `leaky_relu(0.01)`, `elu(1)` carry their parameter), `mlp.output`,
//! `mlp.input_scale` / `mlp.input_offset` (one number or a JSON array per input feature),
//! `mlp.classes` (a JSON array) and `mlp.sequential`, the Python expression of the matching
//! `nn.Sequential`. Maxout has no `nn.Sequential` form and is refused.
//!
//! # Why these crates
//! Reading goes through the `safetensors` crate (Hugging Face's own): it bounds the header
//! (100 MB), checks that every tensor's offsets tile the data exactly and that shapes'
//! products match their byte ranges without overflow, so every tensor this module slices is
//! inside the file. Writing is done here, with `serde_json` for the header: the crate's
//! serializer takes the metadata as a `HashMap` and writes it in a random order, so two
//! exports of one model would differ; ours writes keys sorted, byte-identical every time,
//! and the tests read it back with the crate and with Python's `safetensors`.

use mlp::Activation;

use crate::{FloatModel, Result};

mod metadata;
mod read;
mod write;

/// Reads a `state_dict` of an `nn.Sequential` MLP; the hidden activation comes from the
/// file's metadata, else `activation`, else ReLU (said in the notes).
pub fn read(bytes: &[u8], activation: Option<Activation>) -> Result<FloatModel> {
    read::read(bytes, activation)
}

/// Writes `model` with `state_dict` names and metadata describing the topology and input
/// normalization.
pub fn write(model: &FloatModel) -> Result<Vec<u8>> {
    write::write(model)
}
