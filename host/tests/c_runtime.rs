//! The C runtime `host export --format c` writes (mlp_runtime.c), built for the host with the
//! system `cc` (`-std=c99 -Wall -Wextra -pedantic -Werror`, UBSan and ASan: a signed
//! overflow, a negative shift or an out-of-bounds read fails the run) and checked bit for bit
//! against core's `PortableInt8`: on a small synthetic model here, on all 10,000 MNIST test
//! images against `host export`'s lines and `host eval` in the ignored test
//! (`MNIST_DIR=../shared/data/mnist cargo test -p host --test c_runtime -- --ignored mnist`).

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::host;
use mlp::int8::{self, fixed, Int8Model, PortableInt8};
use mlp::{init, Activation, InputTransform, LayerSpec, Model, Portable, Rng, Topology};

const DRIVER: &str = include_str!("c_runtime/driver.c");

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", common::stdout(o), common::stderr(o));
    common::stdout(o)
}

/// Compiles the driver against the exported `model.h` and the runtime beside it in `dir`.
fn build_driver(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("driver.c"), DRIVER).unwrap();
    let exe = dir.join("driver");
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O2", "-g"])
        .args(["-fsanitize=undefined,address", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"])
        .args(["driver.c", "mlp_runtime.c", "-o"])
        .arg(&exe)
        .current_dir(dir)
        .output()
        .expect("a C compiler (cc) for the C runtime tests");
    assert!(out.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

fn run_driver(exe: &Path, args: &[&str], dir: &Path) -> String {
    let out = Command::new(exe).args(args).current_dir(dir).output().unwrap();
    ok(&out)
}

/// The driver's line for one sample, from core's outputs.
fn line(i: usize, label: u8, logits: &[i8]) -> String {
    let row: Vec<String> = logits.iter().map(|v| v.to_string()).collect();
    format!("image {i}: label {label} predicted {} logits [{}]\n", int8::argmax(logits), row.join(", "))
}

/// A 13-7-5-9-3-4 model: sigmoid, tanh and GELU tables, ReLU, softmax logits; odd widths.
fn synthetic_model() -> Vec<u8> {
    synthetic_model_with(&InputTransform::Global { scale: 1.0 / 255.0, offset: 0.0 })
}

fn synthetic_model_with(transform: &InputTransform<'_>) -> Vec<u8> {
    let t = Topology::new(
        13,
        &[
            LayerSpec::dense(7, Activation::Sigmoid),
            LayerSpec::dense(5, Activation::Tanh),
            LayerSpec::dense(9, Activation::Gelu),
            LayerSpec::dense(3, Activation::Relu),
            LayerSpec::dense(4, Activation::Softmax),
        ],
    )
    .unwrap();
    let mut params = vec![0.0; t.param_len()];
    init::initialize(&t, &mut params, init::Init::XavierUniform, &mut Rng::new(17)).unwrap();
    let mut rng = Rng::new(5);
    let samples: Vec<f32> = (0..13 * 256).map(|_| (rng.below(256) as f32) / 255.0).collect();
    let mut ranges = int8::Ranges::new();
    let model = Model::new(&t, &params, &[]).unwrap();
    let mut ws = vec![0.0; t.infer_workspace_len(256)];
    int8::calibrate(&Portable, &model, &samples, 256, &mut ws, &mut ranges).unwrap();
    let mut scratch = vec![0.0; int8::scratch_len(&t)];
    let mut file = vec![0u8; int8::encoded_len(&t, transform)];
    int8::quantize(&t, &params, &[], &ranges, transform, &mut scratch, &mut file).unwrap();
    file
}

fn core_lines(q: &Int8Model<'_>, x: &[i8]) -> String {
    let n = x.len() / q.topology().input();
    let mut act = vec![0i8; q.act_workspace_len(n)];
    let mut acc = vec![0i32; q.acc_workspace_len(n)];
    let out = int8::forward(&PortableInt8, q, x, n, &mut act, &mut acc).unwrap();
    let classes = q.topology().output();
    out.chunks(classes).enumerate().map(|(i, r)| line(i, 0, r)).collect()
}

#[test]
fn c_runtime_is_bit_identical_to_core_on_a_synthetic_model() {
    check_synthetic_model(int8::Rounding::Double);
}

/// TFLite's single rounding (`host import` of a .tflite, `host quantize --rounding single`).
#[test]
fn c_runtime_is_bit_identical_to_core_with_single_rounding() {
    check_synthetic_model(int8::Rounding::Single);
}

fn check_synthetic_model(rounding: int8::Rounding) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut file = synthetic_model();
    int8::set_rounding(&mut file, rounding).unwrap();
    std::fs::write(d.join("q.mlp"), &file).unwrap();
    let q = Int8Model::parse(&file).unwrap();
    assert!(q.layers().iter().filter(|l| l.table().is_some()).count() == 3, "three table layers");
    ok(&host(&["export", "q.mlp", "--format", "c", "--out", "model.h"], d));
    let exe = build_driver(d);

    // Raw u8 samples through the input table (every value 0..=255 appears).
    let mut rng = Rng::new(99);
    let raw: Vec<u8> = (0..13 * 300).map(|i| if i < 256 { i as u8 } else { rng.below(256) as u8 }).collect();
    std::fs::write(d.join("u8.bin"), &raw).unwrap();
    let mut xq = vec![0i8; raw.len()];
    q.quantize_u8(&raw, &mut xq).unwrap();
    assert_eq!(run_driver(&exe, &["u8", "u8.bin"], d), core_lines(&q, &xq));

    // int8 inputs over the whole range: far outside what calibration saw, so sums and
    // requantization saturate.
    let xi: Vec<i8> =
        (0..13 * 300).map(|i| if i < 256 { i as u8 as i8 } else { rng.below(256) as u8 as i8 }).collect();
    std::fs::write(d.join("i8.bin"), xi.iter().map(|&v| v as u8).collect::<Vec<_>>()).unwrap();
    assert_eq!(run_driver(&exe, &["i8", "i8.bin"], d), core_lines(&q, &xi));
}

#[test]
fn a_per_feature_model_runs_on_int8_inputs_and_refuses_u8() {
    // A CSV-style model: a scale and offset per feature, so no u8 input table.
    let scale: Vec<f32> = (0..13).map(|j| 0.5 + j as f32 / 10.0).collect();
    let offset: Vec<f32> = (0..13).map(|j| j as f32 / 7.0 - 1.0).collect();
    let file = synthetic_model_with(&InputTransform::PerFeature { scale: &scale, offset: &offset });
    let q = Int8Model::parse(&file).unwrap();
    assert!(q.input_table().is_none());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("q.mlp"), &file).unwrap();
    ok(&host(&["export", "q.mlp", "--format", "c", "--out", "model.h"], d));
    let exe = build_driver(d);
    let mut rng = Rng::new(11);
    let xi: Vec<i8> = (0..13 * 100).map(|_| rng.below(256) as u8 as i8).collect();
    std::fs::write(d.join("i8.bin"), xi.iter().map(|&v| v as u8).collect::<Vec<_>>()).unwrap();
    assert_eq!(run_driver(&exe, &["i8", "i8.bin"], d), core_lines(&q, &xi));
    let refused = Command::new(&exe).args(["u8", "i8.bin"]).current_dir(d).output().unwrap();
    assert!(!refused.status.success());
    assert_eq!(common::stderr(&refused), "sample 0: error -2\n", "MLP_ERROR_NO_INPUT_TABLE");
}

#[test]
fn c_fixed_point_primitives_match_core_at_the_edges() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("q.mlp"), synthetic_model()).unwrap();
    ok(&host(&["export", "q.mlp", "--format", "c", "--out", "model.h"], d));
    let exe = build_driver(d);
    let mut xs = vec![i32::MIN, i32::MIN + 1, -(1 << 30), -65537, -256, -5, -4, -3, -1, 0, 1, 3, 4, 5, 255];
    xs.extend([65536, 1 << 30, i32::MAX - 1, i32::MAX]);
    let mut rng = Rng::new(3);
    xs.extend((0..8).map(|_| (rng.below(1 << 16) as i32 - (1 << 15)) * 40_000));
    let mults = [i32::MIN, -1, 0, 1, 1 << 30, (1 << 30) + 12345, i32::MAX];
    let shifts = [-40, -31, -30, -17, -8, -1, 0, 1, 2, 8, 29, 30, 31, 40];
    let (mut bytes, mut expected) = (Vec::new(), String::new());
    for &x in &xs {
        for &m in &mults {
            for &s in &shifts {
                for v in [x, m, s] {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                let _ = writeln!(
                    expected,
                    "{} {} {} {}",
                    fixed::multiply_by_quantized_multiplier(x, m, s),
                    fixed::saturating_rounding_doubling_high_mul(x, m),
                    fixed::rounding_divide_by_pot(x, s),
                    fixed::multiply_by_quantized_multiplier_single_rounding(x, m, s)
                );
            }
        }
    }
    std::fs::write(d.join("triples.bin"), bytes).unwrap();
    assert_eq!(run_driver(&exe, &["fixed", "triples.bin"], d), expected);

    // Inconsistent calls are error codes (mlp_runtime.h's MLP_ERROR_*), not undefined behaviour.
    assert_eq!(
        run_driver(&exe, &["errors"], d),
        "work too small: -1\nno input table: -2\nwrong inputs: -3\nno layers: -3\nmax width too small: -3\n"
    );
}

