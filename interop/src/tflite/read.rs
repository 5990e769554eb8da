//! `.tflite` (int8, fully connected) into core's int8 model file.
//!
//! The graph must be one chain: an int8 input, or a float input and QUANTIZE; RESHAPE
//! anywhere before the first FULLY_CONNECTED (Keras' Flatten); FULLY_CONNECTED layers with
//! int8 weights (per-channel or per-tensor), int32 bias and fused RELU or none; SOFTMAX at
//! the end; DEQUANTIZE last. The integers are taken as they are; the requantization
//! multipliers are the ones LiteRT's Prepare computes from the file's float scales, so core
//! runs the file bit-identically to LiteRT's reference kernels.

use mlp::int8::{Int8Input, Int8LayerParts, Rounding};
use mlp::{Activation, InputTransform, LayerSpec, Topology};

use super::schema::{self, activation, op, tensor_type, Model, Operator, Tensor};
use crate::{Error, Result};

/// What is supported, for the end of every "unsupported" message.
const SUPPORTED: &str = "host import reads int8 .tflite MLPs as the TF converter writes them from Keras: \
    [QUANTIZE] [RESHAPE] FULLY_CONNECTED (fused RELU or none, int8 weights, int32 bias)... [SOFTMAX] [DEQUANTIZE]";

/// One FULLY_CONNECTED layer's int8 parts, owned.
struct Layer {
    inputs: usize,
    outputs: usize,
    activation: Activation,
    out_scale: f32,
    out_zero_point: i32,
    weight_scales: Vec<u32>,
    bias: Vec<i32>,
    multipliers: Vec<i32>,
    shifts: Vec<i32>,
    weights: Vec<i8>,
}

/// An int8 tensor's single scale and zero point.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Quant {
    scale: f32,
    zero_point: i32,
}

/// See [`super::read`].
pub fn read(bytes: &[u8], transform: &InputTransform<'_>) -> Result<(Vec<u8>, Vec<String>)> {
    let model = schema::verify(bytes).map_err(|e| {
        Error::new(format!("not a valid TFLite flatbuffer ({e}); the file is damaged or not a .tflite model"))
    })?;
    Graph::new(model)?.read(transform)
}

/// The first subgraph and the model's tables, with bounds-checked lookups.
struct Graph<'a> {
    model: Model<'a>,
    tensors: flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<Tensor<'a>>>,
    operators: flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<Operator<'a>>>,
    input: i32,
    output: i32,
}

fn single(v: Option<flatbuffers::Vector<'_, i32>>, what: &str) -> Result<i32> {
    match v {
        Some(v) if v.len() == 1 => Ok(v.get(0)),
        v => Err(Error::new(format!(
            "the graph has {} {what}s; host import reads models with one input and one output",
            v.map_or(0, |v| v.len())
        ))),
    }
}

