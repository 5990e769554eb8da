//! Data augmentation for image data sets: a random affine map (shift, rotation, scale,
//! horizontal shear) and Simard et al.'s elastic distortion (2003: a per-pixel uniform(-1, 1)
//! displacement field per axis, smoothed by a Gaussian of `sigma`, scaled by `alpha`), applied
//! to `u8` images with bilinear resampling.
//!
//! Every random number of a sample comes from `(seed, epoch, sample index)` alone, so the
//! augmented bytes are the same for any thread count, batch size or order of work.
//!
//! Smoothing a fresh field for every sample would cost more than the training step it
//! feeds, so an [`Augmenter`] smooths [`FIELD_BANK`] scalar fields once (fixed by the seed);
//! a sample takes its x and y displacement from two fields of the bank drawn at random, each
//! with a random sign. The two axes of Simard's field are independent fields of the same
//! distribution, and a smoothed field's negation has that distribution too, so every sample
//! still gets one of Simard's fields, drawn from `4 * FIELD_BANK^2` combinations.
//!
//! ```
//! use data::augment::{Augment, Augmenter};
//! # fn main() -> Result<(), data::Error> {
//! let spec: Augment = "rotate=10,shift=2,elastic=34:4".parse()?;
//! let augmenter = Augmenter::new(spec, 28, 28, 7)?;
//! let image = [0u8; 784];
//! let mut out = [0u8; 784];
//! augmenter.apply(&image, &mut out, 0, 42);
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;

use cpu::isa::Isa;
use cpu::warp::{blend_row, Row, Source};
use mlp::Rng;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// Scalar displacement fields an [`Augmenter`] smooths once and draws from.
pub const FIELD_BANK: usize = 256;

/// Largest rotation range, degrees.
pub const MAX_ROTATE_DEG: f32 = 180.0;
/// Largest horizontal shear range, degrees (tan 60° is a strong slant already).
pub const MAX_SHEAR_DEG: f32 = 60.0;
/// Largest scale range: factors in `[1 - scale, 1 + scale]` stay at least 0.5.
pub const MAX_SCALE: f32 = 0.5;
/// Largest elastic `alpha` (pixels per unit of the smoothed field).
pub const MAX_ELASTIC_ALPHA: f32 = 200.0;
/// Largest elastic `sigma`, pixels.
pub const MAX_ELASTIC_SIGMA: f32 = 20.0;

/// Augmentation strengths: each sample draws its transform uniformly within them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Rotation angle range, degrees: uniform in `[-rotate_deg, rotate_deg]`.
    pub rotate_deg: f32,
    /// Translation range per axis, pixels: uniform in `[-shift_px, shift_px]`.
    pub shift_px: f32,
    /// Scale range: a factor per axis uniform in `[1 - scale, 1 + scale]`.
    pub scale: f32,
    /// Horizontal shear angle range, degrees: uniform in `[-shear_deg, shear_deg]`.
    pub shear_deg: f32,
    /// Elastic distortion strength (0: none).
    pub elastic_alpha: f32,
    /// Elastic distortion smoothness: the Gaussian's sigma, pixels.
    pub elastic_sigma: f32,
}

impl Augment {
    /// What `--augment` alone gives: rotation ±10°, shift ±1 px, scale ±10%, shear ±10° and
    /// elastic alpha 34, sigma 4 (Simard et al.'s MNIST values; Ciresan et al. 2010 use
    /// rotation 7.5-15°, scale 15-20%, shear 5-15°, alpha 36-38, sigma 5-6).
    pub const DEFAULT: Augment = Augment {
        rotate_deg: 10.0,
        shift_px: 1.0,
        scale: 0.1,
        shear_deg: 10.0,
        elastic_alpha: 34.0,
        elastic_sigma: 4.0,
    };

    /// All strengths zero: every image comes out as it went in.
    pub const NONE: Augment = Augment {
        rotate_deg: 0.0,
        shift_px: 0.0,
        scale: 0.0,
        shear_deg: 0.0,
        elastic_alpha: 0.0,
        elastic_sigma: 0.0,
    };

