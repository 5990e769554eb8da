//! DataLoader: determinism, every sample exactly once per epoch, drop_last, the last partial
//! batch, normalization and one-hot targets.

use data::loader::{mean_std, one_hot};
use data::{DataLoader, Dataset, Error, Features, LoaderOptions, Normalization};

/// `n` samples of 3 u8 features; sample i's features are (i, i, i) mod 256 and its label
/// is i % 4, so a batch tells which samples it holds.
fn u8_set(n: usize) -> Dataset {
    let features = (0..n).flat_map(|i| [i as u8; 3]).collect();
    let labels = (0..n).map(|i| (i % 4) as u32).collect();
    Dataset::new("u8", Features::U8(features), 3, labels, 4, None).unwrap()
}

/// Like `u8_set` with f32 features (i, 2i).
fn f32_set(n: usize) -> Dataset {
    let features = (0..n).flat_map(|i| [i as f32, 2.0 * i as f32]).collect();
    let labels = (0..n).map(|i| (i % 2) as u32).collect();
    Dataset::new("f32", Features::F32(features), 2, labels, 2, None).unwrap()
}

fn loader(ds: &Dataset, batch_size: usize, shuffle: bool, drop_last: bool) -> DataLoader<'_> {
    DataLoader::new(
        ds,
        LoaderOptions { batch_size, shuffle, seed: 99, drop_last, ..LoaderOptions::default() },
    )
    .unwrap()
}

/// The sample indices of one whole epoch, batch by batch, read back from the f32 features.
fn epoch_batches(l: &mut DataLoader<'_>) -> Vec<Vec<usize>> {
    let (mut x, mut y) = (l.input_buffer(), l.label_buffer());
    let d = l.input_len();
    let mut batches = Vec::new();
    while let Some(n) = l.next_batch(&mut x, &mut y) {
        let ids: Vec<usize> = (0..n).map(|k| x[k * d] as usize).collect();
        for (k, &i) in ids.iter().enumerate() {
            assert_eq!(y[k] as usize, i % l.dataset().num_classes(), "label follows sample");
        }
        batches.push(ids);
    }
    batches
}

#[test]
fn every_sample_exactly_once_per_epoch_with_a_last_partial_batch() {
    let ds = f32_set(103);
    let mut l = loader(&ds, 10, true, false);
    assert_eq!(l.batches_per_epoch(), 11);
    for epoch in 0..3 {
        let batches = epoch_batches(&mut l);
        assert_eq!(l.epoch(), epoch);
        assert_eq!(batches.len(), 11);
        assert!(batches[..10].iter().all(|b| b.len() == 10));
        assert_eq!(batches[10].len(), 3, "last partial batch");
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
    }
}

#[test]
fn drop_last_skips_the_partial_batch() {
    let ds = f32_set(103);
    let mut l = loader(&ds, 10, true, true);
    assert_eq!((l.batches_per_epoch(), l.samples_per_epoch()), (10, 100));
    let batches = epoch_batches(&mut l);
    assert_eq!(batches.len(), 10);
    assert!(batches.iter().all(|b| b.len() == 10));
    let mut all = batches.concat();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 100, "no repeats");
    // Exactly divisible: drop_last changes nothing.
    let ds = f32_set(30);
    assert_eq!(epoch_batches(&mut loader(&ds, 10, true, true)).len(), 3);
    // Smaller than one batch: nothing at all.
    let ds = f32_set(7);
    assert!(epoch_batches(&mut loader(&ds, 10, true, true)).is_empty());
    assert_eq!(epoch_batches(&mut loader(&ds, 10, false, false)), vec![(0..7).collect::<Vec<_>>()]);
}

