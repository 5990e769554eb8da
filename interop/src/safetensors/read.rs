//! safetensors bytes -> [`FloatModel`]: the names grouped into modules, the modules into
//! layers, the tensors into core's flat layout.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mlp::{Activation, LayerSpec, Topology, MAX_LAYERS};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};

use super::metadata::{self, parse_activation, parse_floats};
use crate::{Error, FloatModel, InputNormalization, Result};

/// The parameter and buffer names of `Linear` and `BatchNorm1d`.
const ATTRIBUTES: [&str; 5] = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"];

/// Reads a `state_dict` of an `nn.Sequential` MLP (see the module docs).
pub(super) fn read(bytes: &[u8], activation: Option<Activation>) -> Result<FloatModel> {
    let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        Error::new(format!(
            "not a valid safetensors file ({e}); expected an 8-byte header length, a JSON header and the \
             tensors, as safetensors.torch.save_file writes them"
        ))
    })?;
    // read_metadata checked that header and tensors cover the file exactly.
    let data =
        bytes.get(8 + header_len..).ok_or_else(|| Error::new("safetensors data past the end of the file"))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let names = header.offset_keys();
    let modules = modules(&header, &names)?;
    let layers = layers(&modules)?;
    let mut notes = Vec::new();
    let topology = topology(&layers, &meta, activation, &mut notes)?;
    let mut reader = TensorReader { data, converted: BTreeSet::new() };
    let (params, running) = parameters(&layers, &topology, &mut reader)?;
    for dtype in &reader.converted {
        notes.push(match dtype {
            Dtype::F64 => "F64 tensors rounded to f32".to_string(),
            d => format!("{d} tensors widened to f32 (exact)"),
        });
    }
    let input = input(&meta, topology.input())?;
    let classes = classes(&meta, topology.output())?;
    Ok(FloatModel { topology, params, running, input, classes, notes })
}

/// One tensor: its name and where its data is.
#[derive(Clone, Copy)]
struct Tensor<'h> {
    name: &'h str,
    info: &'h TensorInfo,
}

impl Tensor<'_> {
    fn shape_text(&self) -> String {
        format!("{:?}", self.info.shape)
    }
}

/// The tensors of one `nn.Sequential` index.
#[derive(Default)]
struct Module<'h> {
    weight: Option<Tensor<'h>>,
    bias: Option<Tensor<'h>>,
    running_mean: Option<Tensor<'h>>,
    running_var: Option<Tensor<'h>>,
    num_batches_tracked: Option<Tensor<'h>>,
}

/// The tensors grouped by module index, after checking every name against one prefix.
fn modules<'h>(header: &'h Metadata, names: &'h [String]) -> Result<BTreeMap<u64, Module<'h>>> {
    if names.is_empty() {
        return Err(Error::new(
            "the file holds no tensors: expected a state_dict of an nn.Sequential of Linear layers \
             (0.weight, 0.bias, ...)",
        ));
    }
    let mut prefix: Option<&str> = None;
    let mut modules: BTreeMap<u64, Module<'h>> = BTreeMap::new();
    for name in names {
        let (p, index, attribute) = split_name(name)?;
        match prefix {
            None => prefix = Some(p),
            Some(q) if q != p => {
                return Err(Error::new(format!(
                    "tensors under two prefixes, '{q}' and '{p}': expected one nn.Sequential (a model with \
                     several submodules is not an MLP this tool imports; save the Sequential's own state_dict)"
                )))
            }
            Some(_) => {}
        }
        let info =
            header.info(name).ok_or_else(|| Error::new(format!("tensor '{name}' has no header entry")))?;
        if modules.len() >= 2 * MAX_LAYERS && !modules.contains_key(&index) {
            return Err(Error::new(format!(
                "more than {} modules with parameters: at most {MAX_LAYERS} Linear layers, each with an optional \
                 BatchNorm1d, are supported",
                2 * MAX_LAYERS
            )));
        }
        let m = modules.entry(index).or_default();
        let slot = match attribute {
            "weight" => &mut m.weight,
            "bias" => &mut m.bias,
            "running_mean" => &mut m.running_mean,
            "running_var" => &mut m.running_var,
            _ => &mut m.num_batches_tracked,
        };
        *slot = Some(Tensor { name, info });
    }
    Ok(modules)
}