    /// Checks every strength against its range, for images `width` x `height`.
    pub fn validate(&self, width: usize, height: usize) -> Result<()> {
        let max_shift = (width.min(height) / 2) as f32;
        let checks: [(&str, f32, f32, &str); 5] = [
            ("rotate", self.rotate_deg, MAX_ROTATE_DEG, "degrees, e.g. rotate=10"),
            ("shift", self.shift_px, max_shift, "pixels (half the image at most), e.g. shift=2"),
            ("scale", self.scale, MAX_SCALE, "a fraction, e.g. scale=0.1 for 90% to 110%"),
            ("shear", self.shear_deg, MAX_SHEAR_DEG, "degrees, e.g. shear=10"),
            ("elastic alpha", self.elastic_alpha, MAX_ELASTIC_ALPHA, "e.g. elastic=34:4"),
        ];
        for (name, value, max, hint) in checks {
            if !(value.is_finite() && (0.0..=max).contains(&value)) {
                return Err(Error::InvalidArgument(format!(
                    "augmentation {name} {value} is outside 0 to {max}: give {hint}"
                )));
            }
        }
        if self.elastic_alpha > 0.0
            && !(self.elastic_sigma.is_finite()
                && self.elastic_sigma >= 0.5
                && self.elastic_sigma <= MAX_ELASTIC_SIGMA)
        {
            return Err(Error::InvalidArgument(format!(
                "augmentation elastic sigma {} is outside 0.5 to {MAX_ELASTIC_SIGMA} pixels: give \
                 elastic=ALPHA:SIGMA, e.g. elastic=34:4",
                self.elastic_sigma
            )));
        }
        Ok(())
    }
}

impl Default for Augment {
    fn default() -> Self {
        Augment::DEFAULT
    }
}

impl fmt::Display for Augment {
    /// The spec string [`Augment::from_str`] reads back, strengths of 0 left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.rotate_deg > 0.0 {
            parts.push(format!("rotate={}", self.rotate_deg));
        }
        if self.shift_px > 0.0 {
            parts.push(format!("shift={}", self.shift_px));
        }
        if self.scale > 0.0 {
            parts.push(format!("scale={}", self.scale));
        }
        if self.shear_deg > 0.0 {
            parts.push(format!("shear={}", self.shear_deg));
        }
        if self.elastic_alpha > 0.0 {
            parts.push(format!("elastic={}:{}", self.elastic_alpha, self.elastic_sigma));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

impl FromStr for Augment {
    type Err = Error;

    /// `default` ([`Augment::DEFAULT`]), `none`, or comma-separated `key=value` pairs of
    /// `rotate=DEG`, `shift=PX`, `scale=F`, `shear=DEG`, `elastic=ALPHA:SIGMA`; the keys left
    /// out are off. Ranges are checked by [`Augment::validate`] (it needs the image size).
    fn from_str(text: &str) -> Result<Augment> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("default") {
            return Ok(Augment::DEFAULT);
        }
        if text.eq_ignore_ascii_case("none") {
            return Ok(Augment::NONE);
        }
        let bad = |msg: String| {
            Error::InvalidArgument(format!(
                "augmentation '{text}': {msg}; write comma-separated key=value pairs of rotate=DEG, \
                 shift=PX, scale=F, shear=DEG, elastic=ALPHA:SIGMA (e.g. rotate=10,shift=1,elastic=34:4), \
                 or default, or none"
            ))
        };
        let number = |key: &str, v: &str| -> Result<f32> {
            v.trim().parse::<f32>().map_err(|_| bad(format!("{key}={v} is not a number")))
        };
        let mut a = Augment::NONE;
        for part in text.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(bad(format!("'{part}' has no '='")));
            };
            let key = key.trim();
            match key {
                "rotate" => a.rotate_deg = number(key, value)?,
                "shift" => a.shift_px = number(key, value)?,
                "scale" => a.scale = number(key, value)?,
                "shear" => a.shear_deg = number(key, value)?,
                "elastic" => {
                    let Some((alpha, sigma)) = value.split_once(':') else {
                        return Err(bad(format!("elastic={value} needs ALPHA:SIGMA")));
                    };
                    a.elastic_alpha = number("elastic alpha", alpha)?;
                    a.elastic_sigma = number("elastic sigma", sigma)?;
                }
                _ => return Err(bad(format!("unknown key '{key}'"))),
            }
        }
        Ok(a)
    }
}

