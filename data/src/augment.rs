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
use cpu::warp::{blend_grid, Grid, Source};
use mlp::Rng;
use rayon::prelude::*;
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
    /// Per field, its largest magnitude (fixed point).
    field_reach: Vec<i32>,
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
        let (fields, field_reach) = if spec.elastic_alpha > 0.0 {
            let bank = field_bank(
                width,
                height,
                spec.elastic_alpha,
                spec.elastic_sigma,
                &mut Rng::new(key ^ 0xF1E1D),
            );
            let fields: Vec<i32> = bank.par_iter().map(|&v| to_fixed(v)).collect();
            let field_reach = fields
                .par_chunks_exact(width * height)
                .map(|f| f.iter().map(|v| v.abs()).max().unwrap_or(0))
                .collect();
            (fields, field_reach)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Augmenter { spec, width, height, key, fields, field_reach })
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
        if self.spec == Augment::NONE {
            dst.copy_from_slice(src);
            return;
        }
        let (warp, displacement) = self.draw(epoch, index);
        let (w, h) = (self.width, self.height);
        warp_image(src, dst, w, h, &warp, displacement.as_ref(), FAINT_CUTOFF);
    }

    /// Sample `index`'s random transform for `epoch`: the affine map and the elastic
    /// displacement (none without elastic strength).
    fn draw(&self, epoch: u64, index: u64) -> (Warp, Option<Displacement<'_>>) {
        let mut rng = Rng::new(Rng::new(self.key ^ epoch).next_u64() ^ index);
        let a = self.spec;
        let mut sym = |r: f32| if r > 0.0 { rng.uniform_in(-r, r) } else { 0.0 };
        let degrees = sym(a.rotate_deg);
        let shear = sym(a.shear_deg);
        let scale = (1.0 + sym(a.scale), 1.0 + sym(a.scale));
        let shift = (sym(a.shift_px), sym(a.shift_px));
        let warp = Warp::new(degrees, shear, scale, shift);
        if self.fields.is_empty() {
            return (warp, None);
        }
        let n = self.image_len();
        let pick = |r: &mut Rng| {
            let k = r.below(FIELD_BANK as u32) as usize;
            let negate = r.next_u32() & 1 != 0;
            Field { values: &self.fields[k * n..(k + 1) * n], reach: self.field_reach[k], negate }
        };
        let x = pick(&mut rng);
        let y = pick(&mut rng);
        (warp, Some(Displacement { x, y }))
    }
}

/// Largest image side [`Augmenter`] takes: fixed-point source coordinates stay far from
/// `i32` overflow (`MAX_SIDE * 8 << FRAC_BITS` < 2^31).
pub const MAX_SIDE: usize = 8192;

/// Blends under this value (1/8 of full ink) become 0 in a distorted image. Resampling
/// spreads a digit's edges into faint fringes: with the default strengths 24.9% of MNIST's
/// pixels came out nonzero against the originals' 19.1%, and the first layer's products,
/// which skip zero inputs, slowed by as much. Without the fringes: 19.4%.
pub const FAINT_CUTOFF: u8 = 32;

/// Fractional bits of the fixed-point source coordinates and displacements.
pub const FRAC_BITS: u32 = cpu::warp::FRAC_BITS;

/// `v` pixels in fixed point, rounded (saturating far outside any image).
fn to_fixed(v: f32) -> i32 {
    // `f32::round` (half away from zero) without its libm call, `s - trunc(s)` being exact,
    // and without branches: their directions are a coin toss.
    let s = v * (1 << FRAC_BITS) as f32;
    let t = s as i32;
    let frac = s - t as f32;
    t.saturating_add(i32::from(frac >= 0.5)).saturating_sub(i32::from(frac <= -0.5))
}

/// One scalar displacement field of the bank as a sample uses it: fixed-point values, their
/// largest magnitude, and whether the sample negates it.
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    values: &'a [i32],
    reach: i32,
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

    /// The largest displacement, pixels.
    fn reach(&self) -> f32 {
        self.reach as f32 / (1 << FRAC_BITS) as f32
    }
}

/// A sample's elastic displacement: one field per axis.
#[derive(Clone, Copy, Debug)]
pub struct Displacement<'a> {
    x: Field<'a>,
    y: Field<'a>,
}

