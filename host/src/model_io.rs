//! Model files on disk: core's format (topology, f32 parameters, running statistics,
//! input transform, CRC-32), written atomically, read with errors that name the file.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use mlp::{format, InputTransform, Model, ModelFile, Topology};
use rayon::prelude::*;

/// Core's [`InputTransform`] held as owned, per-feature vectors (as `PathBuf` holds a
/// `Path`): how raw stored samples become network inputs, `x[j] = raw[j] * scale[j] + offset[j]`.
/// [`as_transform`](Self::as_transform) lends it out as the model file stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct InputTransformBuf {
    /// One scale per input feature.
    pub scale: Vec<f32>,
    /// One offset per input feature.
    pub offset: Vec<f32>,
}

impl InputTransformBuf {
    /// The identity on `n` features.
    pub fn identity(n: usize) -> Self {
        InputTransformBuf { scale: vec![1.0; n], offset: vec![0.0; n] }
    }

    /// The transform equal to a loader normalization for `n` features stored as `u8`
    /// (`from_u8`) or `f32`: u8 features are first divided by 255 for every normalization
    /// but `None`, as the loader does.
    pub fn from_normalization(norm: &data::Normalization, n: usize, from_u8: bool) -> Self {
        use data::Normalization as N;
        let pre = if from_u8 { 1.0 / 255.0 } else { 1.0 };
        match norm {
            N::None => Self::identity(n),
            N::Scale01 => InputTransformBuf { scale: vec![1.0 / 255.0; n], offset: vec![0.0; n] },
            N::Standardize { mean, std } => {
                InputTransformBuf { scale: vec![pre / std; n], offset: vec![-mean / std; n] }
            }
            N::PerFeature { mean, std } => InputTransformBuf {
                scale: std.iter().map(|s| pre / s).collect(),
                offset: mean.iter().zip(std).map(|(m, s)| -m / s).collect(),
            },
        }
    }

    /// Applies the transform in place to whole rows of raw values (a batch's rows spread over
    /// rayon's threads; each value is computed alone, so the thread count never matters).
    pub fn apply(&self, rows: &mut [f32]) {
        const ROWS_PER_TASK: usize = 32;
        let n = self.scale.len().max(1);
        rows.par_chunks_mut(n * ROWS_PER_TASK).for_each(|rows| {
            for row in rows.chunks_mut(n) {
                for ((x, s), o) in row.iter_mut().zip(&self.scale).zip(&self.offset) {
                    *x = *x * s + o;
                }
            }
        });
    }

    /// The transform as the model file stores it (global when every feature agrees).
    pub fn as_transform(&self) -> InputTransform<'_> {
        let first = (self.scale.first().copied(), self.offset.first().copied());
        let uniform =
            self.scale.iter().all(|&s| Some(s) == first.0) && self.offset.iter().all(|&o| Some(o) == first.1);
        match first {
            (Some(scale), Some(offset)) if uniform => {
                if scale == 1.0 && offset == 0.0 {
                    InputTransform::Identity
                } else {
                    InputTransform::Global { scale, offset }
                }
            }
            _ => InputTransform::PerFeature { scale: &self.scale, offset: &self.offset },
        }
    }
}

/// A model held in memory: what a model file contains.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedModel {
    /// The network shape.
    pub topology: Topology,
    /// Flat parameters in core's layout.
    pub params: Vec<f32>,
    /// Batch-norm running statistics.
    pub running: Vec<f32>,
    /// Raw sample to network input.
    pub input: InputTransformBuf,
    /// What the model file says about its classes and features (empty: unnamed).
    pub names: ModelNames,
}

/// Class and feature names as the model file (format version 2) stores them: class `i` is
/// what output `i` predicts. Empty lists mean unnamed: classes are then their indices
/// ("0".."9" for MNIST, whose models store no names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelNames {
    /// Class names, by class index (empty: unnamed).
    pub classes: Vec<String>,
    /// Input feature names, by input index (empty: unnamed).
    pub features: Vec<String>,
}

impl ModelNames {
    /// The names a model trained on `data` carries: its class names (CSV string labels, or
    /// integer labels written as they appear in the file) and feature names (a CSV header);
    /// none for IDX data (MNIST: the class index is the digit).
    pub fn of(data: &data::Dataset) -> Self {
        let classes = match data.class_names() {
            Some(n) => n.to_vec(),
            None if data.feature_names().is_some() => {
                (0..data.num_classes()).map(|c| c.to_string()).collect()
            }
            None => Vec::new(),
        };
        let features = data.feature_names().map(<[String]>::to_vec).unwrap_or_default();
        ModelNames { classes, features }
    }

