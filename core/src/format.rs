//! The model file: a small versioned little-endian binary that every path reads and writes.
//!
//! Parsing borrows from the byte slice, never allocates, and never panics: any byte string
//! is either a valid model or an [`Error`] saying what is wrong. The bytes may come from
//! `include_bytes!` or flash, at any alignment.
//!
//! # Layout (versions 1 and 2), all integers and floats little-endian
//!
//! Version 2 is version 1 with a names section (class and feature names, below) between
//! the payload and the CRC; everything else is the same byte for byte. [`write`] and
//! [`int8::quantize`](crate::int8::quantize) write version 1 (no names); [`add_names`] turns
//! such a file into version 2. Both versions are read.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `MLPM` |
//! | 4 | 2 | version (1 or 2) |
//! | 6 | 1 | dtype: 0 = f32, 1 = int8 |
//! | 7 | 1 | input transform: 0 none, 1 global, 2 per feature |
//! | 8 | 4 | input width |
//! | 12 | 4 | number of layers `L` (1 to 8) |
//! | 16 | 16 × L | per layer: outputs `u32`, activation `u8`, layer flags `u8` (bit 0: batch norm), reserved `u16` (0), activation alpha `f32`, dropout rate `f32` |
//! | 16 + 16L | 4 | parameter count `P` (must equal the topology's `param_len`) |
//! | 20 + 16L | 4 | running-statistics count `R` (must equal `running_len`) |
//! | 24 + 16L | … | the payload of the dtype (below) |
//! | … | … | version 2 only: the names section (below) |
//! | end - 4 | 4 | CRC-32 (IEEE 802.3, as zlib's `crc32`) of every byte before it |
//!
//! ## f32 payload (dtype 0)
//!
//! | size | field |
//! |---|---|
//! | 4P | parameters `f32`, in core's flat layout |
//! | 4R | batch-norm running statistics `f32` |
//! | 0, 8 or 8 × input | input transform: nothing; `scale`, `offset`; or `input` scales then `input` offsets (`f32`) |
//!
//! ## int8 payload (dtype 1)
//!
//! An int8 file describes a deployed network: no layer has batch norm (it is folded into the
//! weights) or dropout (flags and dropout rate are 0), `P` is the folded topology's
//! `param_len` (weights plus biases) and `R` is 0. Conventions follow TFLite's int8 spec:
//! a real value `r` is stored as `q` with `r = scale · (q - zero_point)`; weights are
//! symmetric per output channel (zero point 0, values in `[-127, 127]`); the bias of output
//! `o` is int32 with scale `s_in · s_w[o]` and zero point 0. See [`crate::int8`].
//!
//! | size | field |
//! |---|---|
//! | 0, 8 or 8 × input | input transform `f32`, exactly as in f32 files |
//! | 4 | input scale `f32` |
//! | 4 | input zero point `i32` (in `[-128, 127]`) |
//! | 4 | input flags `u32`: bit 0 set if a u8 -> i8 table follows (only with transform 0 or 1); bit 1 set if requantization uses TFLite's single rounding (`TFLITE_SINGLE_ROUNDING`, for models imported from LiteRT) rather than gemmlowp's double rounding; other bits 0 |
//! | 0 or 256 | input table `i8[256]`: entry `r` is the quantized network input for raw value `r` |
//! | … | each layer (`n` outputs, `m` inputs), first to last: |
//! | 4 | output scale `f32` (for dequantization by float-capable callers only) |
//! | 4 | output zero point `i32` (in `[-128, 127]`) |
//! | 4 | pre-activation scale `f32` (equal to the output scale if the layer has no table) |
//! | 4 | pre-activation zero point `i32` (equal to the output zero point if no table) |
//! | 4n | weight scales `f32`, one per output channel |
//! | 4n | bias `i32` |
//! | 4n | requantization multipliers `i32` (0 or in `[2^30, 2^31 - 1]`) |
//! | 4n | requantization shifts `i32` (in `[-31, 30]`; positive shifts left) |
//! | nm, padded to a multiple of 4 with zeros | weights `i8`, `W[o][j]` row-major, in `[-127, 127]` |
//! | 0 or 256 | activation table `i8[256]` (sigmoid, tanh, leaky ReLU, ELU, GELU): entry `q + 128` is the output for pre-activation `q` |
//!
//! ## Names section (version 2)
//!
//! What a deployed classifier needs to speak its user's language without its training data:
//! the class names (output `i` predicts class `i`) and the input feature names.
//!
//! | size | field |
//! |---|---|
//! | 4 | class-name count `C` `u32`: 0, or the number of classes (the output width; 2 for a single sigmoid output) |
//! | 4 | feature-name count `F` `u32`: 0, or the input width |
//! | 4 | names byte length `N` `u32` |
//! | N, padded to a multiple of 4 with zeros | `C` class names, then `F` feature names, each a length byte `u8` (0 to 255) and that many bytes of UTF-8 |
//!
//! A file without names has `C = F = N = 0` (12 bytes).
//!
//! Every section is a multiple of 4 bytes, so every `i32`/`f32` field is 4-byte aligned
//! when the file is; the parser reads them with `from_le_bytes` and works at any alignment.
//!
//! The input transform maps a raw sample as stored (e.g. pixel values 0 to 255) to the
//! network's input, `x = raw · scale + offset`, so every consumer of the file (evaluation,
//! prediction, firmware) preprocesses exactly as training did.
//!
//! Activation codes: 0 identity, 1 sigmoid, 2 tanh, 3 relu, 4 leaky relu, 5 elu, 6 gelu,
//! 7 softmax, 8 maxout (its piece count `k` in the activation alpha slot as a whole number,
//! 2 to 16; its layer's weights and bias have `k` rows per unit, see
//! [`topology`](crate::Topology)). Code 8 needed no new version: older files never hold it and
//! load as before, and an older build refuses a maxout file by its unknown code. The header is a multiple of 4 bytes, so parameters are 4-byte aligned when the
//! file is, and [`ModelFile::params_f32`] can then borrow them without copying.

