//! int8 vs f32 on random models and inputs: every dequantized output within an error bound
//! derived from the model's scales, and top-1 agreement.
//!
//! # The bound (per sample, per unit, propagated layer by layer)
//! Notation for one layer: the true input `x` (f64 reference), the value the int8 input
//! represents `x̂ = s_in (x_q - z_in)` with `|x̂_j - x_j| <= e_j`; weights
//! `ŵ = s_w[o] W_q` with `|ŵ - w| <= s_w/2` (round to nearest; `|w| <= 127 s_w` so no clipping);
//! bias `b̂ = s_in s_w b_q` with `|b̂ - b| <= s_in s_w / 2`. The int32 accumulator represents
//! exactly `A = Σ ŵ x̂ + b̂` (no overflow at these widths), so with `z = Σ w x + b`:
//!
//! `|A - z| <= Σ_j |ŵ_j| e_j + (s_w/2) Σ_j |x_j| + s_in s_w / 2 =: E_acc`.
//!
//! Requantizing to a tensor of scale `s` multiplies by `M' = m0 2^(shift-31)`, which is within
//! a relative `2^-31` of `M = s_in s_w / s`, then rounds twice (SaturatingRoundingDoublingHighMul,
//! RoundingDivideByPOT), at most half a unit each: `|s (q - zp) - A| <= s + |A| 2^-31`. The
//! clamp to the representable range is a projection onto an interval that the true value
//! (calibrated on these very inputs) misses by at most `s/2` (zero-point rounding), so it adds
//! at most `s/2`. ReLU (the clamp at the zero point) is a projection too. Hence:
//!
//! - clamp layers: `e_out = E_acc + |A| 2^-31 + 1.5 s_out`;
//! - table layers: the pre-activation has `e_pre = E_acc + |A| 2^-31 + 1.5 s_pre`, the
//!   activation is `L`-Lipschitz, and the table entry is rounded (`s_out/2`) and clamped
//!   (`s_out/2`): `e_out = L e_pre + s_out`.
//!
//! The network input starts with `e = s_in` (rounding plus clamping). A slack of
//! `1e-5 (1 + |value|)` per layer covers f32 vs f64 arithmetic (the calibration ran in f32,
//! batch-norm folding rounds in f32, the tables use f32 libm functions).
//! For a softmax output layer the logits are compared.

use mlp::int8::{self, Int8Model};
use mlp::{fold_batch_norm, Activation, InputTransform, Rng};
use mlp_tests::fixtures::OUTPUT_ACTIVATIONS;
use mlp_tests::int8::*;
use mlp_tests::reference;

struct Sample {
    deq: Vec<f64>,
    reference: Vec<f64>,
    bound: Vec<f64>,
}

