//! An ONNX graph into core's layers: the chain `torch.onnx.export` writes for an
//! `nn.Sequential` MLP (both exporters) or `onnx.helper` builds, walked node by node.
//!
//! Each core layer is affine -> optional batch norm -> activation (`mlp::topology`), so the
//! walk keeps one layer open: Gemm or MatMul opens it, Add adds to its bias, BatchNormalization
//! and one activation close it in that order. Flatten/Reshape may only come first, Dropout and
//! Identity anywhere (dropped), Softmax/LogSoftmax only last.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use mlp::batchnorm::BN_EPS;
use mlp::{Activation, LayerSpec, Topology};

use super::proto::{attribute_type, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use super::tensor::{self, FloatTensor};
use super::{META_CLASSES, META_INPUT_OFFSET, META_INPUT_SCALE, MIN_OPSET};
use crate::{Error, FloatModel, InputNormalization, Result};

/// The ops the walk understands, for error messages.
const SUPPORTED: &str = "Gemm, MatMul, Add (a bias), BatchNormalization, Relu, Sigmoid, Tanh, LeakyRelu, Elu, \
                         Gelu (or its Erf decomposition), Softmax and LogSoftmax (last), Flatten and Reshape (at \
                         the input), Dropout and Identity";

/// The graph's input element type that is read: float32.
const FLOAT: i32 = super::proto::data_type::FLOAT;

/// A layer's last step, as the file has it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Core(Activation),
    LogSoftmax,
}

/// A layer being assembled: `weights` row-major `[outputs][inputs]`.
struct Layer {
    inputs: usize,
    outputs: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// gamma, beta, mean, var (epsilon is core's).
    batch_norm: Option<[Vec<f32>; 4]>,
    act: Option<Act>,
}

/// The walk's state.
struct Walk<'a> {
    external_dir: Option<&'a Path>,
    initializers: HashMap<&'a str, &'a TensorProto>,
    constants: HashMap<&'a str, TensorProto>,
    /// The tensor the chain has reached.
    cur: String,
    /// Features per sample at the input, once known.
    features: Option<usize>,
    /// Whether the input is `[batch, features]` (given, or after Flatten/Reshape).
    flat: bool,
    layers: Vec<Layer>,
    notes: Vec<String>,
    /// Every tensor the chain computes, and the one feeding the final softmax.
    produced: HashSet<String>,
    pre_softmax: Option<String>,
}

/// `node 'name' (Op)`, or `node #i (Op)` when it has no name.
fn describe(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("node #{index} ({})", node.op_type)
    } else {
        format!("node '{}' ({})", node.name, node.op_type)
    }
}

fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_int(node: &NodeProto, index: usize, name: &str, default: i64) -> Result<i64> {
    match attr(node, name) {
        None => Ok(default),
        Some(a) if a.r#type == attribute_type::INT || a.r#type == 0 => Ok(a.i),
        Some(_) => Err(Error::new(format!("{}: attribute {name} must be an int", describe(node, index)))),
    }
}

fn attr_float(node: &NodeProto, index: usize, name: &str, default: f32) -> Result<f32> {
    match attr(node, name) {
        None => Ok(default),
        Some(a) if a.r#type == attribute_type::FLOAT || a.r#type == 0 => Ok(a.f),
        Some(_) => Err(Error::new(format!("{}: attribute {name} must be a float", describe(node, index)))),
    }
}

/// The default-domain opset the model imports; older than [`MIN_OPSET`] is refused.
fn opset(m: &ModelProto) -> Result<i64> {
    let Some(v) =
        m.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version)
    else {
        return Err(Error::new("the model imports no default (ai.onnx) operator set; a model from torch.onnx.export or onnx.helper.make_model does"));
    };
    if v < MIN_OPSET {
        return Err(Error::new(format!(
            "the model uses ONNX opset {v}; opsets {MIN_OPSET} and later are read: re-export it with \
             torch.onnx.export(..., opset_version={MIN_OPSET}) or later"
        )));
    }
    Ok(v)
}

