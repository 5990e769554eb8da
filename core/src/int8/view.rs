//! The borrowed int8 model: validated views into model file bytes. Integer only (scales are
//! kept as raw bits; the float getters live in the quantization module).

use crate::error::{check_len, Buffer, Error};
use crate::format::{DType, ModelFile, Reader};
use crate::topology::{Activation, Topology, MAX_LAYERS};

use super::fixed::Rounding;
use super::infer;
use super::kernels::Int8Kernels;
use super::{layout, uses_table};

/// Little-endian `i32`s borrowed from bytes at any alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct I32s<'a> {
    bytes: &'a [u8],
}

impl<'a> I32s<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<i32> {
        let c = self.bytes.get(i.checked_mul(4)?..i.checked_mul(4)?.checked_add(4)?)?;
        Some(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The values in order.
    pub fn iter(&self) -> impl Iterator<Item = i32> + 'a {
        self.bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The raw little-endian bytes (4-byte aligned when the model file is).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// One quantized dense layer, borrowed from a model file. See the format's int8 payload table.
#[derive(Clone, Copy, Debug)]
pub struct Int8Layer<'a> {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    pub(crate) activation: Activation,
    pub(crate) out_scale_bits: u32,
    pub(crate) out_zero_point: i32,
    pub(crate) pre_scale_bits: u32,
    pub(crate) pre_zero_point: i32,
    pub(crate) weight_scales: &'a [u8],
    pub(crate) bias: I32s<'a>,
    pub(crate) multipliers: I32s<'a>,
    pub(crate) shifts: I32s<'a>,
    pub(crate) weights: &'a [i8],
    pub(crate) table: Option<&'a [i8; 256]>,
    pub(crate) rounding: Rounding,
}

impl<'a> Int8Layer<'a> {
    /// How the requantization rounds (gemmlowp's double rounding unless the model came from
    /// a runtime built with single rounding).
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// Inputs per sample (`m`).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Output units (`n`).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The activation (realized as a clamp or a table).
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Zero point of the layer's int8 output.
    pub fn out_zero_point(&self) -> i32 {
        self.out_zero_point
    }

    /// Zero point of the int8 pre-activation (the table's input); equals
    /// [`out_zero_point`](Self::out_zero_point) when the layer has no table.
    pub fn pre_zero_point(&self) -> i32 {
        self.pre_zero_point
    }

    /// IEEE bits of the output scale (float-free; [`out_scale`](Self::out_scale) gives the `f32`).
    pub fn out_scale_bits(&self) -> u32 {
        self.out_scale_bits
    }

    /// IEEE bits of the pre-activation scale.
    pub fn pre_scale_bits(&self) -> u32 {
        self.pre_scale_bits
    }

    /// Weights `W_q[o][j]` row-major, in `[-127, 127]`, zero point 0.
    pub fn weights(&self) -> &'a [i8] {
        self.weights
    }

    /// int32 bias, scale `s_in · s_w[o]`, zero point 0.
    pub fn bias(&self) -> I32s<'a> {
        self.bias
    }

    /// Requantization multipliers (Q31), one per output channel.
    pub fn multipliers(&self) -> I32s<'a> {
        self.multipliers
    }

    /// Requantization shifts (positive: left), one per output channel.
    pub fn shifts(&self) -> I32s<'a> {
        self.shifts
    }

    /// The 256-entry activation table (entry `q + 128` for pre-activation `q`), if any.
    pub fn table(&self) -> Option<&'a [i8; 256]> {
        self.table
    }

    /// The clamp applied after requantization: `[z_out, 127]` for ReLU, `[-128, 127]` otherwise
    /// (for a table layer, the clamp of the pre-activation).
    pub fn clamp_range(&self) -> (i32, i32) {
        match self.activation {
            Activation::Relu => (self.out_zero_point, 127),
            _ => (-128, 127),
        }
    }
}