/// `net.2.weight` -> (`net.`, 2, `weight`).
fn split_name(name: &str) -> Result<(&str, u64, &str)> {
    let unexpected = || {
        Error::new(format!(
            "tensor '{name}' is not a name of an nn.Sequential state_dict: expected \
             '<index>.<{}>' (0.weight, 0.bias, 2.weight, ...), all under one optional prefix such as \
             'net.' or 'model.layers.'",
            ATTRIBUTES.join("|")
        ))
    };
    let (stem, attribute) = name.rsplit_once('.').ok_or_else(unexpected)?;
    if !ATTRIBUTES.contains(&attribute) {
        return Err(unexpected());
    }
    // ASCII digits are one byte each, so the split falls on a character boundary.
    let digits = stem.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (prefix, index) = stem.split_at(stem.len() - digits);
    if index.is_empty() || !(prefix.is_empty() || prefix.ends_with('.')) {
        return Err(unexpected());
    }
    let index = index.parse().map_err(|_| Error::new(format!("tensor '{name}': module index too large")))?;
    Ok((prefix, index, attribute))
}

/// A Linear and the BatchNorm1d after it, if any.
struct Layer<'h> {
    /// The Linear's index.
    first: u64,
    /// The index of the layer's last module (the BatchNorm1d's, else the Linear's).
    last: u64,
    weight: Tensor<'h>,
    bias: Option<Tensor<'h>>,
    batch_norm: Option<BatchNorm<'h>>,
}

impl Layer<'_> {
    fn inputs(&self) -> usize {
        self.weight.info.shape[1]
    }

    fn outputs(&self) -> usize {
        self.weight.info.shape[0]
    }
}

/// A BatchNorm1d's tensors (`gamma`/`beta` absent: `affine=False`).
struct BatchNorm<'h> {
    gamma: Option<Tensor<'h>>,
    beta: Option<Tensor<'h>>,
    mean: Tensor<'h>,
    var: Tensor<'h>,
}

/// The modules as layers: each a Linear, optionally followed at the next index by a
/// BatchNorm1d of its width, each Linear's input the previous layer's output.
fn layers<'h>(modules: &BTreeMap<u64, Module<'h>>) -> Result<Vec<Layer<'h>>> {
    const SUPPORTED: &str = "supported: Linear layers, each optionally followed by a BatchNorm1d";
    let mut layers: Vec<Layer<'h>> = Vec::new();
    for (&index, m) in modules {
        let is_batch_norm =
            m.running_mean.is_some() || m.running_var.is_some() || m.num_batches_tracked.is_some();
        if is_batch_norm {
            let (Some(mean), Some(var)) = (m.running_mean, m.running_var) else {
                let missing = if m.running_mean.is_none() { "running_mean" } else { "running_var" };
                return Err(Error::new(format!(
                    "module {index} has batch-norm buffers but no {missing}: a BatchNorm1d with running \
                     statistics (track_running_stats=True) saves running_mean and running_var"
                )));
            };
            let Some(layer) = layers.last_mut().filter(|l| l.last == l.first && index == l.first + 1) else {
                return Err(Error::new(format!(
                    "BatchNorm1d at module {index} does not directly follow a Linear; {SUPPORTED}"
                )));
            };
            let n = layer.outputs();
            for t in [m.weight, m.bias, Some(mean), Some(var)].into_iter().flatten() {
                if t.info.shape != [n] {
                    return Err(Error::new(format!(
                        "shape mismatch: {} is {} but the Linear before it ({}) has {n} outputs",
                        t.name,
                        t.shape_text(),
                        layer.weight.name
                    )));
                }
            }
            if m.weight.is_some() != m.bias.is_some() {
                return Err(Error::new(format!(
                    "BatchNorm1d at module {index} has only one of weight and bias (affine=True saves both)"
                )));
            }
            layer.batch_norm = Some(BatchNorm { gamma: m.weight, beta: m.bias, mean, var });
            layer.last = index;
            continue;
        }
        let Some(weight) = m.weight else {
            return Err(Error::new(format!("module {index} has a bias but no weight; {SUPPORTED}")));
        };
        match weight.info.shape.len() {
            2 => {}
            1 => {
                return Err(Error::new(format!(
                    "{} is 1-D and module {index} has no running statistics (a LayerNorm, or a BatchNorm1d \
                     with track_running_stats=False?); {SUPPORTED}",
                    weight.name
                )))
            }
            _ => {
                return Err(Error::new(format!(
                    "{} has shape {}: not a Linear's [out, in] (a convolution?); {SUPPORTED}",
                    weight.name,
                    weight.shape_text()
                )))
            }
        }
        let layer = Layer { first: index, last: index, weight, bias: m.bias, batch_norm: None };
        if let Some(prev) = layers.last() {
            if layer.inputs() != prev.outputs() {
                return Err(Error::new(format!(
                    "shape mismatch: {} is {} ({} inputs) but the layer before it ({}) has {} outputs",
                    weight.name,
                    weight.shape_text(),
                    layer.inputs(),
                    prev.weight.name,
                    prev.outputs()
                )));
            }
        }
        if let Some(b) = layer.bias {
            if b.info.shape != [layer.outputs()] {
                return Err(Error::new(format!(
                    "shape mismatch: {} is {} but {} has {} outputs",
                    b.name,
                    b.shape_text(),
                    weight.name,
                    layer.outputs()
                )));
            }
        }
        layers.push(layer);
    }
    for l in &layers {
        if l.bias.is_none() && l.batch_norm.is_none() {
            return Err(Error::new(format!(
                "{} has no bias beside it: a Linear(bias=False) is supported only before a BatchNorm1d; \
                 save the layer with bias=True (or add a zero bias tensor)",
                l.weight.name
            )));
        }
    }
    if layers.is_empty() {
        return Err(Error::new(format!("no Linear layer in the file; {SUPPORTED}")));
    }
    Ok(layers)
}

