//! The model file's names section (format version 2): class and feature names round-trip
//! for f32 and int8 files, version 1 files still read, and every corruption of the section
//! is an error, never a panic.

use mlp::format::{self, ModelFile, Names};
use mlp::{Activation, Error, InputTransform, LayerSpec, Topology};
use mlp_tests::int8::reseal;

fn f32_file(transform: &InputTransform<'_>) -> (Topology, Vec<u8>) {
    let t =
        Topology::new(4, &[LayerSpec::dense(5, Activation::Relu), LayerSpec::dense(3, Activation::Softmax)])
            .unwrap();
    let params: Vec<f32> = (0..t.param_len()).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut bytes = vec![0u8; format::encoded_len(&t, transform)];
    format::write(&t, &params, &[], transform, &mut bytes).unwrap();
    (t, bytes)
}

const CLASSES: [&str; 3] = ["setosa", "versicolor", "virginica"];
const FEATURES: [&str; 4] = ["sepal length (cm)", "sepal width", "petal length", "pétale"];

fn named(v1: &[u8], names: &Names<'_>) -> Vec<u8> {
    let mut out = vec![0u8; format::named_len(v1.len(), names)];
    assert_eq!(format::add_names(v1, names, &mut out).unwrap(), out.len());
    out
}

#[test]
fn version_1_files_still_read_and_have_no_names() {
    let (t, v1) = f32_file(&InputTransform::Identity);
    assert_eq!(&v1[4..6], &1u16.to_le_bytes());
    let m = ModelFile::parse(&v1).unwrap();
    assert_eq!(m.version(), 1);
    assert_eq!(m.topology(), &t);
    assert_eq!((m.class_name_count(), m.feature_name_count()), (0, 0));
    assert_eq!(m.class_name(0), None);
}

#[test]
fn names_round_trip_in_f32_and_int8_files() {
    let scale = [0.5, 2.0, 1.0, 4.0];
    let offset = [-1.0, 0.0, 0.5, 2.0];
    let tf = InputTransform::PerFeature { scale: &scale, offset: &offset };
    let (t, v1) = f32_file(&tf);
    let names = Names { classes: &CLASSES, features: &FEATURES };
    let v2 = named(&v1, &names);
    assert_eq!(&v2[4..6], &2u16.to_le_bytes());
    let m = ModelFile::parse(&v2).unwrap();
    assert_eq!(m.version(), 2);
    assert_eq!(m.topology(), &t);
    assert_eq!((0..3).map(|i| m.class_name(i).unwrap()).collect::<Vec<_>>(), CLASSES);
    assert_eq!((0..4).map(|j| m.feature_name(j).unwrap()).collect::<Vec<_>>(), FEATURES);
    assert_eq!(m.class_name(3), None);
    assert_eq!(m.feature_name(4), None);
    assert_eq!(m.input_scale_offset(3), (4.0, 2.0));
    let (mut a, mut b) = (vec![0.0; t.param_len()], vec![0.0; t.param_len()]);
    m.read_params(&mut a).unwrap();
    ModelFile::parse(&v1).unwrap().read_params(&mut b).unwrap();
    assert_eq!(a, b);

    // Classes only; nothing at all.
    let only = named(&v1, &Names { classes: &CLASSES, features: &[] });
    let m = ModelFile::parse(&only).unwrap();
    assert_eq!((m.class_name(2), m.feature_name(0)), (Some("virginica"), None));
    let none = named(&v1, &Names::default());
    assert_eq!(none.len(), v1.len() + 12);
    assert_eq!(ModelFile::parse(&none).unwrap().class_name_count(), 0);

    // int8: the int8 view reads the same payload.
    let mut rng = mlp::Rng::new(5);
    let b = mlp_tests::int8::random_model(&mut rng, 4, Activation::Softmax, false);
    let x = mlp_tests::int8::random_inputs(&mut rng, 4 * 20);
    let q1 = mlp_tests::int8::quantize(&b, &x, 20, &tf);
    let classes: Vec<String> = (0..format::class_count(&b.t)).map(|i| format!("c{i}")).collect();
    let classes: Vec<&str> = classes.iter().map(|s| s.as_str()).collect();
    let q2 = named(&q1, &Names { classes: &classes, features: &FEATURES });
    let m = ModelFile::parse(&q2).unwrap();
    assert_eq!(m.class_name(1), Some("c1"));
    assert_eq!(m.feature_name(3), Some("pétale"));
    let (i1, i2) = (mlp::int8::Int8Model::parse(&q1).unwrap(), mlp::int8::Int8Model::parse(&q2).unwrap());
    assert_eq!(i1.input_scale_bits(), i2.input_scale_bits());
    assert_eq!(i1.layers().len(), i2.layers().len());
    for (l1, l2) in i1.layers().iter().zip(i2.layers()) {
        assert_eq!(l1.weights(), l2.weights());
    }
}

