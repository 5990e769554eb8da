//! The f32 test matrix: every implementation of core's seam this CPU runs (`Portable`, our
//! SGEMM `Gemm` and `Fast` on every detected instruction set, `Matrixmultiply`) through the
//! same test bodies, against `Portable` within the rounding of a different summation order.
//! `Prepared` (a fixed model's weights transposed once) is checked in `seam.rs`.

use cpu::f32::gemm::{gemm, Init, Mat};
use cpu::isa::Level;
use cpu::{Fast, Gemm, Isa, Matrixmultiply};
use mlp::{Kernels, Portable, Rng, Shape};
use mlp_tests::fixtures::{close_sums as close, random as random_values, sparse_random};

/// One entry of the matrix.
struct Backend {
    name: String,
    kernels: Box<dyn Kernels + Sync>,
    /// Runs its parallel parts on the current rayon pool (and so is checked for results
    /// that do not depend on the thread count); matrixmultiply has threads of its own.
    on_pool: bool,
    /// Runs products with no terms (`inputs` or `outputs` 0), which `Portable` rejects.
    empty_sums: bool,
}

/// Every f32 kernel this CPU runs.
fn backends() -> Vec<Backend> {
    let mut v = vec![Backend {
        name: "portable".into(),
        kernels: Box::new(Portable),
        on_pool: false,
        empty_sums: false,
    }];
    let isas: Vec<Isa> = Isa::available().collect();
    assert!(isas.iter().any(|i| i.level() == Level::Baseline));
    for isa in isas {
        let (gemm, fast) = (Gemm::with_isa(isa), Fast::with_isa(isa));
        assert_eq!((gemm.isa(), fast.isa()), (isa, isa));
        let level = format!("{:?}", isa.level()).to_lowercase();
        v.push(Backend {
            name: format!("gemm/{level}"),
            kernels: Box::new(gemm),
            on_pool: true,
            empty_sums: true,
        });
        v.push(Backend {
            name: format!("fast/{level}"),
            kernels: Box::new(fast),
            on_pool: true,
            empty_sums: true,
        });
    }
    v.push(Backend {
        name: "matrixmultiply".into(),
        kernels: Box::new(Matrixmultiply),
        on_pool: false,
        empty_sums: false,
    });
    v
}

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    random_values(rng, n)
}

#[test]
fn every_kernel_agrees_with_portable_on_a_grid_of_shapes() {
    for b in backends() {
        agrees_on_many_shapes(&b.name, b.kernels.as_ref());
    }
}

