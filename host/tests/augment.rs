//! `host train --augment` and `--recipe best` on a small synthetic IDX folder (no MNIST
//! needed): the run says what it distorts, draws augmented.png, records the spec, and refuses
//! tables, the GPU path and bad strengths with messages that say what to do.

mod common;

use common::{host, stderr, stdout, write_idx};

#[test]
fn augment_trains_records_its_spec_and_draws_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("idx"), 200, 50);
    let args = [
        "train",
        "--data",
        "idx",
        "--recipe",
        "tutorial",
        "--epochs",
        "2",
        "--hidden",
        "32",
        "-q",
        "--augment",
        "rotate=10,elastic=30:4",
        "--metrics",
        "run.json",
    ];
    let out = host(&args, d);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("augment rotate=10,elastic=30:4"), "{text}");
    assert!(text.contains("plots/augmented.png"), "{text}");
    let png = image::open(d.join("plots/augmented.png")).unwrap();
    assert!(png.width() > 500 && png.height() > 500, "{}x{}", png.width(), png.height());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["config"]["augment"]["rotate_deg"], 10.0);
    assert_eq!(json["config"]["augment"]["elastic_sigma"], 4.0);
    // Resuming keeps the run's augmentation and refuses to change it.
    let out = host(&["train", "--resume", "model.mlp.ckpt", "--epochs", "3", "-q", "--no-plots"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = host(&["train", "--resume", "model.mlp.ckpt", "--epochs", "4", "--augment"], d);
    assert!(stderr(&out).contains("--augment cannot change a resumed run"), "{}", stderr(&out));
}

#[test]
fn augment_alone_is_the_default_recipe_with_default_strengths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("idx"), 100, 20);
    let out = host(
        &["train", "--data", "idx", "--augment", "--epochs", "1", "--hidden", "16", "-q", "--no-plots"],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("augment rotate=10,shift=1,scale=0.1,shear=10,elastic=34:4"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn augment_refuses_tables_gpus_and_bad_strengths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("t.csv"), "a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n").unwrap();
    let out = host(&["train", "--csv", "t.csv", "--augment", "-q"], d);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a table") && stderr(&out).contains("leave --augment out"),
        "{}",
        stderr(&out)
    );
    write_idx(&d.join("idx"), 50, 10);
    for device in ["gpu", "gpu-emulator"] {
        let out = host(&["train", "--data", "idx", "--augment", "--device", device, "-q"], d);
        let err = stderr(&out);
        assert!(!out.status.success(), "{device}: {err}");
        assert!(
            err.contains("--augment is not implemented on the GPU path") && err.contains("--device cpu"),
            "{err}"
        );
    }
    let out = host(&["train", "--data", "idx", "--augment", "spin=4", "-q"], d);
    assert!(
        stderr(&out).contains("unknown key 'spin'") && stderr(&out).contains("rotate=DEG"),
        "{}",
        stderr(&out)
    );
    let out = host(&["train", "--data", "idx", "--augment", "shift=20", "-q", "--no-plots"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("shift 20 is outside 0 to 14"), "{}", stderr(&out));
}

#[test]
fn recipe_best_is_the_documented_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("idx"), 100, 20);
    let out = host(&["train", "--data", "idx", "--recipe", "best", "--epochs", "1", "-q", "--no-plots"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("the best recipe") && text.contains("784-800-800-10"), "{text}");
    assert!(!text.contains("dropout") && text.contains("augment rotate=10"), "{text}");
}
