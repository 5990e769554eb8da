//! llm.c-style kernel tests: each kernel of kernels.cu launched alone on small, odd shapes
//! (widths not multiples of 32, batch 1, more rows or columns than one block, grids smaller
//! than the data so grid-stride loops wrap) against the core function it mirrors, or an f64
//! reference where core's function is private. Every body runs on the CPU emulator
//! (`kernel_tests::emulator::*`, in every test run) and on a CUDA GPU
//! (`kernel_tests::cuda::*`, ignored without one).
//!
//! Tolerances, stated per check as `|kernel - reference| <= atol + rtol·|reference|`:
//! elementwise kernels written operation for operation as core (no FMA contraction) are
//! exact except where CUDA's `expf`/`tanhf`/`erff`/`log1pf` differ from libm in the last
//! ulps (1e-6 + 1e-6·|ref|); reductions differ from core only in summation order
//! (1e-5 + 1e-5·|ref|).

use cudarc::driver::LaunchConfig;
use mlp::{activation, Activation, Loss, Optimizer, Rng, Targets};

use crate::backend::Arg;
use crate::device::grid_1d;
use crate::memory::{DevBuf, Elem};
use crate::Gpu;

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod emulator {
            $(#[test]
            fn $name() {
                super::$name(&crate::Gpu::emulator().expect("the CPU emulator"));
            })*
        }
        mod cuda {
            $(#[test]
            #[ignore = "needs a CUDA GPU"]
            fn $name() {
                super::$name(&crate::Gpu::new(0, crate::GpuOptions::default()).expect("a CUDA GPU"));
            })*
        }
    };
}

on_every_backend!(
    gather_normalizes_the_ordered_rows,
    bias_act_applies_every_activation_and_dropout,
    act_backward_applies_every_derivative_and_the_mask,
    bn_train_normalizes_columns_and_moves_running_statistics,
    bn_backward_matches_the_batch_norm_gradient,
    bn_eval_uses_the_running_statistics,
    loss_train_matches_core_for_every_loss_and_output,
    loss_eval_matches_core_for_every_loss_and_output,
    finish_loss_sums_rows_and_flags_divergence,
    gradient_norm_and_clipping_factor_match_core,
    optimizer_update_matches_core_for_every_optimizer,
    advance_counts_steps,
);

const ACTIVATIONS: [Activation; 7] = [
    Activation::Identity,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Relu,
    Activation::LeakyRelu(0.07),
    Activation::Elu(0.8),
    Activation::Gelu,
];

fn cfg(blocks: u32, threads: (u32, u32)) -> LaunchConfig {
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads.0, threads.1, 1), shared_mem_bytes: 0 }
}

fn up<T: Elem>(g: &Gpu, v: &[T]) -> DevBuf<T> {
    g.upload(v).unwrap()
}

fn down<T: Elem + Default>(g: &Gpu, b: &DevBuf<T>, n: usize) -> Vec<T> {
    let mut v = vec![T::default(); n];
    g.read(b, &mut v).unwrap();
    v
}

fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * scale).collect()
}

#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok =
            if w.is_finite() { (g - w).abs() <= atol + rtol * w.abs() } else { g.to_bits() == w.to_bits() };
        assert!(ok, "{what}[{i}]: kernel {g} vs reference {w} (tolerance {atol} + {rtol}·|ref|)");
    }
}

