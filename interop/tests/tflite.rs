//! TFLite import against the real producer and runtime: .tflite files the TF converter wrote
//! from Keras MLPs, with LiteRT's (BUILTIN_REF) int8 outputs for fixed inputs
//! (scripts/interop/make_tf_fixtures.py). Core's int8 forward on the imported file must give
//! exactly those bytes. Also: export -> import round trips, and every class of bad file.

use mlp::int8::{self, Int8Model, PortableInt8};
use mlp::InputTransform;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tflite/");
/// What the fixtures' inputs are: raw * float32(1/255) (our `--normalization scale`).
const SCALE: InputTransform<'static> = InputTransform::Global { scale: 1.0 / 255.0, offset: 0.0 };

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}.tflite")).unwrap()
}

/// `(raw, LiteRT's int8 input, LiteRT's int8 logits)` per sample.
fn samples(name: &str) -> Vec<(Vec<u8>, Vec<i8>, Vec<i8>)> {
    let text = std::fs::read_to_string(format!("{DIR}{name}.txt")).unwrap();
    let rows: Vec<(&str, Vec<i64>)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            (it.next().unwrap(), it.map(|v| v.parse().unwrap()).collect())
        })
        .collect();
    rows.chunks_exact(3)
        .map(|c| {
            assert_eq!((c[0].0, c[1].0, c[2].0), ("raw", "input", "logits"));
            (
                c[0].1.iter().map(|&v| v as u8).collect(),
                c[1].1.iter().map(|&v| v as i8).collect(),
                c[2].1.iter().map(|&v| v as i8).collect(),
            )
        })
        .collect()
}

/// Imports fixture `name` and checks core against LiteRT on every stored sample.
fn check_against_litert(name: &str) -> Vec<String> {
    let (file, notes) = interop::tflite::read(&fixture(name), &SCALE).unwrap();
    let q = Int8Model::parse(&file).unwrap();
    let rows = samples(name);
    assert!(rows.len() >= 40);
    let mut act = vec![0i8; q.act_workspace_len(1)];
    let mut acc = vec![0i32; q.acc_workspace_len(1)];
    for (raw, litert_input, litert_logits) in &rows {
        let mut x = vec![0i8; raw.len()];
        q.quantize_u8(raw, &mut x).unwrap();
        assert_eq!(&x, litert_input, "{name}: input quantization differs from LiteRT's for raw {raw:?}");
        let out = int8::forward(&PortableInt8, &q, &x, 1, &mut act, &mut acc).unwrap();
        assert_eq!(out, &litert_logits[..], "{name}: int8 outputs differ from LiteRT's for raw {raw:?}");
    }
    notes
}

#[test]
fn per_channel_float_io_matches_litert() {
    let notes = check_against_litert("relu_per_channel_float_io");
    assert!(notes.iter().any(|n| n.contains("QUANTIZE")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("0 with per-tensor and 2 with per-channel")), "{notes:?}");
}

#[test]
fn per_tensor_float_io_matches_litert() {
    let notes = check_against_litert("relu_per_tensor_float_io");
    assert!(notes.iter().any(|n| n.contains("2 with per-tensor and 0 with per-channel")), "{notes:?}");
}

#[test]
fn softmax_int8_io_with_reshape_matches_litert() {
    for name in ["softmax_per_channel_int8_io", "softmax_per_tensor_int8_io"] {
        check_against_litert(name);
        let (file, _) = interop::tflite::read(&fixture(name), &SCALE).unwrap();
        let q = Int8Model::parse(&file).unwrap();
        assert_eq!(q.topology().input(), 12);
        assert_eq!(q.topology().output_layer().activation, mlp::Activation::Softmax);
    }
}

#[test]
fn softmax_float_io_matches_litert() {
    check_against_litert("softmax_per_channel_float_io");
}

