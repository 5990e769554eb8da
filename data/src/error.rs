//! The one error type of the data layer.
//!
//! Every message names the file it is about (and, for CSV, the line), says what is wrong and
//! what to do about it, because the person reading it is usually someone who just pointed the
//! CLI at a folder or a spreadsheet export.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A `Result` whose error is the data layer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a data set could not be read, split, loaded or downloaded.
///
/// The variants are for programs that want to react to a kind of failure; the `Display`
/// text is for people and is complete on its own (file, what is wrong, what to do).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read, written or renamed.
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done, e.g. "read" or "create".
        action: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// A `.gz` file whose compressed stream is damaged.
    Gzip {
        /// The file's name.
        file: String,
        /// The decoder's error.
        source: io::Error,
    },
    /// The file does not start like an IDX file (two zero bytes, a type byte, a rank byte).
    BadMagic {
        /// The file's name.
        file: String,
        /// The first bytes found (up to four).
        found: Vec<u8>,
    },
    /// An IDX file whose element type is not `u8` (0x08), the only one image sets use.
    UnsupportedDtype {
        /// The file's name.
        file: String,
        /// The IDX type byte found.
        dtype: u8,
    },
    /// An IDX file with the wrong number of dimensions (1 for labels, 3 for images).
    WrongRank {
        /// The file's name.
        file: String,
        /// The rank the caller asked for.
        expected: u8,
        /// The rank the header declares.
        found: u8,
    },
    /// A header declaring a shape that cannot be right: a zero dimension, or more bytes than
    /// any computer can address.
    BadDimensions {
        /// The file's name.
        file: String,
        /// The declared dimensions.
        dims: Vec<u32>,
        /// Why they are rejected.
        reason: &'static str,
    },
    /// Fewer bytes after the header than the header declares.
    Truncated {
        /// The file's name.
        file: String,
        /// What the header declares, in words ("60000 images of 28x28").
        declared: String,
        /// Bytes the header declares after itself.
        expected: u64,
        /// Bytes actually there.
        actual: u64,
    },
    /// More bytes after the header than the header declares.
    TrailingBytes {
        /// The file's name.
        file: String,
        /// What the header declares, in words.
        declared: String,
        /// Bytes the header declares after itself.
        expected: u64,
        /// Bytes actually there.
        actual: u64,
    },
    /// An images file and a labels file that disagree on the number of samples.
    CountMismatch {
        /// The images file's name.
        images_file: String,
        /// The labels file's name.
        labels_file: String,
        /// Images declared.
        images: usize,
        /// Labels declared.
        labels: usize,
    },
    /// A label outside `0..num_classes`.
    LabelOutOfRange {
        /// The file's name.
        file: String,
        /// Where: the sample index for IDX, the line number for CSV.
        location: String,
        /// The label found.
        label: u64,
        /// The number of classes expected.
        num_classes: usize,
    },
    /// A folder without the expected data files.
    MissingFiles {
        /// The folder searched.
        dir: PathBuf,
        /// The file names tried, in order.
        tried: Vec<String>,
        /// What to do about it.
        hint: String,
    },
    /// A file or parse input with no samples at all.
    Empty {
        /// The file's name.
        file: String,
        /// What was expected in it.
        what: &'static str,
    },
    /// A text file that is not UTF-8.
    NotUtf8 {
        /// The file's name.
        file: String,
        /// The 1-based line of the first invalid byte.
        line: usize,
    },
    /// A CSV row with a different number of fields than the first row.
    CsvRagged {
        /// The file's name.
        file: String,
        /// The 1-based line number.
        line: usize,
        /// Fields in the first row.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// A CSV feature value that is not a number (or is empty).
    CsvNotANumber {
        /// The file's name.
        file: String,
        /// The 1-based line number.
        line: usize,
        /// The column's header name, or "column N" (1-based).
        column: String,
        /// The text found.
        value: String,
    },
    /// A CSV feature value that parses to NaN or an infinity.
    CsvNotFinite {
        /// The file's name.
        file: String,
        /// The 1-based line number.
        line: usize,
        /// The column's header name, or "column N" (1-based).
        column: String,
        /// The text found.
        value: String,
    },
    /// A CSV label that cannot be used (empty, not an integer when integers were asked for,
    /// not one of the given class names).
    CsvBadLabel {
        /// The file's name.
        file: String,
        /// The 1-based line number.
        line: usize,
        /// The text found.
        value: String,
        /// What was expected instead.
        expected: String,
    },
    /// A CSV line with a quote that is never closed.
    CsvUnterminatedQuote {
        /// The file's name.
        file: String,
        /// The 1-based line number.
        line: usize,
    },
    /// The label column asked for does not exist.
    CsvNoSuchColumn {
        /// The file's name.
        file: String,
        /// The column asked for (a name or a 0-based index).
        wanted: String,
        /// The columns there are.
        available: String,
    },
    /// An argument that makes no sense (a split fraction of 1.5, a batch size of 0, ...).
    InvalidArgument(String),
    /// No mirror delivered a file with the expected content.
    Download {
        /// The file's name.
        file: String,
        /// One entry per mirror tried, in order.
        failures: Vec<MirrorFailure>,
    },
}

