//! IDX reader: good files (raw and gzip, both file-name spellings) and every kind of
//! malformed input, which must give the right error and never panic.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use data::idx::{self, encode_u8, Split};
use data::{Error, Features};
use flate2::{write::GzEncoder, Compression};

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `n` images of 2x3 whose pixels encode their index, and labels `i % 10`.
fn images_and_labels(n: u32) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * 6).map(|v| (v / 6) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (encode_u8(&[n, 2, 3], &pixels), encode_u8(&[n], &labels))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn loads_a_standard_folder_gz_and_raw_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let (img, lab) = images_and_labels(12);
    write(dir.path(), "train-images-idx3-ubyte.gz", &gz(&img));
    write(dir.path(), "train-labels-idx1-ubyte", &lab);
    let (img_t, lab_t) = images_and_labels(4);
    // The other common spelling, for the test split.
    write(dir.path(), "t10k-images.idx3-ubyte", &img_t);
    write(dir.path(), "t10k-labels.idx1-ubyte.gz", &gz(&lab_t));
    assert!(idx::has_mnist_files(dir.path()));

    let (train, test) = idx::load_mnist(dir.path()).unwrap();
    assert_eq!((train.len(), test.len()), (12, 4));
    assert_eq!(train.input_len(), 6);
    assert_eq!(train.num_classes(), 10);
    assert_eq!(train.image_shape(), Some((2, 3)));
    assert_eq!(train.labels()[11], 1);
    match train.features() {
        Features::U8(p) => assert_eq!(&p[66..72], &[11; 6]),
        Features::F32(_) => panic!("IDX images must stay u8"),
    }
    assert!(train.name().ends_with("train"), "{}", train.name());
    assert!(test.name().ends_with("test"), "{}", test.name());
}

