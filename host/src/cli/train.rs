//! `host train`: resolves the run, trains it (printing a line per epoch, checkpointing), then
//! saves the model and writes the metrics JSON and the plots.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::args::{Recipe, TrainArgs};
use super::datasets::load_data;
use super::report::{curves, describe, eval_plots, print_epoch};
use crate::train::{self, Checkpoint, RunData, RunOptions};

/// Runs `host train`.
pub fn run(a: TrainArgs) -> Result<()> {
    let resume = a.resume.as_deref().map(Checkpoint::load).transpose()?;
    // The options are checked before any data is read; the tabular recipe is then sized to it.
    a.run_settings(resume.as_ref(), None)?.validate()?;
    let (train_set, test_set) = load_data(&a.data)?;
    let tabular = a.recipe() == Recipe::Tabular;
    let seed = resume.as_ref().map(|ck| ck.settings.seed).or(a.seed).unwrap_or(777);
    let (train_set, test_set, held_out) = super::tabular::hold_out(train_set, test_set, tabular, seed)?;
    if let Some(line) = held_out {
        println!("{line}");
    }
    let settings = a.run_settings(resume.as_ref(), Some(&train_set))?;
    settings.validate()?;
    let device = train::Device::open(a.device, a.tf32)?;
    let recipe_line = a.recipe_line(&train_set);
    let data = RunData::new(train_set, test_set, &settings)?;
    let (inputs, classes) = (data.train.input_len(), data.train.num_classes());
    match &resume {
        Some(ck) => println!(
            "Resuming {} at epoch {} of {}: {}",
            a.resume.as_deref().unwrap_or(Path::new("")).display(),
            ck.epochs_done + 1,
            settings.epochs,
            describe(&settings, inputs, classes)
        ),
        None => println!(
            "Training {} on {} ({} samples{}): {}",
            recipe_line,
            data.train.name(),
            data.train.len(),
            data.val.as_ref().map_or(String::new(), |v| format!(", {} held out for validation", v.len())),
            describe(&settings, inputs, classes)
        ),
    }
    if let Some(d) = device.describe() {
        println!("Device: {d}");
    }
    let checkpoint = a.checkpoint_path();
    let options = RunOptions { progress: !a.quiet, checkpoint: Some(checkpoint.clone()) };
    let epochs = settings.epochs;
    let trained = train::train_on(&device, &settings, &data, resume, &options, &mut |m| {
        print_epoch(m, epochs);
        ControlFlow::Continue(())
    })?;
    trained.model.save(&a.out)?;
    let params = trained.model.topology.param_len();
    let final_test = trained.history.last().and_then(|m| m.test_accuracy);
    println!("Saved {} ({} parameters); checkpoint {}", a.out.display(), params, checkpoint.display());
    if let Some(path) = &a.metrics {
        let doc = json!({
            "config": settings,
            "epochs": trained.history,
            "test_accuracy": final_test,
            "parameters": params,
            "steps": trained.steps,
        });
        crate::model_io::write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
        println!("Metrics: {}", path.display());
    }
    if !a.no_plots {
        std::fs::create_dir_all(&a.plots).with_context(|| format!("cannot create {}", a.plots.display()))?;
        let curves_path = a.plots.join("curves.png");
        crate::plot::training_curves(
            &curves_path,
            &describe(&settings, inputs, classes),
            &[curves("this run", &trained.history)],
        )?;
        let mut written = vec![curves_path];
        if let Some(test) = &data.test {
            let eval = train::evaluate(&trained.model, test)?;
            written.extend(eval_plots(&a.plots, test, &eval)?);
        }
        let list: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!("Plots: {}", list.join(", "));
    }
    if let Some(acc) = final_test {
        println!("Final test accuracy: {:.2}%", 100.0 * acc);
    }
    Ok(())
}