/// One int8 layer as separate arrays: what `host export --format rust` writes as `static`s.
/// [`Int8Layer::from_parts`] checks it and borrows it (no parsing, no copy); run a list of
/// such layers with [`forward_layers`](super::forward_layers).
///
/// Scales are IEEE bits (the integer path never reads them). Fields mean what the int8
/// payload table of [`crate::format`] says.
#[derive(Clone, Copy, Debug)]
pub struct Int8LayerParts<'a> {
    /// Inputs per sample (`m`).
    pub inputs: usize,
    /// Output units (`n`).
    pub outputs: usize,
    /// The activation (a clamp, or a table for sigmoid, tanh, leaky ReLU, ELU, GELU).
    pub activation: Activation,
    /// IEEE bits of the output scale.
    pub out_scale_bits: u32,
    /// Output zero point, in `[-128, 127]`.
    pub out_zero_point: i32,
    /// IEEE bits of the pre-activation scale (the output scale without a table).
    pub pre_scale_bits: u32,
    /// Pre-activation zero point (the output zero point without a table).
    pub pre_zero_point: i32,
    /// IEEE bits of the `n` weight scales.
    pub weight_scale_bits: &'a [u32],
    /// `n` int32 biases.
    pub bias: &'a [i32],
    /// `n` Q31 requantization multipliers (0 or in `[2^30, 2^31)`).
    pub multipliers: &'a [i32],
    /// `n` shifts in `[-31, 30]`.
    pub shifts: &'a [i32],
    /// `n × m` weights, row-major, in `[-127, 127]`.
    pub weights: &'a [i8],
    /// The activation table, present exactly when the activation needs one.
    pub table: Option<&'a [i8; 256]>,
    /// How the requantization rounds ([`Rounding::Double`] unless the model file says single).
    pub rounding: Rounding,
}

#[cfg(target_endian = "little")]
impl<'a> Int8Layer<'a> {
    /// Checks a layer given as separate arrays and borrows them: the same checks the model
    /// file parser makes (lengths, zero points, scales, multipliers, shifts, weights, table),
    /// without decoding bytes. Little-endian targets only (Cortex-M, x86, AArch64), where the
    /// arrays already have the model file's byte order.
    pub fn from_parts(p: Int8LayerParts<'a>) -> Result<Self, Error> {
        let corrupt = |what| Err(Error::CorruptPayload { what });
        for width in [p.inputs, p.outputs] {
            if width == 0 || width > crate::topology::MAX_WIDTH {
                return corrupt("a layer width is 0 or above MAX_WIDTH");
            }
        }
        let n = p.outputs;
        if [p.weight_scale_bits.len(), p.bias.len(), p.multipliers.len(), p.shifts.len()] != [n; 4] {
            return corrupt(
                "weight scales, bias, multipliers and shifts must each have one value per output",
            );
        }
        if p.weights.len() != n.saturating_mul(p.inputs) {
            return corrupt("the weights are not outputs × inputs values");
        }
        scale_bits(p.out_scale_bits, "an output scale is not finite and positive")?;
        scale_bits(p.pre_scale_bits, "a pre-activation scale is not finite and positive")?;
        zero_point(p.out_zero_point)?;
        zero_point(p.pre_zero_point)?;
        let has_table = uses_table(p.activation);
        if has_table != p.table.is_some() {
            return corrupt("a layer has an activation table exactly when its activation needs one");
        }
        if !has_table && (p.pre_scale_bits != p.out_scale_bits || p.pre_zero_point != p.out_zero_point) {
            return corrupt("a layer without a table has different pre-activation and output quantization");
        }
        for &bits in p.weight_scale_bits {
            scale_bits(bits, "a weight scale is not finite and positive")?;
        }
        if p.multipliers.iter().any(|&v| v != 0 && v < (1 << 30)) {
            return corrupt("a multiplier neither 0 nor in [2^30, 2^31)");
        }
        if p.shifts.iter().any(|v| !(-31..=30).contains(v)) {
            return corrupt("a shift outside [-31, 30]");
        }
        if p.weights.contains(&i8::MIN) {
            return corrupt("a weight of -128 (symmetric weights are in [-127, 127])");
        }
        Ok(Int8Layer {
            inputs: p.inputs,
            outputs: n,
            activation: p.activation,
            out_scale_bits: p.out_scale_bits,
            out_zero_point: p.out_zero_point,
            pre_scale_bits: p.pre_scale_bits,
            pre_zero_point: p.pre_zero_point,
            weight_scales: bytemuck::cast_slice(p.weight_scale_bits),
            bias: I32s { bytes: bytemuck::cast_slice(p.bias) },
            multipliers: I32s { bytes: bytemuck::cast_slice(p.multipliers) },
            shifts: I32s { bytes: bytemuck::cast_slice(p.shifts) },
            weights: p.weights,
            table: p.table,
            rounding: p.rounding,
        })
    }
}

