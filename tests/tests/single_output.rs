//! Single-output (binary) classifiers: integer labels are the binary target 0 or 1, to the
//! loss and to the accuracy alike. (Regression test: the loss once one-hot-encoded them while
//! `count_correct` read them as binary, so a perfectly trained model reported 0% accuracy.)

use mlp::init::{initialize, Init};
use mlp::loss::count_correct;
use mlp::{Activation, LayerSpec, Loss, Optimizer, Portable, Rng, Targets, Topology, TrainConfig};
use mlp_tests::util::Buffers;

#[test]
fn single_output_labels_mean_the_same_to_the_loss_and_the_accuracy() {
    let t = Topology::new(2, &[LayerSpec::dense(1, Activation::Sigmoid)]).unwrap();
    let mut bufs = Buffers::new(&t, Optimizer::adam(), 4);
    initialize(&t, &mut bufs.params, Init::XavierNormal, &mut Rng::new(1)).unwrap();
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::BinaryCrossEntropy, Optimizer::adam(), 4));
    let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let labels = [0u32, 1, 1, 1]; // OR
    let mut rng = Rng::new(2);
    let mut stats = trainer.step(&Portable, &x, Targets::Labels(&labels), 0.1, &mut rng).unwrap();
    for _ in 0..500 {
        stats = trainer.step(&Portable, &x, Targets::Labels(&labels), 0.1, &mut rng).unwrap();
    }
    // The model fits its targets (loss ~0, whatever the label means to the loss)...
    assert!(stats.loss < 0.01, "loss {}", stats.loss);
    // ...so every sample must count as correct, by the statistics and by count_correct.
    assert_eq!(stats.correct, 4, "StepStats::correct of a model with loss {}", stats.loss);
    let mut ws = vec![0.0; t.infer_workspace_len(4)];
    let out = trainer.model().forward(&Portable, &x, 4, &mut ws).unwrap();
    assert_eq!(count_correct(out, 1, Targets::Labels(&labels), 0.5), 4, "outputs {out:?}");
}

#[test]
fn single_output_labels_must_be_binary() {
    let z = [0.3f32, -0.2];
    let mut dz = [0.0; 2];
    let ok = Loss::BinaryCrossEntropy.loss_and_grad(
        Activation::Identity,
        1,
        &z,
        &z,
        Targets::Labels(&[1, 0]),
        &mut dz,
    );
    let dense = Loss::BinaryCrossEntropy.loss_and_grad(
        Activation::Identity,
        1,
        &z,
        &z,
        Targets::Dense(&[1.0, 0.0]),
        &mut [0.0; 2],
    );
    assert_eq!(ok, dense, "labels 1, 0 must equal dense targets 1.0, 0.0");
    let err = Loss::BinaryCrossEntropy.loss_and_grad(
        Activation::Identity,
        1,
        &z,
        &z,
        Targets::Labels(&[2, 0]),
        &mut dz,
    );
    assert_eq!(err, Err(mlp::Error::LabelOutOfRange { sample: 0, label: 2, classes: 2 }));
}