#[test]
fn export_refuses_an_out_name_the_runtime_takes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("q.mlp"), synthetic_model()).unwrap();
    let out = host(&["export", "q.mlp", "--format", "c", "--out", "mlp_runtime.h"], d);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("taken by the runtime"), "{}", common::stderr(&out));
    assert!(!d.join("mlp_runtime.h").exists() && !d.join("mlp_runtime.c").exists());
}

#[test]
#[ignore = "needs MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"]
fn c_runtime_matches_host_eval_on_all_mnist_test_images() {
    let mnist = PathBuf::from(std::env::var_os("MNIST_DIR").expect("set MNIST_DIR to the MNIST folder"));
    let mnist = mnist.canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = mnist.to_str().unwrap();
    ok(&host(
        &[
            "train",
            "--data",
            data,
            "--recipe",
            "tutorial",
            "--epochs",
            "1",
            "--no-plots",
            "--quiet",
            "--out",
            "m.mlp",
        ],
        d,
    ));
    ok(&host(&["quantize", "m.mlp", "--data", data, "--out", "q8.mlp"], d));
    // The host's line per image (core's integer path), as firmware is checked against.
    ok(&host(
        &["export", "q8.mlp", "--data", data, "--format", "c", "--out", "model.h", "--images", "10000"],
        d,
    ));
    let expected = std::fs::read_to_string(d.join("model_images.expected.txt")).unwrap();
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&host(&["eval", "q8.mlp", "--data", data, "--json"], d))).unwrap();

    let (_, test) = data::idx::load_mnist(&mnist).unwrap();
    let data::Features::U8(pixels) = test.features() else { panic!("MNIST pixels are u8") };
    assert_eq!(test.len(), 10_000);
    std::fs::write(d.join("pixels.bin"), pixels).unwrap();
    std::fs::write(d.join("labels.bin"), test.labels().iter().map(|&l| l as u8).collect::<Vec<_>>()).unwrap();
    let exe = build_driver(d);
    let got = run_driver(&exe, &["u8", "pixels.bin", "labels.bin"], d);
    assert_eq!(got.lines().count(), 10_000);
    for (i, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
        assert_eq!(g, e, "image {i}: the C runtime differs from the host");
    }

    // The same confusion matrix as `host eval`.
    let mut confusion = vec![vec![0u64; 10]; 10];
    for l in got.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        confusion[w[3].parse::<usize>().unwrap()][w[5].parse::<usize>().unwrap()] += 1;
    }
    let host_confusion: Vec<Vec<u64>> = serde_json::from_value(eval["confusion"].clone()).unwrap();
    assert_eq!(confusion, host_confusion);
    let correct: u64 = (0..10).map(|c| confusion[c][c]).sum();
    assert_eq!(correct, eval["correct"].as_u64().unwrap());
    assert!(correct > 9_000, "correct {correct} of 10000");
    eprintln!("C runtime: correct {correct} of 10000, every logit identical to the host's");
}
