//! `--activation maxout`: a maxout network learns a problem no linear model can, its model file
//! round-trips, and what does not support maxout (int8, the GPU path) says so up front. Small
//! synthetic data, no MNIST needed.

use std::ops::ControlFlow;

use data::{Dataset, Features};
use host::model_io::SavedModel;
use host::schedule::Schedule;
use host::train::{evaluate, train, ActivationArg, NormalizationArg, RunData, RunOptions, TrainSettings};

mod common;

use common::{host, stderr, stdout};

/// XOR of the signs: class 1 where x·y > 0 (quadrants I and III), with a margin around the
/// axes. A linear boundary gets about 0.7 of it at best; a nonlinear net nearly all.
fn quadrants(n: usize, seed: u64) -> Dataset {
    let mut rng = mlp::Rng::new(seed);
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    while labels.len() < n {
        let (x, y) = (rng.uniform_in(-1.0, 1.0), rng.uniform_in(-1.0, 1.0));
        if x.abs() < 0.1 || y.abs() < 0.1 {
            continue;
        }
        features.extend([x, y]);
        labels.push(u32::from(x * y > 0.0));
    }
    Dataset::new("quadrants", Features::F32(features), 2, labels, 2, None).unwrap()
}

fn settings(activation: ActivationArg) -> TrainSettings {
    TrainSettings {
        hidden: vec![16],
        activation,
        maxout_pieces: if activation == ActivationArg::Maxout {
            3
        } else {
            host::train::DEFAULT_MAXOUT_PIECES
        },
        lr: Some(0.01),
        schedule: Schedule::Constant,
        epochs: 15,
        batch_size: 32,
        dropout: 0.0,
        normalization: NormalizationArg::None,
        ..TrainSettings::default_recipe()
    }
}

fn test_accuracy(s: &TrainSettings) -> (f64, SavedModel, Dataset) {
    let data = RunData::new(quadrants(800, 1), Some(quadrants(400, 2)), s).unwrap();
    let trained = train(s, &data, None, &RunOptions::default(), &mut |_| ControlFlow::Continue(())).unwrap();
    let acc = trained.history.last().unwrap().test_accuracy.unwrap();
    (acc, trained.model, data.test.unwrap())
}

#[test]
fn a_maxout_network_learns_what_a_linear_one_cannot_and_round_trips() {
    // The same network with identity units is linear: a half-plane gets one quadrant and
    // bits of two others right, about 0.7 here (it cuts a corner off a wrong quadrant).
    let (linear, _, _) = test_accuracy(&settings(ActivationArg::Identity));
    assert!(linear < 0.8, "a linear model reached {linear} on XOR: the data is too easy to show anything");
    let s = settings(ActivationArg::Maxout);
    let (acc, model, test) = test_accuracy(&s);
    assert!(acc > 0.95, "maxout reached only {acc}");
    assert_eq!(model.topology.layers()[0].activation, mlp::Activation::Maxout(3));
    // 16 units of 3 pieces: 48 rows of 2 weights and a bias, then 2 × (16 + 1).
    assert_eq!(model.params.len(), 48 * 3 + 2 * 17);
    let back = SavedModel::from_bytes("mem", &model.to_bytes().unwrap()).unwrap();
    assert_eq!(back, model);
    assert_eq!(evaluate(&back, &test).unwrap().accuracy, acc);
}

/// The quadrants as a CSV table for the command line.
fn write_csv(dir: &std::path::Path) {
    let d = quadrants(300, 3);
    let Features::F32(f) = d.features() else { unreachable!() };
    let mut csv = String::from("u,v,class\n");
    for (row, label) in f.chunks(2).zip(d.labels()) {
        csv += &format!("{},{},{label}\n", row[0], row[1]);
    }
    std::fs::write(dir.join("q.csv"), csv).unwrap();
}

#[test]
fn the_command_line_trains_inspects_and_refuses_maxout_where_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_csv(d);
    let train = [
        "train",
        "--csv",
        "q.csv",
        "--label",
        "class",
        "--activation",
        "maxout",
        "--maxout-pieces",
        "3",
        "--epochs",
        "3",
    ];
    let out = host(&[&train[..], &["--no-plots", "-q"]].concat(), d);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = host(&["inspect", "model.mlp"], d);
    let so = stdout(&out);
    assert!(out.status.success() && so.contains("maxout") && so.contains("3 pieces per unit"), "{so}");
    // int8 refuses by name, before calibrating, and writes nothing.
    let out = host(&["quantize", "model.mlp", "--out", "q8.mlp", "--csv", "q.csv", "--label", "class"], d);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("int8 quantization does not support maxout layers"), "{err}");
    assert!(!d.join("q8.mlp").exists());
    // Out-of-range and misplaced piece counts, and the GPU path, are refused before training.
    let refusals: [(&[&str], &str); 4] = [
        (&["--activation", "maxout", "--maxout-pieces", "1"], "--maxout-pieces 1 is outside 2 to 16"),
        (&["--maxout-pieces", "3"], "add --activation maxout"),
        (
            &["--activation", "maxout", "--device", "gpu"],
            "--activation maxout is not implemented on the GPU path",
        ),
        (&["--activation", "maxout", "--device", "gpu-emulator"], "train with --device cpu"),
    ];
    for (args, message) in refusals {
        let out = host(
            &[&["train", "--csv", "q.csv", "--label", "class", "--out", "bad.mlp", "-q"][..], args].concat(),
            d,
        );
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(message), "{args:?}: {err}");
        assert!(!d.join("bad.mlp").exists());
    }
}
