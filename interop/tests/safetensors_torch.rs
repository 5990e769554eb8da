//! safetensors written by PyTorch (`safetensors.torch.save_file`, committed fixtures from
//! scripts/interop/make_torch_safetensors.py) read into models whose forward pass matches
//! torch's own outputs for the same inputs.

use std::path::PathBuf;

use interop::safetensors::read;
use mlp::{Activation, Model, Portable};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/safetensors").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected(case: &str) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let all: Value = serde_json::from_slice(&fixture("expected.json")).unwrap();
    let c = &all["cases"][case];
    let rows = |key: &str| -> Vec<Vec<f32>> {
        c[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
            .collect()
    };
    (rows("inputs"), rows("softmax_outputs"))
}

/// Reads the fixture `case`, runs torch's inputs through it and compares with torch's
/// softmax outputs; returns the model's notes.
fn matches_torch(case: &str, activation: Option<Activation>) -> interop::FloatModel {
    let model = read(&fixture(&format!("{case}.safetensors")), activation).unwrap();
    let (inputs, outputs) = expected(case);
    let net = Model::new(&model.topology, &model.params, &model.running).unwrap();
    let mut workspace = vec![0.0; model.topology.infer_workspace_len(1)];
    for (x, want) in inputs.iter().zip(&outputs) {
        let got = net.forward(&Portable, x, 1, &mut workspace).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 2e-6 + 1e-5 * w.abs(), "{case}: ours {got:?}, torch {want:?}");
        }
    }
    model
}

#[test]
fn relu_without_metadata_assumes_relu_and_says_so() {
    let m = matches_torch("relu_odd_widths", None);
    let widths: Vec<usize> = m.topology.layers().iter().map(|l| l.outputs).collect();
    assert_eq!((m.topology.input(), widths), (7, vec![5, 3, 4]));
    assert!(m.notes.iter().any(|n| n.contains("hidden activation relu: assumed")), "{:?}", m.notes);
    assert_eq!((m.input.clone(), m.classes.len()), (None, 0));
}

#[test]
fn a_wrong_activation_is_visible_in_the_outputs() {
    // The same file read as tanh no longer matches torch: the comparison above has teeth.
    let model = read(&fixture("relu_odd_widths.safetensors"), Some(Activation::Tanh)).unwrap();
    assert!(model.notes.iter().any(|n| n.contains("hidden activation tanh (--activation)")));
    let (inputs, outputs) = expected("relu_odd_widths");
    let net = Model::new(&model.topology, &model.params, &model.running).unwrap();
    let mut workspace = vec![0.0; model.topology.infer_workspace_len(1)];
    let differs = inputs.iter().zip(&outputs).any(|(x, want)| {
        let got = net.forward(&Portable, x, 1, &mut workspace).unwrap();
        got.iter().zip(want).any(|(g, w)| (g - w).abs() > 1e-4)
    });
    assert!(differs);
}

#[test]
fn batch_norm_dropout_and_a_prefix() {
    let m = matches_torch("batch_norm_tanh_prefixed", None);
    assert!(m.topology.layers()[0].batch_norm);
    assert_eq!(m.topology.layers()[0].activation, Activation::Tanh);
    assert!(m.running.iter().any(|&v| v != 0.0 && v != 1.0), "trained running statistics");
    assert!(m.notes.iter().any(|n| n.contains("Dropout")), "{:?}", m.notes);
}

#[test]
fn flatten_first_and_gelu_from_the_metadata() {
    let m = matches_torch("flatten_gelu_model_layers", Some(Activation::Sigmoid));
    assert_eq!(m.topology.layers()[0].activation, Activation::Gelu);
    assert!(m.notes.iter().any(|n| n.contains("nn.Flatten")), "{:?}", m.notes);
    assert!(m.notes.iter().any(|n| n.contains("--activation sigmoid ignored")), "{:?}", m.notes);
}

#[test]
fn f16_tensors_widen_exactly() {
    let m = matches_torch("leaky_relu_f16", None);
    assert_eq!(m.topology.layers()[0].activation, Activation::LeakyRelu(0.1));
    assert!(m.notes.iter().any(|n| n.contains("F16 tensors widened to f32")), "{:?}", m.notes);
}
