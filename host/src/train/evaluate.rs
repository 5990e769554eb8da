//! Evaluation in eval mode: loss, accuracy, confusion matrix and predictions of a model on a
//! data set, through one loop shared by f32 and int8 models.

use anyhow::{bail, Result};
use mlp::{Activation, Loss, Model, Targets};

use crate::model_io::SavedModel;
use cpu::f32::Prepared;
use data::{DataLoader, Dataset, LoaderOptions, Normalization};

/// Loss, accuracy and confusion matrix of a model on a data set (eval mode).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction correct.
    pub accuracy: f64,
    /// Samples correct.
    pub correct: usize,
    /// Samples evaluated.
    pub samples: usize,
    /// `confusion[label][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// The predicted class of every sample, in data set order.
    pub predictions: Vec<u32>,
}

/// Evaluates `model` on `data` in eval mode, with its input transform.
pub fn evaluate(model: &SavedModel, data: &Dataset) -> Result<Evaluation> {
    let m = model.model()?;
    if m.topology().output_layer().activation != Activation::Softmax {
        bail!(
            "host evaluates classifiers, whose output layer is softmax; this model's is {}",
            m.topology().output_layer().activation.name()
        );
    }
    let mut ws = vec![0.0; m.topology().infer_workspace_len(EVAL_BATCH)];
    let mut x = Vec::new();
    let kernels = Prepared::new(&m);
    evaluate_with(data, m.topology().input(), m.topology().output(), |raw, n| {
        x.clear();
        x.extend_from_slice(raw);
        model.input.apply(&mut x);
        Ok(m.forward(&kernels, &x, n, &mut ws)?.to_vec())
    })
}

/// Samples per batch when evaluating.
pub const EVAL_BATCH: usize = 1000;

/// The evaluation loop shared by every model type: `probabilities(raw, n)` maps `n` raw
/// samples (as stored: pixels 0-255, or CSV values) to `n × classes` class probabilities.
pub fn evaluate_with(
    data: &Dataset,
    inputs: usize,
    classes: usize,
    mut probabilities: impl FnMut(&[f32], usize) -> Result<Vec<f32>>,
) -> Result<Evaluation> {
    if data.input_len() != inputs {
        bail!(
            "{} has {} features per sample but the model expects {}",
            data.name(),
            data.input_len(),
            inputs
        );
    }
    if data.num_classes() > classes {
        bail!("{} has {} classes but the model outputs {}", data.name(), data.num_classes(), classes);
    }
    let opts = LoaderOptions {
        batch_size: EVAL_BATCH,
        normalization: Normalization::None,
        ..LoaderOptions::default()
    };
    let mut loader = DataLoader::new(data, opts)?;
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut predictions = Vec::with_capacity(data.len());
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    while let Some(n) = loader.next_batch(&mut x, &mut y) {
        let probs = probabilities(&x[..n * inputs], n)?;
        let labels = Targets::Labels(&y[..n]);
        let loss = Loss::CrossEntropy.value_from_outputs(Activation::Softmax, classes, &probs, labels)?;
        loss_sum += loss as f64 * n as f64;
        for (row, &label) in probs.chunks_exact(classes).zip(&y[..n]) {
            let p = mlp::loss::argmax(row);
            predictions.push(p as u32);
            confusion[label as usize][p] += 1;
            correct += (p == label as usize) as usize;
        }
    }
    let samples = predictions.len();
    Ok(Evaluation {
        loss: loss_sum / samples.max(1) as f64,
        accuracy: correct as f64 / samples.max(1) as f64,
        correct,
        samples,
        confusion,
        predictions,
    })
}

/// Eval-mode predictions of `model` for raw samples (rows of `topology.input()` values as
/// stored, e.g. pixels 0-255): class probabilities per row.
pub fn predict_proba(model: &SavedModel, raw: &[f32]) -> Result<Vec<f32>> {
    let m: Model<'_> = model.model()?;
    let n_in = m.topology().input();
    if raw.is_empty() || !raw.len().is_multiple_of(n_in) {
        bail!("expected whole samples of {n_in} values, got {}", raw.len());
    }
    let batch = raw.len() / n_in;
    let mut x = raw.to_vec();
    model.input.apply(&mut x);
    let mut ws = vec![0.0; m.topology().infer_workspace_len(batch)];
    Ok(m.forward(&Prepared::new(&m), &x, batch, &mut ws)?.to_vec())
}
