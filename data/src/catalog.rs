//! The IDX data sets known by name (`--dataset mnist|fashion-mnist|kmnist`). All three are
//! 28x28 grayscale images in 10 classes, 60000 for training and 10000 for testing, in four
//! identically named IDX `.gz` files; they differ in their mirrors, digests, default folder,
//! folder variable and class names.
//!
//! MNIST keeps its behaviour from before the others existed: its data sets are named after
//! the folder ("mnist train") and carry no class names (the class index is the digit).

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use super::dataset::Dataset;
use super::download::{self, ExpectedFile, MNIST_FILES, MNIST_MIRRORS};
use super::error::{Error, Result};
use super::idx::{self, Split};

/// An IDX data set: where it comes from, how to check it, where it goes, what its classes
/// are called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdxDataSet<'a> {
    /// The name `--dataset` takes, e.g. `fashion-mnist`.
    pub name: &'a str,
    /// The name in messages, e.g. `Fashion-MNIST`.
    pub title: &'a str,
    /// Mirror base URLs, tried in order.
    pub mirrors: &'a [&'a str],
    /// The four files and their digests.
    pub files: &'a [ExpectedFile<'a>],
    /// The folder used when neither `--data` nor the variable names one (relative to the
    /// current directory).
    pub default_dir: &'a str,
    /// The environment variable naming its folder.
    pub dir_var: &'a str,
    /// Class names by label, for plots, the model file, `eval` and `predict` (`None`: the
    /// label is the name, as for MNIST's digits).
    pub class_names: Option<&'a [&'a str]>,
}

/// MNIST, exactly as `host` has always handled it.
pub const MNIST: IdxDataSet<'static> = IdxDataSet {
    name: "mnist",
    title: "MNIST",
    mirrors: MNIST_MIRRORS,
    files: &MNIST_FILES,
    default_dir: download::DEFAULT_MNIST_DIR,
    dir_var: download::MNIST_DIR_VAR,
    class_names: None,
};

/// Largest response accepted for a Fashion-MNIST or KMNIST file (the biggest, Fashion-MNIST's
/// training images, is 26.4 MB).
const MAX_BYTES: u64 = 64 << 20;

/// An [`ExpectedFile`] known by the SHA-256 of its gzip bytes alone.
macro_rules! gz_only {
    ($name:literal, $sha256:literal) => {
        ExpectedFile { name: $name, content_sha256: None, gz_sha256: &[$sha256], max_bytes: MAX_BYTES }
    };
}

/// Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, Zalando Research).
pub const FASHION_MNIST: IdxDataSet<'static> = IdxDataSet {
    name: "fashion-mnist",
    title: "Fashion-MNIST",
    // The project's S3 site (what its README links), then the files in its GitHub
    // repository (data/fashion/), which the README's MD5 table describes as the same files.
    mirrors: &[
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    files: &FASHION_MNIST_FILES,
    default_dir: "data/fashion-mnist",
    dir_var: "FASHION_MNIST_DIR",
    class_names: Some(&[
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]),
};

