//! A model as an ONNX graph onnxruntime runs unchanged: input "input" `[batch, n]` float,
//! per layer a Gemm (transB=1: core's row-major `[outputs][inputs]` weights as they are),
//! BatchNormalization with core's epsilon where the layer has batch norm (kept, not folded,
//! so the file holds the same numbers as the model and imports back bit for bit), and the
//! activation node. Outputs: "logits" (the last layer before its activation) and
//! "probabilities" (after Softmax; "outputs" for another output activation).

use mlp::batchnorm::BN_EPS;
use mlp::Activation;

use super::proto::{
    attribute_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto,
};
use super::{META_CLASSES, META_INPUT_OFFSET, META_INPUT_SCALE, WRITTEN_IR_VERSION, WRITTEN_OPSET};
use crate::{Error, FloatModel, Result};

/// The model as ONNX protobuf messages.
pub fn model(model: &FloatModel) -> Result<ModelProto> {
    let t = &model.topology;
    if model.params.len() != t.param_len() || model.running.len() != t.running_len() {
        return Err(Error::new(format!(
            "the model holds {} parameters and {} running statistics; its topology needs {} and {}",
            model.params.len(),
            model.running.len(),
            t.param_len(),
            t.running_len()
        )));
    }
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut cur = "input".to_string();
    let last = t.layers().len() - 1;
    let mut outputs = Vec::new();
    for (i, layer) in t.layers().iter().enumerate() {
        if let Activation::Maxout(k) = layer.activation {
            return Err(Error::new(format!(
                "layer {i} is maxout ({k} pieces), which ONNX export does not write (no single ONNX op; \
                 ReLU, sigmoid, tanh, leaky ReLU, ELU, GELU and identity layers are written)"
            )));
        }
        let (Some(r), fan_in) = (t.param_ranges(i), t.fan_in(i)) else { break };
        let name = |what: &str| format!("layers.{i}.{what}");
        initializers.push(tensor(&name("weight"), &[layer.outputs, fan_in], &model.params[r.weights]));
        initializers.push(tensor(&name("bias"), &[layer.outputs], &model.params[r.bias]));
        let pre = if i == last { "logits".to_string() } else { name("pre") };
        let affine = if layer.batch_norm { name("affine") } else { pre.clone() };
        nodes.push(node(
            "Gemm",
            &name("gemm"),
            &[&cur, &name("weight"), &name("bias")],
            &affine,
            vec![int("transB", 1)],
        ));
        if let (Some((g, b)), Some((m, v))) = (r.batch_norm, t.running_ranges(i)) {
            for (what, values) in [
                ("bn.scale", &model.params[g]),
                ("bn.bias", &model.params[b]),
                ("bn.mean", &model.running[m]),
                ("bn.var", &model.running[v]),
            ] {
                initializers.push(tensor(&name(what), &[layer.outputs], values));
            }
            let inputs =
                [affine.as_str(), &name("bn.scale"), &name("bn.bias"), &name("bn.mean"), &name("bn.var")];
            nodes.push(node(
                "BatchNormalization",
                &name("batch_norm"),
                &inputs,
                &pre,
                vec![float("epsilon", BN_EPS)],
            ));
        }
        let out = match (i == last, layer.activation) {
            (true, Activation::Softmax) => "probabilities".to_string(),
            (true, _) => "outputs".to_string(),
            (false, _) => name("out"),
        };
        let act = match layer.activation {
            Activation::Identity => None,
            Activation::Relu => Some(("Relu", vec![])),
            Activation::Sigmoid => Some(("Sigmoid", vec![])),
            Activation::Tanh => Some(("Tanh", vec![])),
            Activation::LeakyRelu(alpha) => Some(("LeakyRelu", vec![float("alpha", alpha)])),
            Activation::Elu(alpha) => Some(("Elu", vec![float("alpha", alpha)])),
            Activation::Gelu => Some(("Gelu", vec![string("approximate", "none")])),
            Activation::Softmax => Some(("Softmax", vec![int("axis", -1)])),
            Activation::Maxout(_) => None,
        };
        if i == last {
            outputs.push(value_info("logits", layer.outputs));
        }
        cur = match act {
            Some((op, attributes)) => {
                nodes.push(node(op, &name(&op.to_lowercase()), &[&pre], &out, attributes));
                if i == last {
                    outputs.push(value_info(&out, layer.outputs));
                }
                out
            }
            None => pre,
        };
    }
    let mut metadata = Vec::new();
    if let Some(input) = &model.input {
        let json = |v: &[f32]| {
            serde_json::to_string(v).map_err(|e| Error::new(format!("cannot write metadata: {e}")))
        };
        metadata.push(entry(META_INPUT_SCALE, json(&input.scale)?));
        metadata.push(entry(META_INPUT_OFFSET, json(&input.offset)?));
    }
    if !model.classes.is_empty() {
        let json = serde_json::to_string(&model.classes)
            .map_err(|e| Error::new(format!("cannot write metadata: {e}")))?;
        metadata.push(entry(META_CLASSES, json));
    }
    let doc = format!(
        "An MLP exported by mlp. Feed \"input\" [batch, {}] float32, each raw sample x normalized as \
         x * {META_INPUT_SCALE} + {META_INPUT_OFFSET} (metadata, per feature, when present).",
        t.input()
    );
    Ok(ModelProto {
        ir_version: WRITTEN_IR_VERSION,
        producer_name: "mlp".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc,
        graph: Some(GraphProto {
            node: nodes,
            name: "mlp".into(),
            initializer: initializers,
            input: vec![value_info("input", t.input())],
            output: outputs,
        }),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: WRITTEN_OPSET }],
        metadata_props: metadata,
    })
}

fn entry(key: &str, value: String) -> StringStringEntryProto {
    StringStringEntryProto { key: key.into(), value }
}

/// A float tensor `[batch, width]` with a symbolic batch dimension.
fn value_info(name: &str, width: usize) -> ValueInfoProto {
    let dim = vec![
        Dimension { dim_value: None, dim_param: Some("batch".into()) },
        Dimension { dim_value: Some(width as i64), dim_param: None },
    ];
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// A float initializer, little-endian raw data.
fn tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        attribute,
        domain: String::new(),
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i, r#type: attribute_type::INT, ..Default::default() }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f, r#type: attribute_type::FLOAT, ..Default::default() }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: s.as_bytes().to_vec(),
        r#type: attribute_type::STRING,
        ..Default::default()
    }
}