/// One sample's transform: output pixel `p` (pixel centres at integer coordinates) takes its
/// value from the input at `centre + inverse * (p - centre - shift) + displacement(p)`, with
/// bilinear interpolation and zeros outside the image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warp {
    /// The forward linear map (row-major 2x2) about the image centre.
    pub matrix: [f32; 4],
    /// The forward translation, pixels (x right, y down).
    pub shift: (f32, f32),
}

impl Warp {
    /// No change.
    pub const IDENTITY: Warp = Warp { matrix: [1.0, 0.0, 0.0, 1.0], shift: (0.0, 0.0) };

    /// Moves the image by `(dx, dy)` pixels.
    pub fn translation(dx: f32, dy: f32) -> Warp {
        Warp { shift: (dx, dy), ..Warp::IDENTITY }
    }

    /// Rotation by `degrees`, then horizontal shear and per-axis scale, then `shift`.
    pub fn new(degrees: f32, shear_deg: f32, scale: (f32, f32), shift: (f32, f32)) -> Warp {
        let (s, c) = degrees.to_radians().sin_cos();
        let k = shear_deg.to_radians().tan();
        // rotation [c -s; s c] * shear [1 k; 0 1] * scale [sx 0; 0 sy]
        let (sx, sy) = scale;
        let matrix = [c * sx, (c * k - s) * sy, s * sx, (s * k + c) * sy];
        Warp { matrix, shift }
    }

    /// The inverse of the linear part (the caller keeps the scale away from 0).
    fn inverse(&self) -> [f32; 4] {
        let [a, b, c, d] = self.matrix;
        let det = a * d - b * c;
        [d / det, -b / det, -c / det, a / det]
    }
}

/// Applies an [`Augment`] to `width` x `height` images: its displacement-field bank and the
/// run's seed.
#[derive(Clone, Debug)]
pub struct Augmenter {
    spec: Augment,
    width: usize,
    height: usize,
    key: u64,
    /// `FIELD_BANK` smoothed fields of `width * height` values, already scaled by alpha, in
    /// fixed point ([`FRAC_BITS`]); empty without elastic distortion.
    fields: Vec<i32>,
    /// Per field and image row, the smallest and largest value of that row of the field.
    field_rows: Vec<[i32; 2]>,
}

impl Augmenter {
    /// An augmenter for `width` x `height` images whose random numbers derive from `seed`.
    pub fn new(spec: Augment, width: usize, height: usize, seed: u64) -> Result<Augmenter> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidArgument(format!(
                "augmentation needs images; got a {width}x{height} image shape"
            )));
        }
        if width.max(height) > MAX_SIDE {
            return Err(Error::InvalidArgument(format!(
                "augmentation works on images up to {MAX_SIDE} pixels a side; got {width}x{height}: \
                 leave --augment out for this data set"
            )));
        }
        spec.validate(width, height)?;
        let key = Rng::new(seed ^ 0xA06D_E27A_0000_0000).next_u64();
        let (fields, field_rows) = if spec.elastic_alpha > 0.0 {
            let bank = field_bank(
                width,
                height,
                spec.elastic_alpha,
                spec.elastic_sigma,
                &mut Rng::new(key ^ 0xF1E1D),
            );
            let fields: Vec<i32> = bank.iter().map(|&v| to_fixed(v)).collect();
            let field_rows = fields
                .chunks_exact(width)
                .map(|row| [row.iter().copied().min().unwrap_or(0), row.iter().copied().max().unwrap_or(0)])
                .collect();
            (fields, field_rows)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Augmenter { spec, width, height, key, fields, field_rows })
    }

    /// The strengths.
    pub fn spec(&self) -> Augment {
        self.spec
    }

    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.width * self.height
    }

    /// Writes sample `index`'s augmented image for `epoch` into `dst`; the result depends
    /// only on (seed, epoch, index) and the image.
    ///
    /// # Panics
    /// If `src` or `dst` does not hold `width * height` pixels (a programming error: the
    /// loader checks the data set's image shape).
    pub fn apply(&self, src: &[u8], dst: &mut [u8], epoch: u64, index: u64) {
        let mut rng = Rng::new(Rng::new(self.key ^ epoch).next_u64() ^ index);
        let a = self.spec;
        let mut sym = |r: f32| if r > 0.0 { rng.uniform_in(-r, r) } else { 0.0 };
        let degrees = sym(a.rotate_deg);
        let shear = sym(a.shear_deg);
        let scale = (1.0 + sym(a.scale), 1.0 + sym(a.scale));
        let shift = (sym(a.shift_px), sym(a.shift_px));
        let warp = Warp::new(degrees, shear, scale, shift);
        if self.fields.is_empty() {
            warp_image(src, dst, self.width, self.height, &warp, None);
        } else {
            let (n, h) = (self.image_len(), self.height);
            let pick = |r: &mut Rng| {
                let k = r.below(FIELD_BANK as u32) as usize;
                let negate = r.next_u32() & 1 != 0;
                Field {
                    values: &self.fields[k * n..(k + 1) * n],
                    rows: &self.field_rows[k * h..(k + 1) * h],
                    negate,
                }
            };
            let x = pick(&mut rng);
            let y = pick(&mut rng);
            warp_image(src, dst, self.width, self.height, &warp, Some(&Displacement { x, y }));
        }
    }
}