fn evaluate(b: &Built, file: &[u8], x: &[f32], batch: usize) -> Vec<Sample> {
    let m = Int8Model::parse(file).unwrap();
    let n_in = b.t.input();
    let mut xq = vec![0i8; x.len()];
    m.quantize_input(x, &mut xq).unwrap();
    let q = run_int8(&m, &xq, batch);
    let mut folded = vec![0.0; int8::scratch_len(&b.t)];
    let ft = fold_batch_norm(&b.t, &b.params, &b.running, &mut folded).unwrap();
    let n_out = b.t.output();
    let out_layer = m.output_layer();
    let mut samples = Vec::new();
    for s in 0..batch {
        let mut xs: Vec<f64> = x[s * n_in..(s + 1) * n_in].iter().map(|&v| v as f64).collect();
        // The input error is known exactly: |s_in (x_q - z_in) - x| (at most s_in).
        let mut e: Vec<f64> = (0..n_in)
            .map(|j| {
                let x_hat = m.input_scale() as f64 * (xq[s * n_in + j] as i32 - m.input_zero_point()) as f64;
                (x_hat - x[s * n_in + j] as f64).abs() + 1e-7
            })
            .collect();
        let mut s_in = m.input_scale() as f64;
        for (i, layer) in m.layers().iter().enumerate() {
            let r = ft.param_ranges(i).unwrap();
            let (w, bias) = (&folded[r.weights], &folded[r.bias]);
            let (mm, nn) = (layer.inputs(), layer.outputs());
            let act = layer.activation();
            let s_out = layer.out_scale() as f64;
            let (mut y, mut ey) = (vec![0.0; nn], vec![0.0; nn]);
            for o in 0..nn {
                let z: f64 = (0..mm).map(|j| w[o * mm + j] as f64 * xs[j]).sum::<f64>() + bias[o] as f64;
                let s_w = layer.weight_scale(o).unwrap() as f64;
                let wq = &layer.weights()[o * mm..(o + 1) * mm];
                let b_hat = s_in * s_w * layer.bias().get(o).unwrap() as f64;
                // The rounding errors |ŵ - w| <= s_w/2 and |b̂ - b| <= s_in s_w/2 are known
                // exactly here; using them keeps the bound tight enough to catch a 2x error.
                let e_acc = (0..mm)
                    .map(|j| {
                        let w_hat = s_w * wq[j] as f64;
                        let dw = (w_hat - w[o * mm + j] as f64).abs();
                        assert!(dw <= s_w / 2.0 * (1.0 + 1e-9), "weight rounding error above s_w/2");
                        w_hat.abs() * e[j] + dw * xs[j].abs()
                    })
                    .sum::<f64>()
                    + (b_hat - bias[o] as f64).abs();
                assert!((b_hat - bias[o] as f64).abs() <= s_in * s_w / 2.0 * (1.0 + 1e-9) + 1e-12);
                let a = z.abs() + e_acc;
                let slack = 1e-5 * (1.0 + z.abs());
                y[o] = reference::act(act, z);
                ey[o] = if layer.table().is_some() {
                    let e_pre = e_acc + a * 2f64.powi(-31) + 1.5 * layer.pre_scale() as f64 + slack;
                    lipschitz(act) * e_pre + s_out + 1e-5 * (1.0 + y[o].abs())
                } else {
                    e_acc + a * 2f64.powi(-31) + 1.5 * s_out + slack
                };
            }
            xs = y;
            e = ey;
            s_in = s_out;
        }
        let deq = q[s * n_out..(s + 1) * n_out]
            .iter()
            .map(|&v| out_layer.out_scale() as f64 * (v as i32 - out_layer.out_zero_point()) as f64)
            .collect();
        samples.push(Sample { deq, reference: xs, bound: e });
    }
    samples
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

#[test]
fn dequantized_outputs_are_within_the_derived_bound() {
    let mut rng = Rng::new(2024);
    let (mut outputs, mut worst) = (0usize, 0.0f64);
    for model in 0..120 {
        let output = OUTPUT_ACTIVATIONS[model % OUTPUT_ACTIVATIONS.len()];
        let input = 1 + rng.below(20) as usize;
        let b = random_model(&mut rng, input, output, model % 3 == 0);
        let batch = 48;
        let x = random_inputs(&mut rng, batch * input);
        let file = mlp_tests::int8::quantize(&b, &x, batch, &InputTransform::Identity);
        for (k, s) in evaluate(&b, &file, &x, batch).iter().enumerate() {
            for o in 0..s.deq.len() {
                let err = (s.deq[o] - s.reference[o]).abs();
                assert!(
                    err <= s.bound[o],
                    "model {model} ({:?}) sample {k} unit {o}: |{} - {}| = {err} > bound {}",
                    b.t.layers(),
                    s.deq[o],
                    s.reference[o],
                    s.bound[o]
                );
                worst = worst.max(err / s.bound[o]);
                outputs += 1;
            }
        }
    }
    eprintln!("{outputs} outputs checked; largest error / bound = {worst:.3}");
    // The bound is attained to a sizeable fraction somewhere: it is not vacuously loose.
    assert!(worst > 0.05, "every error is below 5% of its bound: the bound is too loose to test anything");
}

#[test]
fn a_wrong_requantization_shift_breaks_the_bound() {
    // The bound check can fail: doubling one layer's multiplier (shift + 1) must be caught.
    // A shallow model (8 -> 16 ReLU -> 4), so the propagated bound stays close to the values.
    let mut rng = Rng::new(77);
    let t = mlp::Topology::new(
        8,
        &[mlp::LayerSpec::dense(16, Activation::Relu), mlp::LayerSpec::dense(4, Activation::Identity)],
    )
    .unwrap();
    let mut params = vec![0.0; t.param_len()];
    mlp::init::initialize(&t, &mut params, mlp::init::Init::HeNormal, &mut rng).unwrap();
    let b = Built { t, params, running: vec![] };
    let batch = 32;
    let x = random_inputs(&mut rng, batch * 8);
    let mut file = mlp_tests::int8::quantize(&b, &x, batch, &InputTransform::Identity);
    let ratio = |file: &[u8]| {
        evaluate(&b, file, &x, batch)
            .iter()
            .flat_map(|s| {
                (0..s.deq.len()).map(|o| (s.deq[o] - s.reference[o]).abs() / s.bound[o]).collect::<Vec<_>>()
            })
            .fold(0.0, f64::max)
    };
    assert!(ratio(&file) <= 1.0, "the untouched model violates its bound");
    let m = Int8Model::parse(&file).unwrap();
    let shifts = m.output_layer().shifts();
    let at = shifts.as_bytes().as_ptr() as usize - file.as_ptr() as usize;
    let n = m.output_layer().outputs();
    drop(m);
    for o in 0..n {
        let p = at + 4 * o;
        let s = i32::from_le_bytes(file[p..p + 4].try_into().unwrap());
        file[p..p + 4].copy_from_slice(&(s + 1).to_le_bytes());
    }
    reseal(&mut file);
    let worst = evaluate(&b, &file, &x, batch)
        .iter()
        .flat_map(|s| {
            (0..s.deq.len()).map(|o| (s.deq[o] - s.reference[o]).abs() / s.bound[o]).collect::<Vec<_>>()
        })
        .fold(0.0, f64::max);
    eprintln!("tampered: largest error / bound = {worst}");

    let violated = worst > 1.0;
    assert!(violated, "a doubled output multiplier went unnoticed");
}

#[test]
fn top1_agrees_on_well_separated_inputs_and_mostly_overall() {
    let mut rng = Rng::new(99);
    let (mut separated, mut total, mut agree_all) = (0usize, 0usize, 0usize);
    for model in 0..60 {
        let input = 4 + rng.below(28) as usize;
        let b = random_model(&mut rng, input, Activation::Softmax, model % 2 == 1);
        let batch = 64;
        let x = random_inputs(&mut rng, batch * input);
        let file = mlp_tests::int8::quantize(&b, &x, batch, &InputTransform::Identity);
        let m = Int8Model::parse(&file).unwrap();
        let mut xq = vec![0i8; x.len()];
        m.quantize_input(&x, &mut xq).unwrap();
        let q = run_int8(&m, &xq, batch);
        let probs = run_f32(&b, &x, batch);
        let n = b.t.output();
        for (k, s) in evaluate(&b, &file, &x, batch).iter().enumerate() {
            let int_top = int8::argmax(&q[k * n..(k + 1) * n]);
            let f32_top = mlp::loss::argmax(&probs[k * n..(k + 1) * n]);
            let top = argmax(&s.reference);
            let mut sorted = s.reference.clone();
            sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let max_bound = s.bound.iter().cloned().fold(0.0, f64::max);
            // Logit margin above twice the bound: the int8 argmax is provably the same.
            if sorted[0] - sorted[1] > 2.0 * max_bound {
                assert_eq!(int_top, top, "model {model} sample {k}: well-separated input changed class");
                separated += 1;
            }
            agree_all += (int_top == f32_top) as usize;
            total += 1;
        }
    }
    let rate = agree_all as f64 / total as f64;
    eprintln!("{separated}/{total} well separated; top-1 agreement with f32 on all inputs {rate:.4}");
    assert!(separated * 10 >= total, "too few well-separated inputs ({separated}/{total}) to test anything");
    assert!(rate >= 0.9, "top-1 agreement {rate}");
}

#[test]
fn u8_input_table_equals_float_transform_then_quantize() {
    let mut rng = Rng::new(5);
    let b = random_model(&mut rng, 16, Activation::Softmax, false);
    let raw: Vec<u8> = (0..16 * 40).map(|_| rng.below(256) as u8).collect();
    let (scale, offset) = (1.0 / 255.0, -0.1307);
    let transform = InputTransform::Global { scale, offset };
    let x: Vec<f32> = raw.iter().map(|&r| r as f32 * scale + offset).collect();
    let file = mlp_tests::int8::quantize(&b, &x, 40, &transform);
    let m = Int8Model::parse(&file).unwrap();
    let (mut via_table, mut via_float) = (vec![0i8; raw.len()], vec![0i8; raw.len()]);
    m.quantize_u8(&raw, &mut via_table).unwrap();
    // The float path: the file's own transform, then input quantization.
    let rawf: Vec<f32> = raw.iter().map(|&r| r as f32).collect();
    let mut xt = vec![0.0; raw.len()];
    m.file().transform_input(&rawf, &mut xt).unwrap();
    m.quantize_input(&xt, &mut via_float).unwrap();
    assert_eq!(via_table, via_float);
    // And independently: round(x / s) + z, clamped.
    let (s, z) = (m.input_scale() as f64, m.input_zero_point());
    for (&r, &t) in raw.iter().zip(&via_table) {
        let x = (r as f32 * scale + offset) as f64;
        let want = ((x / s).round() as i32 + z).clamp(-128, 127);
        assert_eq!(t as i32, want);
    }
    // A per-feature transform has no table.
    let sc = vec![0.5f32; 16];
    let of = vec![0.0f32; 16];
    let file = mlp_tests::int8::quantize(&b, &x, 40, &InputTransform::PerFeature { scale: &sc, offset: &of });
    let m = Int8Model::parse(&file).unwrap();
    assert!(m.input_table().is_none());
    assert_eq!(m.quantize_u8(&raw, &mut via_table), Err(mlp::Error::NoInputTable));
}

#[test]
fn dequantize_output_gives_probabilities_close_to_f32() {
    let mut rng = Rng::new(11);
    let b = random_model(&mut rng, 10, Activation::Softmax, false);
    let x = random_inputs(&mut rng, 10 * 32);
    let file = mlp_tests::int8::quantize(&b, &x, 32, &InputTransform::Identity);
    let m = Int8Model::parse(&file).unwrap();
    let mut xq = vec![0i8; x.len()];
    m.quantize_input(&x, &mut xq).unwrap();
    let q = run_int8(&m, &xq, 32);
    let mut p = vec![0.0f32; q.len()];
    m.dequantize_output(&q, &mut p).unwrap();
    let want = run_f32(&b, &x, 32);
    let n = b.t.output();
    for (row, wrow) in p.chunks(n).zip(want.chunks(n)) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // Softmax is 1/2-Lipschitz in each logit's max-norm sense: probabilities move at most
        // half the largest logit error; a loose 0.25 catches a broken dequantization.
        for (a, b) in row.iter().zip(wrow) {
            assert!((a - b).abs() < 0.25, "{row:?} vs {wrow:?}");
        }
    }
}

