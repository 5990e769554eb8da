//! Helpers shared by the tests that run the `host` binary: running it, reading its output,
//! and writing an MNIST-shaped IDX folder.
#![allow(dead_code)] // each test file uses some of them

use std::path::Path;
use std::process::{Command, Output};

use data::idx::encode_u8;

/// Runs `host args...` in `dir`, with no MNIST_DIR (so nothing finds the real data set by
/// accident) and rayon's default thread count.
pub fn host(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .current_dir(dir)
        .env_remove("MNIST_DIR")
        .env_remove("RAYON_NUM_THREADS")
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An MNIST-shaped IDX folder (raw files, `train` and `t10k`) of `train` and `test` 28x28
/// images in 10 classes, each class a blob of lit pixels at its own place.
pub fn write_idx(dir: &Path, train: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, count) in [("train", train), ("t10k", test)] {
        let mut pixels = vec![0u8; count * 784];
        let mut labels = vec![0u8; count];
        for (i, (img, label)) in pixels.chunks_mut(784).zip(&mut labels).enumerate() {
            let class = i % 10;
            *label = class as u8;
            for p in 0..60 {
                img[(class * 70 + p + (i * 7 + p * 13) % 20) % 784] = 200;
            }
        }
        let images = encode_u8(&[count as u32, 28, 28], &pixels);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), encode_u8(&[count as u32], &labels))
            .unwrap();
    }
}
