//! Our ONNX export reads back as the same model: topology, every parameter and running
//! statistic bit for bit, the input normalization and the class names.

use interop::onnx::{read, write};
use interop::{FloatModel, InputNormalization};
use mlp::{Activation, LayerSpec, Topology};

#[test]
fn export_then_import_gives_the_same_model() {
    let topology = Topology::new(
        5,
        &[
            LayerSpec::dense(7, Activation::Relu).with_batch_norm().with_dropout(0.3),
            LayerSpec::dense(6, Activation::LeakyRelu(0.02)),
            LayerSpec::dense(5, Activation::Elu(0.5)).with_batch_norm(),
            LayerSpec::dense(4, Activation::Gelu),
            LayerSpec::dense(4, Activation::Identity),
            LayerSpec::dense(3, Activation::Sigmoid),
            LayerSpec::dense(3, Activation::Tanh),
            LayerSpec::dense(3, Activation::Softmax),
        ],
    )
    .unwrap();
    // Values with full mantissas, so a lossy path would show.
    let wave =
        |n: usize, k: f32| (0..n).map(|i| ((i as f32 + k) * 0.7311).sin() * 1.37).collect::<Vec<f32>>();
    let running: Vec<f32> = wave(topology.running_len(), 2.0).iter().map(|v| v.abs() + 0.1).collect();
    let model = FloatModel {
        params: wave(topology.param_len(), 1.0),
        running,
        input: Some(InputNormalization { scale: wave(5, 3.0), offset: wave(5, 4.0) }),
        classes: ["zero", "one \"quoted\", with comma", "två"].map(String::from).to_vec(),
        notes: Vec::new(),
        topology,
    };
    let bytes = write(&model).unwrap();
    let back = read(&bytes, None).unwrap();
    let dropout_off: Vec<LayerSpec> =
        model.topology.layers().iter().map(|l| LayerSpec { dropout: 0.0, ..*l }).collect();
    assert_eq!(back.topology, Topology::new(5, &dropout_off).unwrap());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back.params), bits(&model.params));
    assert_eq!(bits(&back.running), bits(&model.running));
    assert_eq!(back.input, model.input);
    assert_eq!(back.classes, model.classes);
    assert!(back.notes.is_empty(), "{:?}", back.notes);
}