/// Why one mirror did not deliver one file.
#[derive(Debug, Clone)]
pub struct MirrorFailure {
    /// The full URL asked.
    pub url: String,
    /// What went wrong.
    pub kind: FailureKind,
}

/// The kinds of download failure, so tests and callers can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The server answered with a non-success HTTP status.
    Status(u16),
    /// No answer: connection refused, DNS, TLS, timeout, connection cut mid-body.
    Network(String),
    /// The content arrived but its SHA-256 matches none of the expected digests.
    Checksum {
        /// SHA-256 of the bytes received.
        got: String,
        /// SHA-256 of their decompressed content, when they were valid gzip.
        got_decompressed: Option<String>,
        /// The expected digest: of the decompressed content when `of_content`, else of the
        /// gzip file (several joined by " or ").
        expected: String,
        /// Whether `expected` is a digest of the decompressed content.
        of_content: bool,
    },
    /// The server sent more bytes than any MNIST file has.
    TooLarge(u64),
    /// Writing the temporary file failed.
    Local(String),
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Status(code) => write!(f, "HTTP status {code}"),
            FailureKind::Network(msg) => write!(f, "network error: {msg}"),
            FailureKind::Checksum { got, got_decompressed, expected, of_content } => {
                write!(f, "SHA-256 mismatch: received bytes hash to {got}")?;
                match got_decompressed {
                    Some(d) => write!(f, ", their decompressed content to {d}")?,
                    None => write!(f, " (not valid gzip)")?,
                }
                let what = if *of_content { "decompressed content" } else { "file" };
                write!(f, "; expected {what} {expected}")
            }
            FailureKind::TooLarge(limit) => {
                write!(f, "the server sent more than {limit} bytes, far more than the file has")
            }
            FailureKind::Local(msg) => write!(f, "could not store it: {msg}"),
        }
    }
}