/// The topology: widths from the layers, activations from the metadata, else `activation`,
/// else ReLU, said in `notes`.
fn topology(
    layers: &[Layer<'_>],
    meta: &HashMap<String, String>,
    activation: Option<Activation>,
    notes: &mut Vec<String>,
) -> Result<Topology> {
    let hidden = layers.len() - 1;
    let named: Option<Vec<Activation>> = match meta.get(metadata::ACTIVATION) {
        Some(text) => {
            let list = text.split(',').map(parse_activation).collect::<Result<Vec<_>>>()?;
            if list.len() != 1 && list.len() != hidden {
                return Err(Error::new(format!(
                    "metadata {} names {} activations for {hidden} hidden layers (one for all, or one each)",
                    metadata::ACTIVATION,
                    list.len()
                )));
            }
            Some(list)
        }
        None => None,
    };
    let assumed = match activation {
        Some(Activation::Maxout(_)) => return Err(metadata::maxout()),
        Some(a) => a,
        None => Activation::Relu,
    };
    if hidden > 0 {
        match (&named, activation) {
            (Some(_), Some(a)) => notes.push(format!(
                "--activation {} ignored: the file's metadata names the hidden activation",
                a.name()
            )),
            (Some(_), None) => {}
            (None, Some(a)) => notes.push(format!(
                "hidden activation {} (--activation): the file's metadata does not name it",
                a.name()
            )),
            (None, None) => notes.push(
                "hidden activation relu: assumed, the file's metadata does not name it; pass --activation"
                    .into(),
            ),
        }
    }
    if let Some(first) = layers.first().filter(|l| l.first > 0) {
        notes.push(format!(
            "modules 0..{} have no parameters (nn.Flatten?): taken as no-ops before the first Linear",
            first.first
        ));
    }
    let mut specs = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let act = if i == hidden {
            match meta.get(metadata::OUTPUT) {
                Some(text) => parse_activation(text)?,
                None => Activation::Softmax,
            }
        } else {
            let (this, next) = (l.weight.name, layers[i + 1].weight.name);
            let gap = layers[i + 1].first - l.last - 1;
            if gap > 1 {
                notes.push(format!(
                    "{gap} parameterless modules between {this} and {next}: taken as the activation then \
                     Dropout (an identity at inference)"
                ));
            }
            match &named {
                Some(list) => list[if list.len() == 1 { 0 } else { i }],
                None if gap == 0 => {
                    notes.push(format!(
                        "no module between {this} and {next}: the hidden layer between them is linear (identity)"
                    ));
                    Activation::Identity
                }
                None => assumed,
            }
        };
        let spec = LayerSpec::dense(l.outputs(), act);
        specs.push(if l.batch_norm.is_some() { spec.with_batch_norm() } else { spec });
    }
    let topology = Topology::new(layers[0].inputs(), &specs)
        .map_err(|e| Error::new(format!("not a valid network: {e}")))?;
    if let Some(text) = meta.get(metadata::TOPOLOGY) {
        let shape = shape_text(&topology);
        if text.trim() != shape {
            return Err(Error::new(format!(
                "metadata {} says {text} but the tensors' shapes give {shape}: the file is inconsistent",
                metadata::TOPOLOGY
            )));
        }
    }
    Ok(topology)
}

/// `784-256-10`.
pub(super) fn shape_text(t: &Topology) -> String {
    let mut s = t.input().to_string();
    for l in t.layers() {
        s.push('-');
        s.push_str(&l.outputs.to_string());
    }
    s
}

