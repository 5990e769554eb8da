//! A C header for firmware: the model as `static const` arrays and `#define`s, and the images
//! with the host's outputs. For an int8 model the header also describes its arrays as
//! `MLP_MODEL` for the C runtime (`mlp_runtime.c`/`.h`, written beside it: see
//! [`RUNTIME_FILES`] and docs/C.md). The runtime is one fixed C file rather than code generated
//! per model: it is the same reviewed, tested text for every model, and a project can vendor
//! it once; the model-specific part stays data.

use std::fmt::Write as _;

use anyhow::Result;
use mlp::int8::Int8Model;
use mlp::{Activation, Topology};

use super::array::{f32_literal, Array, Lang};
use super::images::{HostOutputs, ImageSet};
use super::{header, i32s, shape, Source};
use crate::model_io::SavedModel;

/// The int8 model as a C header (arithmetic in comments, arrays as `static const`).
pub(super) fn int8(q: &Int8Model<'_>, source: &Source<'_>) -> Result<String> {
    let t = q.topology();
    let guard = "MLP_MODEL_H";
    let mut out = String::new();
    header(&mut out, source, &format!("int8 {}", shape(t)));
    if q.input_table().is_some() {
        out.push_str(
            "// Integer-only inference, TFLite's int8 conventions (see core/src/int8.rs):\n\
             //   x_q[j]  = MLP_INPUT_TABLE[raw[j]]                      (u8 pixel -> int8)\n",
        );
    } else {
        out.push_str(
            "// int8 inference, TFLite's int8 conventions (see core/src/int8.rs); the inputs are floats\n\
             // with a per-feature transform, quantized once (the only floating point):\n\
             //   x_q[j]  = clamp(round((raw[j] * MLP_FEATURE_SCALE[j] + MLP_FEATURE_OFFSET[j]) / MLP_INPUT_SCALE)\n\
             //                   + MLP_INPUT_ZERO_POINT, -128, 127)\n",
        );
    }
    out.push_str(
        "\
         //   acc[o]  = sum_j (x_q[j] - zero_point_in) * W[o][j] + BIAS[o]   (int32, wrapping)\n\
         //   y_q[o]  = clamp(MultiplyByQuantizedMultiplier(acc[o], MULTIPLIERS[o], SHIFTS[o]) + zero_point_out)\n\
         // with the clamp [zero_point_out, 127] for relu and [-128, 127] otherwise; a layer with a TABLE\n\
         // clamps to the pre-activation zero point and looks up TABLE[y_q + 128]. Activation codes:\n\
         // 0 identity, 1 sigmoid, 2 tanh, 3 relu, 4 leaky relu, 5 elu, 6 gelu, 7 softmax (int8 logits).\n",
    );
    let _ = writeln!(out, "#ifndef {guard}\n#define {guard}\n#include <stdint.h>\n");
    out.push_str("#if defined(__GNUC__)\n#define MLP_ALIGNED __attribute__((aligned(4)))\n#else\n#define MLP_ALIGNED\n#endif\n\n");
    topology(&mut out, t);
    let _ = writeln!(
        out,
        "#define MLP_INPUT_ZERO_POINT {}\n#define MLP_INPUT_SCALE {:?}f",
        q.input_zero_point(),
        q.input_scale()
    );
    // 1: MultiplyByQuantizedMultiplier rounds once (TFLITE_SINGLE_ROUNDING, a model from LiteRT).
    let single = q.layers().iter().any(|l| l.rounding() == mlp::int8::Rounding::Single);
    let _ = writeln!(out, "#define MLP_SINGLE_ROUNDING {}", single as u8);
    match q.input_table() {
        Some(table) => Array::c("MLP_INPUT_TABLE", "int8_t", 16).aligned().write(&mut out, table.iter()),
        None => {
            let n = t.input();
            let (scale, offset): (Vec<f32>, Vec<f32>) =
                (0..n).map(|j| q.file().input_scale_offset(j)).unzip();
            for (name, v) in [("MLP_FEATURE_SCALE", &scale), ("MLP_FEATURE_OFFSET", &offset)] {
                let literals = v.iter().map(|&x| f32_literal(x, Lang::C)).collect::<Result<Vec<_>>>()?;
                Array::c(name, "float", 8).write(&mut out, literals);
            }
        }
    }
    names(&mut out, q.file());
    for (i, l) in q.layers().iter().enumerate() {
        let _ = writeln!(
            out,
            "\n#define MLP_L{i}_OUT_ZERO_POINT {}\n#define MLP_L{i}_PRE_ZERO_POINT {}\n#define MLP_L{i}_OUT_SCALE {:?}f",
            l.out_zero_point(),
            l.pre_zero_point(),
            l.out_scale()
        );
        Array::c(&format!("MLP_L{i}_WEIGHTS"), "int8_t", 32).aligned().write(&mut out, l.weights().iter());
        for (name, v) in
            [("BIAS", i32s(l.bias())), ("MULTIPLIERS", i32s(l.multipliers())), ("SHIFTS", i32s(l.shifts()))]
        {
            // INT32_MIN is not a C literal: write it as an expression.
            Array::c(&format!("MLP_L{i}_{name}"), "int32_t", 16).write(
                &mut out,
                v.iter()
                    .map(|&x| if x == i32::MIN { "(-2147483647 - 1)".to_string() } else { x.to_string() }),
            );
        }
        if let Some(table) = l.table() {
            Array::c(&format!("MLP_L{i}_TABLE"), "int8_t", 16).write(&mut out, table.iter());
        }
    }
    runtime_descriptor(&mut out, q);
    let _ = writeln!(out, "\n#endif /* {guard} */");
    Ok(out)
}