/// An int8 model borrowed from model file bytes (flash, `include_bytes!`, any alignment),
/// validated once by [`parse`](Self::parse). Run it with [`forward`](super::forward).
#[derive(Clone, Debug)]
pub struct Int8Model<'a> {
    file: ModelFile<'a>,
    input_scale_bits: u32,
    input_zero_point: i32,
    input_table: Option<&'a [i8; 256]>,
    layers: heapless::Vec<Int8Layer<'a>, MAX_LAYERS>,
}

fn scale_bits(bits: u32, what: &'static str) -> Result<u32, Error> {
    // Positive (sign 0, not +0) and finite (exponent not all ones), checked on the bits.
    if bits == 0 || bits & 0x8000_0000 != 0 || bits & 0x7F80_0000 == 0x7F80_0000 {
        Err(Error::CorruptPayload { what })
    } else {
        Ok(bits)
    }
}

fn zero_point(v: i32) -> Result<i32, Error> {
    if (-128..=127).contains(&v) {
        Ok(v)
    } else {
        Err(Error::CorruptPayload { what: "a zero point outside [-128, 127]" })
    }
}

fn table(bytes: &[u8]) -> Option<&[i8; 256]> {
    <&[i8; 256]>::try_from(bytemuck::cast_slice::<u8, i8>(bytes)).ok()
}

