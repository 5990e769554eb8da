//! `host export`'s formats: a model for firmware, as Rust source (`static` arrays, the
//! topology as constants: nothing to parse on the device), as a model file (`.bin`, the
//! `MLPM` format of `mlp::format`, for `include_bytes!` or a flash partition), or as a C
//! header; and MNIST images with the host's outputs for them, so firmware can check itself
//! bit for bit against the host.
//!
//! One emitter per format ([`rust`], [`c`], [`bin`]), all writing their arrays through the
//! one writer in [`array`]; [`images`] computes the host's outputs for the images. The
//! command itself (loading, quantizing as `host quantize` does, writing) is `crate::cli`'s.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ValueEnum;
use mlp::int8::Int8Model;
use mlp::{ModelFile, Topology};

use crate::model_io::SavedModel;

mod array;
mod bin;
mod c;
pub mod flash;
mod images;
mod rust;

pub use images::ImageSet;

/// What `host export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Rust source: `static` arrays and `const` topology, for `include!` in firmware
    Rust,
    /// The model file itself ("MLPM" format), for `include_bytes!` or flashing to a partition
    Bin,
    /// A C header: `static const` arrays and `#define`s; for int8, also mlp_runtime.c and
    /// mlp_runtime.h beside it: integer-only C99 inference for it (docs/C.md)
    C,
    /// ONNX (f32): a graph onnxruntime runs, the input normalization and class names as metadata
    Onnx,
    /// safetensors (f32): PyTorch `nn.Sequential` `state_dict` names, topology in the metadata
    Safetensors,
    /// TFLite flatbuffer (int8): FULLY_CONNECTED layers; LiteRT runs a `quantize --rounding single` model bit-identically to `host`
    Tflite,
}

impl Format {
    /// The parameter type this format holds when `--dtype` is not given, and whether it can
    /// hold the other one.
    pub fn default_dtype(self) -> ExportDType {
        match self {
            Format::Onnx | Format::Safetensors => ExportDType::F32,
            Format::Rust | Format::Bin | Format::C | Format::Tflite => ExportDType::Int8,
        }
    }

    /// The one parameter type the format holds, if it holds only one.
    pub fn only_dtype(self) -> Option<ExportDType> {
        match self {
            Format::Onnx | Format::Safetensors => Some(ExportDType::F32),
            Format::Tflite => Some(ExportDType::Int8),
            Format::Rust | Format::Bin | Format::C => None,
        }
    }

    /// The lowercase name, as `--format` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Rust => "rust",
            Format::Bin => "bin",
            Format::C => "c",
            Format::Onnx => "onnx",
            Format::Safetensors => "safetensors",
            Format::Tflite => "tflite",
        }
    }
}

/// The parameter type of the exported model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportDType {
    /// int8 weights and activations (an f32 model is quantized first)
    Int8,
    /// f32 parameters as trained
    F32,
}

/// The model to export, in the requested dtype.
#[derive(Debug)]
pub enum Exported {
    /// f32 parameters.
    F32(Box<SavedModel>),
    /// An int8 model file's bytes.
    Int8(Vec<u8>),
}

impl Exported {
    /// The network shape.
    pub fn topology(&self) -> Result<Topology> {
        Ok(match self {
            Exported::Int8(b) => ModelFile::parse(b)?.topology().clone(),
            Exported::F32(m) => m.topology.clone(),
        })
    }
}

/// The bytes of `model`'s arrays in flash: its model file's size (what `--format bin`
/// writes; the Rust and C exports hold the same arrays).
pub fn flash_model_bytes(model: &Exported) -> Result<usize> {
    Ok(match model {
        Exported::Int8(b) => b.len(),
        Exported::F32(m) => bin::f32(m)?.len(),
    })
}