    /// The names stored in a parsed model file.
    pub fn read(file: &ModelFile<'_>) -> Self {
        let classes = (0..file.class_name_count()).filter_map(|i| file.class_name(i)).map(str::to_string);
        let features =
            (0..file.feature_name_count()).filter_map(|j| file.feature_name(j)).map(str::to_string);
        ModelNames { classes: classes.collect(), features: features.collect() }
    }

    /// The name of class `c`: its stored name, else the index.
    pub fn class(&self, c: usize) -> String {
        self.classes.get(c).cloned().unwrap_or_else(|| c.to_string())
    }

    /// Adds the names section to a version 1 model file (f32 or int8): a version 2 file.
    /// Names longer than the format allows are cut at a character boundary.
    pub fn add_to(&self, v1: &[u8]) -> Result<Vec<u8>> {
        let cut = |s: &String| -> String {
            let mut end = s.len().min(format::MAX_NAME_LEN);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        };
        let classes: Vec<String> = self.classes.iter().map(cut).collect();
        let features: Vec<String> = self.features.iter().map(cut).collect();
        let c: Vec<&str> = classes.iter().map(String::as_str).collect();
        let f: Vec<&str> = features.iter().map(String::as_str).collect();
        let names = format::Names { classes: &c, features: &f };
        let mut out = vec![0u8; format::named_len(v1.len(), &names)];
        format::add_names(v1, &names, &mut out).context("cannot store the class and feature names")?;
        Ok(out)
    }

    /// Maps `data`'s class numbering onto this model's: `data` is relabelled so that its class
    /// `k` becomes the model's class with the same name. Errors name a class the model does
    /// not know and list the model's classes. Without stored class names, `data` is used as
    /// it is.
    pub fn align(&self, data: data::Dataset, model_classes: usize) -> Result<data::Dataset> {
        if self.classes.is_empty() {
            return Ok(data);
        }
        let data_names: Vec<String> = match data.class_names() {
            Some(n) => n.to_vec(),
            None => (0..data.num_classes()).map(|c| c.to_string()).collect(),
        };
        let counts = data.class_counts();
        let mut map = Vec::with_capacity(data_names.len());
        for (k, name) in data_names.iter().enumerate() {
            match self.classes.iter().position(|c| c == name) {
                Some(i) => map.push(i as u32),
                None if counts.get(k).copied().unwrap_or(0) == 0 => map.push(0),
                None => bail!(
                    "{}: class {name:?} ({} rows) is not one of the model's {} classes ({}); evaluate on data \
                     with the classes the model was trained on",
                    data.name(),
                    counts[k],
                    self.classes.len(),
                    self.classes.join(", ")
                ),
            }
        }
        Ok(data.relabel(&map, model_classes, Some(self.classes.clone()))?)
    }
}

impl SavedModel {
    /// An eval-mode view for inference.
    pub fn model(&self) -> Result<Model<'_>> {
        Ok(Model::new(&self.topology, &self.params, &self.running)?)
    }

    /// The model file bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let transform = self.input.as_transform();
        let mut bytes = vec![0u8; format::encoded_len(&self.topology, &transform)];
        format::write(&self.topology, &self.params, &self.running, &transform, &mut bytes)?;
        self.names.add_to(&bytes)
    }

    /// Parses model file bytes; `name` is used in errors.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self> {
        let file = ModelFile::parse(bytes).with_context(|| format!("{name}: not a valid model file"))?;
        let topology = file.topology().clone();
        let mut params = vec![0.0; topology.param_len()];
        let mut running = vec![0.0; topology.running_len()];
        file.read_params(&mut params)?;
        file.read_running(&mut running)?;
        let (scale, offset) = (0..topology.input()).map(|j| file.input_scale_offset(j)).unzip();
        let names = ModelNames::read(&file);
        Ok(SavedModel { topology, params, running, input: InputTransformBuf { scale, offset }, names })
    }

    /// Reads a model file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).with_context(|| {
            format!(
                "cannot read model file {}; train one with `host train --out {}`",
                path.display(),
                path.display()
            )
        })?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Writes the model file atomically (a temporary file in the same folder, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

/// Checks, before any long work, that [`write_atomic`] will be able to write `path`: its
/// folder can be created and holds a new file (created and removed again); an existing
/// `path` is left as it is.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else { bail!("{} is not a file path", path.display()) };
    if path.is_dir() {
        bail!("cannot write {}: it is a folder", path.display());
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot write {}: cannot create its folder", path.display()))?;
    let probe = dir.join(format!(".{}.probe{}", name.to_string_lossy(), std::process::id()));
    fs::File::create(&probe)
        .with_context(|| format!("cannot write {} (checked before starting)", path.display()))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    let Some(name) = path.file_name() else { bail!("{} is not a file path", path.display()) };
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}
