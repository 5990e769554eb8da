//! Criterion benches of the GPU path (`gpu::GpuTrainer`), next to `cpu.rs`'s groups:
//!
//! - `gpu_training_step`: one training step (Adam, cross-entropy) of 784-256-10 and
//!   784-1024-1024-10 at batch 256 and 8192, timed as 8-step epochs divided by 8 (the first
//!   step of an epoch runs as plain launches, the others as replays of a CUDA graph).
//! - `gpu_epoch`: one epoch of the tutorial recipe (784-256-10, batch 256, 60,000 samples,
//!   no evaluation), data resident on the device.
//! - `gpu_inference`: eval-mode forward + loss + accuracy of 10,000 samples in one chunk.
//!
//! - then one line per training-step shape: its achieved TFLOP/s (the step's dense products,
//!   2·batch·fan-in·width each, three per layer but two in the first) next to cuBLAS's
//!   SGEMM rate on the step's largest product, measured in the same run.
//!
//! `cargo bench -p benches --bench gpu` (synthetic data, or MNIST with `MNIST_DIR`);
//! `MLP_GPU_TF32=1` lets cuBLAS use TF32. Without a usable GPU it prints why and runs
//! nothing, so `cargo bench -p benches -- --test` passes on machines without CUDA.

use std::time::{Duration, Instant};

use benches::{he_params, labels, raw_u8, tutorial_topology, BenchData, TEST_SAMPLES, TRAIN_SAMPLES};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use gpu::{DeviceDataset, Features, Gpu, GpuOptions, GpuTrainer, Start};
use mlp::{Activation, LayerSpec, Loss, Optimizer, Rng, Topology, TrainConfig};

const STEPS: usize = 8;

fn trainer(g: &Gpu, t: &Topology, batch: usize) -> GpuTrainer {
    let params = he_params(t);
    let config = TrainConfig::new(Loss::CrossEntropy, Optimizer::adam(), batch);
    let state = vec![0.0f32; config.optimizer.state_len(t.param_len())];
    let start = Start { params: &params, running: &[], optimizer_state: &state, steps: 0 };
    let n = t.input();
    GpuTrainer::new(g, t, config, start, &vec![1.0 / 255.0; n], &vec![0.0; n]).expect("a GPU trainer")
}

fn upload(g: &Gpu, data: &BenchData, samples: usize) -> DeviceDataset {
    let x = raw_u8(&data.train, samples);
    let y = labels(&data.train, samples);
    g.upload_dataset(Features::U8(&x), &y, benches::INPUTS).expect("uploading the bench data")
}

fn training_steps(c: &mut Criterion, g: &Gpu, data: &BenchData) {
    let mut group = c.benchmark_group("gpu_training_step");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for (name, topology) in [("784-256-10", tutorial_topology()), ("784-1024-1024-10", wide())] {
        for batch in [256usize, 8192] {
            // 8 distinct batches of the training set, visited in order.
            let dataset = upload(g, data, (batch * STEPS).min(TRAIN_SAMPLES));
            let order: Vec<u32> = (0..dataset.len() as u32).cycle().take(batch * STEPS).collect();
            let mut tr = trainer(g, &topology, batch);
            let lrs = vec![1e-3f32; STEPS];
            let mut rng = Rng::new(1);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new(name, format!("batch {batch}")), |b| {
                b.iter_custom(|iters| {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        tr.epoch(&dataset, &order, batch, false, &lrs, &mut rng).expect("an epoch");
                    }
                    t0.elapsed() / STEPS as u32
                })
            });
        }
    }
    group.finish();
}