fn gather_normalizes_the_ordered_rows(g: &Gpu) {
    let (rows, d) = (11, 37);
    let mut rng = Rng::new(1);
    let bytes: Vec<u8> = (0..rows * d).map(|_| rng.below(256) as u8).collect();
    let values = random(&mut rng, rows * d, 3.0);
    let labels: Vec<u32> = (0..rows as u32).map(|i| i * 7 % 10).collect();
    let order: Vec<u32> = vec![4, 9, 0, 10, 3, 1, 7, 2, 8, 6, 5];
    let scale = random(&mut rng, d, 0.1);
    let offset = random(&mut rng, d, 1.0);
    let (sb, ob) = (up(g, &scale), up(g, &offset));
    let (lb, ordb) = (up(g, &labels), up(g, &order));
    for (u8_data, ordered) in [(true, true), (false, false)] {
        // With an order: batch = order[base + ctr·stride ..][..n] = order[1 + 2·3 ..][..3];
        // without: rows base + b.
        let (ctr, stride, base, n) = if ordered { (2, 3, 1, 3) } else { (0, 0, 5, 4) };
        let ctr_b = up(g, &[ctr]);
        let (xb, yb) = (g.zeros::<f32>(n * d).unwrap(), g.zeros::<u32>(n).unwrap());
        let data_u8 = up(g, &bytes);
        let data_f32 = up(g, &values);
        let args = [
            Arg::P(if u8_data { g.addr(&data_u8) } else { 0 }),
            Arg::P(if u8_data { 0 } else { g.addr(&data_f32) }),
            Arg::P(g.addr(&lb)),
            Arg::P(if ordered { g.addr(&ordb) } else { 0 }),
            Arg::P(g.addr(&ctr_b)),
            Arg::I(stride),
            Arg::I(base),
            Arg::I(n as i32),
            Arg::I(d as i32),
            Arg::P(g.addr(&sb)),
            Arg::P(g.addr(&ob)),
            Arg::P(g.addr(&xb)),
            Arg::P(g.addr(&yb)),
        ];
        // Two blocks of 32 threads for 111 or 148 values: the grid-stride loop wraps.
        g.launch(&g.kernels().gather, cfg(2, (32, 1)), &args).unwrap();
        let (x, y) = (down(g, &xb, n * d), down(g, &yb, n));
        for b in 0..n {
            let row =
                if ordered { order[(base + ctr * stride) as usize + b] as usize } else { base as usize + b };
            assert_eq!(y[b], labels[row], "label of batch row {b}");
            for j in 0..d {
                let raw = if u8_data { bytes[row * d + j] as f32 } else { values[row * d + j] };
                // Exact: one rounded product, one rounded sum, as host's input transform.
                assert_eq!(x[b * d + j], raw * scale[j] + offset[j], "x[{b}][{j}]");
            }
        }
    }
}

/// Random dropout bits for `total` units; returns the words and the per-unit multipliers.
fn mask_bits(rng: &mut Rng, total: usize, keep_scale: f32) -> (Vec<u32>, Vec<f32>) {
    let mut words = vec![0u32; total.div_ceil(32)];
    let mut mult = vec![0.0f32; total];
    for (i, m) in mult.iter_mut().enumerate() {
        if rng.uniform() >= 0.3 {
            words[i >> 5] |= 1 << (i & 31);
            *m = keep_scale;
        }
    }
    (words, mult)
}

fn bias_act_applies_every_activation_and_dropout(g: &Gpu) {
    let (batch, n) = (3, 37);
    let total = batch * n;
    let mut rng = Rng::new(2);
    for act in ACTIVATIONS.into_iter().chain([Activation::Softmax]) {
        let z = random(&mut rng, total, 3.0);
        let bias = random(&mut rng, n, 1.0);
        let keep_scale = 1.0 / 0.7;
        let (words, mult) = mask_bits(&mut rng, total, keep_scale);
        let (zb, ab, outb) = (up(g, &z), g.zeros::<f32>(total).unwrap(), g.zeros::<f32>(total).unwrap());
        let (bb, mb, ctr) = (up(g, &bias), up(g, &words), up(g, &[0i32]));
        let (code, alpha) = mlp::format::activation_code(act);
        let args = [
            Arg::P(g.addr(&zb)),
            Arg::P(g.addr(&ab)),
            Arg::P(g.addr(&outb)),
            Arg::P(g.addr(&bb)),
            Arg::I(n as i32),
            Arg::I(total as i32),
            Arg::I(i32::from(code)),
            Arg::F(alpha),
            Arg::P(g.addr(&mb)),
            Arg::P(g.addr(&ctr)),
            Arg::I(words.len() as i32),
            Arg::F(keep_scale),
        ];
        g.launch(&g.kernels().bias_act, cfg(1, (64, 1)), &args).unwrap();
        let zz: Vec<f32> = z.iter().enumerate().map(|(i, &v)| v + bias[i % n]).collect();
        // Softmax rows stay logits here (the loss kernels apply it).
        let a: Vec<f32> = zz
            .iter()
            .map(|&v| if act == Activation::Softmax { v } else { activation::apply(act, v) })
            .collect();
        let out: Vec<f32> = a.iter().zip(&mult).map(|(&a, &m)| a * m).collect();
        close(&format!("{} z + bias", act.name()), &down(g, &zb, total), &zz, 0.0, 0.0);
        close(&format!("{} a", act.name()), &down(g, &ab, total), &a, 1e-6, 1e-6);
        close(&format!("{} dropout out", act.name()), &down(g, &outb, total), &out, 1e-6, 1e-6);
    }
}

