//! IDX files: MNIST, Fashion-MNIST and KMNIST images and labels, gzip-compressed or raw.
//!
//! The format (LeCun's): two zero bytes, a type byte (0x08 = unsigned byte, the only type
//! these data sets use), a rank byte, then one big-endian `u32` per dimension, then the
//! elements row-major. Images have rank 3 (count, rows, cols), labels rank 1 (count).
//!
//! Headers are untrusted: a declared size is checked for overflow and against the bytes that
//! are really there before anything is allocated from it, so a corrupt or hostile file gives
//! an [`Error`] and never a panic or a huge allocation. [`parse_images`] and
//! [`parse_labels`] work on bytes (that is what the fuzz targets call); the `read_*` and
//! `load_*` functions add the file system.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::dataset::{Dataset, Features};
use super::error::{Error, Result};

/// Number of classes in MNIST, Fashion-MNIST and KMNIST.
pub const MNIST_NUM_CLASSES: usize = 10;

/// IDX type byte for unsigned bytes.
const DTYPE_U8: u8 = 0x08;

/// Largest gzip expansion ratio (deflate's limit is about 1032:1); used only to cap the
/// up-front reservation for decompressed data.
const MAX_GZIP_RATIO: usize = 1032;

/// A stack of same-sized `u8` images, as stored in an IDX rank-3 file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// Number of images.
    pub count: usize,
    /// Pixel rows per image.
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixels, image after image, each row-major.
    pub pixels: Vec<u8>,
}

/// Which half of a standard IDX data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training files (`train-*`): 60000 samples for MNIST.
    Train,
    /// The test files (`t10k-*`): 10000 samples for MNIST.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// "train" or "test", for data set names.
    pub fn label(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// The two files of one split, as found by [`find_split`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitFiles {
    /// The images file (rank 3).
    pub images: PathBuf,
    /// The labels file (rank 1).
    pub labels: PathBuf,
}

/// Parses an IDX images file (rank 3, `u8`), gzip-compressed or raw (detected from the
/// content, not the name). `file` names the input in error messages.
pub fn parse_images(file: &str, bytes: &[u8]) -> Result<Images> {
    let (dims, pixels) = parse_u8_array(file, bytes, 3, |d| format!("{} images of {}x{}", d[0], d[1], d[2]))?;
    Ok(Images { count: dims[0], rows: dims[1], cols: dims[2], pixels })
}

/// Parses an IDX labels file (rank 1, `u8`), gzip-compressed or raw, checking that every
/// label is below `num_classes`.
pub fn parse_labels(file: &str, bytes: &[u8], num_classes: usize) -> Result<Vec<u32>> {
    let (_, values) = parse_u8_array(file, bytes, 1, |d| format!("{} labels", d[0]))?;
    if let Some((i, &label)) = values.iter().enumerate().find(|(_, &l)| l as usize >= num_classes) {
        return Err(Error::LabelOutOfRange {
            file: file.to_string(),
            location: format!("label #{i}"),
            label: label.into(),
            num_classes,
        });
    }
    Ok(values.into_iter().map(u32::from).collect())
}

/// Parses an images file and a labels file into one [`Dataset`] named `name`, checking that
/// they hold the same number of samples.
pub fn parse_dataset(
    name: &str,
    images_file: &str,
    images: &[u8],
    labels_file: &str,
    labels: &[u8],
    num_classes: usize,
) -> Result<Dataset> {
    let images_parsed = parse_images(images_file, images)?;
    let labels_parsed = parse_labels(labels_file, labels, num_classes)?;
    assemble(name, images_file, images_parsed, labels_file, labels_parsed, num_classes)
}

/// Reads and parses an IDX images file (`.gz` or raw).
pub fn read_images(path: &Path) -> Result<Images> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "read the images file", e))?;
    parse_images(&path.display().to_string(), &bytes)
}

/// Reads and parses an IDX labels file (`.gz` or raw).
pub fn read_labels(path: &Path, num_classes: usize) -> Result<Vec<u32>> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "read the labels file", e))?;
    parse_labels(&path.display().to_string(), &bytes, num_classes)
}

/// Loads an images file and a labels file into one [`Dataset`] named `name`.
pub fn load_dataset(name: &str, images: &Path, labels: &Path, num_classes: usize) -> Result<Dataset> {
    let images_parsed = read_images(images)?;
    let labels_parsed = read_labels(labels, num_classes)?;
    assemble(
        name,
        &images.display().to_string(),
        images_parsed,
        &labels.display().to_string(),
        labels_parsed,
        num_classes,
    )
}

