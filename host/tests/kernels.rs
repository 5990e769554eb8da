//! The host's SGEMM kernels against core's portable reference, on random and ragged shapes.

use host::kernels::{Fast, Gemm, Isa};
use mlp::{Kernels, Portable, Rng, Shape};

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_in(-1.0, 1.0)).collect()
}

/// Relative error bound for sums of `k` products of values in [-1, 1]: both sides round
/// each of `k` additions, in different orders.
fn close(a: &[f32], b: &[f32], k: usize) -> bool {
    let tol = 1e-6 * (k as f32 + 1.0);
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())))
}

#[test]
fn gemm_agrees_with_portable_on_many_shapes() {
    let mut rng = Rng::new(11);
    let dims = [1usize, 2, 3, 7, 8, 15, 16, 17, 33, 64, 100];
    for (i, &batch) in dims.iter().enumerate() {
        for &inputs in &dims[i % 3..] {
            for &outputs in dims.iter().rev().skip(i % 4) {
                let s = Shape { batch, inputs, outputs };
                let x = random(batch * inputs, &mut rng);
                let w = random(outputs * inputs, &mut rng);
                let b = random(outputs, &mut rng);
                let dy = random(batch * outputs, &mut rng);
                let (mut y1, mut y2) = (vec![f32::NAN; batch * outputs], vec![f32::NAN; batch * outputs]);
                Portable.dense_forward(s, &x, &w, &b, &mut y1);
                Gemm.dense_forward(s, &x, &w, &b, &mut y2);
                assert!(close(&y1, &y2, inputs), "forward {s:?}");
                let (mut dx1, mut dx2) = (vec![f32::NAN; batch * inputs], vec![f32::NAN; batch * inputs]);
                Portable.dense_backward_input(s, &dy, &w, &mut dx1);
                Gemm.dense_backward_input(s, &dy, &w, &mut dx2);
                assert!(close(&dx1, &dx2, outputs), "backward input {s:?}");
                let (mut dw1, mut dw2) = (vec![f32::NAN; outputs * inputs], vec![f32::NAN; outputs * inputs]);
                let (mut db1, mut db2) = (vec![f32::NAN; outputs], vec![f32::NAN; outputs]);
                Portable.dense_backward_params(s, &x, &dy, &mut dw1, &mut db1);
                Gemm.dense_backward_params(s, &x, &dy, &mut dw2, &mut db2);
                assert!(close(&dw1, &dw2, batch) && close(&db1, &db2, batch), "backward params {s:?}");
            }
        }
    }
}

/// Values in [-1, 1] with about `zeros` of them exactly zero (like pixels or ReLU outputs).
fn sparse_random(n: usize, zeros: f32, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| if rng.uniform_in(0.0, 1.0) < zeros { 0.0 } else { rng.uniform_in(-1.0, 1.0) }).collect()
}

/// Every product of `kernels` against `Portable` on one shape and one input.
fn agrees(kernels: &dyn Kernels, s: Shape, x: &[f32], rng: &mut Rng) -> Result<(), String> {
    let Shape { batch, inputs, outputs } = s;
    let w = random(outputs * inputs, rng);
    let b = random(outputs, rng);
    let dy = random(batch * outputs, rng);
    let (mut y1, mut y2) = (vec![f32::NAN; batch * outputs], vec![f32::NAN; batch * outputs]);
    Portable.dense_forward(s, x, &w, &b, &mut y1);
    kernels.dense_forward(s, x, &w, &b, &mut y2);
    if !close(&y1, &y2, inputs) {
        return Err(format!("forward {s:?}"));
    }
    let (mut dx1, mut dx2) = (vec![f32::NAN; batch * inputs], vec![f32::NAN; batch * inputs]);
    Portable.dense_backward_input(s, &dy, &w, &mut dx1);
    kernels.dense_backward_input(s, &dy, &w, &mut dx2);
    if !close(&dx1, &dx2, outputs) {
        return Err(format!("backward input {s:?}"));
    }
    let (mut dw1, mut dw2) = (vec![f32::NAN; outputs * inputs], vec![f32::NAN; outputs * inputs]);
    let (mut db1, mut db2) = (vec![f32::NAN; outputs], vec![f32::NAN; outputs]);
    Portable.dense_backward_params(s, x, &dy, &mut dw1, &mut db1);
    kernels.dense_backward_params(s, x, &dy, &mut dw2, &mut db2);
    if !(close(&dw1, &dw2, batch) && close(&db1, &db2, batch)) {
        return Err(format!("backward params {s:?}"));
    }
    Ok(())
}

#[test]
fn fast_agrees_with_portable_on_every_isa_sparse_and_dense() {
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_available()).collect();
    assert!(isas.contains(&Isa::Baseline));
    let mut rng = Rng::new(12);
    // Batches below and above SMALL_BATCH, outputs below SPARSE_MIN_OUTPUTS, ragged against
    // 16 lanes and 4 GEMV rows, and wider than one 256-output register block.
    let shapes = [
        (1, 784, 256),
        (3, 17, 35),
        (7, 100, 10),
        (8, 33, 33),
        (9, 1, 47),
        (20, 64, 257),
        (64, 300, 300),
        (70, 784, 256),
        (130, 15, 100),
    ];
    for isa in isas {
        let fast = Fast::with_isa(isa).expect("available");
        assert_eq!(fast.isa(), isa);
        for &(batch, inputs, outputs) in &shapes {
            let s = Shape { batch, inputs, outputs };
            for zeros in [0.0, 0.6, 0.85, 1.0] {
                let x = sparse_random(batch * inputs, zeros, &mut rng);
                if let Err(what) = agrees(&fast, s, &x, &mut rng) {
                    panic!("{isa:?}, {:.0}% zeros: {what}", zeros * 100.0);
                }
            }
        }
    }
}

#[test]
fn fast_propagates_nan_inputs_like_the_dense_product() {
    let s = Shape { batch: 16, inputs: 40, outputs: 64 };
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        let mut x = vec![0.0; s.batch * s.inputs];
        x[5 * s.inputs + 33] = f32::NAN;
        x[7] = 1.0;
        let w = vec![0.5; s.outputs * s.inputs];
        let mut y = vec![0.0; s.batch * s.outputs];
        Fast::with_isa(isa).expect("available").dense_forward(s, &x, &w, &vec![0.0; s.outputs], &mut y);
        for (b, row) in y.chunks(s.outputs).enumerate() {
            assert_eq!(row.iter().all(|v| v.is_nan()), b == 5, "{isa:?} row {b}");
        }
    }
}
