//! int8 models on the host: calibration (min/max or percentiles), quantization through core,
//! and evaluation of int8 files with the same integer path firmware runs.

use anyhow::{bail, Context, Result};
use mlp::int8::{self, Int8Model, MinMax, Ranges, Tap};
use mlp::{Activation, DType, ModelFile, MAX_LAYERS};

use crate::model_io::{InputTransformBuf, ModelNames, SavedModel};
use crate::train::{evaluate_with, Evaluation, EVAL_BATCH};
use cpu::f32::Fast;
use cpu::int8::FastInt8;
use data::{DataLoader, Dataset, Features, LoaderOptions, Normalization};

/// How activation ranges are estimated from calibration samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The smallest and largest value seen.
    MinMax,
    /// The `p`-th and `(100 - p)`-th percentiles (e.g. 99.99), ignoring rare outliers.
    Percentile(f64),
}

impl Calibration {
    /// `--percentile P` when given, else min/max.
    pub fn from_percentile(percentile: Option<f64>) -> Self {
        percentile.map_or(Calibration::MinMax, Calibration::Percentile)
    }
}

impl std::fmt::Display for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Calibration::MinMax => f.write_str("min/max"),
            Calibration::Percentile(p) => write!(f, "percentile {p}"),
        }
    }
}

/// An f32 model quantized to int8, and how it was calibrated.
#[derive(Clone, Debug)]
pub struct Quantized {
    /// The int8 model file.
    pub bytes: Vec<u8>,
    /// Calibration samples used.
    pub samples: usize,
    /// The name of the data set they came from.
    pub dataset: String,
    /// How activation ranges were estimated.
    pub method: Calibration,
}

impl Quantized {
    /// "N samples of DATASET (METHOD)", for "calibrated on ...".
    pub fn describe(&self) -> String {
        format!("{} samples of {} ({})", self.samples, self.dataset, self.method)
    }
}

/// Quantizes `model` to int8 as `host quantize` and `host export` do: activation ranges from
/// the first `samples` samples of `data` by min/max, or by `percentile` when given.
pub fn calibrate_and_quantize(
    model: &SavedModel,
    data: &Dataset,
    samples: usize,
    percentile: Option<f64>,
) -> Result<Quantized> {
    // Before calibrating: core's int8 refuses maxout, say so without the wait.
    mlp::int8::refuse_maxout(&model.topology)?;
    let method = Calibration::from_percentile(percentile);
    let ranges = calibrate(model, data, samples, method)?;
    let bytes = quantize(model, &ranges)?;
    Ok(Quantized { bytes, samples: samples.min(data.len()), dataset: data.name().to_string(), method })
}

/// Training samples `host quantize` calibrates on by default (`--calibration`), and the ones
/// quantization-aware training (`host train --qat`) takes its activation ranges from.
pub const CALIBRATION_SAMPLES: usize = 1000;

/// Activation ranges of `model` on the first `samples` samples of `data`.
pub fn calibrate(model: &SavedModel, data: &Dataset, samples: usize, method: Calibration) -> Result<Ranges> {
    calibrate_view(&model.model()?, &model.input, data, samples, method)
}

