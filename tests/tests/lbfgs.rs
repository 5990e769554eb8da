//! L-BFGS (`mlp::optim::Lbfgs`, `torch.optim.LBFGS`) against what can be computed without
//! it: `_cubic_interpolate` on functions whose minimizer is known, the first two steps on a
//! quadratic from the BFGS update written as matrices in f64 (not the two-loop recursion
//! core uses), convergence to known optima (a quadratic, Rosenbrock), and the strong-Wolfe
//! conditions, checked in f64, at every point the line search accepts.

use mlp::optim::lbfgs::{self, cubic_interpolate, WOLFE_C1, WOLFE_C2};
use mlp::optim::{Lbfgs, Optimizer};
use mlp::{Buffer, Error};

/// `f(x) = ½ (x - x*)ᵀA(x - x*)` with `A` symmetric positive definite, as an f32 objective
/// (`½ xᵀAx - bᵀx` up to a constant, `b = A x*`, written so that its minimum is 0 and the
/// f32 loss keeps its relative accuracy near it).
struct Quadratic {
    a: Vec<Vec<f64>>,
    x_star: Vec<f64>,
    evaluations: usize,
}

impl Quadratic {
    /// A 6×6 SPD matrix with condition number about 30 (a diagonal plus a rank-one term) and
    /// the optimum `x* = (1, -2, 0.5, 3, -1, 0.25)`.
    fn new() -> (Self, Vec<f64>) {
        let n = 6;
        let u = [0.3, -0.2, 0.5, 0.1, -0.4, 0.2];
        let a: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| u[i] * u[j] + if i == j { 1.0 + 5.0 * i as f64 } else { 0.0 }).collect())
            .collect();
        let x_star = vec![1.0, -2.0, 0.5, 3.0, -1.0, 0.25];
        (Quadratic { a, x_star: x_star.clone(), evaluations: 0 }, x_star)
    }

    fn f64_eval(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let r: Vec<f64> = x.iter().zip(&self.x_star).map(|(x, s)| x - s).collect();
        let g = mat_vec(&self.a, &r);
        (0.5 * dot(&r, &g), g)
    }
}

impl lbfgs::Objective for Quadratic {
    fn evaluate(&mut self, params: &[f32], grads: &mut [f32]) -> Result<f32, Error> {
        self.evaluations += 1;
        let (f, g) = self.f64_eval(&widen(params));
        for (o, g) in grads.iter_mut().zip(g) {
            *o = g as f32;
        }
        Ok(f as f32)
    }
}

/// Rosenbrock's function `(1 - x)² + 100 (y - x²)²`, minimum 0 at (1, 1).
fn rosenbrock(p: &[f64]) -> (f64, [f64; 2]) {
    let (x, y) = (p[0], p[1]);
    let f = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
    (f, [-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])
}