fn act_backward_applies_every_derivative_and_the_mask(g: &Gpu) {
    let (batch, n) = (1, 45);
    let total = batch * n;
    let mut rng = Rng::new(3);
    for act in ACTIVATIONS {
        for dropout in [false, true] {
            let z = random(&mut rng, total, 3.0);
            let a: Vec<f32> = z.iter().map(|&v| activation::apply(act, v)).collect();
            let d = random(&mut rng, total, 1.0);
            let keep_scale = 1.0 / 0.7;
            let (words, mult) = mask_bits(&mut rng, total, keep_scale);
            let (db, zb, ab) = (up(g, &d), up(g, &z), up(g, &a));
            let (mb, ctr) = (up(g, &words), up(g, &[0i32]));
            let (code, alpha) = mlp::format::activation_code(act);
            let args = [
                Arg::P(g.addr(&db)),
                Arg::P(g.addr(&zb)),
                Arg::P(g.addr(&ab)),
                Arg::I(total as i32),
                Arg::I(i32::from(code)),
                Arg::F(alpha),
                Arg::P(if dropout { g.addr(&mb) } else { 0 }),
                Arg::P(g.addr(&ctr)),
                Arg::I(words.len() as i32),
                Arg::F(keep_scale),
            ];
            g.launch(&g.kernels().act_backward, cfg(1, (32, 1)), &args).unwrap();
            let want: Vec<f32> = (0..total)
                .map(|i| {
                    let gi = if dropout { d[i] * mult[i] } else { d[i] };
                    if act == Activation::Identity {
                        gi
                    } else {
                        gi * activation::derivative(act, z[i], a[i])
                    }
                })
                .collect();
            close(
                &format!("{} backward (dropout {dropout})", act.name()),
                &down(g, &db, total),
                &want,
                1e-6,
                1e-6,
            );
        }
    }
}

/// f64 batch statistics of a `batch × n` matrix with `bias` added: (mean, biased variance).
fn column_stats(u: &[f32], bias: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
    let batch = u.len() / n;
    let x = |r: usize, o: usize| u[r * n + o] as f64 + bias[o] as f64;
    let mean: Vec<f64> = (0..n).map(|o| (0..batch).map(|r| x(r, o)).sum::<f64>() / batch as f64).collect();
    let var =
        (0..n).map(|o| (0..batch).map(|r| (x(r, o) - mean[o]).powi(2)).sum::<f64>() / batch as f64).collect();
    (mean, var)
}

fn bn_launch(
    g: &Gpu,
    u: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    n: usize,
    diverged: i32,
) -> [Vec<f32>; 6] {
    let batch = u.len() / n;
    let running0: Vec<f32> =
        (0..2 * n).map(|i| if i < n { 0.1 * i as f32 } else { 1.0 + 0.01 * i as f32 }).collect();
    let (ub, zb, stats, running) =
        (up(g, u), g.zeros::<f32>(u.len()).unwrap(), g.zeros::<f32>(2 * n).unwrap(), up(g, &running0));
    let (bb, gb, beb, div) = (up(g, bias), up(g, gamma), up(g, beta), up(g, &[diverged]));
    let args = [
        Arg::P(g.addr(&ub)),
        Arg::P(g.addr(&bb)),
        Arg::P(g.addr(&gb)),
        Arg::P(g.addr(&beb)),
        Arg::P(g.addr(&zb)),
        Arg::P(g.addr(&stats)),
        Arg::P(g.addr(&stats) + 4 * n as u64),
        Arg::P(g.addr(&running)),
        Arg::P(g.addr(&running) + 4 * n as u64),
        Arg::I(batch as i32),
        Arg::I(n as i32),
        Arg::P(g.addr(&div)),
    ];
    // Blocks of 32 columns x 8 row lanes, as the trainer launches it.
    g.launch(&g.kernels().bn_train, cfg(n.div_ceil(32) as u32, (32, 8)), &args).unwrap();
    let st = down(g, &stats, 2 * n);
    let run = down(g, &running, 2 * n);
    [down(g, &ub, u.len()), down(g, &zb, u.len()), st[..n].to_vec(), st[n..].to_vec(), run, running0]
}

