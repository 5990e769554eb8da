//! Every way core can refuse its input. Nothing in core panics on input: it returns one of these.

use core::fmt;

/// A buffer that a function was given, named in [`Error::BufferLength`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    /// The flat parameter buffer (`Topology::param_len`).
    Params,
    /// The gradient buffer (same length as the parameters).
    Grads,
    /// Batch-norm running statistics (`Topology::running_len`).
    Running,
    /// Optimizer state (`Optimizer::state_len`).
    OptimizerState,
    /// The inference or training workspace (`Topology::infer_workspace_len` / `train_workspace_len`).
    Workspace,
    /// A batch of inputs (`batch * topology.input()`).
    Input,
    /// A batch of targets (labels: `batch`; dense: `batch * outputs`).
    Targets,
    /// A gradient with respect to the outputs (`batch * outputs`).
    OutputGrad,
    /// The output parameter buffer of [`fold_batch_norm`](crate::fold_batch_norm).
    FoldedParams,
    /// The byte buffer a model file is written into.
    FileBytes,
    /// An int8 activation workspace (`Int8Model::act_workspace_len`).
    Int8Activations,
    /// An int32 accumulator workspace (`Int8Model::acc_workspace_len`).
    Int32Accumulators,
    /// A batch of quantized outputs or their dequantized values.
    Output,
}

impl fmt::Display for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Buffer::Params => "parameter buffer",
            Buffer::Grads => "gradient buffer",
            Buffer::Running => "batch-norm running-statistics buffer",
            Buffer::OptimizerState => "optimizer state buffer",
            Buffer::Workspace => "workspace",
            Buffer::Input => "input batch",
            Buffer::Targets => "target batch",
            Buffer::OutputGrad => "output-gradient batch",
            Buffer::FoldedParams => "folded parameter buffer",
            Buffer::FileBytes => "model file buffer",
            Buffer::Int8Activations => "int8 activation workspace",
            Buffer::Int32Accumulators => "int32 accumulator workspace",
            Buffer::Output => "output batch",
        })
    }
}

