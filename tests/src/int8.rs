//! Helpers shared by the int8 tests: random models, calibration, quantization, integer
//! inference, and an error bound for the f64 reference forward pass.

use mlp::int8::{self, Int8Model, PortableInt8, Ranges};
use mlp::{init, Activation, InputTransform, LayerSpec, Model, Portable, Rng, Topology};

use crate::fixtures::HIDDEN_ACTIVATIONS;

/// A model with its f32 parameters and batch-norm running statistics.
#[derive(Debug)]
pub struct Built {
    pub t: Topology,
    pub params: Vec<f32>,
    pub running: Vec<f32>,
}

/// A random topology (1 to 3 hidden layers of width 1 to 24, any activation), He/Xavier
/// weights and random biases; with `bn`, batch norm on hidden layers and random running
/// statistics and affine parameters.
pub fn random_model(rng: &mut Rng, input: usize, output: Activation, bn: bool) -> Built {
    let hidden = 1 + rng.below(3) as usize;
    let mut specs = Vec::new();
    for _ in 0..hidden {
        let mut l = LayerSpec::dense(1 + rng.below(24) as usize, HIDDEN_ACTIVATIONS[rng.below(7) as usize]);
        if bn {
            l = l.with_batch_norm();
        }
        specs.push(l);
    }
    specs.push(LayerSpec::dense(2 + rng.below(9) as usize, output));
    let t = Topology::new(input, &specs).unwrap();
    let mut params = vec![0.0; t.param_len()];
    init::initialize(&t, &mut params, init::Init::XavierNormal, rng).unwrap();
    for i in 0..specs.len() {
        let r = t.param_ranges(i).unwrap();
        params[r.bias].iter_mut().for_each(|b| *b = 0.2 * rng.normal());
        if let Some((g, b)) = r.batch_norm {
            params[g].iter_mut().for_each(|v| *v = rng.uniform_in(0.5, 1.5));
            params[b].iter_mut().for_each(|v| *v = 0.2 * rng.normal());
        }
    }
    let mut running = vec![0.0; t.running_len()];
    for i in 0..specs.len() {
        if let Some((m, v)) = t.running_ranges(i) {
            running[m].iter_mut().for_each(|x| *x = 0.3 * rng.normal());
            running[v].iter_mut().for_each(|x| *x = rng.uniform_in(0.5, 2.0));
        }
    }
    Built { t, params, running }
}

pub fn random_inputs(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_in(-1.0, 1.0)).collect()
}

/// Calibrates on `inputs` (`batch` samples) and quantizes.
pub fn quantize(b: &Built, inputs: &[f32], batch: usize, transform: &InputTransform<'_>) -> Vec<u8> {
    let ranges = calibrate(b, inputs, batch);
    let mut scratch = vec![0.0; int8::scratch_len(&b.t)];
    let mut file = vec![0u8; int8::encoded_len(&b.t, transform)];
    let len =
        int8::quantize(&b.t, &b.params, &b.running, &ranges, transform, &mut scratch, &mut file).unwrap();
    assert_eq!(len, file.len());
    file
}

pub fn calibrate(b: &Built, inputs: &[f32], batch: usize) -> Ranges {
    let model = Model::new(&b.t, &b.params, &b.running).unwrap();
    let mut ranges = Ranges::new();
    let mut ws = vec![0.0; b.t.infer_workspace_len(batch)];
    int8::calibrate(&Portable, &model, inputs, batch, &mut ws, &mut ranges).unwrap();
    ranges
}

/// Integer inference on quantized inputs.
pub fn run_int8(m: &Int8Model<'_>, xq: &[i8], batch: usize) -> Vec<i8> {
    let mut act = vec![0i8; m.act_workspace_len(batch)];
    let mut acc = vec![0i32; m.acc_workspace_len(batch)];
    int8::forward(&PortableInt8, m, xq, batch, &mut act, &mut acc).unwrap().to_vec()
}

/// f32 eval-mode outputs of the original model.
pub fn run_f32(b: &Built, x: &[f32], batch: usize) -> Vec<f32> {
    let model = Model::new(&b.t, &b.params, &b.running).unwrap();
    let mut ws = vec![0.0; b.t.infer_workspace_len(batch)];
    model.forward(&Portable, x, batch, &mut ws).unwrap().to_vec()
}

/// Recomputes the CRC-32 trailer after a deliberate edit.
pub fn reseal(bytes: &mut [u8]) {
    let n = bytes.len();
    let crc = mlp::format::crc32(&bytes[..n - 4]);
    bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// A Lipschitz constant of the activation (for the error bound).
pub fn lipschitz(a: Activation) -> f64 {
    match a {
        Activation::Sigmoid => 0.25,
        Activation::LeakyRelu(al) | Activation::Elu(al) => (al as f64).max(1.0),
        // max |GELU'(z)| = 1.1289 at z = ±√2.
        Activation::Gelu => 1.13,
        _ => 1.0,
    }
}
