//! `host predict`: the top-3 classes of digit images (PNG or PGM, preprocessed like MNIST).

use anyhow::{bail, Result};

use super::args::PredictArgs;
use crate::quant::AnyModel;

/// Runs `host predict`.
pub fn run(a: PredictArgs) -> Result<()> {
    if let Some(csv) = &a.csv {
        return super::tabular::predict_csv(&a.model, csv);
    }
    let model = AnyModel::load(&a.model)?;
    let inputs = model.topology()?.input();
    if inputs != 784 {
        bail!(
            "{} takes {inputs} inputs, not a 28x28 image: for rows of a table use --csv FILE",
            a.model.display()
        );
    }
    // Class names stored in the model (e.g. Fashion-MNIST's), else the class index.
    let names = model.names()?;
    // Each image on its own: a bad file is reported and the others are still predicted.
    let mut failed = 0;
    for path in &a.images {
        let pixels = match crate::digit_image::load_digit(path) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
                continue;
            }
        };
        let raw: Vec<f32> = pixels.iter().map(|&p| p as f32).collect();
        let probs = model.probabilities(&raw, 1, true)?;
        let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
        let top: Vec<String> =
            ranked.iter().take(3).map(|(c, p)| format!("{} ({:.1}%)", names.class(*c), 100.0 * p)).collect();
        outln!("{}: {}", path.display(), top.join(", "));
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be read (see above)", a.images.len());
    }
    Ok(())
}