fn bn_train_normalizes_columns_and_moves_running_statistics(g: &Gpu) {
    let mut rng = Rng::new(4);
    // 40 columns: a full block and a partial one; 5 rows (fewer than the 8 lanes) and 19.
    for batch in [5, 19] {
        let n = 40;
        let u = random(&mut rng, batch * n, 2.0);
        let (bias, gamma, beta) =
            (random(&mut rng, n, 1.0), random(&mut rng, n, 1.5), random(&mut rng, n, 0.5));
        let [x_hat, z, mean, inv_std, running, running0] = bn_launch(g, &u, &bias, &gamma, &beta, n, 0);
        let (m64, v64) = column_stats(&u, &bias, n);
        let want_mean: Vec<f32> = m64.iter().map(|&m| m as f32).collect();
        let want_inv: Vec<f32> = v64.iter().map(|&v| (1.0 / (v + 1e-5).sqrt()) as f32).collect();
        close("batch mean", &mean, &want_mean, 1e-5, 1e-5);
        close("1/std", &inv_std, &want_inv, 1e-5, 1e-5);
        let xh: Vec<f32> = (0..batch * n)
            .map(|i| ((u[i] as f64 + bias[i % n] as f64 - m64[i % n]) / (v64[i % n] + 1e-5).sqrt()) as f32)
            .collect();
        close("x_hat", &x_hat, &xh, 1e-5, 1e-5);
        let zz: Vec<f32> = xh.iter().enumerate().map(|(i, &x)| gamma[i % n] * x + beta[i % n]).collect();
        close("z", &z, &zz, 1e-5, 1e-5);
        let unbias = batch as f64 / (batch - 1) as f64;
        let want_run: Vec<f32> = (0..2 * n)
            .map(|i| {
                let (r, s) = if i < n {
                    (running0[i] as f64, m64[i])
                } else {
                    (running0[i] as f64, v64[i - n] * unbias)
                };
                (0.9 * r + 0.1 * s) as f32
            })
            .collect();
        close("running statistics", &running, &want_run, 1e-5, 1e-5);
        // After a diverged step the running statistics stay (the batch's are still written).
        let [_, _, mean_d, _, running_d, running0_d] = bn_launch(g, &u, &bias, &gamma, &beta, n, 3);
        assert_eq!(running_d, running0_d, "diverged: running statistics must not move");
        assert_eq!(mean_d, mean);
    }
}

