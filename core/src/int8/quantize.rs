//! Post-training quantization, calibration and dequantization: the float side of int8, for
//! hosts (and float-capable firmware). Nothing here is on the integer inference path.

use crate::activation;
use crate::error::{check_len, Buffer, Error};
use crate::format::{self, DType, InputTransform, Writer};
use crate::kernels::Kernels;
use crate::model::Model;
use crate::topology::{Activation, Topology, MAX_LAYERS};

use super::view::{Int8Layer, Int8Model};
use super::{layout, uses_table};

/// TFLite's `QuantizeMultiplier`: a real multiplier as a Q31 `multiplier` and a `shift`
/// with `real ≈ multiplier · 2^(shift - 31)`, `multiplier` in `[2^30, 2^31)`.
///
/// `real = frexp(real) = q · 2^shift` with `q` in `[0.5, 1)`, `multiplier = round(q · 2^31)`
/// (half away from zero); `2^31` becomes `2^30` with `shift + 1`. Values below `2^-32` give
/// `(0, 0)` (the product rounds to 0 anyway); above `2^30`, the largest representable
/// multiplier. Zero, negative and non-finite values give `(0, 0)`.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if !(real > 0.0 && real.is_finite()) {
        return (0, 0);
    }
    let (q, mut shift) = libm::frexp(real);
    let mut q_fixed = libm::round(q * (1u64 << 31) as f64) as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    if shift > 30 {
        return (i32::MAX, 30);
    }
    (q_fixed as i32, shift)
}

/// A running minimum and maximum of observed values (NaNs are ignored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinMax {
    /// Smallest value seen (`+∞` before any).
    pub min: f32,
    /// Largest value seen (`-∞` before any).
    pub max: f32,
}

impl MinMax {
    /// No value seen yet.
    pub const EMPTY: MinMax = MinMax { min: f32::INFINITY, max: f32::NEG_INFINITY };

    /// Widens the range to include `values`.
    pub fn update(&mut self, values: &[f32]) {
        for &v in values {
            if v < self.min {
                self.min = v;
            }
            if v > self.max {
                self.max = v;
            }
        }
    }

    /// Widens the range to include `other`.
    pub fn merge(&mut self, other: &MinMax) {
        self.update(&[other.min, other.max]);
    }

    /// Whether the range is non-empty and finite.
    pub fn is_valid(&self) -> bool {
        self.min.is_finite() && self.max.is_finite() && self.min <= self.max
    }
}

impl Default for MinMax {
    fn default() -> Self {
        MinMax::EMPTY
    }
}

/// Calibration ranges of the float model: the network input, and per layer the
/// pre-activation (after the affine map and batch norm) and the output (after the
/// activation; for a softmax output layer, the logits, i.e. the same as `pre`).
#[derive(Clone, Debug, PartialEq)]
pub struct Ranges {
    /// The network input (after the input transform).
    pub input: MinMax,
    /// Per layer, before the activation. Used by layers with a table.
    pub pre: [MinMax; MAX_LAYERS],
    /// Per layer, after the activation (softmax: the logits).
    pub out: [MinMax; MAX_LAYERS],
}

impl Ranges {
    /// All ranges empty.
    pub fn new() -> Self {
        Ranges { input: MinMax::EMPTY, pre: [MinMax::EMPTY; MAX_LAYERS], out: [MinMax::EMPTY; MAX_LAYERS] }
    }

    /// Widens every range to include `other`'s (e.g. to combine per-thread calibrations).
    pub fn merge(&mut self, other: &Ranges) {
        self.input.merge(&other.input);
        for (a, b) in self.pre.iter_mut().zip(&other.pre).chain(self.out.iter_mut().zip(&other.out)) {
            a.merge(b);
        }
    }
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges::new()
    }
}

/// Where [`observe`] saw a batch of activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// The network input.
    Input,
    /// Layer `i` before its activation.
    Pre(usize),
    /// Layer `i` after its activation (softmax: the logits).
    Out(usize),
}

