//! The plots are real PNG files of the expected size, with something drawn on them.

use std::path::Path;

use host::plot::{confusion_matrix, epoch_ticks, prediction_grid, training_curves, EvalCurves, RunCurves};

fn decode(path: &Path) -> image::RgbImage {
    assert!(path.exists(), "{} was not written", path.display());
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG file");
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8()
}

fn count(img: &image::RgbImage, pred: impl Fn([u8; 3]) -> bool) -> usize {
    img.pixels().filter(|p| pred(p.0)).count()
}

fn non_white(img: &image::RgbImage) -> usize {
    count(img, |p| p != [255, 255, 255])
}

/// Close to `color` (the run colors are drawn as is; antialiased text is not).
fn near(color: [u8; 3]) -> impl Fn([u8; 3]) -> bool {
    move |p| p.iter().zip(color).all(|(&a, b)| a.abs_diff(b) <= 12)
}

fn red(p: [u8; 3]) -> bool {
    p[0] > 150 && p[1] < 90 && p[2] < 90
}

fn run(name: &str, epochs: usize, offset: f64) -> RunCurves {
    let e = |i: usize| (i + 1) as f64;
    RunCurves {
        name: name.to_string(),
        train_loss: (0..epochs).map(|i| 0.8 / e(i) + offset).collect(),
        train_accuracy: (0..epochs).map(|i| 0.9 + 0.08 * (1.0 - 1.0 / e(i)) - offset).collect(),
        evals: vec![EvalCurves {
            label: "test".to_string(),
            loss: (0..epochs).map(|i| 0.9 / e(i) + offset + 0.02).collect(),
            accuracy: (0..epochs).map(|i| 0.89 + 0.08 * (1.0 - 1.0 / e(i)) - offset).collect(),
        }],
        lr: Vec::new(),
        best_epoch: None,
    }
}

const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];
const GREEN: [u8; 3] = [44, 160, 44];

#[test]
fn training_curves_for_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    training_curves(&path, "mlp on MNIST", &[run("6x relu", 10, 0.0)]).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (1200, 500));
    assert!(non_white(&img) > 10_000, "the plot is nearly blank");
    assert!(count(&img, near(BLUE)) > 500, "the run's curves are missing");
    // Axis labels and tick labels are black text.
    assert!(count(&img, |p| p.iter().all(|&c| c < 60)) > 1_000, "no text or axes");
}

#[test]
fn training_curves_compare_several_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compare.png");
    let runs = [run("sgd", 8, 0.05), run("adam", 8, 0.0), run("rmsprop", 8, 0.02)];
    training_curves(&path, "optimizers", &runs).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (1200, 500));
    for color in [BLUE, ORANGE, GREEN] {
        assert!(count(&img, near(color)) > 300, "the curves of run color {color:?} are missing");
    }
}

#[test]
fn training_curves_with_one_epoch_draw_markers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.png");
    training_curves(&path, "one epoch", &[run("a", 1, 0.0), run("b", 1, 0.01)]).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (1200, 500));
    // Legend samples alone are ~100 pixels a color; the points add more.
    assert!(count(&img, near(BLUE)) > 150);
    assert!(count(&img, near(ORANGE)) > 150);
}

/// A run with no held-out set (a CSV without a test file) plots its training curves alone,
/// and one with both a validation split and a test set plots both.
#[test]
fn training_curves_with_no_held_out_set_or_two() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train_only.png");
    let mut alone = run("alone", 12, 0.0);
    alone.evals.clear();
    training_curves(&path, "no held-out set", &[alone]).unwrap();
    assert!(count(&decode(&path), near(BLUE)) > 300, "the training curves are missing");

    let mut both = run("both", 12, 0.0);
    let mut val = both.evals[0].clone();
    val.label = "validation".into();
    val.loss.iter_mut().for_each(|v| *v += 0.1);
    both.evals.insert(0, val);
    let path = dir.path().join("both.png");
    training_curves(&path, "validation and test", &[both.clone()]).unwrap();
    let with_both = count(&decode(&path), near(BLUE));
    both.evals.truncate(1);
    training_curves(&path, "validation only", &[both]).unwrap();
    assert!(with_both > count(&decode(&path), near(BLUE)) + 100, "the second held-out curve is missing");
}

