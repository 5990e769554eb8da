//! Criterion benches of the CPU paths, in samples per second:
//!
//! - `f32_inference`: the tutorial model 784-256-10 (`mlp::Model::forward`) with
//!   `mlp::Portable`, `cpu::Gemm` (our packed SGEMM alone) and
//!   `cpu::Fast` (what the host trains with: GEMV, zero-skipping or SGEMM per
//!   product) and `cpu::Prepared` (what it infers with: `Fast` with the model's wide
//!   layers transposed once), at batch 1 and 10,000 (the MNIST test set).
//! - `f32_products`: the first layer's forward and weight gradient alone (784→256, batch 256,
//!   MNIST rows): `gemm` (ours), `matrixmultiply` (`cpu::Matrixmultiply`) and
//!   `fast`. Names: `{forward,weight_gradient}/{gemm,matrixmultiply,fast}`.
//! - `f32_gemm`: dense products (random values, batch 256) of the default recipe's layers
//!   784→256, 512→256 and 256→10, ours against matrixmultiply. Names:
//!   `{inputs}x{outputs}_{forward,weight_gradient,input_gradient}/{gemm,matrixmultiply}`.
//! - `int8_inference`: the same model quantized to int8 (`mlp::int8::forward`) with
//!   `mlp::int8::PortableInt8` and `cpu::FastInt8` (each vector path the CPU
//!   has; on AVX-512 also the packed sparse VNNI kernel alone, `fast_avx512vnni_sparse`, what
//!   CPUs without AMX run at 10,000), at batch 1 and 10,000 (input already quantized).
//! - `training`: one `mlp::Trainer::step` (Adam, cross-entropy) at batch 256, Portable, Gemm,
//!   Matrixmultiply and Fast; Gemm and Fast run as `host train` runs them (inside
//!   `cpu::pool::with_spinning_pool`).
//! - `epoch`: one epoch of the tutorial recipe through `host::train::train` (Fast, batch 256,
//!   60,000 samples, no evaluation), plain (`tutorial_gemm`) and with `--augment`'s default
//!   distortions (`tutorial_gemm_augmented`); and the data loader's epoch alone, plain and
//!   distorting (`loader`, `loader_augmented`): what augmentation adds to the epoch.
//!
//! `cargo bench -p benches` (synthetic data) or `MNIST_DIR=../shared/data/mnist cargo bench
//! -p benches`; one group: `cargo bench -p benches -- int8_inference`. `Gemm`, `Fast` and
//! `FastInt8` run on rayon's threads (`RAYON_NUM_THREADS`, or `cpu::pool::Threads`), `Matrixmultiply` on its own
//! (`MATMUL_NUM_THREADS`); `Portable` and `PortableInt8` are single-threaded. Compare
//! kernels with `RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1`.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::OnceLock;
use std::time::Duration;

use benches::{
    he_params, labels, quantize_int8, raw_u8, scaled_f32, tutorial_topology, BenchData, TEST_SAMPLES,
};
use cpu::int8::Int8Strategy;
use cpu::isa::Level;
use cpu::pool::with_spinning_pool;
use cpu::{Fast, FastInt8, Gemm, Matrixmultiply, Prepared};
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use data::augment::Augment;
use data::{DataLoader, LoaderOptions, Normalization};
use host::train::{RunData, RunOptions, TrainSettings};
use mlp::int8::{self, Int8Kernels, Int8Model, PortableInt8};
use mlp::{
    Kernels, Loss, Model, Optimizer, Portable, Rng, Shape, Targets, TrainBuffers, TrainConfig, Trainer,
};

/// Batch sizes of the inference groups: one sample (latency) and the MNIST test set.
const INFER_BATCHES: [usize; 2] = [1, TEST_SAMPLES];
/// Batch size of the training step (the tutorial's).
const TRAIN_BATCH: usize = 256;
/// Calibration samples for the int8 model.
const CALIBRATION: usize = 1000;