/// Runs the f32 model (eval mode) on `batch` samples and shows every intermediate tensor to
/// `f`, for calibration statistics beyond min/max (e.g. percentiles on the host). The
/// workspace is as for [`Model::forward`].
pub fn observe<K: Kernels + ?Sized>(
    kernels: &K,
    model: &Model<'_>,
    input: &[f32],
    batch: usize,
    workspace: &mut [f32],
    f: impl FnMut(Tap, &[f32]),
) -> Result<(), Error> {
    model.run::<K, true>(kernels, input, batch, workspace, false, f).map(|_| ())
}

/// Widens `ranges` with the activations of the f32 model on `batch` samples (network inputs,
/// i.e. after the input transform). Call it on as many batches as wanted.
pub fn calibrate<K: Kernels + ?Sized>(
    kernels: &K,
    model: &Model<'_>,
    input: &[f32],
    batch: usize,
    workspace: &mut [f32],
    ranges: &mut Ranges,
) -> Result<(), Error> {
    observe(kernels, model, input, batch, workspace, |tap, v| match tap {
        Tap::Input => ranges.input.update(v),
        Tap::Pre(i) => ranges.pre[i].update(v),
        Tap::Out(i) => ranges.out[i].update(v),
    })
}

/// Length of the `scratch` buffer [`quantize`] needs: the folded parameters.
pub fn scratch_len(topology: &Topology) -> usize {
    topology.layers().iter().enumerate().fold(0usize, |acc, (i, l)| {
        acc.saturating_add(l.outputs.saturating_mul(topology.fan_in(i).saturating_add(1)))
    })
}

fn has_input_table(transform: &InputTransform<'_>) -> bool {
    !matches!(transform, InputTransform::PerFeature { .. })
}

/// Bytes of the int8 model file [`quantize`] writes for `topology` (batch norm and dropout,
/// if any, are folded away and do not change the size).
pub fn encoded_len(topology: &Topology, transform: &InputTransform<'_>) -> usize {
    format::header_len(topology.layers().len())
        .saturating_add(InputTransform::payload_len(transform.code(), topology.input()))
        .saturating_add(layout::payload_len(topology.layers(), topology.input(), has_input_table(transform)))
        .saturating_add(4)
}

/// Scale and zero point for a calibrated range, TFLite-style: the range is widened to
/// include 0 (so 0 is exact), `scale = (max - min) / 255`, `zero_point = round(-128 - min /
/// scale)`.
pub(super) fn choose_params(range: &MinMax, layer: Option<usize>) -> Result<(f32, i32), Error> {
    if !range.is_valid() {
        return Err(Error::InvalidCalibration { layer });
    }
    let lo = (range.min as f64).min(0.0);
    let hi = (range.max as f64).max(0.0);
    let scale = if hi > lo { (((hi - lo) / 255.0) as f32).max(f32::MIN_POSITIVE) } else { 1.0 };
    let zp = libm::round(-128.0 - lo / scale as f64).clamp(-128.0, 127.0) as i32;
    Ok((scale, zp))
}

/// `clamp(round(x / scale) + zero_point, -128, 127)`.
pub(super) fn quantize_one(x: f64, scale: f64, zero_point: i32) -> i8 {
    let v = libm::round(x / scale) + zero_point as f64;
    if v.is_nan() {
        zero_point.clamp(-128, 127) as i8
    } else {
        v.clamp(-128.0, 127.0) as i8
    }
}

/// The symmetric per-channel weight scale: `max |w| / 127` (1 for an all-zero row).
pub(super) fn row_scale(row: &[f32]) -> f32 {
    let m = row.iter().fold(0.0f32, |m, &w| m.max(libm::fabsf(w)));
    if m > 0.0 {
        (m / 127.0).max(f32::MIN_POSITIVE)
    } else {
        1.0
    }
}

