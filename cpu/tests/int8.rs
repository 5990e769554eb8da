//! `cpu::FastInt8` is bit-identical to core's `PortableInt8` on every path this
//! CPU supports (paths it lacks are skipped with a message) and every layer strategy (GEMV,
//! packed sparse, packed dense, automatic), for bare products (`dense_i8`) and whole layers
//! (`dense_requantize`: product, bias, requantization, clamp or table), on ragged shapes,
//! sparse and dense inputs, random offsets, random requantization constants, extreme values,
//! and through `mlp::int8::forward` on a quantized model.

use cpu::int8::{Int8Strategy, GEMV_MAX_BATCH, PARALLEL_MACS};
use cpu::isa::{Isa, Level};
use cpu::pool::Threads;
use cpu::FastInt8;
use mlp::int8::{self, Int8Kernels, Int8Layer, Int8LayerParts, PortableInt8};
use mlp::{init, Activation, InputTransform, LayerSpec, Model, Portable, Rng, Shape, Topology};
use mlp_tests::fixtures::random_i8;

/// Every path to check: the always-present portable path, the detected best one, and each other
/// path the CPU has (reporting the ones it lacks).
fn kernels() -> Vec<FastInt8> {
    let mut out = vec![FastInt8::new()];
    for level in Level::ALL {
        match Isa::detect(level).and_then(FastInt8::with_isa) {
            Some(k) => out.push(k),
            None => eprintln!("skipping int8 path {level:?}: not supported by this CPU"),
        }
    }
    assert!(out.iter().any(|k| k.level() == Level::Baseline));
    out
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

fn check(k: &FastInt8, s: Shape, x: &[i8], off: i32, w: &[i8]) {
    let mut want = vec![0x5a5a_5a5a; s.batch * s.outputs];
    PortableInt8.dense_i8(s, x, off, w, &mut want);
    let mut got = vec![-1; s.batch * s.outputs];
    k.dense_i8(s, x, off, w, &mut got);
    let threads = rayon::current_num_threads();
    assert_eq!(got, want, "path {:?}, {threads} threads, {s:?}, offset {off}", k.level());
}

fn check_random(rng: &mut Rng, ks: &[FastInt8], s: Shape) {
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
        assert!(batch * 784 * 256 >= PARALLEL_MACS);
        let x = random_i8(&mut rng, s.batch * s.inputs);
        let w = random_i8(&mut rng, s.outputs * s.inputs);
        let off = random_offset(&mut rng);
        for k in kernels() {
            for threads in [1, 2, 3] {
                Threads::new(threads).unwrap().install(|| check(&k, s, &x, off, &w));
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
            assert_eq!(got, want, "{:?} {s:?}", k.level());
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
        assert_eq!(run(&k), want, "path {:?}", k.level());
    }
}

/// Every path the CPU has, each with every strategy.
fn layer_kernels() -> Vec<FastInt8> {
    let strategies = [
        Int8Strategy::Auto,
        Int8Strategy::Gemv,
        Int8Strategy::Sparse,
        Int8Strategy::Dense,
        Int8Strategy::Amx,
    ];
    kernels().into_iter().flat_map(|k| strategies.map(|s| k.with_strategy(s))).collect()
}

/// A layer's arrays, owned, for `Int8Layer::from_parts`.
struct OwnedLayer {
    inputs: usize,
    outputs: usize,
    activation: Activation,
    out_zp: i32,
    pre_zp: i32,
    scales: Vec<u32>,
    bias: Vec<i32>,
    mult: Vec<i32>,
    shift: Vec<i32>,
    weights: Vec<i8>,
    table: Option<[i8; 256]>,
    rounding: mlp::int8::Rounding,
}

impl OwnedLayer {
    /// Random constants: every activation kind (clamp or table), zero points anywhere,
    /// multipliers over `{0} ∪ [2^30, 2^31)`, shifts over `[-31, 30]`, biases up to the i32
    /// extremes (so sums wrap and requantization saturates).
    fn random(rng: &mut Rng, inputs: usize, outputs: usize) -> Self {
        let activation = [
            Activation::Identity,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Softmax,
        ][rng.below(5) as usize];
        let has_table = int8::uses_table(activation);
        let zp = |rng: &mut Rng| rng.below(256) as i32 - 128;
        let out_zp = if rng.below(3) == 0 { -128 } else { zp(rng) };
        let pre_zp = if has_table { zp(rng) } else { out_zp };
        let mult = (0..outputs)
            .map(|_| match rng.below(8) {
                0 => 0,
                1 => 1 << 30,
                2 => i32::MAX,
                _ => (1 << 30) + (rng.next_u32() >> 2) as i32,
            })
            .collect();
        let shift = (0..outputs)
            .map(|_| match rng.below(8) {
                0 => -31,
                1 => 30,
                2 => rng.below(62) as i32 - 31,
                _ => rng.below(14) as i32 - 12,
            })
            .collect();
        let bias = (0..outputs)
            .map(|_| match rng.below(10) {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => rng.next_u32() as i32,
                _ => rng.below(20_001) as i32 - 10_000,
            })
            .collect();
        let weights = (0..inputs * outputs).map(|_| (rng.below(255) as i32 - 127) as i8).collect();
        let table = has_table.then(|| {
            let mut t = [0i8; 256];
            t.iter_mut().for_each(|v| *v = rng.next_u32() as i8);
            t
        });
        OwnedLayer {
            inputs,
            outputs,
            activation,
            out_zp,
            pre_zp,
            scales: vec![1.0f32.to_bits(); outputs],
            bias,
            mult,
            shift,
            weights,
            table,
            // A quarter of the layers round once (models imported from LiteRT).
            rounding: if rng.below(4) == 0 {
                mlp::int8::Rounding::Single
            } else {
                mlp::int8::Rounding::Double
            },
        }
    }

    fn layer(&self) -> Int8Layer<'_> {
        let bits = 0.5f32.to_bits();
        Int8Layer::from_parts(Int8LayerParts {
            inputs: self.inputs,
            outputs: self.outputs,
            activation: self.activation,
            out_scale_bits: bits,
            out_zero_point: self.out_zp,
            pre_scale_bits: if self.table.is_some() { 0.25f32.to_bits() } else { bits },
            pre_zero_point: self.pre_zp,
            weight_scale_bits: &self.scales,
            bias: &self.bias,
            multipliers: &self.mult,
            shifts: &self.shift,
            weights: &self.weights,
            table: self.table.as_ref(),
            rounding: self.rounding,
        })
        .expect("valid random layer")
    }
}

/// Inputs with about `blank_per_mille / 1000` of them at -128 (u = 0: skippable), the rest
/// random; sometimes whole runs of blanks, like the borders of an image.
fn inputs_with_blanks(rng: &mut Rng, n: usize, blank_per_mille: u32) -> Vec<i8> {
    let mut x: Vec<i8> = (0..n)
        .map(|_| if rng.below(1000) < blank_per_mille { i8::MIN } else { rng.next_u32() as i8 })
        .collect();
    if n > 0 && rng.below(2) == 0 {
        let start = rng.below(n as u32) as usize;
        let len = rng.below(200) as usize;
        x[start..(start + len).min(n)].fill(i8::MIN);
    }
    x
}

fn check_layer(k: &FastInt8, l: &Int8Layer<'_>, batch: usize, x: &[i8], off: i32) {
    let s = Shape { batch, inputs: l.inputs(), outputs: l.outputs() };
    let mut acc = vec![0x5a5a_5a5a; batch * s.outputs];
    let mut want = vec![0x33; batch * s.outputs];
    PortableInt8.dense_requantize(s, x, off, l, &mut acc, &mut want);
    let mut acc = vec![-1; batch * s.outputs];
    let mut got = vec![0x44; batch * s.outputs];
    k.dense_requantize(s, x, off, l, &mut acc, &mut got);
    assert_eq!(
        got,
        want,
        "path {:?}, strategy {:?}, {} threads, {s:?}, offset {off}, {:?}",
        k.level(),
        k.strategy(),
        rayon::current_num_threads(),
        l.activation()
    );
}

#[test]
fn layers_match_portable_on_random_shapes_inputs_and_constants() {
    let ks = layer_kernels();
    let mut rng = Rng::new(11);
    for case in 0..300 {
        let inputs = match case % 4 {
            0 => 1 + rng.below(8) as usize,
            1 => 1 + rng.below(200) as usize,
            2 => [63, 64, 65, 127, 128, 129, 255, 256, 257][rng.below(9) as usize],
            _ => 700 + rng.below(100) as usize,
        };
        let outputs = match rng.below(4) {
            0 => 1 + rng.below(16) as usize,
            1 => [15, 16, 17, 31, 32, 33, 63, 64, 65, 79, 80, 81][rng.below(12) as usize],
            _ => 1 + rng.below(150) as usize,
        };
        let batch = 1 + rng.below(40) as usize;
        let owned = OwnedLayer::random(&mut rng, inputs, outputs);
        let l = owned.layer();
        let blanks = [0, 500, 800, 950, 1000][rng.below(5) as usize];
        let x = inputs_with_blanks(&mut rng, batch * inputs, blanks);
        let off = random_offset(&mut rng);
        for k in &ks {
            check_layer(k, &l, batch, &x, off);
        }
    }
}

#[test]
fn wide_layers_match_portable() {
    // More than 1,024 inputs (GEMV scratch on the heap) and more than 64 input chunks of 64.
    let ks = layer_kernels();
    let mut rng = Rng::new(15);
    for (inputs, outputs, batch) in [(1025, 7, 3), (2000, 33, 13), (4161, 17, 40), (1100, 20, 1)] {
        let owned = OwnedLayer::random(&mut rng, inputs, outputs);
        let x = inputs_with_blanks(&mut rng, batch * inputs, 900);
        let off = random_offset(&mut rng);
        for k in &ks {
            check_layer(k, &owned.layer(), batch, &x, off);
        }
    }
}

#[test]
fn requantization_epilogue_matches_portable_on_extreme_accumulators() {
    // Zero weights, so each accumulator is its bias: the epilogue alone, over the whole i32
    // range (wrapping left shifts, saturating high multiplies, every rounding boundary).
    let ks = layer_kernels();
    let mut rng = Rng::new(12);
    for _ in 0..40 {
        let outputs = 1 + rng.below(70) as usize;
        let mut owned = OwnedLayer::random(&mut rng, 5, outputs);
        owned.weights.fill(0);
        for (i, b) in owned.bias.iter_mut().enumerate() {
            let shift = owned.shift[i];
            *b = match rng.below(8) {
                0 => [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX][rng.below(7) as usize],
                // Near multiples of 2^(-shift - 1), around the rounding ties.
                1 if shift < 0 => {
                    let tie = ((rng.below(2001) as i64 - 1000) << (-shift - 1).max(0))
                        .clamp(i32::MIN as i64, i32::MAX as i64);
                    (tie as i32).wrapping_add(rng.below(3) as i32 - 1)
                }
                _ => rng.next_u32() as i32,
            };
        }
        let l = owned.layer();
        let batch = 1 + rng.below(40) as usize;
        let x = inputs_with_blanks(&mut rng, batch * 5, 500);
        for k in &ks {
            check_layer(k, &l, batch, &x, random_offset(&mut rng));
        }
    }
}

#[test]
fn mnist_shaped_layers_match_portable_at_every_batch_size() {
    // 784 inputs (196 quads, a ragged last 64-byte chunk), 256 and 10 outputs; sparse like
    // MNIST pixels and dense; batches 1..=40 cross the GEMV / packed switch and the blocks.
    let ks = layer_kernels();
    let mut rng = Rng::new(13);
    let hidden = OwnedLayer::random(&mut rng, 784, 256);
    let out = OwnedLayer::random(&mut rng, 256, 10);
    const { assert!(GEMV_MAX_BATCH < 40) };
    for batch in 1..=40 {
        let blanks = if batch % 3 == 0 { 0 } else { 800 };
        let x = inputs_with_blanks(&mut rng, batch * 784, blanks);
        let h = inputs_with_blanks(&mut rng, batch * 256, 500);
        for k in &ks {
            check_layer(k, &hidden.layer(), batch, &x, 128);
            check_layer(k, &out.layer(), batch, &h, if batch % 2 == 0 { 128 } else { 3 });
        }
    }
}

#[test]
fn big_threaded_layers_match_portable() {
    // Above PARALLEL_MACS: split over threads (whole blocks each); ragged batch.
    let mut rng = Rng::new(14);
    for (batch, inputs, outputs, blanks) in [(301, 784, 256, 800), (97, 300, 200, 0), (1000, 257, 33, 950)] {
        assert!(batch * inputs * outputs >= PARALLEL_MACS || batch == 1000);
        let owned = OwnedLayer::random(&mut rng, inputs, outputs);
        let x = inputs_with_blanks(&mut rng, batch * inputs, blanks);
        let off = if blanks > 0 { 128 } else { random_offset(&mut rng) };
        for k in layer_kernels() {
            for threads in [1, 2, 3] {
                Threads::new(threads).unwrap().install(|| check_layer(&k, &owned.layer(), batch, &x, off));
            }
        }
    }
}

#[test]
fn forward_matches_portable_for_every_strategy_and_batch() {
    // A quantized MNIST-like model (inputs scaled to [0, 1], so input offset 128) with a
    // ReLU, a tanh (table) and a softmax layer, on sparse image-like inputs.
    let t = Topology::new(
        784,
        &[
            LayerSpec::dense(100, Activation::Relu),
            LayerSpec::dense(37, Activation::Tanh),
            LayerSpec::dense(10, Activation::Softmax),
        ],
    )
    .unwrap();
    let mut params = vec![0.0; t.param_len()];
    init::initialize(&t, &mut params, init::Init::HeNormal, &mut Rng::new(21)).unwrap();
    let mut rng = Rng::new(22);
    let raw: Vec<u8> =
        (0..200 * 784).map(|_| if rng.below(5) == 0 { rng.next_u32() as u8 } else { 0 }).collect();
    let samples: Vec<f32> = raw[..64 * 784].iter().map(|&p| p as f32 / 255.0).collect();
    let mut ranges = int8::Ranges::new();
    let model = Model::new(&t, &params, &[]).unwrap();
    let mut ws = vec![0.0; t.infer_workspace_len(64)];
    int8::calibrate(&Portable, &model, &samples, 64, &mut ws, &mut ranges).unwrap();
    let transform = InputTransform::Global { scale: 1.0 / 255.0, offset: 0.0 };
    let mut scratch = vec![0.0; int8::scratch_len(&t)];
    let mut file = vec![0u8; int8::encoded_len(&t, &transform)];
    int8::quantize(&t, &params, &[], &ranges, &transform, &mut scratch, &mut file).unwrap();
    let q = int8::Int8Model::parse(&file).unwrap();
    assert_eq!(q.input_zero_point(), -128);
    let mut x = vec![0i8; raw.len()];
    q.quantize_u8(&raw, &mut x).unwrap();
    for batch in [1, 2, 7, 15, 16, 17, 33, 200] {
        let xb = &x[..batch * 784];
        let run = |k: &dyn Int8Kernels| {
            let mut act = vec![0i8; q.act_workspace_len(batch)];
            let mut acc = vec![0i32; q.acc_workspace_len(batch)];
            int8::forward(k, &q, xb, batch, &mut act, &mut acc).unwrap().to_vec()
        };
        let want = run(&PortableInt8);
        for k in layer_kernels() {
            assert_eq!(run(&k), want, "path {:?}, strategy {:?}, batch {batch}", k.level(), k.strategy());
        }
    }
}