fn data() -> &'static BenchData {
    static DATA: OnceLock<BenchData> = OnceLock::new();
    DATA.get_or_init(|| BenchData::load().expect("loading the bench data"))
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, warm_up: u64, measure: u64) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(warm_up))
        .measurement_time(Duration::from_secs(measure));
}

/// The 10,000-sample batches take up to 0.8 s an iteration on one core: flat sampling and
/// enough time for criterion's minimum of 10 samples.
fn big_batch(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, batch: usize, measure: u64) {
    if batch > 1 {
        group.sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(measure));
    }
}

fn f32_inference(c: &mut Criterion) {
    let t = tutorial_topology();
    let params = he_params(&t);
    let model = Model::new(&t, &params, &[]).expect("model");
    let input = scaled_f32(&data().test, TEST_SAMPLES);
    let mut group = c.benchmark_group("f32_inference");
    configure(&mut group, 1, 3);
    let (gemm, fast, prepared) = (Gemm::new(), Fast::new(), Prepared::new(&model));
    let variants: [(&str, &dyn Kernels); 4] =
        [("portable", &Portable), ("gemm", &gemm), ("fast", &fast), ("prepared", &prepared)];
    for batch in INFER_BATCHES {
        big_batch(&mut group, batch, 5);
        group.throughput(Throughput::Elements(batch as u64));
        let x = &input[..batch * t.input()];
        let mut ws = vec![0.0; t.infer_workspace_len(batch)];
        for (name, kernels) in variants {
            group.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter(|| {
                    let out = model.forward(kernels, black_box(x), batch, &mut ws).expect("forward");
                    black_box(out[0]);
                })
            });
        }
    }
    group.finish();
}

fn int8_inference(c: &mut Criterion) {
    let t = tutorial_topology();
    let params = he_params(&t);
    let file = quantize_int8(&t, &params, &scaled_f32(&data().train, CALIBRATION)).expect("quantize");
    let q = Int8Model::parse(&file).expect("parse the int8 model");
    let raw = raw_u8(&data().test, TEST_SAMPLES);
    let mut input = vec![0i8; raw.len()];
    q.quantize_u8(&raw, &mut input).expect("quantize the input");
    let mut group = c.benchmark_group("int8_inference");
    configure(&mut group, 1, 3);
    // Core's portable loops, then cpu::FastInt8 on every vector path this CPU
    // has (fastest first: the first one is what `FastInt8::new()` picks: GEMV for small
    // batches, packed AMX tiles for large ones where the CPU and OS allow AMX-INT8), and the
    // packed sparse VNNI kernel alone (large batches only: it repacks the weights).
    let mut variants: Vec<(String, Box<dyn Int8Kernels>, bool)> =
        vec![("portable".into(), Box::new(PortableInt8), false)];
    for k in FastInt8::available() {
        let name = match k.level() {
            Level::Avx512 => "fast_avx512vnni",
            Level::Avx2 => "fast_avx2",
            Level::Baseline => continue,
        };
        {
            variants.push((name.into(), Box::new(k), false));
            if k.level() == Level::Avx512 {
                variants.push((
                    "fast_avx512vnni_sparse".into(),
                    Box::new(k.with_strategy(Int8Strategy::Sparse)),
                    true,
                ));
            }
        }
    }
    for batch in INFER_BATCHES {
        big_batch(&mut group, batch, 9);
        group.throughput(Throughput::Elements(batch as u64));
        let x = &input[..batch * t.input()];
        let mut act = vec![0i8; q.act_workspace_len(batch)];
        let mut acc = vec![0i32; q.acc_workspace_len(batch)];
        for (name, kernels, _) in variants.iter().filter(|v| batch > 1 || !v.2) {
            group.bench_function(BenchmarkId::new(name.as_str(), batch), |b| {
                b.iter(|| {
                    let out = int8::forward(kernels.as_ref(), &q, black_box(x), batch, &mut act, &mut acc)
                        .expect("forward");
                    black_box(out[0]);
                })
            });
        }
    }
    group.finish();
}

