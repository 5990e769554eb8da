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
}

#[derive(Serialize, Deserialize)]
struct CheckpointHeader {
    settings: TrainSettings,
    epochs_done: usize,
    steps: u64,
    history: Vec<EpochMetrics>,
    #[serde(default)]
    source: Option<RunSource>,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"MLPCKPT1";

impl Checkpoint {
    /// The checkpoint file: magic `MLPCKPT1`, a JSON header (settings, progress, history),
    /// the model file, the optimizer state, and a CRC-32 of everything before it; lengths
    /// are little-endian u64.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&CheckpointHeader {
            settings: self.settings.clone(),
            epochs_done: self.epochs_done,
            steps: self.steps,
            history: self.history.clone(),
            source: self.source.clone(),
        })?;
        let model = self.model.to_bytes()?;
        let mut out = Vec::with_capacity(64 + header.len() + model.len() + 4 * self.optimizer_state.len());
        out.extend_from_slice(CHECKPOINT_MAGIC);
        for part in [&header, &model] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&(self.optimizer_state.len() as u64).to_le_bytes());
        self.optimizer_state.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
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
        let state = take("optimizer state", 4)?;
        let optimizer_state =
            state.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Checkpoint {
            settings: header.settings,
            epochs_done: header.epochs_done,
            steps: header.steps,
            history: header.history,
            model,
            optimizer_state,
            source: header.source,
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
