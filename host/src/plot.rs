//! PNG plots for the CLI: training curves (with the learning rate), the tutorials' 5x5
//! prediction grid and a confusion matrix.
//!
//! Everything is drawn with `plotters` into an RGB buffer and written as PNG with the
//! `image` crate. Text uses the DejaVu Sans font embedded in the binary (the `dejavu`
//! crate, rendered by `ab_glyph`), so plots look the same on a machine without any
//! system fonts.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, ensure, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle, FontTransform};

mod augmented;
pub use augmented::augmented_grid;

/// The family name the embedded font is registered under.
const FONT: &str = "sans-serif";

/// One training run, one value per epoch (epoch 1 first).
///
/// Accuracies are fractions in `0..=1`; the plot shows them in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCurves {
    /// Shown in the legend when several runs are compared, e.g. `"6x relu"` or `"adam"`.
    pub name: String,
    /// Mean training loss of each epoch.
    pub train_loss: Vec<f64>,
    /// Training accuracy of each epoch (fraction).
    pub train_accuracy: Vec<f64>,
    /// The held-out sets measured after each epoch (none, validation, test, or both).
    pub evals: Vec<EvalCurves>,
    /// The learning rate used, as `(position in epochs, lr)` points (step `k` of epoch `e`
    /// at `e - 1 + (k + 1) / steps_per_epoch`); empty: no learning-rate panel.
    pub lr: Vec<(f64, f64)>,
    /// The epoch whose model was kept (early stopping), marked on the loss and accuracy
    /// panels by a vertical line.
    pub best_epoch: Option<usize>,
}

/// Loss and accuracy on one held-out set after each epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalCurves {
    /// What the set is: `"validation"` or `"test"`.
    pub label: String,
    /// Loss after each epoch.
    pub loss: Vec<f64>,
    /// Accuracy after each epoch (fraction).
    pub accuracy: Vec<f64>,
}

