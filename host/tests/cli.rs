//! The `host` binary: help, errors that say what to do, and the train → eval → inspect →
//! predict flow.

use std::path::Path;

mod common;

use common::{host, stderr, stdout};

#[test]
fn help_lists_the_commands_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = host(&["--help"], dir.path());
    assert!(out.status.success());
    for cmd in ["train", "eval", "predict", "inspect", "compare", "download"] {
        assert!(stdout(&out).contains(cmd), "--help lacks {cmd}");
    }
    let out = host(&["train", "--help"], dir.path());
    assert!(stdout(&out).contains("Examples:") && stdout(&out).contains("--recipe tutorial"));
}

#[test]
fn bad_arguments_and_missing_files_fail_with_a_useful_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--optimizer", "sgdd"], "invalid value 'sgdd'"),
        (&["train", "--epochs", "0", "--csv", "x.csv"], "--epochs must be at least 1"),
        (&["train", "--csv", "missing.csv"], "missing.csv"),
        (&["train", "--data", "no-such-dir"], "no-such-dir"),
        (&["eval", "missing.mlp", "--csv", "x.csv"], "cannot read model file missing.mlp"),
        (&["predict", "model.mlp"], "required"),
        (&["inspect", "missing.mlp"], "missing.mlp"),
        (&["train", "--resume", "missing.ckpt"], "cannot read checkpoint missing.ckpt"),
    ];
    for (args, expected) in cases {
        let out = host(args, d);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(expected), "{args:?}: stderr lacks {expected:?}:\n{}", stderr(&out));
    }
    std::fs::write(d.join("corrupt.mlp"), b"MLPM garbage").unwrap();
    let out = host(&["inspect", "corrupt.mlp"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a valid model file"), "{}", stderr(&out));
}

#[test]
fn csv_train_eval_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A linearly separable 2-class table with a header and a named label column.
    let mut csv = String::from("a,b,kind\n");
    let mut rng = mlp::Rng::new(5);
    for i in 0..200 {
        let (label, shift) = if i % 2 == 0 { ("left", -2.0) } else { ("right", 2.0) };
        csv += &format!("{},{},{label}\n", shift + rng.normal() * 0.5, rng.normal());
    }
    std::fs::write(d.join("t.csv"), &csv).unwrap();
    let out = host(
        &[
            "train",
            "--csv",
            "t.csv",
            "--label",
            "kind",
            "--hidden",
            "8",
            "--epochs",
            "20",
            "--lr",
            "0.01",
            "-q",
            "--no-plots",
            "--out",
            "t.mlp",
            "--metrics",
            "m.json",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Saved t.mlp"));
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
    assert_eq!(metrics["epochs"].as_array().unwrap().len(), 20);
    assert_eq!(metrics["config"]["hidden"][0], 8);
    assert_eq!(metrics["parameters"], 2 * 8 + 8 + 8 * 2 + 2);

    let out = host(&["eval", "t.mlp", "--csv", "t.csv", "--label", "kind", "--json"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(eval["samples"], 200);
    assert!(eval["accuracy"].as_f64().unwrap() > 0.95, "{eval}");
    assert!(eval["loss"].as_f64().unwrap().is_finite());

    let out = host(&["inspect", "t.mlp"], d);
    assert!(out.status.success());
    assert!(stdout(&out).contains("total parameters: 42"), "{}", stdout(&out));

    // int8: quantize, then eval and inspect the int8 file like any other.
    let out =
        host(&["quantize", "t.mlp", "--out", "q.mlp", "--csv", "t.csv", "--label", "kind", "--json"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let q: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(q["int8_accuracy"].as_f64().unwrap() > 0.95, "{q}");
    let out = host(&["eval", "q.mlp", "--csv", "t.csv", "--label", "kind", "--json"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(eval["dtype"], "int8");
    assert_eq!(eval["accuracy"], q["int8_accuracy"]);
    let out = host(&["inspect", "q.mlp"], d);
    assert!(stdout(&out).contains("int8"), "{}", stdout(&out));
    let out = host(&["quantize", "q.mlp", "--out", "qq.mlp", "--csv", "t.csv"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already an int8 model"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"]
fn mnist_cli_train_eval_predict_and_plots() {
    let mnist = std::env::var("MNIST_DIR").expect("set MNIST_DIR");
    let mnist = std::fs::canonicalize(mnist).unwrap();
    let mnist = mnist.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = host(
        &[
            "train",
            "--data",
            mnist,
            "--hidden",
            "64",
            "--epochs",
            "1",
            "--recipe",
            "tutorial",
            "-q",
            "--out",
            "m.mlp",
            "--metrics",
            "m.json",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for plot in ["curves.png", "predictions.png", "confusion.png"] {
        assert!(d.join("plots").join(plot).exists(), "{plot} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
    let trained_acc = metrics["test_accuracy"].as_f64().unwrap();
    assert!(trained_acc > 0.9);

    let out = host(&["eval", "m.mlp", "--data", mnist, "--json"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(eval["accuracy"].as_f64().unwrap(), trained_acc, "reloaded model evaluates differently");
    assert_eq!(eval["samples"], 10_000);

    // A test digit saved as a PGM predicts its label (the first test image is a 7).
    let (_, test) = data::idx::load_mnist(Path::new(mnist)).unwrap();
    let Some(data::Row::U8(pixels)) = test.row(0) else { panic!("u8 images") };
    let mut pgm = b"P5\n28 28\n255\n".to_vec();
    pgm.extend_from_slice(pixels);
    std::fs::write(d.join("seven.pgm"), pgm).unwrap();
    let out = host(&["predict", "m.mlp", "seven.pgm"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("seven.pgm: 7 ("), "{}", stdout(&out));

    let out = host(&["inspect", "m.mlp"], d);
    assert!(stdout(&out).contains("784x64"), "{}", stdout(&out));

    // int8 keeps the accuracy (issue bound: at most 0.3 pp lost, >= 99% top-1 agreement) and
    // classifies the digit image through the integer input path.
    let out = host(&["quantize", "m.mlp", "--out", "q.mlp", "--data", mnist, "--json"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let q: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let (f, i) = (q["f32_accuracy"].as_f64().unwrap(), q["int8_accuracy"].as_f64().unwrap());
    assert_eq!(f, trained_acc);
    assert!(f - i <= 0.003, "int8 lost {:.2} pp", 100.0 * (f - i));
    assert!(q["changed_predictions"].as_u64().unwrap() <= 100, "{q}");
    // A quarter of the f32 size plus per-channel quantization parameters.
    assert!(q["int8_bytes"].as_u64().unwrap() * 3 < q["f32_bytes"].as_u64().unwrap(), "{q}");
    let out = host(&["predict", "q.mlp", "seven.pgm"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("seven.pgm: 7 ("), "{}", stdout(&out));
}
