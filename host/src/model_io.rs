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
        Ok(bytes)
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
        Ok(SavedModel { topology, params, running, input: InputTransformBuf { scale, offset } })
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
