//! `augmented.png`: training images next to their distortions, so a user sees what
//! `--augment` asked for.

use std::path::Path;

use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{ensure_fonts, render_png, to_i32, to_u32, FONT};

/// Writes a grid (5 columns, up to 25 cells) where each cell shows an original image (left)
/// and its augmented version (right), scaled up with nearest neighbour, under `titles[i]`,
/// with `header` on top. Images are row-major gray pixels, `width * height` each.
pub fn augmented_grid(
    path: &Path,
    pairs: &[(&[u8], &[u8])],
    width: usize,
    height: usize,
    titles: &[String],
    header: &str,
) -> Result<()> {
    const MAX_CELLS: usize = 25;
    const COLUMNS: usize = 5;
    const PAD: usize = 10;
    const GAP: usize = 4;
    const TITLE_H: usize = 22;
    const HEADER_H: usize = 36;
    ensure!(
        !pairs.is_empty() && pairs.len() <= MAX_CELLS,
        "augmented_grid: 1 to {MAX_CELLS} images, got {}",
        pairs.len()
    );
    ensure!(
        titles.len() == pairs.len(),
        "augmented_grid: {} images but {} titles",
        pairs.len(),
        titles.len()
    );
    ensure!(width > 0 && height > 0, "augmented_grid: image size {width}x{height} is empty");
    for (i, (a, b)) in pairs.iter().enumerate() {
        ensure!(
            a.len() == width * height && b.len() == width * height,
            "augmented_grid: pair {i} has {} and {} pixels, expected {width}x{height}",
            a.len(),
            b.len()
        );
    }
    ensure_fonts()?;
    let scale = (84 / width.max(height)).max(1);
    let (img_w, img_h) = (width * scale, height * scale);
    let cell_w = 2 * img_w + GAP + 2 * PAD;
    let cell_h = TITLE_H + img_h + 2 * PAD;
    let columns = pairs.len().min(COLUMNS);
    let rows = pairs.len().div_ceil(COLUMNS);
    let (canvas_w, canvas_h) = (columns * cell_w, HEADER_H + rows * cell_h);
    render_png(path, to_u32(canvas_w)?, to_u32(canvas_h)?, |root| {
        root.fill(&WHITE)?;
        let center_top = |size| (FONT, size).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(header, (to_i32(canvas_w / 2)?, 10), center_top(17)))?;
        for (i, (original, augmented)) in pairs.iter().enumerate() {
            let x0 = (i % COLUMNS) * cell_w;
            let y0 = HEADER_H + (i / COLUMNS) * cell_h;
            let title = titles[i].as_str();
            root.draw(&Text::new(title, (to_i32(x0 + cell_w / 2)?, to_i32(y0 + PAD)?), center_top(15)))?;
            let iy = y0 + PAD + TITLE_H;
            for (k, image) in [original, augmented].into_iter().enumerate() {
                let ix = x0 + PAD + k * (img_w + GAP);
                for y in 0..img_h {
                    for x in 0..img_w {
                        let v = image[(y / scale) * width + x / scale];
                        root.draw_pixel((to_i32(ix + x)?, to_i32(iy + y)?), &RGBColor(v, v, v))?;
                    }
                }
            }
        }
        Ok(())
    })
}