/// Reads `m` (the decoded file) into a model.
pub fn model(m: &ModelProto, external_dir: Option<&Path>) -> Result<FloatModel> {
    opset(m)?;
    let Some(g) = &m.graph else {
        return Err(Error::new("the file holds no graph (ModelProto.graph is absent)"));
    };
    let mut walk = Walk::new(g, external_dir)?;
    let nodes: Vec<(usize, &NodeProto)> =
        g.node.iter().enumerate().filter(|(_, n)| n.op_type != "Constant").collect();
    let mut k = 0;
    while k < nodes.len() {
        k += walk.step(&nodes[k..])?;
    }
    walk.check_outputs(g)?;
    let mut model = walk.finish()?;
    metadata(m, &mut model)?;
    Ok(model)
}

impl<'a> Walk<'a> {
    /// Indexes initializers and constants and finds the one graph input.
    fn new(g: &'a GraphProto, external_dir: Option<&'a Path>) -> Result<Self> {
        let mut initializers = HashMap::new();
        for t in &g.initializer {
            if initializers.insert(t.name.as_str(), t).is_some() {
                return Err(Error::new(format!("two initializers are named '{}'", t.name)));
            }
        }
        let mut constants = HashMap::new();
        for (i, n) in g.node.iter().enumerate().filter(|(_, n)| n.op_type == "Constant") {
            let [out] = n.output.as_slice() else {
                return Err(Error::new(format!("{} must have one output", describe(n, i))));
            };
            constants.insert(out.as_str(), constant(n, i)?);
        }
        let inputs: Vec<_> = g.input.iter().filter(|v| !initializers.contains_key(v.name.as_str())).collect();
        let [input] = inputs.as_slice() else {
            let names: Vec<_> = inputs.iter().map(|v| format!("'{}'", v.name)).collect();
            return Err(Error::new(format!(
                "the graph has {} inputs ({}); an MLP has exactly one, [batch, features]",
                inputs.len(),
                names.join(", ")
            )));
        };
        let tensor_type = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        let (mut features, mut flat) = (None, true);
        if let Some(t) = tensor_type {
            if t.elem_type != FLOAT {
                return Err(Error::new(format!(
                    "input '{}' has element type {}; only float32 inputs are read",
                    input.name, t.elem_type
                )));
            }
            if let Some(shape) = &t.shape {
                let dims: Vec<Option<i64>> =
                    shape.dim.iter().map(|d| d.dim_value.filter(|&v| v > 0)).collect();
                if dims.len() < 2 {
                    return Err(Error::new(format!(
                        "input '{}' has rank {}; an MLP takes [batch, features] (or [batch, ...] with a Flatten)",
                        input.name,
                        dims.len()
                    )));
                }
                flat = dims.len() == 2;
                features = dims[1..].iter().try_fold(1usize, |acc, d| {
                    d.and_then(|d| usize::try_from(d).ok()).and_then(|d| acc.checked_mul(d))
                });
            }
        }
        let cur = input.name.clone();
        let produced = HashSet::from([cur.clone()]);
        Ok(Walk {
            external_dir,
            initializers,
            constants,
            cur,
            features,
            flat,
            layers: Vec::new(),
            notes: Vec::new(),
            produced,
            pre_softmax: None,
        })
    }

    /// The constant tensor named `name` (an initializer or a Constant node's output).
    fn constant(&self, name: &str) -> Option<&TensorProto> {
        self.initializers.get(name).copied().or_else(|| self.constants.get(name))
    }

    /// The f32 constant `name`, input `what` of `node`.
    fn floats(&self, node: &str, what: &str, name: &str) -> Result<FloatTensor> {
        let t = self.constant(name).ok_or_else(|| {
            Error::new(format!(
                "{node}: its {what} '{name}' is not an initializer or Constant; weights must be constants"
            ))
        })?;
        tensor::floats(t, self.external_dir)
    }

