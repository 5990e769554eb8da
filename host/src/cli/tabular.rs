//! Tabular (CSV) data end to end: the line that says which recipe a run uses and which
//! options changed it, the stratified test split held out when no `--csv-test` is given, the
//! warning for a label column that looks like a measurement, and `predict --csv`.

use anyhow::{bail, Result};

use super::args::{Recipe, TrainArgs};
use crate::quant::AnyModel;
use data::Dataset;

/// The fraction of a CSV table the tabular recipe holds out as its test set.
pub const TEST_FRACTION: f64 = 0.2;

impl TrainArgs {
    /// The flags given that change the recipe's settings, as typed (e.g. `--hidden`).
    pub fn given_options(&self) -> Vec<&'static str> {
        [
            (self.hidden.is_some(), "--hidden"),
            (self.activation.is_some(), "--activation"),
            (self.optimizer.is_some(), "--optimizer"),
            (self.lr.is_some(), "--lr"),
            (self.schedule.is_some(), "--schedule"),
            (self.batch_size.is_some(), "--batch-size"),
            (self.epochs.is_some(), "--epochs"),
            (self.seed.is_some(), "--seed"),
            (self.dropout.is_some(), "--dropout"),
            (self.batch_norm, "--batch-norm"),
            (self.weight_decay.is_some(), "--weight-decay"),
            (self.val_split.is_some(), "--val-split"),
            (self.grad_clip.is_some(), "--grad-clip"),
            (self.normalization.is_some(), "--normalization"),
            (self.augment.is_some(), "--augment"),
        ]
        .into_iter()
        .filter_map(|(given, name)| given.then_some(name))
        .collect()
    }

    /// Which recipe this run starts from and which options changed it, for "Training ...".
    pub fn recipe_line(&self, train: &Dataset) -> String {
        let options = self.given_options();
        let changed =
            if options.is_empty() { String::new() } else { format!(", changed by {}", options.join(" ")) };
        match self.recipe() {
            Recipe::Tabular => format!(
                "the tabular recipe ({}sized to {} training rows, {} features, {} classes{changed})",
                if self.recipe.is_none() { "the default for --csv; " } else { "" },
                train.len(),
                train.input_len(),
                train.num_classes()
            ),
            Recipe::Default if options.is_empty() => {
                "the default recipe (options or --recipe tutorial for the PyTorch tutorial's)".to_string()
            }
            Recipe::Default => format!("the default recipe{changed}"),
            Recipe::Tutorial => format!("the tutorial recipe{changed}"),
            Recipe::Best => format!("the best recipe{changed}"),
        }
    }
}

/// With the tabular recipe and no test set: a seeded, stratified [`TEST_FRACTION`] of the
/// table held out as the test set, and the line that says so. Otherwise the data as it is.
pub fn hold_out(
    train: Dataset,
    test: Option<Dataset>,
    tabular: bool,
    seed: u64,
) -> Result<(Dataset, Option<Dataset>, Option<String>)> {
    if !tabular || test.is_some() {
        return Ok((train, test, None));
    }
    let (name, rows) = (train.name().to_string(), train.len());
    let (train, held) = train.stratified_split(TEST_FRACTION, seed)?;
    if train.is_empty() || held.is_empty() {
        bail!(
            "{name} has {rows} rows: too few to hold out a test split; give a test file with \
             --csv-test FILE, or more rows"
        );
    }
    let line = format!(
        "Holding out {} of {rows} rows of {name} as the test set ({}%, stratified by class, seed \
         {seed}); train on all rows and test on another file with --csv-test FILE",
        held.len(),
        (TEST_FRACTION * 100.0).round()
    );
    Ok((train, Some(held), Some(line)))
}

/// A warning when the label column looks continuous (many distinct numbers, some with a
/// fraction): a measurement chosen as the label makes one class per value.
pub fn continuous_label_warning(data: &Dataset) -> Option<String> {
    let names = data.class_names()?;
    let numbers: Vec<f64> = names.iter().filter_map(|n| n.trim().parse::<f64>().ok()).collect();
    if numbers.len() != names.len() || names.len() < 10 {
        return None;
    }
    if numbers.iter().all(|v| v.fract() == 0.0) && names.len() <= 20 {
        return None;
    }
    let examples: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
    Some(format!(
        "warning: {}: the label column has {} distinct numeric values ({}, ...): it looks like a \
         measurement, not a class, and makes {} classes of {} rows; choose the label column with \
         --label NAME or --label INDEX",
        data.name(),
        names.len(),
        examples.join(", "),
        names.len(),
        data.len()
    ))
}

