//! The `DataLoader`: batches of normalized `f32` inputs and `u32` labels, written into
//! buffers the caller owns, with a seeded shuffle per epoch.
//!
//! ```
//! use data::{Dataset, Features, DataLoader, LoaderOptions, Normalization};
//! # fn main() -> Result<(), data::Error> {
//! let ds = Dataset::new("toy", Features::U8(vec![0, 255, 128, 64, 32, 16]), 2, vec![0, 1, 1], 2, None)?;
//! let mut loader = DataLoader::new(&ds, LoaderOptions {
//!     batch_size: 2,
//!     shuffle: true,
//!     seed: 7,
//!     normalization: Normalization::Scale01,
//!     ..LoaderOptions::default()
//! })?;
//! let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
//! for epoch in 0..3 {
//!     loader.set_epoch(epoch);
//!     while let Some(n) = loader.next_batch(&mut x, &mut y) {
//!         // train on x[..n * 2], y[..n]
//!         assert!(n == 2 || n == 1);
//!     }
//! }
//! # Ok(()) }
//! ```

use rayon::prelude::*;

use std::sync::Arc;

use super::ahead::Ahead;
use super::augment::{Augment, Augmenter};
use super::dataset::{Dataset, Features};
use super::error::{Error, Result};
use cpu::prefetch::{prefetch, Cache};

/// How stored features become model inputs.
///
/// `u8` features are first scaled to `[0, 1]` (x / 255, like torchvision's `ToTensor`) for
/// [`Scale01`](Normalization::Scale01) and both standardizations; `f32` features are
/// standardized as they are. So `Standardize { mean: 0.1307, std: 0.3081 }` on MNIST does
/// exactly what `Normalize((0.1307,), (0.3081,))` does after `ToTensor()`.
#[derive(Clone, Debug, PartialEq)]
pub enum Normalization {
    /// Values as stored (u8 become 0.0..=255.0).
    None,
    /// x / 255: pixels to `[0, 1]` (for `f32` features too, e.g. MNIST exported to CSV).
    Scale01,
    /// (x' - mean) / std with one global mean and std, where x' is x / 255 for `u8`
    /// features and x for `f32` ones.
    Standardize {
        /// The mean to subtract.
        mean: f32,
        /// The standard deviation to divide by (positive).
        std: f32,
    },
    /// Like `Standardize` with a mean and std per feature (scikit-learn's
    /// `StandardScaler`): the right choice for tabular data whose columns have different
    /// units.
    PerFeature {
        /// One mean per feature.
        mean: Vec<f32>,
        /// One positive standard deviation per feature.
        std: Vec<f32>,
    },
}

impl Normalization {
    /// torchvision's customary MNIST normalization, `Normalize((0.1307,), (0.3081,))`.
    pub const MNIST: Normalization = Normalization::Standardize { mean: 0.1307, std: 0.3081 };

    /// Global standardization with the mean and std of `dataset` (compute it on the
    /// training set only, and reuse it for validation and test).
    pub fn standardize_from(dataset: &Dataset) -> Result<Normalization> {
        let (mean, std) = mean_std(dataset);
        if dataset.is_empty() || std.is_nan() || std <= 0.0 {
            return Err(Error::InvalidArgument(format!(
                "{}: cannot standardize: {}; use --normalization scale or none instead",
                dataset.name(),
                if dataset.is_empty() {
                    "the data set is empty"
                } else {
                    "all feature values are equal (standard deviation 0)"
                }
            )));
        }
        Ok(Normalization::Standardize { mean: mean as f32, std: std as f32 })
    }