/// Writes a PNG (1200x500) with two panels: loss per epoch and accuracy (percent) per
/// epoch; when a run has learning rates ([`RunCurves::lr`]), a third panel shows them
/// against the epoch (1800x500). A run's [`RunCurves::best_epoch`] is a vertical gray
/// dashed line on the first two panels. Training curves are solid lines with filled dots, held-out curves hollow dots on
/// dashed lines (the first held-out set) or dotted ones (the second, e.g. test beside
/// validation); each run has its own color. Works for a single run (the `train` command)
/// and for several runs (the `compare` command), with or without held-out sets.
///
/// Runs may have different numbers of epochs, but within a run every series must have the
/// same length. Non-finite values (a diverged run) are left out of the plot.
pub fn training_curves(path: &Path, title: &str, runs: &[RunCurves]) -> Result<()> {
    ensure!(!runs.is_empty(), "training_curves: no runs to plot");
    for run in runs {
        let n = run.train_loss.len();
        ensure!(n > 0, "training_curves: run '{}' has no epochs (train_loss is empty)", run.name);
        let mut lengths = vec![("train_accuracy".to_string(), run.train_accuracy.len())];
        for e in &run.evals {
            lengths.push((format!("eval_loss ({})", e.label), e.loss.len()));
            lengths.push((format!("eval_accuracy ({})", e.label), e.accuracy.len()));
        }
        for (what, len) in lengths {
            ensure!(
                len == n,
                "training_curves: run '{}' has {n} values in train_loss but {len} in {what}",
                run.name
            );
        }
    }
    ensure_fonts()?;

    let epochs = runs.iter().map(|r| r.train_loss.len()).max().unwrap_or(1);
    let several = runs.len() > 1;
    let mut loss_curves = Vec::new();
    let mut accuracy_curves = Vec::new();
    let mut lr_curves = Vec::new();
    let mut markers = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let color = run_color(i);
        let label = |what: &str| if several { format!("{} {what}", run.name) } else { what.to_string() };
        if !run.lr.is_empty() {
            lr_curves.push(Curve::from_points(&label("learning rate"), color, &run.lr));
        }
        if let Some(best) = run.best_epoch.filter(|&b| (1..=run.train_loss.len()).contains(&b)) {
            let what = format!("best epoch {best} (kept)");
            markers.push((best as f64, if several { format!("{} {what}", run.name) } else { what }));
        }
        loss_curves.push(Curve::new(&label("train"), color, Stroke::Solid, &run.train_loss, 1.0));
        accuracy_curves.push(Curve::new(&label("train"), color, Stroke::Solid, &run.train_accuracy, 100.0));
        for (k, e) in run.evals.iter().enumerate() {
            let stroke = if k == 0 { Stroke::Dashed } else { Stroke::Dotted };
            loss_curves.push(Curve::new(&label(&e.label), color, stroke, &e.loss, 1.0));
            accuracy_curves.push(Curve::new(&label(&e.label), color, stroke, &e.accuracy, 100.0));
        }
    }

    let columns = if lr_curves.is_empty() { 2 } else { 3 };
    let width = 600 * columns as u32;
    // A long title (a run's whole description) gets a smaller font rather than being cut.
    let mut title_size = 24.0;
    while title_size > 11.0 && bold(title_size).box_size(title).map_err(font_error)?.0 + 20 > width {
        title_size -= 1.0;
    }
    render_png(path, width, 500, |root| {
        root.fill(&WHITE)?;
        let body = root.titled(title, bold(title_size))?;
        let panels = body.split_evenly((1, columns));
        draw_panel(
            &panels[0],
            &Panel {
                caption: "Loss",
                y_desc: "loss",
                y_clamp: (0.0, f64::INFINITY),
                min_pad: 0.01,
                legend: SeriesLabelPosition::UpperRight,
                epochs,
                curves: &loss_curves,
                from_zero: false,
                markers: &markers,
                y_format: format_tick,
            },
        )?;
        draw_panel(
            &panels[1],
            &Panel {
                caption: "Accuracy",
                y_desc: "accuracy (%)",
                y_clamp: (0.0, 100.0),
                min_pad: 0.5,
                legend: SeriesLabelPosition::LowerRight,
                epochs,
                curves: &accuracy_curves,
                from_zero: false,
                markers: &markers,
                y_format: format_tick,
            },
        )?;
        if columns == 3 {
            draw_panel(
                &panels[2],
                &Panel {
                    caption: "Learning rate",
                    y_desc: "learning rate",
                    y_clamp: (0.0, f64::INFINITY),
                    min_pad: 0.0,
                    legend: SeriesLabelPosition::UpperRight,
                    epochs,
                    curves: &lr_curves,
                    from_zero: true,
                    markers: &[],
                    y_format: format_lr_tick,
                },
            )?;
        }
        Ok(())
    })
}

