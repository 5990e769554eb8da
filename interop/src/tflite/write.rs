//! Core's int8 model file as a `.tflite` flatbuffer.
//!
//! Tensors: `input` `[1, m]` int8 (the model's input scale and zero point: what core's
//! input table or `quantize_input` produces); per layer `dense_i/weights` `[n, m]` int8,
//! `dense_i/bias` `[n]` int32 and `dense_i/output` `[1, n]` int8. Operators: one
//! FULLY_CONNECTED per layer, fused RELU or none. The graph's one output is the last
//! layer's int8 output (for a softmax model, the logits, exactly what core's `forward`
//! returns). LiteRT recomputes each layer's multipliers from the float scales written here;
//! [`write`] checks that they are the file's own before writing, so the two runtimes agree
//! bit for bit.

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use mlp::int8::{uses_table, Int8Layer, Int8Model};
use mlp::Activation;

use super::read::multiplier;
use super::schema::{activation, op, options, tensor_type};
use crate::{Error, Result};

/// The TFLite schema version every current runtime reads.
const SCHEMA_VERSION: u32 = 3;
/// FULLY_CONNECTED's operator version for int8 with per-channel weights, as the TF
/// converter writes it (LiteRT 2.3.0's reference resolver accepts it).
const FULLY_CONNECTED_VERSION: i32 = 4;

/// See [`super::write`].
pub fn write(int8_file: &[u8]) -> Result<Vec<u8>> {
    let model = Int8Model::parse(int8_file)?;
    let layers = model.layers();
    for (i, l) in layers.iter().enumerate() {
        if uses_table(l.activation()) {
            return Err(Error::new(format!(
                "layer {i} has the activation {:?}, which core's int8 model computes with a 256-entry table; \
                 TFLite's LOGISTIC/TANH kernels compute differently, so LiteRT would not match bit for bit. \
                 --format tflite exports layers with ReLU or no activation (and a softmax output layer)",
                l.activation()
            )));
        }
    }
    let mut fbb = FlatBufferBuilder::with_capacity(int8_file.len() + 4096);
    let mut buffers = vec![empty_buffer(&mut fbb)];
    let mut tensors = Vec::new();
    let mut operators = Vec::new();
    let input_dims = [1, dim(layers[0].inputs())?];
    let name = fbb.create_string("input");
    let q = quantization(&mut fbb, &[model.input_scale()], &[model.input_zero_point() as i64], 0);
    tensors.push(tensor(&mut fbb, &input_dims, tensor_type::INT8, 0, name, q));
    let mut s_in = model.input_scale();
    let mut prev = 0i32;
    for (i, l) in layers.iter().enumerate() {
        let per_tensor = per_tensor(i, l, s_in)?;
        let (n, m) = (l.outputs(), l.inputs());
        let scales: Vec<f32> = (0..n).map(|o| l.weight_scale(o).unwrap_or(1.0)).collect();
        let w_scales = if per_tensor { &scales[..1] } else { &scales[..] };
        let zeros = vec![0i64; w_scales.len()];

        let data: Vec<u8> = l.weights().iter().map(|&v| v as u8).collect();
        buffers.push(data_buffer(&mut fbb, &data));
        let name = fbb.create_string(&format!("dense_{i}/weights"));
        let q = quantization(&mut fbb, w_scales, &zeros, 0);
        tensors.push(tensor(&mut fbb, &[dim(n)?, dim(m)?], tensor_type::INT8, buffers.len() - 1, name, q));

        let data: Vec<u8> = l.bias().as_bytes().to_vec();
        buffers.push(data_buffer(&mut fbb, &data));
        let name = fbb.create_string(&format!("dense_{i}/bias"));
        let b_scales: Vec<f32> = w_scales.iter().map(|&s_w| s_in * s_w).collect();
        let q = quantization(&mut fbb, &b_scales, &zeros, 0);
        tensors.push(tensor(&mut fbb, &[dim(n)?], tensor_type::INT32, buffers.len() - 1, name, q));

        let name = fbb.create_string(&format!("dense_{i}/output"));
        let q = quantization(&mut fbb, &[l.out_scale()], &[l.out_zero_point() as i64], 0);
        tensors.push(tensor(&mut fbb, &[1, dim(n)?], tensor_type::INT8, 0, name, q));

        let out = (tensors.len() - 1) as i32;
        let fused = if l.activation() == Activation::Relu { activation::RELU } else { activation::NONE };
        operators.push(fully_connected(&mut fbb, &[prev, out - 2, out - 1], out, fused));
        prev = out;
        s_in = l.out_scale();
    }
    let tensors = fbb.create_vector(&tensors);
    let operators = fbb.create_vector(&operators);
    let inputs = fbb.create_vector(&[0i32]);
    let outputs = fbb.create_vector(&[prev]);
    let name = fbb.create_string("main");
    let t = fbb.start_table();
    fbb.push_slot_always(4, tensors);
    fbb.push_slot_always(6, inputs);
    fbb.push_slot_always(8, outputs);
    fbb.push_slot_always(10, operators);
    fbb.push_slot_always(12, name);
    let subgraph = fbb.end_table(t);

    let t = fbb.start_table();
    fbb.push_slot::<i8>(4, op::FULLY_CONNECTED as i8, 0);
    fbb.push_slot::<i32>(8, FULLY_CONNECTED_VERSION, 1);
    fbb.push_slot::<i32>(10, op::FULLY_CONNECTED, 0);
    let code = fbb.end_table(t);

    let codes = fbb.create_vector(&[code]);
    let subgraphs = fbb.create_vector(&[subgraph]);
    let buffers = fbb.create_vector(&buffers);
    let description = fbb.create_string("mlp int8 export (host export --format tflite)");
    let t = fbb.start_table();
    fbb.push_slot::<u32>(4, SCHEMA_VERSION, 0);
    fbb.push_slot_always(6, codes);
    fbb.push_slot_always(8, subgraphs);
    fbb.push_slot_always(10, description);
    fbb.push_slot_always(12, buffers);
    let root = fbb.end_table(t);
    fbb.finish(root, Some("TFL3"));
    Ok(fbb.finished_data().to_vec())
}