fn bn_backward_matches_the_batch_norm_gradient(g: &Gpu) {
    let mut rng = Rng::new(5);
    let (batch, n) = (7, 33);
    let d = random(&mut rng, batch * n, 1.0);
    let x_hat = random(&mut rng, batch * n, 1.5);
    let inv_std: Vec<f32> = (0..n).map(|o| 0.5 + 0.03 * o as f32).collect();
    let gamma = random(&mut rng, n, 1.5);
    let (db, xb, ib, gb) = (up(g, &d), up(g, &x_hat), up(g, &inv_std), up(g, &gamma));
    let (dg, dbeta) = (g.zeros::<f32>(n).unwrap(), g.zeros::<f32>(n).unwrap());
    let args = [
        Arg::P(g.addr(&db)),
        Arg::P(g.addr(&xb)),
        Arg::P(g.addr(&ib)),
        Arg::P(g.addr(&gb)),
        Arg::P(g.addr(&dg)),
        Arg::P(g.addr(&dbeta)),
        Arg::I(batch as i32),
        Arg::I(n as i32),
    ];
    g.launch(&g.kernels().bn_backward, cfg(n.div_ceil(32) as u32, (32, 8)), &args).unwrap();
    let sum = |f: &dyn Fn(usize) -> f64, o: usize| (0..batch).map(|r| f(r * n + o)).sum::<f64>();
    let want_beta: Vec<f64> = (0..n).map(|o| sum(&|i| d[i] as f64, o)).collect();
    let want_gamma: Vec<f64> = (0..n).map(|o| sum(&|i| d[i] as f64 * x_hat[i] as f64, o)).collect();
    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    close("dbeta", &down(g, &dbeta, n), &to32(&want_beta), 1e-5, 1e-5);
    close("dgamma", &down(g, &dg, n), &to32(&want_gamma), 1e-5, 1e-5);
    let du: Vec<f32> = (0..batch * n)
        .map(|i| {
            let o = i % n;
            let v = gamma[o] as f64
                * inv_std[o] as f64
                * (d[i] as f64 - (want_beta[o] + x_hat[i] as f64 * want_gamma[o]) / batch as f64);
            v as f32
        })
        .collect();
    close("du", &down(g, &db, batch * n), &du, 1e-5, 1e-5);
}

fn bn_eval_uses_the_running_statistics(g: &Gpu) {
    let mut rng = Rng::new(6);
    let (batch, n) = (1, 50);
    let x = random(&mut rng, batch * n, 2.0);
    let (bias, gamma, beta, mean) = (
        random(&mut rng, n, 1.0),
        random(&mut rng, n, 1.5),
        random(&mut rng, n, 0.5),
        random(&mut rng, n, 0.5),
    );
    let var: Vec<f32> = (0..n).map(|o| 0.2 + 0.05 * o as f32).collect();
    let xb = up(g, &x);
    let bufs = [up(g, &bias), up(g, &gamma), up(g, &beta), up(g, &mean), up(g, &var)];
    let mut args = vec![Arg::P(g.addr(&xb))];
    args.extend(bufs.iter().map(|b| Arg::P(g.addr(b))));
    args.extend([Arg::I(n as i32), Arg::I((batch * n) as i32)]);
    g.launch(&g.kernels().bn_eval, cfg(1, (32, 1)), &args).unwrap();
    let want: Vec<f32> = (0..n)
        .map(|o| {
            let v = x[o] as f64 + bias[o] as f64;
            ((v - mean[o] as f64) * gamma[o] as f64 / (var[o] as f64 + 1e-5).sqrt() + beta[o] as f64) as f32
        })
        .collect();
    close("bn_eval", &down(g, &xb, n), &want, 1e-5, 1e-5);
}

/// The output layers each loss kernel handles, with their output width.
fn loss_cases() -> Vec<(Loss, Activation, usize)> {
    vec![
        (Loss::CrossEntropy, Activation::Softmax, 37),
        (Loss::CrossEntropy, Activation::Identity, 37),
        (Loss::Mse, Activation::Sigmoid, 37),
        (Loss::Mse, Activation::Softmax, 10),
        (Loss::Mse, Activation::Identity, 3),
        (Loss::Mse, Activation::Tanh, 5),
        (Loss::BinaryCrossEntropy, Activation::Sigmoid, 33),
        (Loss::BinaryCrossEntropy, Activation::Identity, 1),
        (Loss::Mse, Activation::Sigmoid, 1),
    ]
}

fn labels_for(rng: &mut Rng, batch: usize, width: usize) -> Vec<u32> {
    (0..batch).map(|_| rng.below(width.max(2) as u32)).collect()
}