/// int8 has no maxout: a max over `k` requantized pieces matches the f32 max only when the
/// pieces share one scale and zero point, which per-channel weight scales do not give, and
/// the int8 kernels and firmware have no such layer. Refused by name instead.
pub fn refuse_maxout(topology: &Topology) -> Result<(), Error> {
    match topology.layers().iter().position(|l| matches!(l.activation, Activation::Maxout(_))) {
        Some(layer) => Err(Error::MaxoutUnsupported { layer, what: "int8 quantization" }),
        None => Ok(()),
    }
}

/// Post-training quantization into an int8 model file.
///
/// Folds batch norm into the weights ([`fold_batch_norm`](crate::fold_batch_norm), into
/// `scratch` of [`scratch_len`]), drops dropout, quantizes weights per output channel
/// (symmetric, `[-127, 127]`), biases to int32 at scale `s_in · s_w[o]`, computes the
/// requantization multipliers and shifts ([`quantize_multiplier`] of `s_in · s_w[o] / s_out`),
/// the activation tables, the activation scales and zero points from `ranges`, and, when the
/// input transform is one affine map (identity or global), the u8 -> i8 input table.
/// Writes exactly [`encoded_len`] bytes into `out` and returns that length.
///
/// Errors: buffer lengths, non-finite parameters or transform values, an empty or
/// non-finite calibration range of the input or of any layer's output (or pre-activation,
/// for layers with a table).
pub fn quantize(
    topology: &Topology,
    params: &[f32],
    running: &[f32],
    ranges: &Ranges,
    transform: &InputTransform<'_>,
    scratch: &mut [f32],
    out: &mut [u8],
) -> Result<usize, Error> {
    refuse_maxout(topology)?;
    check_len(Buffer::Params, topology.param_len(), params.len())?;
    check_len(Buffer::Running, topology.running_len(), running.len())?;
    let folded = crate::fold_batch_norm(topology, params, running, scratch)?;
    if scratch.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: "a parameter (after folding batch norm)" });
    }
    let (scales, offsets) = format::transform_values(topology, transform)?;
    let len = encoded_len(topology, transform);
    check_len(Buffer::FileBytes, len, out.len())?;
    let (s_input, z_input) = choose_params(&ranges.input, None)?;
    for (i, l) in folded.layers().iter().enumerate() {
        choose_params(&ranges.out[i], Some(i))?;
        if uses_table(l.activation) {
            choose_params(&ranges.pre[i], Some(i))?;
        }
    }

    let mut w = Writer { out, pos: 0 };
    format::write_header(&mut w, &folded, DType::Int8, transform.code(), folded.param_len(), 0)?;
    scales.iter().chain(offsets).for_each(|&v| w.f32(v));
    w.f32(s_input);
    w.i32(z_input);
    if has_input_table(transform) {
        let (s, o) = match *transform {
            InputTransform::Global { scale, offset } => (scale, offset),
            _ => (1.0, 0.0),
        };
        w.u32(1);
        for raw in 0..=255u8 {
            // The same f32 arithmetic as `ModelFile::transform_input`.
            let x = raw as f32 * s + o;
            w.bytes(&[quantize_one(x as f64, s_input as f64, z_input) as u8]);
        }
    } else {
        w.u32(0);
    }

    let mut s_in = s_input;
    for (i, layer) in folded.layers().iter().enumerate() {
        let Some(r) = folded.param_ranges(i) else { break };
        let m = folded.fan_in(i);
        let (wts, bias) = (&scratch[r.weights], &scratch[r.bias]);
        let (s_out, z_out) = choose_params(&ranges.out[i], Some(i))?;
        let table = uses_table(layer.activation);
        let (s_pre, z_pre) = if table { choose_params(&ranges.pre[i], Some(i))? } else { (s_out, z_out) };
        w.f32(s_out);
        w.i32(z_out);
        w.f32(s_pre);
        w.i32(z_pre);
        for row in wts.chunks_exact(m) {
            w.f32(row_scale(row));
        }
        for (row, &b) in wts.chunks_exact(m).zip(bias) {
            let q = libm::round(b as f64 / (s_in as f64 * row_scale(row) as f64));
            w.i32(q.clamp(i32::MIN as f64, i32::MAX as f64) as i32);
        }
        let mults = || {
            wts.chunks_exact(m)
                .map(|row| quantize_multiplier(s_in as f64 * row_scale(row) as f64 / s_pre as f64))
        };
        mults().for_each(|(mult, _)| w.i32(mult));
        mults().for_each(|(_, shift)| w.i32(shift));
        for row in wts.chunks_exact(m) {
            let s_w = row_scale(row) as f64;
            for &v in row {
                let q = libm::round(v as f64 / s_w).clamp(-127.0, 127.0) as i8;
                w.bytes(&[q as u8]);
            }
        }
        let count = layer.outputs * m;
        w.bytes(&[0u8; 3][..(4 - count % 4) % 4]);
        if table {
            for q in -128..=127i32 {
                let x = s_pre as f64 * (q - z_pre) as f64;
                let y = activation::apply(layer.activation, x as f32);
                w.bytes(&[quantize_one(y as f64, s_out as f64, z_out) as u8]);
            }
        }
        s_in = s_out;
    }
    Ok(w.finish())
}