fn agrees_on_many_shapes(name: &str, kernels: &dyn Kernels) {
    let mut rng = Rng::new(11);
    let dims = [1usize, 2, 3, 7, 8, 15, 16, 17, 33, 64, 100];
    for (i, &batch) in dims.iter().enumerate() {
        for &inputs in &dims[i % 3..] {
            for &outputs in dims.iter().rev().skip(i % 4) {
                let s = Shape { batch, inputs, outputs };
                let x = random(batch * inputs, &mut rng);
                if let Err(what) = agrees(kernels, s, &x, &mut rng) {
                    panic!("{name}: {what}");
                }
            }
        }
    }
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
fn every_kernel_agrees_with_portable_on_sparse_and_dense_inputs() {
    let mut rng = Rng::new(12);
    // Batches below and above SMALL_BATCH, outputs below SPARSE_MIN_OUTPUTS, ragged against
    // 16 lanes and 4 GEMV rows, wider than one 256-output register block, and an input over
    // 2 MiB (the forward then fetches each next task's rows ahead) with a ragged last task.
    let shapes = [
        (1000, 784, 40),
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
    for b in backends() {
        for &(batch, inputs, outputs) in &shapes {
            let s = Shape { batch, inputs, outputs };
            for zeros in [0.0, 0.6, 0.85, 1.0] {
                let x = sparse_random(&mut rng, batch * inputs, zeros);
                if let Err(what) = agrees(b.kernels.as_ref(), s, &x, &mut rng) {
                    panic!("{}, {:.0}% zeros: {what}", b.name, zeros * 100.0);
                }
            }
        }
    }
}

#[test]
fn every_kernel_propagates_nan_inputs_like_the_dense_product() {
    let s = Shape { batch: 16, inputs: 40, outputs: 64 };
    for b in backends() {
        let mut x = vec![0.0; s.batch * s.inputs];
        x[5 * s.inputs + 33] = f32::NAN;
        x[7] = 1.0;
        let w = vec![0.5; s.outputs * s.inputs];
        let mut y = vec![0.0; s.batch * s.outputs];
        b.kernels.dense_forward(s, &x, &w, &vec![0.0; s.outputs], &mut y);
        for (r, row) in y.chunks(s.outputs).enumerate() {
            assert_eq!(row.iter().all(|v| v.is_nan()), r == 5, "{} row {r}", b.name);
        }
    }
}

/// Random ragged shapes (1..100 in each dimension, rarely a whole number of vectors) and the
/// edge cases (k = 0, one row, one column) on every instruction set of our SGEMM.
#[test]
fn every_kernel_agrees_with_portable_on_random_ragged_shapes() {
    let mut rng = Rng::new(13);
    let dim = |rng: &mut Rng| 1 + (rng.uniform_in(0.0, 1.0) * 99.0) as usize;
    let mut shapes: Vec<Shape> = (0..60)
        .map(|_| Shape { batch: dim(&mut rng), inputs: dim(&mut rng), outputs: dim(&mut rng) })
        .collect();
    shapes.extend([
        Shape { batch: 1, inputs: 1, outputs: 1 },
        Shape { batch: 300, inputs: 600, outputs: 10 },
        Shape { batch: 37, inputs: 520, outputs: 33 },
        Shape { batch: 0, inputs: 3, outputs: 4 },
    ]);
    for b in backends() {
        for &s in &shapes {
            let x = random(s.batch * s.inputs, &mut rng);
            if let Err(what) = agrees(b.kernels.as_ref(), s, &x, &mut rng) {
                panic!("{}: {what}", b.name);
            }
        }
    }
}

/// Empty sums (k = 0): the forward of a layer without inputs is its bias, the input gradient
/// of a layer without outputs is zero (Portable cannot run these shapes).
#[test]
fn kernels_handle_empty_sums() {
    for b in backends().into_iter().filter(|b| b.empty_sums) {
        let (gemm, isa) = (b.kernels.as_ref(), &b.name);
        let s = Shape { batch: 5, inputs: 0, outputs: 7 };
        let bias: Vec<f32> = (0..7).map(|o| o as f32).collect();
        let mut y = vec![f32::NAN; 5 * 7];
        gemm.dense_forward(s, &[], &[], &bias, &mut y);
        assert!(y.chunks(7).all(|r| r == bias), "{isa:?}");
        let s = Shape { batch: 5, inputs: 9, outputs: 0 };
        let mut dx = vec![f32::NAN; 5 * 9];
        gemm.dense_backward_input(s, &[], &[], &mut dx);
        assert!(dx.iter().all(|&v| v == 0.0), "{isa:?}");
    }
}

#[test]
fn every_kernel_propagates_nan_in_every_product() {
    let s = Shape { batch: 30, inputs: 40, outputs: 20 };
    for b in backends() {
        let (gemm, isa) = (b.kernels.as_ref(), &b.name);
        let mut x = vec![0.5; s.batch * s.inputs];
        x[13 * s.inputs + 33] = f32::NAN;
        let w = vec![0.25; s.outputs * s.inputs];
        let mut y = vec![0.0; s.batch * s.outputs];
        gemm.dense_forward(s, &x, &w, &vec![0.0; s.outputs], &mut y);
        for (b, row) in y.chunks(s.outputs).enumerate() {
            assert_eq!(row.iter().all(|v| v.is_nan()), b == 13, "{isa:?} forward row {b}");
            assert!(row.iter().all(|v| v.is_nan()) || row.iter().all(|v| v.is_finite()));
        }
        // A NaN gradient of sample 4, output 17 reaches every input of sample 4 (dX) and every
        // weight of output 17 (dW).
        let mut dy = vec![0.5; s.batch * s.outputs];
        dy[4 * s.outputs + 17] = f32::NAN;
        let mut dx = vec![0.0; s.batch * s.inputs];
        gemm.dense_backward_input(s, &dy, &w, &mut dx);
        for (b, row) in dx.chunks(s.inputs).enumerate() {
            assert!(row.iter().all(|v| v.is_nan() == (b == 4)), "{isa:?} dx row {b}");
        }
        let (mut dw, mut db) = (vec![0.0; s.outputs * s.inputs], vec![0.0; s.outputs]);
        x[13 * s.inputs + 33] = 0.5;
        gemm.dense_backward_params(s, &x, &dy, &mut dw, &mut db);
        for (o, row) in dw.chunks(s.inputs).enumerate() {
            assert!(row.iter().all(|v| v.is_nan() == (o == 17)), "{isa:?} dw row {o}");
        }
    }
}

/// Every output is computed by one task in a fixed order: 1 and 2 threads give the same bits.
#[test]
fn kernels_on_the_pool_do_not_depend_on_the_thread_count() {
    let mut rng = Rng::new(14);
    // Large enough to be split over threads (at least 1 M multiply-adds), ragged, narrow, and
    // small ones that run on one thread.
    let shapes =
        [(256, 784, 256), (301, 100, 70), (1000, 300, 10), (97, 300, 10), (64, 33, 130), (300, 17, 5)];
    for b in backends().into_iter().filter(|b| b.on_pool) {
        let (gemm, isa) = (b.kernels.as_ref(), &b.name);
        for (batch, inputs, outputs) in shapes {
            let s = Shape { batch, inputs, outputs };
            let x = random(batch * inputs, &mut rng);
            let w = random(outputs * inputs, &mut rng);
            let b = random(outputs, &mut rng);
            let dy = random(batch * outputs, &mut rng);
            let products = |threads: usize| {
                let pool = cpu::pool::Threads::new(threads).expect("pool");
                pool.install(|| {
                    let mut y = vec![0.0; batch * outputs];
                    let mut dx = vec![0.0; batch * inputs];
                    let (mut dw, mut db) = (vec![0.0; outputs * inputs], vec![0.0; outputs]);
                    gemm.dense_forward(s, &x, &w, &b, &mut y);
                    gemm.dense_backward_input(s, &dy, &w, &mut dx);
                    gemm.dense_backward_params(s, &x, &dy, &mut dw, &mut db);
                    [y, dx, dw, db].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
                })
            };
            assert_eq!(products(1), products(2), "{isa:?} {s:?}");
            assert_eq!(products(1), products(3), "{isa:?} {s:?}");
        }
    }
}

/// The SGEMM itself on operands that are neither row- nor column-contiguous (every other
/// element), which the seam never passes but `gemm` accepts: the general-stride packing.
#[test]
fn our_gemm_handles_general_strides() {
    let mut rng = Rng::new(15);
    for isa in Isa::available() {
        for (m, k, n) in [(1, 1, 1), (13, 7, 40), (30, 50, 9), (29, 3, 33)] {
            // A[i][p] at i·2k + p·2 (row-major), B[p][j] at p·2 + j·2k (column-major), both
            // using every other element.
            let a = random(2 * m * k, &mut rng);
            let b = random(2 * k * n, &mut rng);
            let bias = random(n, &mut rng);
            let mut c = vec![f32::NAN; m * n];
            let (am, bm) = (Mat { data: &a, rs: 2 * k, cs: 2 }, Mat { data: &b, rs: 2, cs: 2 * k });
            gemm(isa, m, k, n, am, bm, Init::Bias(&bias), &mut c);
            let expected: Vec<f32> = (0..m * n)
                .map(|e| {
                    let (i, j) = (e / n, e % n);
                    bias[j] + (0..k).map(|p| a[i * 2 * k + 2 * p] * b[2 * p + j * 2 * k]).sum::<f32>()
                })
                .collect();
            assert!(close(&c, &expected, k), "{isa:?} {m}x{k}x{n}");
        }
    }
}
