//! The checkpoint file: where a run is, saved after every epoch so `--resume` continues
//! exactly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{EpochMetrics, TrainSettings};
use crate::model_io::{write_atomic, SavedModel};

/// Where a run is, saved after every epoch so `--resume` continues exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The run's settings.
    pub settings: TrainSettings,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Metrics of the completed epochs.
    pub history: Vec<EpochMetrics>,
    /// The model after the last completed epoch.
    pub model: SavedModel,
    /// The optimizer state (Adam's m and v, ...), in core's flat layout.
    pub optimizer_state: Vec<f32>,
    /// Where the run's data came from and where it saves its model, so `--resume` alone
    /// continues it (absent in checkpoints written before this was recorded).
    pub source: Option<RunSource>,
    /// With early stopping: the epoch with the lowest validation loss so far and its model
    /// (the epochs since it are the patience counter).
    pub best: Option<BestEpoch>,
    /// Early stopping ended the run (it is finished; `--resume` refuses it).
    pub stopped_early: bool,
}

/// The best epoch of an early-stopping run and its model's parameters and running
/// statistics (the rest of the model is the run's).
#[derive(Clone, Debug, PartialEq)]
pub struct BestEpoch {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Its validation loss.
    pub val_loss: f64,
    /// The parameters after that epoch, in core's flat layout.
    pub params: Vec<f32>,
    /// The batch-norm running statistics after that epoch.
    pub running: Vec<f32>,
}

/// Where a run's data came from and where it writes, as its command line named them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSource {
    /// The model file (`--out`).
    pub out: PathBuf,
    /// The metrics file (`--metrics`).
    #[serde(default)]
    pub metrics: Option<PathBuf>,
    /// An IDX folder (`--data`).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// A CSV table (`--csv`).
    #[serde(default)]
    pub csv: Option<PathBuf>,
    /// A CSV test table (`--csv-test`).
    #[serde(default)]
    pub csv_test: Option<PathBuf>,
    /// The CSV label column (`--label`).
    #[serde(default)]
    pub label: Option<String>,
    /// The IDX data set (`--dataset`; none: MNIST).
    #[serde(default)]
    pub dataset: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointHeader {
    settings: TrainSettings,
    epochs_done: usize,
    steps: u64,
    history: Vec<EpochMetrics>,
    #[serde(default)]
    source: Option<RunSource>,
    /// Early stopping's best epoch and its validation loss; its parameters and running
    /// statistics follow the optimizer state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    best: Option<(usize, f64)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    stopped_early: bool,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"MLPCKPT1";

impl Checkpoint {
    /// The checkpoint file: magic `MLPCKPT1`, a JSON header (settings, progress, history),
    /// the model file, the optimizer state, with early stopping the best epoch's parameters
    /// and running statistics (the header's `best` says they are there), and a CRC-32 of
    /// everything before it; lengths are little-endian u64. (A reader that predates the
    /// best epoch's section ignores it; a checkpoint without it reads as having no best.)
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&CheckpointHeader {
            settings: self.settings.clone(),
            epochs_done: self.epochs_done,
            steps: self.steps,
            history: self.history.clone(),
            source: self.source.clone(),
            best: self.best.as_ref().map(|b| (b.epoch, b.val_loss)),
            stopped_early: self.stopped_early,
        })?;
        let model = self.model.to_bytes()?;
        let mut out = Vec::with_capacity(64 + header.len() + model.len() + 4 * self.optimizer_state.len());
        out.extend_from_slice(CHECKPOINT_MAGIC);
        for part in [&header, &model] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        let mut floats = vec![&self.optimizer_state];
        if let Some(b) = &self.best {
            floats.extend([&b.params, &b.running]);
        }
        for part in floats {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            part.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        out.extend_from_slice(&mlp::format::crc32(&out).to_le_bytes());
        Ok(out)
    }

    /// Parses a checkpoint; `name` is used in errors.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self> {
        let corrupt = |what: &str| anyhow::anyhow!("{name}: not a valid checkpoint ({what})");
        if bytes.len() < CHECKPOINT_MAGIC.len() + 4 || &bytes[..8] != CHECKPOINT_MAGIC {
            return Err(corrupt("missing MLPCKPT1 header"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if mlp::format::crc32(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(corrupt("checksum mismatch: the file is damaged"));
        }
        let mut rest = &body[8..];
        let mut take = |what: &str, elem: usize| -> Result<&[u8]> {
            if rest.len() < 8 {
                return Err(corrupt(what));
            }
            let (len, tail) = rest.split_at(8);
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
            let bytes_len =
                len.checked_mul(elem).filter(|&b| b <= tail.len()).ok_or_else(|| corrupt(what))?;
            let (part, tail) = tail.split_at(bytes_len);
            rest = tail;
            Ok(part)
        };
        let header: CheckpointHeader =
            serde_json::from_slice(take("header", 1)?).map_err(|e| corrupt(&format!("header: {e}")))?;
        let model = SavedModel::from_bytes(name, take("model", 1)?)?;
        let floats = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        };
        let optimizer_state = floats(take("optimizer state", 4)?);
        let best = match header.best {
            Some((epoch, val_loss)) => {
                let params = floats(take("best epoch's parameters", 4)?);
                let running = floats(take("best epoch's running statistics", 4)?);
                if params.len() != model.params.len() || running.len() != model.running.len() {
                    return Err(corrupt("the best epoch's model does not fit the network"));
                }
                Some(BestEpoch { epoch, val_loss, params, running })
            }
            None => None,
        };
        Ok(Checkpoint {
            settings: header.settings,
            epochs_done: header.epochs_done,
            steps: header.steps,
            history: header.history,
            model,
            optimizer_state,
            source: header.source,
            best,
            stopped_early: header.stopped_early,
        })
    }

    /// Reads a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}
