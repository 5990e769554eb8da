//! `host export`: every format carries exactly the model's numbers, images come with the
//! host's outputs, and bad input fails with a message that says what to do. Runs on a small
//! synthetic IDX data set (no MNIST needed); the firmware CI step (scripts/firmware-check.sh)
//! covers the real model end to end.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use data::idx::encode_u8;
use host::model_io::{InputTransformBuf, SavedModel};
use mlp::init::{initialize, Init};
use mlp::int8::Int8Model;
use mlp::{Activation, LayerSpec, Rng, Topology};

const PIXELS: usize = 784;

fn host(args: &[&str], dir: &Path) -> Output {
    Command::cargo_bin("host").unwrap().args(args).current_dir(dir).env_remove("MNIST_DIR").output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    assert!(!o.status.success(), "succeeded:\n{}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small MNIST-shaped IDX data set in `dir/data` and an f32 784-12-10 model `dir/f32.mlp`.
fn setup(dir: &Path) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = Rng::new(9);
    for (split, n) in [("train", 40usize), ("t10k", 20)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        // Each class lights up its own band of rows, plus noise.
        let mut images = vec![0u8; n * PIXELS];
        for (i, img) in images.chunks_mut(PIXELS).enumerate() {
            let c = labels[i] as usize;
            for (j, p) in img.iter_mut().enumerate() {
                let band = j / 28 / 3 == c;
                *p = if band { 200 + rng.below(56) as u8 } else { rng.below(30) as u8 };
            }
        }
        let dims = [n as u32, 28, 28];
        std::fs::write(data.join(format!("{split}-images-idx3-ubyte")), encode_u8(&dims, &images)).unwrap();
        std::fs::write(data.join(format!("{split}-labels-idx1-ubyte")), encode_u8(&[n as u32], &labels))
            .unwrap();
    }
    let topology = Topology::new(
        PIXELS,
        &[LayerSpec::dense(12, Activation::Relu), LayerSpec::dense(10, Activation::Softmax)],
    )
    .unwrap();
    let mut params = vec![0.0; topology.param_len()];
    initialize(&topology, &mut params, Init::HeNormal, &mut rng).unwrap();
    let model = SavedModel {
        topology,
        params,
        running: Vec::new(),
        input: InputTransformBuf { scale: vec![1.0 / 255.0; PIXELS], offset: vec![0.0; PIXELS] },
        names: Default::default(),
    };
    model.save(&dir.join("f32.mlp")).unwrap();
}

/// The numbers of `static NAME: ... = [ ... ];` (Rust) or `NAME[...] = { ... };` (C).
fn array(text: &str, name: &str) -> Vec<String> {
    let start = text.find(name).unwrap_or_else(|| panic!("{name} not in the output"));
    let rest = &text[start..];
    let open = rest.find(['[', '{']).unwrap();
    // Skip the type / length brackets up to the `=`.
    let eq = rest.find('=').unwrap();
    let body_start = eq + rest[eq..].find(['[', '{']).unwrap() + 1;
    assert!(open < eq);
    let body_end = body_start + rest[body_start..].find([']', '}']).unwrap();
    rest[body_start..body_end]
        .split(',')
        .map(|s| s.trim().trim_end_matches('f').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn every_format_carries_the_model_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    // f32 -> int8 model file, calibrated on the data set.
    let out = ok(&host(&["export", "f32.mlp", "--format", "bin", "--out", "q8.bin", "--data", "data"], d));
    assert!(out.contains("Quantized f32.mlp to int8") && out.contains("int8 784-12-10"), "{out}");
    let q8 = std::fs::read(d.join("q8.bin")).unwrap();
    let q = Int8Model::parse(&q8).unwrap();

    // An int8 model file exports as is: no data needed.
    ok(&host(&["export", "q8.bin", "--format", "bin", "--out", "again.bin"], d));
    assert_eq!(std::fs::read(d.join("again.bin")).unwrap(), q8);

    // Rust: the topology as constants, each array with the model's values.
    ok(&host(&["export", "q8.bin", "--format", "rust", "--out", "gen/model.rs"], d));
    let rust = std::fs::read_to_string(d.join("gen/model.rs")).unwrap();
    assert!(rust.contains("pub const INPUT: usize = 784;"));
    assert!(rust.contains("LayerSpec::dense(12, Activation::Relu),"));
    assert!(rust.contains("pub static LAYER_PARTS: [Int8LayerParts<'static>; 2]"));
    for (i, l) in q.layers().iter().enumerate() {
        let w: Vec<i8> = array(&rust, &format!("L{i}_WEIGHTS:")).iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(w, l.weights(), "layer {i} weights");
        let b: Vec<i32> = array(&rust, &format!("L{i}_BIAS:")).iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(b, l.bias().iter().collect::<Vec<_>>());
        let m: Vec<i32> =
            array(&rust, &format!("L{i}_MULTIPLIERS:")).iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(m, l.multipliers().iter().collect::<Vec<_>>());
    }
    let table: Vec<i8> = array(&rust, "INPUT_TABLE:").iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(&table[..], &q.input_table().unwrap()[..]);

    // C: the same numbers, and a header a C compiler accepts.
    ok(&host(&["export", "q8.bin", "--format", "c", "--out", "model.h"], d));
    let c = std::fs::read_to_string(d.join("model.h")).unwrap();
    let w: Vec<i8> = array(&c, "MLP_L1_WEIGHTS[").iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(w, q.layers()[1].weights());
    std::fs::write(d.join("main.c"), "#include \"model.h\"\nint main(void) { return MLP_L0_WEIGHTS[0] + MLP_INPUT_TABLE[0] + (int)MLP_L1_BIAS[0]; }\n").unwrap();
    let cc = std::process::Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "main.c"])
        .current_dir(d)
        .output()
        .expect("a C compiler (cc) to check the header");
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));

    // f32 Rust: every parameter reads back to the same bits.
    ok(&host(&["export", "f32.mlp", "--format", "rust", "--dtype", "f32", "--out", "f32.rs"], d));
    let rust = std::fs::read_to_string(d.join("f32.rs")).unwrap();
    let model = SavedModel::load(&d.join("f32.mlp")).unwrap();
    let params: Vec<f32> = array(&rust, "PARAMS:").iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(
        params.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        model.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert!(rust.contains("pub const INPUT_SCALE: f32 = 0.003921569;"), "{}", &rust[..600]);
    ok(&host(&["export", "f32.mlp", "--format", "c", "--dtype", "f32", "--out", "f32.h"], d));
    std::fs::write(d.join("f.c"), "#include \"f32.h\"\nint main(void) { return (int)MLP_PARAMS_F32[0]; }\n")
        .unwrap();
    let cc = std::process::Command::new("cc")
        .args(["-std=c99", "-Wall", "-Werror", "-fsyntax-only", "f.c"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
}

#[test]
fn images_come_with_the_hosts_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let out = ok(&host(
        &[
            "export",
            "f32.mlp",
            "--format",
            "rust",
            "--out",
            "fw/model.rs",
            "--data",
            "data",
            "--images",
            "5",
            "--train-images",
            "7",
        ],
        d,
    ));
    assert!(out.contains("fw/model_images.rs") && out.contains("5 test images"), "{out}");
    let images = std::fs::read_to_string(d.join("fw/model_images.rs")).unwrap();
    assert!(images.contains("pub static TEST_IMAGES: [[u8; 784]; 5]"));
    assert!(images.contains("pub static TRAIN_IMAGES: [[u8; 784]; 7]"));
    assert!(images.contains("pub static HOST_OUTPUTS: [[i8; 10]; 5]"));
    let labels = array(&images, "TEST_LABELS:");
    assert_eq!(labels, ["0", "1", "2", "3", "4"]);
    // The expected lines are what the firmware prints, from the int8 model just exported.
    let expected = std::fs::read_to_string(d.join("fw/model_images.expected.txt")).unwrap();
    let lines: Vec<&str> = expected.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(
        lines[0].starts_with("image 0: label 0 predicted ") && lines[0].contains(" logits ["),
        "{}",
        lines[0]
    );

    // C images, to a chosen path; f32 images carry f32 outputs.
    ok(&host(
        &[
            "export",
            "f32.mlp",
            "--format",
            "c",
            "--out",
            "m.h",
            "--data",
            "data",
            "--images",
            "3",
            "--images-out",
            "imgs.h",
        ],
        d,
    ));
    let c = std::fs::read_to_string(d.join("imgs.h")).unwrap();
    assert_eq!(array(&c, "MLP_TEST_PIXELS[").len(), 3 * 784);
    ok(&host(
        &[
            "export", "f32.mlp", "--format", "rust", "--dtype", "f32", "--out", "f.rs", "--data", "data",
            "--images", "2",
        ],
        d,
    ));
    assert!(std::fs::read_to_string(d.join("f_images.rs")).unwrap().contains("HOST_OUTPUTS: [[f32; 10]; 2]"));
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    ok(&host(&["export", "f32.mlp", "--format", "bin", "--out", "q8.bin", "--data", "data"], d));
    std::fs::write(d.join("corrupt.mlp"), b"MLPM not really a model").unwrap();
    std::fs::write(d.join("a-file"), b"").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["export", "missing.mlp", "--format", "rust", "--out", "m.rs"],
            "cannot read model file missing.mlp",
        ),
        (&["export", "corrupt.mlp", "--format", "rust", "--out", "m.rs"], "not a valid model file"),
        (&["export", "q8.bin", "--format", "rust", "--out", "a-file/m.rs"], "a-file"),
        (&["export", "q8.bin", "--format", "rust", "--dtype", "f32", "--out", "m.rs"], "is an int8 model"),
        (
            &["export", "q8.bin", "--format", "bin", "--out", "m.bin", "--images", "3"],
            "--format rust or --format c",
        ),
        (
            &["export", "q8.bin", "--format", "rust", "--out", "m.rs", "--images-out", "i.rs"],
            "--images-out needs",
        ),
        (&["export", "f32.mlp", "--format", "rust", "--out", "m.rs", "--data", "no-such-dir"], "no-such-dir"),
        (
            &["export", "q8.bin", "--format", "rust", "--out", "m.rs", "--data", "data", "--images", "999"],
            "--images 999",
        ),
        (&["export", "q8.bin", "--format", "json", "--out", "m.rs"], "invalid value 'json'"),
        (&["export", "q8.bin", "--out", "m.rs"], "--format"),
    ];
    for (args, expected) in cases {
        let e = err(&host(args, d));
        assert!(e.contains(expected), "{args:?}: stderr lacks {expected:?}:\n{e}");
        assert!(!e.contains("panicked"), "{args:?} panicked:\n{e}");
    }
    assert!(!d.join("m.rs").exists(), "a failed export left a file behind");
}

