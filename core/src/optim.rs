//! Optimizers over the flat parameter buffer: one loop, one state layout, for every path.
//!
//! Each update follows PyTorch's `torch.optim` formulas (default options otherwise), with
//! `g = grad + weight_decay · θ` (L2 penalty) for all but AdamW, which decays the weights
//! directly. `t` is the 1-based step number, `lr` is given per step so hosts can schedule it.
//!
//! | optimizer | state | update |
//! |---|---|---|
//! | SGD | — | `θ -= lr g` |
//! | Momentum(μ) | `buf` | `buf = μ buf + g; θ -= lr buf` |
//! | Nesterov(μ) | `buf` | `buf = μ buf + g; θ -= lr (g + μ buf)` |
//! | Adagrad | `sum` | `sum += g²; θ -= lr g / (√sum + ε)` |
//! | RMSprop | `v` | `v = α v + (1-α) g²; θ -= lr g / (√v + ε)` |
//! | Adadelta | `v`, `u` | `v = ρ v + (1-ρ) g²; Δ = √(u+ε)/√(v+ε) g; u = ρ u + (1-ρ) Δ²; θ -= lr Δ` |
//! | Adam | `m`, `v` | `m = β₁m + (1-β₁)g; v = β₂v + (1-β₂)g²; θ -= lr/(1-β₁ᵗ) · m / (√v/√(1-β₂ᵗ) + ε)` |
//! | AdamW | `m`, `v` | `θ *= 1 - lr·wd`, then Adam with the plain gradient |
//! | Adamax | `m`, `u` | `m = β₁m + (1-β₁)g; u = max(β₂u, \|g\| + ε); θ -= lr/(1-β₁ᵗ) · m/u` |
//! | Rprop | `prev`, `step` | `s = sign(g·prev)`; `step = clamp(step·(η₊ if s>0, η₋ if s<0, 1), min, max)`; `g = 0` where `s<0`; `θ -= sign(g)·step; prev = g` (`step` starts at lr; no weight decay) |
//! | ASGD | `ax` | `η = lr/(1+λ·lr·(t-1))^α; μ = 1/max(1, t-1-t₀)`; `θ = θ(1-λη) - η g; ax += μ(θ - ax)` (`ax = θ` when `μ = 1`) |
//! | L-BFGS | history | full batch, several loss evaluations per step: [`lbfgs`] (not [`Optimizer::update`]) |
//!
//! State vectors are each `param_len` long, stored one after the other, all zero at start
//! (L-BFGS's state is laid out by [`lbfgs::state_len`]).

use crate::error::{check_len, Buffer, Error};
use crate::kernels::{Kernels, ParamChunk, Portable};
use crate::math;
use crate::topology::Topology;

pub mod lbfgs;

pub use lbfgs::{Lbfgs, LbfgsStep, Objective};

/// An optimizer and its hyperparameters (the learning rate is given per step).
#[allow(missing_docs)] // variant fields are named by what they hold; variants say the rest
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Plain stochastic gradient descent.
    Sgd { weight_decay: f32 },
    /// SGD with (heavy-ball) momentum.
    Momentum { momentum: f32, weight_decay: f32 },
    /// SGD with Nesterov momentum.
    Nesterov { momentum: f32, weight_decay: f32 },
    /// Adagrad (Duchi et al., 2011).
    Adagrad { eps: f32, weight_decay: f32 },
    /// RMSprop (Hinton, 2012).
    RmsProp { alpha: f32, eps: f32, weight_decay: f32 },
    /// Adadelta (Zeiler, 2012).
    Adadelta { rho: f32, eps: f32, weight_decay: f32 },
    /// Adam (Kingma & Ba, 2015) with L2 weight decay.
    Adam { beta1: f32, beta2: f32, eps: f32, weight_decay: f32 },
    /// AdamW (Loshchilov & Hutter, 2019): decoupled weight decay.
    AdamW { beta1: f32, beta2: f32, eps: f32, weight_decay: f32 },
    /// Adamax: Adam with the infinity norm.
    Adamax { beta1: f32, beta2: f32, eps: f32, weight_decay: f32 },
    /// Rprop (Riedmiller & Braun, 1993) as `torch.optim.Rprop`: sign-based steps with a
    /// step size per weight, grown by `eta_plus` while the gradient keeps its sign and shrunk
    /// by `eta_minus` when it flips, within `[step_min, step_max]`.
    Rprop { eta_minus: f32, eta_plus: f32, step_min: f32, step_max: f32 },
    /// ASGD (Polyak & Juditsky, 1992) as `torch.optim.ASGD`: SGD with a decaying step and the
    /// running average of the iterates, `ax` (its state buffer: [`Optimizer::averaged`]).
    Asgd { lambd: f32, alpha: f32, t0: f32, weight_decay: f32 },
    /// L-BFGS as `torch.optim.LBFGS`: full batch, run by [`Lbfgs::step`] with an [`Objective`].
    Lbfgs(Lbfgs),
}

