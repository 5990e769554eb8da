//! Our TFLite export against LiteRT, the runtime itself, on the 10,000 MNIST test images:
//! a tutorial model trained for one epoch, quantized with single rounding (LiteRT's wheels
//! round once), exported with `host export --format tflite`, run by LiteRT with the
//! reference kernels: its int8 outputs must be ours, byte for byte. Then `host import` of
//! that .tflite must give the same outputs again.
//!
//! Run: `MLP_INTEROP_PYTHON=$(scripts/interop-venv.sh) MNIST_DIR=../shared/data/mnist
//! cargo test -p host --test interop_tflite -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

use data::Features;
use mlp::int8::{self, Int8Model, PortableInt8};

fn python() -> PathBuf {
    std::env::var_os("MLP_INTEROP_PYTHON")
        .map(PathBuf::from)
        .expect("set MLP_INTEROP_PYTHON to a Python with ai-edge-litert (scripts/interop-venv.sh prints one)")
}

fn mnist_dir() -> PathBuf {
    std::env::var_os("MNIST_DIR").map(PathBuf::from).expect("set MNIST_DIR to the MNIST folder")
}

fn host(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_host")).args(args).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "host {args:?} failed:\n{text}");
    text
}

/// Core's int8 outputs of `model` for every image, and the quantized inputs.
fn ours(model: &[u8], images: &[u8], n: usize) -> (Vec<i8>, Vec<i8>) {
    let q = Int8Model::parse(model).unwrap();
    let mut x = vec![0i8; images.len()];
    q.quantize_u8(images, &mut x).unwrap();
    let mut act = vec![0i8; q.act_workspace_len(n)];
    let mut acc = vec![0i32; q.acc_workspace_len(n)];
    let out = int8::forward(&PortableInt8, &q, &x, n, &mut act, &mut acc).unwrap().to_vec();
    (x, out)
}