#[test]
fn missing_files_name_the_folder_and_what_was_tried() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = images_and_labels(3);
    write(dir.path(), "train-images-idx3-ubyte", &img);
    let e = idx::load_split(dir.path(), Split::Train).unwrap_err();
    match &e {
        Error::MissingFiles { tried, .. } => {
            assert!(tried.contains(&"train-labels-idx1-ubyte.gz".to_string()))
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("host download"), "{msg}");
    let e = idx::load_split(&dir.path().join("nope"), Split::Test).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn bad_magic() {
    for bytes in [
        &b"<html>404 Not Found</html>"[..],
        &[0x89, b'P', b'N', b'G', 0, 0, 0, 0][..],
        &[0x00][..],
        &[0x00, 0x01, 0x08, 0x03][..],
    ] {
        let e = idx::parse_images("x", bytes).unwrap_err();
        assert!(matches!(e, Error::BadMagic { .. }), "{e}");
        assert!(e.to_string().starts_with("x: not an IDX file"), "{e}");
    }
}

#[test]
fn unsupported_dtype_and_wrong_rank() {
    let mut f32_file = encode_u8(&[1, 1, 1], &[0, 0, 0, 0]);
    f32_file[2] = 0x0D;
    let e = idx::parse_images("f.idx", &f32_file).unwrap_err();
    assert!(matches!(e, Error::UnsupportedDtype { dtype: 0x0D, .. }), "{e}");
    assert!(e.to_string().contains("f32"), "{e}");

    let (img, lab) = images_and_labels(2);
    let e = idx::parse_labels("swapped", &img, 10).unwrap_err();
    assert!(matches!(e, Error::WrongRank { expected: 1, found: 3, .. }), "{e}");
    let e = idx::parse_images("swapped", &lab).unwrap_err();
    assert!(matches!(e, Error::WrongRank { expected: 3, found: 1, .. }), "{e}");
}

#[test]
fn truncated_raw_and_gz_with_a_helpful_message() {
    let (img, _) = images_and_labels(10);
    let cut = &img[..img.len() - 7];
    let e = idx::parse_images("train-images-idx3-ubyte", cut).unwrap_err();
    assert!(matches!(e, Error::Truncated { expected: 60, actual: 53, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte: truncated: header declares 10 images of 2x3 (60 bytes) but the file has 53 bytes after the header"),
        "{msg}"
    );
    assert!(msg.contains("host download"), "{msg}");
    let e = idx::parse_images("t.gz", &gz(cut)).unwrap_err();
    assert!(matches!(e, Error::Truncated { actual: 53, .. }), "{e}");
    // Cut inside the dimension sizes.
    let e = idx::parse_images("t", &img[..9]).unwrap_err();
    assert!(matches!(e, Error::Truncated { expected: 12, actual: 5, .. }), "{e}");
}

#[test]
fn trailing_garbage() {
    let (_, mut lab) = images_and_labels(5);
    lab.extend_from_slice(b"garbage");
    let e = idx::parse_labels("l", &lab, 10).unwrap_err();
    assert!(matches!(e, Error::TrailingBytes { expected: 5, actual: 12, .. }), "{e}");
    let e = idx::parse_labels("l.gz", &gz(&lab), 10).unwrap_err();
    assert!(matches!(e, Error::TrailingBytes { expected: 5, actual: 12, .. }), "{e}");
}

#[test]
fn huge_and_zero_declared_dimensions() {
    // 2^32-1 cubed overflows any address space: rejected before any allocation.
    let e = idx::parse_images("huge", &encode_u8(&[u32::MAX; 3], &[1, 2, 3])).unwrap_err();
    assert!(matches!(e, Error::BadDimensions { .. } | Error::Truncated { .. }), "{e}");
    // Large but addressable: must be caught by the length check, not by allocating 4 GiB.
    let e = idx::parse_images("big", &encode_u8(&[65_536, 256, 256], &[0; 100])).unwrap_err();
    assert!(matches!(e, Error::Truncated { actual: 100, .. }), "{e}");
    let e = idx::parse_labels("big", &encode_u8(&[u32::MAX], &[0; 3]), 10).unwrap_err();
    assert!(matches!(e, Error::Truncated { actual: 3, .. }), "{e}");
    let e = idx::parse_images("zero", &encode_u8(&[0, 28, 28], &[])).unwrap_err();
    assert!(matches!(e, Error::BadDimensions { .. }), "{e}");
}

#[test]
fn count_mismatch_between_images_and_labels() {
    let (img, _) = images_and_labels(5);
    let (_, lab) = images_and_labels(6);
    let e = idx::parse_dataset("d", "imgs", &img, "labs", &lab, 10).unwrap_err();
    assert!(matches!(e, Error::CountMismatch { images: 5, labels: 6, .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("imgs") && msg.contains("labs"), "{msg}");
}

#[test]
fn label_out_of_range() {
    let lab = encode_u8(&[3], &[1, 10, 2]);
    let e = idx::parse_labels("l", &lab, 10).unwrap_err();
    assert!(matches!(e, Error::LabelOutOfRange { label: 10, num_classes: 10, .. }), "{e}");
}

#[test]
fn empty_and_corrupt_gzip() {
    let e = idx::parse_images("empty", &[]).unwrap_err();
    assert!(matches!(e, Error::Empty { .. }), "{e}");
    let (img, _) = images_and_labels(100);
    let mut z = gz(&img);
    let mid = z.len() / 2;
    z[mid] ^= 0xff;
    z[mid + 1] ^= 0x55;
    match idx::parse_images("bad.gz", &z) {
        Err(Error::Gzip { .. }) | Err(Error::Truncated { .. }) | Err(Error::TrailingBytes { .. }) => {}
        other => panic!("corrupt gzip was not reported: {other:?}"),
    }
    let e = idx::parse_images("hdr.gz", &[0x1f, 0x8b, 0, 0]).unwrap_err();
    assert!(matches!(e, Error::Gzip { .. }), "{e}");
}

#[test]
fn unreadable_path_is_an_io_error_naming_it() {
    let e = idx::read_images(Path::new("/definitely/not/here.gz")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("/definitely/not/here.gz"), "{e}");
}

#[test]
fn mutated_inputs_never_panic() {
    // A deterministic mini-fuzz over a valid file: every outcome is Ok or Err, no panic.
    let (img, lab) = images_and_labels(8);
    let seeds = [img.clone(), lab.clone(), gz(&img), gz(&lab)];
    let mut rng = mlp::Rng::new(2024);
    for round in 0..4000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(3) {
                0 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len() as u32) as usize;
                    bytes[i] = rng.next_u32() as u8;
                }
                1 => {
                    let keep = rng.below(bytes.len() as u32 + 1) as usize;
                    bytes.truncate(keep);
                }
                _ => bytes.push(rng.next_u32() as u8),
            }
        }
        let _ = idx::parse_images("m", &bytes);
        let _ = idx::parse_labels("m", &bytes, 10);
    }
}

/// The real thing: run with `MNIST_DIR=../shared/data/mnist cargo test -p data -- --ignored`.
#[test]
#[ignore = "needs MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"]
fn real_mnist_from_mnist_dir() {
    let dir = std::env::var_os("MNIST_DIR")
        .map(PathBuf::from)
        .expect("MNIST_DIR must name the MNIST folder when running ignored tests");
    let (train, test) = idx::load_mnist(&dir).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!((train.input_len(), test.input_len()), (784, 784));
    assert_eq!(train.image_shape(), Some((28, 28)));
    assert!(train.labels().iter().chain(test.labels()).all(|&l| l < 10));
    assert_eq!(train.labels()[0], 5);
    assert_eq!(test.labels()[0], 7);
    assert!(train.class_counts().iter().all(|&c| c > 5000));
    let (mean, std) = data::loader::mean_std(&train);
    assert!((mean - 0.1307).abs() < 1e-4, "mean {mean}");
    assert!((std - 0.3081).abs() < 1e-4, "std {std}");
}

/// A folder with three of the four files: training names the one missing file (not "no
/// data file found"), while the complete test split alone is enough to evaluate on.
#[test]
fn a_folder_missing_one_file_names_it_and_still_serves_the_other_split() {
    let dir = tempfile::tempdir().unwrap();
    let (img, lbl) = images_and_labels(4);
    write(dir.path(), "train-images-idx3-ubyte", &img);
    write(dir.path(), "t10k-images-idx3-ubyte", &img);
    write(dir.path(), "t10k-labels-idx1-ubyte", &lbl);
    let resolve =
        |env| data::download::resolve_mnist_dir_with(None, env, Path::new("unused"), &[], &[], false);
    let found = resolve(Some(dir.path().to_path_buf())).expect("the test split is complete");
    assert_eq!(found, dir.path());
    assert_eq!(idx::load_split(&found, Split::Test).unwrap().len(), 4);
    let msg = idx::load_split(&found, Split::Train).unwrap_err().to_string();
    assert!(msg.contains("train-labels-idx1-ubyte") && !msg.contains("train-images"), "{msg}");
    assert!(!msg.contains("no data file found"), "{msg}");

    let empty = tempfile::tempdir().unwrap();
    let msg = resolve(Some(empty.path().to_path_buf())).unwrap_err().to_string();
    assert!(msg.contains("host download --dir") && !msg.contains("--data {"), "{msg}");
}
