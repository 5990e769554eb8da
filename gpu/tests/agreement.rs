//! The GPU step against core's: from the same initial parameters, on the same batches (and
//! the same dropout masks), `gpu::GpuTrainer` must leave the parameters that
//! `mlp::Trainer` with `mlp::Portable` leaves, within a stated tolerance, for every
//! activation, loss and optimizer, with batch norm, dropout and clipping.
//!
//! Tolerance (FP32 products): after one step `|gpu - cpu| <= 2e-5 + 2e-4·|cpu|` per
//! parameter, after 12 steps `1e-4 + 1e-3·|cpu|`. The only differences are the summation
//! order of cuBLAS's products and of the reductions, and the last-ulp differences of
//! CUDA's expf/tanhf/erff/log1pf from libm's; the elementwise formulas are core's, operation
//! for operation, compiled without FMA contraction.
//!
//! Every test body runs on both backends: `emulator::*` on the CPU emulator (kernels.cu
//! compiled as C++, reference products; runs everywhere, in every CI run) and `cuda::*` on a
//! CUDA GPU (ignored without one: `cargo test -p gpu --test agreement -- --ignored cuda::`).

use gpu::{DeviceDataset, Features, Gpu, GpuTrainer, Start};
use mlp::init::{initialize, Init};
use mlp::{
    Activation, LayerSpec, Loss, Optimizer, Portable, Rng, Targets, Topology, TrainBuffers, TrainConfig,
    Trainer,
};

const INPUTS: usize = 12;
const SAMPLES: usize = 96;
const SCALE: f32 = 1.0 / 255.0;
const OFFSET: f32 = -0.4;

/// Defines each test body once per backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod emulator {
            $(#[test]
            fn $name() {
                super::$name(&gpu::Gpu::emulator().expect("the CPU emulator"));
            })*
        }
        mod cuda {
            $(#[test]
            #[ignore = "needs a CUDA GPU"]
            fn $name() {
                let g = gpu::Gpu::new(0, gpu::GpuOptions::default()).expect("these tests need a CUDA GPU");
                eprintln!("{}", g.describe());
                super::$name(&g);
            })*
        }
    };
}

on_every_backend!(
    one_step_agrees_with_core_for_every_activation,
    one_step_agrees_with_core_for_every_loss,
    one_step_agrees_with_core_for_every_optimizer,
    one_step_agrees_with_core_with_batch_norm_dropout_and_clipping,
    twelve_steps_agree_with_core,
    an_epoch_replayed_as_a_cuda_graph_agrees_with_core,
    evaluation_agrees_with_core,
    a_nan_loss_stops_the_updates_and_is_reported,
    running_statistics_stop_at_the_diverged_step_as_in_core,
    batch_norm_biases_get_exactly_zero_gradients,
);

/// Random bytes and labels for `classes` outputs (0/1 for a single output).
fn data(classes: usize, seed: u64) -> (Vec<u8>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let x = (0..SAMPLES * INPUTS).map(|_| rng.below(256) as u8).collect();
    let labels = (0..SAMPLES).map(|_| rng.below(classes.max(2) as u32)).collect();
    (x, labels)
}

/// The batch as core sees it: the GPU's input pipeline applied on the host
/// (`raw · scale + offset`, as host's InputPipeline does).
fn batch(x: &[u8], labels: &[u32], idx: &[u32]) -> (Vec<f32>, Vec<u32>) {
    let mut xs = Vec::with_capacity(idx.len() * INPUTS);
    for &i in idx {
        let row = &x[i as usize * INPUTS..(i as usize + 1) * INPUTS];
        xs.extend(row.iter().map(|&b| b as f32 * SCALE + OFFSET));
    }
    (xs, idx.iter().map(|&i| labels[i as usize]).collect())
}

struct Case {
    name: String,
    layers: Vec<LayerSpec>,
    loss: Loss,
    optimizer: Optimizer,
    lr: f32,
    clip: Option<f32>,
}

fn case(name: &str, layers: Vec<LayerSpec>, loss: Loss, optimizer: Optimizer, lr: f32) -> Case {
    Case { name: name.to_string(), layers, loss, optimizer, lr, clip: None }
}

