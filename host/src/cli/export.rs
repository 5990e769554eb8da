//! `host export`: loads the model (quantizing an f32 one to int8 as `host quantize` does,
//! unless `--dtype f32`), writes it in the requested format and, on request, the MNIST images
//! with the host's outputs and the host's line per image. The formats are [`crate::export`]'s.

use anyhow::{bail, Context, Result};

use super::args::ExportArgs;
use crate::export::{self, ExportDType, Exported, Format, ImageSet};
use crate::model_io::write_atomic;
use crate::quant::{self, AnyModel};
use data::{self, Dataset, Features};

/// Runs `host export`.
pub fn run(a: ExportArgs) -> Result<()> {
    let report = export(&a)?;
    for line in report.lines {
        outln!("{line}");
    }
    Ok(())
}

/// What an export wrote, as lines for the terminal.
#[derive(Debug)]
struct ExportReport {
    /// Human-readable summary lines.
    lines: Vec<String>,
}

/// The CSV table `--csv` names, for calibration (label column as `--label` or by name).
fn calibration_csv(a: &ExportArgs) -> Result<Dataset> {
    let args = super::args::DataArgs {
        data: None,
        dataset: None,
        csv: a.csv.clone(),
        csv_test: None,
        label: a.label.clone(),
    };
    Ok(super::datasets::load_data(&args)?.0)
}

/// Writes the model (and images) as `a` asks.
fn export(a: &ExportArgs) -> Result<ExportReport> {
    let mut lines = Vec::new();
    let wants_images = a.images > 0 || a.train_images > 0;
    if wants_images && !matches!(a.format, Format::Rust | Format::C) {
        bail!("--images and --train-images are written as Rust or C source: use --format rust or --format c");
    }
    let dtype = a.dtype.unwrap_or(a.format.default_dtype());
    if let Some(only) = a.format.only_dtype().filter(|&d| d != dtype) {
        let name = |d| if d == ExportDType::F32 { "f32" } else { "int8" };
        bail!(
            "--format {} holds {} models, not {}: leave out --dtype",
            a.format.name(),
            name(only),
            name(dtype)
        );
    }
    if wants_images && a.csv.is_some() {
        bail!("--images and --train-images are MNIST images; they cannot come from --csv");
    }
    if a.images_out.is_some() && !wants_images {
        bail!("--images-out needs --images N or --train-images N");
    }
    if a.flash.is_some() && !matches!(a.format, Format::Rust | Format::C | Format::Bin) {
        bail!("--flash checks firmware exports: use --format rust, c or bin");
    }
    let loaded = AnyModel::load(&a.model)?;
    let mut data: Option<(Dataset, Dataset)> = None;
    let mut load = |what: &str| -> Result<(Dataset, Dataset)> {
        if let Some(d) = &data {
            return Ok(d.clone());
        }
        let dir = data::download::resolve_mnist_dir(a.data.as_deref())
            .with_context(|| format!("{what} needs MNIST (--data DIR or MNIST_DIR)"))?;
        let d = data::idx::load_mnist(&dir).with_context(|| format!("{what} needs MNIST"))?;
        data = Some(d.clone());
        Ok(d)
    };
    let model = match (loaded, dtype) {
        (AnyModel::Int8(bytes), ExportDType::Int8) => Exported::Int8(bytes),
        (AnyModel::F32(m), ExportDType::F32) => Exported::F32(m),
        (AnyModel::Int8(_), ExportDType::F32) => bail!(
            "{} is an int8 model; --dtype f32 needs the f32 model it was quantized from",
            a.model.display()
        ),
        (AnyModel::F32(m), ExportDType::Int8) => {
            let train = match &a.csv {
                Some(_) => calibration_csv(a)?,
                None if !m.names.features.is_empty() || m.topology.input() != 784 => bail!(
                    "{} takes {} inputs, not MNIST's 784 pixels: quantizing it to int8 needs its own \
                     data to calibrate on: add --csv FILE (its training table), or export it with --dtype f32",
                    a.model.display(),
                    m.topology.input()
                ),
                None => load("quantizing an f32 model to int8")?.0,
            };
            let q = quant::calibrate_and_quantize(&m, &train, a.calibration, a.percentile)?;
            lines.push(format!("Quantized {} to int8: calibrated on {}", a.model.display(), q.describe()));
            Exported::Int8(q.bytes)
        }
    };
    let source = a.model.display().to_string();
    let derived = match &a.csv {
        Some(csv) => csv.display().to_string(),
        None if model.topology()?.input() != 784 => format!("the data {source} was trained on"),
        None => "MNIST".to_string(),
    };
    let (text_or_bytes, summary) = export::model_file(&model, a.format, &source, &derived)?;
    if let Some(flash) = &a.flash {
        let topology = model.topology()?;
        let output_bytes = if matches!(model, Exported::F32(_)) { 4 } else { 1 };
        let need = export::flash::FlashNeed::new(
            export::flash_model_bytes(&model)?,
            topology.input(),
            topology.output(),
            output_bytes,
            a.images,
            a.train_images,
        );
        need.check(flash.bytes, &flash.text)?;
        lines.push(format!("Fits --flash {}: about {} of {} bytes", flash.text, need.total(), flash.bytes));
    }
    // Images are checked and computed before anything is written: a failed export leaves no file.
    let images = if wants_images {
        let (train, test) = load("--images / --train-images")?;
        let topology = model.topology()?;
        for d in [&train, &test] {
            if d.input_len() != topology.input() || !matches!(d.features(), Features::U8(_)) {
                bail!(
                    "{} has {} u8 features per sample but the model expects {} inputs",
                    d.name(),
                    d.input_len(),
                    topology.input()
                );
            }
        }
        if a.images > test.len() || a.train_images > train.len() {
            bail!(
                "--images {} / --train-images {}: {} has {} and {} has {} samples",
                a.images,
                a.train_images,
                test.name(),
                test.len(),
                train.name(),
                train.len()
            );
        }
        Some((ImageSet::new(&model, &test, a.images, &train, a.train_images)?, test.name().to_string()))
    } else {
        None
    };
    let companions = export::companion_files(&model, a.format);
    if let Some((name, _)) = companions.iter().find(|(name, _)| a.out.file_name() == Some(name.as_ref())) {
        bail!("--out {}: that name is taken by the runtime written beside the model: use another name", name);
    }
    write_atomic(&a.out, &text_or_bytes)?;
    lines.push(format!("Wrote {} ({} bytes): {summary}", a.out.display(), text_or_bytes.len()));
    for (name, text) in companions {
        let path = a.out.with_file_name(name);
        write_atomic(&path, text.as_bytes())?;
        lines.push(format!("Wrote {}: the C runtime for it (integer only, no allocation)", path.display()));
    }
    if let Some((set, test_name)) = images {
        let path = a.images_out.clone().unwrap_or_else(|| export::default_images_path(&a.out, a.format));
        let text = export::images_file(&set, a.format, &source);
        write_atomic(&path, text.as_bytes())?;
        let expected = export::expected_path(&path);
        write_atomic(&expected, set.expected_lines().as_bytes())?;
        lines.push(format!(
            "Wrote {}: {} test images of {} with the host's {} outputs (correct {} of {}), {} training images",
            path.display(),
            a.images,
            test_name,
            set.dtype_name(),
            set.correct(),
            a.images,
            a.train_images
        ));
        lines.push(format!(
            "Wrote {}: the host's line per test image, as firmware prints it",
            expected.display()
        ));
    }
    Ok(ExportReport { lines })
}