/// [`calibrate`] for the parameters `m` (e.g. a trainer's, mid-run) with the input transform
/// `input`.
pub fn calibrate_view(
    m: &mlp::Model<'_>,
    input: &InputTransformBuf,
    data: &Dataset,
    samples: usize,
    method: Calibration,
) -> Result<Ranges> {
    if samples == 0 {
        bail!("--calibration must be at least 1 sample");
    }
    if let Calibration::Percentile(p) = method {
        if !(50.0..=100.0).contains(&p) {
            bail!("--percentile {p} must be between 50 and 100");
        }
    }
    let t = m.topology();
    if data.input_len() != t.input() {
        bail!(
            "{} has {} features per sample but the model expects {}",
            data.name(),
            data.input_len(),
            t.input()
        );
    }
    let n = samples.min(data.len());
    let subset = data.subset(&(0..n).collect::<Vec<_>>())?;
    let opts = LoaderOptions {
        batch_size: EVAL_BATCH,
        normalization: Normalization::None,
        ..LoaderOptions::default()
    };
    let mut loader = DataLoader::new(&subset, opts)?;
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    let mut ws = vec![0.0; t.infer_workspace_len(EVAL_BATCH)];
    let mut ranges = Ranges::new();
    // For percentiles: every value of every tap (input, then pre/out per layer).
    let mut taps: Vec<Vec<f32>> = vec![Vec::new(); 1 + 2 * MAX_LAYERS];
    while let Some(b) = loader.next_batch(&mut x, &mut y) {
        let inputs = &mut x[..b * t.input()];
        input.apply(inputs);
        match method {
            Calibration::MinMax => int8::calibrate(&Fast::new(), m, inputs, b, &mut ws, &mut ranges)?,
            Calibration::Percentile(_) => int8::observe(&Fast::new(), m, inputs, b, &mut ws, |tap, v| {
                let k = match tap {
                    Tap::Input => 0,
                    Tap::Pre(i) => 1 + i,
                    Tap::Out(i) => 1 + MAX_LAYERS + i,
                };
                taps[k].extend_from_slice(v);
            })?,
        }
    }
    if let Calibration::Percentile(p) = method {
        let range = |v: &mut Vec<f32>| -> MinMax {
            let mut r = MinMax::EMPTY;
            if !v.is_empty() {
                v.sort_unstable_by(f32::total_cmp);
                let at = |q: f64| v[((q / 100.0) * (v.len() - 1) as f64).round() as usize];
                r.update(&[at(100.0 - p), at(p)]);
            }
            r
        };
        ranges.input = range(&mut taps[0]);
        for i in 0..t.layers().len() {
            ranges.pre[i] = range(&mut taps[1 + i]);
            ranges.out[i] = range(&mut taps[1 + MAX_LAYERS + i]);
        }
    }
    Ok(ranges)
}

/// The int8 model file of `model` with activation `ranges` (batch norm folded, dropout gone).
pub fn quantize(model: &SavedModel, ranges: &Ranges) -> Result<Vec<u8>> {
    let t = &model.topology;
    let transform = model.input.as_transform();
    let mut scratch = vec![0.0; int8::scratch_len(t)];
    let mut out = vec![0u8; int8::encoded_len(t, &transform)];
    int8::quantize(t, &model.params, &model.running, ranges, &transform, &mut scratch, &mut out)
        .context("quantization failed")?;
    model.names.add_to(&out)
}

/// Runs an int8 model file on raw samples (as stored: pixels 0-255 or CSV values) and
/// returns class probabilities (dequantized logits through softmax). The products run on
/// [`FastInt8`] (AVX-512 VNNI / AVX2 where present), bit-identical to core's portable kernel.
#[derive(Debug)]
pub struct Int8Runner<'a> {
    model: Int8Model<'a>,
    raw_u8: Vec<u8>,
    x: Vec<f32>,
    xq: Vec<i8>,
    act: Vec<i8>,
    acc: Vec<i32>,
}