fn classifier(hidden: Activation) -> Vec<LayerSpec> {
    vec![LayerSpec::dense(16, hidden), LayerSpec::dense(5, Activation::Softmax)]
}

fn close(what: &str, gpu: &[f32], cpu: &[f32], atol: f32, rtol: f32) -> Result<(), String> {
    assert_eq!(gpu.len(), cpu.len());
    let off = |(&g, &c): (&f32, &f32)| !g.is_finite() || (g - c).abs() > atol + rtol * c.abs();
    let count = gpu.iter().zip(cpu).filter(|&p| off(p)).count();
    match gpu.iter().zip(cpu).position(off) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: {count} of {} values differ, first at index {i}: gpu {} vs cpu {} (tolerance {atol} + {rtol}·|cpu|)",
            gpu.len(),
            gpu[i],
            cpu[i]
        )),
    }
}

/// Runs `steps` steps of batch `batch_size` on both paths; checks loss, correct count and
/// parameters. `epoch`: run the GPU side as one `epoch` call (graph replay) instead of steps.
fn agree(g: &Gpu, c: &Case, steps: usize, batch_size: usize, epoch: bool) -> Result<(), String> {
    let t = Topology::new(INPUTS, &c.layers).map_err(|e| format!("{}: {e}", c.name))?;
    let classes = t.output();
    let (x, labels) = data(classes, 7);
    let mut params = vec![0.0f32; t.param_len()];
    initialize(&t, &mut params, Init::XavierNormal, &mut Rng::new(3)).unwrap();
    let mut running = vec![0.0f32; t.running_len()];
    t.reset_running(&mut running).unwrap();
    let state = vec![0.0f32; c.optimizer.state_len(t.param_len())];
    let config =
        TrainConfig { loss: c.loss, optimizer: c.optimizer, max_batch: batch_size, grad_clip: c.clip };

    let dataset: DeviceDataset =
        g.upload_dataset(Features::U8(&x), &labels, INPUTS).map_err(|e| e.to_string())?;
    let mut gt = GpuTrainer::new(
        g,
        &t,
        config,
        Start { params: &params, running: &running, optimizer_state: &state, steps: 0 },
        &[SCALE; INPUTS],
        &[OFFSET; INPUTS],
    )
    .map_err(|e| format!("{}: {e}", c.name))?;

    let (mut cp, mut cr, mut cs) = (params.clone(), running.clone(), state.clone());
    let mut grads = vec![0.0f32; t.param_len()];
    let mut ws = vec![0.0f32; t.train_workspace_len(batch_size)];
    let mut ct = Trainer::new(
        &t,
        config,
        TrainBuffers {
            params: &mut cp,
            grads: &mut grads,
            running: &mut cr,
            optimizer_state: &mut cs,
            workspace: &mut ws,
        },
    )
    .unwrap();
    let mut order: Vec<u32> = (0..SAMPLES as u32).collect();
    Rng::new(11).shuffle(&mut order);
    let order = &order[..steps * batch_size];
    let (mut rng_cpu, mut rng_gpu) = (Rng::new(99), Rng::new(99));
    let mut cpu_loss = 0.0f64;
    let mut cpu_correct = 0usize;
    let mut gpu_loss = 0.0f64;
    let mut gpu_correct = 0usize;
    for s in 0..steps {
        let idx = &order[s * batch_size..(s + 1) * batch_size];
        let (xs, ys) = batch(&x, &labels, idx);
        let st = ct.step(&Portable, &xs, Targets::Labels(&ys), c.lr, &mut rng_cpu).unwrap();
        cpu_loss += st.loss as f64 * batch_size as f64;
        cpu_correct += st.correct;
        if !epoch {
            let gs = gt.step(&dataset, idx, c.lr, &mut rng_gpu).map_err(|e| format!("{}: {e}", c.name))?;
            gpu_loss += gs.loss as f64 * batch_size as f64;
            gpu_correct += gs.correct;
            if (gs.loss - st.loss).abs() > 1e-4 * st.loss.abs().max(1.0) {
                return Err(format!("{}: step {s}: loss gpu {} vs cpu {}", c.name, gs.loss, st.loss));
            }
        }
    }
    if epoch {
        let lrs = vec![c.lr; steps];
        let e =
            gt.epoch(&dataset, order, batch_size, false, &lrs, &mut rng_gpu).map_err(|e| e.to_string())?;
        assert_eq!(e.steps, steps);
        if g.is_emulator() && steps > 1 && !e.graph {
            return Err(format!("{}: the emulator did not replay a graph: {:?}", c.name, gt.graph_error()));
        }
        if steps > 1 && !e.graph {
            eprintln!("{}: ran without a CUDA graph: {:?}", c.name, gt.graph_error());
        }
        gpu_loss = e.loss_sum;
        gpu_correct = e.correct;
    }
    if (gpu_loss - cpu_loss).abs() > 1e-4 * cpu_loss.abs().max(1.0) {
        return Err(format!("{}: summed loss gpu {gpu_loss} vs cpu {cpu_loss}", c.name));
    }
    if gpu_correct.abs_diff(cpu_correct) > steps {
        return Err(format!("{}: correct gpu {gpu_correct} vs cpu {cpu_correct}", c.name));
    }
    let (atol, rtol) = if steps == 1 { (2e-5, 2e-4) } else { (1e-4, 1e-3) };
    close(&format!("{} params after {steps} steps", c.name), &gt.params().unwrap(), ct.params(), atol, rtol)?;
    close(
        &format!("{} optimizer state", c.name),
        &gt.optimizer_state().unwrap(),
        ct.optimizer_state(),
        atol,
        1e-3,
    )?;
    close(&format!("{} running stats", c.name), &gt.running().unwrap(), ct.running(), 1e-5, 1e-4)?;
    Ok(())
}