#[test]
fn wrong_names_are_errors() {
    let (_, v1) = f32_file(&InputTransform::Identity);
    let mut out = vec![0u8; 4096];
    let two = ["a", "b"];
    assert!(matches!(
        format::add_names(&v1, &Names { classes: &two, features: &[] }, &mut out),
        Err(Error::NameCount { what: "class", expected: 3, actual: 2 })
    ));
    assert!(matches!(
        format::add_names(&v1, &Names { classes: &[], features: &two }, &mut out),
        Err(Error::NameCount { what: "feature", expected: 4, actual: 2 })
    ));
    let long = "x".repeat(256);
    let classes = ["a", "b", long.as_str()];
    assert!(matches!(
        format::add_names(&v1, &Names { classes: &classes, features: &[] }, &mut out),
        Err(Error::NameTooLong { len: 256, max: 255 })
    ));
    // Names are added once.
    let v2 = named(&v1, &Names::default());
    assert!(format::add_names(&v2, &Names::default(), &mut out).is_err());
}

#[test]
fn every_corruption_of_the_names_section_is_an_error() {
    let (_, v1) = f32_file(&InputTransform::Identity);
    let good = named(&v1, &Names { classes: &CLASSES, features: &FEATURES });
    for cut in 0..good.len() {
        assert!(ModelFile::parse(&good[..cut]).is_err(), "truncated at {cut}");
    }
    for i in 0..good.len() {
        for bit in [0x01, 0x40, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= bit;
            assert!(ModelFile::parse(&bad).is_err(), "flipped bit {bit:#x} in byte {i} accepted");
        }
    }
    // Resealed edits of the section itself: each is caught by the section's own checks.
    let section = v1.len() - 4;
    let edit = |at: usize, bytes: &[u8]| {
        let mut bad = good.clone();
        bad[at..at + bytes.len()].copy_from_slice(bytes);
        reseal(&mut bad);
        ModelFile::parse(&bad).map(|_| ())
    };
    assert!(matches!(edit(section, &2u32.to_le_bytes()), Err(Error::CorruptPayload { .. })));
    assert!(matches!(edit(section + 4, &5u32.to_le_bytes()), Err(Error::CorruptPayload { .. })));
    assert!(matches!(edit(section + 8, &u32::MAX.to_le_bytes()), Err(Error::Truncated { .. })));
    // A name length that runs past the block, and a name that is not UTF-8.
    assert!(matches!(edit(section + 12, &[200]), Err(Error::CorruptPayload { .. })));
    assert!(matches!(edit(section + 13, &[0xFF]), Err(Error::CorruptPayload { .. })));
    // A shorter first name leaves bytes over.
    assert!(matches!(edit(section + 12, &[5]), Err(Error::CorruptPayload { .. })));
    // Non-zero padding (the block is 1+6+1+10+1+9 + 1+17+1+11+1+12+1+7 = 79 bytes: 1 of padding).
    let n = u32::from_le_bytes(good[section + 8..section + 12].try_into().unwrap()) as usize;
    assert_eq!(n % 4, 3);
    assert!(matches!(edit(section + 12 + n, &[1]), Err(Error::CorruptPayload { .. })));
    // The version: a names section in a file that says version 1 is trailing bytes.
    assert!(matches!(edit(4, &1u16.to_le_bytes()), Err(Error::TrailingBytes { .. })));
}