    /// Per-feature standardization with the statistics of `dataset`; features that never
    /// vary (MNIST's corner pixels) get std 1, so they stay finite.
    pub fn per_feature_from(dataset: &Dataset) -> Result<Normalization> {
        if dataset.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{}: cannot standardize an empty data set",
                dataset.name()
            )));
        }
        let d = dataset.input_len();
        let n = dataset.len() as f64;
        let mut sum = vec![0f64; d];
        let mut sum_sq = vec![0f64; d];
        let mut add = |row: &mut dyn Iterator<Item = f64>| {
            for ((x, s), s2) in row.zip(&mut sum).zip(&mut sum_sq) {
                *s += x;
                *s2 += x * x;
            }
        };
        match dataset.features() {
            Features::U8(v) => {
                v.chunks_exact(d).for_each(|r| add(&mut r.iter().map(|&x| f64::from(x) / 255.0)))
            }
            Features::F32(v) => v.chunks_exact(d).for_each(|r| add(&mut r.iter().map(|&x| f64::from(x)))),
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sum
            .iter()
            .zip(&sum_sq)
            .map(|(s, s2)| {
                let m = s / n;
                let var = (s2 / n - m * m).max(0.0);
                let sd = var.sqrt() as f32;
                if sd > 1e-12 {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Normalization::PerFeature { mean, std })
    }

    /// Checks that this normalization can be used on `dataset` (positive finite std,
    /// per-feature vectors of the right length).
    pub fn check(&self, dataset: &Dataset) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidArgument(format!("{}: {msg}", dataset.name())));
        match self {
            Normalization::None | Normalization::Scale01 => Ok(()),
            Normalization::Standardize { mean, std } => {
                if !mean.is_finite() || !std.is_finite() || *std <= 0.0 {
                    return bad(format!(
                        "standardization needs a finite mean and a positive finite std, got \
                         mean {mean} and std {std}"
                    ));
                }
                Ok(())
            }
            Normalization::PerFeature { mean, std } => {
                let d = dataset.input_len();
                if mean.len() != d || std.len() != d {
                    return bad(format!(
                        "per-feature normalization has {} means and {} stds for {d} features; \
                         compute it on a data set of the same width",
                        mean.len(),
                        std.len()
                    ));
                }
                if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
                    return bad("per-feature normalization needs finite means and positive \
                                finite stds"
                        .to_string());
                }
                Ok(())
            }
        }
    }

    /// Normalizes one row of `u8` features into `dst` (same length as `src`), e.g. for
    /// `predict` on a single image.
    pub fn apply_u8(&self, src: &[u8], dst: &mut [f32]) {
        match self {
            Normalization::PerFeature { .. } => {
                for (i, (o, &x)) in dst.iter_mut().zip(src).enumerate() {
                    *o = self.per_feature(i, f32::from(x) / 255.0);
                }
            }
            _ => {
                let lut = self.u8_table();
                for (o, &x) in dst.iter_mut().zip(src) {
                    *o = lut[x as usize];
                }
            }
        }
    }

    /// Normalizes one row of `f32` features into `dst` (same length as `src`).
    pub fn apply_f32(&self, src: &[f32], dst: &mut [f32]) {
        match self {
            Normalization::None => {
                for (o, &x) in dst.iter_mut().zip(src) {
                    *o = x;
                }
            }
            Normalization::Scale01 => {
                for (o, &x) in dst.iter_mut().zip(src) {
                    *o = x / 255.0;
                }
            }
            Normalization::Standardize { mean, std } => {
                // In f64: x - mean can overflow f32 for extreme (finite) CSV values.
                let (mean, std) = (f64::from(*mean), f64::from(*std));
                for (o, &x) in dst.iter_mut().zip(src) {
                    *o = ((f64::from(x) - mean) / std) as f32;
                }
            }
            Normalization::PerFeature { .. } => {
                for (i, (o, &x)) in dst.iter_mut().zip(src).enumerate() {
                    *o = self.per_feature(i, x);
                }
            }
        }
    }

    fn per_feature(&self, i: usize, x: f32) -> f32 {
        match self {
            Normalization::PerFeature { mean, std } => {
                ((f64::from(x) - f64::from(mean[i])) / f64::from(std[i])) as f32
            }
            _ => x,
        }
    }

    /// The value of every byte under a global normalization (a 1 KiB lookup table).
    fn u8_table(&self) -> [f32; 256] {
        let mut lut = [0f32; 256];
        for (b, v) in lut.iter_mut().enumerate() {
            let x = b as f32;
            *v = match self {
                Normalization::None => x,
                Normalization::Scale01 => x / 255.0,
                Normalization::Standardize { mean, std } => (x / 255.0 - mean) / std,
                Normalization::PerFeature { .. } => x / 255.0,
            };
        }
        lut
    }
}

