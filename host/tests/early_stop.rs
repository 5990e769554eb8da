//! Early stopping (`--early-stop`), the best epoch's model, its survival across a resume, and
//! the max-norm constraint (`--max-norm`), on small synthetic data (no MNIST needed).

use std::ops::ControlFlow;

use data::{Dataset, Features};
use host::model_io::SavedModel;
use host::schedule::Schedule;
use host::train::{
    evaluate, train, Checkpoint, NormalizationArg, RunData, RunOptions, TrainSettings, Trained,
};

mod common;

use common::{host, stderr, stdout};

/// Three heavily overlapping Gaussian classes in 4-D: a wide network overfits them within a
/// few epochs, so the validation loss falls, then rises.
fn noisy(n: usize, seed: u64) -> Dataset {
    let mut rng = mlp::Rng::new(seed);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let class = (i % 3) as u32;
        for j in 0..4 {
            let center = if j as u32 == class { 0.7 } else { 0.0 };
            features.push(center + rng.normal());
        }
        labels.push(class);
    }
    Dataset::new("noisy", Features::F32(features), 4, labels, 3, None).unwrap()
}

fn settings() -> TrainSettings {
    TrainSettings {
        hidden: vec![128],
        lr: Some(0.01),
        schedule: Schedule::Constant,
        epochs: 200,
        batch_size: 16,
        dropout: 0.0,
        val_split: 0.3,
        early_stop: Some(3),
        normalization: NormalizationArg::PerFeature,
        ..TrainSettings::default_recipe()
    }
}

fn run(s: &TrainSettings, data: &RunData, resume: Option<Checkpoint>, opts: &RunOptions) -> Trained {
    train(s, data, resume, opts, &mut |_| ControlFlow::Continue(())).unwrap()
}