/// With learning rates the chart has a third panel (right of the other two) with the curve;
/// a best epoch is a gray vertical line on the loss and accuracy panels.
#[test]
fn training_curves_with_the_learning_rate_and_the_best_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lr.png");
    let mut r = run("one-cycle", 10, 0.0);
    let steps = 10 * 20;
    r.lr = (0..steps)
        .map(|k| {
            let t = k as f64 / steps as f64;
            ((k + 1) as f64 / 20.0, 1e-3 * (1.0 - (std::f64::consts::PI * t).cos()) / 2.0 + 1e-5)
        })
        .collect();
    training_curves(&path, "with lr", &[r.clone()]).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (1800, 500));
    let blue_right = |img: &image::RgbImage| {
        img.enumerate_pixels().filter(|(x, _, p)| *x >= 1200 && near(BLUE)(p.0)).count()
    };
    assert!(blue_right(&img) > 300, "the learning-rate curve is missing");
    let gray = |img: &image::RgbImage| count(img, |p| p == [110, 110, 110]);
    let without = gray(&img);

    r.best_epoch = Some(6);
    training_curves(&path, "with lr and best", &[r.clone()]).unwrap();
    let img = decode(&path);
    assert!(gray(&img) > without + 2 * 200, "the best epoch's line is missing on the two panels");

    // A constant rate is a flat line, still drawn.
    r.lr.iter_mut().for_each(|p| p.1 = 1e-3);
    training_curves(&path, "constant", &[r]).unwrap();
    assert!(blue_right(&decode(&path)) > 300, "a constant learning rate is not drawn");
}

#[test]
fn epoch_ticks_are_round() {
    assert_eq!(epoch_ticks(1), [1]);
    assert_eq!(epoch_ticks(10), (1..=10).collect::<Vec<_>>());
    assert_eq!(epoch_ticks(12), [1, 2, 4, 6, 8, 10, 12]);
    assert_eq!(epoch_ticks(200), [1, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200]);
    assert_eq!(epoch_ticks(37), [1, 5, 10, 15, 20, 25, 30, 35]);
}

#[test]
fn training_curves_skip_non_finite_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.png");
    let mut diverged = run("sigmoid lr 10", 6, 0.0);
    diverged.train_loss[3] = f64::NAN;
    diverged.evals[0].loss[4] = f64::INFINITY;
    training_curves(&path, "diverged", &[diverged]).unwrap();
    assert_eq!(decode(&path).dimensions(), (1200, 500));
}

#[test]
fn training_curves_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.png");
    let err = training_curves(&path, "t", &[]).unwrap_err();
    assert!(err.to_string().contains("no runs"), "{err}");

    let mut short = run("short", 5, 0.0);
    short.evals[0].accuracy.pop();
    let err = training_curves(&path, "t", &[short]).unwrap_err();
    assert!(err.to_string().contains("eval_accuracy"), "{err}");

    let err = training_curves(&path, "t", &[run("empty", 0, 0.0)]).unwrap_err();
    assert!(err.to_string().contains("no epochs"), "{err}");
    assert!(!path.exists());
}

fn digit_images(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let mut img = vec![0u8; 28 * 28];
            for y in 6..22 {
                for x in 12 + k % 3..16 + k % 3 {
                    img[y * 28 + x] = 255;
                }
            }
            img
        })
        .collect()
}

#[test]
fn prediction_grid_marks_mistakes_in_red() {
    let dir = tempfile::tempdir().unwrap();
    let images = digit_images(25);
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let labels: Vec<usize> = (0..25).map(|i| i % 10).collect();
    let mut predicted = labels.clone();
    predicted[7] = 1;
    predicted[18] = 3;

    let wrong = dir.path().join("wrong.png");
    prediction_grid(&wrong, &refs, 28, 28, &predicted, &labels, None).unwrap();
    let img = decode(&wrong);
    let (w, h) = img.dimensions();
    assert!(w >= 5 * 112 && h >= 5 * 112, "grid too small: {w}x{h}");
    // White digits scaled 4x: 25 images of 16x4 white pixels, 16 pixels each after scaling.
    assert!(count(&img, |p| p == [255, 255, 255]) > 0);
    assert!(count(&img, |p| p == [0, 0, 0]) >= 25 * (112 * 112 - 16 * 4 * 16));
    let red_wrong = count(&img, red);
    // Two borders of 3 px around 112x112 images, at least.
    assert!(red_wrong > 2 * 4 * 3 * 112, "mistakes are not marked: {red_wrong} red pixels");

    let right = dir.path().join("right.png");
    prediction_grid(&right, &refs, 28, 28, &labels, &labels, None).unwrap();
    let img = decode(&right);
    assert_eq!(count(&img, red), 0, "correct predictions must not be red");
    assert!(count(&img, |p| p[1] > 90 && p[0] < 60 && p[2] < 60) > 100, "no green titles");
}