    /// The scalar constant `name`, if it is one (a tensor of one element).
    fn scalar(&self, name: &str) -> Option<f32> {
        let t = self.constant(name)?;
        let v = tensor::floats(t, self.external_dir).ok()?;
        (v.values.len() == 1).then(|| v.values[0])
    }

    /// The open layer, for a step that continues it (`what` names the step for messages).
    fn open_layer(&mut self, at: &str, what: &str) -> Result<&mut Layer> {
        let Some(layer) = self.layers.last_mut() else {
            return Err(Error::new(format!(
                "{at} comes before any Gemm or MatMul; an MLP starts with a dense layer"
            )));
        };
        if layer.act.is_some() {
            return Err(Error::new(format!(
                "{at}: {what} after the layer's activation; each layer is Gemm/MatMul -> Add -> \
                 BatchNormalization -> activation"
            )));
        }
        Ok(layer)
    }

    /// Handles the node(s) at the head of `nodes`; returns how many it consumed.
    fn step(&mut self, nodes: &[(usize, &NodeProto)]) -> Result<usize> {
        let (index, node) = nodes[0];
        let at = describe(node, index);
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(Error::new(format!(
                "{at} is from operator domain '{}', which is not supported; supported (default domain): {SUPPORTED}",
                node.domain
            )));
        }
        if let Some(n) = self.gelu_decomposition(nodes)? {
            return Ok(n);
        }
        let data = node.input.first().map(String::as_str).unwrap_or("");
        // Add takes the chain's tensor as either operand.
        let data = if node.op_type == "Add" && node.input.get(1) == Some(&self.cur) {
            self.cur.clone()
        } else {
            data.to_string()
        };
        if data != self.cur {
            return Err(Error::new(format!(
                "{at} takes '{data}', not '{}' (the output of the node before it): only a chain of \
                 nodes (one input, each node feeding the next, as nn.Sequential exports) is read",
                self.cur
            )));
        }
        let Some(out) = node.output.first().filter(|o| !o.is_empty()) else {
            return Err(Error::new(format!("{at} has no output")));
        };
        match node.op_type.as_str() {
            "Flatten" | "Reshape" => self.flatten(node, &at)?,
            "Identity" => {}
            "Dropout" => {
                if let Some(mode) = node.input.get(2).filter(|s| !s.is_empty()) {
                    let training = self.constant(mode).and_then(tensor::bool_scalar);
                    if training != Some(false) {
                        return Err(Error::new(format!(
                            "{at}: training_mode '{mode}' must be a constant bool false (inference)"
                        )));
                    }
                }
                self.notes.push(format!("{at} dropped: inference only"));
            }
            "Gemm" => self.gemm(node, index, &at)?,
            "MatMul" => self.matmul(node, &at)?,
            "Add" => self.add(node, &at)?,
            "BatchNormalization" => self.batch_norm(node, index, &at)?,
            "Relu" => self.activate(&at, Act::Core(Activation::Relu))?,
            "Sigmoid" => self.activate(&at, Act::Core(Activation::Sigmoid))?,
            "Tanh" => self.activate(&at, Act::Core(Activation::Tanh))?,
            "LeakyRelu" => {
                let alpha = attr_float(node, index, "alpha", 0.01)?;
                self.activate(&at, Act::Core(Activation::LeakyRelu(alpha)))?
            }
            "Elu" => {
                let alpha = attr_float(node, index, "alpha", 1.0)?;
                self.activate(&at, Act::Core(Activation::Elu(alpha)))?
            }
            "Gelu" => {
                let approximate = attr(node, "approximate").map(|a| a.s.as_slice()).unwrap_or(b"none");
                if approximate != b"none" {
                    return Err(Error::new(format!(
                        "{at}: approximate='{}' is not supported; only the exact GELU (approximate='none', \
                         nn.GELU()'s default) is",
                        String::from_utf8_lossy(approximate)
                    )));
                }
                self.activate(&at, Act::Core(Activation::Gelu))?
            }
            "Softmax" | "LogSoftmax" => {
                let axis = attr_int(node, index, "axis", -1)?;
                if axis != -1 && axis != 1 {
                    return Err(Error::new(format!(
                        "{at}: axis {axis}; only the feature axis (1 or -1) is supported"
                    )));
                }
                self.pre_softmax = Some(self.cur.clone());
                let act =
                    if node.op_type == "Softmax" { Act::Core(Activation::Softmax) } else { Act::LogSoftmax };
                self.activate(&at, act)?
            }
            _ => {
                return Err(Error::new(format!(
                    "{at} is not supported: an MLP graph is made of {SUPPORTED}"
                )));
            }
        }
        self.cur = out.clone();
        self.produced.insert(out.clone());
        Ok(1)
    }

    /// Flatten (axis 1) or Reshape to `[batch, features]`, before the first layer.
    fn flatten(&mut self, node: &NodeProto, at: &str) -> Result<()> {
        if !self.layers.is_empty() {
            return Err(Error::new(format!(
                "{at}: a reshape between layers is not supported; only at the input"
            )));
        }
        if node.op_type == "Flatten" {
            let axis = attr_int(node, 0, "axis", 1)?;
            if axis != 1 {
                return Err(Error::new(format!("{at}: axis {axis}; only Flatten(axis=1), [batch, ...] -> [batch, features], is supported")));
            }
        } else {
            let shape_name = node.input.get(1).map(String::as_str).unwrap_or("");
            let shape = self
                .constant(shape_name)
                .ok_or_else(|| Error::new(format!("{at}: its shape '{shape_name}' must be a constant")))
                .and_then(|t| tensor::ints(t, self.external_dir))?;
            let allowzero = attr_int(node, 0, "allowzero", 0)?;
            let features = match shape.as_slice() {
                [-1, f] | [0, f] if *f > 0 && !(allowzero != 0 && shape[0] == 0) => usize::try_from(*f).ok(),
                _ => None,
            };
            let Some(f) = features else {
                return Err(Error::new(format!(
                    "{at}: shape {shape:?}; only a reshape to [batch, features] ([-1, n] or [0, n]) is supported"
                )));
            };
            if self.features.is_some_and(|n| n != f) {
                return Err(Error::new(format!(
                    "{at}: reshapes {} features per sample to {f}",
                    self.features.unwrap_or(0)
                )));
            }
            self.features = Some(f);
        }
        self.flat = true;
        Ok(())
    }

    /// Opens a layer `y = x W^T + b`: checks its width against what comes in.
    fn open(
        &mut self,
        at: &str,
        inputs: usize,
        outputs: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<()> {
        if !self.flat {
            return Err(Error::new(format!(
                "{at}: the input has more than two dimensions and no Flatten or Reshape before the first layer"
            )));
        }
        let fan_in = match self.layers.last() {
            Some(prev) => {
                if matches!(prev.act, Some(Act::Core(Activation::Softmax)) | Some(Act::LogSoftmax)) {
                    return Err(Error::new(format!(
                        "{at}: a layer after Softmax/LogSoftmax; softmax must be last"
                    )));
                }
                Some(prev.outputs)
            }
            None => self.features,
        };
        if let Some(n) = fan_in.filter(|&n| n != inputs) {
            return Err(Error::new(format!(
                "{at}: takes {inputs} features per sample but the tensor before it has {n}; the layers' shapes do not chain"
            )));
        }
        if outputs == 0 || inputs == 0 {
            return Err(Error::new(format!(
                "{at}: a layer of {inputs} inputs and {outputs} outputs is empty"
            )));
        }
        self.layers.push(Layer { inputs, outputs, weights, bias, batch_norm: None, act: None });
        Ok(())
    }

    /// `Gemm(A, B, C)`: `alpha * A B' + beta * C` with `B' = B^T` when transB.
    fn gemm(&mut self, node: &NodeProto, index: usize, at: &str) -> Result<()> {
        if attr_int(node, index, "transA", 0)? != 0 {
            return Err(Error::new(format!(
                "{at}: transA=1 is not supported (the activations must be A, untransposed)"
            )));
        }
        let trans_b = attr_int(node, index, "transB", 0)? != 0;
        let (alpha, beta) = (attr_float(node, index, "alpha", 1.0)?, attr_float(node, index, "beta", 1.0)?);
        let b_name = node.input.get(1).map(String::as_str).unwrap_or("");
        let b = self.floats(at, "weight B", b_name)?;
        let [rows, cols] = b.dims[..] else {
            return Err(Error::new(format!(
                "{at}: weight B '{b_name}' has shape {:?}; a 2-D matrix is expected",
                b.dims
            )));
        };
        empty_matrix(at, b_name, rows, cols)?;
        let (inputs, outputs) = if trans_b { (cols, rows) } else { (rows, cols) };
        let mut weights = if trans_b { b.values } else { transpose(&b.values, rows, cols) };
        weights.iter_mut().for_each(|w| *w *= alpha);
        let mut bias = vec![0.0; outputs];
        if let Some(c_name) = node.input.get(2).filter(|s| !s.is_empty()) {
            let c = self.floats(at, "bias C", c_name)?;
            let v = broadcast_row(&c, outputs).ok_or_else(|| {
                Error::new(format!(
                    "{at}: bias C '{c_name}' has shape {:?}; [{outputs}] or [1, {outputs}] is expected",
                    c.dims
                ))
            })?;
            bias.iter_mut().zip(v).for_each(|(b, c)| *b = beta * c);
        }
        self.open(at, inputs, outputs, weights, bias)
    }

    /// `MatMul(A, B)` with B `[inputs, outputs]` (torch's Linear without Gemm).
    fn matmul(&mut self, node: &NodeProto, at: &str) -> Result<()> {
        let b_name = node.input.get(1).map(String::as_str).unwrap_or("");
        let b = self.floats(at, "weight B", b_name)?;
        let [rows, cols] = b.dims[..] else {
            return Err(Error::new(format!(
                "{at}: weight B '{b_name}' has shape {:?}; a 2-D matrix is expected",
                b.dims
            )));
        };
        empty_matrix(at, b_name, rows, cols)?;
        let weights = transpose(&b.values, rows, cols);
        self.open(at, rows, cols, weights, vec![0.0; cols])
    }

    /// `Add(y, c)`: a bias on the open layer.
    fn add(&mut self, node: &NodeProto, at: &str) -> Result<()> {
        let other = node.input.iter().find(|n| **n != self.cur).cloned().unwrap_or_default();
        let c = self.floats(at, "addend", &other)?;
        let layer = self.open_layer(at, "Add")?;
        if layer.batch_norm.is_some() {
            return Err(Error::new(format!("{at}: Add after BatchNormalization is not supported")));
        }
        let v = broadcast_row(&c, layer.outputs).ok_or_else(|| {
            Error::new(format!(
                "{at}: addend '{other}' has shape {:?}; a bias [{}] is expected",
                c.dims, layer.outputs
            ))
        })?;
        layer.bias.iter_mut().zip(v).for_each(|(b, c)| *b += c);
        Ok(())
    }

    /// `BatchNormalization(y, scale, B, mean, var)` in inference mode. With core's epsilon it
    /// stays batch norm; with another it is folded into the layer (in f64, rounded once).
    fn batch_norm(&mut self, node: &NodeProto, index: usize, at: &str) -> Result<()> {
        if attr_int(node, index, "training_mode", 0)? != 0 {
            return Err(Error::new(format!("{at}: training_mode=1; only inference-mode batch norm is read")));
        }
        let eps = attr_float(node, index, "epsilon", 1e-5)?;
        let mut stats = Vec::with_capacity(4);
        for (k, what) in ["scale", "B", "input_mean", "input_var"].iter().enumerate() {
            let name = node.input.get(k + 1).map(String::as_str).unwrap_or("");
            stats.push((self.floats(at, what, name)?, *what));
        }
        let layer = self.open_layer(at, "BatchNormalization")?;
        if layer.batch_norm.is_some() {
            return Err(Error::new(format!(
                "{at}: a second BatchNormalization in one layer is not supported"
            )));
        }
        for (t, what) in &stats {
            if t.values.len() != layer.outputs || t.dims.len() != 1 {
                return Err(Error::new(format!(
                    "{at}: {what} has shape {:?}; [{}] is expected (one per feature)",
                    t.dims, layer.outputs
                )));
            }
        }
        let [g, b, m, v] = [0, 1, 2, 3].map(|k| stats[k].0.values.clone());
        if v.iter().any(|&x| !(x >= 0.0 && x.is_finite())) {
            return Err(Error::new(format!("{at}: input_var holds a negative or non-finite variance")));
        }
        if eps == BN_EPS {
            layer.batch_norm = Some([g, b, m, v]);
            return Ok(());
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::new(format!("{at}: epsilon {eps} is not a finite non-negative number")));
        }
        let n_in = layer.inputs;
        for o in 0..layer.outputs {
            let s = f64::from(g[o]) / (f64::from(v[o]) + f64::from(eps)).sqrt();
            for w in &mut layer.weights[o * n_in..(o + 1) * n_in] {
                *w = (f64::from(*w) * s) as f32;
            }
            layer.bias[o] = (s * (f64::from(layer.bias[o]) - f64::from(m[o])) + f64::from(b[o])) as f32;
        }
        self.notes.push(format!(
            "{at}: epsilon {eps} is not core's {BN_EPS}, so the batch norm was folded into the layer's weights and bias"
        ));
        Ok(())
    }

    /// The open layer's activation.
    fn activate(&mut self, at: &str, act: Act) -> Result<()> {
        if let Act::Core(Activation::LeakyRelu(alpha) | Activation::Elu(alpha)) = act {
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(Error::new(format!("{at}: alpha {alpha}; a finite alpha >= 0 is supported")));
            }
        }
        let layer = self.open_layer(at, "a second activation")?;
        layer.act = Some(act);
        Ok(())
    }

    /// The exact GELU as the TorchScript exporter writes it: `x * (erf(x / √2) + 1) * 0.5`
    /// (Div by √2 or Mul by 1/√2, then Erf, Add 1, Mul by x, Mul by 0.5; operands in either
    /// order). Returns the nodes consumed, or `None` when `nodes` does not start with it.
    fn gelu_decomposition(&mut self, nodes: &[(usize, &NodeProto)]) -> Result<Option<usize>> {
        let [(i0, n0), (_, n1), (_, n2), (_, n3), (_, n4), ..] = nodes else { return Ok(None) };
        let x = self.cur.clone();
        let ops: Vec<&str> = [n0, n1, n2, n3, n4].iter().map(|n| n.op_type.as_str()).collect();
        if ops != ["Div", "Erf", "Add", "Mul", "Mul"] && ops != ["Mul", "Erf", "Add", "Mul", "Mul"] {
            return Ok(None);
        }
        let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() <= 1e-6 * want.abs());
        let other = |n: &NodeProto, a: &str| -> Option<String> {
            match n.input.as_slice() {
                [p, q] if p == a => Some(q.clone()),
                [p, q] if q == a => Some(p.clone()),
                _ => None,
            }
        };
        let out = |n: &NodeProto| n.output.first().cloned().unwrap_or_default();
        let scaled = match n0.op_type.as_str() {
            "Div" => {
                n0.input.first() == Some(&x)
                    && near(n0.input.get(1).and_then(|c| self.scalar(c)), std::f32::consts::SQRT_2)
            }
            _ => near(other(n0, &x).and_then(|c| self.scalar(&c)), std::f32::consts::FRAC_1_SQRT_2),
        };
        let matches = scaled
            && n1.input.first() == Some(&out(n0))
            && near(other(n2, &out(n1)).and_then(|c| self.scalar(&c)), 1.0)
            && other(n3, &out(n2)).as_ref() == Some(&x)
            && near(other(n4, &out(n3)).and_then(|c| self.scalar(&c)), 0.5);
        if !matches {
            return Ok(None);
        }
        self.activate(&describe(n0, *i0), Act::Core(Activation::Gelu))?;
        for n in [n0, n1, n2, n3, n4] {
            self.produced.insert(out(n));
        }
        self.cur = out(n4);
        Ok(Some(5))
    }

    /// Every graph output must be computed by the chain, the chain's end among them.
    fn check_outputs(&mut self, g: &GraphProto) -> Result<()> {
        if !g.output.iter().any(|o| o.name == self.cur) {
            return Err(Error::new(format!(
                "the chain of nodes ends in '{}', which is not a graph output; the graph must end in its MLP's output",
                self.cur
            )));
        }
        for o in g.output.iter().filter(|o| o.name != self.cur) {
            if !self.produced.contains(&o.name) {
                return Err(Error::new(format!(
                    "graph output '{}' is not computed by the chain of layers",
                    o.name
                )));
            }
            if self.pre_softmax.as_deref() != Some(o.name.as_str()) {
                self.notes.push(format!("graph output '{}' (an intermediate tensor) ignored", o.name));
            }
        }
        Ok(())
    }

    /// Core's topology and flat buffers from the layers.
    fn finish(mut self) -> Result<FloatModel> {
        if self.layers.is_empty() {
            return Err(Error::new("the graph has no Gemm or MatMul: no dense layer to read"));
        }
        let last = self.layers.len() - 1;
        let mut specs = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let activation = match (l.act, i == last) {
                (Some(Act::Core(a)), _) => a,
                (None, false) => Activation::Identity,
                (None, true) => {
                    self.notes.push(
                        "the graph ends in logits (no Softmax): imported with a Softmax output layer; argmax is unchanged"
                            .into(),
                    );
                    Activation::Softmax
                }
                (Some(Act::LogSoftmax), true) => {
                    self.notes.push(
                        "LogSoftmax output imported as Softmax: outputs are probabilities (exp of the file's); argmax is unchanged"
                            .into(),
                    );
                    Activation::Softmax
                }
                (Some(Act::LogSoftmax), false) => {
                    return Err(Error::new("LogSoftmax before the last layer; it must be last"));
                }
            };
            let spec = LayerSpec::dense(l.outputs, activation);
            specs.push(if l.batch_norm.is_some() { spec.with_batch_norm() } else { spec });
        }
        let input = self.layers[0].inputs;
        let topology = Topology::new(input, &specs)
            .map_err(|e| Error::new(format!("the graph's layers do not make a network core runs: {e}")))?;
        let mut params = Vec::with_capacity(topology.param_len());
        let mut running = Vec::with_capacity(topology.running_len());
        for l in &self.layers {
            params.extend_from_slice(&l.weights);
            params.extend_from_slice(&l.bias);
            if let Some([g, b, m, v]) = &l.batch_norm {
                params.extend_from_slice(g);
                params.extend_from_slice(b);
                running.extend_from_slice(m);
                running.extend_from_slice(v);
            }
        }
        Ok(FloatModel { topology, params, running, input: None, classes: Vec::new(), notes: self.notes })
    }
}

