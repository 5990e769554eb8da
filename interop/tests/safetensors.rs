//! safetensors export and import: bit-for-bit round trips, the crate's own reader accepting
//! our files, and a clear error for each class of bad file (malformed, truncated, hostile
//! sizes, unsupported layers).

use interop::safetensors::{read, write};
use interop::{FloatModel, InputNormalization};
use mlp::{Activation, LayerSpec, Topology};
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

/// Deterministic values in [-1, 1) that use all of an f32's mantissa.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn model(layers: &[LayerSpec], input: usize) -> FloatModel {
    let topology = Topology::new(input, layers).unwrap();
    let params = values(topology.param_len(), 1);
    // Variances must be positive: |v| + 0.1 on the var halves, any mean.
    let mut running = values(topology.running_len(), 2);
    for i in 0..topology.layers().len() {
        if let Some((_, var)) = topology.running_ranges(i) {
            running[var].iter_mut().for_each(|v| *v = v.abs() + 0.1);
        }
    }
    FloatModel {
        input: Some(InputNormalization { scale: values(input, 3), offset: values(input, 4) }),
        classes: (0..topology.output()).map(|i| format!("class \"{i}\"")).collect(),
        topology,
        params,
        running,
        notes: Vec::new(),
    }
}

fn bn_model() -> FloatModel {
    model(
        &[
            LayerSpec::dense(5, Activation::Relu).with_batch_norm(),
            LayerSpec::dense(4, Activation::Relu),
            LayerSpec::dense(3, Activation::Softmax).with_batch_norm(),
        ],
        7,
    )
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn export_import_export_is_bit_for_bit() {
    let mixed = model(
        &[
            LayerSpec::dense(6, Activation::LeakyRelu(0.2)),
            LayerSpec::dense(5, Activation::Identity).with_batch_norm(),
            LayerSpec::dense(4, Activation::Elu(0.7)),
            LayerSpec::dense(2, Activation::Sigmoid),
        ],
        3,
    );
    for m in [bn_model(), mixed] {
        let bytes = write(&m).unwrap();
        let back = read(&bytes, None).unwrap();
        assert_eq!(back.topology, m.topology);
        assert_eq!(bits(&back.params), bits(&m.params));
        assert_eq!(bits(&back.running), bits(&m.running));
        assert_eq!(back.input, m.input);
        assert_eq!(back.classes, m.classes);
        assert!(back.notes.is_empty(), "our own file needs no assumption: {:?}", back.notes);
        assert_eq!(write(&back).unwrap(), bytes, "export -> import -> export changed the bytes");
    }
}

#[test]
fn the_crate_reads_our_names_shapes_and_metadata() {
    let m = bn_model();
    let bytes = write(&m).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "0.bias",
            "0.weight",
            "1.bias",
            "1.num_batches_tracked",
            "1.running_mean",
            "1.running_var",
            "1.weight",
            "3.bias",
            "3.weight",
            "5.bias",
            "5.weight",
            "6.bias",
            "6.num_batches_tracked",
            "6.running_mean",
            "6.running_var",
            "6.weight"
        ]
    );
    let w = st.tensor("3.weight").unwrap();
    assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[4usize, 5][..]));
    let r = m.topology.param_ranges(1).unwrap();
    let want: Vec<u8> = m.params[r.weights].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(w.data(), &want[..]);
    let t = st.tensor("1.num_batches_tracked").unwrap();
    assert_eq!((t.dtype(), t.shape(), t.data()), (Dtype::I64, &[][..], &[0u8; 8][..]));
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["mlp.topology"], "7-5-4-3");
    assert_eq!(meta["mlp.activation"], "relu");
    assert_eq!(meta["mlp.output"], "softmax");
    assert_eq!(
        meta["mlp.sequential"],
        "nn.Sequential(nn.Linear(7, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), \
         nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Softmax(dim=1))"
    );
}

#[test]
fn maxout_is_refused_by_name() {
    let m = model(&[LayerSpec::dense(4, Activation::Maxout(2)), LayerSpec::dense(2, Activation::Softmax)], 3);
    assert!(write(&m).unwrap_err().to_string().contains("maxout layers have no nn.Sequential form"));
    let plain =
        write(&model(&[LayerSpec::dense(4, Activation::Relu), LayerSpec::dense(2, Activation::Softmax)], 3));
    let e = read(&plain.unwrap(), Some(Activation::Maxout(2))).unwrap_err();
    assert!(e.to_string().contains("maxout"), "{e}");
}

