//! Where MNIST comes from: a folder given on the command line, `$MNIST_DIR`, `./data/mnist`,
//! or a download from the public mirrors.
//!
//! Downloads are verified by SHA-256 before they are kept: a file is accepted when the
//! digest of its gzip bytes is a known one, or when the digest of its decompressed content
//! is the standard one (mirrors and re-compressed copies differ in their gzip bytes, never in
//! their content). A file is written to a temporary name in the target folder and renamed
//! into place only once verified, so an interrupted or corrupt download never leaves a
//! half-written file under the final name. Mirrors are tried in order; the error of a failed
//! download lists what went wrong with each.
//!
//! The network part (HTTP client with TLS, SHA-256) is the cargo feature `download`, on by
//! default; without it (the fuzz build) the folder resolution still works and a download
//! is an error that says so.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use super::catalog::{IdxDataSet, MNIST};
use super::error::{Error, Result};
use super::idx::{find_split, has_mnist_files, Split};

#[cfg(feature = "download")]
pub use net::sha256_hex;

/// Public mirrors of MNIST's four `.gz` files, in the order they are tried.
pub const MNIST_MIRRORS: &[&str] = &[
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// The folder used when neither `--data` nor `$MNIST_DIR` names one (relative to the
/// current directory).
pub const DEFAULT_MNIST_DIR: &str = "data/mnist";

/// The environment variable naming the MNIST folder.
pub const MNIST_DIR_VAR: &str = "MNIST_DIR";

/// A file to download and how to recognise a good copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedFile<'a> {
    /// File name, appended to each mirror's URL and used in the target folder.
    pub name: &'a str,
    /// SHA-256 (lowercase hex) of the decompressed content: the authoritative check, when
    /// known (MNIST's). Without it, only the gzip digests below are accepted.
    pub content_sha256: Option<&'a str>,
    /// SHA-256 digests of known-good gzip files, accepted without decompressing.
    pub gz_sha256: &'a [&'a str],
    /// Refuse a response longer than this many bytes (a misbehaving server).
    pub max_bytes: u64,
}

/// Largest response accepted for an MNIST file (the biggest is about 9.9 MB).
const MNIST_MAX_BYTES: u64 = 64 << 20;