fn loss_train_matches_core_for_every_loss_and_output(g: &Gpu) {
    let mut rng = Rng::new(7);
    // 6 rows: two blocks of 4 warps, the second half empty.
    let batch = 6;
    for (loss, act, width) in loss_cases() {
        let name = format!("{loss:?}+{}", act.name());
        let z = random(&mut rng, batch * width, 3.0);
        let mut a = vec![0.0f32; z.len()];
        activation::forward(act, width, &z, &mut a);
        let labels = labels_for(&mut rng, batch, width);
        let mut dz = vec![0.0f32; z.len()];
        let core_loss = loss.loss_and_grad(act, width, &z, &a, Targets::Labels(&labels), &mut dz).unwrap();
        let len = (batch * width) as f32;
        let (grad_scale, mul, div) = match loss {
            Loss::CrossEntropy => (1.0 / batch as f32, 1.0 / batch as f32, 1.0),
            Loss::Mse => (2.0 / len, 1.0, len),
            Loss::BinaryCrossEntropy => (1.0 / len, 1.0 / len, 1.0),
        };
        // The kernel's `a` input: activations for every output but softmax (logits).
        let a_in: Vec<f32> = if act == Activation::Softmax { z.clone() } else { a.clone() };
        let (zb, ab, dzb, lb) = (up(g, &z), up(g, &a_in), g.zeros::<f32>(z.len()).unwrap(), up(g, &labels));
        let (rl, rc) = (g.zeros::<f32>(batch).unwrap(), g.zeros::<u32>(batch).unwrap());
        let threshold = loss.accuracy_threshold(act);
        let (code, alpha) = mlp::format::activation_code(act);
        let args = [
            Arg::I(i32::from(loss.code())),
            Arg::I(i32::from(code)),
            Arg::F(alpha),
            Arg::P(g.addr(&zb)),
            Arg::P(g.addr(&ab)),
            Arg::P(g.addr(&dzb)),
            Arg::P(g.addr(&lb)),
            Arg::I(batch as i32),
            Arg::I(width as i32),
            Arg::F(grad_scale),
            Arg::F(threshold),
            Arg::P(g.addr(&rl)),
            Arg::P(g.addr(&rc)),
        ];
        g.launch(&g.kernels().loss_train, cfg(batch.div_ceil(4) as u32, (32, 4)), &args).unwrap();
        let rows = down(g, &rl, batch);
        let kernel_loss = rows.iter().sum::<f32>() * mul / div;
        close(&format!("{name} loss"), &[kernel_loss], &[core_loss], 1e-5, 1e-5);
        close(&format!("{name} dz"), &down(g, &dzb, z.len()), &dz, 1e-6, 1e-5);
        if act == Activation::Softmax {
            close(&format!("{name} softmax"), &down(g, &ab, z.len()), &a, 1e-6, 1e-6);
        }
        for (b, &c) in down(g, &rc, batch).iter().enumerate() {
            let row = &a[b * width..(b + 1) * width];
            let want = mlp::loss::count_correct(row, width, Targets::Labels(&labels[b..b + 1]), threshold);
            assert_eq!(c as usize, want, "{name}: row {b} correct");
        }
    }
}

fn loss_eval_matches_core_for_every_loss_and_output(g: &Gpu) {
    let mut rng = Rng::new(8);
    let batch = 9;
    for (loss, act, width) in loss_cases() {
        let name = format!("{loss:?}+{}", act.name());
        let z = random(&mut rng, batch * width, 3.0);
        let mut out = vec![0.0f32; z.len()];
        activation::forward(act, width, &z, &mut out);
        let labels = labels_for(&mut rng, batch, width);
        let core_loss = loss.value_from_outputs(act, width, &out, Targets::Labels(&labels)).unwrap();
        let input: Vec<f32> = if act == Activation::Softmax { z.clone() } else { out.clone() };
        let (ob, lb) = (up(g, &input), up(g, &labels));
        let (rl, rc) = (g.zeros::<f32>(batch).unwrap(), g.zeros::<u32>(batch).unwrap());
        let threshold = loss.accuracy_threshold(act);
        let args = [
            Arg::I(i32::from(loss.code())),
            Arg::I(i32::from(mlp::format::activation_code(act).0)),
            Arg::P(g.addr(&ob)),
            Arg::P(g.addr(&lb)),
            Arg::I(batch as i32),
            Arg::I(width as i32),
            Arg::F(threshold),
            Arg::P(g.addr(&rl)),
            Arg::P(g.addr(&rc)),
        ];
        g.launch(&g.kernels().loss_eval, cfg(batch.div_ceil(4) as u32, (32, 4)), &args).unwrap();
        let div = if loss == Loss::CrossEntropy { batch } else { batch * width } as f32;
        let kernel_loss = down(g, &rl, batch).iter().sum::<f32>() / div;
        close(&format!("{name} eval loss"), &[kernel_loss], &[core_loss], 1e-5, 1e-5);
        let correct: u32 = down(g, &rc, batch).iter().sum();
        let want = mlp::loss::count_correct(&out, width, Targets::Labels(&labels), threshold);
        assert_eq!(correct as usize, want, "{name}: correct");
    }
}

