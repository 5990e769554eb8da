//! The images an export carries: the first MNIST test images with the host's outputs for them
//! (int8 logits through the same integer path firmware runs, or f32 probabilities) and the
//! first training images, and the host's line per test image as firmware prints it.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use mlp::int8::{self, Int8Model};

use super::Exported;
use cpu::int8::FastInt8;
use data::{Dataset, Features};

/// Test (and training) images with the host's outputs for the test images.
#[derive(Debug)]
pub struct ImageSet {
    pub(super) input: usize,
    pub(super) test_pixels: Vec<u8>,
    pub(super) test_labels: Vec<u8>,
    pub(super) outputs: HostOutputs,
    pub(super) predictions: Vec<u8>,
    pub(super) train_pixels: Vec<u8>,
    pub(super) train_labels: Vec<u8>,
}

#[derive(Debug)]
pub(super) enum HostOutputs {
    /// int8 logits, `n × classes`, from core's integer path (`FastInt8` kernels).
    Int8 { classes: usize, values: Vec<i8> },
    /// f32 outputs (probabilities for softmax), `n × classes`.
    F32 { classes: usize, values: Vec<f32> },
}

fn pixels(d: &Dataset, n: usize) -> Vec<u8> {
    match d.features() {
        Features::U8(v) => v[..n * d.input_len()].to_vec(),
        Features::F32(_) => Vec::new(),
    }
}

impl ImageSet {
    /// The first `n` test and `n_train` training images, with `model`'s outputs for the test
    /// images.
    pub fn new(model: &Exported, test: &Dataset, n: usize, train: &Dataset, n_train: usize) -> Result<Self> {
        let input = test.input_len();
        let test_pixels = pixels(test, n);
        let label = |l: &u32| u8::try_from(*l).context("a label above 255");
        let test_labels = test.labels()[..n].iter().map(label).collect::<Result<Vec<_>>>()?;
        let train_labels = train.labels()[..n_train].iter().map(label).collect::<Result<Vec<_>>>()?;
        let (outputs, predictions) = match model {
            Exported::Int8(bytes) => {
                let q = Int8Model::parse(bytes)?;
                let classes = q.topology().output();
                let mut values = Vec::with_capacity(n * classes);
                if n > 0 {
                    let mut xq = vec![0i8; test_pixels.len()];
                    q.quantize_u8(&test_pixels, &mut xq)
                        .context("the int8 model has no u8 input table (per-feature input transform)")?;
                    let mut act = vec![0i8; q.act_workspace_len(n)];
                    let mut acc = vec![0i32; q.acc_workspace_len(n)];
                    values.extend_from_slice(int8::forward(
                        &FastInt8::new(),
                        &q,
                        &xq,
                        n,
                        &mut act,
                        &mut acc,
                    )?);
                }
                let preds = values.chunks(classes).map(|r| int8::argmax(r) as u8).collect();
                (HostOutputs::Int8 { classes, values }, preds)
            }
            Exported::F32(m) => {
                let classes = m.topology.output();
                let values = if n > 0 {
                    let raw: Vec<f32> = test_pixels.iter().map(|&p| p as f32).collect();
                    crate::train::predict_proba(m, &raw)?
                } else {
                    Vec::new()
                };
                let preds = values.chunks(classes).map(|r| mlp::loss::argmax(r) as u8).collect();
                (HostOutputs::F32 { classes, values }, preds)
            }
        };
        Ok(ImageSet {
            input,
            test_pixels,
            test_labels,
            outputs,
            predictions,
            train_pixels: pixels(train, n_train),
            train_labels,
        })
    }

    /// The dtype of the host's outputs.
    pub fn dtype_name(&self) -> &'static str {
        match self.outputs {
            HostOutputs::Int8 { .. } => "int8",
            HostOutputs::F32 { .. } => "f32",
        }
    }

    /// Test images the host classifies correctly.
    pub fn correct(&self) -> usize {
        self.predictions.iter().zip(&self.test_labels).filter(|(p, l)| p == l).count()
    }

    /// One line per test image, exactly as the firmware prints it: label, prediction and, for
    /// int8, the output logits.
    pub fn expected_lines(&self) -> String {
        let mut s = String::new();
        for (i, (l, p)) in self.test_labels.iter().zip(&self.predictions).enumerate() {
            let _ = write!(s, "image {i}: label {l} predicted {p}");
            if let HostOutputs::Int8 { classes, values } = &self.outputs {
                let row: Vec<String> =
                    values[i * classes..(i + 1) * classes].iter().map(|v| v.to_string()).collect();
                let _ = write!(s, " logits [{}]", row.join(", "));
            }
            s.push('\n');
        }
        s
    }
}