fn rosenbrock_objective(params: &[f32], grads: &mut [f32]) -> Result<f32, Error> {
    let (f, g) = rosenbrock(&widen(params));
    grads[0] = g[0] as f32;
    grads[1] = g[1] as f32;
    Ok(f as f32)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn mat_vec(a: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    a.iter().map(|row| dot(row, x)).collect()
}

#[test]
fn cubic_interpolation_finds_known_minimizers() {
    // (x - 1)²: from x = 0 (f 1, f' -2) and x = 3 (f 4, f' 4) the minimizer is 1.
    assert!((cubic_interpolate(0.0, 1.0, -2.0, 3.0, 4.0, 4.0, None) - 1.0).abs() < 1e-12);
    // The same with the points swapped.
    assert!((cubic_interpolate(3.0, 4.0, 4.0, 0.0, 1.0, -2.0, None) - 1.0).abs() < 1e-12);
    // x³ - 3x: from 0 (f 0, f' -3) and 2 (f 2, f' 9) the local minimizer is 1.
    assert!((cubic_interpolate(0.0, 0.0, -3.0, 2.0, 2.0, 9.0, None) - 1.0).abs() < 1e-12);
    // Clamped to the bounds given.
    assert_eq!(cubic_interpolate(0.0, 0.0, -3.0, 2.0, 2.0, 9.0, Some((1.5, 5.0))), 1.5);
    // No minimum (d1² - g1 g2 = 1 - 4 < 0 for f = 2x with these values): the midpoint.
    assert_eq!(cubic_interpolate(0.0, 0.0, 2.0, 1.0, 1.0, 2.0, None), 0.5);
}

#[test]
fn first_two_steps_are_the_bfgs_update_from_scaled_identity() {
    let (mut q, _) = Quadratic::new();
    let opt = Lbfgs::new(1, 10, false);
    let n = 6;
    let mut state = vec![0.0f32; lbfgs::state_len(n, 10)];
    let x0 = vec![0.5f32, 0.5, -0.5, 1.0, 0.0, -1.0];
    let lr = 0.8f32;
    let mut x = x0.clone();
    let first = opt.step(&mut x, &mut state, lr, &mut q).unwrap();
    let (f0, g0) = q.f64_eval(&widen(&x0));
    assert_eq!((first.evaluations, first.iterations), (1, 1));
    assert!((first.loss as f64 - f0).abs() <= 1e-6 * f0.abs());
    // Step 1: steepest descent, t = min(1, 1/‖g‖₁) · lr.
    let t0 = (1.0 / g0.iter().map(|g| g.abs()).sum::<f64>()).min(1.0) * lr as f64;
    let x1: Vec<f64> = (0..n).map(|i| x0[i] as f64 - t0 * g0[i]).collect();
    for i in 0..n {
        assert!((x[i] as f64 - x1[i]).abs() < 1e-6, "step 1, {i}: {} vs {}", x[i], x1[i]);
    }
    // Step 2: d = -H g₁ with H the BFGS update of H₀ = (sᵀy / yᵀy) I by the pair
    // s = x₁ - x₀, y = g₁ - g₀: H = (I - ρ s yᵀ) H₀ (I - ρ y sᵀ) + ρ s sᵀ, ρ = 1 / yᵀs;
    // then x₂ = x₁ + lr · d.
    let x1_core = widen(&x);
    let (_, g1) = q.f64_eval(&x1_core);
    let s: Vec<f64> = (0..n).map(|i| x1_core[i] - x0[i] as f64).collect();
    let y: Vec<f64> = (0..n).map(|i| g1[i] - g0[i]).collect();
    let rho = 1.0 / dot(&y, &s);
    let h0 = dot(&s, &y) / dot(&y, &y);
    let left: Vec<Vec<f64>> =
        (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j)) - rho * s[i] * y[j]).collect()).collect();
    let h: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    // (L H₀ Lᵀ)[i][j] = H₀ Σ_k L[i][k] L[j][k].
                    h0 * (0..n).map(|k| left[i][k] * left[j][k]).sum::<f64>() + rho * s[i] * s[j]
                })
                .collect()
        })
        .collect();
    let d: Vec<f64> = mat_vec(&h, &g1).iter().map(|v| -v).collect();
    opt.step(&mut x, &mut state, lr, &mut q).unwrap();
    for i in 0..n {
        let expected = x1_core[i] + lr as f64 * d[i];
        assert!((x[i] as f64 - expected).abs() < 1e-5, "step 2, {i}: {} vs {expected}", x[i]);
    }
}

#[test]
fn converges_to_the_optimum_of_a_quadratic_with_and_without_line_search() {
    for strong_wolfe in [false, true] {
        let (mut q, x_star) = Quadratic::new();
        let opt = Lbfgs::new(20, 100, strong_wolfe);
        let mut state = vec![0.0f32; lbfgs::state_len(6, 100)];
        let mut x = vec![0.0f32; 6];
        for _ in 0..5 {
            opt.step(&mut x, &mut state, 1.0, &mut q).unwrap();
        }
        for i in 0..6 {
            assert!((x[i] as f64 - x_star[i]).abs() < 1e-4, "wolfe {strong_wolfe}: x {x:?} vs {x_star:?}");
        }
        // PyTorch's budget: at most max_eval = 25 evaluations per step.
        assert!(q.evaluations <= 5 * 25, "{}", q.evaluations);
    }
}