/// The runtime's C source, the same for every model: written beside the model header.
pub(super) const RUNTIME_FILES: [(&str, &str); 2] =
    [("mlp_runtime.h", include_str!("mlp_runtime.h")), ("mlp_runtime.c", include_str!("mlp_runtime.c"))];

/// `MLP_MODEL`: the arrays above as the runtime's `mlp_model` (mlp_runtime.h), and the work
/// buffer it needs. The clamp bounds come from core ([`Int8Layer::clamp_range`]), so the C
/// code needs no activation codes.
///
/// [`Int8Layer::clamp_range`]: mlp::int8::Int8Layer::clamp_range
fn runtime_descriptor(out: &mut String, q: &Int8Model<'_>) {
    let max_width = q.layers().iter().map(|l| l.outputs()).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "\n/* The model for mlp_runtime.c: mlp_classify_u8(&MLP_MODEL, ...), work buffer of MLP_WORK_WORDS\n\
         \x20* int32s (MLP_WORK_WORDS * 4 bytes of RAM). */\n#include \"mlp_runtime.h\"\n\
         #define MLP_MAX_WIDTH {max_width}\n#define MLP_WORK_WORDS MLP_WORK_WORDS_FOR(MLP_MAX_WIDTH)\n\
         static const mlp_layer MLP_LAYER_TABLE[MLP_LAYERS] = {{"
    );
    for (i, l) in q.layers().iter().enumerate() {
        let (lo, hi) = l.clamp_range();
        let table = if l.table().is_some() { format!("MLP_L{i}_TABLE") } else { "NULL".into() };
        let single = (l.rounding() == mlp::int8::Rounding::Single) as u8;
        let _ = writeln!(
            out,
            "    {{MLP_L{i}_INPUTS, MLP_L{i}_OUTPUTS, MLP_L{i}_WEIGHTS, MLP_L{i}_BIAS, MLP_L{i}_MULTIPLIERS, MLP_L{i}_SHIFTS,\n\
             \x20    {table}, MLP_L{i}_OUT_ZERO_POINT, MLP_L{i}_PRE_ZERO_POINT, {lo}, {hi}, {single}}},"
        );
    }
    let input_table = if q.input_table().is_some() { "MLP_INPUT_TABLE" } else { "NULL" };
    let _ = writeln!(
        out,
        "}};\nstatic const mlp_model MLP_MODEL = {{MLP_INPUT, MLP_OUTPUT, MLP_LAYERS, MLP_MAX_WIDTH, \
         MLP_INPUT_ZERO_POINT,\n    {input_table}, MLP_LAYER_TABLE}};"
    );
}

/// The class (and feature) names the model file stores, as C string arrays.
fn names(out: &mut String, file: &mlp::ModelFile<'_>) {
    let quote = |s: &str| format!("\"{}\"", s.escape_default());
    if file.class_name_count() > 0 {
        let v: Vec<String> =
            (0..file.class_name_count()).filter_map(|i| file.class_name(i)).map(quote).collect();
        let _ = writeln!(out, "/* Output i predicts class MLP_CLASS_NAMES[i]. */");
        let _ =
            writeln!(out, "static const char *const MLP_CLASS_NAMES[{}] = {{{}}};", v.len(), v.join(", "));
    }
    if file.feature_name_count() > 0 {
        let v: Vec<String> =
            (0..file.feature_name_count()).filter_map(|j| file.feature_name(j)).map(quote).collect();
        let _ =
            writeln!(out, "static const char *const MLP_FEATURE_NAMES[{}] = {{{}}};", v.len(), v.join(", "));
    }
}

