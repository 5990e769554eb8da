//! `host export --flash SIZE`: whether the exported model (and images) fit a part's flash,
//! checked before anything is written, so a model too large for the part is an error that
//! names the sizes instead of a linker's "region `FLASH' overflowed by N bytes".
//!
//! The estimate: the model's arrays (the bytes of its model file: weights, biases,
//! requantization parameters, tables; the Rust and C exports hold the same arrays), the
//! images with their labels and the host's outputs, and [`FIRMWARE_CODE_BYTES`] for the
//! firmware's own code.

use anyhow::{bail, Result};

/// Flash for the firmware's code beyond the model's arrays: the lean Cortex-M build's
/// 5.9 KB (code, vector table, layer descriptors and strings; firmware/README.md), rounded
/// up to 6 KiB. An application with more code needs more.
pub const FIRMWARE_CODE_BYTES: usize = 6 * 1024;

/// A flash size: bytes, or with a K or M suffix (KiB, MiB), e.g. `262144`, `256K`, `1M`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1024),
        Some((i, 'm' | 'M')) => (&t[..i], 1024 * 1024),
        _ => (t, 1),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a flash size: give bytes or a K/M suffix, e.g. 256K or 1M"))?;
    match n.checked_mul(unit) {
        Some(0) => Err("a flash size of 0 bytes holds no model".to_string()),
        Some(b) => Ok(b),
        None => Err(format!("'{text}' is too large a flash size")),
    }
}

/// `--flash`: the size in bytes and as the user wrote it (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashSize {
    /// Bytes.
    pub bytes: usize,
    /// As given, e.g. "256K".
    pub text: String,
}

/// [`parse_size`] for clap, keeping the text.
pub fn parse_flash(text: &str) -> Result<FlashSize, String> {
    Ok(FlashSize { bytes: parse_size(text)?, text: text.trim().to_string() })
}

/// What goes into flash, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct FlashNeed {
    /// The model's arrays.
    pub model: usize,
    /// Test images, labels and the host's outputs.
    pub images: usize,
    /// Training images and labels.
    pub train_images: usize,
}

impl FlashNeed {
    /// The need for a model of `model_bytes` (its model file) taking `inputs` u8 pixels and
    /// giving `outputs` values of `output_bytes` each, with `images` test and `train_images`
    /// training images.
    pub fn new(
        model_bytes: usize,
        inputs: usize,
        outputs: usize,
        output_bytes: usize,
        images: usize,
        train_images: usize,
    ) -> FlashNeed {
        FlashNeed {
            model: model_bytes,
            images: images.saturating_mul(inputs + 1 + outputs * output_bytes),
            train_images: train_images.saturating_mul(inputs + 1),
        }
    }

    /// Everything, with the firmware's code.
    pub fn total(&self) -> usize {
        self.model
            .saturating_add(self.images)
            .saturating_add(self.train_images)
            .saturating_add(FIRMWARE_CODE_BYTES)
    }

    /// An error naming the sizes when the total exceeds `flash` bytes (`given` as the user
    /// wrote it).
    pub fn check(&self, flash: usize, given: &str) -> Result<()> {
        let total = self.total();
        if total <= flash {
            return Ok(());
        }
        bail!(
            "the export needs about {total} bytes of flash but --flash {given} is {flash} bytes \
             ({} bytes over): the model's arrays {} bytes, test images {} bytes, training images {} \
             bytes, firmware code about {FIRMWARE_CODE_BYTES} bytes. Export fewer images \
             (--images N, --train-images N), a smaller model, or target a part with more flash",
            total - flash,
            self.model,
            self.images,
            self.train_images
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("262144"), Ok(262_144));
        assert_eq!(parse_size("256K"), Ok(262_144));
        assert_eq!(parse_size("256k"), Ok(262_144));
        assert_eq!(parse_size("1M"), Ok(1_048_576));
        for bad in ["", "K", "12Q", "-4K", "0", "99999999999999999999M"] {
            assert!(parse_size(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn the_check_names_every_size() {
        // 784-256-10 int8 (207,900-byte model file), 100 test images of 784 + 1 + 10 bytes.
        let need = FlashNeed::new(207_900, 784, 10, 1, 100, 0);
        assert_eq!(need.images, 79_500);
        assert_eq!(need.total(), 207_900 + 79_500 + 6144);
        assert!(need.check(1024 * 1024, "1M").is_ok());
        let e = need.check(256 * 1024, "256K").unwrap_err().to_string();
        for part in ["293544 bytes", "262144 bytes", "31400 bytes over", "207900", "79500", "6144"] {
            assert!(e.contains(part), "{part} not in: {e}");
        }
    }
}
