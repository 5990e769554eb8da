//! The int8 model file: round trips, field-by-field agreement with an independent
//! re-quantization, alignment, dtype errors, and every corruption class.

use mlp::format::{self, ModelFile};
use mlp::int8::{self, Int8Model};
use mlp::{fold_batch_norm, Activation, DType, Error, InputTransform, LayerSpec, Rng, Topology};
use mlp_tests::int8::*;
use mlp_tests::reference::act;

const TRANSFORM: InputTransform<'static> = InputTransform::Global { scale: 1.0 / 255.0, offset: -0.5 };

/// 5 -> 7 sigmoid (batch norm) -> 6 ReLU (dropout) -> 3 softmax: weights 35, 42 and 18 bytes
/// long, so every layer has padding.
fn sample() -> (Built, Vec<f32>, Vec<u8>) {
    let mut rng = Rng::new(31);
    let t = Topology::new(
        5,
        &[
            LayerSpec::dense(7, Activation::Sigmoid).with_batch_norm(),
            LayerSpec::dense(6, Activation::Relu).with_dropout(0.1),
            LayerSpec::dense(3, Activation::Softmax),
        ],
    )
    .unwrap();
    let mut params = vec![0.0; t.param_len()];
    mlp::init::initialize(&t, &mut params, mlp::init::Init::XavierNormal, &mut rng).unwrap();
    params.iter_mut().for_each(|p| *p += 0.05 * rng.normal());
    let mut running = vec![0.0; t.running_len()];
    let (m, v) = t.running_ranges(0).unwrap();
    running[m].iter_mut().for_each(|x| *x = 0.1 * rng.normal());
    running[v].iter_mut().for_each(|x| *x = rng.uniform_in(0.5, 2.0));
    let b = Built { t, params, running };
    let x: Vec<f32> = (0..5 * 30).map(|_| rng.uniform_in(-0.5, 0.5)).collect();
    let file = mlp_tests::int8::quantize(&b, &x, 30, &TRANSFORM);
    (b, x, file)
}

/// Offsets from the documented layout (format.rs module docs), computed independently.
struct Offsets {
    header: usize,
    input_scale: usize,
    input_flag: usize,
    layers: Vec<usize>,
}

