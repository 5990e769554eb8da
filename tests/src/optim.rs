//! Every optimizer's update rule in f64, transcribed from the single-tensor implementations
//! of PyTorch's `torch.optim` (defaults otherwise: no dampening, no lr decay, not centered,
//! no amsgrad, no maximize), and `torch.nn.utils.clip_grad_norm_`.
//!
//! Only the hyperparameters are read from an [`mlp::Optimizer`] (as f64); the math is here.

use mlp::Optimizer;

/// Per-parameter optimizer state and the step counter, in f64.
#[derive(Clone, Debug)]
pub struct RefOptimizer {
    /// Which rule and its hyperparameters.
    pub kind: Optimizer,
    /// First state vector (momentum buffer, sum of squares, square average, first moment).
    pub s0: Vec<f64>,
    /// Second state vector (Adadelta's accumulated updates, second moment, infinity norm).
    pub s1: Vec<f64>,
    /// Updates done so far.
    pub step: u64,
}

impl RefOptimizer {
    /// Fresh (zero) state for `n` parameters.
    pub fn new(kind: Optimizer, n: usize) -> Self {
        RefOptimizer { kind, s0: vec![0.0; n], s1: vec![0.0; n], step: 0 }
    }

    /// The state laid out as core documents it: the used state vectors one after another.
    pub fn flat_state(&self) -> Vec<f64> {
        let vectors = match self.kind {
            Optimizer::Sgd { .. } => 0,
            Optimizer::Momentum { .. }
            | Optimizer::Nesterov { .. }
            | Optimizer::Adagrad { .. }
            | Optimizer::RmsProp { .. }
            | Optimizer::Asgd { .. } => 1,
            Optimizer::Lbfgs(_) => 0,
            _ => 2,
        };
        let mut out = Vec::new();
        if vectors >= 1 {
            out.extend_from_slice(&self.s0);
        }
        if vectors >= 2 {
            out.extend_from_slice(&self.s1);
        }
        out
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, params: &mut [f64], grads: &[f64], lr: f64) {
        assert_eq!(params.len(), grads.len());
        self.step += 1;
        let t = self.step as i32;
        let f = |v: f32| v as f64;
        for i in 0..params.len() {
            let p = params[i];
            let raw = grads[i];
            match self.kind {
                Optimizer::Sgd { weight_decay } => {
                    let d_p = raw + f(weight_decay) * p;
                    params[i] = p - lr * d_p;
                }
                Optimizer::Momentum { momentum, weight_decay }
                | Optimizer::Nesterov { momentum, weight_decay } => {
                    let nesterov = matches!(self.kind, Optimizer::Nesterov { .. });
                    let mu = f(momentum);
                    let mut d_p = raw + f(weight_decay) * p;
                    // torch: the buffer starts as a copy of the first gradient.
                    let buf = if t == 1 { d_p } else { mu * self.s0[i] + d_p };
                    self.s0[i] = buf;
                    d_p = if nesterov { d_p + mu * buf } else { buf };
                    params[i] = p - lr * d_p;
                }
                Optimizer::Adagrad { eps, weight_decay } => {
                    let g = raw + f(weight_decay) * p;
                    let clr = lr; // lr_decay = 0
                    self.s0[i] += g * g;
                    let std = self.s0[i].sqrt() + f(eps);
                    params[i] = p - clr * g / std;
                }
                Optimizer::RmsProp { alpha, eps, weight_decay } => {
                    let g = raw + f(weight_decay) * p;
                    let a = f(alpha);
                    self.s0[i] = a * self.s0[i] + (1.0 - a) * g * g;
                    let avg = self.s0[i].sqrt() + f(eps);
                    params[i] = p - lr * g / avg;
                }
                Optimizer::Adadelta { rho, eps, weight_decay } => {
                    let g = raw + f(weight_decay) * p;
                    let (rho, eps) = (f(rho), f(eps));
                    self.s0[i] = rho * self.s0[i] + (1.0 - rho) * g * g;
                    let std = (self.s0[i] + eps).sqrt();
                    let delta = (self.s1[i] + eps).sqrt() / std * g;
                    self.s1[i] = rho * self.s1[i] + (1.0 - rho) * delta * delta;
                    params[i] = p - lr * delta;
                }
                Optimizer::Adam { beta1, beta2, eps, weight_decay }
                | Optimizer::AdamW { beta1, beta2, eps, weight_decay } => {
                    let (b1, b2) = (f(beta1), f(beta2));
                    let decoupled = matches!(self.kind, Optimizer::AdamW { .. });
                    let (mut p, g) = (p, raw);
                    let g = if decoupled {
                        p *= 1.0 - lr * f(weight_decay);
                        g
                    } else {
                        g + f(weight_decay) * p
                    };
                    self.s0[i] = b1 * self.s0[i] + (1.0 - b1) * g;
                    self.s1[i] = b2 * self.s1[i] + (1.0 - b2) * g * g;
                    let bc1 = 1.0 - b1.powi(t);
                    let bc2 = 1.0 - b2.powi(t);
                    let step_size = lr / bc1;
                    let denom = self.s1[i].sqrt() / bc2.sqrt() + f(eps);
                    params[i] = p - step_size * self.s0[i] / denom;
                }
                Optimizer::Adamax { beta1, beta2, eps, weight_decay } => {
                    let (b1, b2) = (f(beta1), f(beta2));
                    let g = raw + f(weight_decay) * p;
                    self.s0[i] = b1 * self.s0[i] + (1.0 - b1) * g;
                    self.s1[i] = (b2 * self.s1[i]).max(g.abs() + f(eps));
                    let clr = lr / (1.0 - b1.powi(t));
                    params[i] = p - clr * self.s0[i] / self.s1[i];
                }
                Optimizer::Rprop { eta_minus, eta_plus, step_min, step_max } => {
                    // torch: state['prev'] = 0, state['step_size'] = lr at the first step.
                    if t == 1 {
                        self.s1[i] = lr;
                    }
                    let sign = (raw * self.s0[i]).signum_or_zero();
                    let factor = match sign {
                        s if s > 0.0 => f(eta_plus),
                        s if s < 0.0 => f(eta_minus),
                        _ => 1.0,
                    };
                    self.s1[i] = (self.s1[i] * factor).clamp(f(step_min), f(step_max));
                    let g = if sign < 0.0 { 0.0 } else { raw };
                    params[i] = p - g.signum_or_zero() * self.s1[i];
                    self.s0[i] = g;
                }
                Optimizer::Asgd { lambd, alpha, t0, weight_decay } => {
                    // torch: eta = lr and mu = 1 at first; after step k (1-based),
                    // eta = lr / (1 + lambd lr k)^alpha and mu = 1 / max(1, k - t0).
                    let k = (t - 1) as f64;
                    let eta = lr / (1.0 + f(lambd) * lr * k).powf(f(alpha));
                    let mu = 1.0 / (k - f(t0)).max(1.0);
                    let g = raw + f(weight_decay) * p;
                    let p = p * (1.0 - f(lambd) * eta) - eta * g;
                    params[i] = p;
                    self.s0[i] = if mu == 1.0 { p } else { self.s0[i] + (p - self.s0[i]) * mu };
                }
                Optimizer::Lbfgs(_) => panic!("L-BFGS has no elementwise rule: see mlp::optim::lbfgs"),
            }
        }
    }
}