/// The four MNIST files with their digests (from `shared/data/mnist/SHA256SUMS`).
pub const MNIST_FILES: [ExpectedFile<'static>; 4] = [
    ExpectedFile {
        name: "train-images-idx3-ubyte.gz",
        content_sha256: Some("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        gz_sha256: &["0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971"],
        max_bytes: MNIST_MAX_BYTES,
    },
    ExpectedFile {
        name: "train-labels-idx1-ubyte.gz",
        content_sha256: Some("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        gz_sha256: &["3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"],
        max_bytes: MNIST_MAX_BYTES,
    },
    ExpectedFile {
        name: "t10k-images-idx3-ubyte.gz",
        content_sha256: Some("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        gz_sha256: &["8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"],
        max_bytes: MNIST_MAX_BYTES,
    },
    ExpectedFile {
        name: "t10k-labels-idx1-ubyte.gz",
        content_sha256: Some("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        gz_sha256: &["f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"],
        max_bytes: MNIST_MAX_BYTES,
    },
];

/// The MNIST folder to use: `explicit` (from `--data DIR`), else `$MNIST_DIR`, else
/// `./data/mnist` if it holds MNIST, else `./data/mnist` after downloading MNIST into it
/// (with a progress bar when stderr is a terminal).
///
/// A folder named by `--data` or `$MNIST_DIR` that holds neither split is an error rather
/// than a download target, since it is more likely a typo than a wish to download there;
/// `host download --dir DIR` downloads into a folder of your choice. A folder with one
/// complete split is returned: loading a split it lacks names the missing file, and
/// evaluating on the test split needs only the test files.
pub fn resolve_mnist_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    resolve_mnist_dir_with(
        explicit,
        std::env::var_os(MNIST_DIR_VAR).map(PathBuf::from),
        Path::new(DEFAULT_MNIST_DIR),
        MNIST_MIRRORS,
        &MNIST_FILES,
        io::stderr().is_terminal(),
    )
}

/// [`resolve_mnist_dir`] with every input given: the value of `$MNIST_DIR`, the default
/// folder, the mirrors and the expected files (for tests).
pub fn resolve_mnist_dir_with(
    explicit: Option<&Path>,
    env_dir: Option<PathBuf>,
    default_dir: &Path,
    mirrors: &[&str],
    files: &[ExpectedFile<'_>],
    progress: bool,
) -> Result<PathBuf> {
    let set = IdxDataSet { mirrors, files, ..MNIST };
    resolve_dir_with(&set, explicit, env_dir, default_dir, progress)
}

/// The folder of the IDX data set `set`: `explicit` (from `--data DIR`), else `env_dir` (the
/// value of its variable, e.g. `$FASHION_MNIST_DIR`), else `default_dir` if it holds the
/// files, else `default_dir` after downloading them from `set`'s mirrors (see
/// [`resolve_mnist_dir`], which is this for MNIST).
pub fn resolve_dir_with(
    set: &IdxDataSet<'_>,
    explicit: Option<&Path>,
    env_dir: Option<PathBuf>,
    default_dir: &Path,
    progress: bool,
) -> Result<PathBuf> {
    let title = set.title;
    let given = |dir: &Path, how: &str| -> Result<PathBuf> {
        if find_split(dir, Split::Train).is_ok() || find_split(dir, Split::Test).is_ok() {
            Ok(dir.to_path_buf())
        } else {
            Err(Error::MissingFiles {
                dir: dir.to_path_buf(),
                tried: set.files.iter().map(|f| f.name.to_string()).collect(),
                hint: format!(
                    "this folder was given by {how} but does not hold the {title} IDX files; \
                     fix the path, or fetch them with `{} --dir {}`",
                    set.download_command(),
                    dir.display()
                ),
            })
        }
    };
    if let Some(dir) = explicit {
        return given(dir, "--data");
    }
    if let Some(dir) = env_dir.filter(|d| !d.as_os_str().is_empty()) {
        return given(&dir, set.dir_var);
    }
    if has_mnist_files(default_dir) {
        return Ok(default_dir.to_path_buf());
    }
    if progress {
        eprintln!(
            "{title} not found (no --data, no {}, nothing in {}): downloading it there",
            set.dir_var,
            default_dir.display()
        );
    }
    download_files(default_dir, set.mirrors, set.files, progress)?;
    Ok(default_dir.to_path_buf())
}

/// Downloads the four MNIST `.gz` files into `dir` (created if needed), trying `mirrors`
/// in order for each file, with a progress bar on stderr when `progress` is set. Files
/// already there with the right content are kept, not downloaded again.
pub fn download_mnist(dir: &Path, mirrors: &[&str], progress: bool) -> Result<()> {
    download_files(dir, mirrors, &MNIST_FILES, progress)
}

/// Downloads each of `files` into `dir` from the first of `mirrors` that delivers a copy
/// with the expected digest (see [`download_mnist`]). In a build without the `download`
/// feature (the fuzz targets), this is an error that says how to get the files by hand.
pub fn download_files(
    dir: &Path,
    mirrors: &[&str],
    files: &[ExpectedFile<'_>],
    progress: bool,
) -> Result<()> {
    #[cfg(feature = "download")]
    {
        net::download_files(dir, mirrors, files, progress)
    }
    #[cfg(not(feature = "download"))]
    {
        let _ = (mirrors, progress);
        Err(Error::InvalidArgument(format!(
            "{}: this build of host has no download support (cargo feature `download` is \
             off), so it cannot fetch {}; rebuild with default features, or put the files \
             there by hand",
            dir.display(),
            files.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
        )))
    }
}

/// The network side: HTTP, hashing, atomic writes.
#[cfg(feature = "download")]
mod net {
    use std::fs::{self, File};
    use std::io::{self, BufReader, Read, Write};
    use std::path::Path;
    use std::time::Duration;

    use flate2::read::MultiGzDecoder;
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use sha2::{Digest, Sha256};

    use super::super::error::{Error, FailureKind, MirrorFailure, Result};
    use super::ExpectedFile;

    /// Downloads each of `files` into `dir` from the first of `mirrors` that delivers a copy
    /// with the expected digest (see [`download_mnist`]).
    pub(super) fn download_files(
        dir: &Path,
        mirrors: &[&str],
        files: &[ExpectedFile<'_>],
        progress: bool,
    ) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create the data folder", e))?;
        let agents = Agents::new();
        for file in files {
            let target = dir.join(file.name);
            if target.is_file() {
                match verify(&target, file) {
                    Ok(Ok(())) => {
                        if progress {
                            eprintln!("{}: already present and verified", target.display());
                        }
                        continue;
                    }
                    Ok(Err(_)) | Err(_) => {
                        if progress {
                            eprintln!(
                                "{}: present but its SHA-256 is wrong: downloading it again",
                                target.display()
                            );
                        }
                    }
                }
            }
            let mut failures = Vec::new();
            let mut done = false;
            for mirror in mirrors {
                let url = format!("{}/{}", mirror.trim_end_matches('/'), file.name);
                match fetch_one(&agents, &url, dir, &target, file, progress) {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    Err(kind) => failures.push(MirrorFailure { url, kind }),
                }
            }
            if !done {
                return Err(Error::Download { file: target.display().to_string(), failures });
            }
        }
        Ok(())
    }

    /// One agent that honours the proxy environment variables, one that never uses a proxy
    /// (for mirrors on this machine, e.g. in tests).
    struct Agents {
        default: ureq::Agent,
        direct: ureq::Agent,
    }

    impl Agents {
        fn new() -> Self {
            let build = |direct: bool| {
                let mut builder = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .user_agent(concat!("mlp-host/", env!("CARGO_PKG_VERSION")))
                    .timeout_connect(Some(Duration::from_secs(20)))
                    .timeout_recv_response(Some(Duration::from_secs(60)))
                    .timeout_per_read(Some(Duration::from_secs(60)));
                if direct {
                    builder = builder.proxy(None);
                }
                ureq::Agent::new_with_config(builder.build())
            };
            Agents { default: build(false), direct: build(true) }
        }

        fn for_url(&self, url: &str) -> &ureq::Agent {
            let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
            let local = ["127.", "localhost:", "localhost/", "[::1]"].iter().any(|p| rest.starts_with(p));
            if local {
                &self.direct
            } else {
                &self.default
            }
        }
    }

    /// Fetches `url` into a temporary file in `dir`, verifies it, and renames it to `target`.
    fn fetch_one(
        agents: &Agents,
        url: &str,
        dir: &Path,
        target: &Path,
        file: &ExpectedFile<'_>,
        progress: bool,
    ) -> Result<(), FailureKind> {
        let mut response =
            agents.for_url(url).get(url).call().map_err(|e| FailureKind::Network(e.to_string()))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FailureKind::Status(status));
        }
        let length = response.body().content_length();
        if let Some(len) = length.filter(|&l| l > file.max_bytes) {
            return Err(FailureKind::TooLarge(len.min(file.max_bytes)));
        }

        let bar = if progress {
            let bar = match length {
                Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let style = ProgressStyle::with_template(
                "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(file.name.to_string());
            bar
        } else {
            ProgressBar::hidden()
        };

        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file.name))
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|e| FailureKind::Local(format!("{}: {e}", dir.display())))?;
        let mut writer = HashingWriter { inner: temp.as_file_mut(), hasher: Sha256::new() };
        let body = response.body_mut().as_reader();
        let mut reader = bar.wrap_read(body).take(file.max_bytes + 1);
        let copied = io::copy(&mut reader, &mut writer);
        match copied {
            Ok(n) if n > file.max_bytes => {
                bar.abandon();
                return Err(FailureKind::TooLarge(file.max_bytes));
            }
            Ok(_) => {}
            Err(e) => {
                bar.abandon();
                let write_side =
                    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::PermissionDenied);
                return Err(if write_side {
                    FailureKind::Local(e.to_string())
                } else {
                    FailureKind::Network(format!("transfer interrupted: {e}"))
                });
            }
        }
        let gz_digest = hex(&writer.hasher.finalize());
        temp.as_file_mut()
            .flush()
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| FailureKind::Local(e.to_string()))?;

        if !file.gz_sha256.contains(&gz_digest.as_str()) {
            let content = File::open(temp.path()).and_then(|f| content_digest(BufReader::new(f))).ok();
            if file.content_sha256.is_none() || content.as_deref() != file.content_sha256 {
                bar.abandon_with_message(format!("{}: checksum mismatch", file.name));
                return Err(mismatch(file, gz_digest, content));
            }
        }
        temp.persist(target).map_err(|e| FailureKind::Local(format!("{}: {}", target.display(), e.error)))?;
        bar.finish();
        Ok(())
    }

    /// Whether the file at `path` has the expected content: `Ok(Ok(()))` if so,
    /// `Ok(Err(kind))` with the mismatch if not, `Err` if it cannot be read.
    fn verify(path: &Path, file: &ExpectedFile<'_>) -> io::Result<Result<(), FailureKind>> {
        let mut hasher = Sha256::new();
        io::copy(&mut BufReader::new(File::open(path)?), &mut hasher)?;
        let gz_digest = hex(&hasher.finalize());
        if file.gz_sha256.contains(&gz_digest.as_str()) {
            return Ok(Ok(()));
        }
        let content = content_digest(BufReader::new(File::open(path)?)).ok();
        if file.content_sha256.is_some() && content.as_deref() == file.content_sha256 {
            Ok(Ok(()))
        } else {
            Ok(Err(mismatch(file, gz_digest, content)))
        }
    }

    /// The checksum failure of a copy whose gzip bytes hash to `got` and whose content (if
    /// it decompressed) to `got_decompressed`: expected is the content digest when known,
    /// else the gzip digests (all a data set publishes, e.g. Fashion-MNIST's).
    fn mismatch(file: &ExpectedFile<'_>, got: String, got_decompressed: Option<String>) -> FailureKind {
        let (expected, of_content) = match file.content_sha256 {
            Some(d) => (d.to_string(), true),
            None => (file.gz_sha256.join(" or "), false),
        };
        FailureKind::Checksum { got, got_decompressed, expected, of_content }
    }

    /// SHA-256 of the decompressed content of a gzip stream.
    fn content_digest(reader: impl Read) -> io::Result<String> {
        let mut hasher = Sha256::new();
        io::copy(&mut MultiGzDecoder::new(reader), &mut hasher)?;
        Ok(hex(&hasher.finalize()))
    }

    /// SHA-256 (lowercase hex) of `bytes`; handy for building [`ExpectedFile`]s in tests.
    pub fn sha256_hex(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    fn hex(bytes: &[u8]) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Writes through to a file while hashing what passes.
    struct HashingWriter<'a> {
        inner: &'a mut File,
        hasher: Sha256,
    }

    impl Write for HashingWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::download::MNIST_FILES;

        #[test]
        fn hex_and_known_digest() {
            assert_eq!(
                sha256_hex(b"abc"),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            );
        }

        #[test]
        fn embedded_digests_are_well_formed() {
            for f in MNIST_FILES {
                for d in f.gz_sha256.iter().chain(f.content_sha256.as_ref()) {
                    assert_eq!(d.len(), 64, "{}", f.name);
                    assert!(d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                }
            }
        }

        #[test]
        fn loopback_urls_skip_the_proxy() {
            let a = Agents::new();
            assert!(std::ptr::eq(a.for_url("http://127.0.0.1:9/x"), &a.direct));
            assert!(std::ptr::eq(a.for_url("http://localhost:80/x"), &a.direct));
            assert!(std::ptr::eq(a.for_url("https://storage.googleapis.com/x"), &a.default));
        }
    }
}

#[cfg(all(test, not(feature = "download")))]
mod tests_without_download {
    use super::*;

    #[test]
    fn download_is_a_clear_error_without_the_feature() {
        let dir = std::env::temp_dir().join("mlp-no-download-feature");
        let e = download_mnist(&dir, MNIST_MIRRORS, false).unwrap_err();
        assert!(e.to_string().contains("feature `download`"), "{e}");
    }
}