#[test]
fn early_stopping_stops_and_keeps_the_best_epochs_model() {
    let s = settings();
    let data = RunData::new(noisy(240, 1), None, &s).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let opts = RunOptions { checkpoint: Some(ckpt.clone()), ..RunOptions::default() };
    let trained = run(&s, &data, None, &opts);
    let h = &trained.history;
    let best = trained.best_epoch.expect("a best epoch");
    assert!(trained.stopped_early, "ran all {} epochs: {h:#?}", h.len());
    // It stopped exactly `patience` epochs after the best, which has the lowest loss.
    assert_eq!(h.len(), best + 3, "best {best}");
    let losses: Vec<f64> = h.iter().map(|m| m.val_loss.unwrap()).collect();
    assert!(losses.iter().all(|&l| l >= losses[best - 1]), "{losses:?}");
    assert!(losses[best..].iter().all(|&l| l > losses[best - 1]), "{losses:?}");
    // The returned model is the best epoch's, evaluated again: the same validation loss.
    let val = data.val.as_ref().unwrap();
    assert_eq!(evaluate(&trained.model, val).unwrap().loss, losses[best - 1]);
    // The checkpoint holds the last epoch's state to resume from, and the best model.
    let ck = Checkpoint::load(&ckpt).unwrap();
    assert_eq!(ck.epochs_done, h.len());
    assert_eq!(evaluate(&ck.model, val).unwrap().loss, losses[h.len() - 1]);
    let b = ck.best.as_ref().unwrap();
    assert_eq!((b.epoch, &b.params), (best, &trained.model.params));
    assert!(ck.stopped_early);
    // A finished (stopped) run is not resumed.
    let more = TrainSettings { epochs: 300, ..s.clone() };
    let err = train(&more, &data, Some(ck), &RunOptions::default(), &mut |_| ControlFlow::Continue(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("stopped early after epoch") && err.contains("nothing to resume"), "{err}");
}

/// Interrupted between the best epoch and the stop, then resumed from the checkpoint: the best
/// model and the patience count survive, so the run ends where it would have, with the same
/// model.
#[test]
fn the_best_model_and_the_patience_count_survive_a_resume() {
    let s = settings();
    let data = RunData::new(noisy(240, 1), None, &s).unwrap();
    let whole = run(&s, &data, None, &RunOptions::default());
    let best = whole.best_epoch.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let opts = RunOptions { checkpoint: Some(ckpt.clone()), ..RunOptions::default() };
    // Stop one epoch after the best (as Ctrl-C leaves the checkpoint: finished epochs only).
    train(&s, &data, None, &opts, &mut |m| {
        if m.epoch == best + 1 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    let ck = Checkpoint::load(&ckpt).unwrap();
    assert_eq!((ck.epochs_done, ck.best.as_ref().map(|b| b.epoch)), (best + 1, Some(best)));
    let resumed = run(&s, &data, Some(ck), &RunOptions::default());
    assert_eq!(resumed.history.len(), whole.history.len(), "the patience count was reset");
    assert_eq!((resumed.best_epoch, resumed.stopped_early), (Some(best), true));
    assert_eq!(resumed.model, whole.model);
}

#[test]
fn a_checkpoint_with_a_best_epoch_round_trips() {
    let s = TrainSettings { epochs: 2, ..settings() };
    let data = RunData::new(noisy(90, 2), None, &s).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("c.ckpt");
    let opts = RunOptions { checkpoint: Some(ckpt.clone()), ..RunOptions::default() };
    run(&s, &data, None, &opts);
    let bytes = std::fs::read(&ckpt).unwrap();
    let ck = Checkpoint::from_bytes("c", &bytes).unwrap();
    assert!(ck.best.is_some());
    assert_eq!(Checkpoint::from_bytes("c", &ck.to_bytes().unwrap()).unwrap(), ck);
    // A truncated best section is an error, not a missing best.
    let mut cut = bytes[..bytes.len() - 12].to_vec();
    cut.extend_from_slice(&mlp::format::crc32(&cut).to_le_bytes());
    assert!(Checkpoint::from_bytes("c", &cut).is_err());
}

#[test]
fn early_stopping_needs_a_validation_split() {
    let s = TrainSettings { val_split: 0.0, ..settings() };
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("--val-split 0.1"), "{err}");
    let data = RunData::new(noisy(60, 3), None, &s).unwrap();
    let err = train(
        &TrainSettings { val_split: 0.3, ..s.clone() },
        &data,
        None,
        &RunOptions::default(),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--val-split 0.1"), "{err}");
}

/// The L2 norm of every hidden unit's incoming weights (each row of each hidden layer's W).
fn hidden_row_norms(m: &SavedModel) -> Vec<f64> {
    let t = &m.topology;
    let mut norms = Vec::new();
    for i in 0..t.layers().len() - 1 {
        let w = &m.params[t.param_ranges(i).unwrap().weights];
        norms
            .extend(w.chunks(t.fan_in(i)).map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt()));
    }
    norms
}

#[test]
fn max_norm_bounds_every_hidden_units_incoming_weights() {
    let base = TrainSettings {
        hidden: vec![32, 16],
        lr: Some(0.05),
        epochs: 5,
        val_split: 0.0,
        early_stop: None,
        ..settings()
    };
    let data = RunData::new(noisy(240, 4), None, &base).unwrap();
    let c = 0.5;
    let free = run(&base, &data, None, &RunOptions::default());
    let free_max = hidden_row_norms(&free.model).into_iter().fold(0.0, f64::max);
    assert!(free_max > 2.0 * c as f64, "the bound would not bind: max norm {free_max}");
    let bounded = run(&TrainSettings { max_norm: Some(c), ..base }, &data, None, &RunOptions::default());
    let norms = hidden_row_norms(&bounded.model);
    assert_eq!(norms.len(), 48);
    for (k, n) in norms.iter().enumerate() {
        assert!(*n <= c as f64 * (1.0 + 1e-6), "row {k}: norm {n} > {c}");
    }
    // Rows are rescaled, not zeroed: most sit at the bound.
    assert!(norms.iter().filter(|&&n| n > 0.99 * c as f64).count() > 24, "{norms:?}");
}

/// A 3-class noisy table for the command line.
fn write_csv(dir: &std::path::Path) {
    let d = noisy(240, 5);
    let Features::F32(f) = d.features() else { unreachable!() };
    let mut csv = String::from("a,b,c,d,label\n");
    for (row, label) in f.chunks(4).zip(d.labels()) {
        csv += &format!("{},{},{},{},{label}\n", row[0], row[1], row[2], row[3]);
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
}

#[test]
fn the_command_line_says_which_epoch_it_kept_and_why_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let args = [
        "train",
        "--csv",
        "t.csv",
        "--hidden",
        "128",
        "--lr",
        "0.01",
        "--schedule",
        "constant",
        "--dropout",
        "0",
        "--epochs",
        "200",
        "--val-split",
        "0.3",
        "--early-stop",
        "3",
        "--metrics",
        "m.json",
        "--plots",
        "p",
        "-q",
    ];
    let out = host(&args, d);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}\n{}", stderr(&out));
    assert!(so.contains("early stop: patience 3 on validation loss"), "{so}");
    assert!(so.contains("(best so far)"), "{so}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
    let best = m["best_epoch"].as_u64().expect("best_epoch") as usize;
    let epochs = m["epochs"].as_array().unwrap();
    assert_eq!(m["stopped_early"], true);
    assert_eq!(epochs.len(), best + 3);
    assert_eq!(m["best_val_loss"], epochs[best - 1]["val_loss"]);
    assert_eq!(m["test_accuracy"], epochs[best - 1]["test_accuracy"], "the kept model's test accuracy");
    assert!(epochs[0]["lr_trace"].as_array().is_some_and(|t| !t.is_empty()), "no learning-rate trace");
    assert!(
        so.contains(&format!("Stopped early after epoch {} of 200", best + 3))
            && so.contains(&format!("Keeping epoch {best}, the lowest validation loss"))
            && so.contains(&format!("epoch {best}'s weights")),
        "{so}"
    );
    // The saved model is the best epoch's: the checkpoint's best, not its last.
    let saved = SavedModel::load(&d.join("model.mlp")).unwrap();
    let ck = Checkpoint::load(&d.join("model.mlp.ckpt")).unwrap();
    assert_eq!(saved.params, ck.best.as_ref().unwrap().params);
    assert_ne!(saved.params, ck.model.params);
    // Three panels: loss, accuracy, learning rate.
    let png = image::open(d.join("p/curves.png")).unwrap();
    assert_eq!((png.width(), png.height()), (1800, 500));
    let out = host(&["train", "--resume", "model.mlp.ckpt", "--epochs", "300", "-q"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped early"), "{}", stderr(&out));
    // Without a validation split: an error saying what to add, before any training.
    let out = host(&["train", "--csv", "t.csv", "--early-stop", "3", "-q"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("add --val-split 0.1"), "{}", stderr(&out));
}

#[test]
fn the_gpu_path_refuses_max_norm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    for device in ["gpu", "gpu-emulator"] {
        let out = host(&["train", "--csv", "t.csv", "--max-norm", "3", "--device", device, "-q"], d);
        let err = stderr(&out);
        assert!(!out.status.success(), "{device}: {err}");
        assert!(
            err.contains("--max-norm is not implemented on the GPU path") && err.contains("--device cpu"),
            "{err}"
        );
        assert!(!d.join("model.mlp").exists());
    }
}
