//! The tutorial recipe (784-256-10 ReLU, Adam 1e-3, batch 256, 10 epochs) through host's
//! training loop on the CPU and with `--device gpu`: the GPU run must reach the CPU run's
//! test accuracy within 0.2 percentage points. Needs a CUDA GPU and MNIST (`MNIST_DIR`,
//! default `../shared/data/mnist` beside the repository): `cargo test -p gpu -- --ignored`.
//!
//! (Not named after the data set on purpose: CI runs `--ignored mnist` on a machine
//! without a GPU.)

use std::ops::ControlFlow;
use std::path::PathBuf;

use host::train::{train, train_on, Device, DeviceArg, RunData, RunOptions, TrainSettings, Trained};

fn digits_dir() -> PathBuf {
    std::env::var_os("MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist"))
}

fn report(name: &str, t: &Trained) -> f64 {
    let acc = t.history.last().and_then(|m| m.test_accuracy).expect("a test accuracy");
    let secs: Vec<String> = t.history.iter().map(|m| format!("{:.4}", m.seconds)).collect();
    eprintln!("{name}: test accuracy {:.2}%, epoch seconds [{}]", 100.0 * acc, secs.join(", "));
    acc
}

#[test]
#[ignore = "needs a CUDA GPU and MNIST_DIR"]
fn tutorial_recipe_on_the_gpu_reaches_the_cpu_accuracy() {
    let dir = digits_dir();
    let (train_set, test_set) = data::idx::load_mnist(&dir)
        .unwrap_or_else(|e| panic!("MNIST in {} (set MNIST_DIR): {e}", dir.display()));
    let settings = TrainSettings::tutorial();
    let data = RunData::new(train_set, Some(test_set), &settings).unwrap();
    let go = |_: &_| ControlFlow::Continue(());
    let cpu = train(&settings, &data, None, &RunOptions::default(), &mut go.clone()).unwrap();
    let gpu = Device::open(DeviceArg::Gpu, false).unwrap();
    eprintln!("{}", gpu.describe().unwrap_or_default());
    let on_gpu = train_on(&gpu, &settings, &data, None, &RunOptions::default(), &mut go.clone()).unwrap();
    let tf32 = Device::open(DeviceArg::Gpu, true).unwrap();
    let on_tf32 = train_on(&tf32, &settings, &data, None, &RunOptions::default(), &mut go.clone()).unwrap();
    let (a_cpu, a_gpu, a_tf32) =
        (report("cpu", &cpu), report("gpu fp32", &on_gpu), report("gpu tf32", &on_tf32));
    assert!((a_gpu - a_cpu).abs() <= 0.002, "gpu {a_gpu} vs cpu {a_cpu}: more than 0.2 pp apart");
    assert!(a_gpu >= 0.977, "the tutorial recipe should reach 97.7% on the GPU, got {a_gpu}");
    assert!((a_tf32 - a_cpu).abs() <= 0.003, "tf32 {a_tf32} vs cpu {a_cpu}");
    assert_eq!(on_gpu.steps, cpu.steps);
}