#[test]
fn export_then_import_gives_the_same_file() {
    // A Keras file in, our .tflite out, and back: the same int8 model file.
    for name in ["relu_per_channel_float_io", "relu_per_tensor_float_io", "softmax_per_tensor_int8_io"] {
        let (file, _) = interop::tflite::read(&fixture(name), &SCALE).unwrap();
        let tflite = interop::tflite::write(&file).unwrap();
        assert_eq!(interop::Format::detect(&tflite), Some(interop::Format::Tflite));
        let (again, _) = interop::tflite::read(&tflite, &SCALE).unwrap();
        // Softmax is not exported (the logits are the output), so compare layer by layer.
        let (a, b) = (Int8Model::parse(&file).unwrap(), Int8Model::parse(&again).unwrap());
        assert_eq!(a.input_table(), b.input_table(), "{name}");
        for (la, lb) in a.layers().iter().zip(b.layers()) {
            assert_eq!(la.weights(), lb.weights(), "{name}");
            assert_eq!(la.bias(), lb.bias(), "{name}");
            assert_eq!(la.multipliers(), lb.multipliers(), "{name}");
            assert_eq!(la.shifts(), lb.shifts(), "{name}");
            assert_eq!(
                (la.out_scale_bits(), la.out_zero_point()),
                (lb.out_scale_bits(), lb.out_zero_point())
            );
        }
        if a.topology().output_layer().activation != mlp::Activation::Softmax {
            assert_eq!(file, again, "{name}");
        }
    }
}

fn err(bytes: &[u8]) -> String {
    interop::tflite::read(bytes, &SCALE).unwrap_err().to_string()
}

#[test]
fn unsupported_operators_are_named() {
    let e = err(&fixture("conv2d"));
    assert!(e.contains("CONV_2D") && e.contains("not supported") && e.contains("FULLY_CONNECTED"), "{e}");
    let e = err(&fixture("sigmoid_hidden"));
    assert!(e.contains("LOGISTIC") && e.contains("sigmoid"), "{e}");
}

#[test]
fn truncated_files_are_errors() {
    let good = fixture("softmax_per_channel_int8_io");
    for len in (0..good.len()).step_by(7) {
        assert!(interop::tflite::read(&good[..len], &SCALE).is_err(), "truncated to {len} bytes");
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Every byte flipped in turn: an error or a model, never a panic (the fuzz target does more).
    let good = fixture("relu_per_tensor_float_io");
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0xA5;
        if let Ok((file, _)) = interop::tflite::read(&bad, &SCALE) {
            Int8Model::parse(&file).unwrap();
        }
    }
}

/// Offset of the root table, its vtable, and the position of field `slot` of table `table`.
fn field_pos(buf: &[u8], table: usize, slot: usize) -> Option<usize> {
    let soff = i32::from_le_bytes(buf[table..table + 4].try_into().unwrap());
    let vt = (table as i64 - soff as i64) as usize;
    let vlen = u16::from_le_bytes([buf[vt], buf[vt + 1]]) as usize;
    if slot >= vlen {
        return None;
    }
    let off = u16::from_le_bytes([buf[vt + slot], buf[vt + slot + 1]]) as usize;
    (off != 0).then_some(table + off)
}

fn follow(buf: &[u8], pos: usize) -> usize {
    pos + u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize
}

