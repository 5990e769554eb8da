//! `--features train`: learning on the microcontroller. The int8 model's hidden layers stay
//! frozen as a feature extractor (run once per embedded image with the SMLAD kernel); a fresh
//! f32 softmax head is trained on those features with core's [`Trainer`] (Adam, minibatches,
//! cross-entropy, backprop) from fixed `static` buffers, then evaluated on the test images.

use cortex_m_semihosting::hprintln;
use mlp::init::{initialize, Init};
use mlp::int8::{self, layout as int8_layout};
use mlp::{
    layout, Activation, LayerSpec, Loss, Optimizer, Portable, Rng, Targets, Topology, TrainBuffers,
    TrainConfig, Trainer,
};

use crate::clock::Clock;
use crate::int8_model::Layers;
use crate::kernel::Fast;
use crate::{buffer, images, model, Fail};

const BODY: usize = model::LAYERS.len() - 1;
/// Width of the frozen features: the last hidden layer's outputs.
const FEATURES: usize = model::LAYERS[BODY - 1].outputs;
const CLASSES: usize = model::OUTPUT;
const N_TRAIN: usize = images::TRAIN_LABELS.len();
const N_TEST: usize = images::TEST_LABELS.len();
const HEAD: [LayerSpec; 1] = [LayerSpec::dense(CLASSES, Activation::Softmax)];
const P: usize = layout::param_len(FEATURES, &HEAD);
const OPTIMIZER: Optimizer = Optimizer::adam();
const BATCH: usize = 20;
const EPOCHS: usize = 8;
const LR: f32 = 0.01;
const ACT_LEN: usize = int8_layout::act_len(&model::LAYERS, 1);
const ACC_LEN: usize = int8_layout::acc_len(&model::LAYERS, 1);

const _: () = assert!(model::LAYERS.len() >= 2, "on-device training needs a model with a hidden layer");
const _: () = assert!(
    N_TRAIN >= BATCH,
    "export training images: host export ... --images 100 --train-images 300 (see README.md, Cortex-M)"
);

/// Test-set accuracy of the head, in images correct.
fn evaluate(
    trainer: &Trainer<'_>,
    features: &[i8],
    scale: f32,
    zero: i32,
    ws: &mut [f32],
) -> Result<usize, Fail> {
    let mut x = [0.0f32; FEATURES];
    let mut correct = 0;
    for (row, &label) in features.chunks_exact(FEATURES).zip(&images::TEST_LABELS) {
        dequantize(row, scale, zero, &mut x);
        correct += (trainer.model().predict(&Portable, &x, ws)? == label as usize) as usize;
    }
    Ok(correct)
}

fn dequantize(q: &[i8], scale: f32, zero: i32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(q) {
        *o = scale * (v as i32 - zero) as f32;
    }
}

