//! `host import`: a model trained elsewhere (ONNX, safetensors, int8 TFLite) into a model
//! file, with the input normalization it was trained with. The readers are the `interop`
//! crate's; this is the glue: detect the format, say what was assumed, write atomically.

use anyhow::{bail, Context, Result};
use interop::Format;
use mlp::InputTransform;

use super::args::{ImportArgs, ImportNormalization};
use crate::export::shape;
use crate::interop_io;
use crate::model_io::{write_atomic, InputTransformBuf};

/// The largest file `host import` reads (an MLP of this project's widths is far smaller).
const MAX_IMPORT_BYTES: u64 = 2 << 30;

/// Runs `host import`.
pub fn run(a: ImportArgs) -> Result<()> {
    for line in import(&a)? {
        outln!("{line}");
    }
    Ok(())
}

/// `--normalization` as a transform on `n` raw features.
fn transform(norm: ImportNormalization, n: usize) -> InputTransformBuf {
    let (mean, std) = match norm {
        ImportNormalization::None => return InputTransformBuf::identity(n),
        ImportNormalization::Scale => (0.0, 1.0),
        ImportNormalization::Standardize => (0.1307f32, 0.3081f32),
    };
    InputTransformBuf { scale: vec![1.0 / 255.0 / std; n], offset: vec![-mean / std; n] }
}

/// What `--normalization` means, for the summary line.
fn describe(norm: ImportNormalization) -> &'static str {
    match norm {
        ImportNormalization::Scale => "inputs are pixels / 255 (torchvision's ToTensor)",
        ImportNormalization::Standardize => {
            "inputs are (pixels / 255 - 0.1307) / 0.3081 (ToTensor, Normalize((0.1307,), (0.3081,)))"
        }
        ImportNormalization::None => "inputs are the raw values",
    }
}

/// Imports `a.file` and writes `a.out`; returns the lines to print.
fn import(a: &ImportArgs) -> Result<Vec<String>> {
    let path = &a.file;
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        bail!(
            "{} is a directory: host import reads one model file (.onnx, .safetensors or .tflite); an ONNX \
             model's external data files are found next to it",
            path.display()
        );
    }
    if meta.len() == 0 {
        bail!("{} is empty (0 bytes): nothing to import; was the export interrupted?", path.display());
    }
    if meta.len() > MAX_IMPORT_BYTES {
        bail!(
            "{}: {} bytes is larger than any MLP this tool imports (2 GiB at most)",
            path.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Some(format) = Format::detect(&bytes) else {
        bail!(
            "{}: not an ONNX, safetensors or TFLite file (its first bytes match none of them); \
             host import reads .onnx (torch.onnx.export), .safetensors (a state_dict) and int8 .tflite",
            path.display()
        );
    };
    let mut lines = Vec::new();
    if a.activation.is_some() && format != Format::Safetensors {
        // Said now, so the user sees it even when the import fails.
        outln!(
            "--activation ignored: it names the hidden activation of a safetensors state_dict; this {} file \
             names its own",
            format.name()
        );
    }
    let assumed = |norm: Option<ImportNormalization>, recorded: bool| -> (ImportNormalization, String) {
        match norm {
            Some(n) if recorded => {
                (n, format!("{} (--normalization, in place of the normalization the file records)", describe(n)))
            }
            Some(n) => (n, format!("{} (--normalization)", describe(n))),
            None if recorded => (ImportNormalization::None, "the input normalization the file records".into()),
            None => (
                ImportNormalization::Scale,
                format!(
                    "assumed {}: the file does not say; pass --normalization standardize or none if the model \
                     was trained otherwise",
                    describe(ImportNormalization::Scale)
                ),
            ),
        }
    };
    let read = |e: interop::Error| anyhow::anyhow!("{}: {e}", path.display());
    let (out_bytes, summary, notes) = match format {
        Format::Onnx | Format::Safetensors => {
            let model = match format {
                Format::Onnx => interop::onnx::read(&bytes, path.parent()).map_err(read)?,
                _ => interop::safetensors::read(&bytes, a.activation.map(|x| x.to_core(2))).map_err(read)?,
            };
            let n = model.topology.input();
            let (norm, said) = assumed(a.normalization, model.input.is_some());
            let input = match (&model.input, a.normalization) {
                (Some(i), None) => InputTransformBuf { scale: i.scale.clone(), offset: i.offset.clone() },
                _ => transform(norm, n),
            };
            let notes = model.notes.clone();
            let saved = interop_io::saved_model(model, input);
            saved.model().context("the imported model is not a valid network")?;
            let shape = shape(&saved.topology);
            (saved.to_bytes()?, format!("f32 {shape} from {}; {said}", format.name()), notes)
        }
        Format::Tflite => {
            let norm = a.normalization.unwrap_or(ImportNormalization::Scale);
            let (_, said) = assumed(a.normalization, false);
            let t = transform(norm, 1);
            let global = InputTransform::Global { scale: t.scale[0], offset: t.offset[0] };
            let transform = if norm == ImportNormalization::None { InputTransform::Identity } else { global };
            let (file, notes) = interop::tflite::read(&bytes, &transform).map_err(read)?;
            let shape = shape(
                mlp::int8::Int8Model::parse(&file)
                    .context("the imported int8 model does not parse")?
                    .topology(),
            );
            (file, format!("int8 {shape} from TFLite; {said}"), notes)
        }
    };
    // Written only now, whole or not at all: a failed import leaves an existing --out as it was.
    write_atomic(&a.out, &out_bytes)?;
    lines.extend(notes.into_iter().map(|n| format!("note: {n}")));
    lines.push(format!("Wrote {} ({} bytes): {summary}", a.out.display(), out_bytes.len()));
    Ok(lines)
}
