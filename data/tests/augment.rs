//! Augmentation in the loader: the same bytes for any thread count, no change at zero
//! strength, clear errors for tables and bad strengths.

use data::augment::Augment;
use data::{DataLoader, Dataset, Features, LoaderOptions, Normalization};

/// `n` 28x28 images of a random blob each (so distortions move real ink).
fn images(n: usize) -> Dataset {
    let mut rng = mlp::Rng::new(11);
    let mut pixels = vec![0u8; n * 784];
    for image in pixels.chunks_exact_mut(784) {
        let (cx, cy) = (8 + rng.below(12) as usize, 8 + rng.below(12) as usize);
        for y in cy - 5..cy + 5 {
            for x in cx - 3..cx + 3 {
                image[y * 28 + x] = 100 + rng.below(156) as u8;
            }
        }
    }
    let labels = (0..n).map(|i| (i % 10) as u32).collect();
    Dataset::new("blobs", Features::U8(pixels), 784, labels, 10, None)
        .unwrap()
        .with_image_shape(28, 28)
        .unwrap()
}

fn options(augment: Option<Augment>) -> LoaderOptions {
    LoaderOptions {
        batch_size: 24,
        shuffle: true,
        seed: 5,
        normalization: Normalization::MNIST,
        augment,
        ..LoaderOptions::default()
    }
}

/// Every input value (as bits) and label of the loader's first `epochs` epochs.
fn read_epochs(loader: &mut DataLoader<'_>, epochs: u64) -> Vec<u32> {
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    let mut all = Vec::new();
    for epoch in 0..epochs {
        loader.set_epoch(epoch);
        while let Some(n) = loader.next_batch(&mut x, &mut y) {
            all.extend(x[..n * 784].iter().map(|v| v.to_bits()));
            all.extend(&y[..n]);
        }
    }
    all
}

/// [`read_epochs`] of a new loader, on a pool of `threads` threads.
fn epochs_on(threads: usize, ds: &Dataset, opts: &LoaderOptions, epochs: u64) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| read_epochs(&mut DataLoader::new(ds, opts.clone()).unwrap(), epochs))
}

#[test]
fn augmented_batches_are_the_same_bytes_for_1_2_and_3_threads() {
    let ds = images(100);
    let opts = options(Some(Augment::DEFAULT));
    let one = epochs_on(1, &ds, &opts, 2);
    assert_eq!(one, epochs_on(2, &ds, &opts, 2));
    assert_eq!(one, epochs_on(3, &ds, &opts, 2));
    // And they are distorted: not the batches without augmentation.
    assert_ne!(one, epochs_on(1, &ds, &options(None), 2));
}

/// [`epochs_on`] with the loader's idle work handed to the pool's spinners, as `host train`
/// runs its epochs, and also to a thread of its own that asks for work in a loop: whoever
/// distorts which image, the batches are the same bytes.
fn epochs_with_idle_work(threads: usize, ds: &Dataset, opts: &LoaderOptions, epochs: u64) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut loader = DataLoader::new(ds, opts.clone()).unwrap();
        let idle = loader.idle_work();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    idle();
                }
            });
            let all = cpu::pool::with_spinning_pool_and(&idle, || read_epochs(&mut loader, epochs));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            all
        })
    })
}

#[test]
fn idle_threads_distorting_ahead_change_no_byte() {
    let ds = images(100);
    let opts = options(Some(Augment::DEFAULT));
    let want = epochs_on(1, &ds, &opts, 3);
    for threads in [1, 2, 3] {
        assert_eq!(epochs_with_idle_work(threads, &ds, &opts, 3), want, "{threads} threads");
    }
    let plain = options(None);
    assert_eq!(epochs_with_idle_work(2, &ds, &plain, 1), epochs_on(1, &ds, &plain, 1));
    // Without augmentation there is no work to hand out.
    let loader = DataLoader::new(&ds, plain).unwrap();
    assert!(!loader.idle_work()());
}

#[test]
fn the_next_batch_is_distorted_ahead_by_whoever_asks_for_work() {
    let ds = images(100);
    let opts = options(Some(Augment::DEFAULT));
    let mut loader = DataLoader::new(&ds, opts.clone()).unwrap();
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    let idle = loader.idle_work();
    let mut batches = Vec::new();
    let mut ahead = Vec::new();
    loader.set_epoch(1);
    while let Some(n) = loader.next_batch(&mut x, &mut y) {
        batches.push(x[..n * 784].to_vec());
        // Between two batches (where a step would train), the next two batches' images are
        // there to distort, one per call: 48 after the first batch, then one more batch
        // (24) after the second, then the last 4 of 100; none after.
        let mut count = 0;
        while idle() {
            count += 1;
        }
        ahead.push(count);
    }
    assert_eq!(ahead, [48, 24, 4, 0, 0]);
    // And the batches are those of a loader nobody helped.
    let mut fresh = DataLoader::new(&ds, opts).unwrap();
    fresh.set_epoch(1);
    for want in &batches {
        let n = fresh.next_batch(&mut x, &mut y).unwrap();
        assert_eq!(&x[..n * 784], &want[..]);
    }
    // Jumping to another epoch drops the batch prepared for this one.
    loader.set_epoch(1);
    loader.next_batch(&mut x, &mut y).unwrap();
    loader.set_epoch(2);
    loader.next_batch(&mut x, &mut y).unwrap();
    fresh.set_epoch(2);
    let mut want = fresh.input_buffer();
    fresh.next_batch(&mut want, &mut y).unwrap();
    assert_eq!(x, want);
}

