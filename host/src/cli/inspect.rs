//! `host inspect`: a model file's layers, shapes, parameter counts, input transform and size.

use anyhow::{Context, Result};

use super::args::InspectArgs;

/// Runs `host inspect`.
pub fn run(a: InspectArgs) -> Result<()> {
    let bytes = std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let file = mlp::ModelFile::parse(&bytes)
        .with_context(|| format!("{}: not a valid model file", a.model.display()))?;
    let t = file.topology();
    let int8 = file.dtype() == mlp::DType::Int8;
    outln!(
        "{}: mlp model, {}, {} bytes (the flash it needs: {:.1} KiB)",
        a.model.display(),
        file.dtype().name(),
        bytes.len(),
        bytes.len() as f64 / 1024.0
    );
    outln!("{:<7} {:>12} {:<12} {:>10}  extras", "layer", "shape", "activation", "params");
    for (i, l) in t.layers().iter().enumerate() {
        let r = t.param_ranges(i).context("layer ranges")?;
        let count = r.end() - r.weights.start;
        let mut extras = Vec::new();
        if l.batch_norm {
            extras.push("batch norm".to_string());
        }
        if l.dropout > 0.0 {
            extras.push(format!("dropout {}", l.dropout));
        }
        if let mlp::Activation::Maxout(k) = l.activation {
            extras.push(format!("{k} pieces per unit ({} affine rows)", l.rows()));
        }
        if int8 {
            extras.push("int8 weights, int32 bias".to_string());
        }
        outln!(
            "{:<7} {:>12} {:<12} {:>10}  {}",
            i,
            format!("{}x{}", t.fan_in(i), l.outputs),
            l.activation.name(),
            count,
            extras.join(", ")
        );
    }
    outln!("total parameters: {}", t.param_len());
    if file.has_input_transform() {
        let scales: Vec<(f32, f32)> = (0..t.input()).map(|j| file.input_scale_offset(j)).collect();
        match scales.windows(2).all(|w| w[0] == w[1]) {
            true => outln!("input: x = raw * {} + {}", scales[0].0, scales[0].1),
            false => outln!("input: per-feature scale and offset"),
        }
    } else {
        outln!("input: raw values");
    }
    for line in super::tabular::names_lines(&file) {
        outln!("{line}");
    }
    Ok(())
}
