//! `host export`: a model for firmware, as Rust source (`static` arrays, the topology as
//! constants: nothing to parse on the device), as a model file (`.bin`, the `MLPM` format of
//! `mlp::format`, for `include_bytes!` or a flash partition), or as a C header; and, on
//! request, MNIST images with the host's outputs for them, so firmware can check itself
//! bit for bit against the host.
//!
//! An f32 model exported as int8 (the default) is quantized first, exactly as
//! `host quantize` does (min/max or percentile calibration on training images).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use mlp::int8::{self, Int8Layer, Int8Model};
use mlp::{Activation, LayerSpec, ModelFile, Topology};

use crate::model_io::{write_atomic, SavedModel};
use crate::quant::{self, AnyModel, Calibration};
use cpu::int8::FastInt8;
use data::{self, Dataset, Features};

/// `host export --help` examples.
pub const EXAMPLES: &str = "Examples:
  host export model.mlp --format rust --out firmware/generated/model.rs --images 100 --train-images 300
                                  # int8 (quantized on 1000 MNIST training images) for firmware/
  host export model.mlp --format rust --dtype f32 --out firmware/generated/model_f32.rs --images 100
  host export q8.mlp --format bin --out model.bin      # the model file, for include_bytes! or flash
  host export model.mlp --format c --out model.h --images 10

With --images N, the first N MNIST test images, their labels and the host's outputs go to
<out stem>_images.rs (or .h), and the host's line per image to <out stem>_images.expected.txt.";

/// What `host export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Rust source: `static` arrays and `const` topology, for `include!` in firmware
    Rust,
    /// The model file itself ("MLPM" format), for `include_bytes!` or flashing to a partition
    Bin,
    /// A C header: `static const` arrays and `#define`s
    C,
}

/// The parameter type of the exported model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportDType {
    /// int8 weights and activations (an f32 model is quantized first)
    Int8,
    /// f32 parameters as trained
    F32,
}

/// `host export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model file (f32 or int8).
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to write the model.
    #[arg(long)]
    pub out: PathBuf,
    /// Parameter type: int8 quantizes an f32 model on training images first.
    #[arg(long, value_enum, default_value_t = ExportDType::Int8)]
    pub dtype: ExportDType,
    /// MNIST folder (IDX files), for calibration and images. Default: $MNIST_DIR, else
    /// ./data/mnist, else it is downloaded there.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Training samples used to calibrate activation ranges when quantizing.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub calibration: usize,
    /// Calibrate on the P-th percentile of each activation instead of its min/max.
    #[arg(long, value_name = "P")]
    pub percentile: Option<f64>,
    /// Also write the first N test images with their labels and the host's outputs.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub images: usize,
    /// Also write the first N training images and labels (for on-device training).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub train_images: usize,
    /// Where to write the images (default: next to --out, named `<stem>_images.rs` or `.h`).
    #[arg(long, value_name = "PATH")]
    pub images_out: Option<PathBuf>,
}

/// Runs `host export`.
pub fn run(a: ExportArgs) -> Result<()> {
    let report = export(&a)?;
    for line in report.lines {
        println!("{line}");
    }
    Ok(())
}

/// What an export wrote, as lines for the terminal.
#[derive(Debug)]
pub struct ExportReport {
    /// Human-readable summary lines.
    pub lines: Vec<String>,
}

/// The model to export, in the requested dtype.
enum Exported {
    F32(Box<SavedModel>),
    Int8(Vec<u8>),
}