/// `torch.sign` on f64: -1, 0 or 1.
trait SignumOrZero {
    fn signum_or_zero(self) -> f64;
}

impl SignumOrZero for f64 {
    fn signum_or_zero(self) -> f64 {
        if self > 0.0 {
            1.0
        } else if self < 0.0 {
            -1.0
        } else {
            0.0
        }
    }
}

/// `torch.nn.utils.clip_grad_norm_` with the L2 norm: scales `grads` by
/// `max_norm / (norm + 1e-6)` when that is below 1. Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [f64], max_norm: f64) -> f64 {
    let norm = grads.iter().map(|g| g * g).sum::<f64>().sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        grads.iter_mut().for_each(|g| *g *= coef);
    }
    norm
}

/// Every optimizer core offers, with PyTorch's defaults (momentum 0.9 for the SGD family).
pub fn all_optimizers() -> [Optimizer; 11] {
    [
        Optimizer::sgd(),
        Optimizer::momentum(0.9),
        Optimizer::nesterov(0.9),
        Optimizer::adagrad(),
        Optimizer::rmsprop(),
        Optimizer::adadelta(),
        Optimizer::adam(),
        Optimizer::adamw(),
        Optimizer::adamax(),
        Optimizer::rprop(),
        Optimizer::asgd(),
    ]
}