/// Largest image side [`Augmenter`] takes: fixed-point source coordinates stay far from
/// `i32` overflow (`MAX_SIDE * 8 << FRAC_BITS` < 2^31).
pub const MAX_SIDE: usize = 8192;

/// Fractional bits of the fixed-point source coordinates and displacements.
pub const FRAC_BITS: u32 = cpu::warp::FRAC_BITS;

/// `v` pixels in fixed point, rounded (saturating far outside any image).
fn to_fixed(v: f32) -> i32 {
    (v * (1 << FRAC_BITS) as f32).round() as i32
}

/// One scalar displacement field of the bank as a sample uses it: fixed-point values, each
/// row's extremes, and whether the sample negates it.
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    values: &'a [i32],
    rows: &'a [[i32; 2]],
    negate: bool,
}

impl Field<'_> {
    /// The sign as a factor.
    fn sign(&self) -> i32 {
        if self.negate {
            -1
        } else {
            1
        }
    }

    /// The smallest and largest displacement along image row `y`, pixels.
    fn row_range(&self, y: usize) -> (f32, f32) {
        let [lo, hi] = self.rows[y];
        let (lo, hi) = if self.negate { (-hi, -lo) } else { (lo, hi) };
        let one = (1 << FRAC_BITS) as f32;
        (lo as f32 / one, hi as f32 / one)
    }
}

/// A sample's elastic displacement: one field per axis.
#[derive(Clone, Copy, Debug)]
pub struct Displacement<'a> {
    x: Field<'a>,
    y: Field<'a>,
}

/// The output columns `[start, end)` of `0..n` where `lo < base + step * x < hi` may hold
/// (found in floating point once per row; the caller's margins absorb the rounding).
fn span(base: f32, step: f32, lo: f32, hi: f32, n: usize) -> (usize, usize) {
    if step.abs() < 1e-6 {
        return if base > lo && base < hi { (0, n) } else { (0, 0) };
    }
    let (t0, t1) = ((lo - base) / step, (hi - base) / step);
    let (t0, t1) = if t0 <= t1 { (t0, t1) } else { (t1, t0) };
    let start = t0.floor().max(0.0);
    let end = (t1.ceil() + 1.0).min(n as f32);
    if start < end {
        (start as usize, end as usize)
    } else {
        (0, 0)
    }
}