/// Writes the model (and images) as `a` asks.
pub fn export(a: &ExportArgs) -> Result<ExportReport> {
    let mut lines = Vec::new();
    let wants_images = a.images > 0 || a.train_images > 0;
    if wants_images && a.format == Format::Bin {
        bail!("--images and --train-images are written as Rust or C source: use --format rust or --format c");
    }
    if a.images_out.is_some() && !wants_images {
        bail!("--images-out needs --images N or --train-images N");
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
    let model = match (loaded, a.dtype) {
        (AnyModel::Int8(bytes), ExportDType::Int8) => Exported::Int8(bytes),
        (AnyModel::F32(m), ExportDType::F32) => Exported::F32(m),
        (AnyModel::Int8(_), ExportDType::F32) => bail!(
            "{} is an int8 model; --dtype f32 needs the f32 model it was quantized from",
            a.model.display()
        ),
        (AnyModel::F32(m), ExportDType::Int8) => {
            let (train, _) = load("quantizing an f32 model to int8")?;
            let method = a.percentile.map_or(Calibration::MinMax, Calibration::Percentile);
            let ranges = quant::calibrate(&m, &train, a.calibration, method)?;
            let bytes = quant::quantize(&m, &ranges)?;
            lines.push(format!(
                "Quantized {} to int8: calibrated on {} samples of {} ({})",
                a.model.display(),
                a.calibration.min(train.len()),
                train.name(),
                match method {
                    Calibration::MinMax => "min/max".to_string(),
                    Calibration::Percentile(p) => format!("percentile {p}"),
                }
            ));
            Exported::Int8(bytes)
        }
    };
    let source = a.model.display().to_string();
    let (text_or_bytes, summary): (Vec<u8>, String) = match (&model, a.format) {
        (Exported::Int8(b), Format::Bin) => (b.clone(), describe_int8(&Int8Model::parse(b)?, b.len())),
        (Exported::F32(m), Format::Bin) => {
            let b = m.to_bytes()?;
            let s = describe_f32(m, b.len());
            (b, s)
        }
        (Exported::Int8(b), Format::Rust) => {
            let q = Int8Model::parse(b)?;
            (rust_int8(&q, &source)?.into_bytes(), describe_int8(&q, b.len()))
        }
        (Exported::F32(m), Format::Rust) => (rust_f32(m, &source)?.into_bytes(), describe_f32(m, 0)),
        (Exported::Int8(b), Format::C) => {
            let q = Int8Model::parse(b)?;
            (c_int8(&q, &source)?.into_bytes(), describe_int8(&q, b.len()))
        }
        (Exported::F32(m), Format::C) => (c_f32(m, &source)?.into_bytes(), describe_f32(m, 0)),
    };
    // Images are checked and computed before anything is written: a failed export leaves no file.
    let images = if wants_images {
        let (train, test) = load("--images / --train-images")?;
        let topology = match &model {
            Exported::Int8(b) => ModelFile::parse(b)?.topology().clone(),
            Exported::F32(m) => m.topology.clone(),
        };
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
    write_atomic(&a.out, &text_or_bytes)?;
    lines.push(format!("Wrote {} ({} bytes): {summary}", a.out.display(), text_or_bytes.len()));
    if let Some((set, test_name)) = images {
        let path = a.images_out.clone().unwrap_or_else(|| default_images_path(&a.out, a.format));
        let text = match a.format {
            Format::C => set.c(&source),
            _ => set.rust(&source),
        };
        write_atomic(&path, text.as_bytes())?;
        let expected = expected_path(&path);
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

fn shape(t: &Topology) -> String {
    let mut s = t.input().to_string();
    for l in t.layers() {
        let _ = write!(s, "-{}", l.outputs);
    }
    s
}

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

fn describe_f32(m: &SavedModel, file_bytes: usize) -> String {
    let mut s =
        format!("f32 {} ({} parameters, {} bytes", shape(&m.topology), m.params.len(), 4 * m.params.len());
    if file_bytes > 0 {
        let _ = write!(s, "; model file {file_bytes} bytes");
    }
    s.push(')');
    s
}

/// Appends `values` as a comma-separated list, `per_line` to a line, indented.
/// `pub static {NAME}_IMAGES: [[u8; input]; n]` and `{NAME}_LABELS: [u8; n]` as Rust source,
/// under the doc comment `doc`.
fn rust_images(out: &mut String, doc: &str, name: &str, input: usize, pixels: &[u8], labels: &[u8]) {
    let n = labels.len();
    let _ = write!(out, "/// {doc}\npub static {name}_IMAGES: [[u8; {input}]; {n}] = [");
    for img in pixels.chunks(input) {
        out.push_str("\n    [");
        list(out, img.iter(), 28);
        out.push_str("    ],");
    }
    out.push_str("\n];\n");
    let _ = write!(out, "pub static {name}_LABELS: [u8; {n}] = [");
    list(out, labels.iter(), 32);
    out.push_str("];\n");
}

fn list<T: std::fmt::Display>(out: &mut String, values: impl IntoIterator<Item = T>, per_line: usize) {
    for (i, v) in values.into_iter().enumerate() {
        if i % per_line == 0 {
            out.push_str("\n    ");
        } else {
            out.push(' ');
        }
        let _ = write!(out, "{v},");
    }
    out.push('\n');
}

/// An f32 as a Rust or C literal that reads back to the same bits (shortest round trip).
fn f32_literal(v: f32, c: bool) -> Result<String> {
    if !v.is_finite() {
        bail!("the model has a non-finite parameter ({v}); it cannot be exported");
    }
    let s = format!("{v:?}");
    Ok(if c { format!("{s}f") } else { s })
}

fn rust_activation(a: Activation) -> Result<String> {
    Ok(match a {
        Activation::Identity => "Activation::Identity".into(),
        Activation::Sigmoid => "Activation::Sigmoid".into(),
        Activation::Tanh => "Activation::Tanh".into(),
        Activation::Relu => "Activation::Relu".into(),
        Activation::LeakyRelu(x) => format!("Activation::LeakyRelu({})", f32_literal(x, false)?),
        Activation::Elu(x) => format!("Activation::Elu({})", f32_literal(x, false)?),
        Activation::Gelu => "Activation::Gelu".into(),
        Activation::Softmax => "Activation::Softmax".into(),
    })
}

fn rust_layer_spec(l: &LayerSpec) -> Result<String> {
    let mut s = format!("LayerSpec::dense({}, {})", l.outputs, rust_activation(l.activation)?);
    if l.dropout > 0.0 {
        let _ = write!(s, ".with_dropout({})", f32_literal(l.dropout, false)?);
    }
    if l.batch_norm {
        s.push_str(".with_batch_norm()");
    }
    Ok(s)
}

fn header(out: &mut String, comment: &str, source: &str, what: &str) {
    let _ = writeln!(out, "{comment} Generated by `host export` from {source}: {what}.");
    let _ = writeln!(out, "{comment} Do not edit; regenerate it. Derived from MNIST: never commit it.");
}

fn rust_topology(out: &mut String, t: &Topology) -> Result<()> {
    let _ = writeln!(out, "/// Inputs per sample.\npub const INPUT: usize = {};", t.input());
    let _ = writeln!(out, "/// Outputs per sample.\npub const OUTPUT: usize = {};", t.output());
    let _ = writeln!(out, "/// The layers (size `static` buffers with `mlp::layout` / `mlp::int8::layout`).");
    let _ = write!(out, "pub const LAYERS: [LayerSpec; {}] = [", t.layers().len());
    for l in t.layers() {
        let _ = write!(out, "\n    {},", rust_layer_spec(l)?);
    }
    out.push_str("\n];\n");
    Ok(())
}

fn i32s(v: mlp::int8::I32s<'_>) -> Vec<i32> {
    v.iter().collect()
}

fn weight_scale_bits(l: &Int8Layer<'_>) -> Vec<u32> {
    (0..l.outputs()).map(|o| l.weight_scale(o).map_or(0, f32::to_bits)).collect()
}

/// The int8 model as Rust: one `static` per array, `Int8LayerParts` pointing at them.
fn rust_int8(q: &Int8Model<'_>, source: &str) -> Result<String> {
    let t = q.topology();
    let mut out = String::new();
    header(&mut out, "//", source, &format!("int8 {}", shape(t)));
    out.push_str(
        "// Use: `mod model { include!(\"model.rs\"); }`, then build each layer with\n\
         // `mlp::int8::Int8Layer::from_parts(model::LAYER_PARTS[i])` and run\n\
         // `mlp::int8::forward_layers`. Raw u8 pixels become int8 inputs through INPUT_TABLE.\n\n",
    );
    out.push_str("use mlp::int8::Int8LayerParts;\nuse mlp::{Activation, LayerSpec};\n\n");
    out.push_str(
        "/// 4-byte alignment for the int8 arrays (word loads in DSP kernels).\n\
         #[repr(C, align(4))]\npub struct Align4<T>(pub T);\n\n",
    );
    let _ = writeln!(out, "/// The parameter type.\npub const DTYPE: &str = \"int8\";");
    rust_topology(&mut out, t)?;
    let _ = writeln!(
        out,
        "/// IEEE bits of the input scale ({:e}).\npub const INPUT_SCALE_BITS: u32 = {:#010x};",
        q.input_scale(),
        q.input_scale_bits()
    );
    let _ = writeln!(
        out,
        "/// Zero point of the int8 input.\npub const INPUT_ZERO_POINT: i32 = {};",
        q.input_zero_point()
    );
    out.push_str("/// Raw u8 sample value -> int8 network input (input transform and quantization in one lookup);\n/// `None` for a per-feature input transform.\n");
    match q.input_table() {
        Some(table) => {
            out.push_str("pub static INPUT_TABLE: Option<[i8; 256]> = Some([");
            list(&mut out, table.iter(), 16);
            out.push_str("]);\n");
        }
        None => out.push_str("pub static INPUT_TABLE: Option<[i8; 256]> = None;\n"),
    }
    for (i, l) in q.layers().iter().enumerate() {
        let n = l.outputs();
        let _ = write!(out, "\nstatic L{i}_WEIGHTS: Align4<[i8; {}]> = Align4([", l.weights().len());
        list(&mut out, l.weights().iter(), 32);
        out.push_str("]);\n");
        let _ = write!(out, "static L{i}_BIAS: [i32; {n}] = [");
        list(&mut out, i32s(l.bias()), 16);
        out.push_str("];\n");
        let _ = write!(out, "static L{i}_MULTIPLIERS: [i32; {n}] = [");
        list(&mut out, i32s(l.multipliers()), 16);
        out.push_str("];\n");
        let _ = write!(out, "static L{i}_SHIFTS: [i32; {n}] = [");
        list(&mut out, i32s(l.shifts()), 32);
        out.push_str("];\n");
        let _ = write!(out, "static L{i}_WEIGHT_SCALE_BITS: [u32; {n}] = [");
        list(&mut out, weight_scale_bits(l).iter().map(|b| format!("{b:#010x}")), 16);
        out.push_str("];\n");
        if let Some(table) = l.table() {
            let _ = write!(out, "static L{i}_TABLE: [i8; 256] = [");
            list(&mut out, table.iter(), 16);
            out.push_str("];\n");
        }
    }
    let _ = write!(
        out,
        "\n/// Every layer, first to last: `mlp::int8::Int8Layer::from_parts` checks and borrows each.\n\
         pub static LAYER_PARTS: [Int8LayerParts<'static>; {}] = [\n",
        q.layers().len()
    );
    for (i, l) in q.layers().iter().enumerate() {
        let table = if l.table().is_some() { format!("Some(&L{i}_TABLE)") } else { "None".into() };
        let _ = write!(
            out,
            "    Int8LayerParts {{\n        inputs: {},\n        outputs: {},\n        activation: {},\n        \
             out_scale_bits: {:#010x},\n        out_zero_point: {},\n        pre_scale_bits: {:#010x},\n        \
             pre_zero_point: {},\n        weight_scale_bits: &L{i}_WEIGHT_SCALE_BITS,\n        bias: &L{i}_BIAS,\n        \
             multipliers: &L{i}_MULTIPLIERS,\n        shifts: &L{i}_SHIFTS,\n        weights: &L{i}_WEIGHTS.0,\n        \
             table: {table},\n    }},\n",
            l.inputs(),
            l.outputs(),
            rust_activation(l.activation())?,
            l.out_scale_bits(),
            l.out_zero_point(),
            l.pre_scale_bits(),
            l.pre_zero_point(),
        );
    }
    out.push_str("];\n");
    Ok(out)
}

/// The f32 model as Rust: the flat parameters, running statistics and input transform.
fn rust_f32(m: &SavedModel, source: &str) -> Result<String> {
    let t = &m.topology;
    let mut out = String::new();
    header(&mut out, "//", source, &format!("f32 {}", shape(t)));
    out.push_str(
        "// Use: `mod model { include!(\"model_f32.rs\"); }`, then\n\
         // `mlp::Model::new(&Topology::new(INPUT, &LAYERS)?, &PARAMS, &RUNNING)` and forward.\n\n",
    );
    out.push_str("use mlp::{Activation, LayerSpec};\n\n");
    let _ = writeln!(out, "/// The parameter type.\npub const DTYPE: &str = \"f32\";");
    rust_topology(&mut out, t)?;
    let uniform =
        m.input.scale.windows(2).all(|w| w[0] == w[1]) && m.input.offset.windows(2).all(|w| w[0] == w[1]);
    if uniform {
        let (s, o) =
            (m.input.scale.first().copied().unwrap_or(1.0), m.input.offset.first().copied().unwrap_or(0.0));
        let _ = writeln!(
            out,
            "/// Network input = raw · INPUT_SCALE + INPUT_OFFSET (the same for every feature).\n\
             pub const INPUT_SCALE: f32 = {};\npub const INPUT_OFFSET: f32 = {};",
            f32_literal(s, false)?,
            f32_literal(o, false)?
        );
    } else {
        let _ = write!(out, "/// Network input j = raw · INPUT_SCALE[j] + INPUT_OFFSET[j].\npub static INPUT_SCALE: [f32; {}] = [", t.input());
        let v: Result<Vec<String>> = m.input.scale.iter().map(|&x| f32_literal(x, false)).collect();
        list(&mut out, v?, 8);
        let _ = write!(out, "];\npub static INPUT_OFFSET: [f32; {}] = [", t.input());
        let v: Result<Vec<String>> = m.input.offset.iter().map(|&x| f32_literal(x, false)).collect();
        list(&mut out, v?, 8);
        out.push_str("];\n");
    }
    let _ = write!(out, "/// Flat parameters in core's layout (per layer W[out][in], bias, [gamma, beta]).\npub static PARAMS: [f32; {}] = [", m.params.len());
    let v: Result<Vec<String>> = m.params.iter().map(|&x| f32_literal(x, false)).collect();
    list(&mut out, v?, 8);
    let _ = write!(
        out,
        "];\n/// Batch-norm running statistics.\npub static RUNNING: [f32; {}] = [",
        m.running.len()
    );
    let v: Result<Vec<String>> = m.running.iter().map(|&x| f32_literal(x, false)).collect();
    list(&mut out, v?, 8);
    out.push_str("];\n");
    Ok(out)
}

fn c_activation(a: Activation) -> u8 {
    match a {
        Activation::Identity => 0,
        Activation::Sigmoid => 1,
        Activation::Tanh => 2,
        Activation::Relu => 3,
        Activation::LeakyRelu(_) => 4,
        Activation::Elu(_) => 5,
        Activation::Gelu => 6,
        Activation::Softmax => 7,
    }
}

fn c_topology(out: &mut String, t: &Topology) {
    let _ = writeln!(
        out,
        "#define MLP_INPUT {}\n#define MLP_OUTPUT {}\n#define MLP_LAYERS {}",
        t.input(),
        t.output(),
        t.layers().len()
    );
    for (i, l) in t.layers().iter().enumerate() {
        let _ = writeln!(
            out,
            "#define MLP_L{i}_INPUTS {}\n#define MLP_L{i}_OUTPUTS {}\n#define MLP_L{i}_ACTIVATION {} /* {} */",
            t.fan_in(i),
            l.outputs,
            c_activation(l.activation),
            l.activation.name()
        );
    }
}

/// The int8 model as a C header (arithmetic in comments, arrays as `static const`).
fn c_int8(q: &Int8Model<'_>, source: &str) -> Result<String> {
    let t = q.topology();
    let guard = "MLP_MODEL_H";
    let mut out = String::new();
    header(&mut out, "//", source, &format!("int8 {}", shape(t)));
    out.push_str(
        "// Integer-only inference, TFLite's int8 conventions (see core/src/int8.rs):\n\
         //   x_q[j]  = MLP_INPUT_TABLE[raw[j]]                      (u8 pixel -> int8)\n\
         //   acc[o]  = sum_j (x_q[j] - zero_point_in) * W[o][j] + BIAS[o]   (int32, wrapping)\n\
         //   y_q[o]  = clamp(MultiplyByQuantizedMultiplier(acc[o], MULTIPLIERS[o], SHIFTS[o]) + zero_point_out)\n\
         // with the clamp [zero_point_out, 127] for relu and [-128, 127] otherwise; a layer with a TABLE\n\
         // clamps to the pre-activation zero point and looks up TABLE[y_q + 128]. Activation codes:\n\
         // 0 identity, 1 sigmoid, 2 tanh, 3 relu, 4 leaky relu, 5 elu, 6 gelu, 7 softmax (int8 logits).\n",
    );
    let _ = writeln!(out, "#ifndef {guard}\n#define {guard}\n#include <stdint.h>\n");
    out.push_str("#if defined(__GNUC__)\n#define MLP_ALIGNED __attribute__((aligned(4)))\n#else\n#define MLP_ALIGNED\n#endif\n\n");
    c_topology(&mut out, t);
    let _ = writeln!(
        out,
        "#define MLP_INPUT_ZERO_POINT {}\n#define MLP_INPUT_SCALE {:?}f",
        q.input_zero_point(),
        q.input_scale()
    );
    if let Some(table) = q.input_table() {
        out.push_str("static const int8_t MLP_INPUT_TABLE[256] MLP_ALIGNED = {");
        list(&mut out, table.iter(), 16);
        out.push_str("};\n");
    }
    for (i, l) in q.layers().iter().enumerate() {
        let n = l.outputs();
        let _ = writeln!(
            out,
            "\n#define MLP_L{i}_OUT_ZERO_POINT {}\n#define MLP_L{i}_PRE_ZERO_POINT {}\n#define MLP_L{i}_OUT_SCALE {:?}f",
            l.out_zero_point(),
            l.pre_zero_point(),
            l.out_scale()
        );
        let _ = write!(out, "static const int8_t MLP_L{i}_WEIGHTS[{}] MLP_ALIGNED = {{", l.weights().len());
        list(&mut out, l.weights().iter(), 32);
        out.push_str("};\n");
        for (name, v) in
            [("BIAS", i32s(l.bias())), ("MULTIPLIERS", i32s(l.multipliers())), ("SHIFTS", i32s(l.shifts()))]
        {
            let _ = write!(out, "static const int32_t MLP_L{i}_{name}[{n}] = {{");
            // INT32_MIN is not a C literal: write it as an expression.
            list(
                &mut out,
                v.iter()
                    .map(|&x| if x == i32::MIN { "(-2147483647 - 1)".to_string() } else { x.to_string() }),
                16,
            );
            out.push_str("};\n");
        }
        if let Some(table) = l.table() {
            let _ = write!(out, "static const int8_t MLP_L{i}_TABLE[256] = {{");
            list(&mut out, table.iter(), 16);
            out.push_str("};\n");
        }
    }
    let _ = writeln!(out, "\n#endif /* {guard} */");
    Ok(out)
}

/// The f32 model as a C header.
fn c_f32(m: &SavedModel, source: &str) -> Result<String> {
    let t = &m.topology;
    let guard = "MLP_MODEL_H";
    let mut out = String::new();
    header(&mut out, "//", source, &format!("f32 {}", shape(t)));
    out.push_str(
        "// Parameters in core's flat layout: per layer W[out][in] row-major, bias[out], then\n\
         // batch-norm gamma[out], beta[out] if the layer has batch norm. Input j = raw * MLP_INPUT_SCALE[j] + MLP_INPUT_OFFSET[j].\n",
    );
    let _ = writeln!(out, "#ifndef {guard}\n#define {guard}\n");
    c_topology(&mut out, t);
    let _ = writeln!(out, "#define MLP_PARAMS {}\n#define MLP_RUNNING {}", m.params.len(), m.running.len());
    let floats = |out: &mut String, name: &str, v: &[f32]| -> Result<()> {
        let _ = write!(out, "static const float {name}[{}] = {{", v.len().max(1));
        let lits: Result<Vec<String>> = v.iter().map(|&x| f32_literal(x, true)).collect();
        let mut lits = lits?;
        if lits.is_empty() {
            lits.push("0.0f".into());
        }
        list(out, lits, 8);
        out.push_str("};\n");
        Ok(())
    };
    floats(&mut out, "MLP_INPUT_SCALE", &m.input.scale)?;
    floats(&mut out, "MLP_INPUT_OFFSET", &m.input.offset)?;
    floats(&mut out, "MLP_PARAMS_F32", &m.params)?;
    floats(&mut out, "MLP_RUNNING_F32", &m.running)?;
    let _ = writeln!(out, "\n#endif /* {guard} */");
    Ok(out)
}

/// Test (and training) images with the host's outputs for the test images.
struct ImageSet {
    input: usize,
    test_pixels: Vec<u8>,
    test_labels: Vec<u8>,
    outputs: HostOutputs,
    predictions: Vec<u8>,
    train_pixels: Vec<u8>,
    train_labels: Vec<u8>,
}

enum HostOutputs {
    /// int8 logits, `n × classes`, from core's integer path (`FastInt8` kernels).
    Int8 { classes: usize, values: Vec<i8> },
    /// f32 outputs (probabilities for softmax), `n × classes`.
    F32 { classes: usize, values: Vec<f32> },
}

fn pixels(d: &Dataset, n: usize) -> Vec<u8> {
    match d.features() {
        Features::U8(v) => v[..n * d.input_len()].to_vec(),
        Features::F32(_) => Vec::new(),
    }
}

impl ImageSet {
    fn new(model: &Exported, test: &Dataset, n: usize, train: &Dataset, n_train: usize) -> Result<Self> {
        let input = test.input_len();
        let test_pixels = pixels(test, n);
        let label = |l: &u32| u8::try_from(*l).context("a label above 255");
        let test_labels = test.labels()[..n].iter().map(label).collect::<Result<Vec<_>>>()?;
        let train_labels = train.labels()[..n_train].iter().map(label).collect::<Result<Vec<_>>>()?;
        let (outputs, predictions) = match model {
            Exported::Int8(bytes) => {
                let q = Int8Model::parse(bytes)?;
                let classes = q.topology().output();
                let mut values = Vec::with_capacity(n * classes);
                if n > 0 {
                    let mut xq = vec![0i8; test_pixels.len()];
                    q.quantize_u8(&test_pixels, &mut xq)
                        .context("the int8 model has no u8 input table (per-feature input transform)")?;
                    let mut act = vec![0i8; q.act_workspace_len(n)];
                    let mut acc = vec![0i32; q.acc_workspace_len(n)];
                    values.extend_from_slice(int8::forward(
                        &FastInt8::new(),
                        &q,
                        &xq,
                        n,
                        &mut act,
                        &mut acc,
                    )?);
                }
                let preds = values.chunks(classes).map(|r| int8::argmax(r) as u8).collect();
                (HostOutputs::Int8 { classes, values }, preds)
            }
            Exported::F32(m) => {
                let classes = m.topology.output();
                let values = if n > 0 {
                    let raw: Vec<f32> = test_pixels.iter().map(|&p| p as f32).collect();
                    crate::train::predict_proba(m, &raw)?
                } else {
                    Vec::new()
                };
                let preds = values.chunks(classes).map(|r| mlp::loss::argmax(r) as u8).collect();
                (HostOutputs::F32 { classes, values }, preds)
            }
        };
        Ok(ImageSet {
            input,
            test_pixels,
            test_labels,
            outputs,
            predictions,
            train_pixels: pixels(train, n_train),
            train_labels,
        })
    }

    fn dtype_name(&self) -> &'static str {
        match self.outputs {
            HostOutputs::Int8 { .. } => "int8",
            HostOutputs::F32 { .. } => "f32",
        }
    }

    fn correct(&self) -> usize {
        self.predictions.iter().zip(&self.test_labels).filter(|(p, l)| p == l).count()
    }

    /// One line per test image, exactly as the firmware prints it: label, prediction and, for
    /// int8, the output logits.
    fn expected_lines(&self) -> String {
        let mut s = String::new();
        for (i, (l, p)) in self.test_labels.iter().zip(&self.predictions).enumerate() {
            let _ = write!(s, "image {i}: label {l} predicted {p}");
            if let HostOutputs::Int8 { classes, values } = &self.outputs {
                let row: Vec<String> =
                    values[i * classes..(i + 1) * classes].iter().map(|v| v.to_string()).collect();
                let _ = write!(s, " logits [{}]", row.join(", "));
            }
            s.push('\n');
        }
        s
    }

    fn rust(&self, source: &str) -> String {
        let n = self.test_labels.len();
        let m = self.train_labels.len();
        let mut out = String::new();
        header(
            &mut out,
            "//",
            source,
            &format!("{n} MNIST test images, {m} training images, the host's outputs"),
        );
        out.push('\n');
        let _ = writeln!(out, "/// Values per image.\npub const IMAGE_LEN: usize = {};", self.input);
        rust_images(
            &mut out,
            "Test images (raw u8 pixels) and labels.",
            "TEST",
            self.input,
            &self.test_pixels,
            &self.test_labels,
        );
        let _ = write!(
            out,
            "/// The host's predicted class per test image.\npub static HOST_PREDICTIONS: [u8; {n}] = ["
        );
        list(&mut out, self.predictions.iter(), 32);
        out.push_str("];\n");
        match &self.outputs {
            HostOutputs::Int8 { classes, values } => {
                let _ = write!(
                    out,
                    "/// The host's int8 outputs (logits) per test image: firmware must match them bit for bit.\n\
                     pub static HOST_OUTPUTS: [[i8; {classes}]; {n}] = ["
                );
                for row in values.chunks(*classes) {
                    out.push_str("\n    [");
                    for v in row {
                        let _ = write!(out, "{v}, ");
                    }
                    out.push_str("],");
                }
            }
            HostOutputs::F32 { classes, values } => {
                let _ = write!(out, "/// The host's f32 outputs per test image.\npub static HOST_OUTPUTS: [[f32; {classes}]; {n}] = [");
                for row in values.chunks(*classes) {
                    out.push_str("\n    [");
                    for v in row {
                        let _ = write!(out, "{v:?}, ");
                    }
                    out.push_str("],");
                }
            }
        }
        out.push_str("\n];\n");
        rust_images(
            &mut out,
            "Training images (raw u8 pixels) and labels, for on-device training.",
            "TRAIN",
            self.input,
            &self.train_pixels,
            &self.train_labels,
        );
        out
    }

    fn c(&self, source: &str) -> String {
        let n = self.test_labels.len();
        let m = self.train_labels.len();
        let mut out = String::new();
        header(
            &mut out,
            "//",
            source,
            &format!("{n} MNIST test images, {m} training images, the host's outputs"),
        );
        out.push_str("#ifndef MLP_IMAGES_H\n#define MLP_IMAGES_H\n#include <stdint.h>\n\n");
        let _ = writeln!(
            out,
            "#define MLP_IMAGE_LEN {}\n#define MLP_TEST_IMAGES {n}\n#define MLP_TRAIN_IMAGES {m}",
            self.input
        );
        // Zero-length arrays are not C: keep at least one element.
        let len = |k: usize| k.max(1);
        let _ = write!(out, "static const uint8_t MLP_TEST_PIXELS[{}] = {{", len(self.test_pixels.len()));
        list(
            &mut out,
            self.test_pixels.iter().copied().chain((self.test_pixels.is_empty()).then_some(0)),
            28,
        );
        let _ = write!(out, "}};\nstatic const uint8_t MLP_TEST_LABELS[{}] = {{", len(n));
        list(&mut out, self.test_labels.iter().copied().chain((n == 0).then_some(0)), 32);
        let _ = write!(out, "}};\nstatic const uint8_t MLP_HOST_PREDICTIONS[{}] = {{", len(n));
        list(&mut out, self.predictions.iter().copied().chain((n == 0).then_some(0)), 32);
        out.push_str("};\n");
        match &self.outputs {
            HostOutputs::Int8 { classes, values } => {
                let _ = write!(out, "static const int8_t MLP_HOST_OUTPUTS[{}] = {{", len(n * classes));
                list(&mut out, values.iter().copied().chain((values.is_empty()).then_some(0)), 20);
            }
            HostOutputs::F32 { classes, values } => {
                let _ = write!(out, "static const float MLP_HOST_OUTPUTS[{}] = {{", len(n * classes));
                let lits: Vec<String> = values.iter().map(|v| format!("{v:?}f")).collect();
                list(&mut out, lits.into_iter().chain(values.is_empty().then(|| "0.0f".to_string())), 10);
            }
        }
        let _ =
            write!(out, "}};\nstatic const uint8_t MLP_TRAIN_PIXELS[{}] = {{", len(self.train_pixels.len()));
        list(
            &mut out,
            self.train_pixels.iter().copied().chain((self.train_pixels.is_empty()).then_some(0)),
            28,
        );
        let _ = write!(out, "}};\nstatic const uint8_t MLP_TRAIN_LABELS[{}] = {{", len(m));
        list(&mut out, self.train_labels.iter().copied().chain((m == 0).then_some(0)), 32);
        out.push_str("};\n\n#endif /* MLP_IMAGES_H */\n");
        out
    }
}
