//! What several commands print and draw: the one-line description of a run's settings, the
//! per-epoch line, percentages, training curves, and the prediction-grid and confusion-matrix
//! plots.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::train::{EpochMetrics, Evaluation, TrainSettings};
use data::{Dataset, Features, Row};

/// One line for a run: the network, optimizer, schedule, batch, epochs and seed.
pub fn describe(s: &TrainSettings, inputs: usize, classes: usize) -> String {
    let mut widths = vec![inputs.to_string()];
    widths.extend(s.hidden.iter().map(|w| w.to_string()));
    widths.push(classes.to_string());
    let mut extras = Vec::new();
    if s.dropout > 0.0 {
        extras.push(format!("dropout {}", s.dropout));
    }
    if s.batch_norm {
        extras.push("batch norm".to_string());
    }
    if s.weight_decay > 0.0 {
        extras.push(format!("weight decay {}", s.weight_decay));
    }
    if let Some(c) = s.grad_clip {
        extras.push(format!("clip {c}"));
    }
    format!(
        "{} {:?}{}, {:?} lr {} ({:?} schedule), batch {}, {} epochs, seed {}",
        widths.join("-"),
        s.activation,
        if extras.is_empty() { String::new() } else { format!(" + {}", extras.join(", ")) },
        s.optimizer,
        s.learning_rate(),
        s.schedule,
        s.batch_size,
        s.epochs,
        s.seed
    )
    .to_lowercase()
}

/// A fraction as a percentage, "-" when absent.
pub fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{:.2}%", 100.0 * v))
}

/// A loss with four decimals, "-" when absent.
pub fn loss(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// Prints an epoch's line: train, validation and test metrics, time and throughput.
pub fn print_epoch(m: &EpochMetrics, epochs: usize) {
    let mut line = format!(
        "epoch {:>2}/{epochs}  train loss {:.4} acc {}",
        m.epoch,
        m.train_loss,
        pct(Some(m.train_accuracy))
    );
    if m.val_loss.is_some() {
        line += &format!("  val loss {} acc {}", loss(m.val_loss), pct(m.val_accuracy));
    }
    if m.test_loss.is_some() {
        line += &format!("  test loss {} acc {}", loss(m.test_loss), pct(m.test_accuracy));
    }
    line += &format!("  {:.2}s ({:.0} samples/s)", m.seconds, m.samples_per_second);
    println!("{line}");
}

/// A run's curves for the charts (test metrics when every epoch has them, else validation).
pub fn curves(name: &str, history: &[EpochMetrics]) -> crate::plot::RunCurves {
    let (eval_loss, eval_accuracy, eval_label): (Vec<f64>, Vec<f64>, &str) =
        if history.iter().all(|m| m.test_loss.is_some()) {
            (
                history.iter().filter_map(|m| m.test_loss).collect(),
                history.iter().filter_map(|m| m.test_accuracy).collect(),
                "test",
            )
        } else {
            (
                history.iter().filter_map(|m| m.val_loss).collect(),
                history.iter().filter_map(|m| m.val_accuracy).collect(),
                "validation",
            )
        };
    crate::plot::RunCurves {
        name: name.to_string(),
        train_loss: history.iter().map(|m| m.train_loss).collect(),
        train_accuracy: history.iter().map(|m| m.train_accuracy).collect(),
        eval_loss,
        eval_accuracy,
        eval_label: eval_label.to_string(),
    }
}

/// The 5x5 grid of the first 25 samples (when they are images) and the confusion matrix.
pub fn eval_plots(dir: &Path, data: &Dataset, eval: &Evaluation) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let names: Vec<String> = match data.class_names() {
        Some(n) => n.to_vec(),
        None => (0..eval.confusion.len()).map(|c| c.to_string()).collect(),
    };
    if let (Some((h, w)), Features::U8(_)) = (data.image_shape(), data.features()) {
        let n = data.len().min(25);
        let images: Vec<&[u8]> = (0..n)
            .filter_map(|i| match data.row(i) {
                Some(Row::U8(r)) => Some(r),
                _ => None,
            })
            .collect();
        let predicted: Vec<usize> = eval.predictions[..n].iter().map(|&p| p as usize).collect();
        let labels: Vec<usize> = data.labels()[..n].iter().map(|&l| l as usize).collect();
        let path = dir.join("predictions.png");
        crate::plot::prediction_grid(&path, &images, w, h, &predicted, &labels, data.class_names())?;
        written.push(path);
    }
    let path = dir.join("confusion.png");
    crate::plot::confusion_matrix(
        &path,
        &eval.confusion,
        &names,
        &format!("{}: confusion matrix", data.name()),
    )?;
    written.push(path);
    Ok(written)
}