use crate::error::{check_len, Buffer, Error};
use crate::topology::{Activation, LayerSpec, Topology, MAX_LAYERS};

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"MLPM";
/// The newest format version this crate reads (and [`add_names`] writes): 2, version 1
/// plus the names section.
pub const VERSION: u16 = 2;
/// The version without names, which [`write`] and `int8::quantize` write.
pub const VERSION_1: u16 = 1;
/// The longest class or feature name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;

const HEADER_FIXED: usize = 16;
const LAYER_RECORD: usize = 16;

/// How parameters are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit IEEE floats.
    F32,
    /// int8 weights and activations, int32 biases, fixed-point requantization ([`crate::int8`]).
    Int8,
}

impl DType {
    pub(crate) const fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::Int8 => 1,
        }
    }

    /// The lowercase name used in messages.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Int8 => "int8",
        }
    }
}

/// How a raw sample (as stored in a data set) becomes the network's input:
/// `x[j] = raw[j] · scale[j] + offset[j]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputTransform<'a> {
    /// The raw values are the inputs.
    Identity,
    /// One scale and offset for every feature (e.g. pixels / 255, or MNIST's mean/std).
    Global {
        /// Multiplies the raw value.
        scale: f32,
        /// Added after scaling.
        offset: f32,
    },
    /// A scale and offset per feature (e.g. standardized tabular columns).
    PerFeature {
        /// `input` scales.
        scale: &'a [f32],
        /// `input` offsets.
        offset: &'a [f32],
    },
}

impl InputTransform<'_> {
    pub(crate) const fn code(&self) -> u8 {
        match self {
            InputTransform::Identity => 0,
            InputTransform::Global { .. } => 1,
            InputTransform::PerFeature { .. } => 2,
        }
    }

    pub(crate) fn payload_len(code: u8, input: usize) -> usize {
        match code {
            1 => 8,
            2 => input.saturating_mul(8),
            _ => 0,
        }
    }
}

/// A parsed model file, borrowing its parameter bytes.
#[derive(Clone, Debug)]
pub struct ModelFile<'a> {
    topology: Topology,
    dtype: DType,
    params: &'a [u8],
    running: &'a [u8],
    transform_code: u8,
    transform: &'a [u8],
    version: u16,
    class_names: u32,
    feature_names: u32,
    names: &'a [u8],
}

/// Bytes a model file of `topology` with input transform `transform` takes.
pub fn encoded_len(topology: &Topology, transform: &InputTransform<'_>) -> usize {
    body_len(topology, transform.code()).saturating_add(4)
}

fn body_len(topology: &Topology, transform_code: u8) -> usize {
    header_len(topology.layers().len())
        .saturating_add(topology.param_len().saturating_mul(4))
        .saturating_add(topology.running_len().saturating_mul(4))
        .saturating_add(InputTransform::payload_len(transform_code, topology.input()))
}

