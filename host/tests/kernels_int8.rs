//! `host::kernels_int8::Int8Fast` is bit-identical to core's `PortableInt8` on every path this
//! CPU supports (paths it lacks are skipped with a message), on ragged shapes, extreme values
//! and through `mlp::int8::forward` on a quantized model.

use host::kernels_int8::{Int8Fast, Int8Path};
use mlp::int8::{self, Int8Kernels, PortableInt8};
use mlp::{init, Activation, InputTransform, LayerSpec, Model, Portable, Rng, Shape, Topology};

/// Every path to check: the always-present portable path, the detected best one, and each other
/// path the CPU has (reporting the ones it lacks).
fn kernels() -> Vec<Int8Fast> {
    let mut out = vec![Int8Fast::new()];
    for p in Int8Path::ALL {
        match Int8Fast::with_path(p) {
            Some(k) => out.push(k),
            None => eprintln!("skipping int8 path {p:?}: not supported by this CPU"),
        }
    }
    assert!(out.iter().any(|k| k.path() == Int8Path::Portable));
    out
}

/// Random int8s, about one in eight replaced by an extreme (-128 or 127).
fn random_i8(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n)
        .map(|_| match rng.below(16) {
            0 => i8::MIN,
            1 => i8::MAX,
            _ => rng.next_u32() as u8 as i8,
        })
        .collect()
}

/// The offset core passes: minus a zero point in [-128, 127], extremes favoured.
fn random_offset(rng: &mut Rng) -> i32 {
    match rng.below(6) {
        0 => 128,
        1 => -127,
        2 => 0,
        _ => -(rng.below(256) as i32 - 128),
    }
}

fn check(k: &Int8Fast, s: Shape, x: &[i8], off: i32, w: &[i8]) {
    let mut want = vec![0x5a5a_5a5a; s.batch * s.outputs];
    PortableInt8.dense_i8(s, x, off, w, &mut want);
    let mut got = vec![-1; s.batch * s.outputs];
    k.dense_i8(s, x, off, w, &mut got);
    assert_eq!(got, want, "path {:?}, {} threads, {s:?}, offset {off}", k.path(), k.threads());
}

fn check_random(rng: &mut Rng, ks: &[Int8Fast], s: Shape) {
    let x = random_i8(rng, s.batch * s.inputs);
    let w = random_i8(rng, s.outputs * s.inputs);
    let off = random_offset(rng);
    for k in ks {
        check(k, s, &x, off, &w);
    }
}

fn pick(rng: &mut Rng, lo: usize, hi: usize, extra: usize) -> usize {
    // Mostly lo..=hi, sometimes the big size.
    if rng.below(8) == 0 {
        extra
    } else {
        lo + rng.below((hi - lo + 1) as u32) as usize
    }
}

#[test]
fn every_input_width_matches_portable() {
    let ks = kernels();
    let mut rng = Rng::new(1);
    for inputs in (1..=100).chain([127, 128, 129, 784]) {
        let s = Shape { batch: pick(&mut rng, 1, 17, 17), inputs, outputs: pick(&mut rng, 1, 40, 256) };
        check_random(&mut rng, &ks, s);
    }
}

#[test]
fn random_shapes_match_portable() {
    let ks = kernels();
    let mut rng = Rng::new(2);
    for _ in 0..400 {
        let s = Shape {
            batch: pick(&mut rng, 1, 17, 17),
            inputs: pick(&mut rng, 1, 100, 784),
            outputs: pick(&mut rng, 1, 40, 256),
        };
        check_random(&mut rng, &ks, s);
    }
}

#[test]
fn every_tile_edge_matches_portable() {
    // All batch and output remainders around the tile sizes, on a ragged and a full width.
    let ks = kernels();
    let mut rng = Rng::new(3);
    for batch in 1..=9 {
        for outputs in 1..=9 {
            for inputs in [63, 64, 65, 784] {
                check_random(&mut rng, &ks, Shape { batch, inputs, outputs });
            }
        }
    }
}

#[test]
fn extreme_values_match_portable() {
    let ks = kernels();
    let s = Shape { batch: 5, inputs: 784, outputs: 7 };
    for (xv, wv) in [(i8::MIN, i8::MIN), (i8::MIN, i8::MAX), (i8::MAX, i8::MIN), (i8::MAX, i8::MAX)] {
        for off in [-127, 0, 128] {
            let x = vec![xv; s.batch * s.inputs];
            let w = vec![wv; s.outputs * s.inputs];
            for k in &ks {
                check(k, s, &x, off, &w);
            }
        }
    }
}

