//! ONNX against the real runtime: our export, run by onnxruntime on the 10,000 MNIST test
//! images, predicts as `host eval` does, with logits within 1e-5 of core's; graphs built with
//! `onnx.helper` (every op `host import` reads) import and evaluate as onnxruntime runs them;
//! and `host export --format onnx` then `host import` gives back the same model.
//!
//! The runtime checks need MLP_INTEROP_PYTHON, a Python with onnx and onnxruntime
//! (`scripts/interop-venv.sh`), and the MNIST one MNIST_DIR; CI runs them with `--ignored`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{host, stderr, stdout};
use data::idx::{load_split, Split};
use data::Features;
use host::model_io::{InputTransformBuf, ModelNames, SavedModel};
use mlp::init::{initialize, Init};
use mlp::{Activation, LayerSpec, Model, Portable, Rng, Topology};
use serde_json::Value;

const NEEDS_PYTHON: &str =
    "needs MLP_INTEROP_PYTHON (a Python with onnxruntime/LiteRT: scripts/interop-venv.sh)";

/// The interop Python, or a panic that says how to get one.
fn python() -> String {
    std::env::var("MLP_INTEROP_PYTHON").unwrap_or_else(|_| {
        panic!("{NEEDS_PYTHON}: run MLP_INTEROP_PYTHON=$(scripts/interop-venv.sh) cargo test -p host --test interop_onnx -- --ignored")
    })
}

/// Runs `scripts/interop/<script>` with `args`; returns its stdout.
fn run_script(script: &str, args: &[&Path]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out =
        Command::new(python()).arg(root.join("scripts/interop").join(script)).args(args).output().unwrap();
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "host failed:\n{}", stderr(o));
    stdout(o)
}

/// `|got - want| <= 1e-5 * (the row's largest |want|)` for every value; returns the largest
/// such ratio seen, for the log.
fn assert_close(what: &str, got: &[f32], want: &[f32], width: usize) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}");
    let mut worst = 0f32;
    for (g, w) in got.chunks(width).zip(want.chunks(width)) {
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in g.iter().zip(w) {
            let ratio = (a - b).abs() / scale;
            worst = worst.max(ratio);
            assert!(ratio <= 1e-5, "{what}: core {g:?}, onnxruntime {w:?}");
        }
    }
    worst
}

/// `topology` with an identity output layer: the same network up to its logits.
fn up_to_logits(topology: &Topology) -> Topology {
    let mut layers = topology.layers().to_vec();
    layers.last_mut().unwrap().activation = Activation::Identity;
    Topology::new(topology.input(), &layers).unwrap()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best })
}