pub(crate) const fn header_len(layers: usize) -> usize {
    HEADER_FIXED + LAYER_RECORD * layers + 8
}

/// Writes a model file into `out` (exactly [`encoded_len`] bytes). Returns the length.
///
/// Errors: buffer lengths, a per-feature transform whose length is not the input width,
/// a non-finite transform value.
pub fn write(
    topology: &Topology,
    params: &[f32],
    running: &[f32],
    transform: &InputTransform<'_>,
    out: &mut [u8],
) -> Result<usize, Error> {
    check_len(Buffer::Params, topology.param_len(), params.len())?;
    check_len(Buffer::Running, topology.running_len(), running.len())?;
    let (scales, offsets) = transform_values(topology, transform)?;
    let len = encoded_len(topology, transform);
    check_len(Buffer::FileBytes, len, out.len())?;
    let mut w = Writer { out, pos: 0 };
    write_header(&mut w, topology, DType::F32, transform.code(), params.len(), running.len())?;
    params.iter().chain(running).chain(scales).chain(offsets).for_each(|&v| w.f32(v));
    Ok(w.finish())
}

/// The transform's scales and offsets as slices (empty for the identity), checked: lengths
/// and finiteness.
pub(crate) fn transform_values<'t>(
    topology: &Topology,
    transform: &'t InputTransform<'_>,
) -> Result<(&'t [f32], &'t [f32]), Error> {
    let (scales, offsets): (&[f32], &[f32]) = match transform {
        InputTransform::Identity => (&[], &[]),
        InputTransform::Global { scale, offset } => {
            (core::slice::from_ref(scale), core::slice::from_ref(offset))
        }
        InputTransform::PerFeature { scale, offset } => {
            check_len(Buffer::Input, topology.input(), scale.len())?;
            check_len(Buffer::Input, topology.input(), offset.len())?;
            (scale, offset)
        }
    };
    if scales.iter().chain(offsets).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: "an input transform value" });
    }
    Ok((scales, offsets))
}

/// Writes everything up to and including the running-statistics count `R`.
pub(crate) fn write_header(
    w: &mut Writer<'_>,
    topology: &Topology,
    dtype: DType,
    transform_code: u8,
    params: usize,
    running: usize,
) -> Result<(), Error> {
    let count = |n: usize| u32::try_from(n).map_err(|_| Error::ModelTooLarge);
    w.bytes(&MAGIC);
    w.bytes(&VERSION_1.to_le_bytes());
    w.bytes(&[dtype.code(), transform_code]);
    w.u32(count(topology.input())?);
    w.u32(count(topology.layers().len())?);
    for l in topology.layers() {
        let (code, alpha) = activation_code(l.activation);
        w.u32(count(l.outputs)?);
        w.bytes(&[code, l.batch_norm as u8, 0, 0]);
        w.f32(alpha);
        w.f32(l.dropout);
    }
    w.u32(count(params)?);
    w.u32(count(running)?);
    Ok(())
}

