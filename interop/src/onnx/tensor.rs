//! Tensor data out of `TensorProto`s: raw little-endian bytes, the typed repeated fields, or
//! an external-data file next to the model. Every size is checked against the bytes actually
//! present before anything is allocated, so a hostile `dims` cannot make a read allocate more
//! than the file (or the external file) holds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use super::proto::{data_type, TensorProto, DATA_LOCATION_EXTERNAL};
use crate::{Error, Result};

/// A tensor's shape and f32 values.
#[derive(Clone, Debug)]
pub struct FloatTensor {
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

/// The shape of `t` as sizes, and its element count; negative dims and a product that
/// overflows are refused.
pub fn shape(t: &TensorProto) -> Result<(Vec<usize>, usize)> {
    let mut dims = Vec::with_capacity(t.dims.len().min(64));
    let mut count = 1usize;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| {
            Error::new(format!("tensor '{}' has a negative dimension ({d}) in {:?}", t.name, t.dims))
        })?;
        count = count.checked_mul(d).ok_or_else(|| {
            Error::new(format!("tensor '{}' has dimensions {:?} whose product overflows", t.name, t.dims))
        })?;
        dims.push(d);
    }
    Ok((dims, count))
}

/// The data type's name, for messages.
fn type_name(data_type: i32) -> String {
    let name = match data_type {
        0 => "undefined",
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        16 => "bfloat16",
        _ => "other",
    };
    format!("{name} ({data_type})")
}

/// `t`'s values as f32 (float tensors as they are, double tensors rounded once).
pub fn floats(t: &TensorProto, external_dir: Option<&Path>) -> Result<FloatTensor> {
    let (dims, count) = shape(t)?;
    let values = match t.data_type {
        data_type::FLOAT => match stored_bytes(t, count, 4, external_dir)? {
            Some(raw) => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            None => typed(t, &t.float_data, count)?.to_vec(),
        },
        data_type::DOUBLE => match stored_bytes(t, count, 8, external_dir)? {
            Some(raw) => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            None => typed(t, &t.double_data, count)?.iter().map(|&x| x as f32).collect(),
        },
        other => {
            return Err(Error::new(format!(
                "tensor '{}' has data type {}; weights must be float (1) or double (11): \
                 export the model in float32",
                t.name,
                type_name(other)
            )))
        }
    };
    Ok(FloatTensor { dims, values })
}

/// `t`'s values as i64 (shape operands, e.g. Reshape's).
pub fn ints(t: &TensorProto, external_dir: Option<&Path>) -> Result<Vec<i64>> {
    let (_, count) = shape(t)?;
    if t.data_type != data_type::INT64 {
        return Err(Error::new(format!(
            "tensor '{}' has data type {}; a shape operand must be int64 (7)",
            t.name,
            type_name(t.data_type)
        )));
    }
    Ok(match stored_bytes(t, count, 8, external_dir)? {
        Some(raw) => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        None => typed(t, &t.int64_data, count)?.to_vec(),
    })
}

/// The value of a one-element bool tensor (Dropout's training_mode), or `None` when `t` is
/// not one.
pub fn bool_scalar(t: &TensorProto) -> Option<bool> {
    if t.data_type != data_type::BOOL || shape(t).ok()?.1 != 1 || t.data_location == DATA_LOCATION_EXTERNAL {
        return None;
    }
    match (t.raw_data.as_slice(), t.int32_data.as_slice()) {
        ([b], []) => Some(*b != 0),
        ([], [v]) => Some(*v != 0),
        _ => None,
    }
}

/// The typed repeated field, when it holds exactly `count` values.
fn typed<'a, T>(t: &TensorProto, field: &'a [T], count: usize) -> Result<&'a [T]> {
    if field.len() != count {
        return Err(Error::new(format!(
            "tensor '{}' has dimensions {:?} ({count} values) but holds {} values",
            t.name,
            t.dims,
            field.len()
        )));
    }
    Ok(field)
}

/// The tensor's bytes when they are raw (in the file or external), `None` when its values
/// are in a typed field; the length is checked to be `count * width` before any copy.
fn stored_bytes(
    t: &TensorProto,
    count: usize,
    width: usize,
    external_dir: Option<&Path>,
) -> Result<Option<Vec<u8>>> {
    let len = count.checked_mul(width).ok_or_else(|| {
        Error::new(format!("tensor '{}' has dimensions {:?} whose byte size overflows", t.name, t.dims))
    })?;
    if t.data_location == DATA_LOCATION_EXTERNAL {
        return external(t, len, external_dir).map(Some);
    }
    if t.raw_data.is_empty() {
        return Ok(None);
    }
    if t.raw_data.len() != len {
        return Err(Error::new(format!(
            "tensor '{}' has dimensions {:?} ({len} bytes) but holds {} bytes of raw data",
            t.name,
            t.dims,
            t.raw_data.len()
        )));
    }
    Ok(Some(t.raw_data.clone()))
}

/// Reads `len` bytes of an external-data tensor from its file under `dir`, refusing
/// locations that are absolute or escape `dir` (through `..` or a link).
fn external(t: &TensorProto, len: usize, dir: Option<&Path>) -> Result<Vec<u8>> {
    let name = &t.name;
    let Some(dir) = dir else {
        return Err(Error::new(format!(
            "tensor '{name}' is stored in an external data file, and no model folder was given to find it in"
        )));
    };
    // `Path::parent` of a bare file name is "": the current folder.
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let (mut location, mut offset, mut length) = (None, 0u64, None);
    for e in &t.external_data {
        let number = || {
            e.value.parse::<u64>().map_err(|_| {
                Error::new(format!(
                    "tensor '{name}': external data {} '{}' is not a byte count",
                    e.key, e.value
                ))
            })
        };
        match e.key.as_str() {
            "location" => location = Some(e.value.as_str()),
            "offset" => offset = number()?,
            "length" => length = Some(number()?),
            _ => {}
        }
    }
    let Some(location) = location else {
        return Err(Error::new(format!("tensor '{name}' is external but names no location")));
    };
    let relative = Path::new(location);
    if relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(Error::new(format!(
            "tensor '{name}': external data location '{location}' leaves the model's folder \
             (absolute, or through '..'); only files beside the model are read"
        )));
    }
    if length.is_some_and(|l| l != len as u64) {
        return Err(Error::new(format!(
            "tensor '{name}' has dimensions {:?} ({len} bytes) but its external data length is {}",
            t.dims,
            length.unwrap_or(0)
        )));
    }
    let open = |e: std::io::Error| {
        Error::new(format!("tensor '{name}': cannot read external data '{location}': {e}"))
    };
    let base = dir.canonicalize().map_err(open)?;
    let path = base.join(relative).canonicalize().map_err(open)?;
    if !path.starts_with(&base) {
        return Err(Error::new(format!(
            "tensor '{name}': external data location '{location}' links outside the model's folder; refused"
        )));
    }
    let mut file = File::open(&path).map_err(open)?;
    let size = file.metadata().map_err(open)?.len();
    if offset.checked_add(len as u64).is_none_or(|end| end > size) {
        return Err(Error::new(format!(
            "tensor '{name}' needs {len} bytes at offset {offset} of '{location}', which has {size} bytes"
        )));
    }
    file.seek(SeekFrom::Start(offset)).map_err(open)?;
    let mut bytes = vec![0u8; len];
    file.read_exact(&mut bytes).map_err(open)?;
    Ok(bytes)
}