/// `model` as `format` (`source` names the file it came from, `derived` the data it is
/// derived from, e.g. "iris.csv" or "MNIST"), and a one-line summary of it.
pub fn model_file(
    model: &Exported,
    format: Format,
    source: &str,
    derived: &str,
) -> Result<(Vec<u8>, String)> {
    let source = &Source { file: source, derived };
    Ok(match (model, format) {
        (Exported::Int8(b), Format::Bin) => (bin::int8(b), describe_int8(&Int8Model::parse(b)?, b.len())),
        (Exported::F32(m), Format::Bin) => {
            let b = bin::f32(m)?;
            let s = describe_f32(m, b.len());
            (b, s)
        }
        (Exported::Int8(b), Format::Rust) => {
            let q = Int8Model::parse(b)?;
            (rust::int8(&q, source)?.into_bytes(), describe_int8(&q, b.len()))
        }
        (Exported::F32(m), Format::Rust) => (rust::f32(m, source)?.into_bytes(), describe_f32(m, 0)),
        (Exported::Int8(b), Format::C) => {
            let q = Int8Model::parse(b)?;
            (c::int8(&q, source)?.into_bytes(), describe_int8(&q, b.len()))
        }
        (Exported::F32(m), Format::C) => (c::f32(m, source)?.into_bytes(), describe_f32(m, 0)),
        (Exported::F32(m), Format::Onnx) => {
            let b = interop::onnx::write(&crate::interop_io::float_model(m))?;
            // Not a model file: "Wrote" already gives the .onnx file's size.
            let s = describe_f32(m, 0);
            (b, s)
        }
        (Exported::F32(m), Format::Safetensors) => {
            let b = interop::safetensors::write(&crate::interop_io::float_model(m))?;
            let s = describe_f32(m, b.len());
            (b, s)
        }
        (Exported::Int8(b), Format::Tflite) => {
            let q = Int8Model::parse(b)?;
            let t = interop::tflite::write(b)?;
            let mut s = describe_int8(&q, t.len());
            if q.layers().iter().any(|l| l.rounding() == mlp::int8::Rounding::Double) {
                // The .tflite cannot say how to round; the runtime's build decides.
                s.push_str(
                    "; this model rounds as gemmlowp (TFLite Micro's reference kernels match it bit for bit), \
                     LiteRT's PyPI wheels round once: `host quantize --rounding single` makes the model they match",
                );
            }
            (t, s)
        }
        (Exported::Int8(_), Format::Onnx | Format::Safetensors) => {
            anyhow::bail!("--format {} holds f32 models: export with --dtype f32", format.name())
        }
        (Exported::F32(_), Format::Tflite) => {
            anyhow::bail!("--format tflite holds int8 models: export with --dtype int8 (the default)")
        }
    })
}

/// The files `format` writes beside the model, as (file name, contents): for an int8 C header,
/// the C runtime that runs it (`mlp_runtime.h`, `mlp_runtime.c`, the same for every model).
pub fn companion_files(model: &Exported, format: Format) -> &'static [(&'static str, &'static str)] {
    match (model, format) {
        (Exported::Int8(_), Format::C) => &c::RUNTIME_FILES,
        _ => &[],
    }
}

/// The images as source for `format`: a C header for C, else Rust.
pub fn images_file(set: &ImageSet, format: Format, source: &str) -> String {
    let source = &Source { file: source, derived: "MNIST" };
    match format {
        Format::C => c::images(set, source),
        _ => rust::images(set, source),
    }
}

/// `dir/model.rs` -> `dir/model_images.rs` (`.h` for C).
pub fn default_images_path(out: &Path, format: Format) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let ext = if format == Format::C { "h" } else { "rs" };
    out.with_file_name(format!("{stem}_images.{ext}"))
}

/// `dir/model_images.rs` -> `dir/model_images.expected.txt`.
pub fn expected_path(images: &Path) -> PathBuf {
    let stem =
        images.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "images".into());
    images.with_file_name(format!("{stem}.expected.txt"))
}

/// `784-256-10`.
pub fn shape(t: &Topology) -> String {
    let mut s = t.input().to_string();
    for l in t.layers() {
        let _ = write!(s, "-{}", l.outputs);
    }
    s
}

/// The summary of an int8 model (`file_bytes` 0: not a model file).
fn describe_int8(q: &Int8Model<'_>, file_bytes: usize) -> String {
    let weights: usize = q.layers().iter().map(|l| l.weights().len()).sum();
    let per_channel: usize = q.layers().iter().map(|l| 16 * l.outputs()).sum();
    let mut s = format!(
        "int8 {} ({} parameters; {} bytes of weights, {} of per-channel bias/requantization",
        shape(q.topology()),
        q.topology().param_len(),
        weights,
        per_channel
    );
    if file_bytes > 0 {
        let _ = write!(s, "; model file {file_bytes} bytes");
    }
    s.push(')');
    s
}

/// The summary of an f32 model (`file_bytes` 0: not a model file).
fn describe_f32(m: &SavedModel, file_bytes: usize) -> String {
    let mut s =
        format!("f32 {} ({} parameters, {} bytes", shape(&m.topology), m.params.len(), 4 * m.params.len());
    if file_bytes > 0 {
        let _ = write!(s, "; model file {file_bytes} bytes");
    }
    s.push(')');
    s
}

/// Where a generated source comes from: the model file, and the data it is derived from.
struct Source<'a> {
    file: &'a str,
    derived: &'a str,
}

/// The comment lines every generated source starts with.
fn header(out: &mut String, source: &Source<'_>, what: &str) {
    let _ = writeln!(out, "// Generated by `host export` from {}: {what}.", source.file);
    let _ = writeln!(out, "// Do not edit; regenerate it. Derived from {}: never commit it.", source.derived);
}

fn i32s(v: mlp::int8::I32s<'_>) -> Vec<i32> {
    v.iter().collect()
}
