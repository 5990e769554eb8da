//! `host compare`: trains a preset's configurations on the same data and seed, prints a
//! table and draws their curves on one chart.

use std::ops::ControlFlow;

use anyhow::{Context, Result};
use serde_json::json;

use super::args::{CompareArgs, Preset};
use super::datasets::load_data;
use super::report::{curves, describe, pct, print_epoch};
use crate::train::{self, ActivationArg, OptimizerArg, RunData, RunOptions, TrainSettings};

/// Runs `host compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    let (train_set, test_set) = load_data(&a.data)?;
    let base = TrainSettings { epochs: a.epochs, seed: a.seed, ..TrainSettings::tutorial() };
    let runs: Vec<(String, TrainSettings)> = match a.preset {
        Preset::Homework => [ActivationArg::Sigmoid, ActivationArg::Relu]
            .into_iter()
            .map(|act| {
                (
                    format!("6x64 {act:?}").to_lowercase(),
                    TrainSettings { hidden: vec![64; 6], activation: act, ..base.clone() },
                )
            })
            .collect(),
        Preset::Optimizers => [
            ("sgd momentum 0.9, lr 0.01", OptimizerArg::Momentum, 0.01),
            ("adam, lr 0.001", OptimizerArg::Adam, 1e-3),
            ("rmsprop, lr 0.001", OptimizerArg::Rmsprop, 1e-3),
        ]
        .into_iter()
        .map(|(name, opt, lr)| {
            (name.to_string(), TrainSettings { optimizer: opt, lr: Some(lr), ..base.clone() })
        })
        .collect(),
    };
    let data = RunData::new(train_set, test_set, &base)?;
    let mut all = Vec::new();
    let mut results = Vec::new();
    for (name, settings) in &runs {
        outln!("== {name}: {}", describe(settings, data.train.input_len(), data.train.num_classes()));
        let options = RunOptions { progress: !a.quiet, ..RunOptions::default() };
        let trained = train::train(settings, &data, None, &options, &mut |m| {
            print_epoch(m, settings.epochs, "");
            ControlFlow::Continue(())
        })?;
        all.push(curves(name, &trained.history, None));
        results.push((name.clone(), trained.history));
    }
    outln!("\n{:<28} {:>12} {:>12} {:>10}", "configuration", "train loss", "test acc", "s/epoch");
    for (name, h) in &results {
        let last = h.last().context("no epochs")?;
        let secs = h.iter().map(|m| m.seconds).sum::<f64>() / h.len() as f64;
        outln!("{name:<28} {:>12.4} {:>12} {secs:>10.2}", last.train_loss, pct(last.test_accuracy));
    }
    std::fs::create_dir_all(&a.plots).with_context(|| format!("cannot create {}", a.plots.display()))?;
    let path = a.plots.join(format!("compare-{:?}.png", a.preset).to_lowercase());
    let title = match a.preset {
        Preset::Homework => "six hidden layers of 64 units: sigmoid vs relu (adam 1e-3, batch 256)",
        Preset::Optimizers => "784-256-10 relu: sgd with momentum vs adam vs rmsprop (batch 256)",
    };
    crate::plot::training_curves(&path, title, &all)?;
    outln!("Chart: {}", path.display());
    if let Some(p) = &a.metrics {
        let doc: Vec<_> = results.iter().map(|(n, h)| json!({"name": n, "epochs": h})).collect();
        crate::model_io::write_atomic(p, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}