/// `v` rounded down, exact for |v| < 2^23 (bigger values are whole already or saturate,
/// which [`span`]'s clamps absorb). Inline: the x86-64 baseline has no rounding instruction,
/// and a libm call per row cost more than the row's blend.
fn floor(v: f32) -> f32 {
    let t = v as i32 as f32;
    if t > v {
        t - 1.0
    } else {
        t
    }
}

/// `v` rounded up, as [`floor`].
fn ceil(v: f32) -> f32 {
    -floor(-v)
}

/// Resamples `src` (`width` x `height`, row-major) through `warp` and an optional per-pixel
/// displacement into `dst`, bilinearly, with zeros outside the image, rounding to bytes;
/// values under `cutoff` become 0.
///
/// Source coordinates are fixed point ([`FRAC_BITS`] fractional bits) stepped by constant
/// increments along a row; the bilinear weights have 8 bits and the blend is integer, so a
/// whole or half pixel shift is exact. Only output pixels whose source can reach the ink's
/// bounding box are resampled (a rectangle found once per image); the rest are zero.
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
    cutoff: u8,
) {
    let n = width * height;
    assert!(src.len() == n && dst.len() == n, "warp_image: images must hold {width}x{height} pixels");
    assert!(width.max(height) <= MAX_SIDE, "warp_image: sides of at most {MAX_SIDE} pixels");
    // The size of MNIST and its kin as constants: fixed-size row copies instead of a memcpy
    // call per row, and the loops over rows and columns unrolled.
    if (width, height) == (28, 28) {
        warp_sized(src, dst, 28, 28, warp, displacement, cutoff);
    } else {
        warp_sized(src, dst, width, height, warp, displacement, cutoff);
    }
}