/// The file names tried for one split, in order of preference: the standard names, then the
/// `train-images.idx3-ubyte` spelling some archives use; raw before `.gz` (no decompression).
pub fn candidate_names(split: Split) -> (Vec<String>, Vec<String>) {
    let p = split.prefix();
    let names = |kind: &str, rank: u8| {
        let mut v = Vec::new();
        for base in [format!("{p}-{kind}-idx{rank}-ubyte"), format!("{p}-{kind}.idx{rank}-ubyte")] {
            v.push(base.clone());
            v.push(format!("{base}.gz"));
        }
        v
    };
    (names("images", 3), names("labels", 1))
}

/// Finds the images and labels files of `split` in `dir` under the standard names (see
/// [`candidate_names`]).
pub fn find_split(dir: &Path, split: Split) -> Result<SplitFiles> {
    let (image_names, label_names) = candidate_names(split);
    let find = |names: &[String]| names.iter().map(|n| dir.join(n)).find(|p| p.is_file());
    match (find(&image_names), find(&label_names)) {
        (Some(images), Some(labels)) => Ok(SplitFiles { images, labels }),
        (images, _) => {
            let tried = if images.is_none() { image_names } else { label_names };
            let hint = if dir.is_dir() {
                "download MNIST with `host download`, or point --data / MNIST_DIR at a \
                 folder that has the IDX files"
                    .to_string()
            } else {
                "the folder does not exist: check the path, or run `host download` to fetch \
                 MNIST there"
                    .to_string()
            };
            Err(Error::MissingFiles { dir: dir.to_path_buf(), tried, hint })
        }
    }
}

/// Whether `dir` holds both splits of an IDX data set under the standard names.
pub fn has_mnist_files(dir: &Path) -> bool {
    find_split(dir, Split::Train).is_ok() && find_split(dir, Split::Test).is_ok()
}

/// Loads one split of an MNIST-style data set (10 classes) from `dir`. The data set is
/// named after the folder and the split, e.g. "mnist train".
pub fn load_split(dir: &Path, split: Split) -> Result<Dataset> {
    let files = find_split(dir, split)?;
    let base = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "idx".to_string());
    let name = format!("{base} {}", split.label());
    load_dataset(&name, &files.images, &files.labels, MNIST_NUM_CLASSES)
}

/// Loads `(train, test)` of an MNIST-style data set (MNIST, Fashion-MNIST, KMNIST) from
/// `dir`.
pub fn load_mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    Ok((load_split(dir, Split::Train)?, load_split(dir, Split::Test)?))
}

fn assemble(
    name: &str,
    images_file: &str,
    images: Images,
    labels_file: &str,
    labels: Vec<u32>,
    num_classes: usize,
) -> Result<Dataset> {
    if images.count != labels.len() {
        return Err(Error::CountMismatch {
            images_file: images_file.to_string(),
            labels_file: labels_file.to_string(),
            images: images.count,
            labels: labels.len(),
        });
    }
    let input_len = images.rows * images.cols;
    Dataset::new(name, Features::U8(images.pixels), input_len, labels, num_classes, None)?
        .with_image_shape(images.rows, images.cols)
}

