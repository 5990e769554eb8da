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
    /// `FIELD_BANK` smoothed fields of `width * height` values, already scaled by alpha;
    /// empty without elastic distortion.
    fields: Vec<f32>,
}

impl Augmenter {
    /// An augmenter for `width` x `height` images whose random numbers derive from `seed`.
    pub fn new(spec: Augment, width: usize, height: usize, seed: u64) -> Result<Augmenter> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidArgument(format!(
                "augmentation needs images; got a {width}x{height} image shape"
            )));
        }
        spec.validate(width, height)?;
        let key = Rng::new(seed ^ 0xA06D_E27A_0000_0000).next_u64();
        let fields = if spec.elastic_alpha > 0.0 {
            field_bank(width, height, spec.elastic_alpha, spec.elastic_sigma, &mut Rng::new(key ^ 0xF1E1D))
        } else {
            Vec::new()
        };
        Ok(Augmenter { spec, width, height, key, fields })
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
            let n = self.image_len();
            let pick = |r: &mut Rng| {
                let k = r.below(FIELD_BANK as u32) as usize;
                let sign = if r.next_u32() & 1 == 0 { 1.0 } else { -1.0 };
                (&self.fields[k * n..(k + 1) * n], sign)
            };
            let fx = pick(&mut rng);
            let fy = pick(&mut rng);
            warp_image(src, dst, self.width, self.height, &warp, Some((fx, fy)));
        }
    }
}

/// A scalar displacement field per axis, each with its sign.
type Displacement<'a> = ((&'a [f32], f32), (&'a [f32], f32));

/// Resamples `src` (`width` x `height`, row-major) through `warp` and an optional per-pixel
/// displacement into `dst`, bilinearly, with zeros outside the image, rounding to bytes.
///
/// # Panics
/// If `src`, `dst` or a displacement field does not hold `width * height` values.
pub fn warp_image(
    src: &[u8],
    dst: &mut [u8],
    width: usize,
    height: usize,
    warp: &Warp,
    displacement: Option<Displacement<'_>>,
) {
    let n = width * height;
    assert!(src.len() == n && dst.len() == n, "warp_image: images must hold {width}x{height} pixels");
    if let Some(((fx, _), (fy, _))) = displacement {
        assert!(fx.len() == n && fy.len() == n, "warp_image: displacement fields must hold {n} values");
    }
    // The source with a 2-pixel zero border: clamped coordinates then always read inside it.
    const PAD: usize = 2;
    let (pw, ph) = (width + 2 * PAD, height + 2 * PAD);
    let mut small = [0u8; 36 * 36];
    let mut big = Vec::new();
    let padded: &mut [u8] = if pw * ph <= small.len() {
        &mut small[..pw * ph]
    } else {
        big.resize(pw * ph, 0);
        &mut big
    };
    // Per padded row r: the columns holding ink in rows r and r + 1 (`lo > hi` when none), so
    // that the ~80% of MNIST's pixels whose four taps are all blank cost two comparisons.
    let (mut lo_small, mut hi_small) = ([usize::MAX; 36], [0usize; 36]);
    let (mut lo_big, mut hi_big) = (Vec::new(), Vec::new());
    let (ink_lo, ink_hi): (&mut [usize], &mut [usize]) = if ph <= lo_small.len() {
        (&mut lo_small[..ph], &mut hi_small[..ph])
    } else {
        lo_big.resize(ph, usize::MAX);
        hi_big.resize(ph, 0);
        (&mut lo_big, &mut hi_big)
    };
    for (y, row) in src.chunks_exact(width).enumerate() {
        let start = (y + PAD) * pw + PAD;
        padded[start..start + width].copy_from_slice(row);
        if let (Some(first), Some(last)) = (row.iter().position(|&v| v > 0), row.iter().rposition(|&v| v > 0))
        {
            for r in [y + PAD - 1, y + PAD] {
                ink_lo[r] = ink_lo[r].min(first + PAD);
                ink_hi[r] = ink_hi[r].max(last + PAD);
            }
        }
    }
    let [a, b, c, d] = warp.inverse();
    let (cx, cy) = ((width as f32 - 1.0) * 0.5, (height as f32 - 1.0) * 0.5);
    let (tx, ty) = warp.shift;
    // Source coordinates in padded pixels: x' = a x + row_x, y' = c x + row_y along a row.
    let pad = PAD as f32;
    let (max_x, max_y) = (width as f32 + pad, height as f32 + pad);
    for (y, out) in dst.chunks_exact_mut(width).enumerate() {
        let dy = y as f32 - cy - ty;
        let row_x = cx + pad - a * (cx + tx) + b * dy;
        let row_y = cy + pad - c * (cx + tx) + d * dy;
        for (x, o) in out.iter_mut().enumerate() {
            let mut sx = a * x as f32 + row_x;
            let mut sy = c * x as f32 + row_y;
            if let Some(((fx, sign_x), (fy, sign_y))) = displacement {
                let p = y * width + x;
                sx += sign_x * fx[p];
                sy += sign_y * fy[p];
            }
            // Outside [0, size + 2] (padded) both taps are in the zero border; inside, the
            // value is >= 0, so the truncating cast is a floor.
            let sx = sx.clamp(0.0, max_x);
            let sy = sy.clamp(0.0, max_y);
            let (x0, y0) = (sx as usize, sy as usize);
            if x0 + 1 < ink_lo[y0] || x0 > ink_hi[y0] {
                *o = 0;
                continue;
            }
            let (wx, wy) = (sx - x0 as f32, sy - y0 as f32);
            let i = y0 * pw + x0;
            let tap = |k: usize| f32::from(padded[k]);
            let top = tap(i) + wx * (tap(i + 1) - tap(i));
            let bottom = tap(i + pw) + wx * (tap(i + pw + 1) - tap(i + pw));
            let v = top + wy * (bottom - top);
            *o = (v + 0.5).clamp(0.0, 255.0) as u8;
        }
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