/// Writes the tutorials' grid of predictions (5 columns, up to 25 images): each cell
/// shows the gray image scaled up with nearest neighbour (4x for 28x28 MNIST) under the
/// title `pred X / label Y`. Mistakes get a red title and a red border, correct
/// predictions a green title.
///
/// `images` are row-major gray pixels (`width * height` each, 0 = black). With
/// `class_names`, titles show names instead of class indices.
pub fn prediction_grid(
    path: &Path,
    images: &[&[u8]],
    width: usize,
    height: usize,
    predicted: &[usize],
    labels: &[usize],
    class_names: Option<&[String]>,
) -> Result<()> {
    const MAX_IMAGES: usize = 25;
    const COLUMNS: usize = 5;
    ensure!(!images.is_empty(), "prediction_grid: no images to show");
    ensure!(
        images.len() <= MAX_IMAGES,
        "prediction_grid: at most {MAX_IMAGES} images fit in the grid, got {}",
        images.len()
    );
    ensure!(
        predicted.len() == images.len() && labels.len() == images.len(),
        "prediction_grid: {} images but {} predictions and {} labels",
        images.len(),
        predicted.len(),
        labels.len()
    );
    ensure!(width > 0 && height > 0, "prediction_grid: image size {width}x{height} is empty");
    for (i, image) in images.iter().enumerate() {
        ensure!(
            image.len() == width * height,
            "prediction_grid: image {i} has {} pixels, expected {width}x{height} = {}",
            image.len(),
            width * height
        );
    }
    let name = |class: usize| -> Result<String> {
        match class_names {
            None => Ok(class.to_string()),
            Some(names) => names.get(class).cloned().ok_or_else(|| {
                anyhow!("prediction_grid: class {class} has no name ({} class names given)", names.len())
            }),
        }
    };
    let mut titles = Vec::with_capacity(images.len());
    for (&p, &l) in predicted.iter().zip(labels) {
        titles.push((format!("pred {}", name(p)?), format!("label {}", name(l)?)));
    }
    ensure_fonts()?;

    let title_font = (FONT, 15).into_font();
    let title_bold = bold(15.0);
    let scale = (112 / width.max(height)).max(1);
    let (img_w, img_h) = (width * scale, height * scale);
    // "pred X / label Y" on one line, or on two lines ("pred X", "label Y") when long
    // class names would make the cells much wider than the images.
    let mut one_line_w = 0usize;
    let mut two_lines_w = 0usize;
    for (pred, label) in &titles {
        let width_of =
            |t: &str| -> Result<usize> { Ok(title_bold.box_size(t).map_err(font_error)?.0 as usize) };
        one_line_w = one_line_w.max(width_of(&format!("{pred} / {label}"))?);
        two_lines_w = two_lines_w.max(width_of(pred)?.max(width_of(label)?));
    }
    let two_lines = one_line_w > img_w + 48;
    let title_w = if two_lines { two_lines_w } else { one_line_w };
    const PAD: usize = 12;
    const BORDER: usize = 3;
    const LINE_H: usize = 20;
    const HEADER_H: usize = 36;
    let title_h = if two_lines { 2 * LINE_H + 4 } else { LINE_H + 4 };
    let cell_w = (img_w + 2 * BORDER).max(title_w + 4) + 2 * PAD;
    let cell_h = title_h + img_h + 2 * BORDER + 2 * PAD;
    let columns = images.len().min(COLUMNS);
    let rows = images.len().div_ceil(COLUMNS);
    let canvas_w = columns * cell_w;
    let canvas_h = HEADER_H + rows * cell_h;
    let wrong = predicted.iter().zip(labels).filter(|(p, l)| p != l).count();
    let header =
        format!("{} predictions: {} correct, {} wrong (red)", images.len(), images.len() - wrong, wrong);
    let (canvas_w_px, canvas_h_px) = (to_u32(canvas_w)?, to_u32(canvas_h)?);

    render_png(path, canvas_w_px, canvas_h_px, |root| {
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            header.as_str(),
            (to_i32(canvas_w / 2)?, 10),
            (FONT, 17).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        for (i, image) in images.iter().enumerate() {
            let mistake = predicted[i] != labels[i];
            let x0 = (i % COLUMNS) * cell_w;
            let y0 = HEADER_H + (i / COLUMNS) * cell_h;
            let (color, font) =
                if mistake { (MISTAKE_RED, title_bold.clone()) } else { (CORRECT_GREEN, title_font.clone()) };
            let style = font.color(&color).pos(Pos::new(HPos::Center, VPos::Top));
            let (pred, label) = &titles[i];
            let lines =
                if two_lines { vec![pred.clone(), label.clone()] } else { vec![format!("{pred} / {label}")] };
            for (k, line) in lines.iter().enumerate() {
                let y = y0 + PAD + k * LINE_H;
                root.draw(&Text::new(line.as_str(), (to_i32(x0 + cell_w / 2)?, to_i32(y)?), style.clone()))?;
            }
            // Image position: centered horizontally in the cell, under the title.
            let ix = x0 + (cell_w - img_w) / 2;
            let iy = y0 + PAD + title_h + BORDER;
            let (ix, iy) = (to_i32(ix)?, to_i32(iy)?);
            let (w, h) = (to_i32(img_w)?, to_i32(img_h)?);
            let b = to_i32(BORDER)?;
            if mistake {
                root.draw(&Rectangle::new(
                    [(ix - b, iy - b), (ix + w + b, iy + h + b)],
                    MISTAKE_RED.filled(),
                ))?;
            } else {
                root.draw(&Rectangle::new(
                    [(ix - 1, iy - 1), (ix + w, iy + h)],
                    RGBColor(170, 170, 170).stroke_width(1),
                ))?;
            }
            for y in 0..img_h {
                for x in 0..img_w {
                    let v = image[(y / scale) * width + x / scale];
                    root.draw_pixel((ix + to_i32(x)?, iy + to_i32(y)?), &RGBColor(v, v, v))?;
                }
            }
        }
        Ok(())
    })
}