#[test]
fn accepted_line_search_steps_satisfy_the_strong_wolfe_conditions() {
    // One iteration per step, so each step is one line search from the point before it.
    let opt = Lbfgs::new(1, 10, true);
    let mut state = vec![0.0f32; lbfgs::state_len(2, 10)];
    let mut x = vec![-1.5f32, 2.0];
    let mut checked = 0;
    for _ in 0..200 {
        let before = widen(&x);
        let (f0, g0) = rosenbrock(&before);
        if g0.iter().all(|g| g.abs() < 1e-3) {
            break;
        }
        let mut obj = rosenbrock_objective;
        opt.step(&mut x, &mut state, 1.0, &mut obj).unwrap();
        let after = widen(&x);
        let (f1, g1) = rosenbrock(&after);
        let s = [after[0] - before[0], after[1] - before[1]];
        let (gs0, gs1) = (dot(&g0, &s), dot(&g1, &s));
        // f32 evaluation inside the step: a relative 1e-6 of slack on f.
        let slack = 1e-6 * f0.abs().max(1e-12);
        assert!(gs0 < 0.0, "not a descent direction: {gs0}");
        assert!(f1 <= f0 + WOLFE_C1 * gs0 + slack, "sufficient decrease: {f1} > {f0} + c1 {gs0}");
        assert!(gs1.abs() <= WOLFE_C2 * gs0.abs() * (1.0 + 1e-4) + slack, "curvature: |{gs1}| > c2 |{gs0}|");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} steps checked");
    let (f, _) = rosenbrock(&widen(&x));
    assert!(f < 1e-6 && (x[0] - 1.0).abs() < 2e-3 && (x[1] - 1.0).abs() < 4e-3, "{x:?} f {f}");
}

#[test]
fn rosenbrock_converges_with_the_default_step() {
    let opt = Lbfgs::new(20, 100, true);
    let mut state = vec![0.0f32; lbfgs::state_len(2, 100)];
    let mut x = vec![-1.5f32, 2.0];
    let mut obj = rosenbrock_objective;
    for _ in 0..20 {
        opt.step(&mut x, &mut state, 1.0, &mut obj).unwrap();
    }
    assert!((x[0] - 1.0).abs() < 2e-3 && (x[1] - 1.0).abs() < 4e-3, "{x:?}");
}

#[test]
fn a_checkpointed_state_continues_exactly() {
    let opt = Lbfgs::new(3, 4, true);
    let (mut q, _) = Quadratic::new();
    let mut state = vec![0.0f32; lbfgs::state_len(6, 4)];
    let mut x = vec![0.0f32; 6];
    for _ in 0..2 {
        opt.step(&mut x, &mut state, 1.0, &mut q).unwrap();
    }
    // Two runs from copies of (x, state), as `--resume` loads them: the same bits.
    let (mut xa, mut sa, mut xb, mut sb) = (x.clone(), state.clone(), x.clone(), state.clone());
    opt.step(&mut xa, &mut sa, 1.0, &mut q).unwrap();
    opt.step(&mut xb, &mut sb, 1.0, &mut q).unwrap();
    assert_eq!((xa, sa), (xb, sb));
}

#[test]
fn bad_inputs_are_errors() {
    let opt = Lbfgs::pytorch();
    let mut x = [1.0f32, 1.0];
    let mut obj = rosenbrock_objective;
    let mut short = vec![0.0f32; 3];
    assert!(matches!(
        opt.step(&mut x, &mut short, 1.0, &mut obj),
        Err(Error::BufferLength { buffer: Buffer::OptimizerState, actual: 3, .. })
    ));
    let mut state = vec![0.0f32; lbfgs::state_len(2, 100)];
    assert!(opt.step(&mut x, &mut state, 0.0, &mut obj).is_err());
    assert!(Lbfgs::new(0, 10, false).validate().is_err());
    assert!(Lbfgs::new(5, 0, false).validate().is_err());
    let mut nan = |_: &[f32], g: &mut [f32]| -> Result<f32, Error> {
        g.fill(0.0);
        Ok(f32::NAN)
    };
    assert!(matches!(opt.step(&mut x, &mut state, 1.0, &mut nan), Err(Error::NonFinite { .. })));
    // The objective's own error comes back as it is.
    let mut failing = |_: &[f32], _: &mut [f32]| -> Result<f32, Error> { Err(Error::EmptyBatch) };
    assert_eq!(opt.step(&mut x, &mut state, 1.0, &mut failing), Err(Error::EmptyBatch));
}

#[test]
fn the_history_is_sized_before_allocation() {
    // 784-512-256-10 with history 100: 535,818 parameters, about 430 MB of f32 for the pairs.
    let params = 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10;
    let bytes = Optimizer::lbfgs().state_len(params) * 4;
    assert!((420_000_000..460_000_000).contains(&bytes), "{bytes}");
    assert_eq!(lbfgs::state_len(params, 100), Optimizer::lbfgs().state_len(params));
    // Saturates instead of overflowing.
    assert_eq!(lbfgs::state_len(usize::MAX, 100), usize::MAX);
}
