//! Learning-rate schedules, evaluated per optimizer step (PyTorch's schedulers, stepped
//! every batch; `Step` changes at epoch boundaries like `StepLR` stepped per epoch).

use serde::{Deserialize, Serialize};

/// A learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiply by 0.1 after each third of the epochs (`StepLR(step_size = epochs/3)`).
    Step,
    /// Cosine annealing from the base rate to 0 over all steps (`CosineAnnealingLR`).
    Cosine,
    /// `OneCycleLR`: cosine warm-up over the first 30% of steps from base/25 to base, then
    /// cosine annealing to base/25/10^4.
    OneCycle,
    /// Linear warm-up over the first epoch (at most 10% of steps) from 0, then constant.
    Warmup,
}

impl Schedule {
    /// The learning rate at 0-based `step` of `total` steps, `per_epoch` steps an epoch.
    pub fn lr(self, base: f32, step: u64, total: u64, per_epoch: u64) -> f32 {
        let total = total.max(1);
        let t = step.min(total) as f64;
        let base64 = base as f64;
        let cos_between = |from: f64, to: f64, frac: f64| {
            to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())
        };
        let lr = match self {
            Schedule::Constant => base64,
            Schedule::Step => {
                let epochs = total.div_ceil(per_epoch.max(1));
                let step_size = (epochs / 3).max(1);
                let epoch = step / per_epoch.max(1);
                base64 * 0.1f64.powi((epoch / step_size) as i32)
            }
            Schedule::Cosine => cos_between(base64, 0.0, t / total as f64),
            Schedule::OneCycle => {
                let warm = (0.3 * total as f64).max(1.0);
                let initial = base64 / 25.0;
                if t < warm {
                    cos_between(initial, base64, t / warm)
                } else {
                    cos_between(base64, initial / 1e4, ((t - warm) / (total as f64 - warm).max(1.0)).min(1.0))
                }
            }
            Schedule::Warmup => {
                let warm = (per_epoch as f64).min(0.1 * total as f64).max(1.0);
                if t < warm {
                    base64 * (t + 1.0) / warm
                } else {
                    base64
                }
            }
        };
        lr as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_start_and_end_where_documented() {
        let (base, total, per) = (0.1f32, 1000, 100);
        assert_eq!(Schedule::Constant.lr(base, 999, total, per), base);
        assert_eq!(Schedule::Step.lr(base, 0, total, per), base);
        // 10 epochs: step size 3, so epoch 3 runs at base/10 and epoch 9 at base/1000.
        assert!((Schedule::Step.lr(base, 300, total, per) - 0.01).abs() < 1e-9);
        assert!((Schedule::Step.lr(base, 950, total, per) - 0.0001).abs() < 1e-9);
        assert_eq!(Schedule::Cosine.lr(base, 0, total, per), base);
        assert!(Schedule::Cosine.lr(base, 1000, total, per).abs() < 1e-9);
        assert!((Schedule::Cosine.lr(base, 500, total, per) - 0.05).abs() < 1e-6);
        assert!((Schedule::OneCycle.lr(base, 0, total, per) - 0.004).abs() < 1e-6);
        assert!((Schedule::OneCycle.lr(base, 300, total, per) - base).abs() < 1e-6);
        assert!(Schedule::OneCycle.lr(base, 1000, total, per) < 1e-6);
        assert!((Schedule::Warmup.lr(base, 0, total, per) - 0.001).abs() < 1e-7);
        assert_eq!(Schedule::Warmup.lr(base, 100, total, per), base);
    }
}