/// Writes an n x n heat map of `matrix` (rows: true label, columns: predicted label)
/// with the count written in each cell and the class names as tick labels.
///
/// Cell colors follow a logarithmic scale (white for 0, dark blue for the largest
/// count), so that a few mistakes stay visible next to a large diagonal.
pub fn confusion_matrix(path: &Path, matrix: &[Vec<u64>], class_names: &[String], title: &str) -> Result<()> {
    let n = matrix.len();
    ensure!(n > 0, "confusion_matrix: the matrix is empty");
    for (i, row) in matrix.iter().enumerate() {
        ensure!(
            row.len() == n,
            "confusion_matrix: the matrix is not square: row {i} has {} columns, expected {n}",
            row.len()
        );
    }
    ensure!(
        class_names.len() == n,
        "confusion_matrix: {} class names for a {n}x{n} matrix",
        class_names.len()
    );
    ensure_fonts()?;

    let max_count = matrix.iter().flatten().copied().max().unwrap_or(0);
    let digits = max_count.to_string().len();
    let cell = (560 / n).clamp(18, 64);
    let count_size = (cell as f64 * 0.4).min((cell as f64 - 6.0) / (0.62 * digits as f64)).max(6.0);
    let tick_size = (cell as f64 * 0.6).clamp(8.0, 16.0);
    let tick_font = (FONT, tick_size).into_font();
    let mut name_w = 0u32;
    let mut name_h = 0u32;
    for name in class_names {
        let (w, h) = tick_font.box_size(name).map_err(font_error)?;
        name_w = name_w.max(w);
        name_h = name_h.max(h);
    }
    let name_w = name_w as usize;
    let rotate_x = name_w + 4 > cell;
    let title_font = bold(22.0);
    let desc_font = (FONT, 17).into_font();
    let title_w = title_font.box_size(title).map_err(font_error)?.0 as usize;

    const MARGIN: usize = 20;
    const TITLE_H: usize = 44;
    const DESC: usize = 30;
    let left = MARGIN + DESC + name_w + 10;
    let top = MARGIN + TITLE_H;
    let x_ticks_h = if rotate_x { name_w + 10 } else { name_h as usize + 12 };
    let grid = n * cell;
    let canvas_w = (left + grid + 2 * MARGIN).max(title_w + 2 * MARGIN);
    let canvas_h = top + grid + x_ticks_h + DESC + MARGIN;
    // Center the matrix when the title is wider than the matrix and its labels.
    let left = left + (canvas_w - (left + grid + 2 * MARGIN)) / 2;

    render_png(path, to_u32(canvas_w)?, to_u32(canvas_h)?, |root| {
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            title,
            (to_i32(canvas_w / 2)?, to_i32(MARGIN)?),
            title_font.clone().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        let (gl, gt, c) = (to_i32(left)?, to_i32(top)?, to_i32(cell)?);
        for (r, row) in matrix.iter().enumerate() {
            for (col, &count) in row.iter().enumerate() {
                let (x, y) = (gl + to_i32(col)? * c, gt + to_i32(r)? * c);
                let fill = heat_color(count, max_count);
                root.draw(&Rectangle::new([(x, y), (x + c, y + c)], fill.filled()))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + c, y + c)],
                    RGBColor(200, 200, 200).stroke_width(1),
                ))?;
                let luminance = 0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64;
                let ink = if luminance < 140.0 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    count.to_string(),
                    (x + c / 2, y + c / 2),
                    (FONT, count_size).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center)),
                ))?;
            }
        }
        // A frame around the whole matrix.
        root.draw(&Rectangle::new(
            [(gl, gt), (gl + to_i32(grid)?, gt + to_i32(grid)?)],
            BLACK.stroke_width(1),
        ))?;
        // Row tick labels (true classes), right-aligned left of the matrix.
        for (r, name) in class_names.iter().enumerate() {
            root.draw(&Text::new(
                name.as_str(),
                (gl - 8, gt + to_i32(r)? * c + c / 2),
                tick_font.clone().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
        }
        // Column tick labels (predicted classes) under the matrix, vertical when long.
        let below = gt + to_i32(grid)? + 6;
        for (col, name) in class_names.iter().enumerate() {
            let x = gl + to_i32(col)? * c + c / 2;
            let style = if rotate_x {
                tick_font
                    .clone()
                    .transform(FontTransform::Rotate270)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center))
            } else {
                tick_font.clone().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top))
            };
            root.draw(&Text::new(name.as_str(), (x, below), style))?;
        }
        root.draw(&Text::new(
            "predicted label",
            (gl + to_i32(grid / 2)?, below + to_i32(x_ticks_h)?),
            desc_font.clone().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        root.draw(&Text::new(
            "true label",
            (to_i32(left - name_w - 10 - DESC / 2 - 6)?, gt + to_i32(grid / 2)?),
            desc_font
                .clone()
                .transform(FontTransform::Rotate270)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        Ok(())
    })
}

const MISTAKE_RED: RGBColor = RGBColor(220, 20, 20);
const CORRECT_GREEN: RGBColor = RGBColor(0, 120, 0);

/// Registers the embedded DejaVu Sans font once per process.
fn ensure_fonts() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the embedded DejaVu Sans font is invalid".to_string())?;
            register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
                .map_err(|_| "the embedded DejaVu Sans Bold font is invalid".to_string())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// The embedded bold font. (`FontDesc::style` only relabels the regular font.)
fn bold(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONT), size, FontStyle::Bold)
}