/// A kernel computed differently (u8 × i8 products with a row-sum correction, as x86 VNNI
/// does) is bit-identical through the seam.
struct RowSumKernel;

impl int8::Int8Kernels for RowSumKernel {
    fn dense_i8(&self, shape: mlp::Shape, x: &[i8], input_offset: i32, w: &[i8], acc: &mut [i32]) {
        for (xr, ar) in x.chunks(shape.inputs).zip(acc.chunks_mut(shape.outputs)) {
            for (a, wr) in ar.iter_mut().zip(w.chunks(shape.inputs)) {
                // (x + off) · w = (x + 128) · w + (off - 128) · w, with x + 128 as u8.
                let (mut dot, mut rowsum) = (0i32, 0i32);
                for (&xv, &wv) in xr.iter().zip(wr).rev() {
                    dot = dot.wrapping_add(((xv as u8 ^ 0x80) as i32) * wv as i32);
                    rowsum = rowsum.wrapping_add(wv as i32);
                }
                *a = dot.wrapping_add((input_offset - 128).wrapping_mul(rowsum));
            }
        }
    }
}

#[test]
fn another_kernel_through_the_seam_is_bit_identical() {
    let mut rng = Rng::new(3);
    for _ in 0..20 {
        let b = random_model(&mut rng, 12, Activation::Softmax, false);
        let x = random_inputs(&mut rng, 12 * 16);
        let file = mlp_tests::int8::quantize(&b, &x, 16, &InputTransform::Identity);
        let m = Int8Model::parse(&file).unwrap();
        let mut xq = vec![0i8; x.len()];
        m.quantize_input(&x, &mut xq).unwrap();
        let mut act = vec![0i8; m.act_workspace_len(16)];
        let mut acc = vec![0i32; m.acc_workspace_len(16)];
        let other = m.forward(&RowSumKernel, &xq, 16, &mut act, &mut acc).unwrap().to_vec();
        assert_eq!(other, run_int8(&m, &xq, 16));
        // Batch 1 gives the same rows as the batch.
        for k in 0..16 {
            let (class, row) =
                m.predict(&RowSumKernel, &xq[k * 12..(k + 1) * 12], &mut act, &mut acc).unwrap();
            assert_eq!(row, &other[k * row.len()..(k + 1) * row.len()]);
            assert_eq!(class, int8::argmax(row));
        }
    }
}