fn run_all(g: &Gpu, cases: &[Case], steps: usize, batch_size: usize, epoch: bool) {
    let failures: Vec<String> =
        cases.iter().filter_map(|c| agree(g, c, steps, batch_size, epoch).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn activation_cases() -> Vec<Case> {
    [
        Activation::Identity,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu(0.01),
        Activation::Elu(1.0),
        Activation::Gelu,
    ]
    .into_iter()
    .map(|a| case(a.name(), classifier(a), Loss::CrossEntropy, Optimizer::adam(), 1e-2))
    .collect()
}

fn loss_cases() -> Vec<Case> {
    let out = |n, a| vec![LayerSpec::dense(16, Activation::Tanh), LayerSpec::dense(n, a)];
    let sgd = Optimizer::momentum(0.9);
    vec![
        case("ce+softmax", out(5, Activation::Softmax), Loss::CrossEntropy, sgd, 0.1),
        case("ce+identity", out(5, Activation::Identity), Loss::CrossEntropy, sgd, 0.1),
        case("mse+sigmoid", out(5, Activation::Sigmoid), Loss::Mse, sgd, 0.5),
        case("mse+softmax", out(5, Activation::Softmax), Loss::Mse, sgd, 0.5),
        case("mse+identity", out(3, Activation::Identity), Loss::Mse, sgd, 0.1),
        case("bce+sigmoid", out(4, Activation::Sigmoid), Loss::BinaryCrossEntropy, sgd, 0.1),
        case("bce+identity, one output", out(1, Activation::Identity), Loss::BinaryCrossEntropy, sgd, 0.1),
        case("mse+sigmoid, one output", out(1, Activation::Sigmoid), Loss::Mse, sgd, 0.5),
    ]
}

fn optimizer_cases() -> Vec<Case> {
    let l = || classifier(Activation::Relu);
    vec![
        case("sgd", l(), Loss::CrossEntropy, Optimizer::sgd(), 0.1),
        case("sgd+wd", l(), Loss::CrossEntropy, Optimizer::sgd().with_weight_decay(1e-2), 0.1),
        case("momentum", l(), Loss::CrossEntropy, Optimizer::momentum(0.9), 0.05),
        case("nesterov+wd", l(), Loss::CrossEntropy, Optimizer::nesterov(0.9).with_weight_decay(1e-3), 0.05),
        case("adagrad", l(), Loss::CrossEntropy, Optimizer::adagrad(), 0.01),
        case("rmsprop", l(), Loss::CrossEntropy, Optimizer::rmsprop(), 1e-3),
        case("adadelta", l(), Loss::CrossEntropy, Optimizer::adadelta(), 1.0),
        case("adam+wd", l(), Loss::CrossEntropy, Optimizer::adam().with_weight_decay(1e-3), 1e-2),
        case("adamw", l(), Loss::CrossEntropy, Optimizer::adamw(), 1e-2),
        case("adamax", l(), Loss::CrossEntropy, Optimizer::adamax(), 2e-3),
    ]
}

fn structure_cases() -> Vec<Case> {
    let mut clipped =
        case("clipped", classifier(Activation::Relu), Loss::CrossEntropy, Optimizer::momentum(0.9), 0.1);
    clipped.clip = Some(0.05);
    vec![
        case(
            "two hidden layers",
            vec![
                LayerSpec::dense(20, Activation::Relu),
                LayerSpec::dense(9, Activation::Gelu),
                LayerSpec::dense(5, Activation::Softmax),
            ],
            Loss::CrossEntropy,
            Optimizer::adam(),
            1e-2,
        ),
        case(
            "batch norm",
            vec![
                LayerSpec::dense(16, Activation::Relu).with_batch_norm(),
                LayerSpec::dense(8, Activation::Tanh).with_batch_norm(),
                LayerSpec::dense(5, Activation::Softmax),
            ],
            Loss::CrossEntropy,
            Optimizer::adam(),
            1e-2,
        ),
        case(
            "dropout",
            vec![
                LayerSpec::dense(24, Activation::Relu).with_dropout(0.3),
                LayerSpec::dense(12, Activation::Elu(1.0)).with_dropout(0.1),
                LayerSpec::dense(5, Activation::Softmax),
            ],
            Loss::CrossEntropy,
            Optimizer::adam(),
            1e-2,
        ),
        clipped,
    ]
}

fn one_step_agrees_with_core_for_every_activation(g: &Gpu) {
    run_all(g, &activation_cases(), 1, 32, false);
}

fn one_step_agrees_with_core_for_every_loss(g: &Gpu) {
    run_all(g, &loss_cases(), 1, 32, false);
}

fn one_step_agrees_with_core_for_every_optimizer(g: &Gpu) {
    run_all(g, &optimizer_cases(), 1, 32, false);
}

fn one_step_agrees_with_core_with_batch_norm_dropout_and_clipping(g: &Gpu) {
    run_all(g, &structure_cases(), 1, 32, false);
}

fn twelve_steps_agree_with_core(g: &Gpu) {
    let mut all = activation_cases();
    all.extend(loss_cases());
    all.extend(optimizer_cases());
    all.extend(structure_cases());
    run_all(g, &all, 12, 8, false);
}

fn an_epoch_replayed_as_a_cuda_graph_agrees_with_core(g: &Gpu) {
    let mut all = optimizer_cases();
    all.extend(structure_cases());
    all.extend(loss_cases());
    run_all(g, &all, 6, 16, true);
}

fn evaluation_agrees_with_core(g: &Gpu) {
    for layers in [
        classifier(Activation::Relu),
        vec![
            LayerSpec::dense(16, Activation::Tanh).with_batch_norm(),
            LayerSpec::dense(5, Activation::Softmax),
        ],
    ] {
        let t = Topology::new(INPUTS, &layers).unwrap();
        let (x, labels) = data(5, 21);
        let mut params = vec![0.0f32; t.param_len()];
        initialize(&t, &mut params, Init::HeNormal, &mut Rng::new(5)).unwrap();
        let mut running = vec![0.0f32; t.running_len()];
        t.reset_running(&mut running).unwrap();
        // Non-trivial running statistics.
        running.iter_mut().enumerate().for_each(|(i, r)| *r += 0.01 * (i % 7) as f32);
        let config = TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), 16);
        let dataset = g.upload_dataset(Features::U8(&x), &labels, INPUTS).unwrap();
        let mut gt = GpuTrainer::new(
            g,
            &t,
            config,
            Start { params: &params, running: &running, optimizer_state: &[], steps: 0 },
            &[SCALE; INPUTS],
            &[OFFSET; INPUTS],
        )
        .unwrap();
        let model = mlp::Model::new(&t, &params, &running).unwrap();
        let all: Vec<u32> = (0..SAMPLES as u32).collect();
        let (xs, ys) = batch(&x, &labels, &all);
        let mut ws = vec![0.0f32; t.infer_workspace_len(SAMPLES)];
        let probs = model.forward(&Portable, &xs, SAMPLES, &mut ws).unwrap().to_vec();
        let cpu_loss = Loss::CrossEntropy
            .value_from_outputs(Activation::Softmax, 5, &probs, Targets::Labels(&ys))
            .unwrap();
        let cpu_correct = mlp::loss::count_correct(&probs, 5, Targets::Labels(&ys), 0.5);
        for chunk in [SAMPLES, 40, 7] {
            let e = gt.evaluate(&dataset, chunk).unwrap();
            assert_eq!(e.samples, SAMPLES);
            assert!(e.correct.abs_diff(cpu_correct) <= 1, "chunk {chunk}: {} vs {cpu_correct}", e.correct);
            assert!((e.loss - cpu_loss as f64).abs() < 1e-4, "chunk {chunk}: loss {} vs {cpu_loss}", e.loss);
        }
    }
}