fn font_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot lay out text with the embedded font: {e:?}")
}

fn to_i32(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| anyhow!("plot coordinate {v} is too large"))
}

fn to_u32(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| anyhow!("plot size {v} is too large"))
}

/// Draws into a white `width` x `height` RGB canvas and saves it as PNG at `path`.
fn render_png<F>(path: &Path, width: u32, height: u32, draw: F) -> Result<()>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    let len = width as usize * height as usize * 3;
    let mut buffer = vec![255u8; len];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present()?;
    }
    let image = image::RgbImage::from_raw(width, height, buffer)
        .ok_or_else(|| anyhow!("internal error: plot buffer has the wrong size"))?;
    image
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("cannot write the plot to {}", path.display()))
}

/// Color of run `i` (matplotlib's tab10 palette, the tutorials' default colors).
fn run_color(i: usize) -> RGBColor {
    const TAB10: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    TAB10[i % TAB10.len()]
}

/// White for 0 to dark blue for `max` (matplotlib's "Blues"), on a log scale.
fn heat_color(count: u64, max: u64) -> RGBColor {
    if max == 0 {
        return RGBColor(247, 251, 255);
    }
    let t = (1.0 + count as f64).ln() / (1.0 + max as f64).ln();
    const STOPS: [(f64, f64, f64); 3] = [(247.0, 251.0, 255.0), (107.0, 174.0, 214.0), (8.0, 48.0, 107.0)];
    let (a, b, u) =
        if t < 0.5 { (STOPS[0], STOPS[1], t * 2.0) } else { (STOPS[1], STOPS[2], (t - 0.5) * 2.0) };
    let mix = |x: f64, y: f64| (x + (y - x) * u).round().clamp(0.0, 255.0) as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// How a curve's line is drawn: training solid, held-out sets dashed or dotted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stroke {
    Solid,
    Dashed,
    Dotted,
}

