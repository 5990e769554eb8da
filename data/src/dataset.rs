//! The in-memory data set: one feature row per sample, one label per sample.

use super::error::{Error, Result};

/// Feature storage: `u8` for images (a quarter of the memory of `f32`, and what a GPU path
/// uploads as is), `f32` for tabular data. Row-major, `input_len` values per sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    /// Raw pixel values 0..=255 (IDX images).
    U8(Vec<u8>),
    /// Real-valued features (CSV), all finite.
    F32(Vec<f32>),
}

impl Features {
    /// Number of stored values (samples x `input_len`).
    pub fn len(&self) -> usize {
        match self {
            Features::U8(v) => v.len(),
            Features::F32(v) => v.len(),
        }
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One sample's feature row, borrowed from a [`Dataset`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Row<'a> {
    /// A row of `u8` features.
    U8(&'a [u8]),
    /// A row of `f32` features.
    F32(&'a [f32]),
}

/// What a split appends to the name of its training part.
const TRAIN_SPLIT: &str = "(train split)";

/// A labelled data set held in memory, like a PyTorch `TensorDataset`.
///
/// Invariants, checked by [`Dataset::new`] so the loader never has to: the features hold
/// exactly `len() * input_len()` values, every label is below `num_classes()`, `f32`
/// features are finite, and class names (when present) number `num_classes()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    features: Features,
    input_len: usize,
    labels: Vec<u32>,
    num_classes: usize,
    class_names: Option<Vec<String>>,
    image_shape: Option<(usize, usize)>,
    feature_names: Option<Vec<String>>,
}

impl Dataset {
    /// A data set from its parts, after checking the invariants listed on [`Dataset`].
    pub fn new(
        name: impl Into<String>,
        features: Features,
        input_len: usize,
        labels: Vec<u32>,
        num_classes: usize,
        class_names: Option<Vec<String>>,
    ) -> Result<Self> {
        let name = name.into();
        if input_len == 0 {
            return Err(Error::InvalidArgument(format!(
                "{name}: a data set needs at least one feature per sample (input_len is 0)"
            )));
        }
        let expected = labels.len().checked_mul(input_len);
        if expected != Some(features.len()) {
            return Err(Error::InvalidArgument(format!(
                "{name}: {} feature values for {} labels of {input_len} features each; the \
                 features must hold exactly one row per label",
                features.len(),
                labels.len()
            )));
        }
        if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= num_classes) {
            return Err(Error::LabelOutOfRange {
                file: name,
                location: format!("sample {i}"),
                label: label.into(),
                num_classes,
            });
        }
        if let Features::F32(values) = &features {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::InvalidArgument(format!(
                    "{name}: sample {}, feature {}: {} is not finite; replace NaN/infinite \
                     values before building a data set",
                    i / input_len,
                    i % input_len,
                    values[i]
                )));
            }
        }
        if let Some(names) = &class_names {
            if names.len() != num_classes {
                return Err(Error::InvalidArgument(format!(
                    "{name}: {} class names for {num_classes} classes; give one name per class",
                    names.len()
                )));
            }
        }
        Ok(Dataset {
            name,
            features,
            input_len,
            labels,
            num_classes,
            class_names,
            image_shape: None,
            feature_names: None,
        })
    }

    /// Records the name of each feature (a CSV header); `names` has one per feature.
    pub fn with_feature_names(mut self, names: Vec<String>) -> Result<Self> {
        if names.len() != self.input_len {
            return Err(Error::InvalidArgument(format!(
                "{}: {} feature names for {} features per sample",
                self.name,
                names.len(),
                self.input_len
            )));
        }
        self.feature_names = Some(names);
        Ok(self)
    }