const REDOWNLOAD: &str = "re-download it with `host download`";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, action, source } => write!(
                f,
                "{}: could not {action}: {source}; check that the path exists and is accessible",
                path.display()
            ),
            Error::Gzip { file, source } => write!(
                f,
                "{file}: damaged gzip data ({source}); the download was probably cut short: \
                 {REDOWNLOAD}"
            ),
            Error::BadMagic { file, found } => write!(
                f,
                "{file}: not an IDX file: it starts with bytes {found:02x?}, an IDX file starts \
                 with 00 00, a type byte and a rank byte; check that this is an MNIST-style \
                 images/labels file (not an HTML error page or a PNG), or {REDOWNLOAD}"
            ),
            Error::UnsupportedDtype { file, dtype } => write!(
                f,
                "{file}: unsupported IDX element type 0x{dtype:02x} ({}); only unsigned bytes \
                 (0x08), as in MNIST, Fashion-MNIST and KMNIST, are supported: convert the data \
                 to u8 or to CSV",
                dtype_name(*dtype)
            ),
            Error::WrongRank { file, expected, found } => write!(
                f,
                "{file}: the IDX header declares {found} dimension(s) but {} file needs \
                 {expected}; check that images and labels files are not swapped",
                if *expected == 1 { "a labels" } else { "an images" }
            ),
            Error::BadDimensions { file, dims, reason } => write!(
                f,
                "{file}: the IDX header declares dimensions {dims:?}, which {reason}; the file \
                 is corrupt: {REDOWNLOAD}"
            ),
            Error::Truncated { file, declared, expected, actual } => write!(
                f,
                "{file}: truncated: header declares {declared} ({expected} bytes) but the file \
                 has {actual} bytes after the header; {REDOWNLOAD}"
            ),
            Error::TrailingBytes { file, declared, expected, actual } => write!(
                f,
                "{file}: trailing garbage: header declares {declared} ({expected} bytes) but the \
                 file has {actual} bytes after the header; {REDOWNLOAD}"
            ),
            Error::CountMismatch { images_file, labels_file, images, labels } => write!(
                f,
                "{images_file} has {images} images but {labels_file} has {labels} labels; use \
                 the images and labels files of the same split (train with train, t10k with \
                 t10k)"
            ),
            Error::LabelOutOfRange { file, location, label, num_classes } => write!(
                f,
                "{file}: {location}: label {label} is out of range, labels must be below the \
                 number of classes ({num_classes}); check the file, or the number of classes"
            ),
            Error::MissingFiles { dir, tried, hint } => {
                write!(
                    f,
                    "{}: a file is missing: none of {} is there; {hint}",
                    dir.display(),
                    tried.join(", ")
                )
            }
            Error::Empty { file, what } => {
                write!(f, "{file}: empty: no {what} found; check that this is the right file")
            }
            Error::NotUtf8 { file, line } => {
                write!(f, "{file}: line {line}: not valid UTF-8 text; save the file as UTF-8 CSV")
            }
            Error::CsvRagged { file, line, expected, found } => write!(
                f,
                "{file}: line {line}: {found} fields but the first row has {expected}; every \
                 row needs the same number of comma-separated fields (a missing value or a \
                 stray comma?)"
            ),
            Error::CsvNotANumber { file, line, column, value } => {
                if value.is_empty() {
                    write!(f, "{file}: line {line}: {column}: missing value; fill it in or drop the row")
                } else {
                    write!(
                        f,
                        "{file}: line {line}: {column}: {value:?} is not a number; feature \
                         columns must be numeric (encode categories as numbers, or choose the \
                         label column with the right name or index)"
                    )
                }
            }
            Error::CsvNotFinite { file, line, column, value } => write!(
                f,
                "{file}: line {line}: {column}: {value:?} is not a finite number; replace \
                 NaN/infinite values or drop the row"
            ),
            Error::CsvBadLabel { file, line, value, expected } => write!(
                f,
                "{file}: line {line}: label {value:?} is not {expected}; fix the label or the \
                 label options"
            ),
            Error::CsvUnterminatedQuote { file, line } => write!(
                f,
                "{file}: line {line}: a quoted field is never closed; add the closing '\"' \
                 (fields cannot span lines)"
            ),
            Error::CsvNoSuchColumn { file, wanted, available } => write!(
                f,
                "{file}: no label column {wanted}; the columns are: {available}; name an \
                 existing column or give its 0-based index"
            ),
            Error::InvalidArgument(msg) => f.write_str(msg),
            Error::Download { file, failures } => {
                write!(f, "{file}: could not download it from any mirror:")?;
                for failure in failures {
                    write!(f, "\n  - {}: {}", failure.url, failure.kind)?;
                }
                if failures.is_empty() {
                    write!(f, " no mirror was given")?;
                }
                write!(
                    f,
                    "\ncheck the network (or a proxy: HTTPS_PROXY), or fetch the file by hand \
                     into the data folder and point --data or MNIST_DIR at it"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Gzip { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn dtype_name(dtype: u8) -> &'static str {
    match dtype {
        0x08 => "u8",
        0x09 => "i8",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "not a known IDX type",
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        Error::Io { path: path.into(), action, source }
    }
}
