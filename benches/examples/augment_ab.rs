//! What `--augment` adds to a training epoch, measured by alternating: one epoch without,
//! one with, `REPS` times (default 12), then the minimum and median of each. Criterion's
//! `epoch` bench runs the two one after the other, so a noisy machine's drift lands in their
//! difference; alternating spreads it over both.
//!
//! `MNIST_DIR=$PWD/../shared/data/mnist cargo run --release -p benches --example augment_ab -- [REPS] [--best]`
//!
//! The tutorial recipe by default; `--best` times `--recipe best`'s network instead. Each
//! epoch is `host::train::train` with `epochs: 1` and no test set, as the `epoch` bench runs.

use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use data::augment::Augment;
use host::train::{RunData, RunOptions, TrainSettings};

fn main() -> Result<()> {
    let mut reps = 12;
    let mut base = TrainSettings::tutorial();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--best" => base = TrainSettings::best(),
            n => reps = n.parse().with_context(|| format!("'{n}': give a repetition count or --best"))?,
        }
    }
    if reps == 0 {
        bail!("give at least 1 repetition");
    }
    let dir = std::env::var("MNIST_DIR")
        .context("set MNIST_DIR to the MNIST folder (e.g. ../shared/data/mnist)")?;
    let (train, _) = data::idx::load_mnist(std::path::Path::new(&dir))?;
    let runs = [None, Some(Augment::DEFAULT)]
        .into_iter()
        .map(|augment| {
            let settings = TrainSettings { epochs: 1, augment, ..base.clone() };
            let run = RunData::new(train.clone(), None, &settings)?;
            Ok((settings, run))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..reps {
        for ((settings, run), times) in runs.iter().zip(&mut times) {
            let started = Instant::now();
            host::train::train(settings, run, None, &RunOptions::default(), &mut |_| {
                ControlFlow::Continue(())
            })?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let [plain, augmented] = times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        (t[0], t[t.len() / 2])
    });
    println!("{reps} alternating epochs each, ms: min, median");
    println!("plain      {:8.1} {:8.1}", plain.0, plain.1);
    println!("augmented  {:8.1} {:8.1}", augmented.0, augmented.1);
    println!(
        "added      {:+7.1}% {:+7.1}%",
        100.0 * (augmented.0 / plain.0 - 1.0),
        100.0 * (augmented.1 / plain.1 - 1.0)
    );
    Ok(())
}
