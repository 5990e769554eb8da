//! [`FloatModel`] -> safetensors bytes with `nn.Sequential` `state_dict` names.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::metadata::{self, activation_text, floats_text, module_expr};
use super::read::shape_text;
use crate::{Error, FloatModel, Result};

/// One tensor to write.
struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn f32_entry(name: String, shape: Vec<usize>, values: &[f32]) -> Entry {
    Entry { name, dtype: "F32", shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
}

/// Writes `model` (see the module docs for names and metadata).
pub(super) fn write(model: &FloatModel) -> Result<Vec<u8>> {
    let t = &model.topology;
    if model.params.len() != t.param_len() || model.running.len() != t.running_len() {
        return Err(Error::new(format!(
            "the model's buffers do not match its topology ({} parameters for {}, {} running statistics for {})",
            model.params.len(),
            t.param_len(),
            model.running.len(),
            t.running_len()
        )));
    }
    let mut tensors = Vec::new();
    let mut modules = Vec::new();
    let mut index = 0usize;
    for (i, layer) in t.layers().iter().enumerate() {
        let act = module_expr(layer.activation)?;
        let (n, fan_in) = (layer.outputs, t.fan_in(i));
        let r = t.param_ranges(i).ok_or_else(|| Error::new("internal: a layer without parameters"))?;
        tensors.push(f32_entry(format!("{index}.weight"), vec![n, fan_in], &model.params[r.weights]));
        tensors.push(f32_entry(format!("{index}.bias"), vec![n], &model.params[r.bias]));
        modules.push(format!("nn.Linear({fan_in}, {n})"));
        index += 1;
        if let (Some((gamma, beta)), Some((mean, var))) = (r.batch_norm, t.running_ranges(i)) {
            tensors.push(f32_entry(format!("{index}.weight"), vec![n], &model.params[gamma]));
            tensors.push(f32_entry(format!("{index}.bias"), vec![n], &model.params[beta]));
            tensors.push(f32_entry(format!("{index}.running_mean"), vec![n], &model.running[mean]));
            tensors.push(f32_entry(format!("{index}.running_var"), vec![n], &model.running[var]));
            // I64 first in the data (below) keeps it 8-byte aligned for loaders that map it.
            tensors.push(Entry {
                name: format!("{index}.num_batches_tracked"),
                dtype: "I64",
                shape: Vec::new(),
                data: 0i64.to_le_bytes().to_vec(),
            });
            modules.push(format!("nn.BatchNorm1d({n})"));
            index += 1;
        }
        modules.push(act);
        index += 1;
    }
    tensors.sort_by_key(|e| e.dtype != "I64");

    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(metadata::TOPOLOGY.to_string(), shape_text(t));
    let (hidden, output) = t.layers().split_at(t.layers().len() - 1);
    let names: Vec<String> = hidden.iter().map(|l| activation_text(l.activation)).collect();
    if let Some(first) = names.first() {
        let text = if names.iter().all(|n| n == first) { first.clone() } else { names.join(",") };
        meta.insert(metadata::ACTIVATION.to_string(), text);
    }
    meta.insert(metadata::OUTPUT.to_string(), activation_text(output[0].activation));
    if let Some(input) = &model.input {
        meta.insert(metadata::INPUT_SCALE.to_string(), floats_text(&input.scale));
        meta.insert(metadata::INPUT_OFFSET.to_string(), floats_text(&input.offset));
    }
    if !model.classes.is_empty() {
        let classes = serde_json::to_string(&model.classes).map_err(|e| Error::new(e.to_string()))?;
        meta.insert(metadata::CLASSES.to_string(), classes);
    }
    meta.insert(metadata::SEQUENTIAL.to_string(), format!("nn.Sequential({})", modules.join(", ")));

    // A BTreeMap serializes its keys sorted: the same model gives the same bytes.
    let mut header: BTreeMap<String, Value> = BTreeMap::new();
    header.insert("__metadata__".to_string(), json!(meta));
    let mut offset = 0usize;
    for e in &tensors {
        let end = offset + e.data.len();
        header.insert(
            e.name.clone(),
            json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&header).map_err(|e| Error::new(e.to_string()))?;
    // Pad with spaces to a multiple of 8, as safetensors' own writer does, so the data
    // starts aligned.
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for e in &tensors {
        out.extend_from_slice(&e.data);
    }
    Ok(out)
}