/// The first layer's two big products on their own (784→256, batch 256, MNIST rows): where
/// `Fast`'s zero-skipping and matrixmultiply's SGEMM differ. Run single-threaded
/// (`RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1`) to compare the kernels rather than threading.
fn f32_products(c: &mut Criterion) {
    let (batch, inputs, outputs) = (TRAIN_BATCH, 784, 256);
    let s = Shape { batch, inputs, outputs };
    let x = scaled_f32(&data().train, batch);
    let mut rng = Rng::new(5);
    let w: Vec<f32> = (0..inputs * outputs).map(|_| rng.uniform_in(-0.1, 0.1)).collect();
    let dy: Vec<f32> = (0..batch * outputs).map(|_| rng.uniform_in(-0.1, 0.1)).collect();
    let bias = vec![0.1; outputs];
    let (mut y, mut dw, mut db) =
        (vec![0.0; batch * outputs], vec![0.0; inputs * outputs], vec![0.0; outputs]);
    let mut group = c.benchmark_group("f32_products");
    configure(&mut group, 1, 3);
    group.throughput(Throughput::Elements(batch as u64));
    let (gemm, fast) = (Gemm::new(), Fast::new());
    let variants: [(&str, &dyn Kernels); 3] =
        [("gemm", &gemm), ("matrixmultiply", &Matrixmultiply), ("fast", &fast)];
    for (name, kernels) in variants {
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| kernels.dense_forward(s, black_box(&x), &w, &bias, &mut y))
        });
        group.bench_function(BenchmarkId::new("weight_gradient", name), |b| {
            b.iter(|| kernels.dense_backward_params(s, black_box(&x), &dy, &mut dw, &mut db))
        });
    }
    group.finish();
}

/// Dense products of the default recipe's shapes (batch 256, random dense values), our SGEMM
/// (`gemm`) against matrixmultiply's: each layer's forward, weight gradient and input
/// gradient. Names: `{inputs}x{outputs}_{forward,weight_gradient,input_gradient}/{gemm,
/// matrixmultiply}`.
fn f32_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("f32_gemm");
    configure(&mut group, 1, 2);
    group.throughput(Throughput::Elements(TRAIN_BATCH as u64));
    let gemm = Gemm::new();
    let variants: [(&str, &dyn Kernels); 2] = [("gemm", &gemm), ("matrixmultiply", &Matrixmultiply)];
    let mut rng = Rng::new(6);
    for (inputs, outputs) in [(784, 256), (512, 256), (256, 10)] {
        let batch = TRAIN_BATCH;
        let s = Shape { batch, inputs, outputs };
        let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform_in(-1.0, 1.0)).collect() };
        let (x, w, dy, bias) =
            (random(batch * inputs), random(inputs * outputs), random(batch * outputs), random(outputs));
        let (mut y, mut dx, mut dw, mut db) = (
            vec![0.0; batch * outputs],
            vec![0.0; batch * inputs],
            vec![0.0; inputs * outputs],
            vec![0.0; outputs],
        );
        for (name, kernels) in variants {
            group.bench_function(BenchmarkId::new(format!("{inputs}x{outputs}_forward"), name), |b| {
                b.iter(|| kernels.dense_forward(s, black_box(&x), &w, &bias, &mut y))
            });
            group
                .bench_function(BenchmarkId::new(format!("{inputs}x{outputs}_weight_gradient"), name), |b| {
                    b.iter(|| kernels.dense_backward_params(s, black_box(&x), &dy, &mut dw, &mut db))
                });
            group.bench_function(BenchmarkId::new(format!("{inputs}x{outputs}_input_gradient"), name), |b| {
                b.iter(|| kernels.dense_backward_input(s, black_box(&dy), &w, &mut dx))
            });
        }
    }
    group.finish();
}

