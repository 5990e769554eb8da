//! Rust source for firmware: the model as `static` arrays and `const` topology (nothing to
//! parse on the device), and the images with the host's outputs, for `include!`.

use std::fmt::Write as _;

use anyhow::Result;
use mlp::int8::{Int8Layer, Int8Model};
use mlp::{Activation, LayerSpec, Topology};

use super::array::{f32_literal, rust_row, Array, Lang};
use super::images::{HostOutputs, ImageSet};
use super::{header, i32s, shape, Source};
use crate::model_io::SavedModel;

/// The int8 model as Rust: one `static` per array, `Int8LayerParts` pointing at them.
pub(super) fn int8(q: &Int8Model<'_>, source: &Source<'_>) -> Result<String> {
    let t = q.topology();
    let mut out = String::new();
    header(&mut out, source, &format!("int8 {}", shape(t)));
    out.push_str(
        "// Use: `mod model { include!(\"model.rs\"); }`, then build each layer with\n\
         // `mlp::int8::Int8Layer::from_parts(model::LAYER_PARTS[i])` and run\n\
         // `mlp::int8::forward_layers`. Raw u8 pixels become int8 inputs through INPUT_TABLE\n\
         // (when it is `Some`; else floats through FEATURE_SCALE and FEATURE_OFFSET).\n\n",
    );
    out.push_str("use mlp::int8::Int8LayerParts;\nuse mlp::{Activation, LayerSpec};\n\n");
    out.push_str(
        "/// 4-byte alignment for the int8 arrays (word loads in DSP kernels).\n\
         #[repr(C, align(4))]\npub struct Align4<T>(pub T);\n\n",
    );
    let _ = writeln!(out, "/// The parameter type.\npub const DTYPE: &str = \"int8\";");
    topology(&mut out, t)?;
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
        Some(table) => Array::rust("INPUT_TABLE", "i8", 16)
            .public()
            .wrapped("Option", "Some")
            .write(&mut out, table.iter()),
        None => {
            out.push_str("pub static INPUT_TABLE: Option<[i8; 256]> = None;\n");
            feature_transform(&mut out, q)?;
        }
    }
    names(&mut out, q.file())?;
    for (i, l) in q.layers().iter().enumerate() {
        out.push('\n');
        Array::rust(&format!("L{i}_WEIGHTS"), "i8", 32)
            .wrapped("Align4", "Align4")
            .write(&mut out, l.weights().iter());
        Array::rust(&format!("L{i}_BIAS"), "i32", 16).write(&mut out, i32s(l.bias()));
        Array::rust(&format!("L{i}_MULTIPLIERS"), "i32", 16).write(&mut out, i32s(l.multipliers()));
        Array::rust(&format!("L{i}_SHIFTS"), "i32", 32).write(&mut out, i32s(l.shifts()));
        Array::rust(&format!("L{i}_WEIGHT_SCALE_BITS"), "u32", 16)
            .write(&mut out, weight_scale_bits(l).iter().map(|b| format!("{b:#010x}")));
        if let Some(table) = l.table() {
            Array::rust(&format!("L{i}_TABLE"), "i8", 16).write(&mut out, table.iter());
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
             table: {table},\n        rounding: mlp::int8::Rounding::{:?},\n    }},\n",
            l.inputs(),
            l.outputs(),
            activation(l.activation())?,
            l.out_scale_bits(),
            l.out_zero_point(),
            l.pre_scale_bits(),
            l.pre_zero_point(),
            l.rounding(),
        );
    }
    out.push_str("];\n");
    Ok(out)
}

/// Without an input table (a per-feature input transform, e.g. a standardized CSV model),
/// the transform as `f32` arrays: firmware computes the network input and quantizes it.
fn feature_transform(out: &mut String, q: &Int8Model<'_>) -> Result<()> {
    let n = q.topology().input();
    let (scale, offset): (Vec<f32>, Vec<f32>) = (0..n).map(|j| q.file().input_scale_offset(j)).unzip();
    out.push_str(
        "/// This model's inputs are floats with a per-feature transform (no u8 table): network input\n\
         /// x[j] = raw[j] · FEATURE_SCALE[j] + FEATURE_OFFSET[j], then\n\
         /// x_q[j] = clamp(round(x[j] / f32::from_bits(INPUT_SCALE_BITS)) + INPUT_ZERO_POINT, -128, 127)\n\
         /// (`mlp::int8::Int8Model::quantize_input` on the host).\n",
    );
    Array::rust("FEATURE_SCALE", "f32", 8).public().write(out, literals(&scale)?);
    Array::rust("FEATURE_OFFSET", "f32", 8).public().write(out, literals(&offset)?);
    Ok(())
}