impl<'a> ModelFile<'a> {
    /// Parses and validates a model file: magic, version, dtype, topology, sizes, checksum.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = r.u16()?;
        if version != VERSION_1 && version != VERSION {
            return Err(Error::UnsupportedVersion { found: version, supported: VERSION });
        }
        let dtype = match r.u8()? {
            0 => DType::F32,
            1 => DType::Int8,
            code => return Err(Error::UnknownDType { code }),
        };
        let transform_code = r.u8()?;
        if transform_code > 2 {
            return Err(Error::CorruptHeader { what: "unknown input transform code" });
        }
        let input = r.u32()? as usize;
        let layer_count = r.u32()? as usize;
        if layer_count == 0 {
            return Err(Error::NoLayers);
        }
        if layer_count > MAX_LAYERS {
            return Err(Error::TooManyLayers { layers: layer_count, max: MAX_LAYERS });
        }
        let mut specs = [LayerSpec::dense(1, Activation::Identity); MAX_LAYERS];
        for spec in specs.iter_mut().take(layer_count) {
            let outputs = r.u32()? as usize;
            let code = r.u8()?;
            let flags = r.u8()?;
            if r.u16()? != 0 || flags & !1 != 0 {
                return Err(Error::CorruptHeader { what: "reserved layer bits are not 0" });
            }
            let alpha = r.f32()?;
            let dropout = r.f32()?;
            let activation = activation_from_code(code, alpha)?;
            *spec = LayerSpec { outputs, activation, dropout, batch_norm: flags & 1 == 1 };
        }
        let topology = Topology::new(input, &specs[..layer_count])?;
        if dtype == DType::Int8 {
            crate::int8::refuse_maxout(&topology)?;
        }
        let (p, rn) = (r.u32()? as usize, r.u32()? as usize);
        if p != topology.param_len() || rn != topology.running_len() {
            return Err(Error::CorruptHeader { what: "parameter counts do not match the topology" });
        }
        let transform_len = InputTransform::payload_len(transform_code, topology.input());
        let (params, running, transform) = match dtype {
            DType::F32 => {
                if version == VERSION_1 {
                    check_file_len(body_len(&topology, transform_code).saturating_add(4), bytes.len())?;
                }
                (r.take(p.saturating_mul(4))?, r.take(rn.saturating_mul(4))?, r.take(transform_len)?)
            }
            DType::Int8 => {
                if specs[..layer_count].iter().any(|l| l.batch_norm || l.dropout.to_bits() != 0) {
                    return Err(Error::CorruptHeader {
                        what: "an int8 model file has batch norm or dropout (they must be folded away)",
                    });
                }
                let transform = r.take(transform_len)?;
                // The input table flag decides the payload length: peek at it.
                let mut peek = Reader { bytes, pos: r.pos + 8 };
                let table = match peek.u32()? {
                    flags @ 0..=3 => flags & 1 == 1,
                    _ => {
                        return Err(Error::CorruptPayload {
                            what: "input flags other than bits 0 and 1 are set",
                        })
                    }
                };
                let payload = crate::int8::layout::payload_len(topology.layers(), topology.input(), table);
                if version == VERSION_1 {
                    check_file_len(r.pos.saturating_add(payload).saturating_add(4), bytes.len())?;
                }
                (r.take(payload)?, &bytes[..0], transform)
            }
        };
        let (class_names, feature_names, names) =
            if version == VERSION { read_names(&mut r, &topology)? } else { (0, 0, &bytes[..0]) };
        let expected = r.pos.saturating_add(4);
        check_file_len(expected, bytes.len())?;
        let body = &bytes[..r.pos];
        let stored = r.u32()?;
        let computed = crc32(body);
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        let file = ModelFile {
            topology,
            dtype,
            params,
            running,
            transform_code,
            transform,
            version,
            class_names,
            feature_names,
            names,
        };
        if (0..file.topology.input()).any(|j| {
            let (s, o) = file.input_scale_offset(j);
            !(s.is_finite() && o.is_finite())
        }) {
            return Err(Error::NonFinite { what: "an input transform value in the model file" });
        }
        if dtype == DType::Int8 {
            crate::int8::Int8Model::from_file(file.clone())?;
        }
        Ok(file)
    }

    /// The int8 view of an int8 file (`None` for an f32 file), borrowing the same bytes;
    /// run it with [`int8::forward`](crate::int8::forward).
    pub fn int8(&self) -> Option<crate::int8::Int8Model<'a>> {
        match self.dtype {
            DType::Int8 => crate::int8::Int8Model::from_file(self.clone()).ok(),
            DType::F32 => None,
        }
    }

    /// The input transform code: 0 none, 1 global, 2 per feature.
    pub(crate) fn transform_code(&self) -> u8 {
        self.transform_code
    }

    /// The dtype payload (for int8 files: from the input scale to the last layer's table).
    pub(crate) fn payload(&self) -> &'a [u8] {
        self.params
    }

    /// The network shape.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The format version of the file (1: no names section; 2: with one).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// How many class names the file stores: 0 or [`class_count`].
    pub fn class_name_count(&self) -> usize {
        self.class_names as usize
    }

    /// How many feature names the file stores: 0 or the input width.
    pub fn feature_name_count(&self) -> usize {
        self.feature_names as usize
    }

    /// The name of class `i` (the class output `i` predicts), if the file names its classes.
    pub fn class_name(&self, i: usize) -> Option<&'a str> {
        if i >= self.class_names as usize {
            return None;
        }
        nth_name(self.names, i)
    }

    /// The name of input feature `j`, if the file names its features.
    pub fn feature_name(&self, j: usize) -> Option<&'a str> {
        if j >= self.feature_names as usize {
            return None;
        }
        nth_name(self.names, self.class_names as usize + j)
    }

    /// How the parameters are stored.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Copies the parameters into `out` (`topology().param_len()` long).
    ///
    /// Errors: [`Error::DTypeMismatch`] for an int8 file (use [`int8`](Self::int8)).
    pub fn read_params(&self, out: &mut [f32]) -> Result<(), Error> {
        if self.dtype != DType::F32 {
            return Err(Error::DTypeMismatch { expected: DType::F32, found: self.dtype });
        }
        read_f32s(self.params, out, Buffer::Params)
    }

    /// Copies the batch-norm running statistics into `out` (`topology().running_len()` long).
    pub fn read_running(&self, out: &mut [f32]) -> Result<(), Error> {
        read_f32s(self.running, out, Buffer::Running)
    }

    /// The input transform of feature `j` as `(scale, offset)` (`(1, 0)` without one).
    pub fn input_scale_offset(&self, j: usize) -> (f32, f32) {
        let at = |i: usize| {
            self.transform.get(i * 4..i * 4 + 4).map_or(0.0, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        };
        match self.transform_code {
            1 => (at(0), at(1)),
            2 => (at(j), at(self.topology.input() + j)),
            _ => (1.0, 0.0),
        }
    }

    /// Whether the file has an input transform other than the identity.
    pub fn has_input_transform(&self) -> bool {
        self.transform_code != 0
    }

    /// Applies the input transform to `raw` samples (any whole number of rows of the input
    /// width), writing network inputs into `out` of the same length.
    pub fn transform_input(&self, raw: &[f32], out: &mut [f32]) -> Result<(), Error> {
        check_len(Buffer::Input, raw.len(), out.len())?;
        let n = self.topology.input();
        if !raw.len().is_multiple_of(n) {
            return Err(Error::BufferLength {
                buffer: Buffer::Input,
                expected: raw.len() / n * n,
                actual: raw.len(),
            });
        }
        for (rr, or) in raw.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            for (j, (o, &x)) in or.iter_mut().zip(rr).enumerate() {
                let (s, off) = self.input_scale_offset(j);
                *o = x * s + off;
            }
        }
        Ok(())
    }

    /// The parameters without copying, when the bytes are 4-byte aligned and the target is
    /// little-endian (true for Cortex-M and x86); `None` otherwise: use
    /// [`read_params`](Self::read_params). Always `None` for an int8 file.
    pub fn params_f32(&self) -> Option<&'a [f32]> {
        if self.dtype != DType::F32 {
            return None;
        }
        borrow_f32s(self.params)
    }

    /// The running statistics without copying, under the same conditions as
    /// [`params_f32`](Self::params_f32).
    pub fn running_f32(&self) -> Option<&'a [f32]> {
        borrow_f32s(self.running)
    }
}