/// A Constant node's tensor (`value`, or `value_float(s)` / `value_int(s)`).
fn constant(n: &NodeProto, index: usize) -> Result<TensorProto> {
    use super::proto::data_type;
    let Some(a) = n.attribute.first() else {
        return Err(Error::new(format!("{} has no value", describe(n, index))));
    };
    let t = match (a.name.as_str(), &a.t) {
        ("value", Some(t)) => t.clone(),
        ("value_float", _) => {
            TensorProto { data_type: data_type::FLOAT, float_data: vec![a.f], ..Default::default() }
        }
        ("value_floats", _) => TensorProto {
            dims: vec![a.floats.len() as i64],
            data_type: data_type::FLOAT,
            float_data: a.floats.clone(),
            ..Default::default()
        },
        ("value_int", _) => {
            TensorProto { data_type: data_type::INT64, int64_data: vec![a.i], ..Default::default() }
        }
        ("value_ints", _) => TensorProto {
            dims: vec![a.ints.len() as i64],
            data_type: data_type::INT64,
            int64_data: a.ints.clone(),
            ..Default::default()
        },
        (other, _) => {
            return Err(Error::new(format!(
            "{}: a constant given as '{other}' is not supported (value, value_float(s), value_int(s) are)",
            describe(n, index)
        )))
        }
    };
    Ok(TensorProto { name: n.output.first().cloned().unwrap_or_default(), ..t })
}