/// A safetensors file with `tensors` (name, dtype, shape), each filled with 0.25 (F32) or
/// zeros, and `meta`.
fn file(tensors: &[Spec], meta: Value) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !meta.is_null() {
        header.insert("__metadata__".into(), meta);
    }
    let mut data = Vec::new();
    for (name, dtype, shape) in tensors {
        let n: usize = shape.iter().product();
        let start = data.len();
        match *dtype {
            "F32" => (0..n).for_each(|_| data.extend(0.25f32.to_le_bytes())),
            "I64" => data.resize(start + 8 * n, 0),
            "I32" => data.resize(start + 4 * n, 0),
            d => panic!("{d}"),
        }
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    raw(&serde_json::to_string(&header).unwrap(), &data)
}

fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// A tensor of [`file`]: name, dtype, shape.
type Spec<'a> = (&'a str, &'a str, &'a [usize]);

fn error(bytes: &[u8]) -> String {
    read(bytes, None).unwrap_err().to_string()
}

const MLP: [Spec; 4] = [
    ("0.weight", "F32", &[3, 4]),
    ("0.bias", "F32", &[3]),
    ("2.weight", "F32", &[2, 3]),
    ("2.bias", "F32", &[2]),
];

#[test]
fn the_helper_file_reads() {
    // The bad files below differ from this one in one way each.
    let m = read(&file(&MLP, Value::Null), None).unwrap();
    assert_eq!(m.topology.param_len(), 23);
}