fn a_nan_loss_stops_the_updates_and_is_reported(g: &Gpu) {
    let t = Topology::new(INPUTS, &classifier(Activation::Relu)).unwrap();
    let (x, labels) = data(5, 1);
    let mut params = vec![0.0f32; t.param_len()];
    initialize(&t, &mut params, Init::HeNormal, &mut Rng::new(5)).unwrap();
    // A NaN output bias: the logits, hence the loss, are NaN from the first step.
    let bad = t.param_len() - 1;
    params[bad] = f32::NAN;
    let dataset = g.upload_dataset(Features::U8(&x), &labels, INPUTS).unwrap();
    let config = TrainConfig::new(Loss::CrossEntropy, Optimizer::adam(), 16);
    let state = vec![0.0f32; config.optimizer.state_len(t.param_len())];
    let mut gt = GpuTrainer::new(
        g,
        &t,
        config,
        Start { params: &params, running: &[], optimizer_state: &state, steps: 0 },
        &[SCALE; INPUTS],
        &[OFFSET; INPUTS],
    )
    .unwrap();
    let order: Vec<u32> = (0..64).collect();
    let err = gt.epoch(&dataset, &order, 16, false, &[1e-3; 4], &mut Rng::new(1)).unwrap_err();
    assert_eq!(err, gpu::GpuError::Diverged { step: 1 });
    let after = gt.params().unwrap();
    assert!(after[..bad].iter().zip(&params[..bad]).all(|(a, b)| a == b), "no update after a NaN loss");
}

