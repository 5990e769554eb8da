//! ONNX files written by torch.onnx.export (both exporters; scripts/interop/make_torch_fixtures.py
//! made them and recorded torch's own eval-mode outputs beside each), and by onnx.helper
//! (fixtures/onnx/helper: scripts/interop/onnx_helper_graphs.py, with onnxruntime's outputs):
//! they import, and core's forward pass reproduces the producer's outputs within 1e-5 of each
//! row's largest magnitude.

use std::path::{Path, PathBuf};

use mlp::{Activation, LayerSpec, Model, Portable, Topology};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

/// What torch's recorded outputs are.
#[derive(Debug, PartialEq)]
enum Recorded {
    Probabilities,
    LogProbabilities,
    Logits,
}

/// Imports fixture `name` and compares core's outputs with torch's; returns the model's notes.
fn check(name: &str) -> Vec<String> {
    check_in(&fixtures(), name)
}

fn check_in(dir: &Path, name: &str) -> Vec<String> {
    let dir = dir.to_path_buf();
    let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let model = interop::onnx::read(&bytes, Some(&dir)).unwrap_or_else(|e| panic!("{name}: {e}"));
    // torch fixtures list their ops; onnx.helper ones say what their output is.
    let last = match expected.get("ops") {
        Some(ops) => ops.as_array().unwrap().last().unwrap().as_str().unwrap(),
        None => expected["kind"].as_str().unwrap(),
    };
    let recorded = match last {
        "Softmax" | "probabilities" => Recorded::Probabilities,
        "LogSoftmax" | "log_probabilities" => Recorded::LogProbabilities,
        _ => Recorded::Logits,
    };
    // Logits: run the same layers with an identity output layer.
    let topology = if recorded == Recorded::Logits {
        let mut layers: Vec<LayerSpec> = model.topology.layers().to_vec();
        layers.last_mut().unwrap().activation = Activation::Identity;
        Topology::new(model.topology.input(), &layers).unwrap()
    } else {
        model.topology.clone()
    };
    assert_eq!(model.topology.output_layer().activation, Activation::Softmax, "{name}");
    let inputs: Vec<Vec<f32>> = serde_json::from_value(expected["inputs"].clone()).unwrap();
    let outputs: Vec<Vec<f32>> = serde_json::from_value(expected["outputs"].clone()).unwrap();
    let net = Model::new(&topology, &model.params, &model.running).unwrap();
    let mut ws = vec![0.0; topology.infer_workspace_len(1)];
    for (x, want) in inputs.iter().zip(&outputs) {
        let got = net.forward(&Portable, x, 1, &mut ws).unwrap().to_vec();
        let got: Vec<f32> = match recorded {
            Recorded::LogProbabilities => got.iter().map(|p| p.ln()).collect(),
            _ => got,
        };
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-5 * scale, "{name}: core {got:?}, torch {want:?}");
        }
    }
    model.notes
}

#[test]
fn relu_softmax_with_flatten_and_dropout_both_exporters() {
    for name in ["relu_softmax_dynamo", "relu_softmax_legacy"] {
        // Both exporters leave eval-mode Dropout out of the graph; Flatten (legacy) and
        // Reshape (dynamo) lead to the 9-feature input.
        assert!(check(name).is_empty(), "{name}");
        let model =
            interop::onnx::read(&std::fs::read(fixtures().join(format!("{name}.onnx"))).unwrap(), None)
                .unwrap();
        assert_eq!((model.topology.input(), model.topology.layers().len()), (9, 3), "{name}");
    }
}

#[test]
fn every_activation_with_logits_both_exporters() {
    for name in ["activations_logits_dynamo", "activations_logits_legacy"] {
        let notes = check(name);
        assert!(notes.iter().any(|n| n.contains("ends in logits")), "{name}: {notes:?}");
    }
    let bytes = std::fs::read(fixtures().join("activations_logits_legacy.onnx")).unwrap();
    let model = interop::onnx::read(&bytes, None).unwrap();
    let acts: Vec<_> = model.topology.layers().iter().map(|l| l.activation).collect();
    assert_eq!(
        acts,
        [
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::LeakyRelu(0.03),
            Activation::Elu(0.7),
            Activation::Gelu,
            Activation::Softmax
        ]
    );
    assert_eq!(model.topology.input(), 6);
}

#[test]
fn batch_norm_and_log_softmax_both_exporters() {
    for name in ["batchnorm_logsoftmax_dynamo", "batchnorm_logsoftmax_legacy"] {
        let notes = check(name);
        assert!(notes.iter().any(|n| n.contains("LogSoftmax")), "{name}: {notes:?}");
    }
    // The TorchScript exporter keeps BatchNormalization (epsilon 1e-5): it stays batch norm.
    let bytes = std::fs::read(fixtures().join("batchnorm_logsoftmax_legacy.onnx")).unwrap();
    let model = interop::onnx::read(&bytes, None).unwrap();
    assert!(model.topology.layers()[0].batch_norm && model.topology.layers()[1].batch_norm);
    assert_eq!(model.running.len(), 2 * (7 + 5));
}

#[test]
fn onnx_helper_graphs_of_every_op_match_onnxruntime() {
    let dir = fixtures().join("helper");
    let notes = check_in(&dir, "gemm_flatten_dropout");
    assert_eq!(notes, ["node 'drop' (Dropout) dropped: inference only"]);
    // External data (matmul_add_batchnorm.weights), MatMul + Add, batch norm kept and folded.
    let notes = check_in(&dir, "matmul_add_batchnorm");
    assert!(
        notes[0].contains("epsilon 0.001 is not core's 0.00001, so the batch norm was folded"),
        "{notes:?}"
    );
    check_in(&dir, "gelu_elu_logits");
    assert!(check_in(&dir, "reshape_relu_softmax").is_empty());
}