impl<'a> Int8Model<'a> {
    /// Parses and validates an int8 model file. An f32 file is [`Error::DTypeMismatch`]; every
    /// malformed input is an error, never a panic.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let file = ModelFile::parse(bytes)?;
        if file.dtype() != DType::Int8 {
            return Err(Error::DTypeMismatch { expected: DType::Int8, found: file.dtype() });
        }
        Self::from_file(file)
    }

    /// Validates the int8 payload of a parsed file (whose lengths and checksum are checked).
    pub(crate) fn from_file(file: ModelFile<'a>) -> Result<Self, Error> {
        if file.dtype() != DType::Int8 {
            return Err(Error::DTypeMismatch { expected: DType::Int8, found: file.dtype() });
        }
        let payload = file.payload();
        let mut r = Reader { bytes: payload, pos: 0 };
        let input_scale_bits = scale_bits(r.u32()?, "the input scale is not finite and positive")?;
        let input_zero_point = zero_point(r.i32()?)?;
        // Bit 0: an input table follows; bit 1: single rounding (see `format`).
        let flags = r.u32()?;
        let input_table = match flags & 1 {
            0 => None,
            _ if file.transform_code() < 2 => table(r.take(256)?),
            _ => return Err(Error::CorruptPayload { what: "an input table with a per-feature transform" }),
        };
        if flags > 3 {
            return Err(Error::CorruptPayload { what: "input flags other than bits 0 and 1 are set" });
        }
        let rounding = if flags & 2 != 0 { Rounding::Single } else { Rounding::Double };
        let t = file.topology();
        let mut layers = heapless::Vec::new();
        for (i, spec) in t.layers().iter().enumerate() {
            let (n, m) = (spec.outputs, t.fan_in(i));
            let out_scale_bits = scale_bits(r.u32()?, "an output scale is not finite and positive")?;
            let out_zero_point = zero_point(r.i32()?)?;
            let pre_scale_bits = scale_bits(r.u32()?, "a pre-activation scale is not finite and positive")?;
            let pre_zero_point = zero_point(r.i32()?)?;
            let has_table = uses_table(spec.activation);
            if !has_table && (pre_scale_bits != out_scale_bits || pre_zero_point != out_zero_point) {
                return Err(Error::CorruptPayload {
                    what: "a layer without a table has different pre-activation and output quantization",
                });
            }
            let weight_scales = r.take(n.saturating_mul(4))?;
            for c in weight_scales.chunks_exact(4) {
                scale_bits(
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    "a weight scale is not finite and positive",
                )?;
            }
            let bias = I32s { bytes: r.take(n.saturating_mul(4))? };
            let multipliers = I32s { bytes: r.take(n.saturating_mul(4))? };
            if multipliers.iter().any(|v| v != 0 && v < (1 << 30)) {
                return Err(Error::CorruptPayload { what: "a multiplier neither 0 nor in [2^30, 2^31)" });
            }
            let shifts = I32s { bytes: r.take(n.saturating_mul(4))? };
            if shifts.iter().any(|v| !(-31..=30).contains(&v)) {
                return Err(Error::CorruptPayload { what: "a shift outside [-31, 30]" });
            }
            let count = n.saturating_mul(m);
            let weights: &[i8] = bytemuck::cast_slice(r.take(count)?);
            if weights.contains(&i8::MIN) {
                return Err(Error::CorruptPayload {
                    what: "a weight of -128 (symmetric weights are in [-127, 127])",
                });
            }
            if r.take((4 - count % 4) % 4)?.iter().any(|&b| b != 0) {
                return Err(Error::CorruptPayload { what: "padding after the weights is not 0" });
            }
            let table = if has_table { table(r.take(256)?) } else { None };
            let layer = Int8Layer {
                inputs: m,
                outputs: n,
                activation: spec.activation,
                out_scale_bits,
                out_zero_point,
                pre_scale_bits,
                pre_zero_point,
                weight_scales,
                bias,
                multipliers,
                shifts,
                weights,
                table,
                rounding,
            };
            layers
                .push(layer)
                .map_err(|_| Error::TooManyLayers { layers: t.layers().len(), max: MAX_LAYERS })?;
        }
        if r.pos != payload.len() {
            return Err(Error::CorruptPayload { what: "the payload is longer than its layers" });
        }
        Ok(Int8Model { file, input_scale_bits, input_zero_point, input_table, layers })
    }

    /// The parsed file (topology, input transform).
    pub fn file(&self) -> &ModelFile<'a> {
        &self.file
    }

    /// The (folded) network shape.
    pub fn topology(&self) -> &Topology {
        self.file.topology()
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Int8Layer<'a>] {
        &self.layers
    }

    /// Zero point of the quantized network input.
    pub fn input_zero_point(&self) -> i32 {
        self.input_zero_point
    }

    /// IEEE bits of the input scale ([`input_scale`](Self::input_scale) gives the `f32`).
    pub fn input_scale_bits(&self) -> u32 {
        self.input_scale_bits
    }

    /// The u8 -> i8 input table, present when the input transform is one affine map.
    pub fn input_table(&self) -> Option<&'a [i8; 256]> {
        self.input_table
    }

    /// The output layer.
    pub fn output_layer(&self) -> &Int8Layer<'a> {
        // Never empty: a topology has at least one layer.
        &self.layers[self.layers.len().saturating_sub(1)]
    }

    /// Length of the int8 activation workspace for `batch` samples.
    pub fn act_workspace_len(&self, batch: usize) -> usize {
        layout::act_len(self.topology().layers(), batch)
    }

    /// Length of the int32 accumulator workspace for `batch` samples.
    pub fn acc_workspace_len(&self, batch: usize) -> usize {
        layout::acc_len(self.topology().layers(), batch)
    }

    /// Quantizes raw u8 samples (any whole number of rows of the input width) through the
    /// input table: the input transform and the input quantization in one lookup, no floats.
    ///
    /// Errors: [`Error::NoInputTable`] for a per-feature transform, buffer lengths.
    pub fn quantize_u8(&self, raw: &[u8], out: &mut [i8]) -> Result<(), Error> {
        let table = self.input_table.ok_or(Error::NoInputTable)?;
        check_len(Buffer::Input, raw.len(), out.len())?;
        let n = self.topology().input();
        if !raw.len().is_multiple_of(n) {
            return Err(Error::BufferLength {
                buffer: Buffer::Input,
                expected: raw.len() / n * n,
                actual: raw.len(),
            });
        }
        for (o, &r) in out.iter_mut().zip(raw) {
            *o = table[r as usize];
        }
        Ok(())
    }

    /// Runs [`forward`](super::forward) on this model.
    pub fn forward<'w>(
        &self,
        kernels: &dyn Int8Kernels,
        input: &[i8],
        batch: usize,
        act: &'w mut [i8],
        acc: &mut [i32],
    ) -> Result<&'w [i8], Error> {
        infer::forward(kernels, self, input, batch, act, acc)
    }

    /// Classifies one quantized sample: the argmax of the int8 outputs, and the outputs.
    pub fn predict<'w>(
        &self,
        kernels: &dyn Int8Kernels,
        input: &[i8],
        act: &'w mut [i8],
        acc: &mut [i32],
    ) -> Result<(usize, &'w [i8]), Error> {
        let out = infer::forward(kernels, self, input, 1, act, acc)?;
        Ok((infer::argmax(out), out))
    }
}
