//! Integer-only inference. No floating point in this module or anything it calls.

use crate::error::{check_len, Buffer, Error};
use crate::kernels::Shape;

use super::kernels::Int8Kernels;
use super::view::{Int8Layer, Int8Model};

/// Runs `batch` quantized samples (`input`: `batch × input width`, int8 with the model's input
/// zero point) through the network and returns the `batch × outputs` int8 outputs (for a
/// softmax output layer: the logits), which live in `act`.
///
/// `act`: at least [`Int8Model::act_workspace_len`]`(batch)` int8s; `acc`: at least
/// [`Int8Model::acc_workspace_len`]`(batch)` int32s. Errors: an empty batch, buffer lengths.
pub fn forward<'w>(
    kernels: &dyn Int8Kernels,
    model: &Int8Model<'_>,
    input: &[i8],
    batch: usize,
    act: &'w mut [i8],
    acc: &mut [i32],
) -> Result<&'w [i8], Error> {
    forward_layers(kernels, model.layers(), model.input_zero_point(), input, batch, act, acc)
}

/// [`forward`] on a list of layers with no model file behind them (firmware that embeds
/// the layers as `static` arrays, built with [`Int8Layer::from_parts`]), or on the first
/// layers of a model (their int8 features). `input_zero_point` is the zero point of `input`.
///
/// `act`: at least `2 × batch ×` the widest layer's outputs; `acc`: at least `batch ×` that
/// width ([`layout::act_len`](super::layout::act_len) and
/// [`layout::acc_len`](super::layout::acc_len)). Errors: no layers, a layer whose inputs are
/// not the previous layer's outputs, an empty batch, buffer lengths.
pub fn forward_layers<'w>(
    kernels: &dyn Int8Kernels,
    layers: &[Int8Layer<'_>],
    input_zero_point: i32,
    input: &[i8],
    batch: usize,
    act: &'w mut [i8],
    acc: &mut [i32],
) -> Result<&'w [i8], Error> {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        return Err(Error::NoLayers);
    };
    if layers.windows(2).any(|w| w[1].inputs() != w[0].outputs()) {
        return Err(Error::CorruptPayload { what: "a layer's inputs are not the previous layer's outputs" });
    }
    if batch == 0 {
        return Err(Error::EmptyBatch);
    }
    check_len(Buffer::Input, batch.saturating_mul(first.inputs()), input.len())?;
    let width = layers.iter().map(|l| l.outputs()).max().unwrap_or(0);
    let need = width.saturating_mul(batch).saturating_mul(2);
    if act.len() < need {
        return Err(Error::BufferLength {
            buffer: Buffer::Int8Activations,
            expected: need,
            actual: act.len(),
        });
    }
    let need_acc = width.saturating_mul(batch);
    if acc.len() < need_acc {
        return Err(Error::BufferLength {
            buffer: Buffer::Int32Accumulators,
            expected: need_acc,
            actual: acc.len(),
        });
    }
    let (mut cur, mut next) = act[..need].split_at_mut(need / 2);
    let mut z_in = input_zero_point;
    for (i, layer) in layers.iter().enumerate() {
        let shape = Shape { batch, inputs: layer.inputs(), outputs: layer.outputs() };
        let out_len = batch * shape.outputs;
        let src: &[i8] = if i == 0 { input } else { &cur[..batch * shape.inputs] };
        let a = &mut acc[..out_len];
        kernels.dense_requantize(shape, src, -z_in, layer, a, &mut next[..out_len]);
        z_in = layer.out_zero_point();
        core::mem::swap(&mut cur, &mut next);
    }
    let out: &'w [i8] = cur;
    Ok(&out[..batch * last.outputs()])
}

/// The index of the largest value (the first one on ties): the predicted class from int8
/// logits or probabilities.
pub fn argmax(row: &[i8]) -> usize {
    let mut best = 0;
    let mut best_v = i8::MIN;
    for (i, &v) in row.iter().enumerate() {
        if i == 0 || v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}
