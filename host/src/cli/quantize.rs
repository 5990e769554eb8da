//! `host quantize`: an f32 model to an int8 file, and the accuracy before and after.

use anyhow::{bail, Result};
use serde_json::json;

use super::args::{QuantizeArgs, Rounding};
use super::datasets::load_data;
use crate::quant::{self, AnyModel};
use crate::train;

/// Runs `host quantize`.
pub fn run(a: QuantizeArgs) -> Result<()> {
    if !a.force && same_file(&a.model, &a.out) {
        bail!(
            "--out {} is the f32 model being quantized: writing there would replace the \
             original; choose another --out, or add --force to overwrite it",
            a.out.display()
        );
    }
    let model = match AnyModel::load(&a.model)? {
        AnyModel::F32(m) => m,
        AnyModel::Int8(_) => {
            bail!("{} is already an int8 model; quantize its f32 original", a.model.display())
        }
    };
    if a.data.csv.is_none() && model.topology.input() != 784 {
        bail!(
            "{} takes {} inputs, not MNIST's 784 pixels: calibrate it on its own data with --csv FILE \
             (its training table)",
            a.model.display(),
            model.topology.input()
        );
    }
    let (train_set, test_set) = load_data(&a.data)?;
    let mut q = quant::calibrate_and_quantize(&model, &train_set, a.calibration, a.percentile)?;
    if a.rounding == Rounding::Single {
        mlp::int8::set_rounding(&mut q.bytes, mlp::int8::Rounding::Single)?;
    }
    let bytes = &q.bytes;
    crate::model_io::write_atomic(&a.out, bytes)?;
    let f32_bytes = model.to_bytes()?.len();
    let eval_set = test_set.as_ref().unwrap_or(&train_set);
    let before = train::evaluate(&model, eval_set)?;
    let after = quant::evaluate_int8(bytes, eval_set)?;
    let changed = before.predictions.iter().zip(&after.predictions).filter(|(x, y)| x != y).count();
    if a.json {
        let doc = json!({
            "model": a.model.display().to_string(),
            "out": a.out.display().to_string(),
            "calibration": {"samples": q.samples, "method": q.method.to_string()},
            "dataset": eval_set.name(),
            "samples": before.samples,
            "f32_accuracy": before.accuracy,
            "int8_accuracy": after.accuracy,
            "changed_predictions": changed,
            "f32_bytes": f32_bytes,
            "int8_bytes": bytes.len(),
        });
        outln!("{doc}");
    } else {
        outln!(
            "Calibrated on {}; wrote {} ({} bytes, f32: {f32_bytes})",
            q.describe(),
            a.out.display(),
            bytes.len()
        );
        outln!(
            "{}: f32 {:.2}%, int8 {:.2}% ({:+.2} pp); {changed} of {} predictions changed",
            eval_set.name(),
            100.0 * before.accuracy,
            100.0 * after.accuracy,
            100.0 * (after.accuracy - before.accuracy),
            before.samples
        );
    }
    Ok(())
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