impl<'a> Graph<'a> {
    fn new(model: Model<'a>) -> Result<Self> {
        if model.version() != 3 {
            return Err(Error::new(format!(
                "TFLite schema version {} (this reader knows version 3, what every current converter writes)",
                model.version()
            )));
        }
        let subgraphs = model
            .subgraphs()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::new("the model has no subgraph"))?;
        if subgraphs.len() > 1 {
            return Err(Error::new(format!(
                "the model has {} subgraphs (control flow or signatures); {SUPPORTED}",
                subgraphs.len()
            )));
        }
        let g = subgraphs.get(0);
        let tensors = g.tensors().ok_or_else(|| Error::new("the graph has no tensors"))?;
        let operators = g.operators().ok_or_else(|| Error::new("the graph has no operators"))?;
        let input = single(g.inputs(), "input")?;
        let output = single(g.outputs(), "output")?;
        Ok(Graph { model, tensors, operators, input, output })
    }

    fn tensor(&self, i: i32) -> Result<Tensor<'a>> {
        usize::try_from(i).ok().filter(|&i| i < self.tensors.len()).map(|i| self.tensors.get(i)).ok_or_else(
            || {
                Error::new(format!(
                    "tensor index {i} is out of range (the graph has {} tensors)",
                    self.tensors.len()
                ))
            },
        )
    }

    fn op_code(&self, o: &Operator<'a>) -> Result<i32> {
        let codes =
            self.model.operator_codes().ok_or_else(|| Error::new("the model has no operator codes"))?;
        let i = o.opcode_index() as usize;
        if i >= codes.len() {
            return Err(Error::new(format!(
                "operator code index {i} is out of range (the model has {} operator codes)",
                codes.len()
            )));
        }
        Ok(codes.get(i).builtin_code())
    }

    fn op_name(&self, o: &Operator<'a>) -> String {
        let codes = self.model.operator_codes();
        match codes
            .filter(|c| (o.opcode_index() as usize) < c.len())
            .map(|c| c.get(o.opcode_index() as usize))
        {
            Some(c) if c.builtin_code() == 32 => format!("CUSTOM '{}'", c.custom_code().unwrap_or("")),
            Some(c) => op::name(c.builtin_code()),
            None => "an unknown operator".into(),
        }
    }

    /// The constant bytes of tensor `t` (empty when it has no buffer).
    fn data(&self, t: &Tensor<'a>) -> Result<&'a [u8]> {
        let buffers = self.model.buffers().ok_or_else(|| Error::new("the model has no buffers"))?;
        let i = t.buffer() as usize;
        if i >= buffers.len() {
            return Err(Error::new(format!(
                "tensor '{}' names buffer {i}, out of range (the model has {} buffers)",
                t.name(),
                buffers.len()
            )));
        }
        let b = buffers.get(i);
        if b.offset() > 1 {
            return Err(Error::new(format!(
                "tensor '{}' keeps its data outside the flatbuffer (a > 2 GB model layout); not supported",
                t.name()
            )));
        }
        Ok(b.data())
    }

    /// The shape's element count (every dimension at least 1).
    fn elements(&self, t: &Tensor<'a>) -> Result<usize> {
        let shape = t.shape().ok_or_else(|| Error::new(format!("tensor '{}' has no shape", t.name())))?;
        shape.iter().try_fold(1usize, |acc, d| {
            usize::try_from(d).ok().filter(|&d| d >= 1).and_then(|d| acc.checked_mul(d)).ok_or_else(|| {
                Error::new(format!(
                    "tensor '{}' has a dimension {d}: only static positive shapes are supported",
                    t.name()
                ))
            })
        })
    }

    /// The dimensions, for messages and FULLY_CONNECTED's weight shape.
    fn dims(&self, t: &Tensor<'a>) -> Vec<i64> {
        t.shape().map_or_else(Vec::new, |s| s.iter().take(8).map(i64::from).collect())
    }

    fn check_type(&self, t: &Tensor<'a>, want: i8, role: &str) -> Result<()> {
        if t.is_sparse() || t.is_variable() {
            return Err(Error::new(format!("{role} '{}' is sparse or a variable; not supported", t.name())));
        }
        if t.tensor_type() != want {
            return Err(Error::new(format!(
                "{role} '{}' is {}, expected {}: host import reads fully int8-quantized models \
                 (convert with optimizations=[tf.lite.Optimize.DEFAULT], a representative_dataset and \
                 supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8])",
                t.name(),
                tensor_type::name(t.tensor_type()),
                tensor_type::name(want)
            )));
        }
        Ok(())
    }

    /// An int8 activation tensor's per-tensor scale and zero point.
    fn quant(&self, t: &Tensor<'a>, role: &str) -> Result<Quant> {
        self.check_type(t, tensor_type::INT8, role)?;
        let (scales, zps) = self.quant_params(t, role)?;
        match (scales.as_slice(), zps.as_slice()) {
            (&[scale], &[zp]) if (-128..=127).contains(&zp) => Ok(Quant { scale, zero_point: zp as i32 }),
            _ => Err(Error::new(format!(
                "{role} '{}' needs one scale and one zero point in [-128, 127] (found {} scales, zero points {:?})",
                t.name(),
                scales.len(),
                &zps[..zps.len().min(4)]
            ))),
        }
    }

    /// The scales (finite, positive) and zero points of `t` (their vectors are inside the
    /// verified buffer, so the copies are bounded by the file's size).
    fn quant_params(&self, t: &Tensor<'a>, role: &str) -> Result<(Vec<f32>, Vec<i64>)> {
        let q = t
            .quantization()
            .ok_or_else(|| Error::new(format!("{role} '{}' has no quantization", t.name())))?;
        if q.details_type() != 0 {
            return Err(Error::new(format!("{role} '{}' uses custom quantization; not supported", t.name())));
        }
        let scales: Vec<f32> = q.scale().map_or_else(Vec::new, |v| v.iter().collect());
        let zps: Vec<i64> = q.zero_point().map_or_else(Vec::new, |v| v.iter().collect());
        if scales.is_empty() || scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::new(format!(
                "{role} '{}' has no scale or a scale that is not finite and positive",
                t.name()
            )));
        }
        Ok((scales, zps))
    }

    fn read(&self, transform: &InputTransform<'_>) -> Result<(Vec<u8>, Vec<String>)> {
        let mut notes = Vec::new();
        let mut cur = self.input;
        let first = self.tensor(cur)?;
        let mut float = first.tensor_type() == tensor_type::FLOAT32;
        let mut q = if float { None } else { Some(self.quant(&first, "the graph input")?) };
        let mut input_q = q;
        let mut elements = self.elements(&first)?;
        let mut layers: Vec<Layer> = Vec::new();
        let (mut softmax, mut dequantized, mut per_tensor) = (false, false, 0usize);
        for (k, o) in self.operators.iter().enumerate() {
            let code = self.op_code(&o)?;
            let name = self.op_name(&o);
            let at = format!("operator #{k} ({name})");
            let inputs = o.inputs().ok_or_else(|| Error::new(format!("{at} has no inputs")))?;
            let outputs = o.outputs().ok_or_else(|| Error::new(format!("{at} has no outputs")))?;
            if inputs.is_empty() || inputs.get(0) != cur || outputs.len() != 1 {
                return Err(Error::new(format!(
                    "{at} does not take the previous operator's single output: host import reads one chain of \
                     operators; {SUPPORTED}"
                )));
            }
            if dequantized {
                return Err(Error::new(format!("{at} after DEQUANTIZE; {SUPPORTED}")));
            }
            let out = self.tensor(outputs.get(0))?;
            match code {
                op::QUANTIZE if float && layers.is_empty() => {
                    q = Some(self.quant(&out, "QUANTIZE's output")?);
                    input_q = q;
                    float = false;
                    notes.push(format!(
                        "The float input goes through QUANTIZE (scale {}, zero point {}): the model file's u8 input \
                         table does the same.",
                        q.map_or(0.0, |q| q.scale),
                        q.map_or(0, |q| q.zero_point)
                    ));
                }
                op::RESHAPE if layers.is_empty() && !softmax => {
                    if self.elements(&out)? != elements {
                        return Err(Error::new(format!(
                            "{at} changes the element count; only a flatten is supported"
                        )));
                    }
                    if !float && Some(self.quant(&out, "RESHAPE's output")?) != q {
                        return Err(Error::new(format!("{at} changes the quantization; not supported")));
                    }
                }
                op::FULLY_CONNECTED if !float && !softmax => {
                    // Before copying weights: a hostile file could point many layers at one buffer.
                    if layers.len() == mlp::MAX_LAYERS {
                        return Err(Error::new(format!(
                            "{at}: more than {} FULLY_CONNECTED layers (core's int8 models have at most that many)",
                            mlp::MAX_LAYERS
                        )));
                    }
                    let Some(q_in) = q else {
                        return Err(Error::new(format!("{at} has no quantized input")));
                    };
                    let (layer, tensor_wide) = self.dense(&o, &at, q_in, elements, &out)?;
                    per_tensor += tensor_wide as usize;
                    q = Some(Quant { scale: layer.out_scale, zero_point: layer.out_zero_point });
                    elements = layer.outputs;
                    layers.push(layer);
                }
                op::SOFTMAX if !float && !softmax && !layers.is_empty() => {
                    let beta = o.softmax_options().map_or(0.0, |s| s.beta());
                    if beta != 1.0 {
                        return Err(Error::new(format!(
                            "{at} has beta {beta}; only beta 1 (a plain softmax) is supported"
                        )));
                    }
                    let last = layers
                        .last_mut()
                        .filter(|l| l.activation == Activation::Identity)
                        .ok_or_else(|| {
                            Error::new(format!(
                                "{at} follows a FULLY_CONNECTED with a fused activation; not supported"
                            ))
                        })?;
                    last.activation = Activation::Softmax;
                    softmax = true;
                    q = Some(self.quant(&out, "SOFTMAX's output")?);
                    notes.push(
                        "SOFTMAX at the end: the model file's int8 outputs are the last FULLY_CONNECTED's logits \
                         (same argmax; eval applies the softmax in float)."
                            .into(),
                    );
                }
                op::DEQUANTIZE if !float => {
                    self.check_type(&out, tensor_type::FLOAT32, "DEQUANTIZE's output")?;
                    dequantized = true;
                    notes.push("DEQUANTIZE at the end dropped: the model file outputs int8.".into());
                }
                op::LOGISTIC | op::TANH => {
                    return Err(Error::new(format!(
                    "{at}: sigmoid and tanh layers are not imported (TFLite's integer {name} kernel is not \
                         transcribed, so core could not match LiteRT bit for bit); {SUPPORTED}"
                )))
                }
                op::QUANTIZE | op::RESHAPE | op::FULLY_CONNECTED | op::SOFTMAX | op::DEQUANTIZE => {
                    return Err(Error::new(format!(
                        "{at} in a place this reader does not support; {SUPPORTED}"
                    )))
                }
                _ => return Err(Error::new(format!("{at} is not supported; {SUPPORTED}"))),
            }
            cur = outputs.get(0);
        }
        if cur != self.output {
            return Err(Error::new(
                "the graph's output is not the last operator's output; host import reads one chain of operators",
            ));
        }
        let (Some(input_q), false) = (input_q, layers.is_empty()) else {
            return Err(Error::new(format!("the graph has no FULLY_CONNECTED layer; {SUPPORTED}")));
        };
        notes.push(format!(
            "{} FULLY_CONNECTED layers, {} with per-tensor and {} with per-channel weights.",
            layers.len(),
            per_tensor,
            layers.len() - per_tensor
        ));
        let file = encode(&layers, input_q, transform)?;
        Ok((file, notes))
    }

    /// One FULLY_CONNECTED: weights, bias, output, fused activation, and the multipliers
    /// LiteRT computes. Returns the layer and whether its weights are per-tensor.
    fn dense(
        &self,
        o: &Operator<'a>,
        at: &str,
        q_in: Quant,
        elements: usize,
        out: &Tensor<'a>,
    ) -> Result<(Layer, bool)> {
        let inputs = o.inputs().ok_or_else(|| Error::new(format!("{at} has no inputs")))?;
        if inputs.len() < 2 || inputs.len() > 3 {
            return Err(Error::new(format!(
                "{at} has {} inputs (input, weights, optional bias)",
                inputs.len()
            )));
        }
        let opts = o.fully_connected_options();
        let act = match opts.map_or(activation::NONE, |x| x.fused_activation_function()) {
            activation::NONE => Activation::Identity,
            activation::RELU => Activation::Relu,
            a => {
                let names = ["NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"];
                let n = usize::try_from(a)
                    .ok()
                    .and_then(|i| names.get(i))
                    .copied()
                    .unwrap_or("an unknown activation");
                return Err(Error::new(format!(
                    "{at} has the fused activation {n}; FULLY_CONNECTED with RELU or no activation is supported"
                )));
            }
        };
        if opts.is_some_and(|x| x.weights_format() != 0) {
            return Err(Error::new(format!(
                "{at} uses shuffled weights; only the DEFAULT weights format is supported"
            )));
        }
        let w = self.tensor(inputs.get(1))?;
        self.check_type(&w, tensor_type::INT8, "the weights")?;
        let dims = self.dims(&w);
        let (n, m) = match dims.as_slice() {
            &[n, m] if n >= 1 && m >= 1 => (n as usize, m as usize),
            d => return Err(Error::new(format!("{at}: weights of shape {d:?}, expected [outputs, inputs]"))),
        };
        if m != elements {
            return Err(Error::new(format!(
                "{at}: weights take {m} inputs but its input has {elements} values (batch 1 is supported)"
            )));
        }
        let count = n.checked_mul(m).ok_or_else(|| Error::new(format!("{at}: weight shape overflows")))?;
        let data = self.data(&w)?;
        if data.len() != count {
            return Err(Error::new(format!(
                "{at}: weights '{}' have {} bytes of data for shape [{n}, {m}] ({count} expected; constant weights only)",
                w.name(),
                data.len()
            )));
        }
        // Sizes below are all bounded by the file: `count` bytes exist, and n <= count.
        let weights: Vec<i8> = data.iter().map(|&b| b as i8).collect();
        if weights.contains(&i8::MIN) {
            return Err(Error::new(format!(
                "{at}: a weight of -128 (TFLite int8 weights are symmetric, in [-127, 127])"
            )));
        }
        let (scales, zps) = self.quant_params(&w, "the weights")?;
        if zps.iter().any(|&z| z != 0) || (zps.len() != 1 && zps.len() != scales.len()) {
            return Err(Error::new(format!("{at}: weight zero points must be 0 (symmetric int8 weights)")));
        }
        let per_tensor = scales.len() == 1;
        if !per_tensor {
            let qd = w.quantization().map_or(0, |q| q.quantized_dimension());
            if scales.len() != n || qd != 0 {
                return Err(Error::new(format!(
                    "{at}: {} weight scales along dimension {qd}; per-channel weights need one scale per output ({n})",
                    scales.len()
                )));
            }
        }
        let bias_index = if inputs.len() == 3 { inputs.get(2) } else { -1 };
        let bias = match bias_index {
            -1 => vec![0; n],
            i => {
                let b = self.tensor(i)?;
                self.check_type(&b, tensor_type::INT32, "the bias")?;
                let data = self.data(&b)?;
                if data.len() != n * 4 {
                    return Err(Error::new(format!(
                        "{at}: bias '{}' has {} bytes of data, expected {n} int32s (constant bias only)",
                        b.name(),
                        data.len()
                    )));
                }
                data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
        };
        let q_out = self.quant(out, "FULLY_CONNECTED's output")?;
        if self.elements(out)? != n {
            return Err(Error::new(format!("{at}: output of {} values, expected {n}", self.elements(out)?)));
        }
        let weight_scales: Vec<f32> = if per_tensor { vec![scales[0]; n] } else { scales };
        let (multipliers, shifts) =
            weight_scales.iter().map(|&s_w| multiplier(q_in.scale, s_w, q_out.scale)).unzip();
        let layer = Layer {
            inputs: m,
            outputs: n,
            activation: act,
            out_scale: q_out.scale,
            out_zero_point: q_out.zero_point,
            weight_scales: weight_scales.iter().map(|s| s.to_bits()).collect(),
            bias,
            multipliers,
            shifts,
            weights,
        };
        Ok((layer, per_tensor))
    }
}

