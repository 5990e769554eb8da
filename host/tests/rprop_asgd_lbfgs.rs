//! `host train --optimizer rprop|asgd|lbfgs` end to end on small synthetic data (no MNIST
//! needed): each learns, ASGD saves its averaged parameters, an L-BFGS run resumes exactly
//! from its checkpoint (the history is in it), and the options that cannot work are refused
//! with a message (L-BFGS with dropout, weight decay where PyTorch has none, another
//! optimizer's flags, the GPU path).

use std::ops::ControlFlow;

use data::{Dataset, Features};
use host::schedule::Schedule;
use host::train::{
    evaluate, train, Checkpoint, LineSearchArg, NormalizationArg, OptimizerArg, OptimizerOptions, RunData,
    RunOptions, TrainSettings, Trained,
};

mod common;

use common::{host, stderr, stdout};

/// Three Gaussian blobs in 4-D, one shifted feature per class.
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut rng = mlp::Rng::new(seed);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let class = (i % 3) as u32;
        for j in 0..4 {
            let center = if j as u32 == class { 3.0 } else { 0.0 };
            features.push(center + rng.normal());
        }
        labels.push(class);
    }
    Dataset::new("blobs", Features::F32(features), 4, labels, 3, None).unwrap()
}

fn settings(optimizer: OptimizerArg, lr: f32, epochs: usize) -> TrainSettings {
    TrainSettings {
        hidden: vec![16],
        optimizer,
        lr: Some(lr),
        schedule: Schedule::Constant,
        epochs,
        batch_size: 32,
        dropout: 0.0,
        normalization: NormalizationArg::PerFeature,
        ..TrainSettings::default_recipe()
    }
}

fn run(s: &TrainSettings, data: &RunData, resume: Option<Checkpoint>, opts: &RunOptions) -> Trained {
    train(s, data, resume, opts, &mut |_| ControlFlow::Continue(())).unwrap()
}

#[test]
fn each_new_optimizer_learns_the_blobs() {
    let lbfgs = TrainSettings {
        optimizer_options: OptimizerOptions {
            lbfgs_line_search: Some(LineSearchArg::StrongWolfe),
            lbfgs_history: Some(10),
            ..OptimizerOptions::default()
        },
        ..settings(OptimizerArg::Lbfgs, 1.0, 4)
    };
    for s in [settings(OptimizerArg::Rprop, 0.01, 5), settings(OptimizerArg::Asgd, 0.05, 5), lbfgs] {
        let data = RunData::new(blobs(600, 1), Some(blobs(300, 2)), &s).unwrap();
        let trained = run(&s, &data, None, &RunOptions::default());
        let first = &trained.history[0];
        let last = trained.history.last().unwrap();
        let acc = last.test_accuracy.unwrap();
        assert!(acc > 0.9, "{:?}: test accuracy {acc}: {:#?}", s.optimizer, trained.history);
        assert!(last.train_loss < 0.5 * first.train_loss, "{:?}: {:#?}", s.optimizer, trained.history);
    }
}

#[test]
fn lbfgs_makes_one_step_per_epoch_and_resumes_exactly() {
    let s = settings(OptimizerArg::Lbfgs, 1.0, 3);
    let data = RunData::new(blobs(300, 3), None, &s).unwrap();
    let whole = run(&s, &data, None, &RunOptions::default());
    assert_eq!(whole.steps, 3, "one L-BFGS step per epoch");
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let opts = RunOptions { checkpoint: Some(ckpt.clone()), ..RunOptions::default() };
    run(&TrainSettings { epochs: 2, ..s.clone() }, &data, None, &opts);
    let ck = Checkpoint::load(&ckpt).unwrap();
    // The history (and the rest of L-BFGS's state) is in the checkpoint.
    assert_eq!(ck.optimizer_state.len(), s.optimizer().state_len(ck.model.params.len()));
    assert!(ck.optimizer_state.iter().any(|&v| v != 0.0));
    let resumed = run(&s, &data, Some(ck), &RunOptions::default());
    assert_eq!(resumed.model, whole.model);
}