/// Global mean and (population) standard deviation of `dataset`'s features on the scale
/// [`Normalization::Standardize`] uses: x / 255 for `u8`, x for `f32`. `(0, 0)` when empty.
/// For the MNIST training set this gives the well-known 0.1307 and 0.3081.
pub fn mean_std(dataset: &Dataset) -> (f64, f64) {
    match dataset.features() {
        Features::U8(v) => {
            if v.is_empty() {
                return (0.0, 0.0);
            }
            let mut hist = [0u64; 256];
            for &x in v {
                hist[x as usize] += 1;
            }
            let n = v.len() as f64;
            let mean = hist.iter().enumerate().map(|(b, &c)| b as f64 * c as f64).sum::<f64>() / n;
            let var =
                hist.iter().enumerate().map(|(b, &c)| (b as f64 - mean).powi(2) * c as f64).sum::<f64>() / n;
            (mean / 255.0, var.sqrt() / 255.0)
        }
        Features::F32(v) => {
            if v.is_empty() {
                return (0.0, 0.0);
            }
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
            (mean, var.sqrt())
        }
    }
}

/// Writes one-hot rows for `labels` into `out` (`labels.len() * num_classes` values; the
/// rest of `out` is left alone).
///
/// # Panics
/// If `out` is shorter than `labels.len() * num_classes` or a label is not below
/// `num_classes`: both are programming errors (a data set's labels are checked on load).
pub fn one_hot(labels: &[u32], num_classes: usize, out: &mut [f32]) {
    assert!(
        out.len() >= labels.len() * num_classes,
        "one_hot: output buffer holds {} values but {} labels of {num_classes} classes need {}",
        out.len(),
        labels.len(),
        labels.len() * num_classes
    );
    for (row, &label) in out.chunks_exact_mut(num_classes).zip(labels) {
        assert!((label as usize) < num_classes, "one_hot: label {label} is not below {num_classes}");
        row.fill(0.0);
        row[label as usize] = 1.0;
    }
}

/// The order in which epoch `epoch` visits `n` samples: the identity without shuffling,
/// otherwise a permutation fixed by `(seed, epoch)` alone (not by earlier epochs), so a run
/// resumed at epoch 5 sees the batches an uninterrupted run would. Writes into `order`.
pub fn epoch_order(order: &mut Vec<u32>, n: u32, shuffle: bool, seed: u64, epoch: u64) {
    order.clear();
    order.extend(0..n);
    if shuffle {
        // Derive a per-run key from the seed, then one stream per epoch; SplitMix64 inside
        // Rng::new decorrelates neighbouring seeds.
        let key = mlp::Rng::new(seed).next_u64();
        mlp::Rng::new(key.wrapping_add(epoch)).shuffle(order);
    }
}

/// Rows the loader asks the memory for ahead of the one it copies.
const AHEAD: usize = 4;

/// One row of bytes as inputs under [`Normalization::None`], through `x * scale + offset`
/// when given: the values of the byte table and the affine pass after it (u8 to f32 is
/// exact), in one pass that vectorizes.
fn convert_row(raw: &[u8], out: &mut [f32], affine: Option<(&[f32], &[f32])>) {
    match affine {
        None => out.iter_mut().zip(raw).for_each(|(o, &x)| *o = f32::from(x)),
        Some((scale, offset)) => {
            for (((o, &x), s), b) in out.iter_mut().zip(raw).zip(scale).zip(offset) {
                *o = f32::from(x) * s + b;
            }
        }
    }
}

/// Options of a [`DataLoader`], named like PyTorch's `DataLoader` arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderOptions {
    /// Samples per batch (default 64).
    pub batch_size: usize,
    /// Visit the samples in a new random order each epoch (default false).
    pub shuffle: bool,
    /// The seed of the shuffle (default 0).
    pub seed: u64,
    /// Skip the last batch of an epoch when it is smaller than `batch_size` (default false).
    pub drop_last: bool,
    /// How features become inputs (default: as stored).
    pub normalization: Normalization,
    /// Random distortions of each image, drawn anew every epoch (default: none; image data
    /// sets only). The random numbers of a sample depend on `(seed, epoch, sample index)`.
    pub augment: Option<Augment>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batch_size: 64,
            shuffle: false,
            seed: 0,
            drop_last: false,
            normalization: Normalization::None,
            augment: None,
        }
    }
}

/// Batches from a [`Dataset`], written into caller-owned buffers: no allocation per batch.
///
/// Each epoch visits every sample exactly once (or all but the last partial batch, with
/// `drop_last`). [`DataLoader::next_batch`] returns `None` at the end of an epoch; the call
/// after that starts the next epoch, and [`DataLoader::set_epoch`] jumps to any epoch.
#[derive(Debug)]
pub struct DataLoader<'a> {
    dataset: &'a Dataset,
    options: LoaderOptions,
    lut: [f32; 256],
    /// With augmentation: the augmenter and the batch being distorted ahead of its turn,
    /// shared with the pool's idle threads ([`DataLoader::idle_work`]).
    ahead: Option<Arc<Ahead<'a>>>,
    order: Vec<u32>,
    pos: usize,
    epoch: u64,
    exhausted: bool,
}