/// The number of classes of a classifier with `topology`: the output width, or 2 for a
/// single output (a binary classifier).
pub fn class_count(topology: &Topology) -> usize {
    topology.output().max(2)
}

/// Class and feature names for [`add_names`]: each list empty, or one name per class
/// ([`class_count`]) / per input feature; each name at most [`MAX_NAME_LEN`] bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Names<'a> {
    /// Class names, by class index.
    pub classes: &'a [&'a str],
    /// Feature names, by input index.
    pub features: &'a [&'a str],
}

impl Names<'_> {
    fn strings(&self) -> impl Iterator<Item = &str> {
        self.classes.iter().chain(self.features).copied()
    }

    /// Unpadded length of the names block `N`.
    fn block_len(&self) -> usize {
        self.strings().fold(0usize, |acc, s| acc.saturating_add(1).saturating_add(s.len()))
    }

    /// Bytes the names section takes (counts, length, padded block).
    pub fn section_len(&self) -> usize {
        12usize.saturating_add(self.block_len().div_ceil(4).saturating_mul(4))
    }
}

/// The length of the version 2 file [`add_names`] makes from a version 1 file of `v1_len`
/// bytes.
pub fn named_len(v1_len: usize, names: &Names<'_>) -> usize {
    v1_len.saturating_add(names.section_len())
}

