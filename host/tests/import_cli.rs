//! `host import` as a user meets it: what it assumed is said, --normalization and
//! --activation take effect, bad files fail with messages that say what is wrong and never
//! touch an existing --out; and `host export --format safetensors` of an f32 model comes back
//! through `host import` as the same model file, byte for byte.

mod common;

use std::path::{Path, PathBuf};

use common::{host, stderr, stdout, write_idx};
use host::model_io::{InputTransformBuf, ModelNames, SavedModel};
use mlp::init::{initialize, Init};
use mlp::{Activation, LayerSpec, Rng, Topology};

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "failed:\n{}", stderr(o));
    stdout(o)
}

fn err(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "succeeded:\n{}", stdout(o));
    stderr(o)
}

/// An f32 784-12-(batch norm)-10 model with per-pixel normalization and class names.
fn f32_model(dir: &Path) -> PathBuf {
    let topology = Topology::new(
        784,
        &[
            LayerSpec::dense(12, Activation::Tanh).with_batch_norm(),
            LayerSpec::dense(10, Activation::Softmax),
        ],
    )
    .unwrap();
    let mut rng = Rng::new(16);
    let mut params = vec![0.0; topology.param_len()];
    initialize(&topology, &mut params, Init::HeNormal, &mut rng).unwrap();
    let running: Vec<f32> = (0..topology.running_len()).map(|i| 0.5 + i as f32 / 7.0).collect();
    let model = SavedModel {
        topology,
        params,
        running,
        input: InputTransformBuf {
            scale: (0..784).map(|i| 1.0 / (255.0 + i as f32)).collect(),
            offset: (0..784).map(|i| -(i as f32) / 1000.0).collect(),
        },
        names: ModelNames { classes: (0..10).map(|i| format!("digit {i}")).collect(), features: Vec::new() },
    };
    let path = dir.join("f32.mlp");
    model.save(&path).unwrap();
    path
}

fn torch_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../interop/tests/fixtures/safetensors/relu_odd_widths.safetensors")
}

#[test]
fn export_then_import_gives_back_the_same_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let original = f32_model(d);
    let out = ok(&host(&["export", "f32.mlp", "--format", "safetensors", "--out", "m.safetensors"], d));
    assert!(out.contains("m.safetensors"), "{out}");
    let said = ok(&host(&["import", "m.safetensors", "--out", "back.mlp"], d));
    assert!(
        said.contains("f32 784-12-10 from safetensors; the input normalization the file records"),
        "{said}"
    );
    assert!(!said.contains("note:"), "nothing assumed for our own file: {said}");
    assert_eq!(std::fs::read(d.join("back.mlp")).unwrap(), std::fs::read(original).unwrap());
    ok(&host(&["export", "back.mlp", "--format", "safetensors", "--out", "again.safetensors"], d));
    assert_eq!(
        std::fs::read(d.join("again.safetensors")).unwrap(),
        std::fs::read(d.join("m.safetensors")).unwrap()
    );
}

#[test]
fn a_torch_state_dict_says_what_was_assumed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = torch_fixture();
    let file = file.to_str().unwrap();
    let said = ok(&host(&["import", file, "--out", "a.mlp"], d));
    assert!(said.contains("note: hidden activation relu: assumed"), "{said}");
    assert!(said.contains("f32 7-5-3-4 from safetensors; assumed inputs are pixels / 255"), "{said}");
    let a = SavedModel::load(&d.join("a.mlp")).unwrap();
    assert_eq!(a.input.scale, vec![1.0 / 255.0; 7]);
    assert_eq!(a.topology.layers()[0].activation, Activation::Relu);

    let said = ok(&host(
        &["import", file, "--out", "b.mlp", "--normalization", "standardize", "--activation", "tanh"],
        d,
    ));
    assert!(said.contains("note: hidden activation tanh (--activation)"), "{said}");
    assert!(
        said.contains(
            "(pixels / 255 - 0.1307) / 0.3081 (ToTensor, Normalize((0.1307,), (0.3081,))) (--normalization)"
        ),
        "{said}"
    );
    let b = SavedModel::load(&d.join("b.mlp")).unwrap();
    assert_eq!(b.topology.layers()[0].activation, Activation::Tanh);
    assert_eq!(b.input.scale[0], 1.0 / 255.0 / 0.3081);
    assert_eq!(b.input.offset[0], -0.1307 / 0.3081);
    assert_eq!(b.params, a.params);

    let said = ok(&host(&["import", file, "--out", "c.mlp", "--normalization", "none"], d));
    assert!(said.contains("inputs are the raw values (--normalization)"), "{said}");
    assert_eq!(SavedModel::load(&d.join("c.mlp")).unwrap().input.scale, vec![1.0; 7]);
}