#[test]
fn prediction_grid_with_few_images_and_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fashion.png");
    let names: Vec<String> = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let images = digit_images(3);
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    prediction_grid(&path, &refs, 28, 28, &[0, 6, 1], &[0, 0, 1], Some(&names)).unwrap();
    let img = decode(&path);
    let (w, h) = img.dimensions();
    assert!(w >= 3 * 112 && (112..2 * 112 + 100).contains(&h), "{w}x{h}");
    assert!(count(&img, red) > 0);
}

#[test]
fn prediction_grid_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.png");
    let images = digit_images(26);
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let labels = vec![0usize; 26];
    assert!(prediction_grid(&path, &[], 28, 28, &[], &[], None).is_err());
    assert!(prediction_grid(&path, &refs[..2], 28, 28, &labels[..1], &labels[..2], None).is_err());
    assert!(prediction_grid(&path, &refs[..2], 28, 28, &labels[..2], &labels[..3], None).is_err());
    assert!(prediction_grid(&path, &refs, 28, 28, &labels, &labels, None).is_err());
    assert!(prediction_grid(&path, &refs[..2], 27, 28, &labels[..2], &labels[..2], None).is_err());
    assert!(prediction_grid(&path, &refs[..1], 0, 0, &labels[..1], &labels[..1], None).is_err());
    let names = vec!["zero".to_string()];
    let err = prediction_grid(&path, &refs[..1], 28, 28, &[3], &[0], Some(&names)).unwrap_err();
    assert!(err.to_string().contains("class 3"), "{err}");
    assert!(!path.exists());
}

#[test]
fn confusion_matrix_heat_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("confusion.png");
    let n = 10;
    let matrix: Vec<Vec<u64>> = (0..n)
        .map(|r| {
            (0..n).map(|c| if r == c { 980 + r as u64 * 10 } else { ((r * 7 + c * 3) % 9) as u64 }).collect()
        })
        .collect();
    let names: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    confusion_matrix(&path, &matrix, &names, "test set confusion").unwrap();
    let img = decode(&path);
    let (w, h) = img.dimensions();
    assert!(w >= 10 * 40 && h >= 10 * 40, "{w}x{h}");
    // The diagonal is dark blue, with white counts on it.
    assert!(count(&img, near([8, 48, 107])) > 10 * 20 * 20, "no dark diagonal");
    assert!(non_white(&img) > 20_000);
}

#[test]
fn confusion_matrix_with_long_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fashion.png");
    let names: Vec<String> = ["T-shirt/top", "Trouser", "Ankle boot"].iter().map(|s| s.to_string()).collect();
    let matrix = vec![vec![900, 5, 0], vec![3, 990, 1], vec![0, 0, 0]];
    confusion_matrix(&path, &matrix, &names, "Fashion-MNIST").unwrap();
    assert!(non_white(&decode(&path)) > 1_000);
}

#[test]
fn confusion_matrix_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.png");
    let names: Vec<String> = vec!["a".into(), "b".into()];
    assert!(confusion_matrix(&path, &[], &[], "t").is_err());
    let err = confusion_matrix(&path, &[vec![1, 2], vec![3]], &names, "t").unwrap_err();
    assert!(err.to_string().contains("not square"), "{err}");
    assert!(confusion_matrix(&path, &[vec![1, 2, 3], vec![4, 5, 6]], &names, "t").is_err());
    assert!(confusion_matrix(&path, &[vec![1, 2], vec![3, 4]], &names[..1], "t").is_err());
    assert!(!path.exists());
}