#[test]
fn shuffle_is_deterministic_per_seed_and_epoch() {
    let ds = f32_set(50);
    let mut a = loader(&ds, 8, true, false);
    let mut b = loader(&ds, 8, true, false);
    let a0 = epoch_batches(&mut a);
    let a1 = epoch_batches(&mut a); // auto-advanced to epoch 1
    assert_eq!(a.epoch(), 1);
    assert_eq!(epoch_batches(&mut b), a0);
    assert_ne!(a0, a1, "epochs differ");
    // Jumping straight to epoch 1 gives epoch 1's order: resuming is reproducible.
    let mut c = loader(&ds, 8, true, false);
    c.set_epoch(1);
    assert_eq!(epoch_batches(&mut c), a1);
    // Another seed, another order.
    let mut d = DataLoader::new(
        &ds,
        LoaderOptions { batch_size: 8, shuffle: true, seed: 100, ..LoaderOptions::default() },
    )
    .unwrap();
    assert_ne!(epoch_batches(&mut d), a0);
    // set_epoch in the middle of an epoch restarts it.
    let (mut x, mut y) = (a.input_buffer(), a.label_buffer());
    a.set_epoch(0);
    a.next_batch(&mut x, &mut y).unwrap();
    a.set_epoch(0);
    assert_eq!(epoch_batches(&mut a), a0);
}