/// Whether layer `i` is written with one weight scale (all its scales equal) rather than one
/// per output; an error unless the multipliers LiteRT computes from the scales are the file's.
fn per_tensor(i: usize, l: &Int8Layer<'_>, s_in: f32) -> Result<bool> {
    let n = l.outputs();
    let ours = l.multipliers().iter().zip(l.shifts().iter());
    let litert = (0..n).map(|o| multiplier(s_in, l.weight_scale(o).unwrap_or(0.0), l.pre_scale()));
    if !ours.eq(litert) {
        return Err(Error::new(format!(
            "layer {i}: its requantization multipliers are not the ones LiteRT computes from its scales, so \
             LiteRT would not match it bit for bit; re-quantize the model with host quantize"
        )));
    }
    let first = l.weight_scale(0).map(f32::to_bits);
    Ok((0..n).all(|o| l.weight_scale(o).map(f32::to_bits) == first))
}

fn dim(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::new(format!("a width of {v} does not fit a TFLite shape")))
}

fn empty_buffer(fbb: &mut FlatBufferBuilder<'_>) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let t = fbb.start_table();
    fbb.end_table(t)
}

fn data_buffer(
    fbb: &mut FlatBufferBuilder<'_>,
    data: &[u8],
) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let v = fbb.create_vector(data);
    let t = fbb.start_table();
    fbb.push_slot_always(4, v);
    fbb.end_table(t)
}

fn quantization(
    fbb: &mut FlatBufferBuilder<'_>,
    scales: &[f32],
    zero_points: &[i64],
    dimension: i32,
) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let s = fbb.create_vector(scales);
    let z = fbb.create_vector(zero_points);
    let t = fbb.start_table();
    fbb.push_slot_always(8, s);
    fbb.push_slot_always(10, z);
    fbb.push_slot::<i32>(16, dimension, 0);
    fbb.end_table(t)
}

fn tensor<'b>(
    fbb: &mut FlatBufferBuilder<'b>,
    dims: &[i32],
    ty: i8,
    buffer: usize,
    name: WIPOffset<&'b str>,
    quantization: WIPOffset<flatbuffers::TableFinishedWIPOffset>,
) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let shape = fbb.create_vector(dims);
    let t = fbb.start_table();
    fbb.push_slot_always(4, shape);
    fbb.push_slot::<i8>(6, ty, tensor_type::FLOAT32);
    fbb.push_slot::<u32>(8, buffer as u32, 0);
    fbb.push_slot_always(10, name);
    fbb.push_slot_always(12, quantization);
    fbb.end_table(t)
}

fn fully_connected(
    fbb: &mut FlatBufferBuilder<'_>,
    inputs: &[i32],
    output: i32,
    fused: i8,
) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let inputs = fbb.create_vector(inputs);
    let outputs = fbb.create_vector(&[output]);
    let t = fbb.start_table();
    fbb.push_slot::<i8>(4, fused, activation::NONE);
    let opts = fbb.end_table(t);
    let t = fbb.start_table();
    fbb.push_slot::<u32>(4, 0, 0);
    fbb.push_slot_always(6, inputs);
    fbb.push_slot_always(8, outputs);
    fbb.push_slot::<u8>(10, options::FULLY_CONNECTED, 0);
    fbb.push_slot_always(12, opts);
    fbb.end_table(t)
}