#[test]
fn a_batch_holds_each_samples_distortion_for_its_epoch_and_index() {
    // Against the augmenter itself: raw bytes, no shuffle, so sample i is row i.
    let ds = images(50);
    let opts = LoaderOptions {
        shuffle: false,
        normalization: Normalization::None,
        ..options(Some(Augment::DEFAULT))
    };
    let mut loader = DataLoader::new(&ds, opts).unwrap();
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    let Features::U8(pixels) = ds.features() else { unreachable!() };
    loader.set_epoch(2);
    let mut first = 0;
    while let Some(n) = loader.next_batch(&mut x, &mut y) {
        for (row, i) in x[..n * 784].chunks_exact(784).zip(first..) {
            let mut want = [0u8; 784];
            let augmenter = loader.augmenter().unwrap();
            augmenter.apply(&pixels[i * 784..(i + 1) * 784], &mut want, 2, i as u64);
            assert!(row.iter().zip(want).all(|(&got, w)| got == f32::from(w)), "sample {i}");
        }
        first += n;
    }
    assert_eq!(first, 50);
}

#[test]
fn each_epoch_draws_new_distortions_and_a_resumed_epoch_the_same_ones() {
    let ds = images(30);
    let opts = LoaderOptions { shuffle: false, batch_size: 30, ..options(Some(Augment::DEFAULT)) };
    let mut loader = DataLoader::new(&ds, opts.clone()).unwrap();
    let (mut x, mut y) = (loader.input_buffer(), loader.label_buffer());
    loader.set_epoch(3);
    loader.next_batch(&mut x, &mut y).unwrap();
    let epoch3 = x.clone();
    loader.set_epoch(4);
    loader.next_batch(&mut x, &mut y).unwrap();
    assert_ne!(x, epoch3);
    let mut fresh = DataLoader::new(&ds, opts).unwrap();
    fresh.set_epoch(3);
    fresh.next_batch(&mut x, &mut y).unwrap();
    assert_eq!(x, epoch3);
}

#[test]
fn zero_strengths_give_the_unaugmented_batches() {
    let ds = images(50);
    assert_eq!(epochs_on(2, &ds, &options(Some(Augment::NONE)), 2), epochs_on(2, &ds, &options(None), 2));
    // The raw-byte path the trainer uses (no normalization, a per-feature affine map after).
    let raw = |augment| LoaderOptions { normalization: Normalization::None, ..options(augment) };
    assert_eq!(epochs_on(1, &ds, &raw(Some(Augment::NONE)), 1), epochs_on(1, &ds, &raw(None), 1));
}

#[test]
fn tables_and_bad_strengths_are_clear_errors() {
    let table = Dataset::new("iris", Features::F32(vec![1.0; 8]), 4, vec![0, 1], 2, None).unwrap();
    let e = DataLoader::new(&table, options(Some(Augment::DEFAULT))).unwrap_err().to_string();
    assert!(e.contains("iris") && e.contains("no image shape") && e.contains("leave --augment out"), "{e}");
    let ds = images(4);
    let bad = Augment { rotate_deg: 400.0, ..Augment::NONE };
    let e = DataLoader::new(&ds, options(Some(bad))).unwrap_err().to_string();
    assert!(e.contains("rotate 400 is outside 0 to 180"), "{e}");
}

/// Single-threaded cost of augmenting MNIST's 60,000 training images with the default
/// strengths; prints ns per image and how long the augmenter took to build. A timing, not a
/// check: run it in release on a quiet machine,
/// `MNIST_DIR=../shared/data/mnist cargo test --release -p data --test augment -- --ignored --nocapture`.
#[test]
#[ignore = "timing; needs MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"]
fn time_default_augmentation_per_mnist_image() {
    let dir = std::env::var("MNIST_DIR").expect("set MNIST_DIR to the MNIST folder");
    let (train, _) = data::idx::load_mnist(std::path::Path::new(&dir)).unwrap();
    let Features::U8(pixels) = train.features() else { panic!("MNIST images are bytes") };
    let affine = Augment { elastic_alpha: 0.0, ..Augment::DEFAULT };
    for (name, spec) in [("none", Augment::NONE), ("affine only", affine), ("default", Augment::DEFAULT)] {
        // Building it makes the elastic field bank (once per run, on rayon's threads): the
        // quickest of five builds.
        let mut built = std::time::Duration::MAX;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            std::hint::black_box(data::augment::Augmenter::new(spec, 28, 28, 1).unwrap());
            built = built.min(started.elapsed());
        }
        let augmenter = data::augment::Augmenter::new(spec, 28, 28, 1).unwrap();
        let mut out = vec![0u8; 784];
        let mut checksum = 0u64;
        let start = std::time::Instant::now();
        for (i, image) in pixels.chunks_exact(784).enumerate() {
            augmenter.apply(image, &mut out, 0, i as u64);
            checksum = checksum.wrapping_add(u64::from(out[14 * 28 + 14]));
        }
        let per_image = start.elapsed().as_nanos() as f64 / (pixels.len() / 784) as f64;
        println!("{name}: {per_image:.0} ns per image (checksum {checksum}), built in {built:.1?}");
    }
}