/// Refuses a weight matrix with no elements: its other dimension is then not backed by any
/// data, and the bias sized by it must not be allocated.
fn empty_matrix(at: &str, name: &str, rows: usize, cols: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(Error::new(format!(
            "{at}: weight B '{name}' has shape [{rows}, {cols}]; a layer needs both > 0"
        )));
    }
    Ok(())
}

/// `[rows][cols]` row-major to `[cols][rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| m[r * cols + c])).collect()
}

/// The values of a bias-like tensor `[n]` or `[1, n]`, or a scalar broadcast to `n`.
fn broadcast_row(t: &FloatTensor, n: usize) -> Option<Vec<f32>> {
    match t.dims[..] {
        [m] | [1, m] if m == n => Some(t.values.clone()),
        [] | [1] | [1, 1] if t.values.len() == 1 => Some(vec![t.values[0]; n]),
        _ => None,
    }
}

/// `mlp.input_scale`, `mlp.input_offset` and `mlp.classes` from the model's metadata.
fn metadata(m: &ModelProto, model: &mut FloatModel) -> Result<()> {
    let get = |key: &str| m.metadata_props.iter().find(|p| p.key == key).map(|p| p.value.as_str());
    let floats = |key: &str, want: usize| -> Result<Option<Vec<f32>>> {
        let Some(v) = get(key) else { return Ok(None) };
        let bad = || Error::new(format!("metadata {key} must be a JSON array of {want} finite numbers"));
        let values: Vec<f32> = serde_json::from_str(v).map_err(|_| bad())?;
        if values.len() != want || values.iter().any(|x| !x.is_finite()) {
            return Err(bad());
        }
        Ok(Some(values))
    };
    let n = model.topology.input();
    match (floats(META_INPUT_SCALE, n)?, floats(META_INPUT_OFFSET, n)?) {
        (Some(scale), Some(offset)) => model.input = Some(InputNormalization { scale, offset }),
        (None, None) => {}
        _ => {
            return Err(Error::new(format!(
                "metadata has only one of {META_INPUT_SCALE} and {META_INPUT_OFFSET}; both or neither"
            )))
        }
    }
    if let Some(v) = get(META_CLASSES) {
        let classes: Vec<String> = serde_json::from_str(v)
            .map_err(|_| Error::new(format!("metadata {META_CLASSES} must be a JSON array of strings")))?;
        if classes.len() != model.topology.output() {
            return Err(Error::new(format!(
                "metadata {META_CLASSES} names {} classes but the model has {} outputs",
                classes.len(),
                model.topology.output()
            )));
        }
        model.classes = classes;
    }
    Ok(())
}