#[test]
fn normalization_given_over_a_recorded_one_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    f32_model(d);
    ok(&host(&["export", "f32.mlp", "--format", "safetensors", "--out", "m.safetensors"], d));
    let said = ok(&host(&["import", "m.safetensors", "--out", "s.mlp", "--normalization", "scale"], d));
    assert!(said.contains("in place of the normalization the file records"), "{said}");
    assert_eq!(SavedModel::load(&d.join("s.mlp")).unwrap().input.scale, vec![1.0 / 255.0; 784]);
}

#[test]
fn bad_files_fail_clearly_and_leave_out_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("out.mlp"), b"precious").unwrap();
    std::fs::write(d.join("empty.onnx"), b"").unwrap();
    std::fs::write(d.join("notes.txt"), b"hello, not a model").unwrap();
    std::fs::create_dir(d.join("folder")).unwrap();
    let real = std::fs::read(torch_fixture()).unwrap();
    std::fs::write(d.join("cut.safetensors"), &real[..real.len() - 3]).unwrap();
    let cases = [
        ("missing.onnx", "cannot read missing.onnx"),
        ("folder", "folder is a directory: host import reads one model file"),
        ("empty.onnx", "empty.onnx is empty (0 bytes)"),
        ("notes.txt", "notes.txt: not an ONNX, safetensors or TFLite file"),
        ("cut.safetensors", "cut.safetensors: not a valid safetensors file"),
    ];
    for (file, want) in cases {
        let e = err(&host(&["import", file, "--out", "out.mlp"], d));
        assert!(e.contains(want), "{file}: {e}");
        assert_eq!(std::fs::read(d.join("out.mlp")).unwrap(), b"precious", "{file} touched --out");
    }
    let listing: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(listing.len(), 5, "no temporary file left behind: {listing:?}");
}

#[test]
fn activation_for_another_format_is_said_to_be_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Detected as TFLite by its identifier; the message comes before the reader runs, so it
    // shows whether or not this file reads.
    let mut tflite = vec![0u8; 16];
    tflite[4..8].copy_from_slice(b"TFL3");
    std::fs::write(d.join("x.tflite"), &tflite).unwrap();
    let o = host(&["import", "x.tflite", "--out", "q.mlp", "--activation", "tanh"], d);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("--activation ignored: it names the hidden activation of a safetensors state_dict; this TFLite file names its own"), "{}", stdout(&o));
    assert!(!d.join("q.mlp").exists());
}

#[test]
fn export_safetensors_refuses_an_int8_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    f32_model(d);
    write_idx(&d.join("idx"), 20, 10);
    ok(&host(&["quantize", "f32.mlp", "--out", "q8.mlp", "--data", "idx", "--calibration", "20"], d));
    let e = err(&host(&["export", "q8.mlp", "--format", "safetensors", "--out", "q.safetensors"], d));
    assert!(
        e.contains("q8.mlp is an int8 model; --dtype f32 needs the f32 model it was quantized from"),
        "{e}"
    );
    assert!(!d.join("q.safetensors").exists());
}
