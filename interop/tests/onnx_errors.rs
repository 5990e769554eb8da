//! Bad ONNX files give clear errors, never panics: malformed and truncated bytes, hostile
//! tensor sizes, unsupported ops, graphs that are not one chain, layers whose shapes do not
//! chain, external data that leaves the model's folder; and maxout is refused on export.

use interop::onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto,
};
use interop::onnx::{read, write};
use interop::FloatModel;
use mlp::{Activation, LayerSpec, Topology};
use prost::Message;

fn tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| {
            if d < 0 {
                Dimension { dim_value: None, dim_param: Some("N".into()) }
            } else {
                Dimension { dim_value: Some(d), dim_param: None }
            }
        })
        .collect();
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

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i, r#type: attribute_type::INT, ..Default::default() }
}

/// A valid 3 -> 2 (relu) -> 2 (softmax) graph: x -> Gemm -> Relu -> Gemm -> Softmax -> y.
fn valid() -> ModelProto {
    let mut g1 = node("Gemm", "fc1", &["x", "w1", "b1"], "h");
    g1.attribute.push(int_attr("transB", 1));
    let mut g2 = node("Gemm", "fc2", &["r", "w2", "b2"], "z");
    g2.attribute.push(int_attr("transB", 1));
    ModelProto {
        ir_version: 8,
        graph: Some(GraphProto {
            node: vec![g1, node("Relu", "relu", &["h"], "r"), g2, node("Softmax", "softmax", &["z"], "y")],
            name: "g".into(),
            initializer: vec![
                tensor("w1", &[2, 3], &[0.1, 0.2, 0.3, -0.4, 0.5, -0.6]),
                tensor("b1", &[2], &[0.0, 0.1]),
                tensor("w2", &[2, 2], &[1.0, -1.0, 0.5, 0.25]),
                tensor("b2", &[2], &[0.2, -0.2]),
            ],
            input: vec![value("x", &[-1, 3])],
            output: vec![value("y", &[-1, 2])],
        }),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        ..Default::default()
    }
}

fn err(m: &ModelProto) -> String {
    match read(&m.encode_to_vec(), None) {
        Ok(model) => panic!("read a bad model: {model:?}"),
        Err(e) => e.to_string(),
    }
}

fn with_initializer(name: &str, t: TensorProto) -> ModelProto {
    let mut m = valid();
    let g = m.graph.as_mut().unwrap();
    let i = g.initializer.iter().position(|t| t.name == name).unwrap();
    g.initializer[i] = TensorProto { name: name.into(), ..t };
    m
}

#[test]
fn the_valid_graph_reads() {
    let m = read(&valid().encode_to_vec(), None).unwrap();
    assert_eq!(m.topology.input(), 3);
    assert_eq!(m.params, [0.1, 0.2, 0.3, -0.4, 0.5, -0.6, 0.0, 0.1, 1.0, -1.0, 0.5, 0.25, 0.2, -0.2]);
    assert!(m.notes.is_empty(), "{:?}", m.notes);
}

