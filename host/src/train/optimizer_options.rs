//! The hyperparameters of Rprop, ASGD and L-BFGS that `torch.optim` lets users set, as
//! `host train` flags and as the settings (and checkpoints) store them: each one left out is
//! PyTorch's default, in core's constructors.

use anyhow::{bail, Result};
use mlp::optim::Lbfgs;
use mlp::Optimizer;
use serde::{Deserialize, Serialize};

/// L-BFGS's `line_search_fn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LineSearchArg {
    /// A fixed step of --lr (PyTorch's default, line_search_fn=None)
    None,
    /// PyTorch's strong-Wolfe line search (line_search_fn="strong_wolfe")
    StrongWolfe,
}

/// `--rprop-*`, `--asgd-*` and `--lbfgs-*`: `None` is PyTorch's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct OptimizerOptions {
    /// Rprop's step-size factors (PyTorch's etas): shrink by MINUS when the gradient flips
    /// sign, grow by PLUS while it keeps it [default: 0.5,1.2].
    #[arg(long, value_name = "MINUS,PLUS", value_parser = parse_pair, allow_negative_numbers = true)]
    #[serde(default)]
    pub rprop_etas: Option<(f32, f32)>,
    /// Rprop's step-size bounds (PyTorch's step_sizes) [default: 1e-6,50]; the first step is
    /// --lr.
    #[arg(long, value_name = "MIN,MAX", value_parser = parse_pair, allow_negative_numbers = true)]
    #[serde(default)]
    pub rprop_step_sizes: Option<(f32, f32)>,
    /// ASGD's decay term lambd [default: 1e-4].
    #[arg(long, value_name = "LAMBD", allow_negative_numbers = true)]
    #[serde(default)]
    pub asgd_lambd: Option<f32>,
    /// ASGD's power for the step-size decay, alpha [default: 0.75].
    #[arg(long, value_name = "ALPHA", allow_negative_numbers = true)]
    #[serde(default)]
    pub asgd_alpha: Option<f32>,
    /// ASGD's step at which averaging starts, t0 [default: 1e6]; the saved model is the
    /// average.
    #[arg(long, value_name = "STEPS", allow_negative_numbers = true)]
    #[serde(default)]
    pub asgd_t0: Option<f32>,
    /// L-BFGS's iterations per step (one step per epoch) [default: 20].
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub lbfgs_max_iter: Option<u32>,
    /// L-BFGS's full-batch loss evaluations per step [default: max-iter · 5/4].
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub lbfgs_max_eval: Option<u32>,
    /// L-BFGS's curvature pairs kept [default: 100]; each costs 2 × parameters × 4 bytes.
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub lbfgs_history: Option<u32>,
    /// L-BFGS's line search [default: none].
    #[arg(long, value_enum)]
    #[serde(default)]
    pub lbfgs_line_search: Option<LineSearchArg>,
    /// L-BFGS stops a step when no gradient component is larger [default: 1e-7].
    #[arg(long, value_name = "TOL", allow_negative_numbers = true)]
    #[serde(default)]
    pub lbfgs_tolerance_grad: Option<f32>,
    /// L-BFGS stops a step when the loss or the move changes less [default: 1e-9].
    #[arg(long, value_name = "TOL", allow_negative_numbers = true)]
    #[serde(default)]
    pub lbfgs_tolerance_change: Option<f32>,
}

impl OptimizerOptions {
    /// Whether any option was given.
    pub fn any(&self) -> bool {
        *self != OptimizerOptions::default()
    }

    /// These options over `base`'s (those given here win).
    pub fn over(&self, base: &OptimizerOptions) -> OptimizerOptions {
        OptimizerOptions {
            rprop_etas: self.rprop_etas.or(base.rprop_etas),
            rprop_step_sizes: self.rprop_step_sizes.or(base.rprop_step_sizes),
            asgd_lambd: self.asgd_lambd.or(base.asgd_lambd),
            asgd_alpha: self.asgd_alpha.or(base.asgd_alpha),
            asgd_t0: self.asgd_t0.or(base.asgd_t0),
            lbfgs_max_iter: self.lbfgs_max_iter.or(base.lbfgs_max_iter),
            lbfgs_max_eval: self.lbfgs_max_eval.or(base.lbfgs_max_eval),
            lbfgs_history: self.lbfgs_history.or(base.lbfgs_history),
            lbfgs_line_search: self.lbfgs_line_search.or(base.lbfgs_line_search),
            lbfgs_tolerance_grad: self.lbfgs_tolerance_grad.or(base.lbfgs_tolerance_grad),
            lbfgs_tolerance_change: self.lbfgs_tolerance_change.or(base.lbfgs_tolerance_change),
        }
    }

