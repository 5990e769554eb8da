//! CSV parsing of arbitrary bytes under fuzzed options, then one loader epoch over the
//! result: never a panic; on Ok the data set's invariants hold.
#![no_main]

use data::csv::{parse_csv_bytes, CsvOptions, Header, LabelColumn, Labels};
use data::{DataLoader, LoaderOptions, Normalization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let options = CsvOptions {
        label: match selector & 3 {
            0 => LabelColumn::Last,
            1 => LabelColumn::First,
            2 => LabelColumn::Index((selector >> 5) as usize),
            _ => LabelColumn::Name("species".to_string()),
        },
        header: match (selector >> 2) & 3 {
            0 | 3 => Header::Auto,
            1 => Header::Present,
            _ => Header::Absent,
        },
        labels: match (selector >> 4) & 3 {
            0 => Labels::Auto,
            1 => Labels::Integers,
            2 => Labels::Names,
            _ => Labels::Classes(vec!["setosa".into(), "versicolor".into()]),
        },
        num_classes: None,
        delimiter: if selector & 0x40 != 0 { b';' } else { b',' },
    };
    let Ok(ds) = parse_csv_bytes("fuzz", text, &options) else {
        return;
    };
    assert!(ds.labels().iter().all(|&l| (l as usize) < ds.num_classes()));
    assert_eq!(ds.features().len(), ds.len() * ds.input_len());
    let normalization = Normalization::per_feature_from(&ds).unwrap_or(Normalization::None);
    let Ok(mut loader) = DataLoader::new(
        &ds,
        LoaderOptions {
            batch_size: 3,
            shuffle: true,
            seed: u64::from(selector),
            normalization,
            ..LoaderOptions::default()
        },
    ) else {
        return;
    };
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    let mut seen = 0;
    while let Some(n) = loader.next_batch(&mut x, &mut y) {
        assert!(x[..n * ds.input_len()].iter().all(|v| v.is_finite()));
        seen += n;
    }
    assert_eq!(seen, ds.len());
});
