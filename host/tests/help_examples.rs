//! Every example that `host <command> --help` shows runs, so the help can never again show a
//! command that fails. Epochs are cut to one (two for a resume) to keep the test short; each
//! example runs in a fresh folder holding what it names: an MNIST model, its checkpoint and
//! int8 version and digit images, or (for examples with `--csv`) an Iris-shaped table and a
//! model trained on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COMMANDS: [&str; 8] =
    ["train", "eval", "predict", "inspect", "compare", "quantize", "export", "download"];

fn host(args: &[String], dir: &Path, mnist: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .current_dir(dir)
        .env("MNIST_DIR", mnist)
        // MNIST's files stand in for the other IDX data sets (same format), so an example
        // with --dataset runs without the network.
        .env("FASHION_MNIST_DIR", mnist)
        .env("KMNIST_DIR", mnist)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `host ...` lines of a help text's examples, comments removed, split into words (a
/// line the help wrapped continues its command).
fn examples(help: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut inside = false;
    let mut open = false;
    for line in help.lines() {
        if line.starts_with("Example") {
            inside = true;
            continue;
        }
        let trimmed = line.trim_start();
        let command = trimmed.split('#').next().unwrap_or("");
        let words = command.split_whitespace().map(str::to_string);
        if inside && trimmed.starts_with("host ") {
            out.push(words.skip(1).collect());
            open = !trimmed.contains('#');
        } else if inside && open && !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.last_mut().expect("an example before").extend(words);
        } else {
            open = false;
        }
    }
    out
}

/// Cuts training to one epoch (two when resuming a one-epoch checkpoint).
fn short(mut args: Vec<String>) -> Vec<String> {
    if !matches!(args.first().map(String::as_str), Some("train" | "compare")) {
        return args;
    }
    let epochs = if args.iter().any(|a| a == "--resume") { "2" } else { "1" };
    match args.iter().position(|a| a == "--epochs") {
        Some(i) => args[i + 1] = epochs.to_string(),
        None => args.extend(["--epochs".to_string(), epochs.to_string()]),
    }
    args
}

fn run_ok(args: &[&str], dir: &Path, mnist: &Path) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = host(&args, dir, mnist);
    assert!(out.status.success(), "setup `host {}` failed:\n{}", args.join(" "), text(&out.stderr));
}

/// An Iris-shaped table: 4 features, a `species` column of 3 names, `n` rows.
fn iris(n: usize, seed: u64) -> String {
    let mut rng = mlp::Rng::new(seed);
    let mut csv = String::from("sepal_length,sepal_width,petal_length,petal_width,species\n");
    for i in 0..n {
        let (name, c) = [("setosa", 0.0), ("versicolor", 1.0), ("virginica", 2.0)][i % 3];
        let f: Vec<String> =
            (0..4).map(|k| format!("{:.2}", 4.0 + c * (k as f32 + 1.0) * 0.6 + rng.normal() * 0.2)).collect();
        csv += &format!("{},{name}\n", f.join(","));
    }
    csv
}

/// A 28x28 digit: a white bar on black.
fn digit() -> Vec<u8> {
    (0..784)
        .map(|i| if (10..16).contains(&(i % 28)) && (4..24).contains(&(i / 28)) { 255 } else { 0 })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
#[ignore = "needs MNIST_DIR"]
fn every_help_example_runs_mnist() {
    let mnist = PathBuf::from(std::env::var("MNIST_DIR").expect("MNIST_DIR"));
    let mnist = std::fs::canonicalize(mnist).unwrap();
    let root = tempfile::tempdir().unwrap();
    // What the image examples name.
    let images = root.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    run_ok(&["train", "--recipe", "tutorial", "--epochs", "1", "-q", "--no-plots"], &images, &mnist);
    run_ok(&["quantize", "model.mlp", "--out", "q8.mlp"], &images, &mnist);
    let mut pgm = b"P5\n28 28\n255\n".to_vec();
    pgm.extend(digit());
    std::fs::write(images.join("a.pgm"), &pgm).unwrap();
    let png = image::GrayImage::from_raw(28, 28, digit()).unwrap();
    for name in ["my-digit.png", "b.png", "c.png"] {
        png.save(images.join(name)).unwrap();
    }
    // What the table examples name.
    let tables = root.path().join("tables");
    std::fs::create_dir_all(&tables).unwrap();
    std::fs::write(tables.join("iris.csv"), iris(150, 1)).unwrap();
    std::fs::write(tables.join("iris-test.csv"), iris(30, 2)).unwrap();
    run_ok(
        &["train", "--csv", "iris.csv", "--label", "species", "--epochs", "1", "-q", "--no-plots"],
        &tables,
        &mnist,
    );
    std::fs::copy(tables.join("model.mlp"), tables.join("iris.mlp")).unwrap();
    let table = iris(6, 3);
    let rows: Vec<&str> = table.lines().map(|l| l.rsplit_once(',').map_or(l, |(f, _)| f)).collect();
    std::fs::write(tables.join("rows.csv"), rows.join("\n") + "\n").unwrap();

    let mut ran = 0;
    for command in COMMANDS {
        let out = host(&[command.to_string(), "--help".to_string()], &images, &mnist);
        let list = examples(&text(&out.stdout));
        assert!(!list.is_empty(), "`host {command} --help` shows no examples");
        for (k, example) in list.into_iter().enumerate() {
            let shown = format!("host {}", example.join(" "));
            if command == "download" {
                // No network here: the download is tested against a local server in
                // data/tests/download.rs.
                eprintln!("not run (needs the internet): {shown}");
                continue;
            }
            let args = short(example);
            let from = if args.iter().any(|a| a.starts_with("--csv")) { &tables } else { &images };
            let dir = root.path().join(format!("{command}-{k}"));
            copy_dir(from, &dir);
            let out = host(&args, &dir, &mnist);
            let err = text(&out.stderr);
            if args.iter().any(|a| a == "gpu") && err.contains("no CUDA device") {
                eprintln!("ran without a GPU (a clear error, as documented): {shown}");
                ran += 1;
                continue;
            }
            assert!(out.status.success(), "`{shown}` (run as `host {}`) failed:\n{err}", args.join(" "));
            ran += 1;
        }
    }
    assert!(ran >= 15, "only {ran} examples ran");
}