/// Why core refused an input.
#[allow(missing_docs)] // variant fields are named by what they hold; variants say the rest
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A topology needs at least one layer.
    NoLayers,
    /// More layers than [`MAX_LAYERS`](crate::MAX_LAYERS).
    TooManyLayers { layers: usize, max: usize },
    /// A width of zero: `layer` is `None` for the input width, `Some(i)` for layer `i`.
    ZeroWidth { layer: Option<usize> },
    /// A width above [`MAX_WIDTH`](crate::MAX_WIDTH).
    WidthTooLarge { layer: Option<usize>, width: usize, max: usize },
    /// The parameter count does not fit this target's address space.
    ModelTooLarge,
    /// Softmax normalizes the output distribution; it is only valid on the last layer.
    SoftmaxInHiddenLayer { layer: usize },
    /// Dropout rate outside `[0, 1)` or not finite.
    InvalidDropout { layer: usize, rate: f32 },
    /// Dropout on the output layer would drop predictions, not features.
    DropoutOnOutputLayer,
    /// A leaky-ReLU or ELU alpha that is negative or not finite.
    InvalidActivationParameter { layer: usize, alpha: f32 },
    /// A maxout layer whose piece count is outside `2..=`[`MAX_MAXOUT_PIECES`](crate::MAX_MAXOUT_PIECES).
    InvalidMaxoutPieces { layer: usize, pieces: u8, max: u8 },
    /// Maxout on the output layer (it is a hidden-layer activation; the loss needs softmax,
    /// sigmoid or identity outputs).
    MaxoutOnOutputLayer,
    /// Batch norm on a maxout layer (not supported: it would normalize each of the `k`
    /// pieces; put batch norm on another layer or use ReLU here).
    MaxoutWithBatchNorm { layer: usize },
    /// An operation that does not support maxout layers (int8 quantization), named in `what`.
    MaxoutUnsupported { layer: usize, what: &'static str },
    /// A buffer of the wrong length.
    BufferLength { buffer: Buffer, expected: usize, actual: usize },
    /// A batch of zero samples.
    EmptyBatch,
    /// More samples than the trainer's buffers were sized for.
    BatchTooLarge { batch: usize, max: usize },
    /// Batch norm in training mode needs at least two samples to estimate a variance.
    BatchNormNeedsTwoSamples,
    /// A loss that cannot be combined with the output layer's activation.
    LossActivationMismatch { loss: &'static str, activation: &'static str, expected: &'static str },
    /// A class label not below the number of outputs.
    LabelOutOfRange { sample: usize, label: u32, classes: usize },
    /// Dense targets given where labels are needed, or the reverse.
    TargetKindMismatch { loss: &'static str, expected: &'static str },
    /// NaN or infinity where a finite number is required.
    NonFinite { what: &'static str },
    /// A hyperparameter outside its valid range.
    InvalidHyperparameter { name: &'static str, value: f32 },
    /// An optimizer that evaluates the loss several times per step (L-BFGS) was given to the
    /// elementwise [`Optimizer::update`](crate::Optimizer::update).
    NeedsObjective { optimizer: &'static str },
    /// A backward pass or loss was requested before a training forward pass.
    NoForwardPass,
    /// A model file that does not start with the magic bytes `MLPM`.
    BadMagic,
    /// A model file of a format version this build does not read.
    UnsupportedVersion { found: u16, supported: u16 },
    /// A model file with a parameter type this build does not know.
    UnknownDType { code: u8 },
    /// A model file with an activation code this build does not know.
    UnknownActivation { code: u8 },
    /// A model file whose header is inconsistent.
    CorruptHeader { what: &'static str },
    /// A model file shorter than its header says.
    Truncated { expected: usize, actual: usize },
    /// A model file longer than its header says.
    TrailingBytes { expected: usize, actual: usize },
    /// A model file whose checksum does not match its content.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// A model file read as one parameter type that stores another (e.g. `read_params` on an
    /// int8 file).
    DTypeMismatch { expected: crate::format::DType, found: crate::format::DType },
    /// A model file whose int8 payload is inconsistent (a zero point outside `[-128, 127]`, a
    /// shift outside `[-31, 30]`, a scale that is not finite and positive, ...).
    CorruptPayload { what: &'static str },
    /// A calibration range that is empty or not finite: `layer` is `None` for the input.
    InvalidCalibration { layer: Option<usize> },
    /// The int8 model file has no u8 -> i8 input table (its input transform is per feature).
    NoInputTable,
    /// A class or feature name for the model file longer than
    /// [`MAX_NAME_LEN`](crate::format::MAX_NAME_LEN) bytes.
    NameTooLong { len: usize, max: usize },
    /// A list of class names (or feature names) whose length is neither 0 nor the model's
    /// class count (input width).
    NameCount { what: &'static str, expected: usize, actual: usize },
    /// Quantization-aware training of a network with `what`, which it does not cover.
    FakeQuantUnsupported { what: &'static str },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoLayers => f.write_str("the topology has no layers; add at least the output layer"),
            Error::TooManyLayers { layers, max } => {
                write!(f, "the topology has {layers} layers but at most {max} are supported")
            }
            Error::ZeroWidth { layer: None } => f.write_str("the input width is 0; it must be at least 1"),
            Error::ZeroWidth { layer: Some(i) } => {
                write!(f, "layer {i} has 0 outputs; every layer needs at least 1")
            }
            Error::WidthTooLarge { layer, width, max } => match layer {
                None => write!(f, "the input width {width} exceeds the maximum of {max}"),
                Some(i) => write!(f, "layer {i} has {width} outputs, above the maximum of {max}"),
            },
            Error::ModelTooLarge => f.write_str(
                "the model's parameters do not fit in this target's memory; use narrower layers",
            ),
            Error::SoftmaxInHiddenLayer { layer } => write!(
                f,
                "layer {layer} uses softmax, which is only allowed on the output layer; use another activation"
            ),
            Error::InvalidDropout { layer, rate } => {
                write!(f, "layer {layer} has dropout rate {rate}; it must be in [0, 1)")
            }
            Error::DropoutOnOutputLayer => {
                f.write_str("the output layer has dropout; apply dropout to hidden layers only")
            }
            Error::InvalidActivationParameter { layer, alpha } => write!(
                f,
                "layer {layer} has activation parameter alpha = {alpha}; it must be finite and >= 0"
            ),
            Error::InvalidMaxoutPieces { layer, pieces, max } => write!(
                f,
                "layer {layer} is maxout with {pieces} pieces; a maxout unit needs 2 to {max} pieces"
            ),
            Error::MaxoutOnOutputLayer => f.write_str(
                "the output layer uses maxout, which is a hidden-layer activation; use softmax, sigmoid or identity on the output layer",
            ),
            Error::MaxoutWithBatchNorm { layer } => write!(
                f,
                "layer {layer} combines maxout with batch norm, which is not supported; drop batch norm on that layer or use relu"
            ),
            Error::MaxoutUnsupported { layer, what } => write!(
                f,
                "{what} does not support maxout layers (layer {layer} is maxout); keep the model in f32, or train it with another activation to quantize it"
            ),
            Error::BufferLength { buffer, expected, actual } => write!(
                f,
                "the {buffer} has {actual} elements but this topology and batch need exactly {expected}"
            ),
            Error::EmptyBatch => f.write_str("the batch is empty; give at least one sample"),
            Error::BatchTooLarge { batch, max } => write!(
                f,
                "a batch of {batch} samples exceeds the {max} the buffers were sized for; size the workspace for the largest batch"
            ),
            Error::BatchNormNeedsTwoSamples => f.write_str(
                "batch norm in training mode needs at least 2 samples per batch; use a larger batch or drop the last partial batch",
            ),
            Error::LossActivationMismatch { loss, activation, expected } => write!(
                f,
                "the {loss} loss cannot follow a {activation} output layer; use {expected} on the output layer"
            ),
            Error::LabelOutOfRange { sample, label, classes } => write!(
                f,
                "sample {sample} has label {label} but the output layer has {classes} classes (labels 0..{classes})"
            ),
            Error::TargetKindMismatch { loss, expected } => {
                write!(f, "the {loss} loss needs {expected} targets")
            }
            Error::NonFinite { what } => write!(f, "{what} is NaN or infinite"),
            Error::InvalidHyperparameter { name, value } => {
                write!(f, "hyperparameter {name} = {value} is out of range")
            }
            Error::NeedsObjective { optimizer } => write!(
                f,
                "{optimizer} evaluates the loss several times per step: run it with \
                 mlp::optim::Lbfgs::step and an Objective over the whole training set, not a batch update"
            ),
            Error::BadMagic => f.write_str("not an mlp model file (the first bytes are not MLPM)"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "model file format version {found} is not supported (this build reads versions 1 to {supported}); re-export the model with this version"
            ),
            Error::UnknownDType { code } => write!(f, "model file has unknown parameter type code {code}"),
            Error::UnknownActivation { code } => write!(f, "model file has unknown activation code {code}"),
            Error::CorruptHeader { what } => write!(f, "corrupt model file header: {what}"),
            Error::Truncated { expected, actual } => write!(
                f,
                "model file is truncated: it needs {expected} bytes but has {actual}; copy or export it again"
            ),
            Error::TrailingBytes { expected, actual } => write!(
                f,
                "model file has {actual} bytes but its header describes {expected}; it is corrupt or not a single model"
            ),
            Error::ChecksumMismatch { stored, computed } => write!(
                f,
                "model file checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt"
            ),
            Error::DTypeMismatch { expected, found } => write!(
                f,
                "the model file stores {} parameters but {} parameters were requested; use the {} API for this file",
                found.name(),
                expected.name(),
                found.name()
            ),
            Error::CorruptPayload { what } => write!(f, "corrupt model file payload: {what}"),
            Error::InvalidCalibration { layer: None } => f.write_str(
                "the calibration range of the network input is empty or not finite; calibrate on at least one sample",
            ),
            Error::InvalidCalibration { layer: Some(i) } => write!(
                f,
                "the calibration range of layer {i} is empty or not finite; calibrate on at least one sample"
            ),
            Error::NameTooLong { len, max } => write!(
                f,
                "a class or feature name is {len} bytes long; the model file holds names of at most {max} bytes: shorten it"
            ),
            Error::NameCount { what, expected, actual } => write!(
                f,
                "{actual} {what} names given; the model file holds none or exactly {expected}"
            ),
            Error::NoInputTable => f.write_str(
                "this int8 model has no u8 input table (its input transform is per feature); quantize float inputs instead",
            ),
            Error::FakeQuantUnsupported { what } => write!(
                f,
                "quantization-aware training does not support {what}; train without it, or quantize after training (PTQ)"
            ),
            Error::NoForwardPass => f.write_str(
                "no training forward pass has been run for this batch; call forward before backward",
            ),
        }
    }
}

impl core::error::Error for Error {}

pub(crate) fn check_len(buffer: Buffer, expected: usize, actual: usize) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::BufferLength { buffer, expected, actual })
    }
}
