//! The command line's guardrails: absurd sizes refused before allocating, options checked
//! before training, outputs never lost, one bad input not stopping the rest, closed pipes and
//! Ctrl-C handled, evaluation needing only what it evaluates.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{host, stderr, stdout, write_idx};

/// A 2-class, 2-feature table with a `kind` label column.
fn write_csv(dir: &Path) {
    let mut csv = String::from("a,b,kind\n");
    let mut rng = mlp::Rng::new(5);
    for i in 0..200 {
        let (label, shift) = if i % 2 == 0 { ("left", -2.0) } else { ("right", 2.0) };
        csv += &format!("{},{},{label}\n", shift + rng.normal() * 0.5, rng.normal());
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
}

#[test]
fn hidden_widths_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let out = host(&["train", "--csv", "t.csv", "--label", "kind", "--hidden", "0", "--epochs", "1"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--hidden none"), "{}", stderr(&out));
    let out = host(&["train", "--csv", "t.csv", "--label", "kind", "--hidden", "16,x"], d);
    assert!(!out.status.success() && stderr(&out).contains("'x' is not a layer width"), "{}", stderr(&out));

    // No hidden layer, spelled out: softmax regression (2*2 + 2 parameters).
    let args = ["train", "--csv", "t.csv", "--label", "kind", "--hidden", "none", "--epochs", "2"];
    let out = host(&[&args[..], &["--no-plots", "-q", "--metrics", "m.json"]].concat(), d);
    assert!(out.status.success(), "{}", stderr(&out));
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
    assert_eq!(metrics["parameters"], 6);
}

#[test]
fn an_absurd_network_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let started = Instant::now();
    let out =
        host(&["train", "--csv", "t.csv", "--label", "kind", "--hidden", "1048576,1048576", "--no-plots"], d);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("needs about") && err.contains("GiB") && err.contains("--hidden"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(!d.join("model.mlp").exists());
}

#[test]
fn negative_numbers_reach_the_tools_own_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    for (flag, value, expected) in [
        ("--lr", "-1", "--lr -1 must be a positive number"),
        ("--weight-decay", "-0.1", "--weight-decay -0.1 must be 0 or a positive number"),
        ("--grad-clip", "-1", "--grad-clip -1 must be a positive number"),
        ("--dropout", "-0.5", "--dropout -0.5 is outside [0, 1)"),
    ] {
        let out = host(&["train", "--csv", "t.csv", "--label", "kind", flag, value], d);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{flag} {value}: {}", stderr(&out));
    }
}

#[test]
fn adamw_defaults_to_pytorchs_weight_decay() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let base = ["train", "--csv", "t.csv", "--label", "kind", "--epochs", "1", "--no-plots", "-q"];
    let decay = |extra: &[&str]| -> f64 {
        let out = host(&[&base[..], extra, &["--metrics", "m.json"]].concat(), d);
        assert!(out.status.success(), "{}", stderr(&out));
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
        m["config"]["weight_decay"].as_f64().unwrap()
    };
    assert!((decay(&["--optimizer", "adamw"]) - 0.01).abs() < 1e-9);
    assert_eq!(decay(&["--optimizer", "adamw", "--weight-decay", "0"]), 0.0);
    assert_eq!(decay(&["--optimizer", "adam"]), 0.0);
}

#[test]
fn unwritable_outputs_are_found_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    // A path under a regular file can never be created, even by root.
    for (flag, path) in
        [("--metrics", "t.csv/m.json"), ("--out", "t.csv/model.mlp"), ("--plots", "t.csv/plots")]
    {
        let args = ["train", "--csv", "t.csv", "--label", "kind", "--epochs", "1", "-q", flag, path];
        let out = host(&args, d);
        assert!(!out.status.success(), "{flag} {path} was accepted");
        assert!(stderr(&out).contains("t.csv/"), "{flag}: {}", stderr(&out));
        assert!(
            !stdout(&out).lines().any(|l| l.starts_with("epoch")),
            "{flag}: trained before failing:\n{}",
            stdout(&out)
        );
    }
}

