//! Test plumbing: owned training buffers, random models and data, comparisons.

use mlp::{Optimizer, Rng, Topology, TrainBuffers, TrainConfig, Trainer};

/// Owned buffers for a [`Trainer`], sized for a topology, optimizer and batch.
#[derive(Clone, Debug)]
pub struct Buffers {
    /// Parameters.
    pub params: Vec<f32>,
    /// Gradients.
    pub grads: Vec<f32>,
    /// Batch-norm running statistics (reset to mean 0, variance 1).
    pub running: Vec<f32>,
    /// Optimizer state (zero).
    pub state: Vec<f32>,
    /// Training workspace.
    pub workspace: Vec<f32>,
}

impl Buffers {
    /// Zero parameters, reset running statistics, zero state, a workspace for `max_batch`.
    pub fn new(t: &Topology, optimizer: Optimizer, max_batch: usize) -> Self {
        let n = t.param_len();
        let mut running = vec![0.0; t.running_len()];
        t.reset_running(&mut running).expect("running length");
        Buffers {
            params: vec![0.0; n],
            grads: vec![0.0; n],
            running,
            state: vec![0.0; optimizer.state_len(n)],
            workspace: vec![0.0; t.train_workspace_len(max_batch)],
        }
    }

    /// A trainer over these buffers.
    pub fn trainer<'a>(&'a mut self, t: &'a Topology, config: TrainConfig) -> Trainer<'a> {
        Trainer::new(
            t,
            config,
            TrainBuffers {
                params: &mut self.params,
                grads: &mut self.grads,
                running: &mut self.running,
                optimizer_state: &mut self.state,
                workspace: &mut self.workspace,
            },
        )
        .expect("valid trainer buffers")
    }
}

/// `n` values uniform in `[low, high)`.
pub fn uniform(rng: &mut Rng, n: usize, low: f32, high: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_in(low, high)).collect()
}

/// `n` standard normal values.
pub fn normal(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

/// Random parameters that keep pre-activations of order one: weights `U(±√(3/fan_in))`,
/// biases `U(-0.5, 0.5)`, `γ` of random sign with `|γ|` in `[0.5, 1.5)`, `β` in `[-0.5, 0.5)`.
pub fn random_params(t: &Topology, rng: &mut Rng) -> Vec<f32> {
    let mut p = vec![0.0; t.param_len()];
    for i in 0..t.layers().len() {
        let r = t.param_ranges(i).expect("layer");
        let bound = (3.0 / t.fan_in(i) as f32).sqrt();
        p[r.weights.clone()].iter_mut().for_each(|w| *w = rng.uniform_in(-bound, bound));
        p[r.bias.clone()].iter_mut().for_each(|b| *b = rng.uniform_in(-0.5, 0.5));
        if let Some((g, b)) = r.batch_norm {
            p[g].iter_mut().for_each(|v| {
                let m = rng.uniform_in(0.5, 1.5);
                *v = if rng.uniform() < 0.5 { -m } else { m };
            });
            p[b].iter_mut().for_each(|v| *v = rng.uniform_in(-0.5, 0.5));
        }
    }
    p
}

/// Random running statistics: means in `[-1, 1)`, variances in `[0.2, 3)`.
pub fn random_running(t: &Topology, rng: &mut Rng) -> Vec<f32> {
    let mut r = vec![0.0; t.running_len()];
    for i in 0..t.layers().len() {
        if let Some((m, v)) = t.running_ranges(i) {
            r[m].iter_mut().for_each(|x| *x = rng.uniform_in(-1.0, 1.0));
            r[v].iter_mut().for_each(|x| *x = rng.uniform_in(0.2, 3.0));
        }
    }
    r
}

/// Widens f32 values to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Largest absolute value (0 for an empty slice).
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// The worst element of a comparison, for messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// Index of the element.
    pub index: usize,
    /// Value under test.
    pub actual: f64,
    /// Reference value.
    pub expected: f64,
    /// The tolerance it exceeded.
    pub tolerance: f64,
}

/// Checks `|actual - expected| <= rtol·|expected| + atol` elementwise; returns the element
/// that exceeds its tolerance by the largest factor, if any. Lengths must match.
pub fn compare(actual: &[f64], expected: &[f64], rtol: f64, atol: f64) -> Result<(), Mismatch> {
    assert_eq!(actual.len(), expected.len(), "compared lengths differ");
    let mut worst: Option<(f64, Mismatch)> = None;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let tol = rtol * e.abs() + atol;
        let err = (a - e).abs();
        // NaN anywhere counts as a mismatch.
        let within = err <= tol;
        if !within {
            let ratio = if tol > 0.0 { err / tol } else { f64::INFINITY };
            let ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
            if worst.as_ref().is_none_or(|(r, _)| ratio > *r) {
                worst = Some((ratio, Mismatch { index: i, actual: a, expected: e, tolerance: tol }));
            }
        }
    }
    match worst {
        Some((_, m)) => Err(m),
        None => Ok(()),
    }
}