#[test]
fn malformed_bytes_are_refused() {
    for bytes in [&b"not an onnx file at all"[..], &[0x08, 0xff], &[0x3a, 0x05, 0x0a], &[]] {
        let e = read(bytes, None).unwrap_err().to_string();
        assert!(e.contains("ONNX") || e.contains("graph") || e.contains("operator set"), "{e}");
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = valid().encode_to_vec();
    for n in 0..bytes.len() {
        assert!(read(&bytes[..n], None).is_err(), "prefix of {n} of {} bytes read", bytes.len());
    }
}

#[test]
fn hostile_tensor_sizes_are_refused_before_allocating() {
    let huge =
        with_initializer("w1", TensorProto { dims: vec![1 << 40, 1 << 40], ..tensor("", &[], &[1.0; 6]) });
    assert!(err(&huge).contains("overflows") || err(&huge).contains("holds 24 bytes"), "{}", err(&huge));
    let big = with_initializer("w1", TensorProto { dims: vec![1 << 30, 3], ..tensor("", &[], &[1.0; 6]) });
    assert!(err(&big).contains("holds 24 bytes of raw data"), "{}", err(&big));
    let negative = with_initializer("w1", tensor("", &[-2, 3], &[1.0; 6]));
    assert!(err(&negative).contains("negative dimension (-2)"), "{}", err(&negative));
    let overflow = with_initializer("w1", tensor("", &[i64::MAX, 4], &[1.0; 6]));
    assert!(err(&overflow).contains("overflows"), "{}", err(&overflow));
    let short = with_initializer("w1", tensor("", &[2, 3], &[1.0; 5]));
    assert!(err(&short).contains("(24 bytes) but holds 20 bytes"), "{}", err(&short));
    // No data, so the other dimension is backed by nothing: no bias of 2^40 floats.
    let empty = with_initializer("w1", tensor("", &[1 << 40, 0], &[]));
    assert!(err(&empty).contains("has shape [1099511627776, 0]; a layer needs both > 0"), "{}", err(&empty));
    let long = with_initializer("w1", tensor("", &[2, 3], &[1.0; 7]));
    assert!(err(&long).contains("(24 bytes) but holds 28 bytes"), "{}", err(&long));
    let typed = with_initializer(
        "w1",
        TensorProto {
            dims: vec![2, 3],
            data_type: data_type::FLOAT,
            float_data: vec![1.0; 4],
            ..Default::default()
        },
    );
    assert!(err(&typed).contains("(6 values) but holds 4 values"), "{}", err(&typed));
    let int8 = with_initializer("w1", TensorProto { data_type: 3, ..tensor("", &[2, 3], &[]) });
    assert!(err(&int8).contains("data type int8 (3)"), "{}", err(&int8));
}

#[test]
fn unsupported_ops_are_named_with_their_node() {
    let mut m = valid();
    m.graph.as_mut().unwrap().node[1] = node("Conv", "conv_7", &["h"], "r");
    let e = err(&m);
    assert!(e.contains("node 'conv_7' (Conv) is not supported") && e.contains("Gemm, MatMul"), "{e}");
    let mut m = valid();
    m.graph.as_mut().unwrap().node[1].domain = "com.microsoft".into();
    assert!(err(&m).contains("operator domain 'com.microsoft'"), "{}", err(&m));
    let mut m = valid();
    m.graph.as_mut().unwrap().node[1] = NodeProto {
        attribute: vec![AttributeProto {
            name: "approximate".into(),
            s: b"tanh".to_vec(),
            r#type: attribute_type::STRING,
            ..Default::default()
        }],
        ..node("Gelu", "gelu", &["h"], "r")
    };
    assert!(err(&m).contains("approximate='tanh' is not supported"), "{}", err(&m));
    for (training, refused) in [(0u8, false), (1, true)] {
        let mut m = valid();
        let g = m.graph.as_mut().unwrap();
        g.node.insert(2, node("Dropout", "drop", &["r", "", "training"], "d"));
        g.node[3].input[0] = "d".into();
        g.initializer.push(TensorProto {
            data_type: 9,
            name: "training".into(),
            raw_data: vec![training],
            ..Default::default()
        });
        let read = read(&m.encode_to_vec(), None);
        assert_eq!(read.is_err(), refused, "{read:?}");
        if refused {
            assert!(
                err(&m).contains("training_mode 'training' must be a constant bool false"),
                "{}",
                err(&m)
            );
        }
    }
}

#[test]
fn graphs_that_are_not_one_chain_are_refused() {
    let mut m = valid();
    m.graph.as_mut().unwrap().input.push(value("x2", &[-1, 3]));
    let e = err(&m);
    assert!(e.contains("2 inputs ('x', 'x2')"), "{e}");
    let mut m = valid();
    m.graph.as_mut().unwrap().node[2].input[0] = "h".into();
    assert!(err(&m).contains("node 'fc2' (Gemm) takes 'h', not 'r'"), "{}", err(&m));
    let mut m = valid();
    m.graph.as_mut().unwrap().output[0].name = "z".into();
    assert!(err(&m).contains("ends in 'y', which is not a graph output"), "{}", err(&m));
    let mut m = valid();
    m.opset_import[0].version = 12;
    assert!(err(&m).contains("opset 12"), "{}", err(&m));
}

#[test]
fn steps_out_of_a_layer_s_order_are_refused() {
    // Softmax, then another layer.
    let mut m = valid();
    let g = m.graph.as_mut().unwrap();
    g.node[1] = node("Softmax", "early_softmax", &["h"], "r");
    assert!(err(&m).contains("a layer after Softmax/LogSoftmax; softmax must be last"), "{}", err(&m));
    // Two activations in one layer.
    let mut m = valid();
    let g = m.graph.as_mut().unwrap();
    g.node.insert(2, node("Tanh", "tanh", &["r"], "t"));
    g.node[3].input[0] = "t".into();
    assert!(
        err(&m).contains("node 'tanh' (Tanh): a second activation after the layer's activation"),
        "{}",
        err(&m)
    );
    // The activations as Gemm's B operand.
    let mut m = valid();
    m.graph.as_mut().unwrap().node[0].attribute.push(int_attr("transA", 1));
    assert!(err(&m).contains("transA=1 is not supported"), "{}", err(&m));
}

#[test]
fn layers_whose_shapes_do_not_chain_are_refused() {
    let m = with_initializer("w2", tensor("", &[2, 3], &[1.0; 6]));
    assert!(err(&m).contains("takes 3 features per sample but the tensor before it has 2"), "{}", err(&m));
    let mut m = valid();
    m.graph.as_mut().unwrap().input[0] = value("x", &[-1, 4]);
    assert!(err(&m).contains("takes 3 features per sample but the tensor before it has 4"), "{}", err(&m));
    let m = with_initializer("b1", tensor("", &[3], &[1.0; 3]));
    assert!(err(&m).contains("bias C 'b1' has shape [3]"), "{}", err(&m));
    let mut m = valid();
    m.graph.as_mut().unwrap().node.swap(2, 3);
    assert!(err(&m).contains("takes 'r'") || err(&m).contains("takes 'z'"), "{}", err(&m));
}

/// A fresh, empty folder under the system's temporary one.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("interop-onnx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn external_data_is_read_beside_the_model_only() {
    let external = |location: &str, offset: &str| {
        with_initializer(
            "w1",
            TensorProto {
                dims: vec![2, 3],
                data_type: data_type::FLOAT,
                data_location: 1,
                external_data: [("location", location), ("offset", offset), ("length", "24")]
                    .map(|(k, v)| StringStringEntryProto { key: k.into(), value: v.into() })
                    .to_vec(),
                ..Default::default()
            },
        )
    };
    let dir = temp_dir("external");
    let weights: Vec<u8> =
        [9.0f32, 0.1, 0.2, 0.3, -0.4, 0.5, -0.6].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("weights.bin"), &weights).unwrap();
    let m = read(&external("weights.bin", "4").encode_to_vec(), Some(&dir)).unwrap();
    assert_eq!(m.params[..6], [0.1, 0.2, 0.3, -0.4, 0.5, -0.6]);
    let e = read(&external("weights.bin", "8").encode_to_vec(), Some(&dir)).unwrap_err().to_string();
    assert!(e.contains("needs 24 bytes at offset 8 of 'weights.bin', which has 28 bytes"), "{e}");
    for escape in ["../weights.bin", "/etc/passwd", "sub/../../weights.bin"] {
        let e = read(&external(escape, "0").encode_to_vec(), Some(&dir)).unwrap_err().to_string();
        assert!(e.contains("leaves the model's folder"), "{escape}: {e}");
    }
    let e = read(&external("weights.bin", "4").encode_to_vec(), None).unwrap_err().to_string();
    assert!(e.contains("external data file, and no model folder"), "{e}");
    let e = read(&external("missing.bin", "0").encode_to_vec(), Some(&dir)).unwrap_err().to_string();
    assert!(e.contains("cannot read external data 'missing.bin'"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn maxout_is_refused_on_export() {
    let topology = Topology::new(
        3,
        &[LayerSpec::dense(2, Activation::Maxout(2)), LayerSpec::dense(2, Activation::Softmax)],
    )
    .unwrap();
    let model = FloatModel {
        params: vec![0.0; topology.param_len()],
        topology,
        running: Vec::new(),
        input: None,
        classes: Vec::new(),
        notes: Vec::new(),
    };
    let e = write(&model).unwrap_err().to_string();
    assert!(e.contains("layer 0 is maxout (2 pieces)"), "{e}");
}