/// `host predict MODEL --csv FILE`: one line per row, the class name and its probability.
pub fn predict_csv(model_path: &std::path::Path, csv: &std::path::Path) -> Result<()> {
    let model = AnyModel::load(model_path)?;
    let topology = model.topology()?;
    let names = model.names()?;
    let rows = read_feature_rows(csv, topology.input(), &names.features)?;
    let raw: Vec<f32> = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    let n = rows.len();
    let probs = model.probabilities(&raw, n, false)?;
    let classes = probs.len() / n.max(1);
    for ((line, _), p) in rows.iter().zip(probs.chunks_exact(classes.max(1))) {
        let (best, prob) =
            p.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, 0.0));
        outln!("line {line}: {} ({:.1}%)", names.class(best), 100.0 * prob);
    }
    Ok(())
}

/// The feature rows of a CSV file for a model with `inputs` inputs: with a header, the
/// model's feature columns by name (other columns, such as a label, are left out); without
/// one, rows of exactly `inputs` numbers, or `inputs + 1` fields of which the label-like one
/// (the only non-number, or the last) is left out.
fn read_feature_rows(
    path: &std::path::Path,
    inputs: usize,
    features: &[String],
) -> Result<Vec<(usize, Vec<f32>)>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let file = path.display();
    let split =
        |l: &str| -> Vec<String> { l.split(',').map(|f| f.trim().trim_matches('"').to_string()).collect() };
    let mut lines = text
        .trim_start_matches('\u{feff}')
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let Some(&(_, first)) = lines.peek() else { bail!("{file}: empty: no rows to classify") };
    let first = split(first);
    let is_header = first.iter().any(|f| f.parse::<f32>().is_err());
    // Which columns are the model's features, in the model's order.
    let columns: Vec<usize> = if is_header && !features.is_empty() {
        lines.next();
        let mut cols = Vec::with_capacity(inputs);
        for name in features {
            match first.iter().position(|h| h == name) {
                Some(c) => cols.push(c),
                None => bail!(
                    "{file}: no column {name:?}; the model's features are {} and the file's columns are {}",
                    features.join(", "),
                    first.join(", ")
                ),
            }
        }
        cols
    } else {
        if is_header {
            lines.next();
        }
        let width = first.len();
        if width == inputs {
            (0..width).collect()
        } else if width == inputs + 1 {
            let label = if is_header {
                first
                    .iter()
                    .position(|h| data::csv::LABEL_NAMES.iter().any(|n| h.eq_ignore_ascii_case(n)))
                    .unwrap_or(width - 1)
            } else {
                width - 1
            };
            (0..width).filter(|&c| c != label).collect()
        } else {
            bail!("{file}: {width} columns, but the model takes {inputs} features per row")
        }
    };
    let mut rows = Vec::new();
    for (line, l) in lines {
        let fields = split(l);
        let mut row = Vec::with_capacity(inputs);
        for &c in &columns {
            let Some(v) = fields.get(c) else {
                bail!("{file}: line {line} has {} fields; the model's features need {}", fields.len(), c + 1)
            };
            match v.parse::<f32>() {
                Ok(x) if x.is_finite() => row.push(x),
                _ => bail!("{file}: line {line}, column {}: {v:?} is not a finite number", c + 1),
            }
        }
        rows.push((line, row));
    }
    if rows.is_empty() {
        bail!("{file}: no data rows to classify");
    }
    Ok(rows)
}

/// `host inspect`'s lines for the names a model file stores (format version 2).
pub fn names_lines(file: &mlp::ModelFile<'_>) -> Vec<String> {
    let names = crate::model_io::ModelNames::read(file);
    let t = file.topology();
    vec![
        if names.features.is_empty() {
            format!("features: unnamed ({} inputs)", t.input())
        } else {
            format!("features: {}", names.features.join(", "))
        },
        if names.classes.is_empty() {
            format!("classes: unnamed: class i is output i (0 to {})", mlp::format::class_count(t) - 1)
        } else {
            format!("classes: {}", names.classes.join(", "))
        },
        format!("format version {}", file.version()),
    ]
}