    /// The feature names, when the data came with a header.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.feature_names.as_deref()
    }

    /// The same samples with class `k` renumbered `map[k]`, `num_classes` classes and these
    /// class names (e.g. to give a test file the numbering of a model's classes).
    pub fn relabel(
        mut self,
        map: &[u32],
        num_classes: usize,
        class_names: Option<Vec<String>>,
    ) -> Result<Self> {
        if map.len() < self.num_classes || map.iter().any(|&c| c as usize >= num_classes) {
            return Err(Error::InvalidArgument(format!(
                "{}: a relabelling needs a class below {num_classes} for each of its {} classes",
                self.name, self.num_classes
            )));
        }
        if class_names.as_ref().is_some_and(|n| n.len() != num_classes) {
            return Err(Error::InvalidArgument(format!(
                "{}: class names do not match the class count",
                self.name
            )));
        }
        self.labels.iter_mut().for_each(|l| *l = map[*l as usize]);
        self.num_classes = num_classes;
        self.class_names = class_names;
        Ok(self)
    }

    /// Splits into `(train, test)` with `round(fraction * n_c)` samples of every class `c`
    /// (at least one of a class with two or more samples) in the test part, chosen at random
    /// by `seed`: a stratified hold-out. Both parts keep the original order of their samples.
    pub fn stratified_split(&self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::InvalidArgument(format!(
                "{}: test fraction {fraction} is not in [0, 1)",
                self.name
            )));
        }
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.num_classes];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut rng = mlp::Rng::new(seed);
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for mut members in by_class {
            rng.shuffle(&mut members);
            let n = members.len();
            let k =
                ((fraction * n as f64).round() as usize).max(usize::from(n >= 2 && fraction > 0.0)).min(n);
            test.extend_from_slice(&members[..k]);
            train.extend_from_slice(&members[k..]);
        }
        train.sort_unstable();
        test.sort_unstable();
        let mut train_set = self.subset(&train)?;
        let mut test_set = self.subset(&test)?;
        train_set.name = format!("{} {TRAIN_SPLIT}", self.unsplit_name());
        test_set.name = format!("{} (held-out test split)", self.unsplit_name());
        Ok((train_set, test_set))
    }

    /// Records that each row is a `rows x cols` image (for plots and previews).
    pub fn with_image_shape(mut self, rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(self.input_len) {
            return Err(Error::InvalidArgument(format!(
                "{}: an image shape of {rows}x{cols} does not match {} features per sample",
                self.name, self.input_len
            )));
        }
        self.image_shape = Some((rows, cols));
        Ok(self)
    }

    /// The name without the suffix a split gave it: splitting the training part of a split
    /// again (a CSV table's held-out test split, then --val-split) names its training part
    /// "table.csv (train split)" once, not twice.
    fn unsplit_name(&self) -> &str {
        self.name.strip_suffix(TRAIN_SPLIT).map_or(self.name.as_str(), str::trim_end)
    }

    /// The same samples with these class names, one per class (e.g. Fashion-MNIST's).
    pub fn with_class_names(mut self, names: Vec<String>) -> Result<Self> {
        if names.len() != self.num_classes {
            return Err(Error::InvalidArgument(format!(
                "{}: {} class names for {} classes; give one name per class",
                self.name,
                names.len(),
                self.num_classes
            )));
        }
        self.class_names = Some(names);
        Ok(self)
    }

    /// A short name for messages and reports, e.g. "MNIST train".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the data set (e.g. after a split).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// All features, row-major.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Features per sample (784 for MNIST).
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// One label per sample, each below [`Dataset::num_classes`].
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Number of classes (10 for MNIST): the width of the model's output.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Class names, indexed by label, when the source had them (CSV string labels).
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// `(rows, cols)` when the samples are images.
    pub fn image_shape(&self) -> Option<(usize, usize)> {
        self.image_shape
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Sample `index`'s features, or `None` past the end.
    pub fn row(&self, index: usize) -> Option<Row<'_>> {
        if index >= self.len() {
            return None;
        }
        let range = index * self.input_len..(index + 1) * self.input_len;
        Some(match &self.features {
            Features::U8(v) => Row::U8(&v[range]),
            Features::F32(v) => Row::F32(&v[range]),
        })
    }

    /// A new data set holding the samples at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let n = self.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::InvalidArgument(format!(
                "{}: subset index {bad} is out of range: the data set has {n} samples",
                self.name
            )));
        }
        let d = self.input_len;
        let features = match &self.features {
            Features::U8(v) => {
                let mut out = Vec::with_capacity(indices.len() * d);
                for &i in indices {
                    out.extend_from_slice(&v[i * d..(i + 1) * d]);
                }
                Features::U8(out)
            }
            Features::F32(v) => {
                let mut out = Vec::with_capacity(indices.len() * d);
                for &i in indices {
                    out.extend_from_slice(&v[i * d..(i + 1) * d]);
                }
                Features::F32(out)
            }
        };
        Ok(Dataset {
            name: self.name.clone(),
            features,
            input_len: d,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
            image_shape: self.image_shape,
            feature_names: self.feature_names.clone(),
        })
    }

    /// Splits into `(train, validation)`, putting `round(validation_fraction * len)` samples
    /// chosen at random by `seed` into validation. The same seed gives the same split on
    /// every machine; both parts keep the original order of their samples.
    pub fn split(&self, validation_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..=1.0).contains(&validation_fraction) {
            return Err(Error::InvalidArgument(format!(
                "{}: validation fraction {validation_fraction} is not between 0 and 1 (e.g. \
                 0.1 keeps 10% of the samples for validation)",
                self.name
            )));
        }
        let n = self.len();
        let n_val = ((validation_fraction * n as f64).round() as usize).min(n);
        let mut order: Vec<usize> = (0..n).collect();
        mlp::Rng::new(seed).shuffle(&mut order);
        let (val, train) = order.split_at_mut(n_val);
        val.sort_unstable();
        train.sort_unstable();
        let mut train_set = self.subset(train)?;
        let mut val_set = self.subset(val)?;
        train_set.name = format!("{} {TRAIN_SPLIT}", self.unsplit_name());
        val_set.name = format!("{} (validation split)", self.unsplit_name());
        Ok((train_set, val_set))
    }

    /// How many samples carry each label, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let features = (0..n * 2).map(|v| v as u8).collect();
        let labels = (0..n).map(|i| (i % 3) as u32).collect();
        Dataset::new("toy", Features::U8(features), 2, labels, 3, None).unwrap()
    }

    #[test]
    fn new_checks_invariants() {
        let err = Dataset::new("x", Features::U8(vec![0; 5]), 2, vec![0, 1], 2, None);
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
        let err = Dataset::new("x", Features::U8(vec![0; 4]), 2, vec![0, 2], 2, None);
        assert!(matches!(err, Err(Error::LabelOutOfRange { label: 2, .. })));
        let err = Dataset::new("x", Features::F32(vec![0.0, f32::NAN]), 2, vec![0], 2, None);
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
        let err = Dataset::new("x", Features::U8(vec![]), 0, vec![], 2, None);
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
        let err = Dataset::new("x", Features::U8(vec![0; 2]), 2, vec![0], 2, Some(vec![]));
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
        let ok = Dataset::new("x", Features::U8(vec![0; 4]), 4, vec![1], 2, None).unwrap();
        assert!(ok.clone().with_image_shape(3, 2).is_err());
        assert_eq!(ok.with_image_shape(2, 2).unwrap().image_shape(), Some((2, 2)));
    }

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        let ds = toy(101);
        let (t1, v1) = ds.split(0.2, 42).unwrap();
        let (t2, v2) = ds.split(0.2, 42).unwrap();
        assert_eq!((t1.len(), v1.len()), (81, 20));
        assert_eq!(t1, t2);
        assert_eq!(v1, v2);
        let (_, v3) = ds.split(0.2, 43).unwrap();
        assert_ne!(v1.features(), v3.features());
        // Each sample's first feature is 2*i (mod 256 does not bite for 101 samples).
        let firsts = |d: &Dataset| match d.features() {
            Features::U8(v) => v.chunks(2).map(|c| c[0] as usize / 2).collect::<Vec<_>>(),
            Features::F32(_) => unreachable!(),
        };
        let mut all = firsts(&t1);
        all.extend(firsts(&v1));
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        // Labels follow their samples.
        for d in [&t1, &v1] {
            for (i, &l) in firsts(d).iter().zip(d.labels()) {
                assert_eq!(l as usize, i % 3);
            }
        }
    }

    #[test]
    fn split_edges_and_bad_fractions() {
        let ds = toy(10);
        let (t, v) = ds.split(0.0, 1).unwrap();
        assert_eq!((t.len(), v.len()), (10, 0));
        let (t, v) = ds.split(1.0, 1).unwrap();
        assert_eq!((t.len(), v.len()), (0, 10));
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(ds.split(bad, 1), Err(Error::InvalidArgument(_))));
        }
    }

    #[test]
    fn a_split_of_a_split_names_its_training_part_once() {
        let mut ds = toy(30);
        ds.set_name("table.csv");
        let (train, held) = ds.stratified_split(0.2, 7).unwrap();
        assert_eq!(
            (train.name(), held.name()),
            ("table.csv (train split)", "table.csv (held-out test split)")
        );
        // --val-split on what the tabular recipe kept for training.
        let (train, val) = train.split(0.1, 7).unwrap();
        assert_eq!((train.name(), val.name()), ("table.csv (train split)", "table.csv (validation split)"));
        let (train, _) = train.split(0.1, 7).unwrap();
        assert_eq!(train.name(), "table.csv (train split)");
    }

    #[test]
    fn class_names_are_one_per_class() {
        let names = |n: usize| (0..n).map(|c| format!("c{c}")).collect::<Vec<_>>();
        assert_eq!(toy(4).with_class_names(names(3)).unwrap().class_names(), Some(&names(3)[..]));
        let e = toy(4).with_class_names(names(2)).unwrap_err();
        assert!(e.to_string().contains("2 class names for 3 classes"), "{e}");
    }

    #[test]
    fn subset_and_row() {
        let ds = toy(5);
        let s = ds.subset(&[4, 0, 4]).unwrap();
        assert_eq!(s.labels(), &[1, 0, 1]);
        assert_eq!(s.row(0), Some(Row::U8(&[8, 9])));
        assert_eq!(s.row(3), None);
        assert!(matches!(ds.subset(&[5]), Err(Error::InvalidArgument(_))));
        assert_eq!(ds.class_counts(), vec![2, 2, 1]);
    }
}