impl<'a> DataLoader<'a> {
    /// A loader over `dataset`, positioned at the start of epoch 0.
    pub fn new(dataset: &'a Dataset, options: LoaderOptions) -> Result<Self> {
        if options.batch_size == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: batch size 0; use a positive batch size (e.g. 64)",
                dataset.name()
            )));
        }
        let n = u32::try_from(dataset.len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "{}: {} samples is more than a loader indexes (2^32 - 1)",
                dataset.name(),
                dataset.len()
            ))
        })?;
        options.normalization.check(dataset)?;
        let lut = options.normalization.u8_table();
        let ahead = match options.augment {
            None => None,
            Some(spec) => {
                let (images, (rows, cols)) = match (dataset.features(), dataset.image_shape()) {
                    (Features::U8(images), Some(shape)) => (images, shape),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "{}: augmentation distorts images, and this data set is a table \
                             (no image shape); use an IDX image data set such as MNIST, or leave \
                             --augment out",
                            dataset.name()
                        )))
                    }
                };
                let augmenter = Augmenter::new(spec, cols, rows, options.seed)?;
                Some(Arc::new(Ahead::new(augmenter, images, dataset.input_len(), options.batch_size)))
            }
        };
        let mut order = Vec::with_capacity(n as usize);
        epoch_order(&mut order, n, options.shuffle, options.seed, 0);
        Ok(DataLoader { dataset, options, lut, ahead, order, pos: 0, epoch: 0, exhausted: false })
    }

    /// The data set this loader reads.
    pub fn dataset(&self) -> &'a Dataset {
        self.dataset
    }

    /// The options it was made with.
    pub fn options(&self) -> &LoaderOptions {
        &self.options
    }

    /// Samples per full batch.
    pub fn batch_size(&self) -> usize {
        self.options.batch_size
    }

    /// Input values per sample.
    pub fn input_len(&self) -> usize {
        self.dataset.input_len()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches in one epoch (counting a last partial one unless `drop_last`).
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.options.batch_size);
        if self.options.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Samples delivered in one epoch.
    pub fn samples_per_epoch(&self) -> usize {
        if self.options.drop_last {
            self.batches_per_epoch() * self.options.batch_size
        } else {
            self.dataset.len()
        }
    }

    /// The augmenter, when the options ask for augmentation.
    pub fn augmenter(&self) -> Option<&Augmenter> {
        self.ahead.as_deref().map(Ahead::augmenter)
    }

    /// Work for the pool's idle threads while a training step runs on a batch: with
    /// augmentation, distorting the next batch's images one at a time (returning false when
    /// none is left); without, none. Hand it to `cpu::pool::with_spinning_pool_and` around the
    /// loop over batches. The batches are the same bytes with or without it.
    pub fn idle_work(&self) -> impl Fn() -> bool + Send + Sync + 'a {
        let ahead = self.ahead.clone();
        move || ahead.as_ref().is_some_and(|a| a.work_one())
    }

    /// The sample order of the current epoch (e.g. for a GPU path that holds the data set
    /// on the device and only needs indices).
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Moves to the start of epoch `epoch`; its order depends only on `(seed, epoch)`.
    pub fn set_epoch(&mut self, epoch: u64) {
        let n = self.order.len() as u32;
        epoch_order(&mut self.order, n, self.options.shuffle, self.options.seed, epoch);
        self.epoch = epoch;
        self.pos = 0;
        self.exhausted = false;
    }

    /// An input buffer that fits a full batch (`batch_size * input_len`).
    pub fn input_buffer(&self) -> Vec<f32> {
        vec![0.0; self.options.batch_size * self.dataset.input_len()]
    }

    /// A label buffer that fits a full batch.
    pub fn label_buffer(&self) -> Vec<u32> {
        vec![0; self.options.batch_size]
    }

    /// A one-hot target buffer that fits a full batch (`batch_size * num_classes`).
    pub fn target_buffer(&self) -> Vec<f32> {
        vec![0.0; self.options.batch_size * self.dataset.num_classes()]
    }

    /// Writes the next batch into the first `n * input_len` values of `inputs` and the first
    /// `n` of `labels`, and returns `Some(n)`; `None` at the end of the epoch (the next call
    /// then starts the next one).
    ///
    /// # Panics
    /// If `inputs` is shorter than `batch_size * input_len` or `labels` shorter than
    /// `batch_size` (size them with [`DataLoader::input_buffer`] and
    /// [`DataLoader::label_buffer`]).
    pub fn next_batch(&mut self, inputs: &mut [f32], labels: &mut [u32]) -> Option<usize> {
        self.fill_batch(inputs, labels, None)
    }

    /// Like [`DataLoader::next_batch`], then maps every row through `x[j] * scale[j] +
    /// offset[j]` (a model's stored input pipeline) in the same pass over the batch: the same
    /// values as mapping afterwards, without reading the batch twice.
    ///
    /// # Panics
    /// As `next_batch`, and if `scale` or `offset` is shorter than `input_len`.
    pub fn next_batch_affine(
        &mut self,
        inputs: &mut [f32],
        labels: &mut [u32],
        scale: &[f32],
        offset: &[f32],
    ) -> Option<usize> {
        let d = self.dataset.input_len();
        assert!(
            scale.len() >= d && offset.len() >= d,
            "DataLoader::next_batch_affine: {} scales and {} offsets for {d} features",
            scale.len(),
            offset.len()
        );
        self.fill_batch(inputs, labels, Some((&scale[..d], &offset[..d])))
    }

    /// The samples of the batch at position `first` of this epoch's order, if there is one.
    fn batch_at(&self, first: usize) -> Option<&[u32]> {
        let n = self.order.len().saturating_sub(first).min(self.options.batch_size);
        (n > 0 && (n == self.options.batch_size || !self.options.drop_last))
            .then(|| &self.order[first..first + n])
    }

    fn fill_batch(
        &mut self,
        inputs: &mut [f32],
        labels: &mut [u32],
        affine: Option<(&[f32], &[f32])>,
    ) -> Option<usize> {
        let (b, d) = (self.options.batch_size, self.dataset.input_len());
        assert!(
            inputs.len() >= b * d && labels.len() >= b,
            "DataLoader::next_batch: buffers of {} inputs and {} labels are too small for a \
             batch of {b} samples of {d} features",
            inputs.len(),
            labels.len()
        );
        if self.exhausted {
            self.set_epoch(self.epoch.wrapping_add(1));
        }
        let remaining = self.order.len() - self.pos;
        let n = remaining.min(b);
        if n == 0 || (n < b && self.options.drop_last) {
            self.exhausted = true;
            return None;
        }
        let batch = &self.order[self.pos..self.pos + n];
        self.pos += n;
        let all_labels = self.dataset.labels();
        for (out, &i) in labels.iter_mut().zip(batch) {
            *out = all_labels[i as usize];
        }
        if let Some(ahead) = &self.ahead {
            // This batch was published ahead (unless it is an epoch's first, or the loader
            // jumped to another epoch), and idle threads may have distorted some of it.
            let first = self.pos - n;
            let k = ahead.find(self.epoch, first).unwrap_or_else(|| {
                ahead.publish(0, self.epoch, first, batch);
                0
            });
            ahead.finish(k);
            let (norm, lut) = (&self.options.normalization, &self.lut);
            inputs[..n * d].par_chunks_mut(d).enumerate().for_each(|(at, out)| {
                let image = ahead.slot(k, at);
                if let Normalization::None = norm {
                    return convert_row(&image, out, affine);
                }
                match norm {
                    Normalization::PerFeature { .. } => norm.apply_u8(&image, out),
                    _ => out.iter_mut().zip(image.iter()).for_each(|(o, &x)| *o = lut[x as usize]),
                }
                if let Some((scale, offset)) = affine {
                    for ((x, s), b) in out.iter_mut().zip(scale).zip(offset) {
                        *x = *x * s + b;
                    }
                }
            });
            // The next two batches of the epoch, for idle threads to distort while this one
            // trains: the next in the other buffer (unless it is there already), the one
            // after it in this one.
            let (next, after) = (self.pos, self.pos + b);
            if let Some(samples) = self.batch_at(next) {
                if ahead.find(self.epoch, next) != Some(1 - k) {
                    ahead.publish(1 - k, self.epoch, next, samples);
                }
            }
            if let Some(samples) = self.batch_at(after) {
                ahead.publish(k, self.epoch, after, samples);
            }
            return Some(n);
        }
        let rows = inputs.chunks_exact_mut(d).zip(batch);
        match (self.dataset.features(), &self.options.normalization) {
            (Features::U8(v), Normalization::PerFeature { .. }) => {
                for (out, &i) in rows {
                    let i = i as usize;
                    self.options.normalization.apply_u8(&v[i * d..(i + 1) * d], out);
                }
            }
            (Features::U8(v), Normalization::None) => {
                // Spread over rayon's threads (each row is written by one task: the same
                // result for any thread count). Rows are scattered over the dataset: each
                // task fetches a few ahead so the copy does not wait on memory for each one.
                const ROWS_PER_TASK: usize = 32;
                let out = inputs[..n * d].par_chunks_mut(ROWS_PER_TASK * d.max(1));
                out.zip(batch.par_chunks(ROWS_PER_TASK)).for_each(|(out, batch)| {
                    for &i in batch.iter().take(AHEAD) {
                        prefetch(Cache::L1, v, i as usize * d, d);
                    }
                    for (k, (out, &i)) in out.chunks_exact_mut(d.max(1)).zip(batch).enumerate() {
                        if let Some(&next) = batch.get(k + AHEAD) {
                            prefetch(Cache::L1, v, next as usize * d, d);
                        }
                        let i = i as usize;
                        convert_row(&v[i * d..(i + 1) * d], out, affine);
                    }
                });
                return Some(n);
            }
            (Features::U8(v), _) => {
                for (out, &i) in rows {
                    let i = i as usize;
                    for (o, &x) in out.iter_mut().zip(&v[i * d..(i + 1) * d]) {
                        *o = self.lut[x as usize];
                    }
                }
            }
            (Features::F32(v), norm) => {
                for (out, &i) in rows {
                    let i = i as usize;
                    norm.apply_f32(&v[i * d..(i + 1) * d], out);
                }
            }
        }
        if let Some((scale, offset)) = affine {
            for row in inputs[..n * d].chunks_exact_mut(d.max(1)) {
                for ((x, s), b) in row.iter_mut().zip(scale).zip(offset) {
                    *x = *x * s + b;
                }
            }
        }
        Some(n)
    }

    /// Like [`DataLoader::next_batch`], and also writes the labels one-hot into `targets`
    /// (`batch_size * num_classes` values), for losses that want target vectors.
    ///
    /// # Panics
    /// As `next_batch`, and if `targets` is shorter than `batch_size * num_classes`.
    pub fn next_batch_one_hot(
        &mut self,
        inputs: &mut [f32],
        labels: &mut [u32],
        targets: &mut [f32],
    ) -> Option<usize> {
        let c = self.dataset.num_classes();
        assert!(
            targets.len() >= self.options.batch_size * c,
            "DataLoader::next_batch_one_hot: target buffer of {} values is too small for a \
             batch of {} samples of {c} classes",
            targets.len(),
            self.options.batch_size
        );
        let n = self.next_batch(inputs, labels)?;
        one_hot(&labels[..n], c, targets);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u8_table_matches_torchvision_formula() {
        let lut = Normalization::MNIST.u8_table();
        assert!((lut[0] - (-0.1307 / 0.3081)).abs() < 1e-6);
        assert!((lut[255] - ((1.0 - 0.1307) / 0.3081)).abs() < 1e-5);
        assert_eq!(Normalization::Scale01.u8_table()[255], 1.0);
        assert_eq!(Normalization::None.u8_table()[17], 17.0);
    }

    #[test]
    fn one_hot_rows() {
        let mut out = [9.0f32; 7];
        one_hot(&[2, 0], 3, &mut out);
        assert_eq!(out, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 9.0]);
    }

    #[test]
    fn epoch_order_depends_on_seed_and_epoch_only() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        epoch_order(&mut a, 100, true, 5, 3);
        epoch_order(&mut b, 100, true, 5, 3);
        assert_eq!(a, b);
        epoch_order(&mut b, 100, true, 5, 4);
        assert_ne!(a, b);
        epoch_order(&mut b, 100, true, 6, 3);
        assert_ne!(a, b);
        epoch_order(&mut b, 100, false, 6, 3);
        assert_eq!(b, (0..100).collect::<Vec<_>>());
    }
}