#[test]
fn no_shuffle_keeps_the_dataset_order() {
    let ds = f32_set(10);
    let batches = epoch_batches(&mut loader(&ds, 4, false, false));
    assert_eq!(batches, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
}

#[test]
fn normalizations_of_u8_features() {
    let ds = u8_set(256);
    let check = |norm: Normalization, f: &dyn Fn(f32) -> f32| {
        let mut l = DataLoader::new(
            &ds,
            LoaderOptions { batch_size: 256, normalization: norm, ..LoaderOptions::default() },
        )
        .unwrap();
        let (mut x, mut y) = (l.input_buffer(), l.label_buffer());
        assert_eq!(l.next_batch(&mut x, &mut y), Some(256));
        for i in 0..256 {
            for k in 0..3 {
                let got = x[i * 3 + k];
                let want = f(i as f32);
                assert!((got - want).abs() < 1e-5, "sample {i}: {got} vs {want}");
            }
        }
    };
    check(Normalization::None, &|v| v);
    check(Normalization::Scale01, &|v| v / 255.0);
    check(Normalization::MNIST, &|v| (v / 255.0 - 0.1307) / 0.3081);
    let per = Normalization::per_feature_from(&ds).unwrap();
    check(per, &|v| (v / 255.0 - 0.5) / (((256.0f32 * 256.0 - 1.0) / 12.0).sqrt() / 255.0));
}

#[test]
fn normalizations_of_f32_features_and_statistics() {
    let ds = f32_set(5); // features 0..4 and 0,2,..,8
    let (mean, std) = mean_std(&ds);
    assert!((mean - 3.0).abs() < 1e-12);
    let var: f64 =
        [0., 1., 2., 3., 4., 0., 2., 4., 6., 8.].iter().map(|v: &f64| (v - 3.0).powi(2)).sum::<f64>() / 10.0;
    assert!((std - var.sqrt()).abs() < 1e-9);
    let global = Normalization::standardize_from(&ds).unwrap();
    let per = Normalization::per_feature_from(&ds).unwrap();
    for norm in [global, per] {
        let mut l = DataLoader::new(
            &ds,
            LoaderOptions { batch_size: 5, normalization: norm.clone(), ..LoaderOptions::default() },
        )
        .unwrap();
        let (mut x, mut y) = (l.input_buffer(), l.label_buffer());
        l.next_batch(&mut x, &mut y).unwrap();
        let m = x.iter().sum::<f32>() / x.len() as f32;
        assert!(m.abs() < 1e-5, "{norm:?}: mean after normalization {m}");
        if let Normalization::PerFeature { .. } = norm {
            for k in 0..2 {
                let col: Vec<f32> = x.iter().skip(k).step_by(2).copied().collect();
                let var = col.iter().map(|v| v * v).sum::<f32>() / 5.0;
                assert!((var - 1.0).abs() < 1e-4, "column {k} variance {var}");
            }
        }
    }
    let mut out = [0f32; 2];
    Normalization::Scale01.apply_f32(&[255.0, 51.0], &mut out);
    assert_eq!(out, [1.0, 0.2]);
}

#[test]
fn invalid_options_are_errors() {
    let ds = f32_set(4);
    let e = DataLoader::new(&ds, LoaderOptions { batch_size: 0, ..LoaderOptions::default() }).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    for norm in [
        Normalization::Standardize { mean: 0.0, std: 0.0 },
        Normalization::Standardize { mean: f32::NAN, std: 1.0 },
        Normalization::PerFeature { mean: vec![0.0], std: vec![1.0] },
        Normalization::PerFeature { mean: vec![0.0; 2], std: vec![1.0, -1.0] },
    ] {
        let e = DataLoader::new(&ds, LoaderOptions { normalization: norm, ..LoaderOptions::default() })
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }
    let constant = Dataset::new("c", Features::U8(vec![7; 6]), 3, vec![0, 1], 2, None).unwrap();
    assert!(Normalization::standardize_from(&constant).is_err());
    let per = Normalization::per_feature_from(&constant).unwrap();
    assert_eq!(per, Normalization::PerFeature { mean: vec![7.0 / 255.0; 3], std: vec![1.0; 3] });
}

#[test]
fn one_hot_targets_follow_the_labels() {
    let ds = u8_set(10);
    let mut l = loader(&ds, 4, true, false);
    let (mut x, mut y, mut t) = (l.input_buffer(), l.label_buffer(), l.target_buffer());
    assert_eq!(t.len(), 16);
    let mut seen = 0;
    while let Some(n) = l.next_batch_one_hot(&mut x, &mut y, &mut t) {
        for k in 0..n {
            let row = &t[k * 4..(k + 1) * 4];
            assert_eq!(row.iter().sum::<f32>(), 1.0);
            assert_eq!(row[y[k] as usize], 1.0);
        }
        seen += n;
    }
    assert_eq!(seen, 10);
    let mut out = [5.0f32; 6];
    one_hot(&[1, 0], 3, &mut out);
    assert_eq!(out, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn empty_dataset_yields_no_batches() {
    let ds = Dataset::new("e", Features::F32(vec![]), 2, vec![], 2, None).unwrap();
    let mut l = loader(&ds, 4, true, false);
    assert_eq!(epoch_batches(&mut l), Vec::<Vec<usize>>::new());
    assert_eq!(l.batches_per_epoch(), 0);
}

#[test]
#[should_panic(expected = "too small")]
fn short_buffers_are_a_clear_panic() {
    let ds = f32_set(4);
    let mut l = loader(&ds, 4, false, false);
    let mut x = vec![0.0; 7];
    let mut y = vec![0; 4];
    l.next_batch(&mut x, &mut y);
}

#[test]
fn extreme_finite_csv_values_normalize_to_finite_inputs() {
    let ds = data::csv::parse_csv(
        "extreme.csv",
        "3e38,1e-30,0\n-3e38,2e-30,1\n1,3e-30,0\n",
        &data::csv::CsvOptions::default(),
    )
    .unwrap();
    for norm in [
        Normalization::standardize_from(&ds).unwrap(),
        Normalization::per_feature_from(&ds).unwrap(),
        Normalization::Scale01,
    ] {
        let mut l = DataLoader::new(
            &ds,
            LoaderOptions { batch_size: 3, normalization: norm.clone(), ..LoaderOptions::default() },
        )
        .unwrap();
        let (mut x, mut y) = (l.input_buffer(), l.label_buffer());
        assert_eq!(l.next_batch(&mut x, &mut y), Some(3));
        assert!(x.iter().all(|v| v.is_finite()), "{norm:?}: {x:?}");
    }
}
