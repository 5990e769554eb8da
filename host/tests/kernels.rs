//! The host's SGEMM kernels against core's portable reference, on random and ragged shapes.

use host::kernels::Gemm;
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