/// Turns a version 1 model file (as [`write`] or `int8::quantize` write it) into version 2
/// with `names`, written into `out` (exactly [`named_len`] bytes). Returns the length.
///
/// Errors: `file` is not a valid version 1 file; a name list is neither empty nor one per
/// class / input feature; a name is longer than [`MAX_NAME_LEN`] bytes; buffer length.
pub fn add_names(file: &[u8], names: &Names<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let parsed = ModelFile::parse(file)?;
    if parsed.version != VERSION_1 {
        return Err(Error::CorruptHeader { what: "names can only be added to a version 1 file" });
    }
    let t = parsed.topology();
    let (classes, inputs) = (class_count(t), t.input());
    if !names.classes.is_empty() && names.classes.len() != classes {
        return Err(Error::NameCount { what: "class", expected: classes, actual: names.classes.len() });
    }
    if !names.features.is_empty() && names.features.len() != inputs {
        return Err(Error::NameCount { what: "feature", expected: inputs, actual: names.features.len() });
    }
    if let Some(s) = names.strings().find(|s| s.len() > MAX_NAME_LEN) {
        return Err(Error::NameTooLong { len: s.len(), max: MAX_NAME_LEN });
    }
    let len = named_len(file.len(), names);
    check_len(Buffer::FileBytes, len, out.len())?;
    let count = |n: usize| u32::try_from(n).map_err(|_| Error::ModelTooLarge);
    let mut w = Writer { out, pos: 0 };
    w.bytes(&file[..4]);
    w.bytes(&VERSION.to_le_bytes());
    w.bytes(&file[6..file.len() - 4]);
    w.u32(count(names.classes.len())?);
    w.u32(count(names.features.len())?);
    let block = names.block_len();
    w.u32(count(block)?);
    for s in names.strings() {
        w.bytes(&[s.len() as u8]);
        w.bytes(s.as_bytes());
    }
    for _ in block..block.div_ceil(4) * 4 {
        w.bytes(&[0]);
    }
    Ok(w.finish())
}

/// Reads and checks the names section: counts, length, lengths of every name, UTF-8, zero
/// padding.
fn read_names<'a>(r: &mut Reader<'a>, topology: &Topology) -> Result<(u32, u32, &'a [u8]), Error> {
    let (classes, features, n) = (r.u32()?, r.u32()?, r.u32()? as usize);
    if classes != 0 && classes as usize != class_count(topology) {
        return Err(Error::CorruptPayload { what: "the class-name count is neither 0 nor the class count" });
    }
    if features != 0 && features as usize != topology.input() {
        return Err(Error::CorruptPayload {
            what: "the feature-name count is neither 0 nor the input width",
        });
    }
    let padded = r.take(n.div_ceil(4).saturating_mul(4))?;
    let (block, padding) = padded.split_at(n);
    if padding.iter().any(|&b| b != 0) {
        return Err(Error::CorruptPayload { what: "the names padding is not zero" });
    }
    let mut at = 0usize;
    for _ in 0..classes as u64 + features as u64 {
        let Some(&len) = block.get(at) else {
            return Err(Error::CorruptPayload { what: "the names block is shorter than its names" });
        };
        let Some(name) = block.get(at + 1..at + 1 + len as usize) else {
            return Err(Error::CorruptPayload { what: "the names block is shorter than its names" });
        };
        if core::str::from_utf8(name).is_err() {
            return Err(Error::CorruptPayload { what: "a class or feature name is not UTF-8" });
        }
        at += 1 + len as usize;
    }
    if at != block.len() {
        return Err(Error::CorruptPayload { what: "the names block is longer than its names" });
    }
    Ok((classes, features, block))
}

/// The `i`-th name of a checked names block.
fn nth_name(block: &[u8], i: usize) -> Option<&str> {
    let mut at = 0usize;
    for _ in 0..i {
        at = at.checked_add(1)?.checked_add(*block.get(at)? as usize)?;
    }
    let len = *block.get(at)? as usize;
    core::str::from_utf8(block.get(at + 1..at + 1 + len)?).ok()
}

fn borrow_f32s(bytes: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "little") {
        bytemuck::try_cast_slice(bytes).ok()
    } else {
        None
    }
}