/// The step's achieved rate against cuBLAS's on its largest product, printed (criterion
/// reports times; this puts them next to what the hardware's SGEMM reaches).
fn rates(g: &Gpu, data: &BenchData) {
    for (name, topology) in [("784-256-10", tutorial_topology()), ("784-1024-1024-10", wide())] {
        let batch = 8192;
        let dataset = upload(g, data, (batch * STEPS).min(TRAIN_SAMPLES));
        let order: Vec<u32> = (0..dataset.len() as u32).cycle().take(batch * STEPS).collect();
        let mut tr = trainer(g, &topology, batch);
        let lrs = vec![1e-3f32; STEPS];
        let mut rng = Rng::new(1);
        tr.epoch(&dataset, &order, batch, false, &lrs, &mut rng).expect("an epoch");
        let epochs = 5;
        let t0 = Instant::now();
        for _ in 0..epochs {
            tr.epoch(&dataset, &order, batch, false, &lrs, &mut rng).expect("an epoch");
        }
        let step = t0.elapsed().as_secs_f64() / (epochs * STEPS) as f64;
        let mut flops = 0.0;
        let mut largest = (0, 0);
        for (i, l) in topology.layers().iter().enumerate() {
            let (k, n) = (topology.fan_in(i), l.outputs);
            let products = if i == 0 { 2.0 } else { 3.0 };
            flops += products * 2.0 * (batch * k * n) as f64;
            largest = largest.max((k * n, i));
        }
        let (k, n) = (topology.fan_in(largest.1), topology.layers()[largest.1].outputs);
        let blas = g.sgemm_tflops(n, batch, k, 20).expect("timing SGEMM");
        println!(
            "gpu_rate {name} batch {batch}: step {:.3} ms, {:.2} TFLOP/s achieved; SGEMM {n}x{batch}x{k}: {blas:.2} TFLOP/s",
            step * 1e3,
            flops / step / 1e12
        );
    }
}

fn wide() -> Topology {
    Topology::new(
        784,
        &[
            LayerSpec::dense(1024, Activation::Relu),
            LayerSpec::dense(1024, Activation::Relu),
            LayerSpec::dense(10, Activation::Softmax),
        ],
    )
    .expect("784-1024-1024-10")
}

fn epoch(c: &mut Criterion, g: &Gpu, data: &BenchData) {
    let mut group = c.benchmark_group("gpu_epoch");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    let dataset = upload(g, data, TRAIN_SAMPLES);
    let batch = 256;
    let mut tr = trainer(g, &tutorial_topology(), batch);
    let lrs = vec![1e-3f32; TRAIN_SAMPLES.div_ceil(batch)];
    let mut order: Vec<u32> = (0..TRAIN_SAMPLES as u32).collect();
    let mut rng = Rng::new(7);
    rng.shuffle(&mut order);
    group.throughput(Throughput::Elements(TRAIN_SAMPLES as u64));
    group.bench_function("tutorial 784-256-10 batch 256", |b| {
        b.iter(|| tr.epoch(&dataset, &order, batch, false, &lrs, &mut rng).expect("an epoch"))
    });
    group.finish();
}

fn inference(c: &mut Criterion, g: &Gpu, data: &BenchData) {
    let mut group = c.benchmark_group("gpu_inference");
    group.sample_size(10).measurement_time(Duration::from_secs(3));
    let x = raw_u8(&data.test, TEST_SAMPLES);
    let y = labels(&data.test, TEST_SAMPLES);
    let dataset = g.upload_dataset(Features::U8(&x), &y, benches::INPUTS).expect("uploading the test set");
    let mut tr = trainer(g, &tutorial_topology(), 256);
    group.throughput(Throughput::Elements(TEST_SAMPLES as u64));
    group.bench_function(BenchmarkId::new("784-256-10", format!("batch {TEST_SAMPLES}")), |b| {
        b.iter(|| tr.evaluate(&dataset, TEST_SAMPLES).expect("an evaluation"))
    });
    group.finish();
}

fn main() {
    let tf32 = std::env::var_os("MLP_GPU_TF32").is_some_and(|v| v != "0");
    let g = match Gpu::new(0, GpuOptions { tf32 }) {
        Ok(g) => g,
        Err(e) => {
            println!("gpu benches skipped: {e}");
            return;
        }
    };
    println!("gpu benches on {}", g.describe());
    let data = BenchData::load().expect("loading the bench data");
    let mut c = Criterion::default().configure_from_args();
    training_steps(&mut c, &g, &data);
    rates(&g, &data);
    epoch(&mut c, &g, &data);
    inference(&mut c, &g, &data);
    c.final_summary();
}