#[test]
fn flash_too_small_for_the_model_is_an_error_naming_the_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    setup(d);
    // The 784-12-10 model quantizes to a model file of about 10 KB; with 5 test images
    // (5 x 795 bytes) and the 6 KiB firmware allowance it needs about 20 KB.
    let args = |flash: &'static str| {
        [
            "export", "f32.mlp", "--format", "rust", "--out", "m.rs", "--data", "data", "--images", "5",
            "--flash", flash,
        ]
    };
    let e = err(&host(&args("16K"), d));
    for part in
        ["--flash 16K is 16384 bytes", "bytes over", "model's arrays", "test images 3975 bytes", "6144"]
    {
        assert!(e.contains(part), "{part} not in: {e}");
    }
    assert!(!d.join("m.rs").exists(), "a failed --flash check wrote the model");
    let out = ok(&host(&args("64K"), d));
    assert!(out.contains("Fits --flash 64K"), "{out}");
    assert!(d.join("m.rs").exists());
    for (bad, says) in [("12Q", "not a flash size"), ("0", "0 bytes")] {
        let e = err(&host(&["export", "f32.mlp", "--format", "bin", "--out", "m.bin", "--flash", bad], d));
        assert!(e.contains(says), "{says} not in: {e}");
    }
    let e = err(&host(&["export", "f32.mlp", "--format", "onnx", "--out", "m.onnx", "--flash", "1M"], d));
    assert!(e.contains("--flash checks firmware exports"), "{e}");
}
