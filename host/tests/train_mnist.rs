//! End to end on real MNIST: accuracy, reload, exact resume, determinism.
//! Run with `MNIST_DIR=../shared/data/mnist cargo test -p host -- --ignored mnist`.

use std::path::PathBuf;

use std::ops::ControlFlow;

use data::{idx, Dataset};
use host::model_io::SavedModel;
use host::train::{evaluate, train, Checkpoint, RunData, RunOptions, TrainSettings};

fn mnist() -> (Dataset, Dataset) {
    let dir = std::env::var_os("MNIST_DIR").expect("set MNIST_DIR to the MNIST folder to run this test");
    idx::load_mnist(&PathBuf::from(dir)).expect("MNIST loads")
}

#[test]
#[ignore = "needs MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"]
fn mnist_tutorial_recipe_learns_like_pytorch_and_reloads_identically() {
    // PyTorch 2.15 on the same recipe, seed and machine (../shared/reference/torch_mlp.py
    // --threads 2 --epochs 3) reached 94.39% after epoch 1 and 95.78% after epoch 2; this
    // implementation gives 94.39% and 96.03%. The bounds leave room for seeds and rounding.
    let (train_set, test_set) = mnist();
    let settings = TrainSettings { epochs: 2, ..TrainSettings::tutorial() };
    let data = RunData::new(train_set, Some(test_set), &settings).unwrap();
    let trained =
        train(&settings, &data, None, &RunOptions::default(), &mut |_| ControlFlow::Continue(())).unwrap();
    let first = trained.history[0].test_accuracy.unwrap();
    assert!(first >= 0.94, "epoch 1 reached only {:.2}%", first * 100.0);
    let acc = trained.history[1].test_accuracy.unwrap();
    assert!(acc >= 0.95, "epoch 2 reached only {:.2}%", acc * 100.0);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.mlp");
    trained.model.save(&path).unwrap();
    let reloaded = SavedModel::load(&path).unwrap();
    assert_eq!(reloaded, trained.model);
    let eval = evaluate(&reloaded, data.test.as_ref().unwrap()).unwrap();
    assert_eq!(eval.accuracy, acc, "the reloaded model evaluates differently");
    assert_eq!(eval.loss, trained.history[1].test_loss.unwrap());
    assert_eq!(eval.samples, 10_000);
}

/// `--recipe best` shortened to 2 of its 24 epochs (its one-cycle schedule compressed into
/// them): the full recipe reached 99.31% (README); two epochs of it, 98.05% on the
/// development machine.
#[test]
#[ignore = "needs MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"]
fn mnist_best_recipe_shortened_learns_from_distorted_images() {
    let (train_set, test_set) = mnist();
    let settings = TrainSettings { epochs: 2, ..TrainSettings::best() };
    assert!(settings.augment.is_some(), "the best recipe distorts its training images");
    let data = RunData::new(train_set, Some(test_set), &settings).unwrap();
    let trained =
        train(&settings, &data, None, &RunOptions::default(), &mut |_| ControlFlow::Continue(())).unwrap();
    let acc = trained.history[1].test_accuracy.unwrap();
    assert!(acc >= 0.975, "two epochs of the best recipe reached only {:.2}%", acc * 100.0);
}

#[test]
#[ignore = "needs MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"]
fn mnist_resume_from_a_checkpoint_continues_exactly_and_runs_are_deterministic() {
    let (train_set, test_set) = mnist();
    // A 6,000-sample subset keeps this quick; dropout and batch norm make the check strict
    // (their masks and running statistics must be restored too).
    let indices: Vec<usize> = (0..6000).collect();
    let small = train_set.subset(&indices).unwrap();
    let settings = TrainSettings {
        hidden: vec![64, 32],
        epochs: 3,
        dropout: 0.2,
        batch_norm: true,
        batch_size: 100,
        ..TrainSettings::default_recipe()
    };
    let data = RunData::new(small, Some(test_set), &settings).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");

    let straight =
        train(&settings, &data, None, &RunOptions::default(), &mut |_| ControlFlow::Continue(())).unwrap();
    let again =
        train(&settings, &data, None, &RunOptions::default(), &mut |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(straight.model, again.model, "same seed, different model");

    // Interrupt a 3-epoch run after its first epoch, then resume it from the checkpoint.
    let opts = RunOptions { progress: false, checkpoint: Some(ckpt.clone()), ..RunOptions::default() };
    let interrupted = train(&settings, &data, None, &opts, &mut |_| ControlFlow::Break(())).unwrap();
    assert_eq!(interrupted.history.len(), 1);
    let ck = Checkpoint::load(&ckpt).unwrap();
    assert_eq!(ck.epochs_done, 1);
    let resumed =
        train(&settings, &data, Some(ck), &RunOptions::default(), &mut |_| ControlFlow::Continue(()))
            .unwrap();
    assert_eq!(resumed.steps, straight.steps);
    assert!(
        resumed.model.params.iter().zip(&straight.model.params).all(|(a, b)| a.to_bits() == b.to_bits()),
        "resumed parameters differ from an uninterrupted run"
    );
    assert_eq!(resumed.model.running, straight.model.running);
    assert_eq!(resumed.history.len(), 3);
    assert_eq!(resumed.history[2].test_accuracy, straight.history[2].test_accuracy);

    let other_seed = TrainSettings { seed: 1, ..settings };
    let different =
        train(&other_seed, &data, None, &RunOptions::default(), &mut |_| ControlFlow::Continue(())).unwrap();
    assert_ne!(different.model.params, straight.model.params);
}