/// Reads as many bytes as fit in `buf`, stopping early only at the end of the input.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Parses a `u8` IDX array of the given rank from raw or gzip bytes, returning its
/// dimensions and elements. `describe` turns the dimensions into words for messages.
fn parse_u8_array(
    file: &str,
    bytes: &[u8],
    rank: u8,
    describe: impl Fn(&[usize]) -> String,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read + '_> =
        if gz { Box::new(MultiGzDecoder::new(bytes)) } else { Box::new(bytes) };
    let gz_err = |source| Error::Gzip { file: file.to_string(), source };

    let mut magic = [0u8; 4];
    let n = read_full(&mut reader, &mut magic).map_err(gz_err)?;
    if n == 0 {
        return Err(Error::Empty { file: file.to_string(), what: "IDX header" });
    }
    if n < 4 || magic[0] != 0 || magic[1] != 0 {
        return Err(Error::BadMagic { file: file.to_string(), found: magic[..n].to_vec() });
    }
    if magic[2] != DTYPE_U8 {
        return Err(Error::UnsupportedDtype { file: file.to_string(), dtype: magic[2] });
    }
    if magic[3] != rank {
        return Err(Error::WrongRank { file: file.to_string(), expected: rank, found: magic[3] });
    }

    let mut dim_bytes = [0u8; 12];
    let dim_bytes = &mut dim_bytes[..4 * rank as usize];
    let n = read_full(&mut reader, dim_bytes).map_err(gz_err)?;
    if n < dim_bytes.len() {
        return Err(Error::Truncated {
            file: file.to_string(),
            declared: format!("{rank} dimension sizes"),
            expected: dim_bytes.len() as u64,
            actual: n as u64,
        });
    }
    let raw_dims: Vec<u32> =
        dim_bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    if raw_dims.contains(&0) {
        return Err(Error::BadDimensions {
            file: file.to_string(),
            dims: raw_dims,
            reason: "contain a zero (no data)",
        });
    }
    // Three u32 factors fit in u128; then the total must be addressable.
    let total = raw_dims.iter().fold(1u128, |acc, &d| acc * u128::from(d));
    let expected = match usize::try_from(total) {
        Ok(t) if t <= isize::MAX as usize => t,
        _ => {
            return Err(Error::BadDimensions {
                file: file.to_string(),
                dims: raw_dims,
                reason: "describe more data than fits in memory",
            })
        }
    };
    let dims: Vec<usize> = raw_dims.iter().map(|&d| d as usize).collect();
    let header_len = 4 + 4 * rank as usize;

    let data = if gz {
        // The decompressed length is unknown until read: read at most one byte more than
        // declared, reserving no more than the compressed input could expand to.
        let reserve = expected.saturating_add(1).min(bytes.len().saturating_mul(MAX_GZIP_RATIO));
        let mut data = Vec::with_capacity(reserve);
        (&mut reader).take(expected as u64 + 1).read_to_end(&mut data).map_err(gz_err)?;
        if data.len() > expected {
            let rest = io::copy(&mut reader, &mut io::sink()).map_err(gz_err)?;
            return Err(Error::TrailingBytes {
                file: file.to_string(),
                declared: describe(&dims),
                expected: expected as u64,
                actual: data.len() as u64 + rest,
            });
        }
        data
    } else {
        let body = &bytes[header_len..];
        if body.len() > expected {
            return Err(Error::TrailingBytes {
                file: file.to_string(),
                declared: describe(&dims),
                expected: expected as u64,
                actual: body.len() as u64,
            });
        }
        body.to_vec()
    };
    if data.len() < expected {
        return Err(Error::Truncated {
            file: file.to_string(),
            declared: describe(&dims),
            expected: expected as u64,
            actual: data.len() as u64,
        });
    }
    Ok((dims, data))
}

/// Encodes `u8` data as an IDX file with the given dimensions (for tests, tools, and
/// exporting subsets in the format other tools read).
pub fn encode_u8(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, DTYPE_U8, dims.len() as u8]);
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn raw_and_gz_images_parse_the_same() {
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let raw = encode_u8(&[2, 3, 4], &pixels);
        let a = parse_images("a", &raw).unwrap();
        let b = parse_images("b", &gz(&raw)).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.count, a.rows, a.cols), (2, 3, 4));
        assert_eq!(a.pixels, pixels);
    }

    #[test]
    fn gz_truncation_and_trailing_bytes() {
        let raw = encode_u8(&[2, 2, 2], &[1; 8]);
        let mut short = raw.clone();
        short.truncate(raw.len() - 3);
        let e = parse_images("s.gz", &gz(&short)).unwrap_err();
        assert!(matches!(e, Error::Truncated { expected: 8, actual: 5, .. }), "{e}");
        let mut long = raw.clone();
        long.extend_from_slice(&[7; 10]);
        let e = parse_images("l.gz", &gz(&long)).unwrap_err();
        assert!(matches!(e, Error::TrailingBytes { expected: 8, actual: 18, .. }), "{e}");
        // A gzip stream cut in the middle.
        let z = gz(&encode_u8(&[50, 20, 20], &[3; 20_000]));
        let e = parse_images("cut.gz", &z[..z.len() / 2]).unwrap_err();
        assert!(matches!(e, Error::Gzip { .. } | Error::Truncated { .. }), "{e}");
    }

    #[test]
    fn gz_bomb_does_not_reserve_the_declared_size() {
        // Declares 4 GiB of images in a tiny gzip stream: must fail as truncated, quickly.
        let header = encode_u8(&[65_536, 256, 256], &[]);
        let e = parse_images("bomb.gz", &gz(&header)).unwrap_err();
        assert!(matches!(e, Error::Truncated { actual: 0, .. }), "{e}");
    }

    #[test]
    fn labels_in_range_only() {
        let raw = encode_u8(&[3], &[0, 9, 2]);
        assert_eq!(parse_labels("l", &raw, 10).unwrap(), vec![0, 9, 2]);
        let e = parse_labels("l", &raw, 5).unwrap_err();
        assert!(matches!(e, Error::LabelOutOfRange { label: 9, .. }));
        assert!(e.to_string().contains("label #1"));
    }

    #[test]
    fn candidate_names_cover_both_spellings() {
        let (images, labels) = candidate_names(Split::Test);
        assert!(images.contains(&"t10k-images-idx3-ubyte.gz".to_string()));
        assert!(images.contains(&"t10k-images.idx3-ubyte".to_string()));
        assert!(labels.contains(&"t10k-labels-idx1-ubyte".to_string()));
        assert!(labels.contains(&"t10k-labels.idx1-ubyte.gz".to_string()));
    }
}