// Not named *mnist*: .ci/run's `--ignored mnist` step runs without MLP_INTEROP_PYTHON.
#[test]
#[ignore = "needs MLP_INTEROP_PYTHON (a Python with onnxruntime/LiteRT: scripts/interop-venv.sh)"]
fn export_in_onnxruntime_predicts_as_host_eval_on_the_test_images() {
    python(); // fail before training when it is missing
    let mnist = PathBuf::from(
        std::env::var("MNIST_DIR").expect("set MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = mnist.to_str().unwrap();
    ok(&host(&["train", "--recipe", "tutorial", "--epochs", "1", "--data", data, "--out", "m.mlp"], d));
    ok(&host(&["export", "m.mlp", "--format", "onnx", "--out", "m.onnx"], d));
    let eval: Value =
        serde_json::from_str(&ok(&host(&["eval", "m.mlp", "--data", data, "--json"], d))).unwrap();
    let ort: Value = serde_json::from_str(&run_script(
        "onnx_mnist.py",
        &[&d.join("m.onnx"), &mnist, &d.join("logits.f32")],
    ))
    .unwrap();
    // Same predictions as host eval, in aggregate (its confusion matrix) ...
    assert_eq!(ort["confusion"], eval["confusion"]);
    assert_eq!(ort["correct"], eval["correct"]);
    // ... and one by one, with logits, against core's forward pass on the same pixels.
    let model = SavedModel::load(&d.join("m.mlp")).unwrap();
    let test = load_split(&mnist, Split::Test).unwrap();
    let Features::U8(pixels) = test.features() else { panic!("MNIST pixels are u8") };
    let mut x: Vec<f32> = pixels.iter().map(|&p| f32::from(p)).collect();
    model.input.apply(&mut x);
    let n = test.len();
    let logits_topology = up_to_logits(&model.topology);
    let net = Model::new(&logits_topology, &model.params, &model.running).unwrap();
    let mut ws = vec![0.0; logits_topology.infer_workspace_len(n)];
    let logits = net.forward(&Portable, &x, n, &mut ws).unwrap();
    let bytes = std::fs::read(d.join("logits.f32")).unwrap();
    let ort_logits: Vec<f32> =
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let classes = model.topology.output();
    let worst = assert_close("MNIST logits", logits, &ort_logits, classes);
    let predictions: Vec<usize> = serde_json::from_value(ort["predictions"].clone()).unwrap();
    let ours: Vec<usize> = logits.chunks(classes).map(argmax).collect();
    assert_eq!(predictions, ours);
    eprintln!("{n} images: same predictions; logits within {worst:.2e} of the row's largest magnitude");
}

#[test]
#[ignore = "needs MLP_INTEROP_PYTHON (a Python with onnxruntime/LiteRT: scripts/interop-venv.sh)"]
fn onnx_helper_graphs_import_and_evaluate_as_onnxruntime_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let names = run_script("onnx_helper_graphs.py", &[dir.path()]);
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for name in names {
        let bytes = std::fs::read(dir.path().join(format!("{name}.onnx"))).unwrap();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap())
                .unwrap();
        let model = interop::onnx::read(&bytes, Some(dir.path())).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = expected["kind"].as_str().unwrap();
        let topology = if kind == "logits" { up_to_logits(&model.topology) } else { model.topology.clone() };
        let inputs: Vec<Vec<f32>> = serde_json::from_value(expected["inputs"].clone()).unwrap();
        let want: Vec<Vec<f32>> = serde_json::from_value(expected["outputs"].clone()).unwrap();
        let x: Vec<f32> = inputs.concat();
        let net = Model::new(&topology, &model.params, &model.running).unwrap();
        let mut ws = vec![0.0; topology.infer_workspace_len(inputs.len())];
        let mut got = net.forward(&Portable, &x, inputs.len(), &mut ws).unwrap().to_vec();
        if kind == "log_probabilities" {
            got.iter_mut().for_each(|p| *p = p.ln());
        }
        let worst = assert_close(name, &got, &want.concat(), topology.output());
        eprintln!("{name}: {} layers, within {worst:.2e}; notes: {:?}", topology.layers().len(), model.notes);
    }
    // `host import` of a bare file name finds its external data beside it (the current folder).
    let said = ok(&host(&["import", "matmul_add_batchnorm.onnx", "--out", "external.mlp"], dir.path()));
    assert!(said.contains("folded into the layer's weights"), "{said}");
    let imported = SavedModel::load(&dir.path().join("external.mlp")).unwrap();
    let bytes = std::fs::read(dir.path().join("matmul_add_batchnorm.onnx")).unwrap();
    assert_eq!(imported.params, interop::onnx::read(&bytes, Some(dir.path())).unwrap().params);
}

/// A 784-11(bn, relu)-7(tanh)-10 model with input normalization and class names.
fn small_model() -> SavedModel {
    let topology = Topology::new(
        784,
        &[
            LayerSpec::dense(11, Activation::Relu).with_batch_norm(),
            LayerSpec::dense(7, Activation::Tanh),
            LayerSpec::dense(10, Activation::Softmax),
        ],
    )
    .unwrap();
    let mut rng = Rng::new(16);
    let mut params = vec![0.0; topology.param_len()];
    initialize(&topology, &mut params, Init::HeNormal, &mut rng).unwrap();
    let running: Vec<f32> = (0..topology.running_len()).map(|i| 0.5 + (i % 5) as f32 * 0.1).collect();
    SavedModel {
        topology,
        params,
        running,
        input: InputTransformBuf {
            scale: vec![1.0 / 255.0 / 0.3081; 784],
            offset: vec![-0.1307 / 0.3081; 784],
        },
        names: ModelNames { classes: (0..10).map(|c| format!("digit {c}")).collect(), features: Vec::new() },
    }
}

#[test]
fn host_export_then_host_import_gives_back_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = small_model();
    model.save(&d.join("m.mlp")).unwrap();
    ok(&host(&["export", "m.mlp", "--format", "onnx", "--out", "m.onnx"], d));
    let said = ok(&host(&["import", "m.onnx", "--out", "back.mlp"], d));
    assert!(said.contains("the input normalization the file records"), "{said}");
    let back = SavedModel::load(&d.join("back.mlp")).unwrap();
    assert_eq!(back.topology, model.topology);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back.params), bits(&model.params));
    assert_eq!(bits(&back.running), bits(&model.running));
    assert_eq!(bits(&back.input.scale), bits(&model.input.scale));
    assert_eq!(bits(&back.input.offset), bits(&model.input.offset));
    assert_eq!(back.names.classes, model.names.classes);
}
