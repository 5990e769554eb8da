//! `host eval`: loss, accuracy, per-class accuracy and confusion matrix of a model (f32 or
//! int8), as tables or one JSON object, and optionally the plots.

use anyhow::{bail, Result};
use serde_json::json;

use super::args::EvalArgs;
use super::datasets::load_data;
use super::report::{eval_plots, pct};
use crate::quant::AnyModel;

/// Runs `host eval`.
pub fn run(a: EvalArgs) -> Result<()> {
    let model = AnyModel::load(&a.model)?;
    let data = if a.data.csv.is_some() {
        if a.train_split {
            bail!("--train-split is for IDX data; pass the CSV file you want to evaluate with --csv");
        }
        let (train, test) = load_data(&a.data)?;
        // With only --csv, evaluate that file.
        test.unwrap_or(train)
    } else {
        let inputs = model.topology()?.input();
        if a.data.data.is_none() && inputs != 784 {
            bail!(
                "{} takes {inputs} inputs, not MNIST's 784 pixels: give the data to evaluate it on \
                 with --csv FILE (or --data DIR for an IDX folder)",
                a.model.display()
            );
        }
        // Only the split evaluated is loaded: a broken or missing training file does not
        // stop an evaluation on the test set.
        let split = if a.train_split { data::idx::Split::Train } else { data::idx::Split::Test };
        let set = a.data.data_set();
        let dir = set.resolve_dir(a.data.data.as_deref())?;
        set.load_split(&dir, split)?
    };
    // The file's classes numbered as the model numbers them (by name, when it stores names).
    let data = model.align(data)?;
    let eval = model.evaluate(&data)?;
    let classes = eval.confusion.len();
    let per_class: Vec<Option<f64>> = eval
        .confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: u64 = row.iter().sum();
            (total > 0).then(|| row[c] as f64 / total as f64)
        })
        .collect();
    if a.json {
        let doc = json!({
            "model": a.model.display().to_string(),
            "dtype": match model { AnyModel::F32(_) => "f32", AnyModel::Int8(_) => "int8" },
            "dataset": data.name(),
            "samples": eval.samples,
            "correct": eval.correct,
            "accuracy": eval.accuracy,
            "loss": eval.loss,
            "per_class_accuracy": per_class,
            "confusion": eval.confusion,
        });
        outln!("{doc}");
    } else {
        outln!("{} on {} ({} samples)", a.model.display(), data.name(), eval.samples);
        outln!("accuracy {:.2}% ({} correct), loss {:.4}", 100.0 * eval.accuracy, eval.correct, eval.loss);
        outln!("\nper class:");
        for (c, acc) in per_class.iter().enumerate() {
            let name = data.class_names().and_then(|n| n.get(c)).cloned().unwrap_or_else(|| c.to_string());
            outln!("  {name:>10}  {}", pct(*acc));
        }
        outln!("\nconfusion (rows: label, columns: predicted):");
        let header: String = (0..classes).map(|c| format!("{c:>6}")).collect();
        outln!("{:>6}{header}", "");
        for (c, row) in eval.confusion.iter().enumerate() {
            let cells: String = row.iter().map(|v| format!("{v:>6}")).collect();
            outln!("{c:>6}{cells}");
        }
    }
    if let Some(dir) = &a.plots {
        let written = eval_plots(dir, &data, &eval)?;
        if !a.json {
            let list: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            outln!("Plots: {}", list.join(", "));
        }
    }
    Ok(())
}