/// The f32 model as a C header.
pub(super) fn f32(m: &SavedModel, source: &Source<'_>) -> Result<String> {
    let t = &m.topology;
    let guard = "MLP_MODEL_H";
    let mut out = String::new();
    header(&mut out, source, &format!("f32 {}", shape(t)));
    out.push_str(
        "// Parameters in core's flat layout: per layer W[out][in] row-major, bias[out], then\n\
         // batch-norm gamma[out], beta[out] if the layer has batch norm. Input j = raw * MLP_INPUT_SCALE[j] + MLP_INPUT_OFFSET[j].\n",
    );
    let _ = writeln!(out, "#ifndef {guard}\n#define {guard}\n");
    topology(&mut out, t);
    let _ = writeln!(out, "#define MLP_PARAMS {}\n#define MLP_RUNNING {}", m.params.len(), m.running.len());
    for (name, v) in [
        ("MLP_INPUT_SCALE", &m.input.scale),
        ("MLP_INPUT_OFFSET", &m.input.offset),
        ("MLP_PARAMS_F32", &m.params),
        ("MLP_RUNNING_F32", &m.running),
    ] {
        let literals = v.iter().map(|&x| f32_literal(x, Lang::C)).collect::<Result<Vec<_>>>()?;
        Array::c(name, "float", 8).write(&mut out, literals);
    }
    let file = m.to_bytes()?;
    names(&mut out, &mlp::ModelFile::parse(&file)?);
    let _ = writeln!(out, "\n#endif /* {guard} */");
    Ok(out)
}

/// The test (and training) images with the host's outputs, as a C header.
pub(super) fn images(set: &ImageSet, source: &Source<'_>) -> String {
    let n = set.test_labels.len();
    let m = set.train_labels.len();
    let mut out = String::new();
    header(&mut out, source, &format!("{n} MNIST test images, {m} training images, the host's outputs"));
    out.push_str("#ifndef MLP_IMAGES_H\n#define MLP_IMAGES_H\n#include <stdint.h>\n\n");
    let _ = writeln!(
        out,
        "#define MLP_IMAGE_LEN {}\n#define MLP_TEST_IMAGES {n}\n#define MLP_TRAIN_IMAGES {m}",
        set.input
    );
    Array::c("MLP_TEST_PIXELS", "uint8_t", 28).write(&mut out, set.test_pixels.iter());
    Array::c("MLP_TEST_LABELS", "uint8_t", 32).write(&mut out, set.test_labels.iter());
    Array::c("MLP_HOST_PREDICTIONS", "uint8_t", 32).write(&mut out, set.predictions.iter());
    match &set.outputs {
        HostOutputs::Int8 { values, .. } => {
            Array::c("MLP_HOST_OUTPUTS", "int8_t", 20).write(&mut out, values.iter());
        }
        HostOutputs::F32 { values, .. } => {
            Array::c("MLP_HOST_OUTPUTS", "float", 10)
                .write(&mut out, values.iter().map(|v| format!("{v:?}f")));
        }
    }
    Array::c("MLP_TRAIN_PIXELS", "uint8_t", 28).write(&mut out, set.train_pixels.iter());
    Array::c("MLP_TRAIN_LABELS", "uint8_t", 32).write(&mut out, set.train_labels.iter());
    out.push_str("\n#endif /* MLP_IMAGES_H */\n");
    out
}

fn activation(a: Activation) -> u8 {
    match a {
        Activation::Identity => 0,
        Activation::Sigmoid => 1,
        Activation::Tanh => 2,
        Activation::Relu => 3,
        Activation::LeakyRelu(_) => 4,
        Activation::Elu(_) => 5,
        Activation::Gelu => 6,
        Activation::Softmax => 7,
        Activation::Maxout(_) => 8,
    }
}

fn topology(out: &mut String, t: &Topology) {
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
            activation(l.activation),
            l.activation.name()
        );
        if let Activation::Maxout(k) = l.activation {
            // W and bias have k rows per unit; row o*k + j is piece j of unit o.
            let _ = writeln!(
                out,
                "#define MLP_L{i}_PIECES {k} /* maxout: unit o = max of rows o*{k} .. o*{k}+{} */",
                k - 1
            );
        }
    }
}