/// The class names (and feature names) the model file stores, as `&str` arrays.
fn names(out: &mut String, file: &mlp::ModelFile<'_>) -> Result<()> {
    let quote = |s: &str| format!("{s:?}");
    if file.class_name_count() > 0 {
        out.push_str("/// Class names: output i predicts CLASS_NAMES[i].\n");
        let v: Vec<String> =
            (0..file.class_name_count()).filter_map(|i| file.class_name(i)).map(quote).collect();
        let _ = writeln!(out, "pub static CLASS_NAMES: [&str; {}] = [{}];", v.len(), v.join(", "));
    }
    if file.feature_name_count() > 0 {
        out.push_str("/// Input feature names, in input order.\n");
        let v: Vec<String> =
            (0..file.feature_name_count()).filter_map(|j| file.feature_name(j)).map(quote).collect();
        let _ = writeln!(out, "pub static FEATURE_NAMES: [&str; {}] = [{}];", v.len(), v.join(", "));
    }
    Ok(())
}

/// The f32 model as Rust: the flat parameters, running statistics and input transform.
pub(super) fn f32(m: &SavedModel, source: &Source<'_>) -> Result<String> {
    let t = &m.topology;
    let mut out = String::new();
    header(&mut out, source, &format!("f32 {}", shape(t)));
    out.push_str(
        "// Use: `mod model { include!(\"model_f32.rs\"); }`, then\n\
         // `mlp::Model::new(&Topology::new(INPUT, &LAYERS)?, &PARAMS, &RUNNING)` and forward.\n\n",
    );
    out.push_str("use mlp::{Activation, LayerSpec};\n\n");
    let _ = writeln!(out, "/// The parameter type.\npub const DTYPE: &str = \"f32\";");
    topology(&mut out, t)?;
    let uniform =
        m.input.scale.windows(2).all(|w| w[0] == w[1]) && m.input.offset.windows(2).all(|w| w[0] == w[1]);
    if uniform {
        let (s, o) =
            (m.input.scale.first().copied().unwrap_or(1.0), m.input.offset.first().copied().unwrap_or(0.0));
        let _ = writeln!(
            out,
            "/// Network input = raw · INPUT_SCALE + INPUT_OFFSET (the same for every feature).\n\
             pub const INPUT_SCALE: f32 = {};\npub const INPUT_OFFSET: f32 = {};",
            f32_literal(s, Lang::Rust)?,
            f32_literal(o, Lang::Rust)?
        );
    } else {
        out.push_str("/// Network input j = raw · INPUT_SCALE[j] + INPUT_OFFSET[j].\n");
        Array::rust("INPUT_SCALE", "f32", 8).public().write(&mut out, literals(&m.input.scale)?);
        Array::rust("INPUT_OFFSET", "f32", 8).public().write(&mut out, literals(&m.input.offset)?);
    }
    let file = m.to_bytes()?;
    names(&mut out, &mlp::ModelFile::parse(&file)?)?;
    out.push_str("/// Flat parameters in core's layout (per layer W[out][in], bias, [gamma, beta]).\n");
    Array::rust("PARAMS", "f32", 8).public().write(&mut out, literals(&m.params)?);
    out.push_str("/// Batch-norm running statistics.\n");
    Array::rust("RUNNING", "f32", 8).public().write(&mut out, literals(&m.running)?);
    Ok(out)
}