#[test]
fn quantize_does_not_overwrite_its_input_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let out = host(&["train", "--csv", "t.csv", "--label", "kind", "--epochs", "2", "--no-plots", "-q"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let original = std::fs::read(d.join("model.mlp")).unwrap();
    let q = ["quantize", "model.mlp", "--out", "./model.mlp", "--csv", "t.csv", "--label", "kind"];
    let out = host(&q, d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("model.mlp")).unwrap(), original, "the f32 model changed");
    let out = host(&[&q[..], &["--force"]].concat(), d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(std::fs::read(d.join("model.mlp")).unwrap(), original);
}

/// A model of 784 inputs trained on a tiny IDX folder, for the image commands.
fn digit_model(d: &Path) {
    write_idx(&d.join("idx"), 300, 100);
    let out =
        host(&["train", "--data", "idx", "--recipe", "tutorial", "--epochs", "1", "--no-plots", "-q"], d);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn predict_reports_each_bad_image_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    digit_model(d);
    let mut pgm = b"P5\n28 28\n255\n".to_vec();
    pgm.extend((0..784).map(|i| if (i % 28) > 10 && (i % 28) < 16 { 255 } else { 0 }));
    std::fs::write(d.join("a.pgm"), &pgm).unwrap();
    std::fs::write(d.join("bad.png"), b"not an image").unwrap();
    std::fs::write(d.join("b.pgm"), &pgm).unwrap();
    let out = host(&["predict", "model.mlp", "a.pgm", "bad.png", "b.pgm"], d);
    assert!(!out.status.success(), "a bad image must make the exit status non-zero");
    assert!(stdout(&out).contains("a.pgm: ") && stdout(&out).contains("b.pgm: "), "{}", stdout(&out));
    assert!(stderr(&out).contains("bad.png") && stderr(&out).contains("1 of 3 images"), "{}", stderr(&out));
}

#[test]
fn eval_needs_only_the_split_it_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    digit_model(d);
    // A broken training file does not stop an evaluation on the test split.
    std::fs::write(d.join("idx/train-images-idx3-ubyte"), b"broken").unwrap();
    let out = host(&["eval", "model.mlp", "--data", "idx", "--json"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(eval["samples"], 100);
    // --train-split names the broken file.
    let out = host(&["eval", "model.mlp", "--data", "idx", "--train-split"], d);
    assert!(!out.status.success() && stderr(&out).contains("train-images-idx3-ubyte"), "{}", stderr(&out));
}

#[test]
fn eval_of_a_tabular_model_without_data_asks_for_it_and_downloads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let out = host(&["train", "--csv", "t.csv", "--label", "kind", "--epochs", "1", "--no-plots", "-q"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = host(&["eval", "model.mlp"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--csv FILE"), "{}", stderr(&out));
    assert!(!d.join("data").exists(), "eval started a download");
}

/// `host train ... | head -1`: the reader goes away after one line; training goes on
/// quietly and saves its model.
#[test]
fn a_closed_stdout_does_not_lose_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["train", "--csv", "t.csv", "--label", "kind", "--epochs", "1000", "--no-plots", "-q"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // The reader (and so the pipe's only read end) is dropped here; 1000 epoch lines (about
    // 100 KB) do not fit in the pipe's buffer, so later writes meet the closed pipe.
    let out = child.wait_with_output().unwrap();
    assert!(!first.is_empty());
    assert!(out.status.success(), "exit {:?}: {}", out.status, stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(d.join("model.mlp").exists(), "the model was not saved");
}

/// Ctrl-C during training: the metrics so far are written, the message says how to resume,
/// the exit status is 130, and the resumed run finishes.
#[test]
fn ctrl_c_writes_the_metrics_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("idx"), 6000, 100);
    let args = [
        "train",
        "--data",
        "idx",
        "--recipe",
        "tutorial",
        "--epochs",
        "500",
        "--no-plots",
        "-q",
        "--metrics",
        "m.json",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("epoch  2/") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "training ended early");
    }
    // SAFETY: kill sends a signal to our own child, whose pid we hold.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?} to stop", started.elapsed());
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("interrupted") && err.contains("resume with host train --resume model.mlp.ckpt"),
        "{err}"
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
    assert_eq!(m["interrupted"], true);
    let done = m["epochs"].as_array().unwrap().len();
    assert!(done >= 2, "{done} epochs in the metrics");
    let out = host(
        &[
            "train",
            "--resume",
            "model.mlp.ckpt",
            "--data",
            "idx",
            "--epochs",
            &(done + 1).to_string(),
            "-q",
            "--no-plots",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("epoch {:>2}/", done + 1)), "{}", stdout(&out));
}

/// `--resume` alone continues a run: its settings, data and output path come from the
/// checkpoint; an option that would change the run is an error naming it.
#[test]
fn resume_restores_the_run_and_refuses_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let args =
        ["train", "--csv", "t.csv", "--label", "kind", "--hidden", "8", "--epochs", "2", "--no-plots", "-q"];
    let out = host(&[&args[..], &["--out", "tab.mlp"]].concat(), d);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = std::fs::read(d.join("tab.mlp")).unwrap();

    for (extra, flag) in [
        (&["--lr", "0.5"][..], "--lr"),
        (&["--hidden", "32"][..], "--hidden"),
        (&["--optimizer", "sgd", "--batch-size", "4"][..], "--optimizer, --batch-size"),
    ] {
        let out = host(&[&["train", "--resume", "tab.mlp.ckpt", "--epochs", "3"][..], extra].concat(), d);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(stderr(&out).contains(flag) && stderr(&out).contains("resumed run"), "{}", stderr(&out));
    }
    let out = host(&["train", "--resume", "tab.mlp.ckpt", "--epochs", "3", "--csv", "other.csv"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--csv other.csv") && stderr(&out).contains("t.csv"), "{}", stderr(&out));

    // No data option: the CSV, not MNIST; no --out: the run's own file, not model.mlp.
    let out = host(&["train", "--resume", "tab.mlp.ckpt", "--epochs", "3", "--no-plots", "-q"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("epoch  3/3"), "{}", stdout(&out));
    assert!(!d.join("model.mlp").exists(), "saved to model.mlp instead of the run's --out");
    assert_ne!(std::fs::read(d.join("tab.mlp")).unwrap(), first, "tab.mlp was not updated");
    assert!(!d.join("data").exists(), "the resumed run looked for MNIST");
}