/// Resamples `src` (`width` x `height`, row-major) through `warp` and an optional per-pixel
/// displacement into `dst`, bilinearly, with zeros outside the image, rounding to bytes.
///
/// Source coordinates are fixed point ([`FRAC_BITS`] fractional bits) stepped by constant
/// increments along a row; the bilinear weights have 8 bits and the blend is integer, so a
/// whole or half pixel shift is exact. Only output pixels whose source can reach the ink's
/// bounding box are resampled (per row, a span found once); the rest are zero.
///
/// # Panics
/// If `src` or `dst` does not hold `width * height` pixels, or a side exceeds [`MAX_SIDE`].
pub fn warp_image(
    src: &[u8],
    dst: &mut [u8],
    width: usize,
    height: usize,
    warp: &Warp,
    displacement: Option<&Displacement<'_>>,
) {
    let n = width * height;
    assert!(src.len() == n && dst.len() == n, "warp_image: images must hold {width}x{height} pixels");
    assert!(width.max(height) <= MAX_SIDE, "warp_image: sides of at most {MAX_SIDE} pixels");
    // The source with a 2-pixel zero border: clamped coordinates then always read inside it.
    const PAD: usize = 2;
    let (pw, ph) = (width + 2 * PAD, height + 2 * PAD);
    // 4 bytes more: the blend's gathers read 4 bytes at the bottom-right tap.
    let mut small = [0u8; 36 * 36 + 4];
    let mut big = Vec::new();
    let padded: &mut [u8] = if pw * ph + 4 <= small.len() {
        &mut small[..pw * ph + 4]
    } else {
        big.resize(pw * ph + 4, 0);
        &mut big
    };
    // The ink's bounding box in padded pixels, from the OR of all rows and of all columns
    // (plain loops the compiler vectorizes).
    let mut columns = [0u8; 32];
    let mut columns_big = Vec::new();
    let columns: &mut [u8] = if width <= columns.len() {
        &mut columns[..width]
    } else {
        columns_big.resize(width, 0);
        &mut columns_big
    };
    let (mut box_x, mut box_y) = ((i32::MAX, i32::MIN), (i32::MAX, i32::MIN));
    for (y, row) in src.chunks_exact(width).enumerate() {
        let start = (y + PAD) * pw + PAD;
        padded[start..start + width].copy_from_slice(row);
        columns.iter_mut().zip(row).for_each(|(c, &v)| *c |= v);
        if row.iter().fold(0, |acc, &v| acc | v) != 0 {
            let yp = (y + PAD) as i32;
            box_y = (box_y.0.min(yp), box_y.1.max(yp));
        }
    }
    if let (Some(first), Some(last)) =
        (columns.iter().position(|&v| v > 0), columns.iter().rposition(|&v| v > 0))
    {
        box_x = ((first + PAD) as i32, (last + PAD) as i32);
    }
    if box_x.0 > box_x.1 {
        dst.fill(0);
        return;
    }
    let [a, b, c, d] = warp.inverse();
    let (cx, cy) = ((width as f32 - 1.0) * 0.5, (height as f32 - 1.0) * 0.5);
    let (tx, ty) = warp.shift;
    // Source coordinates in padded pixels: x' = a x + row_x, y' = c x + row_y along a row.
    let pad = PAD as f32;
    let (step_x, step_y) = (to_fixed(a), to_fixed(c));
    let (max_x, max_y) = (((width + PAD) << FRAC_BITS) as i32, ((height + PAD) << FRAC_BITS) as i32);
    // A source point can read ink only within one pixel of the box; one more pixel of margin
    // covers the fixed-point rounding.
    let (lo_x, hi_x) = (box_x.0 as f32 - 2.0, box_x.1 as f32 + 2.0);
    let (lo_y, hi_y) = (box_y.0 as f32 - 2.0, box_y.1 as f32 + 2.0);
    let (sign_x, sign_y) = displacement.map_or((0, 0), |e| (e.x.sign(), e.y.sign()));
    let source = Source::new(padded, pw, max_x, max_y);
    let isa = Isa::best();
    for (y, out) in dst.chunks_exact_mut(width).enumerate() {
        let dy = y as f32 - cy - ty;
        let row_x = cx + pad - a * (cx + tx) + b * dy;
        let row_y = cy + pad - c * (cx + tx) + d * dy;
        let ((ex_lo, ex_hi), (ey_lo, ey_hi)) =
            displacement.map_or(((0.0, 0.0), (0.0, 0.0)), |e| (e.x.row_range(y), e.y.row_range(y)));
        let (x_start, x_end) = span(row_x, a, lo_x - ex_hi, hi_x - ex_lo, width);
        let (y_start, y_end) = span(row_y, c, lo_y - ey_hi, hi_y - ey_lo, width);
        let (start, end) = (x_start.max(y_start), x_end.min(y_end));
        if start >= end {
            out.fill(0);
            continue;
        }
        out[..start].fill(0);
        out[end..].fill(0);
        let sx = to_fixed(row_x) + step_x * start as i32;
        let sy = to_fixed(row_y) + step_y * start as i32;
        let field = displacement.map(|e| {
            let row = y * width;
            (&e.x.values[row + start..row + end], &e.y.values[row + start..row + end], sign_x, sign_y)
        });
        // Every pixel of the span is blended, without a branch on whether its taps hold ink:
        // MNIST's ink and blank alternate too irregularly to predict.
        let row = Row { start: (sx, sy), step: (step_x, step_y), field };
        blend_row(isa, &source, &row, &mut out[start..end]);
    }
}