/// [`warp_image`] after its checks, inlined into each call so a constant size propagates.
#[inline(always)]
fn warp_sized(
    src: &[u8],
    dst: &mut [u8],
    width: usize,
    height: usize,
    warp: &Warp,
    displacement: Option<&Displacement<'_>>,
    cutoff: u8,
) {
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
    // The OR of all rows, 8 columns to a word, little-endian (column j in byte j % 8).
    let mut columns = [0u64; 4];
    let mut columns_big = Vec::new();
    let words = width.div_ceil(8);
    let columns: &mut [u64] = if words <= columns.len() {
        &mut columns[..words]
    } else {
        columns_big.resize(words, 0);
        &mut columns_big
    };
    let (mut box_x, mut box_y) = ((i32::MAX, i32::MIN), (i32::MAX, i32::MIN));
    for (y, row) in src.chunks_exact(width).enumerate() {
        let start = (y + PAD) * pw + PAD;
        let target = &mut padded[start..start + width];
        let mut any = 0;
        let mut words = row.chunks_exact(8);
        // Copied and ORed a word at a time (fixed-size copies, no memcpy call per row).
        for ((c, chunk), to) in columns.iter_mut().zip(words.by_ref()).zip(target.chunks_exact_mut(8)) {
            to.copy_from_slice(chunk);
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            *c |= word;
            any |= word;
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            target[width - rest.len()..].copy_from_slice(rest);
            let word = rest.iter().rev().fold(0u64, |w, &v| (w << 8) | u64::from(v));
            columns[width / 8] |= word;
            any |= word;
        }
        if any != 0 {
            let yp = (y + PAD) as i32;
            box_y = (box_y.0.min(yp), box_y.1.max(yp));
        }
    }
    let first = columns.iter().position(|&w| w != 0);
    let last = columns.iter().rposition(|&w| w != 0);
    if let (Some(first), Some(last)) = (first, last) {
        let first = first * 8 + (columns[first].trailing_zeros() / 8) as usize;
        let last = last * 8 + 7 - (columns[last].leading_zeros() / 8) as usize;
        box_x = ((first + PAD) as i32, (last + PAD) as i32);
    }
    dst.fill(0);
    if box_x.0 > box_x.1 {
        return;
    }
    // Output pixel p reads the source at s = A^-1 (p - centre - shift) + centre + e(p), so
    // p = A (s - e(p) - centre) + centre + shift. It can read ink only if s lies within one
    // pixel of the ink's box (the bilinear taps), so s - e within `reach` more per axis; one
    // more pixel covers the fixed-point rounding. The corners of that source rectangle,
    // mapped forward, bound the output pixels to resample: the rest stay 0.
    let [a, b, c, d] = warp.inverse();
    let [ma, mb, mc, md] = warp.matrix;
    let (cx, cy) = ((width as f32 - 1.0) * 0.5, (height as f32 - 1.0) * 0.5);
    let (tx, ty) = warp.shift;
    let pad = PAD as f32;
    let (ex, ey) = displacement.map_or((0.0, 0.0), |e| (e.x.reach(), e.y.reach()));
    let (lo_x, hi_x) = (box_x.0 as f32 - pad - 2.0 - ex - cx, box_x.1 as f32 - pad + 2.0 + ex - cx);
    let (lo_y, hi_y) = (box_y.0 as f32 - pad - 2.0 - ey - cy, box_y.1 as f32 - pad + 2.0 + ey - cy);
    let (mut out_x, mut out_y) = ((f32::MAX, f32::MIN), (f32::MAX, f32::MIN));
    for (sx, sy) in [(lo_x, lo_y), (hi_x, lo_y), (lo_x, hi_y), (hi_x, hi_y)] {
        let (px, py) = (ma * sx + mb * sy + cx + tx, mc * sx + md * sy + cy + ty);
        out_x = (out_x.0.min(px), out_x.1.max(px));
        out_y = (out_y.0.min(py), out_y.1.max(py));
    }
    let first = |v: f32| floor(v).max(0.0) as usize;
    let end = |v: f32, n: usize| (ceil(v) + 1.0).clamp(0.0, n as f32) as usize;
    let (x0, x1) = (first(out_x.0), end(out_x.1, width));
    let (y0, y1) = (first(out_y.0), end(out_y.1, height));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    // Source coordinates in padded pixels: x' = a x + row_x, y' = c x + row_y along a row.
    let (step_x, step_y) = (to_fixed(a), to_fixed(c));
    let (max_x, max_y) = (((width + PAD) << FRAC_BITS) as i32, ((height + PAD) << FRAC_BITS) as i32);
    let (sign_x, sign_y) = displacement.map_or((0, 0), |e| (e.x.sign(), e.y.sign()));
    let source = Source::new(padded, pw, max_x, max_y).with_cutoff(cutoff).with_ink(box_x, box_y);
    let mut starts_small = [(0i32, 0i32); 32];
    let mut starts_big = Vec::new();
    let starts: &mut [(i32, i32)] = if y1 - y0 <= starts_small.len() {
        &mut starts_small[..y1 - y0]
    } else {
        starts_big.resize(y1 - y0, (0, 0));
        &mut starts_big
    };
    let (row_x, row_y) = (cx + pad - a * (cx + tx), cy + pad - c * (cx + tx));
    for (y, start) in (y0..y1).zip(starts.iter_mut()) {
        let dy = y as f32 - cy - ty;
        *start =
            (to_fixed(row_x + b * dy) + step_x * x0 as i32, to_fixed(row_y + d * dy) + step_y * x0 as i32);
    }
    // The box's rows are blended a vector at a time, a vector whose taps all miss the ink's
    // box written as zeros; no finer branch: MNIST's ink and blank alternate too irregularly
    // to predict.
    let first = y0 * width + x0;
    let field = displacement.map(|e| (&e.x.values[first..], &e.y.values[first..], sign_x, sign_y));
    let grid = Grid { starts, step: (step_x, step_y), width: x1 - x0, stride: width, field };
    blend_grid(Isa::best(), &source, &grid, &mut dst[first..]);
}

