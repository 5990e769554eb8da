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
    let data = if a.train_split {
        if a.data.csv.is_some() {
            bail!("--train-split is for IDX data; pass the CSV file you want to evaluate with --csv");
        }
        let dir = data::download::resolve_mnist_dir(a.data.data.as_deref())?;
        data::idx::load_split(&dir, data::idx::Split::Train)?
    } else {
        let (train, test) = load_data(&a.data)?;
        // With only --csv, evaluate that file.
        test.unwrap_or(train)
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
        println!("{doc}");
    } else {
        println!("{} on {} ({} samples)", a.model.display(), data.name(), eval.samples);
        println!("accuracy {:.2}% ({} correct), loss {:.4}", 100.0 * eval.accuracy, eval.correct, eval.loss);
        println!("\nper class:");
        for (c, acc) in per_class.iter().enumerate() {
            let name = data.class_names().and_then(|n| n.get(c)).cloned().unwrap_or_else(|| c.to_string());
            println!("  {name:>10}  {}", pct(*acc));
        }
        println!("\nconfusion (rows: label, columns: predicted):");
        print!("{:>6}", "");
        for c in 0..classes {
            print!("{c:>6}");
        }
        println!();
        for (c, row) in eval.confusion.iter().enumerate() {
            print!("{c:>6}");
            for v in row {
                print!("{v:>6}");
            }
            println!();
        }
    }
    if let Some(dir) = &a.plots {
        let written = eval_plots(dir, &data, &eval)?;
        if !a.json {
            let list: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            println!("Plots: {}", list.join(", "));
        }
    }
    Ok(())
}