/// One line of a panel: (epoch, value) points, split where values are not finite.
struct Curve {
    label: String,
    color: RGBColor,
    stroke: Stroke,
    segments: Vec<Vec<(f64, f64)>>,
    /// A dot at every point (per-epoch values; not per-step ones).
    dots: bool,
}

impl Curve {
    fn new(label: &str, color: RGBColor, stroke: Stroke, values: &[f64], factor: f64) -> Self {
        let mut segments = Vec::new();
        let mut current = Vec::new();
        for (i, &v) in values.iter().enumerate() {
            let v = v * factor;
            if v.is_finite() {
                current.push(((i + 1) as f64, v));
            } else if !current.is_empty() {
                segments.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            segments.push(current);
        }
        Curve { label: label.to_string(), color, stroke, segments, dots: true }
    }

    /// A solid line through `(x, y)` points, without dots, split where `y` is not finite.
    fn from_points(label: &str, color: RGBColor, points: &[(f64, f64)]) -> Self {
        let mut segments = Vec::new();
        let mut current = Vec::new();
        for &(x, y) in points {
            if x.is_finite() && y.is_finite() {
                current.push((x, y));
            } else if !current.is_empty() {
                segments.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            segments.push(current);
        }
        Curve { label: label.to_string(), color, stroke: Stroke::Solid, segments, dots: false }
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.segments.iter().flatten().map(|&(_, v)| v)
    }
}

struct Panel<'a> {
    caption: &'a str,
    y_desc: &'a str,
    /// The y axis never goes outside this range (loss >= 0, accuracy in 0..=100).
    y_clamp: (f64, f64),
    /// The least room left above and below the curves, in y units.
    min_pad: f64,
    legend: SeriesLabelPosition,
    epochs: usize,
    curves: &'a [Curve],
    /// The x axis starts at 0 (per-step values from the first step) instead of epoch 1.
    from_zero: bool,
    /// Vertical lines: (epoch, legend label).
    markers: &'a [(f64, String)],
    /// Tick label of a value on an axis spanning the second argument.
    y_format: fn(f64, f64) -> String,
}

fn draw_panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, panel: &Panel<'_>) -> Result<()> {
    let (lo, hi) = panel
        .curves
        .iter()
        .flat_map(Curve::values)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() {
        // A flat curve (a constant learning rate) gets room of a tenth of its value.
        let pad = ((hi - lo) * 0.08).max(panel.min_pad).max(if hi > lo { 0.0 } else { hi.abs() * 0.1 });
        ((lo - pad).max(panel.y_clamp.0), (hi + pad).min(panel.y_clamp.1))
    } else {
        // Nothing finite to show: an empty axis.
        (panel.y_clamp.0, panel.y_clamp.1.min(1.0))
    };
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };

    let epochs = panel.epochs;
    let x_pad = if epochs == 1 { 0.5 } else { ((epochs - 1) as f64 * 0.03).max(0.25) };
    let mut ticks: Vec<f64> = epoch_ticks(epochs).into_iter().map(|e| e as f64).collect();
    let start = if panel.from_zero {
        ticks.insert(0, 0.0);
        -x_pad
    } else {
        1.0 - x_pad
    };

    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(EpochAxis { start, end: epochs as f64 + x_pad, ticks }, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(panel.y_desc)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .x_label_formatter(&|v| format!("{:.0}", v))
        .y_label_formatter(&|v| (panel.y_format)(*v, hi - lo))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;

    let markers = epochs <= 40;
    for curve in panel.curves {
        let line = curve.color.stroke_width(2);
        let stroke = curve.stroke;
        let dashed = stroke != Stroke::Solid;
        let color = curve.color;
        let dots = curve.dots;
        chart
            .draw_series(LineSeries::new(std::iter::empty::<(f64, f64)>(), line))?
            .label(curve.label.as_str())
            .legend(move |(x, y)| {
                // A short line (broken for held-out sets) with the curve's marker.
                let line = color.stroke_width(2);
                let (first_end, second_start) = match stroke {
                    Stroke::Solid => (12, 12),
                    Stroke::Dashed => (6, 18),
                    Stroke::Dotted => (3, 21),
                };
                let marker = if dashed { color.stroke_width(2) } else { color.filled() };
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (first_end, 0)], line)
                    + PathElement::new(vec![(second_start, 0), (24, 0)], line)
                    + Circle::new((12, 0), if dots { 4 } else { 0 }, marker)
            });
        for segment in &curve.segments {
            match stroke {
                Stroke::Solid => {
                    chart.draw_series(LineSeries::new(segment.iter().copied(), line))?;
                }
                Stroke::Dashed => {
                    chart.draw_series(DashedLineSeries::new(segment.iter().copied(), 8, 5, line))?;
                }
                Stroke::Dotted => {
                    chart.draw_series(DashedLineSeries::new(segment.iter().copied(), 2, 4, line))?;
                }
            }
            if curve.dots && (markers || segment.len() == 1) {
                let marker = if dashed { curve.color.stroke_width(2) } else { curve.color.filled() };
                chart.draw_series(segment.iter().map(|&point| Circle::new(point, 4, marker)))?;
            }
        }
    }
    for (x, label) in panel.markers {
        let gray = RGBColor(110, 110, 110).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(*x, lo), (*x, hi)], 6, 4, gray))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], gray));
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .margin(10)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    Ok(())
}