#[test]
fn malformed_files() {
    assert!(error(b"").contains("not a valid safetensors file"));
    assert!(error(b"PK\x03\x04 a zip").contains("not a valid safetensors file"));
    assert!(error(&raw("{\"0.weight\": 5}", &[])).contains("invalid JSON"));
    assert!(error(&raw("{}", &[])).contains("no tensors"));
    let e = error(&raw(r#"{"0.weight":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, &[0; 12]));
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn every_truncation_of_a_real_file_is_an_error() {
    let bytes = write(&bn_model()).unwrap();
    for n in 0..bytes.len() {
        let e = error(&bytes[..n]);
        assert!(e.contains("not a valid safetensors file"), "{n}: {e}");
    }
}

#[test]
fn hostile_sizes() {
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    assert!(error(&huge).contains("header too large"));
    let overflow =
        raw(r#"{"0.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, &[0; 4]);
    assert!(error(&overflow).contains("not a valid safetensors file"));
    // A header that claims more bytes than the file has.
    let mut short = 1000u64.to_le_bytes().to_vec();
    short.extend(b"{}");
    assert!(error(&short).contains("invalid header length"));
    let index = file(&[("99999999999999999999999.weight", "F32", &[1, 1])], Value::Null);
    assert!(error(&index).contains("module index too large"));
    let many: Vec<(String, &str, &[usize])> =
        (0..20).map(|i| (format!("{}.weight", 2 * i), "F32", &[1usize, 1][..])).collect();
    let many: Vec<Spec> = many.iter().map(|(n, d, s)| (n.as_str(), *d, *s)).collect();
    assert!(error(&file(&many, Value::Null)).contains("at most 8 Linear layers"));
}

#[test]
fn unsupported_names_layers_and_values() {
    let cases: Vec<(Vec<Spec>, Value, &str)> = vec![
        (vec![("0.weight_orig", "F32", &[3, 4])], Value::Null, "expected '<index>.<weight|bias|"),
        (vec![("fc1.weight", "F32", &[3, 4])], Value::Null, "not a name of an nn.Sequential state_dict"),
        (
            vec![("a.0.weight", "F32", &[3, 4]), ("a.0.bias", "F32", &[3]), ("b.1.weight", "F32", &[2, 3])],
            Value::Null,
            "two prefixes",
        ),
        (vec![("0.weight", "F32", &[3, 4, 3, 3]), ("0.bias", "F32", &[3])], Value::Null, "a convolution?"),
        (vec![("0.weight", "F32", &[3]), ("0.bias", "F32", &[3])], Value::Null, "a LayerNorm"),
        (
            vec![("0.weight", "I32", &[3, 4]), ("0.bias", "F32", &[3])],
            Value::Null,
            "is I32: supported parameter dtypes",
        ),
        (
            vec![("0.weight", "F32", &[3, 4])],
            Value::Null,
            "Linear(bias=False) is supported only before a BatchNorm1d",
        ),
        (vec![("0.bias", "F32", &[3])], Value::Null, "has a bias but no weight"),
        (
            vec![("0.weight", "F32", &[3, 4]), ("0.bias", "F32", &[2])],
            Value::Null,
            "shape mismatch: 0.bias is [2]",
        ),
        (
            vec![MLP[0], MLP[1], ("2.weight", "F32", &[2, 5]), MLP[3]],
            Value::Null,
            "shape mismatch: 2.weight is [2, 5] (5 inputs) but the layer before it (0.weight) has 3 outputs",
        ),
        (
            vec![MLP[0], MLP[1], ("2.running_mean", "F32", &[3]), ("2.running_var", "F32", &[3])],
            Value::Null,
            "BatchNorm1d at module 2 does not directly follow a Linear",
        ),
        (vec![MLP[0], MLP[1], ("1.running_mean", "F32", &[3])], Value::Null, "no running_var"),
        (
            vec![MLP[0], MLP[1], ("1.running_mean", "F32", &[4]), ("1.running_var", "F32", &[4])],
            Value::Null,
            "shape mismatch: 1.running_mean is [4] but the Linear before it (0.weight) has 3 outputs",
        ),
        (MLP.to_vec(), json!({"mlp.activation": "maxout"}), "maxout layers have no nn.Sequential form"),
        (
            MLP.to_vec(),
            json!({"mlp.activation": "swish"}),
            "activation 'swish' in the metadata is not one this tool knows",
        ),
        (MLP.to_vec(), json!({"mlp.activation": "relu,tanh"}), "names 2 activations for 1 hidden layers"),
        (MLP.to_vec(), json!({"mlp.topology": "4-30-2"}), "says 4-30-2 but the tensors' shapes give 4-3-2"),
        (MLP.to_vec(), json!({"mlp.classes": "[\"a\"]"}), "names 1 classes for 2 outputs"),
        (MLP.to_vec(), json!({"mlp.classes": "a, b"}), "not a JSON array of strings"),
        (
            MLP.to_vec(),
            json!({"mlp.input_scale": "[1,2]", "mlp.input_offset": "0"}),
            "not one number or a JSON array of 4 numbers",
        ),
        (MLP.to_vec(), json!({"mlp.input_scale": "1"}), "only one of mlp.input_scale and mlp.input_offset"),
    ];
    for (tensors, meta, want) in cases {
        let e = error(&file(&tensors, meta));
        assert!(e.contains(want), "{tensors:?}: {e}\n  should contain: {want}");
    }
}

#[test]
fn non_finite_weights_and_negative_variances_are_refused() {
    let mut bytes = write(&bn_model()).unwrap();
    let (n, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let (start, _) = header.info("3.weight").unwrap().data_offsets;
    let at = 8 + n + start;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(error(&bytes).contains("3.weight holds a value that is not finite at element 0"));
    let mut bytes = write(&bn_model()).unwrap();
    let (start, _) = header.info("1.running_var").unwrap().data_offsets;
    let at = 8 + n + start + 8;
    bytes[at..at + 4].copy_from_slice(&(-1.0f32).to_le_bytes());
    assert!(error(&bytes).contains("1.running_var is negative at element 2"));
}

#[test]
fn linear_without_bias_before_batch_norm_and_batch_norm_without_affine() {
    let m = read(
        &file(
            &[
                ("0.weight", "F32", &[3, 4]),
                ("1.running_mean", "F32", &[3]),
                ("1.running_var", "F32", &[3]),
                ("1.num_batches_tracked", "I64", &[]),
                ("3.weight", "F32", &[2, 3]),
                ("3.bias", "F32", &[2]),
            ],
            Value::Null,
        ),
        None,
    )
    .unwrap();
    let r = m.topology.param_ranges(0).unwrap();
    let (gamma, beta) = r.batch_norm.unwrap();
    assert!(m.params[r.bias].iter().all(|&b| b == 0.0));
    assert!(m.params[gamma].iter().all(|&g| g == 1.0) && m.params[beta].iter().all(|&b| b == 0.0));
}
