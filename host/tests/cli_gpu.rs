//! `host train --device gpu` where no GPU can be used: a clear error and a non-zero exit,
//! never a panic. `CUDA_VISIBLE_DEVICES=-1` hides every GPU, so this checks the same path on
//! a machine with no CUDA at all and on one with a GPU.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

fn host(args: &[&str], dir: &Path) -> Output {
    Command::cargo_bin("host")
        .unwrap()
        .args(args)
        .current_dir(dir)
        .env_remove("MNIST_DIR")
        .env("CUDA_VISIBLE_DEVICES", "-1")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn table(dir: &Path) {
    let mut csv = String::from("a,b,label\n");
    for i in 0..40 {
        csv += &format!("{},{},{}\n", i as f32 * 0.1, 1.0 - i as f32 * 0.05, i % 2);
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
}

#[test]
fn training_on_a_gpu_without_a_cuda_device_fails_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    table(dir.path());
    let out = host(
        &["train", "--device", "gpu", "--csv", "t.csv", "--hidden", "4", "--epochs", "1", "-q"],
        dir.path(),
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "--device gpu succeeded with every GPU hidden:\n{err}");
    assert!(err.contains("no CUDA device found: "), "{err}");
    assert!(err.contains("--device cpu"), "the error should say how to train instead:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!dir.path().join("model.mlp").exists(), "no model is written");
}

#[test]
fn tf32_is_a_gpu_option() {
    let dir = tempfile::tempdir().unwrap();
    table(dir.path());
    let out = host(&["train", "--tf32", "--csv", "t.csv", "--epochs", "1", "-q"], dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tf32 applies to --device gpu"), "{}", stderr(&out));
}

#[test]
fn train_help_shows_the_device_option() {
    let dir = tempfile::tempdir().unwrap();
    let out = host(&["train", "--help"], dir.path());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("--device <DEVICE>") && help.contains("gpu"), "{help}");
}

#[test]
fn the_gpu_emulator_trains_and_says_it_is_not_a_gpu() {
    let dir = tempfile::tempdir().unwrap();
    table(dir.path());
    let args = ["train", "--csv", "t.csv", "--hidden", "4", "--epochs", "2", "--no-plots", "--seed", "3"];
    let out = host(&[&args[..], &["--device", "gpu-emulator", "--out", "emu.mlp"]].concat(), dir.path());
    let (so, err) = (String::from_utf8_lossy(&out.stdout).into_owned(), stderr(&out));
    assert!(out.status.success(), "{so}\n{err}");
    assert!(format!("{so}{err}").contains("not a GPU"), "the run must say it is an emulator:\n{so}\n{err}");
    assert!(dir.path().join("emu.mlp").exists());
    // The model file it wrote is a valid one.
    let inspect = host(&["inspect", "emu.mlp"], dir.path());
    assert!(inspect.status.success(), "{}", stderr(&inspect));
}