/// A core trainer and a GPU trainer from the same start (batch-norm layer first, then the
/// output layer), with `poison` applied to the parameters of both.
fn bn_pair(
    g: &Gpu,
    poison: impl Fn(&mut [f32]),
) -> (Topology, Vec<f32>, Vec<f32>, GpuTrainer, DeviceDataset) {
    let t = Topology::new(
        INPUTS,
        &[LayerSpec::dense(16, Activation::Relu).with_batch_norm(), LayerSpec::dense(5, Activation::Softmax)],
    )
    .unwrap();
    let (x, labels) = data(5, 1);
    let mut params = vec![0.0f32; t.param_len()];
    initialize(&t, &mut params, Init::HeNormal, &mut Rng::new(5)).unwrap();
    poison(&mut params);
    let mut running = vec![0.0f32; t.running_len()];
    t.reset_running(&mut running).unwrap();
    let dataset = g.upload_dataset(Features::U8(&x), &labels, INPUTS).unwrap();
    let config = TrainConfig::new(Loss::CrossEntropy, Optimizer::adam(), 16);
    let state = vec![0.0f32; config.optimizer.state_len(t.param_len())];
    let gt = GpuTrainer::new(
        g,
        &t,
        config,
        Start { params: &params, running: &running, optimizer_state: &state, steps: 0 },
        &[SCALE; INPUTS],
        &[OFFSET; INPUTS],
    )
    .unwrap();
    (t, params, running, gt, dataset)
}