fn training(c: &mut Criterion) {
    let t = tutorial_topology();
    let x = scaled_f32(&data().train, TRAIN_BATCH);
    let y = labels(&data().train, TRAIN_BATCH);
    let optimizer = Optimizer::adam();
    let mut group = c.benchmark_group("training");
    configure(&mut group, 1, 4);
    group.throughput(Throughput::Elements(TRAIN_BATCH as u64));
    let (gemm, fast) = (Gemm::new(), Fast::new());
    // Which variants run on rayon's pool (Portable is serial, matrixmultiply has its threads).
    let variants: [(&str, &(dyn Kernels + Sync), bool); 4] = [
        ("portable", &Portable, false),
        ("gemm", &gemm, true),
        ("matrixmultiply", &Matrixmultiply, false),
        ("fast", &fast, true),
    ];
    for (name, kernels, on_pool) in variants {
        let mut params = he_params(&t);
        let mut grads = vec![0.0; t.param_len()];
        let mut state = vec![0.0; optimizer.state_len(t.param_len())];
        let mut ws = vec![0.0; t.train_workspace_len(TRAIN_BATCH)];
        let config = TrainConfig::new(Loss::CrossEntropy, optimizer, TRAIN_BATCH);
        let mut trainer = Trainer::new(
            &t,
            config,
            TrainBuffers {
                params: &mut params,
                grads: &mut grads,
                running: &mut [],
                optimizer_state: &mut state,
                workspace: &mut ws,
            },
        )
        .expect("trainer");
        let mut rng = Rng::new(777);
        group.bench_function(BenchmarkId::new(name, TRAIN_BATCH), |b| {
            let mut steps = || {
                b.iter(|| {
                    let stats = trainer
                        .step(kernels, black_box(&x), Targets::Labels(&y), 1e-3, &mut rng)
                        .expect("step");
                    black_box(stats.loss);
                })
            };
            if on_pool {
                // As `host train` runs its steps: on rayon's pool, with its other threads
                // polling for work (spinning there would only take a core from the others).
                with_spinning_pool(steps)
            } else {
                steps()
            }
        });
    }
    group.finish();
}

fn epoch(c: &mut Criterion) {
    let d = data();
    let what = if d.synthetic { "synthetic" } else { "mnist" };
    let mut group = c.benchmark_group("epoch");
    configure(&mut group, 1, 8);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(d.train.len() as u64));
    for (name, augment) in [("tutorial_gemm", None), ("tutorial_gemm_augmented", Some(Augment::DEFAULT))] {
        let settings = TrainSettings { epochs: 1, augment, ..TrainSettings::tutorial() };
        // No test set: the bench times the training epoch alone, not the evaluation after it.
        let run = RunData::new(d.train.clone(), None, &settings).expect("run data");
        group.bench_function(BenchmarkId::new(name, what), |b| {
            b.iter(|| {
                let trained = host::train::train(&settings, &run, None, &RunOptions::default(), &mut |_| {
                    ControlFlow::Continue(())
                })
                .expect("train");
                black_box(trained.steps);
            })
        });
    }
    // The loader's share: one epoch of batches (the tutorial's 256, inputs / 255), with and
    // without distortion, on rayon's threads as in training.
    for (name, augment) in [("loader", None), ("loader_augmented", Some(Augment::DEFAULT))] {
        let options = LoaderOptions {
            batch_size: TRAIN_BATCH,
            shuffle: true,
            seed: 777,
            normalization: Normalization::Scale01,
            augment,
            ..LoaderOptions::default()
        };
        let mut loader = DataLoader::new(&d.train, options).expect("loader");
        let input_len = d.train.input_len();
        let (mut x, mut y) = (vec![0.0f32; TRAIN_BATCH * input_len], vec![0u32; TRAIN_BATCH]);
        group.bench_function(BenchmarkId::new(name, what), |b| {
            b.iter(|| {
                with_spinning_pool(|| while loader.next_batch(&mut x, &mut y).is_some() {});
                black_box(x[0]);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, f32_inference, f32_products, f32_gemm, int8_inference, training, epoch);
criterion_main!(benches);
