//! Turning a picture of a digit into an MNIST-style input for `predict MODEL IMAGE...`.
//!
//! MNIST digits are white (255) on black (0), 28x28 pixels, with the digit scaled to
//! fit a 20x20 box (aspect ratio kept) and its center of mass at the center of the
//! field. [`preprocess`] applies the same steps to any gray image, so a digit drawn
//! black on white in a paint program, or photographed, looks like what the network
//! was trained on.

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use image::imageops::FilterType;
use image::{GrayImage, ImageFormat};

/// Side of an MNIST image.
pub const SIDE: usize = 28;
/// Side of the box the digit is scaled to fit in.
const BOX: usize = 20;
/// Ink contrast (0..=255) below which an image counts as blank.
const MIN_CONTRAST: u8 = 32;
/// Fraction of the contrast above the background that counts as ink for the bounding box.
const INK_FRACTION: f64 = 0.25;

/// Reads a PNG or PNM (PGM P2/P5, also PBM/PPM/PAM) image of any size and color type
/// and returns the 28x28 = 784 MNIST-style gray pixels (row-major, white digit on
/// black) that [`preprocess`] makes of it. Transparent pixels count as white paper.
pub fn load_digit(path: &Path) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the image file {}", path.display()))?;
    let format = image::guess_format(&bytes)
        .map_err(|_| anyhow!("{}: not a PNG or PGM image (unrecognized file contents)", path.display()))?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Pnm) {
        bail!("{}: unsupported image format {format:?}: use PNG or PGM (P2/P5)", path.display());
    }
    let decoded = image::load_from_memory_with_format(&bytes, format)
        .with_context(|| format!("{}: cannot decode the {format:?} image", path.display()))?;
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    // Composite over white paper: a transparent background is blank, not black ink.
    let gray: Vec<u8> = decoded
        .to_luma_alpha8()
        .pixels()
        .map(|p| {
            let [luma, alpha] = p.0;
            let a = alpha as u32;
            ((luma as u32 * a + 255 * (255 - a) + 127) / 255) as u8
        })
        .collect();
    preprocess(&gray, width, height).with_context(|| format!("{}", path.display()))
}

/// Makes MNIST-style 28x28 pixels out of a `width` x `height` row-major gray image:
///
/// 1. if the background is light (mean of the border pixels above 127), inverts the
///    image so the digit is light on dark;
/// 2. subtracts the background level (median of the border) and stretches the
///    contrast to 0..=255;
/// 3. crops to the bounding box of the ink (pixels above a quarter of the contrast);
/// 4. scales the crop to fit a 20x20 box, keeping its aspect ratio (triangle filter,
///    which averages when shrinking);
/// 5. pastes it on a black 28x28 canvas so that its center of mass is at (14, 14),
///    staying inside the canvas.
///
/// Errors on a zero-size image, a pixel count that does not match the size, or an
/// image with no ink ("the image is blank").
pub fn preprocess(gray: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    ensure!(width > 0 && height > 0, "the image is empty ({width}x{height} pixels)");
    ensure!(
        width.checked_mul(height) == Some(gray.len()),
        "the image has {} pixels, expected {width}x{height}",
        gray.len()
    );

    // 1. Light background: invert so that ink is bright.
    let mut border: Vec<u8> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .filter(|&(x, y)| x == 0 || y == 0 || x == width - 1 || y == height - 1)
        .map(|(x, y)| gray[y * width + x])
        .collect();
    let border_mean = border.iter().map(|&v| v as u64).sum::<u64>() as f64 / border.len() as f64;
    let invert = border_mean > 127.0;
    let ink: Vec<u8> = if invert { gray.iter().map(|&v| 255 - v).collect() } else { gray.to_vec() };
    if invert {
        for v in &mut border {
            *v = 255 - *v;
        }
    }

    // 2. Background level and contrast.
    border.sort_unstable();
    let background = border[border.len() / 2];
    let peak = ink.iter().copied().max().unwrap_or(0);
    if peak <= background || peak - background < MIN_CONTRAST {
        bail!("the image is blank: no digit found (it needs dark ink on light paper or light ink on dark)");
    }
    let range = (peak - background) as f64;
    let level = |v: u8| -> f64 { (v.saturating_sub(background) as f64 / range).min(1.0) };

    // 3. Bounding box of the ink.
    let threshold = INK_FRACTION;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if level(ink[y * width + x]) >= threshold {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    // The peak pixel is above the threshold, so the box is never empty.
    let (crop_w, crop_h) = (x1 - x0 + 1, y1 - y0 + 1);
    let mut crop = GrayImage::new(to_u32(crop_w)?, to_u32(crop_h)?);
    for y in 0..crop_h {
        for x in 0..crop_w {
            let v = level(ink[(y0 + y) * width + x0 + x]);
            crop.put_pixel(to_u32(x)?, to_u32(y)?, image::Luma([(v * 255.0).round() as u8]));
        }
    }

    // 4. Fit in a 20x20 box, keeping the aspect ratio.
    let longest = crop_w.max(crop_h) as f64;
    let new_w = ((crop_w as f64 * BOX as f64 / longest).round() as usize).clamp(1, BOX);
    let new_h = ((crop_h as f64 * BOX as f64 / longest).round() as usize).clamp(1, BOX);
    let scaled = image::imageops::resize(&crop, to_u32(new_w)?, to_u32(new_h)?, FilterType::Triangle);
    // Shrinking thin strokes dims them: stretch back so the brightest pixel is 255.
    let scaled_peak = scaled.pixels().map(|p| p.0[0]).max().unwrap_or(0);
    if scaled_peak == 0 {
        bail!("the image is blank: the digit vanished when scaled to 20x20 pixels");
    }
    let digit: Vec<u8> = scaled
        .pixels()
        .map(|p| ((p.0[0] as u32 * 255 + scaled_peak as u32 / 2) / scaled_peak as u32) as u8)
        .collect();

    // 5. Center of mass at (14, 14).
    let (mut sum, mut sum_x, mut sum_y) = (0f64, 0f64, 0f64);
    for y in 0..new_h {
        for x in 0..new_w {
            let v = digit[y * new_w + x] as f64;
            sum += v;
            sum_x += v * x as f64;
            sum_y += v * y as f64;
        }
    }
    let center = SIDE as f64 / 2.0;
    let place = |com: f64, size: usize| -> usize {
        let offset = (center - com).round();
        offset.clamp(0.0, (SIDE - size) as f64) as usize
    };
    let left = place(sum_x / sum, new_w);
    let top = place(sum_y / sum, new_h);
    let mut out = vec![0u8; SIDE * SIDE];
    for y in 0..new_h {
        let row = (top + y) * SIDE + left;
        out[row..row + new_w].copy_from_slice(&digit[y * new_w..(y + 1) * new_w]);
    }
    Ok(out)
}

fn to_u32(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| anyhow!("the image is too large ({v} pixels wide or high)"))
}
