//! What several commands print and draw: the one-line description of a run's settings, the
//! per-epoch line, percentages, training curves, and the prediction-grid and confusion-matrix
//! plots.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::train::{EpochMetrics, Evaluation, NormalizationArg, TrainSettings};
use data::augment::{Augment, Augmenter};
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
    if let Some(c) = s.max_norm {
        extras.push(format!("max-norm {c}"));
    }
    if s.activation == crate::train::ActivationArg::Maxout {
        extras.push(format!("{} maxout pieces", s.maxout_pieces));
    }
    if let Some(q) = s.qat {
        extras.push(format!("qat last {q} epochs"));
    }
    if let Some(a) = s.augment {
        extras.push(format!("augment {a}"));
    }
    let inputs = match s.normalization {
        NormalizationArg::Scale => "inputs scaled (u8 values / 255, f32 values as they are)",
        NormalizationArg::Standardize => "inputs standardized (one mean/std)",
        NormalizationArg::PerFeature => "inputs standardized per feature",
        NormalizationArg::None => "raw inputs",
    };
    let epochs = match s.early_stop {
        Some(p) => format!("up to {} epochs (early stop: patience {p} on validation loss)", s.epochs),
        None => format!("{} epochs", s.epochs),
    };
    format!(
        "{} {:?}{}, {:?} lr {} ({:?} schedule), batch {}, {epochs}, seed {}, {inputs}",
        widths.join("-"),
        s.activation,
        if extras.is_empty() { String::new() } else { format!(" + {}", extras.join(", ")) },
        s.optimizer,
        s.learning_rate(),
        s.schedule,
        s.batch_size,
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

/// Prints an epoch's line: train, validation and test metrics, time and throughput, then
/// `note` (e.g. early stopping's "best so far").
pub fn print_epoch(m: &EpochMetrics, epochs: usize, note: &str) {
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
    line += &format!("  {:.2}s ({:.0} samples/s){note}", m.seconds, m.samples_per_second);
    outln!("{line}");
}

/// A run's curves for the charts: training, every held-out set measured after every epoch
/// (validation, test, both or neither), the learning rate the steps used, and the epoch
/// whose model was kept (early stopping).
pub fn curves(name: &str, history: &[EpochMetrics], best_epoch: Option<usize>) -> crate::plot::RunCurves {
    let mut evals = Vec::new();
    if !history.is_empty() && history.iter().all(|m| m.val_loss.is_some() && m.val_accuracy.is_some()) {
        evals.push(crate::plot::EvalCurves {
            label: "validation".into(),
            loss: history.iter().filter_map(|m| m.val_loss).collect(),
            accuracy: history.iter().filter_map(|m| m.val_accuracy).collect(),
        });
    }
    if !history.is_empty() && history.iter().all(|m| m.test_loss.is_some() && m.test_accuracy.is_some()) {
        evals.push(crate::plot::EvalCurves {
            label: "test".into(),
            loss: history.iter().filter_map(|m| m.test_loss).collect(),
            accuracy: history.iter().filter_map(|m| m.test_accuracy).collect(),
        });
    }
    crate::plot::RunCurves {
        name: name.to_string(),
        train_loss: history.iter().map(|m| m.train_loss).collect(),
        train_accuracy: history.iter().map(|m| m.train_accuracy).collect(),
        evals,
        lr: learning_rates(history),
        best_epoch,
    }
}

/// The learning-rate points of a run: each epoch's trace, or (in a checkpoint written before
/// traces were recorded) its last step's rate at the epoch's end.
fn learning_rates(history: &[EpochMetrics]) -> Vec<(f64, f64)> {
    history
        .iter()
        .flat_map(|m| if m.lr_trace.is_empty() { vec![(m.epoch as f64, m.lr)] } else { m.lr_trace.clone() })
        .collect()
}

/// Which samples the 5x5 grid shows: 25 drawn at random (seeded, so the same model and data
/// give the same grid), with up to 8 of them mistakes when there are any, so a good model's
/// grid still shows what it gets wrong. In data-set order.
pub fn grid_samples(labels: &[u32], predictions: &[u32], seed: u64) -> Vec<usize> {
    const CELLS: usize = 25;
    const MAX_MISTAKES: usize = 8;
    let n = labels.len().min(predictions.len());
    let mut order: Vec<usize> = (0..n).collect();
    mlp::Rng::new(seed).shuffle(&mut order);
    let wrong = |&i: &usize| labels[i] != predictions[i];
    let mut chosen: Vec<usize> = order.iter().copied().filter(wrong).take(MAX_MISTAKES).collect();
    let rest = CELLS.min(n) - chosen.len();
    chosen.extend(order.iter().copied().filter(|i| !wrong(i)).take(rest));
    if chosen.len() < CELLS.min(n) {
        // Fewer correct samples than cells: fill with more mistakes.
        let more = CELLS.min(n) - chosen.len();
        let extra: Vec<usize> = order.iter().copied().filter(wrong).skip(MAX_MISTAKES).take(more).collect();
        chosen.extend(extra);
    }
    chosen.sort_unstable();
    chosen
}

/// `augmented.png` in `dir`: the first 25 training images next to what `spec` made of them
/// in epoch 1 (the same bytes the loader gave the training step, seeded by `seed`).
pub fn augmented_grid(dir: &Path, train: &Dataset, spec: Augment, seed: u64) -> Result<PathBuf> {
    let (Some((h, w)), Features::U8(_)) = (train.image_shape(), train.features()) else {
        anyhow::bail!("{}: --augment needs an image data set", train.name());
    };
    let augmenter = Augmenter::new(spec, w, h, seed)?;
    let shown = train.len().min(25);
    let mut augmented = vec![vec![0u8; w * h]; shown];
    let mut originals = Vec::with_capacity(shown);
    for (i, out) in augmented.iter_mut().enumerate() {
        let Some(Row::U8(image)) = train.row(i) else {
            anyhow::bail!("{}: sample {i} is not an image", train.name())
        };
        augmenter.apply(image, out, 0, i as u64);
        originals.push(image);
    }
    let pairs: Vec<(&[u8], &[u8])> =
        originals.iter().copied().zip(augmented.iter().map(Vec::as_slice)).collect();
    let titles: Vec<String> = (0..shown)
        .map(|i| {
            let label = train.labels()[i] as usize;
            match train.class_names().and_then(|n| n.get(label)) {
                Some(name) => format!("label {name}"),
                None => format!("label {label}"),
            }
        })
        .collect();
    let path = dir.join("augmented.png");
    crate::plot::augmented_grid(
        &path,
        &pairs,
        w,
        h,
        &titles,
        &format!("original | augmented ({spec}), epoch 1"),
    )?;
    Ok(path)
}

/// The 5x5 grid of 25 samples (when they are images; see [`grid_samples`]) and the
/// confusion matrix.
pub fn eval_plots(dir: &Path, data: &Dataset, eval: &Evaluation) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let names: Vec<String> = match data.class_names() {
        Some(n) => n.to_vec(),
        None => (0..eval.confusion.len()).map(|c| c.to_string()).collect(),
    };
    if let (Some((h, w)), Features::U8(_)) = (data.image_shape(), data.features()) {
        let shown = grid_samples(data.labels(), &eval.predictions, 777);
        let images: Vec<&[u8]> = shown
            .iter()
            .filter_map(|&i| match data.row(i) {
                Some(Row::U8(r)) => Some(r),
                _ => None,
            })
            .collect();
        let predicted: Vec<usize> = shown.iter().map(|&i| eval.predictions[i] as usize).collect();
        let labels: Vec<usize> = shown.iter().map(|&i| data.labels()[i] as usize).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(val: bool, test: bool) -> EpochMetrics {
        EpochMetrics {
            val_loss: val.then_some(0.5),
            val_accuracy: val.then_some(0.8),
            test_loss: test.then_some(0.4),
            test_accuracy: test.then_some(0.9),
            epoch: 1,
            train_loss: 0.3,
            train_accuracy: 0.95,
            seconds: 1.0,
            samples_per_second: 1.0,
            lr: 1e-3,
            lr_trace: vec![(0.5, 1e-3), (1.0, 1e-3)],
        }
    }

    #[test]
    fn curves_keep_every_held_out_set() {
        let labels = |h: &[EpochMetrics]| {
            curves("r", h, None).evals.iter().map(|e| e.label.clone()).collect::<Vec<_>>()
        };
        assert_eq!(labels(&[metrics(true, true), metrics(true, true)]), ["validation", "test"]);
        assert_eq!(labels(&[metrics(false, true)]), ["test"]);
        assert_eq!(labels(&[metrics(true, false)]), ["validation"]);
        assert!(labels(&[metrics(false, false)]).is_empty());
        let c = curves("r", &[metrics(true, false)], Some(1));
        assert_eq!((c.lr, c.best_epoch), (vec![(0.5, 1e-3), (1.0, 1e-3)], Some(1)));
    }

    #[test]
    fn the_grid_shows_mistakes_when_there_are_any() {
        let labels: Vec<u32> = (0..1000).map(|i| i % 10).collect();
        let mut predictions = labels.clone();
        for i in [3, 500, 998] {
            predictions[i] = (labels[i] + 1) % 10;
        }
        let shown = grid_samples(&labels, &predictions, 7);
        assert_eq!(shown.len(), 25);
        assert!(shown.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
        for i in [3, 500, 998] {
            assert!(shown.contains(&i), "mistake {i} not shown: {shown:?}");
        }
        assert_ne!(shown, (0..25).collect::<Vec<_>>(), "not just the first 25");
        assert_eq!(shown, grid_samples(&labels, &predictions, 7), "seeded");
        assert_eq!(grid_samples(&labels[..4], &predictions[..4], 7), [0, 1, 2, 3]);
    }
}