/// `FIELD_BANK` fields of `width * height` uniform(-1, 1) values, each smoothed by a
/// Gaussian of `sigma` (separable, truncated at 4 sigma, normalized to sum 1, zeros outside
/// the image as scipy's `mode="constant"`) and scaled by `alpha`.
fn field_bank(width: usize, height: usize, alpha: f32, sigma: f32, rng: &mut Rng) -> Vec<f32> {
    let radius = (4.0 * sigma).ceil() as usize;
    let mut kernel: Vec<f32> = (0..=2 * radius)
        .map(|i| (-((i as f32 - radius as f32).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let n = width * height;
    let mut bank = vec![0f32; FIELD_BANK * n];
    let mut noise = vec![0f32; n];
    let mut rows = vec![0f32; n];
    for field in bank.chunks_exact_mut(n) {
        noise.iter_mut().for_each(|v| *v = rng.uniform_in(-1.0, 1.0));
        // Along rows, then along columns.
        for y in 0..height {
            for x in 0..width {
                let mut acc = 0.0;
                for (k, w) in kernel.iter().enumerate() {
                    let xs = x as isize + k as isize - radius as isize;
                    if (0..width as isize).contains(&xs) {
                        acc += w * noise[y * width + xs as usize];
                    }
                }
                rows[y * width + x] = acc;
            }
        }
        for y in 0..height {
            for x in 0..width {
                let mut acc = 0.0;
                for (k, w) in kernel.iter().enumerate() {
                    let ys = y as isize + k as isize - radius as isize;
                    if (0..height as isize).contains(&ys) {
                        acc += w * rows[ys as usize * width + x];
                    }
                }
                field[y * width + x] = alpha * acc;
            }
        }
    }
    bank
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6x5 image with a distinct value in every pixel away from the border.
    fn ramp(width: usize, height: usize) -> Vec<u8> {
        (0..width * height).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn identity_warp_and_zero_strengths_leave_the_bytes_as_they_are() {
        let src = ramp(6, 5);
        let mut dst = vec![0; 30];
        warp_image(&src, &mut dst, 6, 5, &Warp::IDENTITY, None);
        assert_eq!(dst, src);
        let aug = Augmenter::new(Augment::NONE, 6, 5, 3).unwrap();
        for index in 0..20 {
            dst.fill(0);
            aug.apply(&src, &mut dst, 2, index);
            assert_eq!(dst, src);
        }
    }

    #[test]
    fn a_one_pixel_shift_moves_every_pixel_by_one() {
        let (w, h) = (6, 5);
        let src = ramp(w, h);
        // Expected by hand: dst(x, y) = src(x - 1, y), and column 0 comes from outside (0).
        let mut right = vec![0u8; w * h];
        for y in 0..h {
            for x in 1..w {
                right[y * w + x] = src[y * w + x - 1];
            }
        }
        let mut dst = vec![0; w * h];
        warp_image(&src, &mut dst, w, h, &Warp::translation(1.0, 0.0), None);
        assert_eq!(dst, right);
        // And down by one: dst(x, y) = src(x, y - 1).
        let mut down = vec![0u8; w * h];
        down[w..].copy_from_slice(&src[..w * (h - 1)]);
        warp_image(&src, &mut dst, w, h, &Warp::translation(0.0, 1.0), None);
        assert_eq!(dst, down);
    }

    #[test]
    fn half_pixel_shift_averages_neighbours() {
        // One bright pixel at (2, 2) of a 5x5 image moved by half a pixel right: the output
        // at x = 2 and x = 3 each get half of it (127.5 rounds to 128).
        let mut src = vec![0u8; 25];
        src[2 * 5 + 2] = 255;
        let mut dst = vec![0; 25];
        warp_image(&src, &mut dst, 5, 5, &Warp::translation(0.5, 0.0), None);
        let mut expected = vec![0u8; 25];
        expected[2 * 5 + 2] = 128;
        expected[2 * 5 + 3] = 128;
        assert_eq!(dst, expected);
    }

    #[test]
    fn rotation_keeps_the_ink() {
        // A bar through the centre of a 28x28 image, rotated by 30 degrees.
        let mut src = vec![0u8; 784];
        for y in 8..20 {
            for x in 12..16 {
                src[y * 28 + x] = 200;
            }
        }
        let mass = |im: &[u8]| im.iter().map(|&v| f64::from(v)).sum::<f64>();
        let mut dst = vec![0; 784];
        warp_image(&src, &mut dst, 28, 28, &Warp::new(30.0, 0.0, (1.0, 1.0), (0.0, 0.0)), None);
        let (before, after) = (mass(&src), mass(&dst));
        assert!((after / before - 1.0).abs() < 0.03, "ink {before} became {after}");
        assert_ne!(dst, src, "a rotation by 30 degrees changes the image");
    }

    #[test]
    fn a_sample_depends_on_seed_epoch_and_index_only() {
        let src = ramp(28, 28);
        let aug = Augmenter::new(Augment::DEFAULT, 28, 28, 5).unwrap();
        let run = |aug: &Augmenter, epoch, index| {
            let mut d = vec![0; 784];
            aug.apply(&src, &mut d, epoch, index);
            d
        };
        assert_eq!(run(&aug, 1, 9), run(&aug, 1, 9));
        assert_eq!(run(&aug, 1, 9), run(&Augmenter::new(Augment::DEFAULT, 28, 28, 5).unwrap(), 1, 9));
        assert_ne!(run(&aug, 1, 9), run(&aug, 2, 9));
        assert_ne!(run(&aug, 1, 9), run(&aug, 1, 10));
        assert_ne!(run(&aug, 1, 9), run(&Augmenter::new(Augment::DEFAULT, 28, 28, 6).unwrap(), 1, 9));
    }

    #[test]
    fn field_bank_has_simards_spread() {
        // Uniform(-1, 1) noise (variance 1/3) smoothed by a normalized 2-D Gaussian: away from
        // the border the variance is 1/3 * sum(g^2) = 1/3 / (4 pi sigma^2) for a wide kernel.
        let (w, sigma) = (64, 3.0f32);
        let bank = field_bank(w, w, 1.0, sigma, &mut Rng::new(1));
        let mut sum_sq = 0.0f64;
        let mut count = 0usize;
        for field in bank.chunks_exact(w * w) {
            for y in 20..44 {
                for x in 20..44 {
                    sum_sq += f64::from(field[y * w + x]).powi(2);
                    count += 1;
                }
            }
        }
        let expected = 1.0 / 3.0 / (4.0 * std::f64::consts::PI * f64::from(sigma * sigma));
        let got = sum_sq / count as f64;
        assert!((got / expected - 1.0).abs() < 0.1, "variance {got}, expected {expected}");
    }

    #[test]
    fn spec_strings_parse_print_and_reject_bad_strengths() {
        let a: Augment = "rotate=12, shift=2,scale=0.15,shear=5,elastic=36:6".parse().unwrap();
        assert_eq!(
            a,
            Augment {
                rotate_deg: 12.0,
                shift_px: 2.0,
                scale: 0.15,
                shear_deg: 5.0,
                elastic_alpha: 36.0,
                elastic_sigma: 6.0
            }
        );
        assert_eq!(a.to_string().parse::<Augment>().unwrap(), a);
        assert_eq!("default".parse::<Augment>().unwrap(), Augment::DEFAULT);
        assert_eq!("none".parse::<Augment>().unwrap(), Augment::NONE);
        assert_eq!("rotate=5".parse::<Augment>().unwrap(), Augment { rotate_deg: 5.0, ..Augment::NONE });
        for bad in ["rotate", "spin=3", "rotate=x", "elastic=34"] {
            let e = bad.parse::<Augment>().unwrap_err().to_string();
            assert!(e.contains("key=value"), "{bad}: {e}");
        }
        for (bad, word) in [
            ("rotate=-1", "rotate"),
            ("rotate=200", "rotate"),
            ("shift=15", "shift"),
            ("scale=0.7", "scale"),
            ("shear=nan", "shear"),
            ("elastic=34:0", "sigma"),
            ("elastic=-3:4", "alpha"),
        ] {
            let a: Augment = bad.parse().unwrap();
            let e = Augmenter::new(a, 28, 28, 0).unwrap_err().to_string();
            assert!(e.contains(word) && e.contains("outside"), "{bad}: {e}");
        }
    }
}
