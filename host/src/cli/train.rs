//! `host train`: resolves the run, trains it (printing a line per epoch, checkpointing), then
//! saves the model and writes the metrics JSON and the plots.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;

use super::args::{Recipe, TrainArgs};
use super::datasets::load_data;
use super::report::{curves, describe, eval_plots, print_epoch};
use crate::train::{self, Checkpoint, RunData, RunOptions};

/// Runs `host train`.
pub fn run(a: TrainArgs) -> Result<()> {
    let resume = a.resume.as_deref().map(Checkpoint::load).transpose()?;
    let a = match &resume {
        Some(ck) => a.resuming(ck)?,
        None => a,
    };
    let out = a.out_path();
    // The options are checked before any data is read; the tabular recipe is then sized to it.
    let early = a.run_settings(resume.as_ref(), None)?;
    early.validate()?;
    train::check_device(&early, a.device)?;
    if let (Some(_), Some(csv)) = (early.augment, &a.data.csv) {
        anyhow::bail!(
            "--augment distorts images, and --csv {} is a table: train on an IDX image folder \
             (--data DIR, e.g. MNIST) to augment, or leave --augment out",
            csv.display()
        );
    }
    let (train_set, test_set) = load_data(&a.data)?;
    let tabular = a.recipe() == Recipe::Tabular;
    let seed = resume.as_ref().map(|ck| ck.settings.seed).or(a.seed).unwrap_or(777);
    let (train_set, test_set, held_out) = super::tabular::hold_out(train_set, test_set, tabular, seed)?;
    if let Some(line) = held_out {
        outln!("{line}");
    }
    let settings = a.run_settings(resume.as_ref(), Some(&train_set))?;
    settings.validate()?;
    let device = train::Device::open(a.device, a.tf32)?;
    let recipe_line = a.recipe_line(&train_set);
    let data = RunData::new(train_set, test_set, &settings)?;
    let (inputs, classes) = (data.train.input_len(), data.train.num_classes());
    match &resume {
        Some(ck) => outln!(
            "Resuming {} at epoch {} of {}: {}",
            a.resume.as_deref().unwrap_or(Path::new("")).display(),
            ck.epochs_done + 1,
            settings.epochs,
            describe(&settings, inputs, classes)
        ),
        None => outln!(
            "Training {} on {} ({} samples{}): {}",
            recipe_line,
            data.train.name(),
            data.train.len(),
            data.val.as_ref().map_or(String::new(), |v| format!(", {} held out for validation", v.len())),
            describe(&settings, inputs, classes)
        ),
    }
    if let Some(d) = device.describe() {
        outln!("Device: {d}");
    }
    if let mlp::Optimizer::Lbfgs(l) = settings.optimizer() {
        let params = settings.topology(inputs, classes)?.param_len();
        let state_mb = settings.optimizer().state_len(params) as f64 * 4.0 / 1e6;
        outln!(
            "L-BFGS: each epoch is one full-batch step (up to {} iterations and {} evaluations of the \
             loss over all {} training samples); history {} pairs, {state_mb:.0} MB of state",
            l.max_iter,
            l.max_eval,
            data.train.len(),
            l.history
        );
    }
    let checkpoint = a.checkpoint_path();
    // Every output place is tried before training, not found unwritable after it.
    let mut outputs = vec![out.clone(), checkpoint.clone()];
    outputs.extend(a.metrics.clone());
    for path in &outputs {
        crate::model_io::check_writable(path)?;
    }
    if !a.no_plots {
        std::fs::create_dir_all(&a.plots).with_context(|| format!("cannot create {}", a.plots.display()))?;
        crate::model_io::check_writable(&a.plots.join("curves.png"))?;
    }
    // Ctrl-C: the run stops after the current batch; a second Ctrl-C ends the process.
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    let handler = ctrlc::set_handler(move || {
        if handler_stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    if let Err(e) = handler {
        eprintln!("warning: Ctrl-C will end training without saving its metrics ({e})");
    }
    let options = RunOptions {
        progress: !a.quiet,
        checkpoint: Some(checkpoint.clone()),
        stop: Some(stop),
        source: Some(a.source()),
    };
    let epochs = settings.epochs;
    // With early stopping, each epoch's line says whether it is the best so far.
    let mut best_loss = resume.as_ref().and_then(|ck| ck.best.as_ref()).map(|b| b.val_loss);
    let trained = train::train_on(&device, &settings, &data, resume, &options, &mut |m| {
        let note = match (settings.early_stop, m.val_loss) {
            (Some(_), Some(l)) if best_loss.is_none_or(|b| l < b) => {
                best_loss = Some(l);
                "  (best so far)"
            }
            _ => "",
        };
        print_epoch(m, epochs, note);
        ControlFlow::Continue(())
    })?;
    let params = trained.model.topology.param_len();
    // The kept model's epoch: the best one with early stopping, else the last.
    let kept = trained.best_epoch.and_then(|e| trained.history.get(e - 1)).or(trained.history.last());
    let final_test = kept.and_then(|m| m.test_accuracy);
    let write_metrics = |interrupted: bool| -> Result<()> {
        if let Some(path) = &a.metrics {
            let doc = json!({
                "config": settings,
                "epochs": trained.history,
                "test_accuracy": final_test,
                "parameters": params,
                "steps": trained.steps,
                "interrupted": interrupted,
                "best_epoch": trained.best_epoch,
                "best_val_loss": trained.best_epoch.and_then(|_| kept.and_then(|m| m.val_loss)),
                "stopped_early": trained.stopped_early,
            });
            crate::model_io::write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
            outln!("Metrics: {}", path.display());
        }
        Ok(())
    };
    if trained.interrupted {
        write_metrics(true)?;
        if trained.history.is_empty() {
            return Err(
                Interrupted("interrupted before the first epoch finished: nothing to resume".into()).into()
            );
        }
        // The checkpoint records the data and outputs, so --resume alone continues the run.
        let resume = format!("host train --resume {}", checkpoint.display());
        let done = trained.history.len();
        return Err(Interrupted(format!(
            "interrupted during epoch {} of {}; the checkpoint holds epochs 1-{done}: resume with {resume}",
            done + 1,
            settings.epochs
        ))
        .into());
    }
    if let (Some(patience), Some(best)) = (settings.early_stop, kept) {
        let last = trained.history.len();
        let why = if trained.stopped_early {
            format!(
                "Stopped early after epoch {last} of {epochs}: no lower validation loss in {patience} epochs."
            )
        } else {
            format!("Trained all {last} epochs (patience {patience} not exhausted).")
        };
        outln!(
            "{why} Keeping epoch {}, the lowest validation loss ({:.4}, accuracy {}).",
            best.epoch,
            best.val_loss.unwrap_or(f64::NAN),
            super::report::pct(best.val_accuracy)
        );
    }
    trained.model.save(&out)?;
    let from = match trained.best_epoch {
        Some(e) => format!(", epoch {e}'s weights"),
        None => String::new(),
    };
    outln!("Saved {} ({} parameters{from}); checkpoint {}", out.display(), params, checkpoint.display());
    write_metrics(false)?;
    if !a.no_plots {
        std::fs::create_dir_all(&a.plots).with_context(|| format!("cannot create {}", a.plots.display()))?;
        let curves_path = a.plots.join("curves.png");
        crate::plot::training_curves(
            &curves_path,
            &describe(&settings, inputs, classes),
            &[curves("this run", &trained.history, trained.best_epoch)],
        )?;
        let mut written = vec![curves_path];
        if let Some(spec) = settings.augment {
            written.push(super::report::augmented_grid(&a.plots, &data.train, spec, settings.seed)?);
        }
        if let Some(test) = &data.test {
            let eval = train::evaluate(&trained.model, test)?;
            written.extend(eval_plots(&a.plots, test, &eval)?);
        }
        let list: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        outln!("Plots: {}", list.join(", "));
    }
    if let Some(acc) = final_test {
        match trained.best_epoch {
            Some(e) => outln!("Final test accuracy (the kept model, epoch {e}): {:.2}%", 100.0 * acc),
            None => outln!("Final test accuracy: {:.2}%", 100.0 * acc),
        }
    }
    if let (Some(_), Some(test)) = (settings.qat, &data.test) {
        // What `host quantize` of the saved model gives: the int8 model QAT trained for.
        let q = crate::quant::calibrate_and_quantize(
            &trained.model,
            &data.train,
            crate::quant::CALIBRATION_SAMPLES,
            None,
        )?;
        let int8 = crate::quant::evaluate_int8(&q.bytes, test)?;
        outln!(
            "int8 test accuracy after QAT: {:.2}% (as host quantize makes it: calibrated on {})",
            100.0 * int8.accuracy,
            q.describe()
        );
    }
    Ok(())
}

/// A run stopped by Ctrl-C: the message says how to resume it; `host` exits with 130.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}