/// `out[i] = scale · (q[i] - zero_point)`.
pub fn dequantize(q: &[i8], scale: f32, zero_point: i32, out: &mut [f32]) -> Result<(), Error> {
    check_len(Buffer::Output, q.len(), out.len())?;
    for (o, &v) in out.iter_mut().zip(q) {
        *o = scale * (v as i32 - zero_point) as f32;
    }
    Ok(())
}

/// `out[i] = clamp(round(x[i] / scale) + zero_point, -128, 127)`.
pub fn quantize_values(x: &[f32], scale: f32, zero_point: i32, out: &mut [i8]) -> Result<(), Error> {
    check_len(Buffer::Input, x.len(), out.len())?;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_one(v as f64, scale as f64, zero_point);
    }
    Ok(())
}

impl Int8Layer<'_> {
    /// Scale of the layer's int8 output.
    pub fn out_scale(&self) -> f32 {
        f32::from_bits(self.out_scale_bits)
    }

    /// Scale of the int8 pre-activation (the table's input).
    pub fn pre_scale(&self) -> f32 {
        f32::from_bits(self.pre_scale_bits)
    }

    /// Scale of output channel `o`'s weights, or `None` past the last channel.
    pub fn weight_scale(&self, o: usize) -> Option<f32> {
        let c = self.weight_scales.get(o.checked_mul(4)?..o.checked_mul(4)?.checked_add(4)?)?;
        Some(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
}

impl Int8Model<'_> {
    /// Scale of the quantized network input.
    pub fn input_scale(&self) -> f32 {
        f32::from_bits(self.input_scale_bits())
    }

    /// Scale of the int8 outputs (the logits, for a softmax output layer).
    pub fn output_scale(&self) -> f32 {
        self.output_layer().out_scale()
    }

    /// Zero point of the int8 outputs.
    pub fn output_zero_point(&self) -> i32 {
        self.output_layer().out_zero_point()
    }

    /// Quantizes network inputs (after the input transform) to int8 with the input scale and
    /// zero point.
    pub fn quantize_input(&self, x: &[f32], out: &mut [i8]) -> Result<(), Error> {
        quantize_values(x, self.input_scale(), self.input_zero_point(), out)
    }

    /// Dequantizes int8 outputs of `forward` (whole rows) into what the f32 model outputs:
    /// the values, or for a softmax output layer the probabilities of the dequantized logits.
    pub fn dequantize_output(&self, q: &[i8], out: &mut [f32]) -> Result<(), Error> {
        let n = self.topology().output();
        if !q.len().is_multiple_of(n) {
            return Err(Error::BufferLength {
                buffer: Buffer::Output,
                expected: q.len() / n * n,
                actual: q.len(),
            });
        }
        dequantize(q, self.output_scale(), self.output_zero_point(), out)?;
        if self.topology().output_layer().activation == Activation::Softmax {
            activation::forward_in_place(Activation::Softmax, n, out);
        }
        Ok(())
    }
}