#[test]
fn workspace_and_input_errors_not_panics() {
    let mut rng = Rng::new(8);
    let b = random_model(&mut rng, 6, Activation::Softmax, false);
    let x = random_inputs(&mut rng, 6 * 4);
    let file = mlp_tests::int8::quantize(&b, &x, 4, &InputTransform::Identity);
    let m = Int8Model::parse(&file).unwrap();
    let xq = vec![0i8; 12];
    let mut act = vec![0i8; m.act_workspace_len(2)];
    let mut acc = vec![0i32; m.acc_workspace_len(2)];
    let k = &int8::PortableInt8;
    assert!(m.forward(k, &xq, 2, &mut act, &mut acc).is_ok());
    assert_eq!(m.forward(k, &xq, 0, &mut act, &mut acc).unwrap_err(), mlp::Error::EmptyBatch);
    assert!(matches!(m.forward(k, &xq[..11], 2, &mut act, &mut acc), Err(mlp::Error::BufferLength { .. })));
    let (short_act, short_acc) = (act.len() - 1, acc.len() - 1);
    assert!(matches!(
        m.forward(k, &xq, 2, &mut act[..short_act], &mut acc),
        Err(mlp::Error::BufferLength { .. })
    ));
    assert!(matches!(
        m.forward(k, &xq, 2, &mut act, &mut acc[..short_acc]),
        Err(mlp::Error::BufferLength { .. })
    ));
    // Calibration errors: an empty range is refused, with the layer named.
    let mut ranges = calibrate(&b, &x, 4);
    ranges.out[1] = int8::MinMax::EMPTY;
    let mut scratch = vec![0.0; int8::scratch_len(&b.t)];
    let mut out = vec![0u8; int8::encoded_len(&b.t, &InputTransform::Identity)];
    assert_eq!(
        int8::quantize(
            &b.t,
            &b.params,
            &b.running,
            &ranges,
            &InputTransform::Identity,
            &mut scratch,
            &mut out
        ),
        Err(mlp::Error::InvalidCalibration { layer: Some(1) })
    );
}