/// Core's trainer on the first `n` samples of the order 0, 1, 2, ...: the step's result,
/// and the parameters, gradients and running statistics after it.
fn core_step(
    t: &Topology,
    params: &[f32],
    running: &[f32],
    n: usize,
) -> (Result<mlp::StepStats, mlp::Error>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (x, labels) = data(5, 1);
    let config = TrainConfig::new(Loss::CrossEntropy, Optimizer::adam(), 16);
    let (mut p, mut r) = (params.to_vec(), running.to_vec());
    let mut s = vec![0.0f32; config.optimizer.state_len(t.param_len())];
    let mut grads = vec![0.0f32; t.param_len()];
    let mut ws = vec![0.0f32; t.train_workspace_len(16)];
    let mut ct = Trainer::new(
        t,
        config,
        TrainBuffers {
            params: &mut p,
            grads: &mut grads,
            running: &mut r,
            optimizer_state: &mut s,
            workspace: &mut ws,
        },
    )
    .unwrap();
    let idx: Vec<u32> = (0..n as u32).collect();
    let (xs, ys) = batch(&x, &labels, &idx);
    let result = ct.step(&Portable, &xs, Targets::Labels(&ys), 1e-3, &mut Rng::new(1));
    let g = ct.grads().to_vec();
    (result, p, g, r)
}

/// Review finding: after a diverged step, the GPU's later steps of the epoch still ran
/// batch norm in train mode and moved the running statistics; core's trainer stops at the
/// diverged step. Both must leave the statistics of the diverged step's forward pass.
fn running_statistics_stop_at_the_diverged_step_as_in_core(g: &Gpu) {
    // A NaN output bias: the loss is NaN from the first step, while the batch-norm layer in
    // front sees finite values, so its running statistics move finitely at every step.
    let (t, params, running, mut gt, dataset) = bn_pair(g, |p| {
        let last = p.len() - 1;
        p[last] = f32::NAN;
    });
    let order: Vec<u32> = (0..64).collect();
    let err = gt.epoch(&dataset, &order, 16, false, &[1e-3; 4], &mut Rng::new(1)).unwrap_err();
    assert_eq!(err, gpu::GpuError::Diverged { step: 1 });
    let (result, _, _, core_running) = core_step(&t, &params, &running, 16);
    assert!(result.is_err(), "core must refuse the NaN loss too");
    assert_ne!(core_running, running, "the diverged step's forward pass moves the statistics");
    close("running statistics after divergence", &gt.running().unwrap(), &core_running, 1e-6, 1e-5).unwrap();
}

/// Review finding: a dense bias in front of batch norm has a true gradient of exactly zero;
/// computing it as a sum of rounding noise let Adam move it by ±lr, in a direction that
/// depended on the summation order. Every path now gives exactly zero.
fn batch_norm_biases_get_exactly_zero_gradients(g: &Gpu) {
    let (t, params, running, mut gt, dataset) = bn_pair(g, |_| {});
    let idx: Vec<u32> = (0..16).collect();
    gt.step(&dataset, &idx, 1e-3, &mut Rng::new(1)).unwrap();
    let grads = gt.grads().unwrap();
    let (_, _, core_grads, _) = core_step(&t, &params, &running, 16);
    let r0 = t.param_ranges(0).unwrap();
    assert!(grads[r0.bias.clone()].iter().all(|&v| v == 0.0), "gpu: {:?}", &grads[r0.bias.clone()]);
    assert!(core_grads[r0.bias.clone()].iter().all(|&v| v == 0.0), "core: {:?}", &core_grads[r0.bias]);
    let r1 = t.param_ranges(1).unwrap();
    assert!(grads[r1.bias].iter().any(|&v| v != 0.0), "the output bias (no batch norm) still trains");
}