impl<'a> Int8Runner<'a> {
    /// Parses the file; it must be a classifier (softmax output).
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        let model = Int8Model::parse(bytes)?;
        if model.topology().output_layer().activation != Activation::Softmax {
            bail!("host evaluates classifiers, whose output layer is softmax");
        }
        Ok(Int8Runner {
            model,
            raw_u8: Vec::new(),
            x: Vec::new(),
            xq: Vec::new(),
            act: Vec::new(),
            acc: Vec::new(),
        })
    }

    /// The parsed model.
    pub fn model(&self) -> &Int8Model<'a> {
        &self.model
    }

    /// Probabilities of `n` raw samples. With `raw_is_u8` (image pixels) and an input table
    /// in the file, the input is quantized with integers only, as firmware does; otherwise it
    /// is transformed and quantized in floats.
    pub fn probabilities(&mut self, raw: &[f32], n: usize, raw_is_u8: bool) -> Result<Vec<f32>> {
        let q = &self.model;
        self.xq.resize(raw.len(), 0);
        if raw_is_u8 && q.input_table().is_some() {
            self.raw_u8.clear();
            self.raw_u8.extend(raw.iter().map(|&v| v.clamp(0.0, 255.0) as u8));
            q.quantize_u8(&self.raw_u8, &mut self.xq)?;
        } else {
            self.x.clear();
            self.x.extend_from_slice(raw);
            q.file().transform_input(raw, &mut self.x)?;
            q.quantize_input(&self.x, &mut self.xq)?;
        }
        self.act.resize(q.act_workspace_len(n), 0);
        self.acc.resize(q.acc_workspace_len(n), 0);
        let logits = int8::forward(&FastInt8::new(), q, &self.xq, n, &mut self.act, &mut self.acc)?;
        let mut probs = vec![0.0; logits.len()];
        q.dequantize_output(logits, &mut probs)?;
        Ok(probs)
    }
}

/// Evaluates an int8 model file on `data` (see [`Int8Runner::probabilities`]).
pub fn evaluate_int8(bytes: &[u8], data: &Dataset) -> Result<Evaluation> {
    let mut runner = Int8Runner::new(bytes)?;
    let (inputs, classes) = (runner.model().topology().input(), runner.model().topology().output());
    let is_u8 = matches!(data.features(), Features::U8(_));
    evaluate_with(data, inputs, classes, |raw, n| runner.probabilities(raw, n, is_u8))
}

/// A model file of either dtype.
#[derive(Clone, Debug)]
pub enum AnyModel {
    /// f32 parameters (boxed: a topology is a few hundred bytes inline).
    F32(Box<SavedModel>),
    /// An int8 model file's bytes.
    Int8(Vec<u8>),
}

impl AnyModel {
    /// Reads a model file of either dtype.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read model file {}; train one with `host train --out {}`",
                path.display(),
                path.display()
            )
        })?;
        let name = path.display().to_string();
        let dtype =
            ModelFile::parse(&bytes).with_context(|| format!("{name}: not a valid model file"))?.dtype();
        Ok(match dtype {
            DType::Int8 => AnyModel::Int8(bytes),
            _ => AnyModel::F32(Box::new(SavedModel::from_bytes(&name, &bytes)?)),
        })
    }

    /// The network shape.
    pub fn topology(&self) -> Result<mlp::Topology> {
        Ok(match self {
            AnyModel::F32(m) => m.topology.clone(),
            AnyModel::Int8(b) => ModelFile::parse(b)?.topology().clone(),
        })
    }

    /// The class and feature names the model file stores.
    pub fn names(&self) -> Result<ModelNames> {
        Ok(match self {
            AnyModel::F32(m) => m.names.clone(),
            AnyModel::Int8(b) => ModelNames::read(&ModelFile::parse(b)?),
        })
    }

    /// `data` renumbered to the model's classes by name (see [`ModelNames::align`]): a class
    /// the model does not know is an error that names it and lists the model's classes.
    pub fn align(&self, data: Dataset) -> Result<Dataset> {
        let classes = mlp::format::class_count(&self.topology()?);
        self.names()?.align(data, classes)
    }

    /// Class probabilities of `n` raw samples (pixels 0-255 when `raw_is_u8`).
    pub fn probabilities(&self, raw: &[f32], n: usize, raw_is_u8: bool) -> Result<Vec<f32>> {
        match self {
            AnyModel::F32(m) => crate::train::predict_proba(m, raw),
            AnyModel::Int8(b) => Int8Runner::new(b)?.probabilities(raw, n, raw_is_u8),
        }
    }

    /// Evaluates on `data` (eval mode).
    pub fn evaluate(&self, data: &Dataset) -> Result<Evaluation> {
        match self {
            AnyModel::F32(m) => crate::train::evaluate(m, data),
            AnyModel::Int8(b) => evaluate_int8(b, data),
        }
    }
}