/// The epoch ticks: 1, then multiples of a round step (1, 2, 5, 10, 20, 50, ...) giving
/// at most about 10 ticks, so 200 epochs tick at 1, 20, 40, ..., 200.
pub fn epoch_ticks(epochs: usize) -> Vec<usize> {
    let epochs = epochs.max(1);
    let mut step = 1;
    'search: for scale in [1usize, 10, 100, 1_000, 10_000, 100_000, 1_000_000] {
        for base in [1, 2, 5] {
            if base * scale * 10 >= epochs {
                step = base * scale;
                break 'search;
            }
        }
        step = 10 * scale;
    }
    let mut ticks = vec![1];
    ticks.extend((step..=epochs).step_by(step).filter(|&t| t > 1 && 2 * (t - 1) >= step));
    ticks
}

/// The epoch axis: a continuous range with a little room at both ends (so markers on
/// the first and last epoch are not cut) and ticks at whole epochs only.
struct EpochAxis {
    start: f64,
    end: f64,
    ticks: Vec<f64>,
}

impl Ranged for EpochAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = (value - self.start) / (self.end - self.start);
        limit.0 + ((limit.1 - limit.0) as f64 * t).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.start..self.end
    }
}

/// Tick label for a learning rate: scientific notation (rates span 1e-6 to 1).
fn format_lr_tick(v: f64, _span: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v:.1e}")
    }
}

/// Tick label for a value on an axis spanning `span`: enough decimals to tell ticks apart.
fn format_tick(v: f64, span: f64) -> String {
    let decimals = if span >= 10.0 {
        0
    } else if span >= 2.0 {
        1
    } else if span >= 0.2 {
        2
    } else {
        3
    };
    format!("{v:.decimals$}")
}