impl Optimizer {
    /// SGD, no weight decay.
    pub const fn sgd() -> Self {
        Optimizer::Sgd { weight_decay: 0.0 }
    }
    /// SGD with momentum `momentum` (0.9 is customary).
    pub const fn momentum(momentum: f32) -> Self {
        Optimizer::Momentum { momentum, weight_decay: 0.0 }
    }
    /// SGD with Nesterov momentum.
    pub const fn nesterov(momentum: f32) -> Self {
        Optimizer::Nesterov { momentum, weight_decay: 0.0 }
    }
    /// Adagrad with PyTorch's `eps = 1e-10`.
    pub const fn adagrad() -> Self {
        Optimizer::Adagrad { eps: 1e-10, weight_decay: 0.0 }
    }
    /// RMSprop with PyTorch's `alpha = 0.99`, `eps = 1e-8`.
    pub const fn rmsprop() -> Self {
        Optimizer::RmsProp { alpha: 0.99, eps: 1e-8, weight_decay: 0.0 }
    }
    /// Adadelta with PyTorch's `rho = 0.9`, `eps = 1e-6` (its default lr is 1.0).
    pub const fn adadelta() -> Self {
        Optimizer::Adadelta { rho: 0.9, eps: 1e-6, weight_decay: 0.0 }
    }
    /// Adam with `β = (0.9, 0.999)`, `eps = 1e-8`.
    pub const fn adam() -> Self {
        Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
    /// AdamW with `β = (0.9, 0.999)`, `eps = 1e-8`, PyTorch's `weight_decay = 0.01`.
    pub const fn adamw() -> Self {
        Optimizer::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
    /// Adamax with `β = (0.9, 0.999)`, `eps = 1e-8` (its default lr is 2e-3).
    pub const fn adamax() -> Self {
        Optimizer::Adamax { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }

    /// Rprop with PyTorch's `etas = (0.5, 1.2)`, `step_sizes = (1e-6, 50)`.
    pub const fn rprop() -> Self {
        Optimizer::Rprop { eta_minus: 0.5, eta_plus: 1.2, step_min: 1e-6, step_max: 50.0 }
    }
    /// ASGD with PyTorch's `lambd = 1e-4`, `alpha = 0.75`, `t0 = 1e6`.
    pub const fn asgd() -> Self {
        Optimizer::Asgd { lambd: 1e-4, alpha: 0.75, t0: 1e6, weight_decay: 0.0 }
    }
    /// L-BFGS with PyTorch's defaults (see [`Lbfgs::pytorch`]).
    pub const fn lbfgs() -> Self {
        Optimizer::Lbfgs(Lbfgs::pytorch())
    }

    /// Whether this optimizer takes a weight decay (PyTorch's Rprop and L-BFGS have none).
    pub const fn has_weight_decay(&self) -> bool {
        !matches!(self, Optimizer::Rprop { .. } | Optimizer::Lbfgs(_))
    }

    /// ASGD's averaged parameters `ax` (what ASGD users evaluate and save) in `state`, its
    /// state buffer; `None` for the other optimizers or a state of the wrong length.
    pub fn averaged<'s>(&self, state: &'s [f32], param_len: usize) -> Option<&'s [f32]> {
        match self {
            Optimizer::Asgd { .. } if state.len() == param_len => Some(state),
            _ => None,
        }
    }

    /// The same optimizer with weight decay `wd` (Rprop and L-BFGS, which have none, are
    /// returned as they are: see [`Optimizer::has_weight_decay`]).
    pub const fn with_weight_decay(self, wd: f32) -> Self {
        use Optimizer::*;
        match self {
            Sgd { .. } => Sgd { weight_decay: wd },
            Momentum { momentum, .. } => Momentum { momentum, weight_decay: wd },
            Nesterov { momentum, .. } => Nesterov { momentum, weight_decay: wd },
            Adagrad { eps, .. } => Adagrad { eps, weight_decay: wd },
            RmsProp { alpha, eps, .. } => RmsProp { alpha, eps, weight_decay: wd },
            Adadelta { rho, eps, .. } => Adadelta { rho, eps, weight_decay: wd },
            Adam { beta1, beta2, eps, .. } => Adam { beta1, beta2, eps, weight_decay: wd },
            AdamW { beta1, beta2, eps, .. } => AdamW { beta1, beta2, eps, weight_decay: wd },
            Adamax { beta1, beta2, eps, .. } => Adamax { beta1, beta2, eps, weight_decay: wd },
            Asgd { lambd, alpha, t0, .. } => Asgd { lambd, alpha, t0, weight_decay: wd },
            Rprop { .. } | Lbfgs(_) => self,
        }
    }

    /// The name used in messages, files and the CLI.
    pub const fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Momentum { .. } => "momentum",
            Optimizer::Nesterov { .. } => "nesterov",
            Optimizer::Adagrad { .. } => "adagrad",
            Optimizer::RmsProp { .. } => "rmsprop",
            Optimizer::Adadelta { .. } => "adadelta",
            Optimizer::Adam { .. } => "adam",
            Optimizer::AdamW { .. } => "adamw",
            Optimizer::Adamax { .. } => "adamax",
            Optimizer::Rprop { .. } => "rprop",
            Optimizer::Asgd { .. } => "asgd",
            Optimizer::Lbfgs(_) => "lbfgs",
        }
    }

    /// PyTorch's default learning rate for this optimizer (0.01 for the SGD family, which
    /// has none there).
    pub const fn default_lr(&self) -> f32 {
        match self {
            Optimizer::Sgd { .. } | Optimizer::Momentum { .. } | Optimizer::Nesterov { .. } => 0.01,
            Optimizer::Adagrad { .. } | Optimizer::RmsProp { .. } => 0.01,
            Optimizer::Adadelta { .. } => 1.0,
            Optimizer::Adam { .. } | Optimizer::AdamW { .. } => 1e-3,
            Optimizer::Adamax { .. } => 2e-3,
            Optimizer::Rprop { .. } | Optimizer::Asgd { .. } => 0.01,
            Optimizer::Lbfgs(_) => 1.0,
        }
    }

    /// How many state vectors of `param_len` this optimizer keeps (L-BFGS: 0, its state is
    /// [`lbfgs::state_len`] long).
    pub const fn state_vectors(&self) -> usize {
        match self {
            Optimizer::Sgd { .. } | Optimizer::Lbfgs(_) => 0,
            Optimizer::Momentum { .. } | Optimizer::Nesterov { .. } => 1,
            Optimizer::Adagrad { .. } | Optimizer::RmsProp { .. } | Optimizer::Asgd { .. } => 1,
            Optimizer::Adadelta { .. }
            | Optimizer::Adam { .. }
            | Optimizer::AdamW { .. }
            | Optimizer::Adamax { .. }
            | Optimizer::Rprop { .. } => 2,
        }
    }

    /// Length of the optimizer state buffer for `param_len` parameters.
    pub const fn state_len(&self, param_len: usize) -> usize {
        match self {
            Optimizer::Lbfgs(l) => lbfgs::state_len(param_len, l.history as usize),
            _ => param_len.saturating_mul(self.state_vectors()),
        }
    }

    /// The per-step scalars of update `t` (1-based, as in [`Optimizer::update`]) at learning
    /// rate `lr`: the one definition of Adam's, AdamW's and Adamax's bias corrections, which
    /// [`Optimizer::update`] uses and a device path passes to its own elementwise pass. `t`
    /// is not checked here (`update` rejects 0); past 2³⁰ it counts as 2³⁰, where the
    /// corrections are 1 to f64 precision anyway.
    ///
    /// ASGD's `η` and `μ` of step `t` come from this step's `lr` (PyTorch computes them at
    /// the end of the previous step from that step's lr: the same with a constant rate).
    pub fn step_scalars(&self, t: u64, lr: f32) -> StepScalars {
        let (beta1, bc2_sqrt) = match *self {
            Optimizer::Adam { beta1, beta2, .. } | Optimizer::AdamW { beta1, beta2, .. } => {
                (beta1, libm::sqrt(bias_correction(beta2, t)) as f32)
            }
            Optimizer::Adamax { beta1, .. } => (beta1, 1.0),
            Optimizer::Asgd { lambd, alpha, t0, .. } => {
                let done = t.saturating_sub(1) as f64;
                let lr64 = lr as f64;
                let eta = lr64 / libm::pow(1.0 + lambd as f64 * lr64 * done, alpha as f64);
                let mu = 1.0 / (done - t0 as f64).max(1.0);
                return StepScalars { lr, step_size: eta as f32, bc2_sqrt: 1.0, average: mu as f32 };
            }
            _ => return StepScalars { lr, step_size: lr, bc2_sqrt: 1.0, average: 1.0 },
        };
        StepScalars { lr, step_size: (lr as f64 / bias_correction(beta1, t)) as f32, bc2_sqrt, average: 1.0 }
    }

    /// The optimizer's number in device code (`OPT_*` in `gpu/src/kernels.cu`): Sgd 0,
    /// Momentum 1, Nesterov 2, Adagrad 3, RmsProp 4, Adadelta 5, Adam 6, AdamW 7, Adamax 8;
    /// Rprop 9, Asgd 10, Lbfgs 11, which kernels.cu does not have yet (the GPU path refuses
    /// them). Fixed: kernels are compiled against these numbers.
    pub const fn code(&self) -> u8 {
        match self {
            Optimizer::Sgd { .. } => 0,
            Optimizer::Momentum { .. } => 1,
            Optimizer::Nesterov { .. } => 2,
            Optimizer::Adagrad { .. } => 3,
            Optimizer::RmsProp { .. } => 4,
            Optimizer::Adadelta { .. } => 5,
            Optimizer::Adam { .. } => 6,
            Optimizer::AdamW { .. } => 7,
            Optimizer::Adamax { .. } => 8,
            Optimizer::Rprop { .. } => 9,
            Optimizer::Asgd { .. } => 10,
            Optimizer::Lbfgs(_) => 11,
        }
    }

    /// Checks every hyperparameter's range (momentum and betas in `[0, 1)`, eps > 0,
    /// weight decay >= 0, all finite; Rprop: `0 < η₋ < 1 < η₊`, `0 <= step_min <= step_max`;
    /// ASGD: λ, α, t₀ >= 0; L-BFGS: [`Lbfgs::validate`]).
    pub fn validate(&self) -> Result<(), Error> {
        use Optimizer::*;
        let (wd, unit, eps) = match *self {
            Rprop { eta_minus, eta_plus, step_min, step_max } => {
                return validate_rprop(eta_minus, eta_plus, step_min, step_max)
            }
            Asgd { lambd, alpha, t0, weight_decay } => {
                for (name, v) in
                    [("lambd", lambd), ("alpha", alpha), ("t0", t0), ("weight_decay", weight_decay)]
                {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(Error::InvalidHyperparameter { name, value: v });
                    }
                }
                return Ok(());
            }
            Lbfgs(l) => return l.validate(),
            Sgd { weight_decay } => (weight_decay, [("", 0.0); 2], None),
            Momentum { momentum, weight_decay } | Nesterov { momentum, weight_decay } => {
                (weight_decay, [("momentum", momentum), ("", 0.0)], None)
            }
            Adagrad { eps, weight_decay } => (weight_decay, [("", 0.0); 2], Some(eps)),
            RmsProp { alpha, eps, weight_decay } => (weight_decay, [("alpha", alpha), ("", 0.0)], Some(eps)),
            Adadelta { rho, eps, weight_decay } => (weight_decay, [("rho", rho), ("", 0.0)], Some(eps)),
            Adam { beta1, beta2, eps, weight_decay }
            | AdamW { beta1, beta2, eps, weight_decay }
            | Adamax { beta1, beta2, eps, weight_decay } => {
                (weight_decay, [("beta1", beta1), ("beta2", beta2)], Some(eps))
            }
        };
        if !(wd.is_finite() && wd >= 0.0) {
            return Err(Error::InvalidHyperparameter { name: "weight_decay", value: wd });
        }
        for (name, v) in unit {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(Error::InvalidHyperparameter { name, value: v });
            }
        }
        if let Some(eps) = eps {
            if !(eps.is_finite() && eps > 0.0) {
                return Err(Error::InvalidHyperparameter { name: "eps", value: eps });
            }
        }
        Ok(())
    }

    /// One update of `params` from `grads`, with learning rate `lr` at 1-based step `t`.
    ///
    /// Errors: buffer lengths, a step of 0, a negative or non-finite `lr`, invalid
    /// hyperparameters.
    pub fn update(
        &self,
        params: &mut [f32],
        grads: &[f32],
        state: &mut [f32],
        t: u64,
        lr: f32,
    ) -> Result<(), Error> {
        self.update_with(&Portable, params, grads, state, t, lr)
    }

    /// [`Optimizer::update`], with the elementwise pass run through `kernels`'s
    /// [`Kernels::update_params`] (which may spread it over threads; the result is the same).
    pub fn update_with<K: Kernels + ?Sized>(
        &self,
        kernels: &K,
        params: &mut [f32],
        grads: &[f32],
        state: &mut [f32],
        t: u64,
        lr: f32,
    ) -> Result<(), Error> {
        let n = params.len();
        check_len(Buffer::Grads, n, grads.len())?;
        check_len(Buffer::OptimizerState, self.state_len(n), state.len())?;
        self.validate()?;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::InvalidHyperparameter { name: "learning rate", value: lr });
        }
        if t == 0 {
            return Err(Error::InvalidHyperparameter { name: "step (counts from 1)", value: 0.0 });
        }
        if let Optimizer::Lbfgs(_) = self {
            return Err(Error::NeedsObjective { optimizer: "lbfgs" });
        }
        let (s0, s1) = state.split_at_mut(if self.state_vectors() == 2 { n } else { state.len() });
        if let (Optimizer::Rprop { .. }, 1) = (self, t) {
            // PyTorch fills the step sizes with lr when it creates the state.
            s1.fill(lr);
        }
        let scalars = self.step_scalars(t, lr);
        kernels.update_params(ParamChunk { params, grads, state: [s0, s1] }, &|chunk| {
            self.update_chunk(chunk, &scalars)
        });
        Ok(())
    }

    /// The elementwise update of one chunk (lengths checked by the caller).
    fn update_chunk(&self, chunk: ParamChunk<'_>, k: &StepScalars) {
        let ParamChunk { params, grads, state: [s0, s1] } = chunk;
        let lr = k.lr;
        let l2 = |wd: f32, g: f32, p: f32| g + wd * p;
        match *self {
            Optimizer::Sgd { weight_decay } => {
                for (p, &g) in params.iter_mut().zip(grads) {
                    *p -= lr * l2(weight_decay, g, *p);
                }
            }
            Optimizer::Momentum { momentum, weight_decay }
            | Optimizer::Nesterov { momentum, weight_decay } => {
                let nesterov = matches!(self, Optimizer::Nesterov { .. });
                for ((p, &g), buf) in params.iter_mut().zip(grads).zip(s0.iter_mut()) {
                    let g = l2(weight_decay, g, *p);
                    *buf = momentum * *buf + g;
                    *p -= lr * if nesterov { g + momentum * *buf } else { *buf };
                }
            }
            Optimizer::Adagrad { eps, weight_decay } => {
                for ((p, &g), sum) in params.iter_mut().zip(grads).zip(s0.iter_mut()) {
                    let g = l2(weight_decay, g, *p);
                    *sum += g * g;
                    *p -= lr * g / (math::sqrt(*sum) + eps);
                }
            }
            Optimizer::RmsProp { alpha, eps, weight_decay } => {
                for ((p, &g), v) in params.iter_mut().zip(grads).zip(s0.iter_mut()) {
                    let g = l2(weight_decay, g, *p);
                    *v = alpha * *v + (1.0 - alpha) * g * g;
                    *p -= lr * g / (math::sqrt(*v) + eps);
                }
            }
            Optimizer::Adadelta { rho, eps, weight_decay } => {
                for (((p, &g), v), u) in params.iter_mut().zip(grads).zip(s0.iter_mut()).zip(s1.iter_mut()) {
                    let g = l2(weight_decay, g, *p);
                    *v = rho * *v + (1.0 - rho) * g * g;
                    let delta = math::sqrt(*u + eps) / math::sqrt(*v + eps) * g;
                    *u = rho * *u + (1.0 - rho) * delta * delta;
                    *p -= lr * delta;
                }
            }
            Optimizer::Adam { beta1, beta2, eps, weight_decay }
            | Optimizer::AdamW { beta1, beta2, eps, weight_decay } => {
                let decoupled = matches!(self, Optimizer::AdamW { .. });
                let (step_size, bc2_sqrt) = (k.step_size, k.bc2_sqrt);
                for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(s0.iter_mut()).zip(s1.iter_mut()) {
                    let g = if decoupled {
                        *p *= 1.0 - lr * weight_decay;
                        g
                    } else {
                        l2(weight_decay, g, *p)
                    };
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    *p -= step_size * *m / (math::sqrt(*v) / bc2_sqrt + eps);
                }
            }
            Optimizer::Adamax { beta1, beta2, eps, weight_decay } => {
                let step_size = k.step_size;
                for (((p, &g), m), u) in params.iter_mut().zip(grads).zip(s0.iter_mut()).zip(s1.iter_mut()) {
                    let g = l2(weight_decay, g, *p);
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *u = (beta2 * *u).max(g.abs() + eps);
                    *p -= step_size * *m / *u;
                }
            }
            Optimizer::Rprop { eta_minus, eta_plus, step_min, step_max } => {
                for (((p, &g), prev), step) in
                    params.iter_mut().zip(grads).zip(s0.iter_mut()).zip(s1.iter_mut())
                {
                    // PyTorch: sign(g·prev) picks the factor; where it is negative the
                    // gradient is taken as 0 (no move now, no factor next time).
                    let s = g * *prev;
                    let (factor, g) = if s > 0.0 {
                        (eta_plus, g)
                    } else if s < 0.0 {
                        (eta_minus, 0.0)
                    } else {
                        (1.0, g)
                    };
                    *step = (*step * factor).clamp(step_min, step_max);
                    *p -= sign(g) * *step;
                    *prev = g;
                }
            }
            Optimizer::Asgd { lambd, weight_decay, .. } => {
                let (eta, mu) = (k.step_size, k.average);
                for ((p, &g), ax) in params.iter_mut().zip(grads).zip(s0.iter_mut()) {
                    let g = l2(weight_decay, g, *p);
                    *p *= 1.0 - lambd * eta;
                    *p -= eta * g;
                    // PyTorch copies θ while μ is 1 (ax + (θ - ax) would round).
                    *ax = if mu == 1.0 { *p } else { *ax + (*p - *ax) * mu };
                }
            }
            // Refused in `update_with`.
            Optimizer::Lbfgs(_) => {}
        }
    }
}