/// The requantization multiplier LiteRT's FULLY_CONNECTED Prepare computes (kernel_util.cc:
/// `PopulateConvolutionQuantizationParams` per channel, `GetQuantizedConvolutionMultipler`
/// per tensor, both in double): `double(s_in) · double(s_w) / double(s_out)`, through
/// `QuantizeMultiplier` (core's [`quantize_multiplier`](mlp::int8::quantize_multiplier)).
pub(super) fn multiplier(s_in: f32, s_w: f32, s_out: f32) -> (i32, i32) {
    mlp::int8::quantize_multiplier(f64::from(s_in) * f64::from(s_w) / f64::from(s_out))
}

/// TFLite's float -> int8 QUANTIZE (reference `AffineQuantize`): `round(x / scale)` in
/// float, ties away from zero, plus the zero point, clamped.
pub(super) fn quantize(x: f32, q_scale: f32, zero_point: i32) -> i8 {
    let v = (x / q_scale).round();
    if v.is_nan() {
        return zero_point.clamp(-128, 127) as i8;
    }
    (v.clamp(-1e9, 1e9) as i64 + i64::from(zero_point)).clamp(-128, 127) as i8
}

/// The layers as core's int8 model file.
fn encode(layers: &[Layer], input_q: Quant, transform: &InputTransform<'_>) -> Result<Vec<u8>> {
    let specs: Vec<LayerSpec> = layers.iter().map(|l| LayerSpec::dense(l.outputs, l.activation)).collect();
    let topology = Topology::new(layers[0].inputs, &specs)?;
    let table: Option<[i8; 256]> = match *transform {
        InputTransform::PerFeature { .. } => None,
        InputTransform::Identity => {
            Some(std::array::from_fn(|raw| quantize(raw as f32, input_q.scale, input_q.zero_point)))
        }
        InputTransform::Global { scale, offset } => Some(std::array::from_fn(|raw| {
            // The same f32 arithmetic as core's `ModelFile::transform_input`.
            quantize(raw as f32 * scale + offset, input_q.scale, input_q.zero_point)
        })),
    };
    let input = Int8Input {
        scale_bits: input_q.scale.to_bits(),
        zero_point: input_q.zero_point,
        table: table.as_ref(),
    };
    let parts: Vec<Int8LayerParts> = layers
        .iter()
        .map(|l| Int8LayerParts {
            inputs: l.inputs,
            outputs: l.outputs,
            activation: l.activation,
            out_scale_bits: l.out_scale.to_bits(),
            out_zero_point: l.out_zero_point,
            pre_scale_bits: l.out_scale.to_bits(),
            pre_zero_point: l.out_zero_point,
            weight_scale_bits: &l.weight_scales,
            bias: &l.bias,
            multipliers: &l.multipliers,
            shifts: &l.shifts,
            weights: &l.weights,
            table: None,
            rounding: Rounding::Single,
        })
        .collect();
    let mut out = vec![0u8; mlp::int8::encoded_len(&topology, transform)];
    let n = mlp::int8::encode(&topology, transform, &input, &parts, &mut out)?;
    out.truncate(n);
    Ok(out)
}
