//! Tabular data end to end (issue 15) on a generated Iris-like table (150 rows, 4 features,
//! 3 named classes, label column `species` last) and a digits-like one (label `label`
//! first): the tabular defaults, the label column, class names in the model file used by
//! eval / predict / inspect, and quantize / export calibrated on the CSV.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

mod common;

use common::{host, stderr, stdout};

const SPECIES: [&str; 3] = ["setosa", "versicolor", "virginica"];
const HEADER: &str = "sepal_length,sepal_width,petal_length,petal_width,species\n";

/// Iris-like rows: each species a Gaussian cloud around Iris's class means (in cm, so the
/// features have different scales), 50 rows each, in species order as in iris.csv.
fn iris_rows(seed: u64, only: Option<usize>) -> String {
    let means = [[5.0, 3.4, 1.5, 0.25], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]];
    let sds = [[0.35, 0.38, 0.17, 0.1], [0.5, 0.31, 0.47, 0.2], [0.63, 0.32, 0.55, 0.27]];
    let mut rng = mlp::Rng::new(seed);
    let mut s = String::new();
    for (c, name) in SPECIES.iter().enumerate() {
        for _ in 0..50 {
            let x: Vec<String> =
                (0..4).map(|j| format!("{:.1}", (means[c][j] + sds[c][j] * rng.normal()).max(0.1))).collect();
            if only.is_none_or(|o| o == c) {
                let _ = writeln!(s, "{},{name}", x.join(","));
            }
        }
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn train_iris(d: &Path) -> Output {
    write(d, "iris.csv", &(HEADER.to_string() + &iris_rows(1, None)));
    host(&["train", "--csv", "iris.csv", "--out", "iris.mlp", "--no-plots", "-q"], d)
}

fn final_accuracy(out: &Output) -> f64 {
    let text = stdout(out);
    let line = text.lines().find(|l| l.starts_with("Final test accuracy")).expect("a final accuracy");
    line.trim_start_matches("Final test accuracy: ").trim_end_matches('%').parse().unwrap()
}

#[test]
fn csv_alone_trains_with_tabular_defaults_on_a_held_out_split() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = train_iris(d);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Holding out 30 of 150 rows"), "{text}");
    assert!(text.contains("the tabular recipe"), "{text}");
    assert!(text.contains("standardized per feature"), "{text}");
    assert!(text.contains("4-16-3"), "{text}");
    assert!(final_accuracy(&out) >= 95.0, "{text}");

    // Options change the recipe, and the line says which.
    let out = host(
        &[
            "train",
            "--csv",
            "iris.csv",
            "--hidden",
            "8",
            "--epochs",
            "30",
            "--out",
            "b.mlp",
            "--no-plots",
            "-q",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("changed by --hidden --epochs"), "{}", stdout(&out));
    assert!(stdout(&out).contains("4-8-3"), "{}", stdout(&out));
}

#[test]
fn eval_numbers_classes_by_the_names_in_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(train_iris(d).status.success());
    // A file of virginica only: renumbered from the file alone, it would be class 0.
    write(d, "virginica.csv", &(HEADER.to_string() + &iris_rows(2, Some(2))));
    let out = host(&["eval", "iris.mlp", "--csv", "virginica.csv", "--json"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(eval["accuracy"].as_f64().unwrap() > 0.8, "{eval}");
    assert_eq!(eval["per_class_accuracy"].as_array().unwrap().len(), 3);

    // A class the model does not know: named, with the model's classes.
    write(d, "other.csv", &format!("{HEADER}5.0,3.0,1.0,0.2,setosa\n6.0,3.0,4.0,1.0,iris-nova\n"));
    let out = host(&["eval", "iris.mlp", "--csv", "other.csv"], d);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("\"iris-nova\"") && e.contains("setosa, versicolor, virginica"), "{e}");
    assert!(!e.contains("panicked"), "{e}");

    // inspect shows what the file carries.
    let out = host(&["inspect", "iris.mlp"], d);
    let text = stdout(&out);
    assert!(text.contains("classes: setosa, versicolor, virginica"), "{text}");
    assert!(text.contains("features: sepal_length, sepal_width, petal_length, petal_width"), "{text}");
    assert!(text.contains("format version 2"), "{text}");
}

#[test]
fn the_label_column_is_found_by_name_or_the_error_lists_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Digits-like: the label first, named `label`; 17 values in the last pixel column.
    let mut csv = String::from("label,p0,p1,p2\n");
    let mut rng = mlp::Rng::new(3);
    for i in 0..200 {
        let c = i % 4;
        let _ = writeln!(csv, "{c},{},{},{}", c * 4 + (rng.next_u64() % 2) as usize, i % 17, (i * 7) % 17);
    }
    write(d, "digits.csv", &csv);
    let out =
        host(&["train", "--csv", "digits.csv", "--epochs", "2", "--out", "g.mlp", "--no-plots", "-q"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("3 features, 4 classes"), "{}", stdout(&out));

    // No obvious label column: an error that lists the columns.
    write(d, "anon.csv", "a,b,c\n1,2,x\n3,4,y\n");
    let out = host(&["train", "--csv", "anon.csv", "--out", "a.mlp", "--no-plots", "-q"], d);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("which column is the label") && e.contains("0: \"a\", 1: \"b\", 2: \"c\""), "{e}");
    assert!(e.contains("--label"), "{e}");

    // A measurement as the label: a warning, not 35 silent classes (species as numbers here).
    let numeric =
        iris_rows(1, None).replace("setosa", "0").replace("versicolor", "1").replace("virginica", "2");
    write(d, "iris.csv", &(HEADER.to_string() + &numeric));
    let out = host(
        &[
            "train",
            "--csv",
            "iris.csv",
            "--label",
            "0",
            "--epochs",
            "1",
            "--out",
            "m.mlp",
            "--no-plots",
            "-q",
        ],
        d,
    );
    let e = stderr(&out);
    assert!(e.contains("warning") && e.contains("looks like a measurement"), "{e}");
}