/// `torch.sign`: -1, 0 or 1 (NaN stays NaN).
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// Rprop's ranges: PyTorch's `0 < etaminus < 1 < etaplus`, and step sizes
/// `0 <= step_min <= step_max`, all finite.
fn validate_rprop(eta_minus: f32, eta_plus: f32, step_min: f32, step_max: f32) -> Result<(), Error> {
    if !(eta_minus.is_finite() && eta_minus > 0.0 && eta_minus < 1.0) {
        return Err(Error::InvalidHyperparameter { name: "rprop eta_minus (0 < it < 1)", value: eta_minus });
    }
    if !(eta_plus.is_finite() && eta_plus > 1.0) {
        return Err(Error::InvalidHyperparameter { name: "rprop eta_plus (> 1)", value: eta_plus });
    }
    if !(step_min.is_finite() && step_min >= 0.0) {
        return Err(Error::InvalidHyperparameter { name: "rprop step_min (>= 0)", value: step_min });
    }
    if !(step_max.is_finite() && step_max >= step_min) {
        return Err(Error::InvalidHyperparameter { name: "rprop step_max (>= step_min)", value: step_max });
    }
    Ok(())
}

/// The per-step scalars of an update (step `t`, learning rate `lr`), computed once before the
/// elementwise pass: [`Optimizer::step_scalars`]. A device path that runs the elementwise
/// pass itself takes these rather than recomputing the bias corrections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    /// The learning rate of this step.
    pub lr: f32,
    /// Adam, AdamW, Adamax: `lr / (1 - β₁ᵗ)`, computed in f64 and rounded once; `lr` for the
    /// others.
    pub step_size: f32,
    /// Adam, AdamW: `√(1 - β₂ᵗ)`, computed in f64 and rounded once; 1 for the others
    /// (Adamax does not correct its infinity norm).
    pub bc2_sqrt: f32,
    /// ASGD: the averaging weight `μ = 1 / max(1, t - 1 - t₀)`; 1 for the others. (ASGD's
    /// step `η` is `step_size`.)
    pub average: f32,
}