#[test]
fn out_of_range_offsets_wrap_like_portable() {
    // Core never passes these, but the sum is specified modulo 2^32 for any offset.
    let ks = kernels();
    let mut rng = Rng::new(4);
    let s = Shape { batch: 3, inputs: 97, outputs: 6 };
    let x = random_i8(&mut rng, s.batch * s.inputs);
    let w = random_i8(&mut rng, s.outputs * s.inputs);
    for off in [i32::MIN, i32::MIN + 1, -40_000, 40_000, i32::MAX] {
        for k in &ks {
            check(k, s, &x, off, &w);
        }
    }
}

#[test]
fn threaded_products_match_portable() {
    // Big enough to cross the threading threshold; odd batch for ragged thread chunks.
    let mut rng = Rng::new(5);
    for batch in [37, 64] {
        let s = Shape { batch, inputs: 784, outputs: 256 };
        assert!(batch * 784 * 256 >= host::kernels_int8::PARALLEL_MACS);
        let x = random_i8(&mut rng, s.batch * s.inputs);
        let w = random_i8(&mut rng, s.outputs * s.inputs);
        let off = random_offset(&mut rng);
        for k in kernels() {
            for threads in [1, 2, 3] {
                check(&k.with_threads(threads), s, &x, off, &w);
            }
        }
    }
}

#[test]
fn empty_dimensions_match_portable() {
    for k in kernels() {
        for (batch, inputs, outputs) in [(3, 0, 4), (3, 5, 0), (0, 5, 4)] {
            let s = Shape { batch, inputs, outputs };
            let x = vec![1i8; batch * inputs];
            let w = vec![1i8; outputs * inputs];
            let mut want = vec![7; batch * outputs];
            let mut got = want.clone();
            PortableInt8.dense_i8(s, &x, 3, &w, &mut want);
            k.dense_i8(s, &x, 3, &w, &mut got);
            assert_eq!(got, want, "{:?} {s:?}", k.path());
        }
    }
}

#[test]
fn forward_on_quantized_model_matches_portable() {
    let t = Topology::new(
        100,
        &[
            LayerSpec::dense(37, Activation::Relu),
            LayerSpec::dense(70, Activation::Tanh),
            LayerSpec::dense(10, Activation::Softmax),
        ],
    )
    .unwrap();
    let mut params = vec![0.0; t.param_len()];
    init::initialize(&t, &mut params, init::Init::HeNormal, &mut Rng::new(7)).unwrap();
    let batch = 13;
    let mut rng = Rng::new(8);
    let samples: Vec<f32> = (0..16 * t.input()).map(|_| rng.uniform()).collect();

    let mut ranges = int8::Ranges::new();
    let model = Model::new(&t, &params, &[]).unwrap();
    let mut ws = vec![0.0; t.infer_workspace_len(16)];
    int8::calibrate(&Portable, &model, &samples, 16, &mut ws, &mut ranges).unwrap();
    let transform = InputTransform::Global { scale: 1.0 / 255.0, offset: 0.0 };
    let mut scratch = vec![0.0; int8::scratch_len(&t)];
    let mut file = vec![0u8; int8::encoded_len(&t, &transform)];
    int8::quantize(&t, &params, &[], &ranges, &transform, &mut scratch, &mut file).unwrap();

    let q = int8::Int8Model::parse(&file).unwrap();
    let raw: Vec<u8> = (0..batch * t.input()).map(|_| rng.next_u32() as u8).collect();
    let mut x = vec![0i8; batch * t.input()];
    q.quantize_u8(&raw, &mut x).unwrap();

    let run = |k: &dyn Int8Kernels| {
        let mut act = vec![0i8; q.act_workspace_len(batch)];
        let mut acc = vec![0i32; q.acc_workspace_len(batch)];
        int8::forward(k, &q, &x, batch, &mut act, &mut acc).unwrap().to_vec()
    };
    let want = run(&PortableInt8);
    assert_eq!(want.len(), batch * 10);
    for k in kernels() {
        assert_eq!(run(&k), want, "path {:?}", k.path());
    }
}