#[test]
fn asgd_saves_the_averaged_parameters() {
    // t0 = 0: averaging from the second step, so the average differs from the last iterate.
    let s = TrainSettings {
        optimizer_options: OptimizerOptions { asgd_t0: Some(0.0), ..OptimizerOptions::default() },
        ..settings(OptimizerArg::Asgd, 0.05, 2)
    };
    let data = RunData::new(blobs(300, 4), Some(blobs(150, 5)), &s).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let opts = RunOptions { checkpoint: Some(ckpt.clone()), ..RunOptions::default() };
    let trained = run(&s, &data, None, &opts);
    let ck = Checkpoint::load(&ckpt).unwrap();
    assert_eq!(trained.model.params, ck.optimizer_state, "the model is ax");
    assert_ne!(trained.model.params, ck.model.params, "the last iterate stays in the checkpoint");
    // The reported test accuracy is the saved model's.
    let acc = evaluate(&trained.model, data.test.as_ref().unwrap()).unwrap().accuracy;
    assert_eq!(Some(acc), trained.history.last().unwrap().test_accuracy);
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn write_csv(dir: &std::path::Path) {
    let d = blobs(150, 6);
    let Features::F32(f) = d.features() else { unreachable!() };
    let mut csv = String::from("a,b,c,d,label\n");
    for (row, label) in f.chunks(4).zip(d.labels()) {
        csv += &format!("{},{},{},{},{label}\n", row[0], row[1], row[2], row[3]);
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
}

#[test]
fn the_command_line_trains_them_and_refuses_what_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let base = ["train", "--csv", "t.csv", "--hidden", "8", "--no-plots", "-q"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let ok = with(&[
        "--optimizer",
        "lbfgs",
        "--dropout",
        "0",
        "--epochs",
        "3",
        "--lbfgs-history",
        "5",
        "--lbfgs-line-search",
        "strong-wolfe",
    ]);
    let out = host(&args(&ok), d);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("L-BFGS: each epoch is one full-batch step"), "{text}");
    assert!(d.join("model.mlp").exists());
    for opt in ["rprop", "asgd"] {
        let out = host(&args(&with(&["--optimizer", opt, "--epochs", "2", "--out", "m2.mlp"])), d);
        assert!(out.status.success(), "{opt}: {}", stderr(&out));
    }
    let refused = [
        (with(&["--optimizer", "lbfgs"]), "add --dropout 0"),
        (with(&["--optimizer", "rprop", "--weight-decay", "0.1"]), "has no weight decay"),
        (
            with(&["--optimizer", "adam", "--lbfgs-history", "5"]),
            "--lbfgs-history is an option of --optimizer lbfgs",
        ),
        (with(&["--optimizer", "rprop", "--rprop-etas", "0.5,0.9"]), "eta_plus"),
        (with(&["--optimizer", "asgd", "--asgd-alpha", "-1"]), "alpha"),
    ];
    for (a, expected) in refused {
        let out = host(&args(&a), d);
        assert!(!out.status.success(), "{a:?} succeeded");
        assert!(stderr(&out).contains(expected), "{a:?}: {}", stderr(&out));
    }
    for device in ["gpu", "gpu-emulator"] {
        for opt in ["rprop", "asgd", "lbfgs"] {
            let out = host(
                &args(&with(&["--optimizer", opt, "--dropout", "0", "--device", device, "--out", "g.mlp"])),
                d,
            );
            let err = stderr(&out);
            assert!(!out.status.success(), "{device} {opt}: {err}");
            assert!(
                err.contains(&format!("--optimizer {opt} is not implemented on the GPU path"))
                    && err.contains("--device cpu"),
                "{err}"
            );
            assert!(!d.join("g.mlp").exists());
        }
    }
}