fn offsets(t: &Topology, transform_len: usize, table: bool) -> Offsets {
    let header = 24 + 16 * t.layers().len();
    let input_scale = header + transform_len;
    let mut at = input_scale + 12 + if table { 256 } else { 0 };
    let mut layers = Vec::new();
    for (i, l) in t.layers().iter().enumerate() {
        layers.push(at);
        let (n, m) = (l.outputs, t.fan_in(i));
        at += 16 + 16 * n + (n * m).div_ceil(4) * 4;
        if int8::uses_table(l.activation) {
            at += 256;
        }
    }
    assert_eq!(at + 4, int8::encoded_len(t, &TRANSFORM));
    Offsets { header, input_scale, input_flag: input_scale + 8, layers }
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Scale and zero point of a calibrated range, from TFLite's definition.
fn expected_params(min: f32, max: f32) -> (f32, i32) {
    let (lo, hi) = ((min as f64).min(0.0), (max as f64).max(0.0));
    let s = ((hi - lo) / 255.0) as f32;
    (s, ((-128.0 - lo / s as f64).round() as i32).clamp(-128, 127))
}

#[test]
fn every_field_matches_an_independent_requantization() {
    let (b, x, file) = sample();
    let ranges = calibrate(&b, &x, 30);
    let m = Int8Model::parse(&file).unwrap();
    let mut folded = vec![0.0; int8::scratch_len(&b.t)];
    let ft = fold_batch_norm(&b.t, &b.params, &b.running, &mut folded).unwrap();
    assert_eq!(m.topology(), &ft);
    assert!(m.topology().layers().iter().all(|l| !l.batch_norm && l.dropout == 0.0));
    let off = offsets(&ft, 8, true);
    assert_eq!(f32_at(&file, off.header), 1.0 / 255.0);
    let (s_in, z_in) = expected_params(ranges.input.min, ranges.input.max);
    assert_eq!((m.input_scale(), m.input_zero_point()), (s_in, z_in));
    assert_eq!((f32_at(&file, off.input_scale), i32_at(&file, off.input_scale + 4)), (s_in, z_in));
    assert_eq!(i32_at(&file, off.input_flag), 1);
    let mut s_prev = s_in as f64;
    for (i, layer) in m.layers().iter().enumerate() {
        let base = off.layers[i];
        let r = ft.param_ranges(i).unwrap();
        let (w, bias) = (&folded[r.weights], &folded[r.bias]);
        let (n, mm) = (layer.outputs(), layer.inputs());
        let (s_out, z_out) = expected_params(ranges.out[i].min, ranges.out[i].max);
        assert_eq!((layer.out_scale(), layer.out_zero_point()), (s_out, z_out), "layer {i}");
        assert_eq!(f32_at(&file, base), s_out);
        let (s_pre, z_pre) = if layer.table().is_some() {
            expected_params(ranges.pre[i].min, ranges.pre[i].max)
        } else {
            (s_out, z_out)
        };
        assert_eq!((layer.pre_scale(), layer.pre_zero_point()), (s_pre, z_pre));
        // The views point at the documented offsets.
        let p = |s: &[u8]| s.as_ptr() as usize - file.as_ptr() as usize;
        assert_eq!(p(layer.bias().as_bytes()), base + 16 + 4 * n);
        assert_eq!(p(layer.shifts().as_bytes()), base + 16 + 12 * n);
        assert_eq!(layer.weights().as_ptr() as usize - file.as_ptr() as usize, base + 16 + 16 * n);
        for o in 0..n {
            let row = &w[o * mm..(o + 1) * mm];
            let s_w = (row.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0) as f64;
            assert_eq!(layer.weight_scale(o).unwrap() as f64, s_w);
            for (j, (&wq, &wf)) in layer.weights()[o * mm..(o + 1) * mm].iter().zip(row).enumerate() {
                assert_eq!(wq as f64, (wf as f64 / s_w).round(), "W[{o}][{j}]");
            }
            assert_eq!(layer.bias().get(o).unwrap() as f64, (bias[o] as f64 / (s_prev * s_w)).round());
            let (mult, shift) = int8::quantize_multiplier(s_prev * s_w / s_pre as f64);
            assert_eq!((layer.multipliers().get(o).unwrap(), layer.shifts().get(o).unwrap()), (mult, shift));
        }
        if let Some(table) = layer.table() {
            // Against an f64 activation: equal except where f32 vs f64 sits on a rounding tie.
            let mut off_by_one = 0;
            for q in -128..=127i32 {
                let y = act(layer.activation(), s_pre as f64 * (q - z_pre) as f64);
                let want = ((y / s_out as f64).round() as i32 + z_out).clamp(-128, 127);
                let got = table[(q + 128) as usize] as i32;
                assert!((got - want).abs() <= 1, "table[{q}] = {got}, want {want}");
                off_by_one += (got != want) as usize;
            }
            assert!(off_by_one <= 2);
        }
        s_prev = s_out as f64;
    }
    assert_eq!(m.file().input_scale_offset(3), (1.0 / 255.0, -0.5));
}

#[test]
fn round_trip_is_deterministic_and_alignment_free() {
    let (b, x, file) = sample();
    assert_eq!(mlp_tests::int8::quantize(&b, &x, 30, &TRANSFORM), file, "quantizing twice differs");
    let m = Int8Model::parse(&file).unwrap();
    let xq: Vec<i8> = (0..5 * 4).map(|i| (i * 37 % 256) as u8 as i8).collect();
    let want = run_int8(&m, &xq, 4);
    for shift in 1..8 {
        let mut buf = vec![0u8; file.len() + shift];
        buf[shift..].copy_from_slice(&file);
        let m2 = Int8Model::parse(&buf[shift..]).unwrap();
        assert_eq!(run_int8(&m2, &xq, 4), want, "at offset {shift}");
        let via_file = ModelFile::parse(&buf[shift..]).unwrap().int8().unwrap();
        assert_eq!(run_int8(&via_file, &xq, 4), want);
    }
}

#[test]
fn dtype_mismatches_are_named() {
    let (b, _, file) = sample();
    let f = ModelFile::parse(&file).unwrap();
    assert_eq!(f.dtype(), DType::Int8);
    let mut p = vec![0.0; f.topology().param_len()];
    let err = f.read_params(&mut p).unwrap_err();
    assert_eq!(err, Error::DTypeMismatch { expected: DType::F32, found: DType::Int8 });
    assert!(err.to_string().contains("int8"), "{err}");
    assert!(f.params_f32().is_none());
    let mut bytes = vec![0u8; format::encoded_len(&b.t, &TRANSFORM)];
    format::write(&b.t, &b.params, &b.running, &TRANSFORM, &mut bytes).unwrap();
    assert_eq!(
        Int8Model::parse(&bytes).unwrap_err(),
        Error::DTypeMismatch { expected: DType::Int8, found: DType::F32 }
    );
    assert!(ModelFile::parse(&bytes).unwrap().int8().is_none());
}

/// An f32 file is byte-for-byte what the documented layout says (an independent encoder).
#[test]
fn f32_files_are_unchanged() {
    let (b, _, _) = sample();
    let mut bytes = vec![0u8; format::encoded_len(&b.t, &TRANSFORM)];
    format::write(&b.t, &b.params, &b.running, &TRANSFORM, &mut bytes).unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(b"MLPM");
    want.extend_from_slice(&1u16.to_le_bytes());
    want.extend_from_slice(&[0, 1]);
    want.extend_from_slice(&5u32.to_le_bytes());
    want.extend_from_slice(&3u32.to_le_bytes());
    for (l, code, alpha) in [(7u32, 1u8, 0.0f32), (6, 3, 0.0), (3, 7, 0.0)] {
        want.extend_from_slice(&l.to_le_bytes());
        let bn = (l == 7) as u8;
        want.extend_from_slice(&[code, bn, 0, 0]);
        want.extend_from_slice(&alpha.to_le_bytes());
        want.extend_from_slice(&(if l == 6 { 0.1f32 } else { 0.0 }).to_le_bytes());
    }
    want.extend_from_slice(&(b.params.len() as u32).to_le_bytes());
    want.extend_from_slice(&(b.running.len() as u32).to_le_bytes());
    for v in b.params.iter().chain(&b.running).chain(&[1.0f32 / 255.0, -0.5]) {
        want.extend_from_slice(&v.to_le_bytes());
    }
    let crc = format::crc32(&want);
    want.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(bytes, want);
    let f = ModelFile::parse(&bytes).unwrap();
    let mut p = vec![0.0; b.params.len()];
    f.read_params(&mut p).unwrap();
    assert_eq!(p, b.params);
}

#[test]
fn every_truncation_and_extension_is_a_length_error() {
    let (_, _, file) = sample();
    for cut in 0..file.len() {
        match Int8Model::parse(&file[..cut]) {
            Err(Error::Truncated { actual, .. }) => assert_eq!(actual, cut),
            other => panic!("truncated at {cut}: {other:?}"),
        }
    }
    let mut longer = file.clone();
    longer.push(0);
    assert!(matches!(Int8Model::parse(&longer), Err(Error::TrailingBytes { .. })));
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let (_, _, file) = sample();
    let off = offsets(ModelFile::parse(&file).unwrap().topology(), 8, true);
    for i in 0..file.len() {
        for bit in 0..8 {
            let mut bad = file.clone();
            bad[i] ^= 1 << bit;
            let err = Int8Model::parse(&bad).expect_err(&format!("flip of bit {bit} in byte {i} accepted"));
            // Past the header and the input table flag, only the checksum can notice.
            let in_flag = (off.input_flag..off.input_flag + 4).contains(&i);
            if i >= off.header && !in_flag {
                assert!(matches!(err, Error::ChecksumMismatch { .. }), "byte {i} bit {bit}: {err:?}");
            }
        }
    }
}

#[test]
fn header_corruptions_have_their_own_errors() {
    let (_, _, file) = sample();
    let edit = |at: usize, bytes: &[u8], seal: bool| {
        let mut bad = file.clone();
        bad[at..at + bytes.len()].copy_from_slice(bytes);
        if seal {
            reseal(&mut bad);
        }
        Int8Model::parse(&bad).unwrap_err()
    };
    assert_eq!(edit(0, b"MLPX", true), Error::BadMagic);
    assert_eq!(edit(4, &9u16.to_le_bytes(), true), Error::UnsupportedVersion { found: 9, supported: 2 });
    assert_eq!(edit(6, &[2], true), Error::UnknownDType { code: 2 });
    assert!(matches!(edit(6, &[0], true), Error::Truncated { .. } | Error::TrailingBytes { .. }));
    assert!(matches!(edit(7, &[3], true), Error::CorruptHeader { .. }));
    assert_eq!(edit(12, &0u32.to_le_bytes(), true), Error::NoLayers);
    assert!(matches!(edit(8, &u32::MAX.to_le_bytes(), true), Error::WidthTooLarge { .. }));
    assert!(matches!(edit(16, &u32::MAX.to_le_bytes(), true), Error::WidthTooLarge { .. }));
    assert_eq!(edit(20, &[99], true), Error::UnknownActivation { code: 99 });
    // Batch norm or dropout in an int8 file.
    assert!(matches!(edit(21, &[1], true), Error::CorruptHeader { .. }));
    assert!(matches!(edit(28, &0.5f32.to_le_bytes(), true), Error::CorruptHeader { .. }));
    // Parameter and running counts must match the topology.
    let p_at = 16 + 16 * 3;
    assert!(matches!(edit(p_at, &1u32.to_le_bytes(), true), Error::CorruptHeader { .. }));
    assert!(matches!(edit(p_at + 4, &2u32.to_le_bytes(), true), Error::CorruptHeader { .. }));
    // A width change alone contradicts the parameter count; with a matching count, the
    // file length.
    assert!(matches!(edit(16, &8u32.to_le_bytes(), true), Error::CorruptHeader { .. }));
    for (width, longer) in [(8u32, true), (6, false)] {
        let t = ModelFile::parse(&file).unwrap().topology().clone();
        let mut specs = t.layers().to_vec();
        specs[0].outputs = width as usize;
        let p = Topology::new(5, &specs).unwrap().param_len() as u32;
        let mut bad = file.clone();
        bad[16..20].copy_from_slice(&width.to_le_bytes());
        bad[p_at..p_at + 4].copy_from_slice(&p.to_le_bytes());
        reseal(&mut bad);
        let err = Int8Model::parse(&bad).unwrap_err();
        if longer {
            assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
        } else {
            assert!(matches!(err, Error::TrailingBytes { .. }), "{err:?}");
        }
    }
    let len = file.len();
    assert!(matches!(edit(len - 4, &[0, 0, 0, 0], false), Error::ChecksumMismatch { stored: 0, .. }));
}

#[test]
fn payload_corruptions_with_a_valid_checksum_are_refused() {
    let (_, _, file) = sample();
    let t = ModelFile::parse(&file).unwrap().topology().clone();
    let off = offsets(&t, 8, true);
    let corrupt = |at: usize, bytes: &[u8]| {
        let mut bad = file.clone();
        bad[at..at + bytes.len()].copy_from_slice(bytes);
        reseal(&mut bad);
        let err = Int8Model::parse(&bad).unwrap_err();
        assert!(matches!(err, Error::CorruptPayload { .. }), "edit at {at}: {err:?}");
        assert!(ModelFile::parse(&bad).is_err());
    };
    let bits = |v: f32| v.to_le_bytes();
    for bad_scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        corrupt(off.input_scale, &bits(bad_scale));
    }
    corrupt(off.input_scale + 4, &128i32.to_le_bytes());
    corrupt(off.input_scale + 4, &(-129i32).to_le_bytes());
    // Bits 0 (input table) and 1 (single rounding) are the only flags.
    corrupt(off.input_flag, &4u32.to_le_bytes());
    for (i, l) in t.layers().iter().enumerate() {
        let (base, n, m) = (off.layers[i], l.outputs, t.fan_in(i));
        corrupt(base, &bits(-0.5));
        corrupt(base + 4, &300i32.to_le_bytes());
        corrupt(base + 8, &bits(f32::NAN));
        corrupt(base + 12, &(-200i32).to_le_bytes());
        corrupt(base + 16 + 4 * (n - 1), &bits(0.0));
        corrupt(base + 16 + 8 * n, &12345i32.to_le_bytes());
        corrupt(base + 16 + 8 * n, &(-1i32 << 30).to_le_bytes());
        corrupt(base + 16 + 12 * n, &31i32.to_le_bytes());
        corrupt(base + 16 + 12 * n + 4 * (n - 1), &(-32i32).to_le_bytes());
        corrupt(base + 16 + 16 * n + 1, &[0x80]);
        corrupt(base + 16 + 16 * n + n * m, &[1]);
        if !int8::uses_table(l.activation) {
            // No table: the pre-activation quantization must equal the output's.
            let z = i32_at(&file, base + 4);
            corrupt(base + 12, &(if z == 0 { 1i32 } else { 0 }).to_le_bytes());
        }
    }
}
