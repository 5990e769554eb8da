//! Data sets resident on the device.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::device::Gpu;
use crate::memory::DevBuf;
use crate::GpuError;

/// A data set's features as stored on the host.
#[derive(Clone, Copy, Debug)]
pub enum Features<'a> {
    /// Bytes (pixels), normalized on the device.
    U8(&'a [u8]),
    /// Values (tabular data).
    F32(&'a [f32]),
}

/// A data set resident on the device: features as stored (`u8` or `f32`) and labels.
pub struct DeviceDataset {
    pub(crate) id: u64,
    /// The [`Gpu`] it was uploaded to (its `id`).
    pub(crate) device: u64,
    pub(crate) len: usize,
    pub(crate) input_len: usize,
    pub(crate) max_label: u32,
    pub(crate) bytes: Option<DevBuf<u8>>,
    pub(crate) values: Option<DevBuf<f32>>,
    pub(crate) labels: DevBuf<u32>,
}

impl fmt::Debug for DeviceDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceDataset")
            .field("len", &self.len)
            .field("input_len", &self.input_len)
            .field("dtype", &if self.bytes.is_some() { "u8" } else { "f32" })
            .finish()
    }
}

impl DeviceDataset {
    /// Samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no samples (never: uploads need at least one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Features per sample.
    pub fn input_len(&self) -> usize {
        self.input_len
    }
}

impl Gpu {
    /// Copies a data set to the device: `features` holds `labels.len()` rows of `input_len`.
    pub fn upload_dataset(
        &self,
        features: Features<'_>,
        labels: &[u32],
        input_len: usize,
    ) -> Result<DeviceDataset, GpuError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let len = labels.len();
        let feature_len = match features {
            Features::U8(v) => v.len(),
            Features::F32(v) => v.len(),
        };
        if len == 0 || input_len == 0 {
            return Err(GpuError::Invalid("cannot upload an empty data set to the GPU".into()));
        }
        if len > u32::MAX as usize || Some(feature_len) != len.checked_mul(input_len) {
            return Err(GpuError::Invalid(format!(
                "data set of {len} labels has {feature_len} feature values, not {len} x {input_len}"
            )));
        }
        let (bytes, values) = match features {
            Features::U8(v) => (Some(self.upload(v)?), None),
            Features::F32(v) => (None, Some(self.upload(v)?)),
        };
        let labels_dev = self.upload(labels)?;
        Ok(DeviceDataset {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            device: self.id,
            len,
            input_len,
            max_label: labels.iter().copied().max().unwrap_or(0),
            bytes,
            values,
            labels: labels_dev,
        })
    }
}