    /// `optimizer` with these options applied (core checks their ranges).
    pub fn apply(&self, optimizer: Optimizer) -> Optimizer {
        match optimizer {
            Optimizer::Rprop { eta_minus, eta_plus, step_min, step_max } => {
                let (eta_minus, eta_plus) = self.rprop_etas.unwrap_or((eta_minus, eta_plus));
                let (step_min, step_max) = self.rprop_step_sizes.unwrap_or((step_min, step_max));
                Optimizer::Rprop { eta_minus, eta_plus, step_min, step_max }
            }
            Optimizer::Asgd { lambd, alpha, t0, weight_decay } => Optimizer::Asgd {
                lambd: self.asgd_lambd.unwrap_or(lambd),
                alpha: self.asgd_alpha.unwrap_or(alpha),
                t0: self.asgd_t0.unwrap_or(t0),
                weight_decay,
            },
            Optimizer::Lbfgs(l) => {
                let max_iter = self.lbfgs_max_iter.unwrap_or(l.max_iter);
                let strong_wolfe =
                    self.lbfgs_line_search.map_or(l.strong_wolfe, |s| s == LineSearchArg::StrongWolfe);
                let defaults = Lbfgs::new(max_iter, self.lbfgs_history.unwrap_or(l.history), strong_wolfe);
                Optimizer::Lbfgs(Lbfgs {
                    max_eval: self.lbfgs_max_eval.unwrap_or(defaults.max_eval),
                    tolerance_grad: self.lbfgs_tolerance_grad.unwrap_or(l.tolerance_grad),
                    tolerance_change: self.lbfgs_tolerance_change.unwrap_or(l.tolerance_change),
                    ..defaults
                })
            }
            other => other,
        }
    }

    /// Refuses options for an optimizer other than `optimizer` (they would be ignored).
    pub fn check_for(&self, optimizer: &Optimizer) -> Result<()> {
        let given = [
            ("rprop", "--rprop-etas", self.rprop_etas.is_some()),
            ("rprop", "--rprop-step-sizes", self.rprop_step_sizes.is_some()),
            ("asgd", "--asgd-lambd", self.asgd_lambd.is_some()),
            ("asgd", "--asgd-alpha", self.asgd_alpha.is_some()),
            ("asgd", "--asgd-t0", self.asgd_t0.is_some()),
            ("lbfgs", "--lbfgs-max-iter", self.lbfgs_max_iter.is_some()),
            ("lbfgs", "--lbfgs-max-eval", self.lbfgs_max_eval.is_some()),
            ("lbfgs", "--lbfgs-history", self.lbfgs_history.is_some()),
            ("lbfgs", "--lbfgs-line-search", self.lbfgs_line_search.is_some()),
            ("lbfgs", "--lbfgs-tolerance-grad", self.lbfgs_tolerance_grad.is_some()),
            ("lbfgs", "--lbfgs-tolerance-change", self.lbfgs_tolerance_change.is_some()),
        ];
        for (name, flag, set) in given {
            if set && optimizer.name() != name {
                bail!("{flag} is an option of --optimizer {name}, and this run uses {}", optimizer.name());
            }
        }
        Ok(())
    }
}

/// `A,B`: two numbers.
fn parse_pair(text: &str) -> Result<(f32, f32), String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let number = |s: &str| s.parse::<f32>().map_err(|_| format!("'{s}' is not a number"));
    match parts[..] {
        [a, b] => Ok((number(a)?, number(b)?)),
        _ => Err(format!("'{text}' is not two numbers: give them like 0.5,1.2")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_apply_to_their_optimizer_only() {
        let o = OptimizerOptions { lbfgs_history: Some(7), lbfgs_max_iter: Some(8), ..Default::default() };
        let Optimizer::Lbfgs(l) = o.apply(Optimizer::lbfgs()) else { panic!() };
        // max_eval follows max_iter as PyTorch's does: 8 · 5 / 4.
        assert_eq!((l.history, l.max_iter, l.max_eval, l.strong_wolfe), (7, 8, 10, false));
        assert_eq!(o.apply(Optimizer::adam()), Optimizer::adam());
        assert!(o.check_for(&Optimizer::lbfgs()).is_ok());
        let err = o.check_for(&Optimizer::rprop()).unwrap_err().to_string();
        assert!(err.contains("--lbfgs-max-iter is an option of --optimizer lbfgs"), "{err}");
        let r = OptimizerOptions { rprop_etas: Some((0.4, 1.3)), ..Default::default() };
        assert_eq!(
            r.apply(Optimizer::rprop()),
            Optimizer::Rprop { eta_minus: 0.4, eta_plus: 1.3, step_min: 1e-6, step_max: 50.0 }
        );
        assert_eq!(parse_pair("0.5, 1.2"), Ok((0.5, 1.2)));
        assert!(parse_pair("0.5").is_err() && parse_pair("a,b").is_err());
    }
}