/// LiteRT's (BUILTIN_REF) int8 outputs of `tflite` for the int8 inputs `x`.
fn litert(tflite: &Path, x: &[i8], n: usize, dir: &Path) -> Vec<i8> {
    let (inputs, outputs) = (dir.join("inputs.bin"), dir.join("outputs.bin"));
    std::fs::write(&inputs, x.iter().map(|&v| v as u8).collect::<Vec<_>>()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/interop/run_tflite.py");
    let out = Command::new(python())
        .args([script, tflite.to_str().unwrap(), inputs.to_str().unwrap(), &n.to_string()])
        .arg(&outputs)
        .output()
        .unwrap();
    assert!(out.status.success(), "LiteRT failed: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    std::fs::read(&outputs).unwrap().into_iter().map(|b| b as i8).collect()
}

#[test]
#[ignore = "needs MLP_INTEROP_PYTHON (a Python with onnxruntime/LiteRT: scripts/interop-venv.sh)"]
fn export_runs_bit_identically_in_litert_and_imports_back() {
    let python = python();
    assert!(python.exists(), "MLP_INTEROP_PYTHON={} does not exist", python.display());
    let mnist = mnist_dir();
    let data = mnist.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    host(
        &[
            "train",
            "--recipe",
            "tutorial",
            "--epochs",
            "1",
            "--data",
            data,
            "--out",
            "m.mlp",
            "--no-plots",
            "-q",
        ],
        d,
    );
    host(&["quantize", "m.mlp", "--out", "single.mlp", "--rounding", "single", "--data", data], d);
    host(&["quantize", "m.mlp", "--out", "double.mlp", "--data", data], d);
    host(&["export", "single.mlp", "--format", "tflite", "--out", "single.tflite"], d);
    host(&["export", "double.mlp", "--format", "tflite", "--out", "double.tflite"], d);

    let (_, test) = data::idx::load_mnist(&mnist).unwrap();
    let Features::U8(images) = test.features() else { panic!("MNIST images are u8") };
    let n = test.len();
    assert_eq!(n, 10_000);

    let single = std::fs::read(d.join("single.mlp")).unwrap();
    let (x, expected) = ours(&single, images, n);
    let got = litert(&d.join("single.tflite"), &x, n, d);
    assert_eq!(got.len(), expected.len());
    let differ = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} of {} int8 outputs differ between LiteRT and host", expected.len());

    // The double-rounding model: LiteRT (single rounding) differs in a few outputs; measured, not
    // asserted (it is the reason for --rounding single).
    let double = std::fs::read(d.join("double.mlp")).unwrap();
    let (x, expected) = ours(&double, images, n);
    let got = litert(&d.join("double.tflite"), &x, n, d);
    let differ = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
    eprintln!("double-rounding model: {differ} of {} int8 outputs differ from LiteRT's", expected.len());

    // Back in: the imported file runs like the model it came from.
    host(&["import", "single.tflite", "--out", "back.mlp"], d);
    let back = std::fs::read(d.join("back.mlp")).unwrap();
    let (xb, again) = ours(&back, images, n);
    let (x, expected) = ours(&single, images, n);
    assert_eq!(xb, x, "the imported input table differs");
    assert_eq!(again, expected, "the imported model's outputs differ");
}

/// Single-rounding `MultiplyByQuantizedMultiplier` plus zero point 0, as LiteRT's wheels run it.
fn single(acc: i32, (m, s): (i32, i32)) -> i32 {
    mlp::int8::fixed::multiply_by_quantized_multiplier_single_rounding(acc, m, s)
}

#[test]
#[ignore = "needs MLP_INTEROP_PYTHON (a Python with onnxruntime/LiteRT: scripts/interop-venv.sh)"]
fn per_tensor_multiplier_is_computed_from_the_double_product() {
    // kernel_util.cc computes a per-tensor FULLY_CONNECTED's multiplier from
    // double(s_in) * double(s_w); older code (and other interpreters) from float(s_in * s_w).
    // A layer built so the two disagree: zero weights, and biases at the accumulators where
    // the two multipliers round to different outputs. LiteRT's outputs must be ours.
    let (s_in, s_w) = (0.1f32, 0.3f32);
    let s_out = (f64::from(s_in) * f64::from(s_w) * f64::from(1u32 << 20)) as f32;
    let ours = mlp::int8::quantize_multiplier(f64::from(s_in) * f64::from(s_w) / f64::from(s_out));
    let float_product = mlp::int8::quantize_multiplier(f64::from(s_in * s_w) / f64::from(s_out));
    assert_ne!(ours, float_product, "pick scales whose float product rounds differently");
    // Accumulators near each rounding boundary of outputs -100..100 where the two disagree.
    let mut bias = Vec::new();
    for k in -100i64..100 {
        let step = (1i64 << (31 - ours.1)) as f64 / ours.0 as f64;
        let center = ((k as f64 + 0.5) * step) as i64;
        for acc in center - 64..center + 64 {
            let acc = acc as i32;
            if single(acc, ours) != single(acc, float_product) {
                bias.push(acc);
                break;
            }
        }
        if bias.len() == 16 {
            break;
        }
    }
    assert!(bias.len() >= 8, "found only {} discriminating accumulators", bias.len());
    let n = bias.len();
    let t = mlp::Topology::new(1, &[mlp::LayerSpec::dense(n, mlp::Activation::Identity)]).unwrap();
    let scales = vec![s_w.to_bits(); n];
    let (mults, shifts) = (vec![ours.0; n], vec![ours.1; n]);
    let weights = vec![0i8; n];
    let parts = [int8::Int8LayerParts {
        inputs: 1,
        outputs: n,
        activation: mlp::Activation::Identity,
        out_scale_bits: s_out.to_bits(),
        out_zero_point: 0,
        pre_scale_bits: s_out.to_bits(),
        pre_zero_point: 0,
        weight_scale_bits: &scales,
        bias: &bias,
        multipliers: &mults,
        shifts: &shifts,
        weights: &weights,
        table: None,
        rounding: int8::Rounding::Single,
    }];
    let table = [0i8; 256];
    let input = int8::Int8Input { scale_bits: s_in.to_bits(), zero_point: 0, table: Some(&table) };
    let transform = mlp::InputTransform::Identity;
    let mut file = vec![0u8; int8::encoded_len(&t, &transform)];
    int8::encode(&t, &transform, &input, &parts, &mut file).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("per_tensor.tflite");
    std::fs::write(&path, interop::tflite::write(&file).unwrap()).unwrap();
    let expected: Vec<i8> = bias.iter().map(|&b| single(b, ours).clamp(-128, 127) as i8).collect();
    let other: Vec<i8> = bias.iter().map(|&b| single(b, float_product).clamp(-128, 127) as i8).collect();
    assert!(expected.iter().zip(&other).all(|(a, b)| a != b));
    let got = litert(&path, &[0], 1, tmp.path());
    assert_eq!(
        got, expected,
        "LiteRT's per-tensor multiplier is not double(s_in) * double(s_w) / double(s_out)"
    );
}
