//! Quantization-aware training (`host train --qat`) end to end on a small MNIST-shaped IDX
//! folder (no MNIST needed): the int8 accuracy it reports is what `host quantize` then gives,
//! and bad `--qat` values and the GPU path are refused with clear errors.

mod common;

use common::{host, stderr, stdout, write_idx};

/// The percentage after `marker` in `text` (e.g. "int8 " in "f32 97.00%, int8 96.50%").
fn percent_after(text: &str, marker: &str) -> f64 {
    let at = text.find(marker).unwrap_or_else(|| panic!("no {marker:?} in {text}")) + marker.len();
    let rest = &text[at..];
    rest[..rest.find('%').unwrap()].trim().parse().unwrap()
}

#[test]
fn a_qat_run_reports_the_int8_accuracy_that_host_quantize_then_gives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("mnist"), 600, 200);
    let args = [
        "train",
        "--data",
        "mnist",
        "--hidden",
        "16",
        "--activation",
        "sigmoid",
        "--epochs",
        "4",
        "--lr",
        "0.01",
    ];
    let out = host(&[&args[..], &["--qat", "2", "--batch-size", "32", "--no-plots", "-q"]].concat(), d);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("qat last 2 epochs"), "{text}");
    let reported = percent_after(&text, "int8 test accuracy after QAT:");
    assert!(reported > 90.0, "the blobs are easy: {text}");
    let q = host(&["quantize", "model.mlp", "--out", "model8.mlp", "--data", "mnist"], d);
    let qtext = stdout(&q);
    assert!(q.status.success(), "{qtext}{}", stderr(&q));
    assert_eq!(percent_after(&qtext, "int8 "), reported, "{qtext}");
}

#[test]
fn qat_with_bad_epochs_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("mnist"), 50, 10);
    let cases: [(&[&str], &str); 2] = [
        (&["--qat", "0"], "--qat needs at least 1 epoch"),
        (
            &["--epochs", "3", "--qat", "5"],
            "--qat 5 asks for more quantization-aware epochs than the run has (--epochs 3)",
        ),
    ];
    for (extra, message) in cases {
        let out = host(&[&["train", "--data", "mnist", "--hidden", "8", "-q"], extra].concat(), d);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(message), "{extra:?}: {err}");
        assert!(!d.join("model.mlp").exists());
    }
    let out = host(&["train", "--data", "mnist", "--qat", "x", "-q"], d);
    assert!(!out.status.success() && stderr(&out).contains("--qat"), "{}", stderr(&out));
}

#[test]
fn the_gpu_path_refuses_qat() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("mnist"), 50, 10);
    for device in ["gpu", "gpu-emulator"] {
        let out = host(&["train", "--data", "mnist", "--hidden", "8", "--qat", "--device", device, "-q"], d);
        let err = stderr(&out);
        assert!(!out.status.success(), "{device}: {err}");
        assert!(
            err.contains("--qat (quantization-aware training) is not implemented on the GPU path"),
            "{err}"
        );
        assert!(err.contains("--device cpu"), "{err}");
        assert!(!d.join("model.mlp").exists());
    }
}

#[test]
fn qat_refuses_batch_norm_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("mnist"), 64, 10);
    let out = host(
        &["train", "--data", "mnist", "--hidden", "8", "--batch-norm", "--epochs", "1", "--qat", "-q"],
        d,
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("quantization-aware training does not support batch norm"), "{err}");
}