/// `1 - β^t`, in f64 as PyTorch computes it: in f32, β₂ = 0.999 would lose about 1e-4 of
/// relative accuracy in the first steps. Once per update, so the cost is nil.
fn bias_correction(beta: f32, t: u64) -> f64 {
    1.0 - libm::pow(beta as f64, t.min(1 << 30) as f64)
}

/// The global L2 norm of `grads`.
pub fn grad_norm(grads: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let chunks = grads.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..4 {
            acc[k] += c[k] * c[k];
        }
    }
    let tail: f32 = tail.iter().map(|g| g * g).sum();
    math::sqrt((acc[0] + acc[1]) + (acc[2] + acc[3]) + tail)
}

/// Scales `grads` so their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1). Returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> Result<f32, Error> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::InvalidHyperparameter { name: "max gradient norm", value: max_norm });
    }
    let norm = grad_norm(grads);
    if !norm.is_finite() {
        return Err(Error::NonFinite { what: "the gradient norm" });
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        grads.iter_mut().for_each(|g| *g *= coef);
    }
    Ok(norm)
}

/// The max-norm constraint (Srivastava et al. 2014, "Dropout", section 5.1; Keras `MaxNorm`):
/// every hidden unit's incoming weight vector, one row `W[o][..]` of each hidden layer's
/// weights (not its bias, not batch norm's `γ`, `β`, and not the output layer), is rescaled
/// to L2 norm `c` when its norm is above `c`; rows at or below `c` are left as they are.
/// Applied after each optimizer step. The norm and the factor `c / norm` are computed in f64,
/// so a rescaled row's norm is `c` within f32 rounding (a relative 1e-6). Returns how many
/// rows were rescaled.
///
/// Errors: `c` not a positive finite number, `params` not `topology.param_len()` long.
pub fn max_norm(topology: &Topology, params: &mut [f32], c: f32) -> Result<usize, Error> {
    if !(c.is_finite() && c > 0.0) {
        return Err(Error::InvalidHyperparameter { name: "max norm", value: c });
    }
    check_len(Buffer::Params, topology.param_len(), params.len())?;
    let hidden = topology.layers().len() - 1;
    let mut rescaled = 0;
    for i in 0..hidden {
        let Some(ranges) = topology.param_ranges(i) else { break };
        let fan_in = topology.fan_in(i);
        for row in params[ranges.weights].chunks_exact_mut(fan_in) {
            let sum: f64 = row.iter().map(|&w| w as f64 * w as f64).sum();
            let norm = libm::sqrt(sum);
            if norm > c as f64 {
                let factor = c as f64 / norm;
                row.iter_mut().for_each(|w| *w = (*w as f64 * factor) as f32);
                rescaled += 1;
            }
        }
    }
    Ok(rescaled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_each_weight_by_lr() {
        // After one step m̂ = g and v̂ = g², so the step is lr · g/(|g| + eps) ≈ lr · sign(g).
        let mut p = [1.0f32, 1.0];
        let g = [0.5f32, -3.0];
        let mut s = [0.0f32; 4];
        Optimizer::adam().update(&mut p, &g, &mut s, 1, 0.1).unwrap();
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] - 1.1).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn invalid_hyperparameters_and_buffers_are_errors() {
        let mut p = [0.0f32; 3];
        let mut s = [0.0f32; 3];
        let g = [0.0f32; 3];
        assert!(Optimizer::momentum(1.5).update(&mut p, &g, &mut s, 1, 0.1).is_err());
        assert!(Optimizer::momentum(0.9).update(&mut p, &g, &mut s, 0, 0.1).is_err());
        assert!(Optimizer::momentum(0.9).update(&mut p, &g, &mut s, 1, f32::NAN).is_err());
        assert!(matches!(
            Optimizer::adam().update(&mut p, &g, &mut s, 1, 0.1),
            Err(Error::BufferLength { buffer: Buffer::OptimizerState, expected: 6, actual: 3 })
        ));
        assert!(Optimizer::adam().with_weight_decay(-1.0).validate().is_err());
    }

    #[test]
    fn step_scalars_are_the_bias_corrections_in_f64() {
        let k = Optimizer::adam().step_scalars(1, 0.1);
        assert_eq!(k.lr, 0.1);
        assert_eq!(k.step_size, (0.1f32 as f64 / (1.0 - 0.9f32 as f64)) as f32);
        assert_eq!(k.bc2_sqrt, (1.0 - 0.999f32 as f64).sqrt() as f32);
        let w = Optimizer::adamw().step_scalars(7, 1e-3);
        assert_eq!(w.step_size, (1e-3f32 as f64 / (1.0 - (0.9f32 as f64).powi(7))) as f32);
        assert_eq!(w.bc2_sqrt, (1.0 - (0.999f32 as f64).powi(7)).sqrt() as f32);
        let m = Optimizer::adamax().step_scalars(3, 2e-3);
        assert_eq!(
            (m.step_size, m.bc2_sqrt),
            ((2e-3f32 as f64 / (1.0 - (0.9f32 as f64).powi(3))) as f32, 1.0)
        );
        // Far along the corrections are 1 (and a huge t neither overflows nor panics).
        let late = Optimizer::adam().step_scalars(u64::MAX, 0.5);
        assert_eq!((late.step_size, late.bc2_sqrt), (0.5, 1.0));
        for o in [Optimizer::sgd(), Optimizer::momentum(0.9), Optimizer::rmsprop(), Optimizer::adadelta()] {
            assert_eq!(
                o.step_scalars(5, 0.3),
                StepScalars { lr: 0.3, step_size: 0.3, bc2_sqrt: 1.0, average: 1.0 }
            );
        }
    }

    #[test]
    fn optimizer_codes_are_the_device_numbering() {
        let all = [
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
            Optimizer::lbfgs(),
        ];
        for (i, o) in all.iter().enumerate() {
            assert_eq!(o.code() as usize, i, "{}", o.name());
            // Hyperparameters do not change the code.
            assert_eq!(o.with_weight_decay(0.5).code(), o.code());
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = [3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0).unwrap(), 5.0);
        assert!((grad_norm(&g) - 1.0).abs() < 1e-5);
        let mut small = [0.3f32, 0.4];
        clip_grad_norm(&mut small, 1.0).unwrap();
        assert_eq!(small, [0.3, 0.4]);
        assert!(clip_grad_norm(&mut [f32::NAN], 1.0).is_err());
    }

    #[test]
    fn max_norm_rescales_hidden_rows_above_c_only() {
        use crate::{Activation, LayerSpec};
        // 3 inputs, 2 hidden units, 2 outputs: W1 is 2x3, b1 2, W2 2x2, b2 2.
        let t = Topology::new(
            3,
            &[LayerSpec::dense(2, Activation::Relu), LayerSpec::dense(2, Activation::Softmax)],
        )
        .unwrap();
        let mut p = [
            3.0, 0.0, 4.0, // row 0: norm 5
            0.0, 0.5, 0.0, // row 1: norm 0.5
            7.0, -7.0, // b1: not a weight row
            30.0, 40.0, 0.0, 0.0, // W2: the output layer, not constrained
            9.0, 9.0, // b2
        ];
        assert_eq!(max_norm(&t, &mut p, 2.0).unwrap(), 1);
        // 2/5 of row 0; by hand: 1.2, 0, 1.6 (norm 2).
        let expected = [1.2, 0.0, 1.6, 0.0, 0.5, 0.0, 7.0, -7.0, 30.0, 40.0, 0.0, 0.0, 9.0, 9.0];
        for (a, e) in p.iter().zip(expected) {
            assert!((a - e).abs() < 1e-6, "{p:?}");
        }
        // A row exactly at the bound is untouched, bit for bit.
        let mut r = p;
        assert_eq!(max_norm(&t, &mut r, 0.5).unwrap(), 1);
        assert_eq!(r[3..], p[3..]);
        assert!((r[0] - 0.3).abs() < 1e-6 && (r[2] - 0.4).abs() < 1e-6, "{r:?}");
        let mut q = p;
        assert_eq!(max_norm(&t, &mut q, 10.0).unwrap(), 0);
        assert_eq!(q, p);
        assert!(max_norm(&t, &mut p, 0.0).is_err());
        assert!(max_norm(&t, &mut p, f32::NAN).is_err());
        assert!(matches!(
            max_norm(&t, &mut p[..5], 1.0),
            Err(Error::BufferLength { buffer: Buffer::Params, expected: 14, actual: 5 })
        ));
    }
}