fn read_f32s(bytes: &[u8], out: &mut [f32], buffer: Buffer) -> Result<(), Error> {
    check_len(buffer, bytes.len() / 4, out.len())?;
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

/// The activation's code in the model file (and its parameter, or 0): the numbering the
/// format documents, also used by the GPU kernels so there is one table.
pub fn activation_code(a: Activation) -> (u8, f32) {
    match a {
        Activation::Identity => (0, 0.0),
        Activation::Sigmoid => (1, 0.0),
        Activation::Tanh => (2, 0.0),
        Activation::Relu => (3, 0.0),
        Activation::LeakyRelu(alpha) => (4, alpha),
        Activation::Elu(alpha) => (5, alpha),
        Activation::Gelu => (6, 0.0),
        Activation::Softmax => (7, 0.0),
        // The piece count k rides in the parameter slot, a whole number.
        Activation::Maxout(k) => (8, k as f32),
    }
}

fn activation_from_code(code: u8, alpha: f32) -> Result<Activation, Error> {
    Ok(match code {
        0 => Activation::Identity,
        1 => Activation::Sigmoid,
        2 => Activation::Tanh,
        3 => Activation::Relu,
        4 => Activation::LeakyRelu(alpha),
        5 => Activation::Elu(alpha),
        6 => Activation::Gelu,
        7 => Activation::Softmax,
        // A hostile piece count is refused here (not whole, or beyond u8) or by
        // Topology::new (outside 2..=MAX_MAXOUT_PIECES), before any size is computed from it.
        8 if libm::truncf(alpha) == alpha && (0.0..=255.0).contains(&alpha) => {
            Activation::Maxout(alpha as u8)
        }
        8 => {
            return Err(Error::CorruptHeader {
                what: "the maxout piece count is not a whole number from 2 to 16",
            })
        }
        _ => return Err(Error::UnknownActivation { code }),
    })
}

fn check_file_len(expected: usize, actual: usize) -> Result<(), Error> {
    if actual < expected {
        return Err(Error::Truncated { expected, actual });
    }
    if actual > expected {
        return Err(Error::TrailingBytes { expected, actual });
    }
    Ok(())
}

pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut [u8],
    pub(crate) pos: usize,
}