/// The test (and training) images with the host's outputs, as Rust.
pub(super) fn images(set: &ImageSet, source: &Source<'_>) -> String {
    let n = set.test_labels.len();
    let m = set.train_labels.len();
    let mut out = String::new();
    header(&mut out, source, &format!("{n} MNIST test images, {m} training images, the host's outputs"));
    out.push('\n');
    let _ = writeln!(out, "/// Values per image.\npub const IMAGE_LEN: usize = {};", set.input);
    image_arrays(
        &mut out,
        "Test images (raw u8 pixels) and labels.",
        "TEST",
        set.input,
        &set.test_pixels,
        &set.test_labels,
    );
    out.push_str("/// The host's predicted class per test image.\n");
    Array::rust("HOST_PREDICTIONS", "u8", 32).public().write(&mut out, set.predictions.iter());
    match &set.outputs {
        HostOutputs::Int8 { classes, values } => {
            out.push_str(
                "/// The host's int8 outputs (logits) per test image: firmware must match them bit for bit.\n",
            );
            Array::rust("HOST_OUTPUTS", &format!("[i8; {classes}]"), 1)
                .public()
                .write(&mut out, values.chunks(*classes).map(|row| rust_row(row, None)));
        }
        HostOutputs::F32 { classes, values } => {
            out.push_str("/// The host's f32 outputs per test image.\n");
            Array::rust("HOST_OUTPUTS", &format!("[f32; {classes}]"), 1).public().write(
                &mut out,
                values.chunks(*classes).map(|row| rust_row(row.iter().map(|v| format!("{v:?}")), None)),
            );
        }
    }
    image_arrays(
        &mut out,
        "Training images (raw u8 pixels) and labels, for on-device training.",
        "TRAIN",
        set.input,
        &set.train_pixels,
        &set.train_labels,
    );
    out
}

/// f32 values as Rust literals.
fn literals(values: &[f32]) -> Result<Vec<String>> {
    values.iter().map(|&x| f32_literal(x, Lang::Rust)).collect()
}

/// `pub static {NAME}_IMAGES: [[u8; input]; n]` and `{NAME}_LABELS: [u8; n]`, under the doc
/// comment `doc`.
fn image_arrays(out: &mut String, doc: &str, name: &str, input: usize, pixels: &[u8], labels: &[u8]) {
    let _ = writeln!(out, "/// {doc}");
    Array::rust(&format!("{name}_IMAGES"), &format!("[u8; {input}]"), 1)
        .public()
        .write(out, pixels.chunks(input).map(|img| rust_row(img, Some(28))));
    Array::rust(&format!("{name}_LABELS"), "u8", 32).public().write(out, labels.iter());
}

fn activation(a: Activation) -> Result<String> {
    Ok(match a {
        Activation::Identity => "Activation::Identity".into(),
        Activation::Sigmoid => "Activation::Sigmoid".into(),
        Activation::Tanh => "Activation::Tanh".into(),
        Activation::Relu => "Activation::Relu".into(),
        Activation::LeakyRelu(x) => format!("Activation::LeakyRelu({})", f32_literal(x, Lang::Rust)?),
        Activation::Elu(x) => format!("Activation::Elu({})", f32_literal(x, Lang::Rust)?),
        Activation::Gelu => "Activation::Gelu".into(),
        Activation::Softmax => "Activation::Softmax".into(),
        Activation::Maxout(k) => format!("Activation::Maxout({k})"),
    })
}

fn layer_spec(l: &LayerSpec) -> Result<String> {
    let mut s = format!("LayerSpec::dense({}, {})", l.outputs, activation(l.activation)?);
    if l.dropout > 0.0 {
        let _ = write!(s, ".with_dropout({})", f32_literal(l.dropout, Lang::Rust)?);
    }
    if l.batch_norm {
        s.push_str(".with_batch_norm()");
    }
    Ok(s)
}

fn topology(out: &mut String, t: &Topology) -> Result<()> {
    let _ = writeln!(out, "/// Inputs per sample.\npub const INPUT: usize = {};", t.input());
    let _ = writeln!(out, "/// Outputs per sample.\npub const OUTPUT: usize = {};", t.output());
    let _ = writeln!(out, "/// The layers (size `static` buffers with `mlp::layout` / `mlp::int8::layout`).");
    let _ = write!(out, "pub const LAYERS: [LayerSpec; {}] = [", t.layers().len());
    for l in t.layers() {
        let _ = write!(out, "\n    {},", layer_spec(l)?);
    }
    out.push_str("\n];\n");
    Ok(())
}

/// Each output's weight scale as IEEE bits (0 where the layer has none).
fn weight_scale_bits(l: &Int8Layer<'_>) -> Vec<u32> {
    (0..l.outputs()).map(|o| l.weight_scale(o).map_or(0, f32::to_bits)).collect()
}
