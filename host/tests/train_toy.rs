//! The training loop, checkpoints and model files on small synthetic data (no MNIST needed).

use std::ops::ControlFlow;

use data::{Dataset, Features};
use host::model_io::SavedModel;
use host::train::{evaluate, train, Checkpoint, NormalizationArg, RunData, RunOptions, TrainSettings};

/// Three well-separated Gaussian blobs in 4-D (one shifted feature per class, features on
/// very different scales), from a fixed pseudo-random sequence.
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut rng = mlp::Rng::new(seed);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let class = (i % 3) as u32;
        for j in 0..4 {
            let center = if j as u32 == class { 6.0 } else { 0.0 };
            features.push(center + rng.normal() + 100.0 * (j as f32));
        }
        labels.push(class);
    }
    Dataset::new("blobs", Features::F32(features), 4, labels, 3, None).unwrap()
}

fn settings() -> TrainSettings {
    TrainSettings {
        hidden: vec![16],
        // Small data, few steps: Adam moves each weight by at most about lr per step, so use
        // a larger rate than MNIST's.
        lr: Some(0.02),
        epochs: 5,
        batch_size: 32,
        normalization: NormalizationArg::PerFeature,
        ..TrainSettings::default_recipe()
    }
}

#[test]
fn a_small_problem_is_learned_and_the_model_round_trips() {
    let s = settings();
    let data = RunData::new(blobs(600, 1), Some(blobs(300, 2)), &s).unwrap();
    let mut epochs_seen = 0;
    let trained = train(&s, &data, None, &RunOptions::default(), &mut |_| {
        epochs_seen += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(epochs_seen, 5);
    let acc = trained.history.last().unwrap().test_accuracy.unwrap();
    assert!(acc > 0.9, "accuracy {acc}: {:#?}", trained.history);
    // The per-feature standardization travels in the model file.
    assert!(trained.model.input.offset.iter().any(|&o| o != trained.model.input.offset[0]));
    let bytes = trained.model.to_bytes().unwrap();
    let back = SavedModel::from_bytes("mem", &bytes).unwrap();
    assert_eq!(back, trained.model);
    assert_eq!(evaluate(&back, data.test.as_ref().unwrap()).unwrap().accuracy, acc);
}

#[test]
fn corrupt_checkpoints_and_models_are_clear_errors() {
    let s = TrainSettings { epochs: 1, ..settings() };
    let data = RunData::new(blobs(90, 3), None, &s).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let opts = RunOptions { progress: false, checkpoint: Some(path.clone()), ..RunOptions::default() };
    train(&s, &data, None, &opts, &mut |_| ControlFlow::Continue(())).unwrap();
    let good = std::fs::read(&path).unwrap();
    assert!(Checkpoint::from_bytes("c", &good).is_ok());
    for cut in [0, 7, 20, good.len() / 2, good.len() - 1] {
        assert!(Checkpoint::from_bytes("c", &good[..cut]).is_err(), "truncated at {cut} accepted");
    }
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    let err = Checkpoint::from_bytes("c", &flipped).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
    let err = SavedModel::from_bytes("m.mlp", b"not a model").unwrap_err();
    assert!(format!("{err:#}").contains("m.mlp"), "{err:#}");
}

#[test]
fn a_diverging_run_stops_with_the_epoch_and_batch() {
    let s =
        TrainSettings { lr: Some(1e30), optimizer: host::train::OptimizerArg::Sgd, epochs: 1, ..settings() };
    let data = RunData::new(blobs(300, 4), None, &s).unwrap();
    let err = train(&s, &data, None, &RunOptions::default(), &mut |_| ControlFlow::Continue(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("diverged at epoch 1, batch"), "{err}");
}