/// `FIELD_BANK` fields of `width * height` uniform(-1, 1) values, each smoothed by a
/// Gaussian of `sigma` (separable, truncated at 4 sigma, normalized to sum 1, zeros outside
/// the image as scipy's `mode="constant"`) and scaled by `alpha`.
///
/// The noise is drawn field after field from `rng`; the smoothing then runs on rayon's
/// threads, each field alone, so the bank is the same for any thread count.
fn field_bank(width: usize, height: usize, alpha: f32, sigma: f32, rng: &mut Rng) -> Vec<f32> {
    let radius = (4.0 * sigma).ceil() as usize;
    let mut kernel: Vec<f32> = (0..=2 * radius)
        .map(|i| (-((i as f32 - radius as f32).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let n = width * height;
    let mut bank = vec![0f32; FIELD_BANK * n];
    bank.iter_mut().for_each(|v| *v = rng.uniform_in(-1.0, 1.0));
    bank.par_chunks_mut(n)
        .for_each_init(Vec::new, |scratch, field| smooth(field, width, height, &kernel, alpha, scratch));
    bank
}

/// Convolves `field` (`width` x `height`) with `kernel` along rows, then along columns,
/// zeros outside, and scales it by `alpha`. Each output sums its products in the kernel's
/// order with the outside's zeros included (adding `w * 0.0` changes no sum). Each pass
/// convolves down the columns of the transpose of its input, each tap one multiply-add over
/// the whole field (loops that vectorize fully, where a 28-pixel row does not): the first
/// pass so runs along the field's rows, and the second, on the first's output, along its
/// columns, leaving the field as it was laid out.
fn smooth(
    field: &mut [f32],
    width: usize,
    height: usize,
    kernel: &[f32],
    alpha: f32,
    scratch: &mut Vec<f32>,
) {
    let radius = kernel.len() / 2;
    for (row_len, rows) in [(width, height), (height, width)] {
        transpose_padded(field, row_len, radius, scratch);
        field.fill(0.0);
        convolve(field, scratch, kernel, rows);
    }
    field.iter_mut().for_each(|v| *v *= alpha);
}

/// Writes the transpose of `src` (rows of `row_len` values) into `out`, with `radius` rows
/// of zeros before and after.
fn transpose_padded(src: &[f32], row_len: usize, radius: usize, out: &mut Vec<f32>) {
    let rows = src.len() / row_len;
    out.clear();
    out.resize((row_len + 2 * radius) * rows, 0.0);
    for (y, row) in src.chunks_exact(row_len).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            out[(radius + x) * rows + y] = v;
        }
    }
}

/// `out[i] += kernel[k] * src[i + k * step]` for each tap `k` in order.
fn convolve(out: &mut [f32], src: &[f32], kernel: &[f32], step: usize) {
    for (k, &w) in kernel.iter().enumerate() {
        for (o, &v) in out.iter_mut().zip(&src[k * step..]) {
            *o += w * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpu::warp::Row;

    /// A 6x5 image with a distinct value in every pixel away from the border.
    fn ramp(width: usize, height: usize) -> Vec<u8> {
        (0..width * height).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn identity_warp_and_zero_strengths_leave_the_bytes_as_they_are() {
        let src = ramp(6, 5);
        let mut dst = vec![0; 30];
        warp_image(&src, &mut dst, 6, 5, &Warp::IDENTITY, None, 0);
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
        warp_image(&src, &mut dst, w, h, &Warp::translation(1.0, 0.0), None, 0);
        assert_eq!(dst, right);
        // And down by one: dst(x, y) = src(x, y - 1).
        let mut down = vec![0u8; w * h];
        down[w..].copy_from_slice(&src[..w * (h - 1)]);
        warp_image(&src, &mut dst, w, h, &Warp::translation(0.0, 1.0), None, 0);
        assert_eq!(dst, down);
    }

    #[test]
    fn half_pixel_shift_averages_neighbours() {
        // One bright pixel at (2, 2) of a 5x5 image moved by half a pixel right: the output
        // at x = 2 and x = 3 each get half of it (127.5 rounds to 128).
        let mut src = vec![0u8; 25];
        src[2 * 5 + 2] = 255;
        let mut dst = vec![0; 25];
        warp_image(&src, &mut dst, 5, 5, &Warp::translation(0.5, 0.0), None, 0);
        let mut expected = vec![0u8; 25];
        expected[2 * 5 + 2] = 128;
        expected[2 * 5 + 3] = 128;
        assert_eq!(dst, expected);
    }

    /// `warp_image` resamples only the output box that can reach ink: every pixel resampled
    /// instead (each row whole, by the portable blend) gives the same bytes, for strong
    /// distortions of small blobs anywhere in the image.
    #[test]
    fn resampling_only_the_box_that_can_reach_ink_changes_no_byte() {
        let (w, h) = (28, 28);
        let strong = Augment {
            rotate_deg: 45.0,
            shift_px: 5.0,
            scale: 0.4,
            shear_deg: 30.0,
            elastic_alpha: 60.0,
            elastic_sigma: 3.0,
        };
        let mut rng = Rng::new(11);
        for spec in [strong, Augment { elastic_alpha: 0.0, ..strong }, Augment::DEFAULT] {
            let aug = Augmenter::new(spec, w, h, 5).unwrap();
            for index in 0..400u64 {
                let mut src = vec![0u8; w * h];
                let (bx, by) = (rng.below(26) as usize, rng.below(26) as usize);
                let (bw, bh) = (1 + rng.below(8) as usize, 1 + rng.below(8) as usize);
                for y in by..(by + bh).min(h) {
                    for x in bx..(bx + bw).min(w) {
                        src[y * w + x] = rng.next_u32() as u8;
                    }
                }
                let mut got = vec![0u8; w * h];
                aug.apply(&src, &mut got, 1, index);
                let (warp, displacement) = aug.draw(1, index);
                // The whole image through the same coordinates, padded by 2 as warp_image pads.
                let pw = w + 4;
                let mut padded = vec![0u8; pw * (h + 4) + 4];
                for y in 0..h {
                    padded[(y + 2) * pw + 2..(y + 2) * pw + 2 + w].copy_from_slice(&src[y * w..(y + 1) * w]);
                }
                let max = |n: usize| ((n + 2) << FRAC_BITS) as i32;
                let source = Source::new(&padded, pw, max(w), max(h)).with_cutoff(FAINT_CUTOFF);
                let [a, b, c, d] = warp.inverse();
                let (cx, cy) = ((w as f32 - 1.0) * 0.5, (h as f32 - 1.0) * 0.5);
                let (tx, ty) = warp.shift;
                let mut want = vec![0u8; w * h];
                for y in 0..h {
                    let dy = y as f32 - cy - ty;
                    let start = (
                        to_fixed(cx + 2.0 - a * (cx + tx) + b * dy),
                        to_fixed(cy + 2.0 - c * (cx + tx) + d * dy),
                    );
                    let field = displacement.as_ref().map(|e| {
                        let row = y * w..(y + 1) * w;
                        (&e.x.values[row.clone()], &e.y.values[row], e.x.sign(), e.y.sign())
                    });
                    let row = Row { start, step: (to_fixed(a), to_fixed(c)), field };
                    cpu::warp::blend_row_portable(&source, &row, &mut want[y * w..(y + 1) * w]);
                }
                assert_eq!(got, want, "{spec}, sample {index}");
            }
        }
    }

    #[test]
    fn faint_fringes_under_the_cutoff_are_dropped() {
        // Half a pixel right: 200 splits into 100 and 100, 60 into 30 and 30 (under 32).
        let mut src = vec![0u8; 25];
        src[5 + 2] = 200;
        src[2 * 5 + 2] = 60;
        let mut dst = vec![0; 25];
        warp_image(&src, &mut dst, 5, 5, &Warp::translation(0.5, 0.0), None, FAINT_CUTOFF);
        let mut expected = vec![0u8; 25];
        expected[5 + 2] = 100;
        expected[5 + 3] = 100;
        assert_eq!(dst, expected);
        warp_image(&src, &mut dst, 5, 5, &Warp::translation(0.5, 0.0), None, 0);
        expected[2 * 5 + 2] = 30;
        expected[2 * 5 + 3] = 30;
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
        warp_image(&src, &mut dst, 28, 28, &Warp::new(30.0, 0.0, (1.0, 1.0), (0.0, 0.0)), None, 0);
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
    fn smoothing_is_the_direct_two_dimensional_convolution() {
        // A non-square field and a kernel wider than it: rows and columns must not be mixed
        // up, and the zeros outside count. The reference sums in f64, straight from the
        // definition.
        let (w, h) = (7, 4);
        let kernel = [0.1f32, 0.2, 0.4, 0.2, 0.1];
        let r = kernel.len() / 2;
        let mut rng = Rng::new(9);
        let field: Vec<f32> = (0..w * h).map(|_| rng.uniform_in(-1.0, 1.0)).collect();
        let mut smoothed = field.clone();
        smooth(&mut smoothed, w, h, &kernel, 3.0, &mut Vec::new());
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0f64;
                for (i, &ky) in kernel.iter().enumerate() {
                    for (j, &kx) in kernel.iter().enumerate() {
                        let (sy, sx) = ((y + i).wrapping_sub(r), (x + j).wrapping_sub(r));
                        if sy < h && sx < w {
                            sum += f64::from(ky) * f64::from(kx) * f64::from(field[sy * w + sx]);
                        }
                    }
                }
                let got = f64::from(smoothed[y * w + x]);
                assert!((got - 3.0 * sum).abs() < 1e-5, "({x}, {y}): {got} vs {}", 3.0 * sum);
            }
        }
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