fn finish_loss_sums_rows_and_flags_divergence(g: &Gpu) {
    let mut rng = Rng::new(9);
    let batch = 300; // more rows than the block's 256 threads
    let rows = random(&mut rng, batch, 2.0);
    let correct: Vec<u32> = (0..batch as u32).map(|i| i % 3).collect();
    for nan in [false, true] {
        let mut r = rows.clone();
        if nan {
            r[123] = f32::NAN;
        }
        let (rl, rc, ctr) = (up(g, &r), up(g, &correct), up(g, &[2i32]));
        let (sl, sc, div) =
            (g.zeros::<f32>(4).unwrap(), g.zeros::<u32>(4).unwrap(), g.zeros::<i32>(1).unwrap());
        let args = [
            Arg::P(g.addr(&rl)),
            Arg::P(g.addr(&rc)),
            Arg::I(batch as i32),
            Arg::F(0.5),
            Arg::F(3.0),
            Arg::P(g.addr(&ctr)),
            Arg::I(1),
            Arg::P(g.addr(&sl)),
            Arg::P(g.addr(&sc)),
            Arg::P(g.addr(&div)),
        ];
        g.launch(&g.kernels().finish_loss, cfg(1, (256, 1)), &args).unwrap();
        let (loss, count, diverged) = (down(g, &sl, 4), down(g, &sc, 4), down(g, &div, 1));
        // Slot base 1 + ctr 2 = 3.
        assert_eq!(count[3], correct.iter().sum::<u32>());
        if nan {
            assert!(loss[3].is_nan());
            assert_eq!(diverged[0], 3, "the first bad step, 1-based: ctr + 1");
        } else {
            let want = (rows.iter().map(|&v| v as f64).sum::<f64>() * 0.5 / 3.0) as f32;
            close("step loss", &loss[3..], &[want], 1e-5, 1e-5);
            assert_eq!(diverged[0], 0);
        }
    }
}

fn gradient_norm_and_clipping_factor_match_core(g: &Gpu) {
    let mut rng = Rng::new(10);
    for (n, max_norm) in [(1000, 0.5), (77, 1e6)] {
        let grads = random(&mut rng, n, 0.3);
        let blocks = 256;
        let (gb, partials) = (up(g, &grads), g.zeros::<f32>(blocks).unwrap());
        let args = [Arg::P(g.addr(&gb)), Arg::I(n as i32), Arg::P(g.addr(&partials))];
        g.launch(&g.kernels().sum_squares, cfg(blocks as u32, (256, 1)), &args).unwrap();
        let (ctr, norm, coef, div) = (
            up(g, &[0i32]),
            g.zeros::<f32>(1).unwrap(),
            g.zeros::<f32>(1).unwrap(),
            g.zeros::<i32>(1).unwrap(),
        );
        let args = [
            Arg::P(g.addr(&partials)),
            Arg::I(blocks as i32),
            Arg::F(max_norm),
            Arg::P(g.addr(&ctr)),
            Arg::P(g.addr(&norm)),
            Arg::P(g.addr(&coef)),
            Arg::P(g.addr(&div)),
        ];
        g.launch(&g.kernels().clip_coef, cfg(1, (256, 1)), &args).unwrap();
        let want = mlp::optim::grad_norm(&grads);
        close("gradient norm", &down(g, &norm, 1), &[want], 1e-6, 1e-5);
        let mut clipped = grads.clone();
        mlp::optim::clip_grad_norm(&mut clipped, max_norm).unwrap();
        let c = down(g, &coef, 1)[0];
        let scaled: Vec<f32> = grads.iter().map(|&v| if c < 1.0 { v * c } else { v }).collect();
        close("clipped gradients", &scaled, &clipped, 1e-7, 1e-5);
        assert_eq!(down(g, &div, 1)[0], 0);
    }
}