#[test]
fn hostile_offsets_and_sizes_are_errors() {
    let good = fixture("relu_per_channel_float_io");
    let root = u32::from_le_bytes(good[0..4].try_into().unwrap()) as usize;
    // The subgraphs vector's offset pointing past the end.
    let p = field_pos(&good, root, 8).unwrap();
    let mut bad = good.clone();
    bad[p..p + 4].copy_from_slice(&(good.len() as u32).to_le_bytes());
    let e = err(&bad);
    assert!(e.contains("not a valid TFLite flatbuffer"), "{e}");
    // The buffers vector claiming 2^30 elements.
    let v = follow(&good, field_pos(&good, root, 12).unwrap());
    let mut bad = good.clone();
    bad[v..v + 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let e = err(&bad);
    assert!(e.contains("not a valid TFLite flatbuffer"), "{e}");
    // The root offset out of range.
    let mut bad = good.clone();
    bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(err(&bad).contains("not a valid TFLite flatbuffer"));
}

/// The first subgraph's tensor `i` table position.
fn tensor_pos(buf: &[u8], i: usize) -> usize {
    let root = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    let subgraphs = follow(buf, field_pos(buf, root, 8).unwrap());
    let g = follow(buf, subgraphs + 4);
    let tensors = follow(buf, field_pos(buf, g, 4).unwrap());
    follow(buf, tensors + 4 + 4 * i)
}

#[test]
fn non_int8_and_wrong_shapes_are_errors() {
    let good = fixture("relu_per_channel_float_io");
    // Tensor 4 is the first layer's [5, 7] int8 weights (see the fixture's tensor list).
    let t = tensor_pos(&good, 4);
    let ty = field_pos(&good, t, 6).unwrap();
    let mut bad = good.clone();
    bad[ty] = 3; // UINT8
    let e = err(&bad);
    assert!(e.contains("UINT8") && e.contains("expected INT8"), "{e}");
    // Its shape [5, 7] as [5, 8]: the input has 7 values.
    let shape = follow(&good, field_pos(&good, t, 4).unwrap());
    let mut bad = good.clone();
    bad[shape + 8..shape + 12].copy_from_slice(&8i32.to_le_bytes());
    let e = err(&bad);
    assert!(e.contains("weights take 8 inputs but its input has 7"), "{e}");
    // A huge dimension: rejected before any allocation of that size.
    let mut bad = good.clone();
    bad[shape + 4..shape + 8].copy_from_slice(&i32::MAX.to_le_bytes());
    let e = err(&bad);
    assert!(e.contains("bytes of data for shape"), "{e}");
}

#[test]
fn not_a_flatbuffer_is_an_error() {
    assert!(err(b"").contains("not a valid TFLite flatbuffer"));
    assert!(err(&[0u8; 64]).contains("not a valid TFLite flatbuffer") || !err(&[0u8; 64]).is_empty());
}

#[test]
fn export_refuses_table_activations() {
    use mlp::{init, Activation, LayerSpec, Model, Portable, Rng, Topology};
    let t =
        Topology::new(4, &[LayerSpec::dense(3, Activation::Tanh), LayerSpec::dense(2, Activation::Identity)])
            .unwrap();
    let mut params = vec![0.0; t.param_len()];
    init::initialize(&t, &mut params, init::Init::HeNormal, &mut Rng::new(1)).unwrap();
    let samples: Vec<f32> = (0..32).map(|i| (i % 7) as f32 / 7.0).collect();
    let mut ranges = int8::Ranges::new();
    let model = Model::new(&t, &params, &[]).unwrap();
    let mut ws = vec![0.0; t.infer_workspace_len(8)];
    int8::calibrate(&Portable, &model, &samples, 8, &mut ws, &mut ranges).unwrap();
    let mut scratch = vec![0.0; int8::scratch_len(&t)];
    let mut file = vec![0u8; int8::encoded_len(&t, &SCALE)];
    int8::quantize(&t, &params, &[], &ranges, &SCALE, &mut scratch, &mut file).unwrap();
    let e = interop::tflite::write(&file).unwrap_err().to_string();
    assert!(e.contains("layer 0") && e.contains("Tanh") && e.contains("ReLU or no activation"), "{e}");
}

/// A small quantized model of core's own (double rounding), for the encoder tests.
fn quantized() -> Vec<u8> {
    use mlp::{init, Activation, LayerSpec, Model, Portable, Rng, Topology};
    let t =
        Topology::new(6, &[LayerSpec::dense(5, Activation::Relu), LayerSpec::dense(3, Activation::Softmax)])
            .unwrap();
    let mut params = vec![0.0; t.param_len()];
    init::initialize(&t, &mut params, init::Init::HeNormal, &mut Rng::new(3)).unwrap();
    let samples: Vec<f32> = (0..60).map(|i| (i * 37 % 255) as f32 / 255.0).collect();
    let mut ranges = int8::Ranges::new();
    let model = Model::new(&t, &params, &[]).unwrap();
    let mut ws = vec![0.0; t.infer_workspace_len(10)];
    int8::calibrate(&Portable, &model, &samples, 10, &mut ws, &mut ranges).unwrap();
    let mut scratch = vec![0.0; int8::scratch_len(&t)];
    let mut file = vec![0u8; int8::encoded_len(&t, &SCALE)];
    int8::quantize(&t, &params, &[], &ranges, &SCALE, &mut scratch, &mut file).unwrap();
    file
}

#[test]
fn encoding_a_models_own_parts_gives_its_file() {
    let file = quantized();
    let q = Int8Model::parse(&file).unwrap();
    let scales: Vec<Vec<u32>> = q
        .layers()
        .iter()
        .map(|l| (0..l.outputs()).map(|o| l.weight_scale(o).unwrap().to_bits()).collect())
        .collect();
    let owned: Vec<[Vec<i32>; 3]> = q
        .layers()
        .iter()
        .map(|l| [l.bias().iter().collect(), l.multipliers().iter().collect(), l.shifts().iter().collect()])
        .collect();
    let parts: Vec<int8::Int8LayerParts> = q
        .layers()
        .iter()
        .zip(&scales)
        .zip(&owned)
        .map(|((l, s), [b, m, sh])| int8::Int8LayerParts {
            inputs: l.inputs(),
            outputs: l.outputs(),
            activation: l.activation(),
            out_scale_bits: l.out_scale_bits(),
            out_zero_point: l.out_zero_point(),
            pre_scale_bits: l.pre_scale_bits(),
            pre_zero_point: l.pre_zero_point(),
            weight_scale_bits: s,
            bias: b,
            multipliers: m,
            shifts: sh,
            weights: l.weights(),
            table: l.table(),
            rounding: l.rounding(),
        })
        .collect();
    let input = int8::Int8Input {
        scale_bits: q.input_scale_bits(),
        zero_point: q.input_zero_point(),
        table: q.input_table(),
    };
    let mut out = vec![0u8; file.len()];
    let n = int8::encode(q.topology(), &SCALE, &input, &parts, &mut out).unwrap();
    assert_eq!(&out[..n], &file[..], "encode differs from quantize's file");
    // Wrong counts are errors, not files.
    let e = int8::encode(q.topology(), &SCALE, &input, &parts[..1], &mut out).unwrap_err();
    assert!(e.to_string().contains("one set of int8 layer parts per layer"), "{e}");
}

#[test]
fn rounding_is_recorded_and_switched_in_the_file() {
    let mut file = quantized();
    assert!(Int8Model::parse(&file).unwrap().layers().iter().all(|l| l.rounding() == int8::Rounding::Double));
    int8::set_rounding(&mut file, int8::Rounding::Single).unwrap();
    assert!(Int8Model::parse(&file).unwrap().layers().iter().all(|l| l.rounding() == int8::Rounding::Single));
    // Imported files round once.
    let (imported, _) = interop::tflite::read(&fixture("relu_per_tensor_float_io"), &SCALE).unwrap();
    assert!(Int8Model::parse(&imported)
        .unwrap()
        .layers()
        .iter()
        .all(|l| l.rounding() == int8::Rounding::Single));
    // A flag bit this build does not know is refused (after fixing the checksum).
    // The payload (input scale, zero point, flags, table, layers) ends 4 bytes (CRC) before the end.
    let layers: usize = Int8Model::parse(&file)
        .unwrap()
        .layers()
        .iter()
        .map(|l| 16 + 16 * l.outputs() + l.weights().len().next_multiple_of(4))
        .sum();
    let flags = file.len() - 4 - (12 + 256 + layers) + 8;
    assert_eq!(u32::from_le_bytes(file[flags..flags + 4].try_into().unwrap()), 3);
    file[flags] = 7;
    let end = file.len() - 4;
    let crc = mlp::format::crc32(&file[..end]);
    file[end..].copy_from_slice(&crc.to_le_bytes());
    let e = Int8Model::parse(&file).unwrap_err().to_string();
    assert!(e.contains("input flags"), "{e}");
}

#[test]
fn more_layers_than_core_holds_is_an_error() {
    let e = err(&fixture("nine_layers"));
    assert!(e.contains("more than 8 FULLY_CONNECTED layers"), "{e}");
}
