//! `Int8Layer::from_parts` + `int8::forward_layers`: the path of firmware that embeds an
//! int8 model as `static` arrays (`host export --format rust`), with no model file to parse.
//! It must give the same bits as parsing the file, and refuse inconsistent parts.

use mlp::int8::{self, Int8Layer, Int8LayerParts, PortableInt8};
use mlp::{Activation, Error, InputTransform, Rng};
use mlp_tests::fixtures::OUTPUT_ACTIVATIONS;
use mlp_tests::int8::*;

/// The parts of a parsed layer, as an exporter writes them (owned arrays).
struct Owned {
    layer: (usize, usize, Activation, u32, i32, u32, i32),
    scales: Vec<u32>,
    bias: Vec<i32>,
    mult: Vec<i32>,
    shift: Vec<i32>,
    weights: Vec<i8>,
    table: Option<[i8; 256]>,
}

impl Owned {
    fn of(l: &Int8Layer<'_>) -> Self {
        Owned {
            layer: (
                l.inputs(),
                l.outputs(),
                l.activation(),
                l.out_scale_bits(),
                l.out_zero_point(),
                l.pre_scale_bits(),
                l.pre_zero_point(),
            ),
            scales: (0..l.outputs()).map(|o| l.weight_scale(o).unwrap().to_bits()).collect(),
            bias: l.bias().iter().collect(),
            mult: l.multipliers().iter().collect(),
            shift: l.shifts().iter().collect(),
            weights: l.weights().to_vec(),
            table: l.table().copied(),
        }
    }

    fn parts(&self) -> Int8LayerParts<'_> {
        let (inputs, outputs, activation, out_scale_bits, out_zero_point, pre_scale_bits, pre_zero_point) =
            self.layer;
        Int8LayerParts {
            inputs,
            outputs,
            activation,
            out_scale_bits,
            out_zero_point,
            pre_scale_bits,
            pre_zero_point,
            weight_scale_bits: &self.scales,
            bias: &self.bias,
            multipliers: &self.mult,
            shifts: &self.shift,
            weights: &self.weights,
            table: self.table.as_ref(),
            rounding: mlp::int8::Rounding::Double,
        }
    }
}

#[test]
fn layers_from_parts_run_bit_identical_to_the_parsed_file() {
    let mut rng = Rng::new(2024);
    for round in 0..40 {
        let input = 1 + rng.below(20) as usize;
        let b = random_model(
            &mut rng,
            input,
            OUTPUT_ACTIVATIONS[round % OUTPUT_ACTIVATIONS.len()],
            round % 3 == 0,
        );
        let x = random_inputs(&mut rng, 16 * b.t.input());
        let file = quantize(&b, &x, 16, &InputTransform::Identity);
        let m = int8::Int8Model::parse(&file).unwrap();
        let owned: Vec<Owned> = m.layers().iter().map(Owned::of).collect();
        let layers: Vec<Int8Layer<'_>> =
            owned.iter().map(|o| Int8Layer::from_parts(o.parts()).unwrap()).collect();
        let mut xq = vec![0i8; x.len()];
        m.quantize_input(&x, &mut xq).unwrap();
        let want = run_int8(&m, &xq, 16);
        let mut act = vec![0i8; m.act_workspace_len(16)];
        let mut acc = vec![0i32; m.acc_workspace_len(16)];
        let got =
            int8::forward_layers(&PortableInt8, &layers, m.input_zero_point(), &xq, 16, &mut act, &mut acc)
                .unwrap();
        assert_eq!(got, &want[..], "round {round}");
        // The first layers alone give the hidden int8 features (what on-device fine-tuning uses).
        if layers.len() > 1 {
            let hidden = int8::forward_layers(
                &PortableInt8,
                &layers[..1],
                m.input_zero_point(),
                &xq,
                16,
                &mut act,
                &mut acc,
            )
            .unwrap();
            assert_eq!(hidden.len(), 16 * layers[0].outputs());
        }
    }
}

#[test]
fn inconsistent_parts_and_chains_are_errors() {
    let mut rng = Rng::new(7);
    let b = random_model(&mut rng, 6, Activation::Softmax, false);
    let x = random_inputs(&mut rng, 8 * 6);
    let file = quantize(&b, &x, 8, &InputTransform::Identity);
    let m = int8::Int8Model::parse(&file).unwrap();
    let good = Owned::of(&m.layers()[0]);
    assert!(Int8Layer::from_parts(good.parts()).is_ok());
    let corrupt = |f: &dyn Fn(&mut Owned)| {
        let mut o = Owned::of(&m.layers()[0]);
        f(&mut o);
        matches!(Int8Layer::from_parts(o.parts()), Err(Error::CorruptPayload { .. }))
    };
    assert!(corrupt(&|o| o.layer.0 = 0));
    assert!(corrupt(&|o| o.layer.0 += 1));
    assert!(corrupt(&|o| {
        o.bias.pop();
    }));
    assert!(corrupt(&|o| o.weights.push(0)));
    assert!(corrupt(&|o| o.weights[0] = i8::MIN));
    assert!(corrupt(&|o| o.mult[0] = 5));
    assert!(corrupt(&|o| o.shift[0] = 31));
    assert!(corrupt(&|o| o.scales[0] = f32::NAN.to_bits()));
    assert!(corrupt(&|o| o.layer.3 = (-1.0f32).to_bits()));
    assert!(corrupt(&|o| o.layer.4 = 200));
    assert!(corrupt(&|o| { o.table = if o.table.is_some() { None } else { Some([0; 256]) } }));
    // Layers that do not chain, no layers, short buffers.
    let owned: Vec<Owned> = m.layers().iter().map(Owned::of).collect();
    let layers: Vec<Int8Layer<'_>> =
        owned.iter().map(|o| Int8Layer::from_parts(o.parts()).unwrap()).collect();
    let (mut act, mut acc) = (vec![0i8; m.act_workspace_len(1)], vec![0i32; m.acc_workspace_len(1)]);
    let xq = [0i8; 6];
    let z = m.input_zero_point();
    let reversed: Vec<Int8Layer<'_>> = layers.iter().rev().copied().collect();
    assert!(matches!(
        int8::forward_layers(&PortableInt8, &reversed, z, &xq, 1, &mut act, &mut acc),
        Err(Error::CorruptPayload { .. } | Error::BufferLength { .. })
    ));
    assert_eq!(int8::forward_layers(&PortableInt8, &[], z, &xq, 1, &mut act, &mut acc), Err(Error::NoLayers));
    assert!(matches!(
        int8::forward_layers(&PortableInt8, &layers, z, &xq, 1, &mut act[..1], &mut acc),
        Err(Error::BufferLength { .. })
    ));
    assert!(matches!(
        int8::forward_layers(&PortableInt8, &layers, z, &xq[..5], 1, &mut act, &mut acc),
        Err(Error::BufferLength { .. })
    ));
}
