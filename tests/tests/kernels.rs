//! The kernel seam: a `Kernels` implementation written here (naive triple loops in another
//! summation order) plugged into `Trainer` and `Model` gives `Portable`'s results to
//! rounding; core calls the seam with the documented shapes and slice lengths, for every
//! dense product, and really uses what it returns.

use std::cell::RefCell;

use mlp::{
    Activation, Kernels, LayerSpec, Loss, Model, Optimizer, Portable, Rng, Shape, Targets, Topology,
    TrainConfig,
};
use mlp_tests::util::{compare, f64s, max_abs, normal, random_params, Buffers};

/// Textbook loops, summing in the opposite order to `Portable` (last term first), in f64
/// accumulators rounded once: a different but valid implementation.
#[derive(Debug)]
struct Naive;

impl Kernels for Naive {
    fn dense_forward(&self, s: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        for b in 0..s.batch {
            for o in 0..s.outputs {
                let mut acc = 0.0f64;
                for j in (0..s.inputs).rev() {
                    acc += x[b * s.inputs + j] as f64 * w[o * s.inputs + j] as f64;
                }
                y[b * s.outputs + o] = (acc + bias[o] as f64) as f32;
            }
        }
    }

    fn dense_backward_input(&self, s: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        for b in 0..s.batch {
            for j in 0..s.inputs {
                let mut acc = 0.0f64;
                for o in (0..s.outputs).rev() {
                    acc += dy[b * s.outputs + o] as f64 * w[o * s.inputs + j] as f64;
                }
                dx[b * s.inputs + j] = acc as f32;
            }
        }
    }

    fn dense_backward_params(&self, s: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: &mut [f32]) {
        for o in 0..s.outputs {
            let mut db = 0.0f64;
            for b in (0..s.batch).rev() {
                db += dy[b * s.outputs + o] as f64;
            }
            dbias[o] = db as f32;
            for j in 0..s.inputs {
                let mut acc = 0.0f64;
                for b in (0..s.batch).rev() {
                    acc += dy[b * s.outputs + o] as f64 * x[b * s.inputs + j] as f64;
                }
                dw[o * s.inputs + j] = acc as f32;
            }
        }
    }
}

/// Delegates to `Portable`, recording every call and asserting the documented contract:
/// slices of exactly the documented lengths.
#[derive(Debug, Default)]
struct Recording {
    calls: RefCell<Vec<(&'static str, Shape)>>,
}

impl Kernels for Recording {
    fn dense_forward(&self, s: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        assert_eq!(
            (x.len(), w.len(), bias.len(), y.len()),
            (s.batch * s.inputs, s.outputs * s.inputs, s.outputs, s.batch * s.outputs),
            "dense_forward {s:?}"
        );
        self.calls.borrow_mut().push(("forward", s));
        Portable.dense_forward(s, x, w, bias, y);
    }

    fn dense_backward_input(&self, s: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        assert_eq!(
            (dy.len(), w.len(), dx.len()),
            (s.batch * s.outputs, s.outputs * s.inputs, s.batch * s.inputs),
            "dense_backward_input {s:?}"
        );
        self.calls.borrow_mut().push(("backward_input", s));
        Portable.dense_backward_input(s, dy, w, dx);
    }

    fn dense_backward_params(&self, s: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: &mut [f32]) {
        assert_eq!(
            (x.len(), dy.len(), dw.len(), dbias.len()),
            (s.batch * s.inputs, s.batch * s.outputs, s.outputs * s.inputs, s.outputs),
            "dense_backward_params {s:?}"
        );
        self.calls.borrow_mut().push(("backward_params", s));
        Portable.dense_backward_params(s, x, dy, dw, dbias);
    }
}

/// `Portable` with the bias left out of the forward product: a broken kernel.
#[derive(Debug)]
struct NoBias;

impl Kernels for NoBias {
    fn dense_forward(&self, s: Shape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        let zeros = vec![0.0; bias.len()];
        Portable.dense_forward(s, x, w, &zeros, y);
    }
    fn dense_backward_input(&self, s: Shape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        Portable.dense_backward_input(s, dy, w, dx);
    }
    fn dense_backward_params(&self, s: Shape, x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
        Portable.dense_backward_params(s, x, dy, dw, db);
    }
}

fn net() -> Topology {
    Topology::new(
        7,
        &[
            LayerSpec::dense(12, Activation::Gelu).with_batch_norm().with_dropout(0.25),
            LayerSpec::dense(9, Activation::Tanh),
            LayerSpec::dense(4, Activation::Softmax),
        ],
    )
    .unwrap()
}

/// Trains 10 momentum-SGD steps with `kernels` (behind `dyn`); returns per-step losses,
/// gradients and the final parameters, running statistics and eval outputs.
///
/// Momentum SGD, whose steps are proportional to the gradients, so differences stay of the
/// size of rounding. (The bias before batch norm, whose exactly-zero gradient a kernel computes
/// as rounding noise that Adam would turn into ±lr steps, gets exactly 0 from `Trainer` on
/// every kernel: `batch_norm_bias.rs`.)
fn train_with(kernels: &dyn Kernels) -> TrainRun {
    let t = net();
    let batch = 6;
    let opt = Optimizer::momentum(0.9);
    let mut bufs = Buffers::new(&t, opt, batch);
    bufs.params = random_params(&t, &mut Rng::new(1));
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, opt, batch));
    let mut data = Rng::new(2);
    let mut rng = Rng::new(3);
    let (mut losses, mut grads) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let x = normal(&mut data, batch * 7);
        let y: Vec<u32> = (0..batch).map(|_| data.below(4)).collect();
        let stats = trainer.step(kernels, &x, Targets::Labels(&y), 0.05, &mut rng).unwrap();
        losses.push(stats.loss);
        grads.push(trainer.grads().to_vec());
    }
    let x = normal(&mut data, batch * 7);
    let mut ws = vec![0.0; t.infer_workspace_len(batch)];
    let out = trainer.model().forward(kernels, &x, batch, &mut ws).unwrap().to_vec();
    TrainRun {
        losses,
        grads,
        params: trainer.params().to_vec(),
        running: trainer.running().to_vec(),
        outputs: out,
    }
}

