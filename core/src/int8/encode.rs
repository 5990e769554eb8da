//! Writing an int8 model file from int8 parts that already exist (scales, zero points, int8
//! weights, int32 biases, multipliers, shifts, tables), as an importer of another runtime's
//! quantized model has them. [`quantize`](super::quantize) derives the same parts from f32
//! parameters; this takes them as given, so the file reproduces the other runtime's integers.

use crate::error::{check_len, Buffer, Error};
use crate::format::{self, DType, InputTransform, Writer};
use crate::topology::Topology;

use super::fixed::Rounding;
use super::quantize::encoded_len;
use super::uses_table;
use super::view::{Int8LayerParts, Int8Model};

/// The quantized network input of an int8 model file.
#[derive(Clone, Copy, Debug)]
pub struct Int8Input<'a> {
    /// IEEE bits of the input scale.
    pub scale_bits: u32,
    /// Input zero point, in `[-128, 127]`.
    pub zero_point: i32,
    /// The u8 -> i8 input table (raw sample byte to quantized input), present exactly when the
    /// transform is not per-feature.
    pub table: Option<&'a [i8; 256]>,
}

/// Writes an int8 model file of `topology` (no batch norm: its layers are already folded) with
/// input transform `transform`, input quantization `input` and one [`Int8LayerParts`] per
/// layer (all with the same [`Rounding`], recorded in the file's input flags) into `out` ([`encoded_len`](super::encoded_len) bytes). Returns the length.
///
/// The result is parsed back before returning, so every rule of [`Int8Model::parse`] holds
/// (zero points, scales, multipliers, shifts, weights in `[-127, 127]`, tables).
///
/// Errors: a layer count, width or activation that differs from `topology`, batch norm in
/// `topology`, an input table present or absent against the transform, buffer lengths, and
/// whatever the parser rejects.
pub fn encode(
    topology: &Topology,
    transform: &InputTransform<'_>,
    input: &Int8Input<'_>,
    layers: &[Int8LayerParts<'_>],
    out: &mut [u8],
) -> Result<usize, Error> {
    let corrupt = |what| Err(Error::CorruptPayload { what });
    if topology.layers().iter().any(|l| l.batch_norm) {
        return corrupt("an int8 model has no batch norm layers (fold them first)");
    }
    if layers.len() != topology.layers().len() {
        return corrupt("one set of int8 layer parts per layer of the topology");
    }
    for (i, (spec, p)) in topology.layers().iter().zip(layers).enumerate() {
        if p.inputs != topology.fan_in(i) || p.outputs != spec.outputs || p.activation != spec.activation {
            return corrupt("int8 layer parts whose widths or activation differ from the topology");
        }
        let n = p.outputs;
        if [p.weight_scale_bits.len(), p.bias.len(), p.multipliers.len(), p.shifts.len()] != [n; 4]
            || p.weights.len() != n.saturating_mul(p.inputs)
        {
            return corrupt(
                "weight scales, bias, multipliers and shifts must each have one value per output",
            );
        }
        if uses_table(p.activation) != p.table.is_some() {
            return corrupt("a layer has an activation table exactly when its activation needs one");
        }
    }
    let rounding = layers.first().map_or(Rounding::Double, |p| p.rounding);
    if layers.iter().any(|p| p.rounding != rounding) {
        return corrupt("every layer of a model file rounds the same way");
    }
    let per_feature = matches!(transform, InputTransform::PerFeature { .. });
    if per_feature == input.table.is_some() {
        return corrupt("an input table exactly when the transform is not per-feature");
    }
    let (scales, offsets) = format::transform_values(topology, transform)?;
    let len = encoded_len(topology, transform);
    check_len(Buffer::FileBytes, len, out.len())?;

    let mut w = Writer { out, pos: 0 };
    format::write_header(&mut w, topology, DType::Int8, transform.code(), topology.param_len(), 0)?;
    scales.iter().chain(offsets).for_each(|&v| w.f32(v));
    w.u32(input.scale_bits);
    w.i32(input.zero_point);
    let single = if rounding == Rounding::Single { 2 } else { 0 };
    match input.table {
        Some(t) => {
            w.u32(1 | single);
            t.iter().for_each(|&v| w.bytes(&[v as u8]));
        }
        None => w.u32(single),
    }
    for p in layers {
        w.u32(p.out_scale_bits);
        w.i32(p.out_zero_point);
        w.u32(p.pre_scale_bits);
        w.i32(p.pre_zero_point);
        p.weight_scale_bits.iter().for_each(|&v| w.u32(v));
        p.bias.iter().chain(p.multipliers).chain(p.shifts).for_each(|&v| w.i32(v));
        p.weights.iter().for_each(|&v| w.bytes(&[v as u8]));
        w.bytes(&[0u8; 3][..(4 - p.weights.len() % 4) % 4]);
        if let Some(t) = p.table {
            t.iter().for_each(|&v| w.bytes(&[v as u8]));
        }
    }
    let n = w.finish();
    Int8Model::parse(&out[..n])?;
    Ok(n)
}

/// Switches an int8 model file's requantization rounding in place (the input flags' bit 1,
/// and the checksum). The multipliers and shifts are the same under both roundings
/// (TFLite's `QuantizeMultiplier` computes them once), so this is the file a runtime with
/// that rounding (LiteRT's wheels: [`Rounding::Single`]) runs bit for bit.
///
/// Errors: whatever [`Int8Model::parse`] rejects.
pub fn set_rounding(file: &mut [u8], rounding: Rounding) -> Result<(), Error> {
    let pos = {
        let model = Int8Model::parse(file)?;
        let transform = InputTransform::payload_len(model.file().transform_code(), model.topology().input());
        // Header, transform, input scale and zero point, then the flags (see `format`).
        format::header_len(model.topology().layers().len()).saturating_add(transform).saturating_add(8)
    };
    let Some(flags) = file.get_mut(pos..pos.saturating_add(4)) else {
        return Err(Error::CorruptPayload { what: "the input flags are past the end" });
    };
    let v = u32::from_le_bytes([flags[0], flags[1], flags[2], flags[3]]) & !2;
    let v = if rounding == Rounding::Single { v | 2 } else { v };
    flags.copy_from_slice(&v.to_le_bytes());
    let end = file.len().saturating_sub(4);
    let crc = format::crc32(&file[..end]);
    file[end..].copy_from_slice(&crc.to_le_bytes());
    Int8Model::parse(file)?;
    Ok(())
}
