//! safetensors against the real reader: `host export --format safetensors` loads with
//! Python's `safetensors.numpy.load_file` (what CI has; no torch) with the expected names,
//! shapes, dtypes and exact values; its metadata parses as Python parses it; and
//! `mlp.sequential` describes an nn.Sequential whose state_dict has exactly the file's names
//! and shapes (what `load_state_dict(strict=True)` compares). With torch in that Python
//! (never in CI), the real `load_state_dict(strict=True)` runs too and its outputs match ours.
//!
//! Needs MLP_INTEROP_PYTHON (`scripts/interop-venv.sh`); CI runs it with `--ignored`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{host, stderr, stdout};
use host::model_io::{InputTransformBuf, ModelNames, SavedModel};
use mlp::init::{initialize, Init};
use mlp::{Activation, LayerSpec, Portable, Rng, Topology};
use serde_json::Value;

const NEEDS_PYTHON: &str =
    "needs MLP_INTEROP_PYTHON (a Python with onnxruntime/LiteRT: scripts/interop-venv.sh)";

fn python() -> String {
    std::env::var("MLP_INTEROP_PYTHON").unwrap_or_else(|_| {
        panic!(
            "{NEEDS_PYTHON}: run MLP_INTEROP_PYTHON=$(scripts/interop-venv.sh) cargo test -p host --test \
             interop_safetensors -- --ignored"
        )
    })
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "host failed:\n{}", stderr(o));
    stdout(o)
}

/// A 12-9(batch norm, relu)-6(leaky relu)-4 model with per-feature normalization and names.
fn model() -> SavedModel {
    let topology = Topology::new(
        12,
        &[
            LayerSpec::dense(9, Activation::Relu).with_batch_norm(),
            LayerSpec::dense(6, Activation::LeakyRelu(0.2)),
            LayerSpec::dense(4, Activation::Softmax),
        ],
    )
    .unwrap();
    let mut rng = Rng::new(5);
    let mut params = vec![0.0; topology.param_len()];
    initialize(&topology, &mut params, Init::HeNormal, &mut rng).unwrap();
    // Means and variances differ everywhere, so a swap would show.
    let running: Vec<f32> = (0..topology.running_len()).map(|i| 0.25 + i as f32 / 5.0).collect();
    SavedModel {
        topology,
        params,
        running,
        input: InputTransformBuf {
            scale: (0..12).map(|i| 1.0 / (3.0 + i as f32)).collect(),
            offset: (0..12).map(|i| i as f32 / 7.0 - 0.5).collect(),
        },
        names: ModelNames {
            classes: vec!["cat".into(), "dog".into(), "\"quoted\"".into(), "naïve".into()],
            features: Vec::new(),
        },
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
#[ignore = "needs MLP_INTEROP_PYTHON (a Python with onnxruntime/LiteRT: scripts/interop-venv.sh)"]
fn python_safetensors_reads_our_export_exactly() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model();
    m.save(&d.join("m.mlp")).unwrap();
    ok(&host(&["export", "m.mlp", "--format", "safetensors", "--out", "m.safetensors"], d));

    // Rows of raw features, for the torch check when torch is there.
    let raw: Vec<Vec<f32>> = (0..3).map(|r| (0..12).map(|j| ((r * 12 + j) % 11) as f32).collect()).collect();
    let normalized: Vec<Vec<f32>> = raw
        .iter()
        .map(|row| row.iter().zip(&m.input.scale).zip(&m.input.offset).map(|((x, s), o)| x * s + o).collect())
        .collect();
    std::fs::write(d.join("inputs.json"), serde_json::to_string(&normalized).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop/check_safetensors.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(d.join("m.safetensors"))
        .arg(d.join("inputs.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "check_safetensors.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Names, shapes, dtypes, values: what we meant to write, as Python reads it.
    let t = &m.topology;
    let mut expected: Vec<(String, &str, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut index = 0;
    for (i, l) in t.layers().iter().enumerate() {
        let r = t.param_ranges(i).unwrap();
        expected.push((
            format!("{index}.weight"),
            "F32",
            vec![l.outputs, t.fan_in(i)],
            m.params[r.weights].to_vec(),
        ));
        expected.push((format!("{index}.bias"), "F32", vec![l.outputs], m.params[r.bias].to_vec()));
        index += 1;
        if let (Some((g, b)), Some((mean, var))) = (r.batch_norm, t.running_ranges(i)) {
            expected.push((format!("{index}.weight"), "F32", vec![l.outputs], m.params[g].to_vec()));
            expected.push((format!("{index}.bias"), "F32", vec![l.outputs], m.params[b].to_vec()));
            expected.push((
                format!("{index}.running_mean"),
                "F32",
                vec![l.outputs],
                m.running[mean].to_vec(),
            ));
            expected.push((format!("{index}.running_var"), "F32", vec![l.outputs], m.running[var].to_vec()));
            expected.push((format!("{index}.num_batches_tracked"), "I64", vec![], vec![0.0]));
            index += 1;
        }
        index += 1;
    }
    let tensors = got["tensors"].as_object().unwrap();
    assert_eq!(tensors.len(), expected.len(), "{:?}", tensors.keys().collect::<Vec<_>>());
    for (name, dtype, shape, values) in &expected {
        let t = &tensors[name.as_str()];
        assert_eq!(t["dtype"], *dtype, "{name}");
        let s: Vec<usize> =
            t["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(&s, shape, "{name}");
        assert_eq!(bits(&floats(&t["values"])), bits(values), "{name}");
        // The stand-in nn.Sequential of mlp.sequential owns the same entry.
        assert_eq!(got["sequential"][name.as_str()]["shape"], t["shape"], "{name} in mlp.sequential");
        assert_eq!(got["sequential"][name.as_str()]["dtype"], *dtype, "{name} in mlp.sequential");
    }
    assert_eq!(
        got["sequential"].as_object().unwrap().len(),
        expected.len(),
        "mlp.sequential has other entries"
    );

    // Metadata, decoded by Python.
    let p = &got["parsed"];
    assert_eq!(p["mlp.topology"], serde_json::json!([12, 9, 6, 4]));
    assert_eq!(bits(&floats(&p["mlp.input_scale"])), bits(&m.input.scale));
    assert_eq!(bits(&floats(&p["mlp.input_offset"])), bits(&m.input.offset));
    assert_eq!(p["mlp.classes"], serde_json::json!(m.names.classes));
    assert_eq!(got["metadata"]["mlp.activation"], "relu,leaky_relu(0.2)");

    // With torch (local runs only): load_state_dict(strict=True) and the same outputs.
    if let Some(torch) = got["torch"].as_object() {
        let net = m.model().unwrap();
        let mut ws = vec![0.0; t.infer_workspace_len(1)];
        for (x, want) in normalized.iter().zip(torch["outputs"].as_array().unwrap()) {
            let ours = net.forward(&Portable, x, 1, &mut ws).unwrap();
            for (a, b) in ours.iter().zip(floats(want)) {
                assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs(), "ours {ours:?}, torch {want}");
            }
        }
        eprintln!("torch {} loaded the export with strict=True; outputs match", torch["version"]);
    }
}