/// What [`train_with`] observed.
#[derive(Debug, PartialEq)]
struct TrainRun {
    losses: Vec<f32>,
    grads: Vec<Vec<f32>>,
    params: Vec<f32>,
    running: Vec<f32>,
    outputs: Vec<f32>,
}

/// Same training run through `Naive` and `Portable`: every step's loss and gradients and
/// the final model agree to rounding. The two differ only in summation order (f64
/// accumulation in `Naive`), i.e. by a few f32 ulps per product; 10 training steps carry that
/// through. Losses agree to 1e-6 relative, gradients to 1e-5 (plus 1e-5 of the largest, for
/// entries small by cancellation), parameters, running statistics and eval outputs to 1e-5;
/// the measured differences are 30x to 1000x below these.
#[test]
fn a_custom_kernel_gives_portable_results() {
    let portable = train_with(&Portable);
    let naive = train_with(&Naive);
    let (l1, g1, p1, r1, o1) =
        (&portable.losses, &portable.grads, &portable.params, &portable.running, &portable.outputs);
    let (l2, g2, p2, r2, o2) = (&naive.losses, &naive.grads, &naive.params, &naive.running, &naive.outputs);
    compare(&f64s(l2), &f64s(l1), 1e-6, 0.0).unwrap();
    for (step, (a, b)) in g2.iter().zip(g1).enumerate() {
        let scale = max_abs(&f64s(b));
        compare(&f64s(a), &f64s(b), 1e-5, 1e-5 * scale).unwrap_or_else(|m| panic!("step {step}: {m:?}"));
    }
    compare(&f64s(p2), &f64s(p1), 1e-5, 1e-6).unwrap();
    compare(&f64s(r2), &f64s(r1), 1e-5, 1e-6).unwrap();
    compare(&f64s(o2), &f64s(o1), 1e-5, 1e-7).unwrap();
    // Not vacuous: the runs trained (the parameters moved) and the kernels are not the
    // same code (the results are not bit-identical).
    let start = random_params(&net(), &mut Rng::new(1));
    assert!(p1.iter().zip(&start).any(|(a, b)| (a - b).abs() > 1e-3));
    assert_ne!(portable, naive);
}

/// Core calls the seam for every dense product with the documented shapes and lengths.
#[test]
fn core_calls_the_seam_for_every_product() {
    let t = net();
    let batch = 5;
    let mut bufs = Buffers::new(&t, Optimizer::sgd(), 8);
    bufs.params = random_params(&t, &mut Rng::new(4));
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), 8));
    let rec = Recording::default();
    let x = normal(&mut Rng::new(5), batch * 7);
    trainer.forward(&rec, &x, batch, &mut Rng::new(6)).unwrap();
    trainer.backward(&rec, &x, Targets::Labels(&[0, 1, 2, 3, 0])).unwrap();
    let shape = |i: usize| Shape { batch, inputs: t.fan_in(i), outputs: t.layers()[i].outputs };
    let expected = vec![
        ("forward", shape(0)),
        ("forward", shape(1)),
        ("forward", shape(2)),
        ("backward_params", shape(2)),
        ("backward_input", shape(2)),
        ("backward_params", shape(1)),
        ("backward_input", shape(1)),
        ("backward_params", shape(0)),
    ];
    assert_eq!(*rec.calls.borrow(), expected);
    rec.calls.borrow_mut().clear();
    let model = Model::new(&t, trainer.params(), trainer.running()).unwrap();
    let mut ws = vec![0.0; t.infer_workspace_len(batch)];
    model.forward(&rec, &x, batch, &mut ws).unwrap();
    assert_eq!(*rec.calls.borrow(), expected[..3].to_vec());
}

/// What the kernel computes is what core uses: a kernel that drops the bias changes the
/// outputs (so `a_custom_kernel_gives_portable_results` could fail).
#[test]
fn core_uses_what_the_kernel_returns() {
    let t = Topology::new(3, &[LayerSpec::dense(2, Activation::Identity)]).unwrap();
    let params = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 5.0, -5.0]; // W = [[1,0,0],[0,1,0]], b = [5, -5]
    let model = Model::new(&t, &params, &[]).unwrap();
    let mut ws = vec![0.0; t.infer_workspace_len(1)];
    let x = [1.0, 2.0, 3.0];
    assert_eq!(model.forward(&Portable, &x, 1, &mut ws).unwrap(), &[6.0, -3.0]);
    assert_eq!(model.forward(&NoBias, &x, 1, &mut ws).unwrap(), &[1.0, 2.0]);
    assert_eq!(model.forward(&Naive, &x, 1, &mut ws).unwrap(), &[6.0, -3.0]);
}