/// Reads tensors as f32, remembering which dtypes it converted.
struct TensorReader<'d> {
    data: &'d [u8],
    converted: BTreeSet<Dtype>,
}

impl TensorReader<'_> {
    /// Appends `t`'s values to `out` as f32; refuses non-float dtypes and non-finite values.
    fn append(&mut self, t: Tensor<'_>, out: &mut Vec<f32>) -> Result<()> {
        let (start, end) = t.info.data_offsets;
        let bytes = self
            .data
            .get(start..end)
            .ok_or_else(|| Error::new(format!("{}: data outside the file", t.name)))?;
        let before = out.len();
        match t.info.dtype {
            Dtype::F32 => {
                out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            }
            Dtype::F64 => out.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32),
            ),
            Dtype::F16 => {
                out.extend(bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))))
            }
            Dtype::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)),
            ),
            d => {
                return Err(Error::new(format!(
                    "{} is {d}: supported parameter dtypes are F32, and F64, F16, BF16 (converted to f32)",
                    t.name
                )))
            }
        }
        if t.info.dtype != Dtype::F32 {
            self.converted.insert(t.info.dtype);
        }
        if let Some(k) = out[before..].iter().position(|x| !x.is_finite()) {
            return Err(Error::new(format!("{} holds a value that is not finite at element {k}", t.name)));
        }
        Ok(())
    }
}

/// IEEE half precision to f32, exactly (subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        // Subnormal: frac * 2^-24, exact in f32.
        (0, f) => {
            let v = f as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// The parameters and running statistics in core's layout.
fn parameters(
    layers: &[Layer<'_>],
    topology: &Topology,
    reader: &mut TensorReader<'_>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    // Both lengths follow from shapes the crate checked against the file's bytes.
    let mut params = Vec::with_capacity(topology.param_len());
    let mut running = Vec::with_capacity(topology.running_len());
    for l in layers {
        let n = l.outputs();
        reader.append(l.weight, &mut params)?;
        match l.bias {
            Some(b) => reader.append(b, &mut params)?,
            // A Linear(bias=False) before batch norm: the bias is 0.
            None => params.resize(params.len() + n, 0.0),
        }
        if let Some(bn) = &l.batch_norm {
            match (bn.gamma, bn.beta) {
                (Some(g), Some(b)) => {
                    reader.append(g, &mut params)?;
                    reader.append(b, &mut params)?;
                }
                // affine=False: γ = 1, β = 0.
                _ => {
                    params.resize(params.len() + n, 1.0);
                    params.resize(params.len() + n, 0.0);
                }
            }
            reader.append(bn.mean, &mut running)?;
            let var_start = running.len();
            reader.append(bn.var, &mut running)?;
            if let Some(k) = running[var_start..].iter().position(|&v| v < 0.0) {
                return Err(Error::new(format!(
                    "{} is negative at element {k}: a variance cannot be",
                    bn.var.name
                )));
            }
        }
    }
    if params.len() != topology.param_len() || running.len() != topology.running_len() {
        return Err(Error::new("internal: the parameters do not fill the topology's layout"));
    }
    Ok((params, running))
}

/// The input normalization the metadata records, if it does.
fn input(meta: &HashMap<String, String>, n: usize) -> Result<Option<InputNormalization>> {
    match (meta.get(metadata::INPUT_SCALE), meta.get(metadata::INPUT_OFFSET)) {
        (None, None) => Ok(None),
        (Some(s), Some(o)) => Ok(Some(InputNormalization {
            scale: parse_floats(metadata::INPUT_SCALE, s, n)?,
            offset: parse_floats(metadata::INPUT_OFFSET, o, n)?,
        })),
        _ => Err(Error::new(format!(
            "the metadata has only one of {} and {} (both or neither)",
            metadata::INPUT_SCALE,
            metadata::INPUT_OFFSET
        ))),
    }
}

/// The class names the metadata records (empty if none).
fn classes(meta: &HashMap<String, String>, outputs: usize) -> Result<Vec<String>> {
    let Some(text) = meta.get(metadata::CLASSES) else { return Ok(Vec::new()) };
    let classes: Vec<String> = serde_json::from_str(text).map_err(|e| {
        Error::new(format!("metadata {} is not a JSON array of strings: {e}", metadata::CLASSES))
    })?;
    if classes.len() != outputs {
        return Err(Error::new(format!(
            "metadata {} names {} classes for {outputs} outputs",
            metadata::CLASSES,
            classes.len()
        )));
    }
    Ok(classes)
}
