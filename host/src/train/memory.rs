//! How much memory a run needs, estimated before anything is allocated, so an absurd
//! network (`--hidden 1048576`) is refused with a message instead of the operating system
//! killing the process minutes later.

use anyhow::{bail, Result};
use mlp::Topology;

use super::{TrainSettings, EVAL_BATCH};

/// Bytes a training run of `topology` needs beyond its data set (already loaded), roughly:
/// the parameters, their gradients, the optimizer state and the checkpoint's copy (and with
/// early stopping the best epoch's); per batch row, each layer's pre-activations, activations and their gradients; evaluation's batches.
pub fn estimate(topology: &Topology, settings: &TrainSettings) -> u128 {
    let mut copies = if settings.early_stop.is_some() { 5 } else { 4 };
    if matches!(settings.optimizer(), mlp::Optimizer::Lbfgs(_)) {
        // The full-batch objective's copy of the point it evaluates (the history is state).
        copies += 1;
    }
    let params = topology.param_len() as u128;
    let state = settings.optimizer().state_len(topology.param_len()) as u128;
    // Rows, not units: a maxout layer keeps k pre-activations per unit.
    let widths: u128 =
        topology.input() as u128 + topology.layers().iter().map(|l| l.rows() as u128).sum::<u128>();
    let rows = settings.batch_size.max(EVAL_BATCH) as u128;
    4 * (copies * params + state + 4 * rows * widths)
}

/// Refuses a run whose [`estimate`] is more than the memory this machine has available
/// (Linux: `MemAvailable`; elsewhere no check is made).
pub fn check(topology: &Topology, settings: &TrainSettings) -> Result<()> {
    match available_bytes() {
        Some(available) => check_against(topology, settings, available),
        None => Ok(()),
    }
}

/// [`check`] against `available` bytes.
fn check_against(topology: &Topology, settings: &TrainSettings, available: u64) -> Result<()> {
    let needed = estimate(topology, settings);
    if needed > available as u128 {
        if let mlp::Optimizer::Lbfgs(l) = settings.optimizer() {
            let pair = 2 * 4 * topology.param_len() as u128;
            bail!(
                "L-BFGS with a history of {} pairs needs about {} of memory ({} per pair of 2 x {} \
                 parameters) but this machine has {} available; use a smaller --lbfgs-history \
                 (PyTorch users often take 10 to 20)",
                l.history,
                gib(needed),
                gib(pair),
                topology.param_len(),
                gib(available as u128)
            );
        }
        let widths: Vec<String> = std::iter::once(topology.input())
            .chain(topology.layers().iter().map(|l| l.outputs))
            .map(|w| w.to_string())
            .collect();
        bail!(
            "a {} network ({} parameters) with batch size {} needs about {} of memory \
             (parameters, gradients, optimizer state, activations) but this machine has {} \
             available; use narrower --hidden layers or a smaller --batch-size",
            widths.join("-"),
            topology.param_len(),
            settings.batch_size,
            gib(needed),
            gib(available as u128)
        );
    }
    Ok(())
}

fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_counts_parameters_state_and_activations() {
        let s = TrainSettings::tutorial();
        let t = s.topology(784, 10).unwrap();
        let e = estimate(&t, &s);
        // 203,530 parameters: 4 copies + Adam's 2 per parameter, 4 bytes each, plus
        // activations; a few MB, nowhere near a GB.
        assert!(e > 4 * 6 * 203_530 && e < 64 << 20, "{e}");
        let mut wide = s.clone();
        // The example: 784-1048576-10 with batch 128, about 822 M parameters.
        wide.hidden = vec![1_048_576];
        wide.batch_size = 128;
        let t = wide.topology(784, 10).unwrap();
        assert!(estimate(&t, &wide) > 19 << 30);
        let err = check_against(&t, &wide, 16 << 30).unwrap_err().to_string();
        assert!(err.contains("784-1048576-10") && err.contains("16.0 GiB available"), "{err}");
        check_against(&s.topology(784, 10).unwrap(), &s, 16 << 30).expect("the tutorial fits");
        // L-BFGS's history: 100 pairs of 784-512-256-10 (535,818 parameters) is ~430 MB.
        let mut lbfgs = TrainSettings::default_recipe();
        lbfgs.optimizer = super::super::OptimizerArg::Lbfgs;
        let t = lbfgs.topology(784, 10).unwrap();
        let e = estimate(&t, &lbfgs);
        assert!(e > 100 * 2 * 4 * 535_818 && e < 600_000_000, "{e}");
        let err = check_against(&t, &lbfgs, 256 << 20).unwrap_err().to_string();
        assert!(err.contains("history of 100 pairs") && err.contains("--lbfgs-history"), "{err}");
        lbfgs.optimizer_options.lbfgs_history = Some(5);
        check_against(&t, &lbfgs, 256 << 20).expect("a history of 5 fits in 256 MiB");
    }
}