/// Fashion-MNIST's files. Only the SHA-256 of each gzip file is published, so that is all
/// that is checked. The digests are those of TensorFlow Datasets'
/// `tensorflow_datasets/url_checksums/fashion_mnist.txt` (which also gives the sizes:
/// 26421880, 29515, 4422102 and 5148 bytes) and agree with torchvision-ruby's
/// `lib/torchvision/datasets/fashion_mnist.rb`.
const FASHION_MNIST_FILES: [ExpectedFile<'static>; 4] = [
    gz_only!(
        "train-images-idx3-ubyte.gz",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
    ),
    gz_only!(
        "train-labels-idx1-ubyte.gz",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
    ),
    gz_only!("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    gz_only!("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
];

/// Kuzushiji-MNIST (Clanuwat et al. 2018, ROIS-DS Center for Open Data in the Humanities).
pub const KMNIST: IdxDataSet<'static> = IdxDataSet {
    name: "kmnist",
    title: "KMNIST",
    mirrors: &[
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ],
    files: &KMNIST_FILES,
    default_dir: "data/kmnist",
    dir_var: "KMNIST_DIR",
    // The romanized names of お き す つ な は ま や れ を (the data set's classmap, as
    // torchvision names them): the plots' embedded font (DejaVu Sans) has no kana.
    class_names: Some(&["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
};

/// KMNIST's files, gzip digests only (as for Fashion-MNIST): from TensorFlow Datasets'
/// `tensorflow_datasets/url_checksums/kmnist.txt` (sizes 18165135, 29497, 3041136 and 5120
/// bytes), in agreement with torchvision-ruby's `lib/torchvision/datasets/kmnist.rb`.
const KMNIST_FILES: [ExpectedFile<'static>; 4] = [
    gz_only!(
        "train-images-idx3-ubyte.gz",
        "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"
    ),
    gz_only!(
        "train-labels-idx1-ubyte.gz",
        "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"
    ),
    gz_only!("t10k-images-idx3-ubyte.gz", "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
    gz_only!("t10k-labels-idx1-ubyte.gz", "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
];

/// Every IDX data set, in the order `--help` lists them.
pub static DATA_SETS: [IdxDataSet<'static>; 3] = [MNIST, FASHION_MNIST, KMNIST];

/// The data set called `name` (`mnist`, `fashion-mnist` or `kmnist`, any case); an error
/// listing the known names otherwise.
pub fn find(name: &str) -> Result<&'static IdxDataSet<'static>> {
    DATA_SETS.iter().find(|s| s.name.eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "unknown data set '{name}': the IDX data sets are {}; for your own data use --data \
             DIR (IDX files) or --csv FILE",
            names().join(", ")
        ))
    })
}

/// The names `--dataset` takes.
pub fn names() -> Vec<&'static str> {
    DATA_SETS.iter().map(|s| s.name).collect()
}

impl IdxDataSet<'_> {
    /// The command that downloads this data set (`host download` for MNIST, whose default
    /// it is).
    pub fn download_command(&self) -> String {
        if self.name == MNIST.name {
            "host download".to_string()
        } else {
            format!("host download --dataset {}", self.name)
        }
    }

    /// Its folder: `explicit` (`--data DIR`), else its variable (`$FASHION_MNIST_DIR`...),
    /// else its default folder (`./data/fashion-mnist`...), downloaded into when empty.
    pub fn resolve_dir(&self, explicit: Option<&Path>) -> Result<PathBuf> {
        download::resolve_dir_with(
            self,
            explicit,
            std::env::var_os(self.dir_var).map(PathBuf::from),
            Path::new(self.default_dir),
            io::stderr().is_terminal(),
        )
    }

    /// Downloads its four files into `dir` from `mirrors` (see [`download::download_files`]).
    pub fn download(&self, dir: &Path, mirrors: &[&str], progress: bool) -> Result<()> {
        download::download_files(dir, mirrors, self.files, progress)
    }

    /// One split from `dir`, named `"<name> train"` or `"<name> test"` and with its class
    /// names (MNIST: named after the folder, no class names, as [`idx::load_split`]).
    pub fn load_split(&self, dir: &Path, split: Split) -> Result<Dataset> {
        let data = idx::load_split(dir, split)?;
        let Some(names) = self.class_names else { return Ok(data) };
        let mut data = data.with_class_names(names.iter().map(|n| n.to_string()).collect())?;
        data.set_name(format!("{} {}", self.name, split.label()));
        Ok(data)
    }

    /// `(train, test)` from `dir` (see [`IdxDataSet::load_split`]).
    pub fn load(&self, dir: &Path) -> Result<(Dataset, Dataset)> {
        Ok((self.load_split(dir, Split::Train)?, self.load_split(dir, Split::Test)?))
    }
}