#[test]
fn predict_quantize_and_export_work_on_csv_models() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(train_iris(d).status.success());
    // Feature-only rows, and rows with the label column: one line per row with the class.
    write(
        d,
        "rows.csv",
        "sepal_length,sepal_width,petal_length,petal_width\n5.0,3.4,1.5,0.2\n6.7,3.0,5.7,2.2\n",
    );
    write(d, "bare.csv", "5.0,3.4,1.5,0.2\n");
    for (file, want) in [("rows.csv", vec!["setosa", "virginica"]), ("bare.csv", vec!["setosa"])] {
        let out = host(&["predict", "iris.mlp", "--csv", file], d);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        assert_eq!(lines.len(), want.len(), "{lines:?}");
        for (l, w) in lines.iter().zip(want) {
            assert!(l.contains(w) && l.contains('%'), "{l}");
        }
    }

    // quantize without data refuses clearly (not an MNIST download or a width mismatch).
    let out = host(&["quantize", "iris.mlp", "--out", "q.mlp"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--csv FILE"), "{}", stderr(&out));
    // quantize calibrates on the CSV; the int8 file keeps the names.
    let out = host(&["quantize", "iris.mlp", "--out", "q.mlp", "--csv", "iris.csv", "--json"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let q: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(q["int8_accuracy"].as_f64().unwrap() > 0.9, "{q}");
    let out = host(&["predict", "q.mlp", "--csv", "rows.csv"], d);
    assert!(stdout(&out).contains("virginica"), "{}", stdout(&out));

    // export without data refuses clearly; with --csv it carries the normalization.
    let out = host(&["export", "iris.mlp", "--format", "c", "--out", "m.h"], d);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("add --csv FILE"), "{}", stderr(&out));
    let out = host(&["export", "iris.mlp", "--format", "c", "--out", "m.h", "--csv", "iris.csv"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let h = std::fs::read_to_string(d.join("m.h")).unwrap();
    assert!(h.contains("Derived from iris.csv") && !h.contains("MNIST"), "{h}");
    assert!(h.contains("MLP_FEATURE_SCALE[4]") && h.contains("MLP_FEATURE_OFFSET[4]"), "{h}");
    assert!(h.contains("MLP_CLASS_NAMES[3] = {\"setosa\", \"versicolor\", \"virginica\"}"), "{h}");
    let out = host(&["export", "iris.mlp", "--format", "rust", "--out", "m.rs", "--csv", "iris.csv"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let rs = std::fs::read_to_string(d.join("m.rs")).unwrap();
    assert!(rs.contains("INPUT_TABLE: Option<[i8; 256]> = None"), "{rs}");
    assert!(
        rs.contains("pub static FEATURE_SCALE: [f32; 4]") && rs.contains("pub static FEATURE_OFFSET"),
        "{rs}"
    );
    assert!(rs.contains("Derived from iris.csv"), "{rs}");
    // f32 exports carry the names too.
    let out = host(&["export", "iris.mlp", "--format", "c", "--dtype", "f32", "--out", "f.h"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let h = std::fs::read_to_string(d.join("f.h")).unwrap();
    assert!(h.contains("MLP_CLASS_NAMES[3]") && h.contains("MLP_INPUT_SCALE[4]"), "{h}");
    assert!(h.contains("Derived from the data iris.mlp was trained on"), "{h}");
    // The exported scales are the model file's.
    let file = std::fs::read(d.join("q.mlp")).unwrap();
    let m = mlp::ModelFile::parse(&file).unwrap();
    let (s0, _) = m.input_scale_offset(0);
    assert!(
        rs.contains(&format!("{s0:?}")) || rs.contains(&format!("{s0:e}")) || rs.contains(&s0.to_string())
    );
}