impl Writer<'_> {
    /// Appends the CRC-32 of everything written so far; returns the total length.
    pub(crate) fn finish(&mut self) -> usize {
        let end = self.pos.min(self.out.len());
        let crc = crc32(&self.out[..end]);
        self.u32(crc);
        self.pos
    }
    /// Callers size `out` with `encoded_len` first, so every write fits; a short buffer
    /// would only truncate, never panic.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.pos..self.pos + b.len()) {
            dst.copy_from_slice(b);
        }
        self.pos += b.len();
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn f32(&mut self, v: f32) {
        self.bytes(&v.to_le_bytes());
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated { expected: self.pos.saturating_add(n), actual: self.bytes.len() }),
        }
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, Error> {
        Ok(self.u32()? as i32)
    }
    fn f32(&mut self) -> Result<f32, Error> {
        Ok(f32::from_bits(self.u32()?))
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib and PNG compute it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The byte-at-a-time table, built at compile time (1 KiB of flash).
static CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32/ISO-HDLC catalogue check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn sample() -> (Topology, [f32; 3 * 4 + 4 + 8 + 2 * 4 + 2], [f32; 8]) {
        let t = Topology::new(
            3,
            &[
                LayerSpec::dense(4, Activation::LeakyRelu(0.1)).with_batch_norm().with_dropout(0.25),
                LayerSpec::dense(2, Activation::Softmax),
            ],
        )
        .unwrap();
        let mut p = [0.0f32; 3 * 4 + 4 + 8 + 2 * 4 + 2];
        p.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 * 0.5 - 3.0);
        let running = [0.1, 0.2, 0.3, 0.4, 1.0, 2.0, 3.0, 4.0];
        (t, p, running)
    }

    #[test]
    fn round_trip_preserves_everything() {
        let (t, p, running) = sample();
        let mut buf = [0u8; 256];
        let scale = [0.5, 2.0, -1.0];
        let offset = [0.0, 1.0, 3.0];
        let tf = InputTransform::PerFeature { scale: &scale, offset: &offset };
        let len = encoded_len(&t, &tf);
        assert_eq!(write(&t, &p, &running, &tf, &mut buf[..len]).unwrap(), len);
        let m = ModelFile::parse(&buf[..len]).unwrap();
        assert_eq!(m.topology(), &t);
        assert_eq!(m.dtype(), DType::F32);
        let mut q = [0.0f32; 34];
        m.read_params(&mut q).unwrap();
        assert_eq!(q, p);
        let mut r = [0.0f32; 8];
        m.read_running(&mut r).unwrap();
        assert_eq!(r, running);
        let mut x = [0.0f32; 6];
        m.transform_input(&[2.0, 2.0, 2.0, 0.0, 0.0, 0.0], &mut x).unwrap();
        assert_eq!(x, [1.0, 5.0, 1.0, 0.0, 1.0, 3.0]);
        let global = InputTransform::Global { scale: 1.0 / 255.0, offset: -0.5 };
        let len = encoded_len(&t, &global);
        write(&t, &p, &running, &global, &mut buf[..len]).unwrap();
        let m = ModelFile::parse(&buf[..len]).unwrap();
        assert_eq!(m.input_scale_offset(2), (1.0 / 255.0, -0.5));
    }

    #[test]
    fn every_corruption_is_an_error() {
        let (t, p, running) = sample();
        let tf = InputTransform::Global { scale: 0.5, offset: 0.25 };
        let len = encoded_len(&t, &tf);
        let mut good = [0u8; 256];
        write(&t, &p, &running, &tf, &mut good[..len]).unwrap();
        let good = &good[..len];
        for cut in 0..len {
            assert!(ModelFile::parse(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut longer = [0u8; 257];
        longer[..len].copy_from_slice(good);
        assert!(matches!(ModelFile::parse(&longer[..len + 1]), Err(Error::TrailingBytes { .. })));
        for i in 0..len {
            let mut bad = [0u8; 256];
            bad[..len].copy_from_slice(good);
            bad[i] ^= 0x40;
            assert!(ModelFile::parse(&bad[..len]).is_err(), "flipped bit in byte {i} accepted");
        }
        let mut bad = [0u8; 256];
        bad[..len].copy_from_slice(good);
        bad[0] = b'X';
        assert_eq!(ModelFile::parse(&bad[..len]).unwrap_err(), Error::BadMagic);
        bad[..len].copy_from_slice(good);
        bad[4] = 9;
        assert_eq!(
            ModelFile::parse(&bad[..len]).unwrap_err(),
            Error::UnsupportedVersion { found: 9, supported: 2 }
        );
    }

    fn maxout_file(buf: &mut [u8; 512]) -> (Topology, usize) {
        let t = Topology::new(
            3,
            &[LayerSpec::dense(4, Activation::Maxout(3)), LayerSpec::dense(2, Activation::Softmax)],
        )
        .unwrap();
        let p: [f32; 12 * 4 + 2 * 5] = core::array::from_fn(|i| i as f32 * 0.25 - 4.0);
        let len = encoded_len(&t, &InputTransform::Identity);
        write(&t, &p, &[], &InputTransform::Identity, &mut buf[..len]).unwrap();
        (t, len)
    }

    #[test]
    fn maxout_round_trips_and_hostile_piece_counts_are_errors() {
        let mut buf = [0u8; 512];
        let (t, len) = maxout_file(&mut buf);
        let m = ModelFile::parse(&buf[..len]).unwrap();
        assert_eq!(m.topology(), &t);
        let mut q = [0.0f32; 58];
        m.read_params(&mut q).unwrap();
        assert_eq!(q[57], 57.0 * 0.25 - 4.0);
        // Layer 0: outputs at 16, activation code at 20, its alpha slot (k) at 24..28.
        assert_eq!((buf[20], f32::from_le_bytes(buf[24..28].try_into().unwrap())), (8, 3.0));
        let not_whole =
            Error::CorruptHeader { what: "the maxout piece count is not a whole number from 2 to 16" };
        let cases = [
            (2.5f32, not_whole),
            (f32::NAN, not_whole),
            (f32::INFINITY, not_whole),
            (-2.0, not_whole),
            (1e9, not_whole),
            (1.0, Error::InvalidMaxoutPieces { layer: 0, pieces: 1, max: 16 }),
            (17.0, Error::InvalidMaxoutPieces { layer: 0, pieces: 17, max: 16 }),
            (255.0, Error::InvalidMaxoutPieces { layer: 0, pieces: 255, max: 16 }),
        ];
        for (k, error) in cases {
            let mut bad = buf;
            bad[24..28].copy_from_slice(&k.to_le_bytes());
            assert_eq!(ModelFile::parse(&bad[..len]).unwrap_err(), error, "k = {k}");
        }
        // A maxout layer in an int8 file is refused by name, not sized.
        let mut bad = buf;
        bad[6] = 1;
        assert_eq!(
            ModelFile::parse(&bad[..len]).unwrap_err(),
            Error::MaxoutUnsupported { layer: 0, what: "int8 quantization" }
        );
    }

    #[test]
    fn absurd_dimensions_are_rejected_before_any_sizing() {
        let mut h = [0u8; 40];
        h[..4].copy_from_slice(&MAGIC);
        h[4] = 1;
        h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        h[12..16].copy_from_slice(&1u32.to_le_bytes());
        h[16..20].copy_from_slice(&10u32.to_le_bytes());
        assert!(matches!(ModelFile::parse(&h), Err(Error::WidthTooLarge { .. })));
    }
}