fn optimizer_update_matches_core_for_every_optimizer(g: &Gpu) {
    let n = 301;
    let optimizers = [
        Optimizer::sgd().with_weight_decay(0.01),
        Optimizer::momentum(0.9).with_weight_decay(0.001),
        Optimizer::nesterov(0.9),
        Optimizer::adagrad(),
        Optimizer::rmsprop().with_weight_decay(0.01),
        Optimizer::adadelta(),
        Optimizer::adam().with_weight_decay(0.01),
        Optimizer::adamw(),
        Optimizer::adamax(),
    ];
    for opt in optimizers {
        let mut rng = Rng::new(11);
        let mut params = random(&mut rng, n, 1.0);
        let mut state = vec![0.0f32; opt.state_len(n)];
        let (pb, sb) = (up(g, &params), g.zeros::<f32>(state.len()).unwrap());
        let (mut gb, coef) = (g.zeros::<f32>(n).unwrap(), up(g, &[0.5f32]));
        let lrs = [0.1f32, 0.05, 0.02];
        let hp: Vec<f32> = lrs
            .iter()
            .enumerate()
            .flat_map(|(k, &lr)| crate::trainer::hyper(opt, k as u64 + 1, lr))
            .collect();
        let (hpb, div) = (up(g, &hp), g.zeros::<i32>(1).unwrap());
        let (kind, [h0, h1, eps, wd]) = crate::trainer::optimizer_code(opt);
        for (k, &lr) in lrs.iter().enumerate() {
            let grads = random(&mut rng, n, 0.5);
            g.write(&mut gb, &grads).unwrap();
            // Clipping by 0.5 on the last step.
            let clip = k == 2;
            let mut scaled = grads.clone();
            if clip {
                scaled.iter_mut().for_each(|v| *v *= 0.5);
            }
            opt.update(&mut params, &scaled, &mut state, k as u64 + 1, lr).unwrap();
            let ctr = up(g, &[k as i32]);
            let s1 = if opt.state_vectors() >= 2 { g.addr(&sb) + 4 * n as u64 } else { 0 };
            let args = [
                Arg::P(g.addr(&pb)),
                Arg::P(g.addr(&gb)),
                Arg::P(if opt.state_vectors() >= 1 { g.addr(&sb) } else { 0 }),
                Arg::P(s1),
                Arg::I(n as i32),
                Arg::I(kind),
                Arg::F(h0),
                Arg::F(h1),
                Arg::F(eps),
                Arg::F(wd),
                Arg::P(g.addr(&hpb)),
                Arg::P(g.addr(&ctr)),
                Arg::P(if clip { g.addr(&coef) } else { 0 }),
                Arg::P(g.addr(&div)),
            ];
            g.launch(&g.kernels().optimizer_update, cfg(1, (64, 1)), &args).unwrap();
            let name = format!("{opt:?} step {}", k + 1);
            close(&format!("{name} params"), &down(g, &pb, n), &params, 1e-6, 1e-6);
            if !state.is_empty() {
                close(&format!("{name} state"), &down(g, &sb, state.len()), &state, 1e-6, 1e-6);
            }
            // A diverged flag stops every update.
            let before = down(g, &pb, n);
            let stop = up(g, &[1i32]);
            let mut stopped = args;
            stopped[13] = Arg::P(g.addr(&stop));
            g.launch(&g.kernels().optimizer_update, cfg(1, (64, 1)), &stopped).unwrap();
            assert_eq!(down(g, &pb, n), before, "{name}: an update after divergence");
        }
    }
}

fn advance_counts_steps(g: &Gpu) {
    let ctr = up(g, &[5i32]);
    for _ in 0..3 {
        g.launch(&g.kernels().advance, cfg(1, (1, 1)), &[Arg::P(g.addr(&ctr))]).unwrap();
    }
    assert_eq!(down(g, &ctr, 1), vec![8]);
    // grid_1d never launches an empty grid.
    assert_eq!(grid_1d(0).grid_dim.0, 1);
}