pub fn run(clock: &Clock) -> Result<(), Fail> {
    let mut layers = Layers::new();
    crate::int8_model::layers(&mut layers)?;
    let body = &layers[..BODY];
    let table = model::INPUT_TABLE.as_ref().ok_or(Fail::Check("the model has no u8 input table"))?;
    let xq = buffer!(i8; model::INPUT).ok_or(Fail::Check("buffer taken twice"))?;
    let act = buffer!(i8; ACT_LEN).ok_or(Fail::Check("buffer taken twice"))?;
    let acc = buffer!(i32; ACC_LEN).ok_or(Fail::Check("buffer taken twice"))?;
    let train_features = buffer!(i8; N_TRAIN * FEATURES).ok_or(Fail::Check("buffer taken twice"))?;
    let test_features = buffer!(i8; N_TEST * FEATURES).ok_or(Fail::Check("buffer taken twice"))?;
    hprintln!(
        "mlp on Cortex-M4F: on-device training of a {}-{} softmax head on the int8 model's frozen features",
        FEATURES,
        CLASSES
    );
    hprintln!(
        "{} training and {} test images in flash; Adam lr {}, batch {}, {} epochs; costs in {}",
        N_TRAIN,
        N_TEST,
        LR,
        BATCH,
        EPOCHS,
        clock.describe()
    );

    // The frozen body: int8 features of every embedded image, once.
    let t = clock.now();
    let z = model::INPUT_ZERO_POINT;
    let sets = [
        (&images::TRAIN_IMAGES[..], &mut train_features[..]),
        (&images::TEST_IMAGES[..], &mut test_features[..]),
    ];
    for (pixels, features) in sets {
        for (image, out) in pixels.iter().zip(features.chunks_exact_mut(FEATURES)) {
            for (q, &p) in xq.iter_mut().zip(image.iter()) {
                *q = table[p as usize];
            }
            out.copy_from_slice(int8::forward_layers(
                &Fast,
                body,
                z,
                &xq[..],
                1,
                &mut act[..],
                &mut acc[..],
            )?);
        }
    }
    hprintln!("features of {} images: {} {}", N_TRAIN + N_TEST, clock.since(t), clock.unit());
    let last = &body[BODY - 1];
    let (scale, zero) = (f32::from_bits(last.out_scale_bits()), last.out_zero_point());

    // The head, its gradients, Adam's state and the workspace: fixed `static` buffers.
    let topology = Topology::new(FEATURES, &HEAD)?;
    let params = buffer!(f32; P).ok_or(Fail::Check("buffer taken twice"))?;
    let grads = buffer!(f32; P).ok_or(Fail::Check("buffer taken twice"))?;
    let state = buffer!(f32; OPTIMIZER.state_len(P)).ok_or(Fail::Check("buffer taken twice"))?;
    let ws =
        buffer!(f32; layout::train_workspace_len(&HEAD, BATCH)).ok_or(Fail::Check("buffer taken twice"))?;
    let eval_ws =
        buffer!(f32; layout::infer_workspace_len(&HEAD, 1)).ok_or(Fail::Check("buffer taken twice"))?;
    let x = buffer!(f32; BATCH * FEATURES).ok_or(Fail::Check("buffer taken twice"))?;
    let mut rng = Rng::new(2024);
    initialize(&topology, &mut params[..], Init::XavierNormal, &mut rng)?;
    let config = TrainConfig::new(Loss::CrossEntropy, OPTIMIZER, BATCH);
    let buffers = TrainBuffers {
        params: &mut params[..],
        grads: &mut grads[..],
        running: &mut [],
        optimizer_state: &mut state[..],
        workspace: &mut ws[..],
    };
    let mut trainer = Trainer::new(&topology, config, buffers)?;
    let before = evaluate(&trainer, test_features, scale, zero, eval_ws)?;
    hprintln!("before training: test accuracy {} of {}", before, N_TEST);

    let mut order = [0u16; N_TRAIN];
    order.iter_mut().enumerate().for_each(|(i, o)| *o = i as u16);
    let mut labels = [0u32; BATCH];
    let (mut first_loss, mut last_loss, mut last_test) = (f32::NAN, f32::NAN, before);
    for epoch in 1..=EPOCHS {
        let t = clock.now();
        // Fisher-Yates shuffle with core's deterministic RNG.
        for i in (1..N_TRAIN).rev() {
            order.swap(i, rng.below(i as u32 + 1) as usize);
        }
        let (mut loss_sum, mut correct, mut seen) = (0.0f32, 0usize, 0usize);
        for batch in order.chunks_exact(BATCH) {
            for (k, &i) in batch.iter().enumerate() {
                let i = i as usize;
                dequantize(
                    &train_features[i * FEATURES..(i + 1) * FEATURES],
                    scale,
                    zero,
                    &mut x[k * FEATURES..(k + 1) * FEATURES],
                );
                labels[k] = images::TRAIN_LABELS[i] as u32;
            }
            let stats = trainer.step(&Portable, &x[..], Targets::Labels(&labels), LR, &mut rng)?;
            loss_sum += stats.loss * BATCH as f32;
            correct += stats.correct;
            seen += BATCH;
        }
        let loss = loss_sum / seen as f32;
        let cost = clock.since(t);
        let test = evaluate(&trainer, test_features, scale, zero, eval_ws)?;
        hprintln!(
            "epoch {}/{}: loss {:.4}, train accuracy {} of {}, test accuracy {} of {} ({} {})",
            epoch,
            EPOCHS,
            loss,
            correct,
            seen,
            test,
            N_TEST,
            cost,
            clock.unit()
        );
        if epoch == 1 {
            first_loss = loss;
        }
        last_loss = loss;
        last_test = test;
    }
    hprintln!(
        "training lowered the loss from {:.4} to {:.4}; test accuracy {} -> {} of {}",
        first_loss,
        last_loss,
        before,
        last_test,
        N_TEST
    );
    // A NaN loss compares as not less: it fails too.
    let lowered = last_loss.partial_cmp(&first_loss) == Some(core::cmp::Ordering::Less);
    if !lowered || last_test <= before {
        return Err(Fail::Check("on-device training did not lower the loss and raise the accuracy"));
    }
    Ok(())
}
