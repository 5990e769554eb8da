//! Downloads against HTTP servers on 127.0.0.1 that the tests start themselves: good files,
//! corrupt files, server errors, refused connections, cut transfers; and the folder
//! resolution order (--data, MNIST_DIR, ./data/mnist, download).
#![cfg(feature = "download")]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use data::catalog::{self, IdxDataSet, FASHION_MNIST, KMNIST, MNIST};
use data::download::{
    download_files, download_mnist, resolve_dir_with, resolve_mnist_dir_with, sha256_hex, ExpectedFile,
    MNIST_FILES,
};
use data::idx::encode_u8;
use data::{Error, FailureKind};
use flate2::{write::GzEncoder, Compression};

/// What the test server answers for a path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// This status and a short body.
    Status(u16),
    /// 200 declaring the full length but closing after `sent` bytes.
    Cut { body: Vec<u8>, sent: usize },
}

/// A minimal HTTP/1.1 server on 127.0.0.1 with a fixed route table. It stops when dropped
/// and in any case after 60 s or 200 connections, so it can never outlive its test.
struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(routes: HashMap<String, Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline && served < 200 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = handle(stream, &routes);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { addr, hits, stop, thread: Some(thread) }
    }

    /// This server as a mirror URL.
    fn url(&self) -> String {
        format!("http://{}/mnist/", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(mut stream: TcpStream, routes: &HashMap<String, Reply>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let head = |status: u16, len: usize| {
        format!("HTTP/1.1 {status} X\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match routes.get(&path) {
        Some(Reply::Body(body)) => {
            stream.write_all(head(200, body.len()).as_bytes())?;
            stream.write_all(body)?;
        }
        Some(Reply::Status(code)) => {
            stream.write_all(head(*code, 5).as_bytes())?;
            stream.write_all(b"error")?;
        }
        Some(Reply::Cut { body, sent }) => {
            stream.write_all(head(200, body.len()).as_bytes())?;
            stream.write_all(&body[..*sent])?;
        }
        None => {
            stream.write_all(head(404, 9).as_bytes())?;
            stream.write_all(b"not found")?;
        }
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

fn gz(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A small synthetic file: its IDX content, its gzip bytes, and digests of both.
struct Synthetic {
    name: String,
    content: Vec<u8>,
    gz: Vec<u8>,
    content_sha: String,
    gz_sha: String,
}

fn synthetic(name: &str, n: u32) -> Synthetic {
    let content = if name.contains("labels") {
        encode_u8(&[n], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>())
    } else {
        encode_u8(&[n, 4, 4], &(0..n * 16).map(|i| (i * 7) as u8).collect::<Vec<_>>())
    };
    let gz = gz(&content, 6);
    Synthetic {
        name: name.to_string(),
        content_sha: sha256_hex(&content),
        gz_sha: sha256_hex(&gz),
        content,
        gz,
    }
}

/// The expected-file entry for a synthetic file (digests borrowed from it).
fn expected<'a>(s: &'a Synthetic, gz_list: &'a [&'a str]) -> ExpectedFile<'a> {
    ExpectedFile {
        name: &s.name,
        content_sha256: Some(&s.content_sha),
        gz_sha256: gz_list,
        max_bytes: 1 << 20,
    }
}

fn route(s: &Synthetic, reply: Reply) -> (String, Reply) {
    (format!("/mnist/{}", s.name), reply)
}

/// Names of everything in `dir`, sorted (to prove no temporary file was left behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
fn refused_mirror() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/mnist/")
}

#[test]
fn good_file_is_verified_and_stored_atomically() {
    let s = synthetic("train-labels-idx1-ubyte.gz", 50);
    let server = Server::start([route(&s, Reply::Body(s.gz.clone()))].into());
    let dir = tempfile::tempdir().unwrap();
    let gz_list = [s.gz_sha.as_str()];
    download_files(dir.path(), &[&server.url()], &[expected(&s, &gz_list)], false).unwrap();
    assert_eq!(fs::read(dir.path().join(&s.name)).unwrap(), s.gz);
    assert_eq!(listing(dir.path()), vec![s.name.clone()]);
}

#[test]
fn recompressed_copy_is_accepted_by_its_content_digest() {
    let s = synthetic("t10k-images-idx3-ubyte.gz", 30);
    let other = gz(&s.content, 1); // different gzip bytes, same content
    assert_ne!(sha256_hex(&other), s.gz_sha);
    let server = Server::start([route(&s, Reply::Body(other.clone()))].into());
    let dir = tempfile::tempdir().unwrap();
    let gz_list = [s.gz_sha.as_str()];
    download_files(dir.path(), &[&server.url()], &[expected(&s, &gz_list)], false).unwrap();
    assert_eq!(fs::read(dir.path().join(&s.name)).unwrap(), other);
}

#[test]
fn corrupt_file_is_rejected_and_nothing_is_left() {
    let s = synthetic("train-images-idx3-ubyte.gz", 20);
    let mut corrupt = s.content.clone();
    corrupt[30] ^= 1;
    let server = Server::start([route(&s, Reply::Body(gz(&corrupt, 6)))].into());
    let dir = tempfile::tempdir().unwrap();
    let gz_list = [s.gz_sha.as_str()];
    let e = download_files(dir.path(), &[&server.url()], &[expected(&s, &gz_list)], false).unwrap_err();
    match &e {
        Error::Download { failures, .. } => {
            assert_eq!(failures.len(), 1);
            match &failures[0].kind {
                FailureKind::Checksum { got_decompressed, expected, .. } => {
                    assert_eq!(got_decompressed.as_deref(), Some(sha256_hex(&corrupt).as_str()));
                    assert_eq!(expected, &s.content_sha);
                }
                other => panic!("wrong failure: {other}"),
            }
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("SHA-256 mismatch") && msg.contains(&server.url()), "{msg}");
    assert!(!dir.path().join(&s.name).exists());
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    // Not gzip at all (an HTML error page served with status 200).
    let server = Server::start([route(&s, Reply::Body(b"<html>moved</html>".to_vec()))].into());
    let e = download_files(dir.path(), &[&server.url()], &[expected(&s, &gz_list)], false).unwrap_err();
    assert!(e.to_string().contains("not valid gzip"), "{e}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn server_error_falls_through_to_the_next_mirror() {
    let s = synthetic("t10k-labels-idx1-ubyte.gz", 10);
    let broken = Server::start([route(&s, Reply::Status(500))].into());
    let corrupt = Server::start([route(&s, Reply::Body(gz(b"nope", 6)))].into());
    let good = Server::start([route(&s, Reply::Body(s.gz.clone()))].into());
    let dir = tempfile::tempdir().unwrap();
    let gz_list = [s.gz_sha.as_str()];
    let mirrors = [broken.url(), corrupt.url(), good.url()];
    let mirrors: Vec<&str> = mirrors.iter().map(String::as_str).collect();
    download_files(dir.path(), &mirrors, &[expected(&s, &gz_list)], false).unwrap();
    assert_eq!(fs::read(dir.path().join(&s.name)).unwrap(), s.gz);
    assert_eq!((broken.hits(), corrupt.hits(), good.hits()), (1, 1, 1));
}

#[test]
fn all_mirrors_failing_lists_each_failure() {
    let s = synthetic("train-labels-idx1-ubyte.gz", 10);
    let e500 = Server::start([route(&s, Reply::Status(500))].into());
    let e404 = Server::start(HashMap::new());
    let refused = refused_mirror();
    let mirrors = [e500.url(), e404.url(), refused.clone()];
    let mirrors: Vec<&str> = mirrors.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let gz_list = [s.gz_sha.as_str()];
    let e = download_files(dir.path(), &mirrors, &[expected(&s, &gz_list)], false).unwrap_err();
    let Error::Download { failures, .. } = &e else { panic!("wrong error: {e}") };
    let kinds: Vec<&FailureKind> = failures.iter().map(|f| &f.kind).collect();
    assert_eq!(kinds[0], &FailureKind::Status(500));
    assert_eq!(kinds[1], &FailureKind::Status(404));
    assert!(matches!(kinds[2], FailureKind::Network(_)), "{}", kinds[2]);
    assert_eq!(failures[2].url, format!("{refused}{}", s.name));
    let msg = e.to_string();
    for m in &mirrors {
        assert!(msg.contains(m), "{msg}");
    }
    assert!(msg.contains("HTTP status 500") && msg.contains("HTTP status 404"), "{msg}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn connection_refused_alone() {
    let s = synthetic("train-labels-idx1-ubyte.gz", 10);
    let dir = tempfile::tempdir().unwrap();
    let gz_list = [s.gz_sha.as_str()];
    let e = download_files(dir.path(), &[&refused_mirror()], &[expected(&s, &gz_list)], false).unwrap_err();
    assert!(
        matches!(&e, Error::Download { failures, .. } if matches!(failures[0].kind, FailureKind::Network(_))),
        "{e}"
    );
    let e = download_files(dir.path(), &[], &[expected(&s, &gz_list)], false).unwrap_err();
    assert!(e.to_string().contains("no mirror"), "{e}");
}

#[test]
fn cut_transfer_and_oversized_response() {
    let s = synthetic("train-images-idx3-ubyte.gz", 200);
    let cut = Server::start([route(&s, Reply::Cut { body: s.gz.clone(), sent: s.gz.len() / 2 })].into());
    let dir = tempfile::tempdir().unwrap();
    let gz_list = [s.gz_sha.as_str()];
    let e = download_files(dir.path(), &[&cut.url()], &[expected(&s, &gz_list)], false).unwrap_err();
    let Error::Download { failures, .. } = &e else { panic!("wrong error: {e}") };
    assert!(matches!(failures[0].kind, FailureKind::Network(_)), "{e}");
    assert!(listing(dir.path()).is_empty());

    let whole = Server::start([route(&s, Reply::Body(s.gz.clone()))].into());
    let small = ExpectedFile { max_bytes: 100, ..expected(&s, &gz_list) };
    let e = download_files(dir.path(), &[&whole.url()], &[small], false).unwrap_err();
    let Error::Download { failures, .. } = &e else { panic!("wrong error: {e}") };
    assert_eq!(failures[0].kind, FailureKind::TooLarge(100));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn present_files_are_kept_and_corrupt_ones_replaced() {
    let s = synthetic("t10k-labels-idx1-ubyte.gz", 10);
    let server = Server::start([route(&s, Reply::Body(s.gz.clone()))].into());
    let dir = tempfile::tempdir().unwrap();
    let gz_list = [s.gz_sha.as_str()];
    let files = [expected(&s, &gz_list)];
    fs::write(dir.path().join(&s.name), &s.gz).unwrap();
    download_files(dir.path(), &[&server.url()], &files, false).unwrap();
    assert_eq!(server.hits(), 0, "a verified file is not downloaded again");
    fs::write(dir.path().join(&s.name), b"junk").unwrap();
    download_files(dir.path(), &[&server.url()], &files, false).unwrap();
    assert_eq!(server.hits(), 1);
    assert_eq!(fs::read(dir.path().join(&s.name)).unwrap(), s.gz);
}

/// Four synthetic MNIST-named files, valid IDX, for the resolution tests.
fn synthetic_mnist() -> Vec<Synthetic> {
    MNIST_FILES.iter().map(|f| synthetic(f.name, 12)).collect()
}

#[test]
fn resolution_order_data_then_env_then_default_then_download() {
    let files = synthetic_mnist();
    let gz_lists: Vec<[&str; 1]> = files.iter().map(|s| [s.gz_sha.as_str()]).collect();
    let expected_files: Vec<ExpectedFile<'_>> =
        files.iter().zip(&gz_lists).map(|(s, g)| expected(s, g)).collect();
    let server = Server::start(files.iter().map(|s| route(s, Reply::Body(s.gz.clone()))).collect());
    let url = server.url();
    let mirrors = [url.as_str()];
    let root = tempfile::tempdir().unwrap();
    let full = root.path().join("full");
    fs::create_dir(&full).unwrap();
    for s in &files {
        fs::write(full.join(&s.name), &s.gz).unwrap();
    }
    let empty = root.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let default_dir = root.path().join("data/mnist");
    let resolve = |explicit: Option<&Path>, env: Option<PathBuf>| {
        resolve_mnist_dir_with(explicit, env, &default_dir, &mirrors, &expected_files, false)
    };

    // --data wins over MNIST_DIR; a --data or MNIST_DIR folder without files is an error.
    assert_eq!(resolve(Some(&full), Some(empty.clone())).unwrap(), full);
    let e = resolve(Some(&empty), Some(full.clone())).unwrap_err();
    assert!(matches!(e, Error::MissingFiles { .. }) && e.to_string().contains("--data"), "{e}");
    assert_eq!(resolve(None, Some(full.clone())).unwrap(), full);
    let e = resolve(None, Some(empty.clone())).unwrap_err();
    assert!(e.to_string().contains("MNIST_DIR"), "{e}");
    assert_eq!(server.hits(), 0);

    // Neither: download into the default folder, then find it there without downloading.
    assert_eq!(resolve(None, None).unwrap(), default_dir);
    assert_eq!(server.hits(), 4);
    let (train, test) = data::idx::load_mnist(&default_dir).unwrap();
    assert_eq!((train.len(), test.len(), train.input_len()), (12, 12, 16));
    assert_eq!(resolve(None, Some(PathBuf::new())).unwrap(), default_dir);
    assert_eq!(server.hits(), 4);
}

/// The real files through the real digests, served from this machine:
/// `MNIST_DIR=../shared/data/mnist cargo test -p data -- --ignored`.
#[test]
#[ignore = "needs MNIST_DIR (e.g. MNIST_DIR=../shared/data/mnist)"]
fn real_mnist_files_pass_the_embedded_digests() {
    let src = std::env::var_os("MNIST_DIR")
        .map(PathBuf::from)
        .expect("MNIST_DIR must name the folder with the four MNIST .gz files");
    let routes: HashMap<String, Reply> = MNIST_FILES
        .iter()
        .map(|f| {
            let bytes =
                fs::read(src.join(f.name)).unwrap_or_else(|e| panic!("{}: {e}", src.join(f.name).display()));
            (format!("/mnist/{}", f.name), Reply::Body(bytes))
        })
        .collect();
    let server = Server::start(routes);
    let dir = tempfile::tempdir().unwrap();
    download_mnist(dir.path(), &[&refused_mirror(), &server.url()], false).unwrap();
    assert_eq!(server.hits(), 4);
    let (train, test) = data::idx::load_mnist(dir.path()).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.labels()[0], 5);

    // Without the gzip digests, each file must pass on its decompressed content alone (as
    // a copy from a public mirror, compressed differently, does).
    let by_content: Vec<ExpectedFile<'_>> =
        MNIST_FILES.iter().map(|f| ExpectedFile { gz_sha256: &[], ..*f }).collect();
    let dir2 = tempfile::tempdir().unwrap();
    download_files(dir2.path(), &[&server.url()], &by_content, false).unwrap();
    assert_eq!(server.hits(), 8);
}

/// A synthetic file known only by its gzip digest, as Fashion-MNIST's and KMNIST's are.
fn gz_only<'a>(s: &'a Synthetic, gz_list: &'a [&'a str]) -> ExpectedFile<'a> {
    ExpectedFile { content_sha256: None, ..expected(s, gz_list) }
}

#[test]
fn gz_only_file_goes_past_failing_corrupt_and_cut_mirrors_to_the_good_one() {
    let s = synthetic("train-images-idx3-ubyte.gz", 20);
    let gz_list = [s.gz_sha.as_str()];
    let failing = Server::start([route(&s, Reply::Status(503))].into());
    let mut flipped = s.gz.clone();
    flipped[12] ^= 0x40;
    let corrupt = Server::start([route(&s, Reply::Body(flipped))].into());
    // Same content, other gzip bytes: without a published content digest it is refused.
    let recompressed = Server::start([route(&s, Reply::Body(gz(&s.content, 1)))].into());
    let cut = Server::start([route(&s, Reply::Cut { body: s.gz.clone(), sent: s.gz.len() / 2 })].into());
    let good = Server::start([route(&s, Reply::Body(s.gz.clone()))].into());
    let bad_mirrors = [failing.url(), corrupt.url(), recompressed.url(), cut.url()];
    let dir = tempfile::tempdir().unwrap();

    let urls: Vec<&str> = bad_mirrors.iter().map(String::as_str).collect();
    let e = download_files(dir.path(), &urls, &[gz_only(&s, &gz_list)], false).unwrap_err();
    let Error::Download { failures, .. } = &e else { panic!("wrong error: {e}") };
    assert_eq!(failures.len(), 4, "{e}");
    assert_eq!(failures[0].kind, FailureKind::Status(503));
    for f in &failures[1..3] {
        let FailureKind::Checksum { expected, of_content, .. } = &f.kind else { panic!("{e}") };
        assert_eq!((expected.as_str(), *of_content), (s.gz_sha.as_str(), false));
    }
    assert!(matches!(failures[3].kind, FailureKind::Network(_)), "{e}");
    assert!(e.to_string().contains(&format!("expected file {}", s.gz_sha)), "{e}");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    let mut urls = urls;
    let good_url = good.url();
    urls.push(&good_url);
    download_files(dir.path(), &urls, &[gz_only(&s, &gz_list)], false).unwrap();
    assert_eq!(fs::read(dir.path().join(&s.name)).unwrap(), s.gz);
    assert_eq!(listing(dir.path()), vec![s.name.clone()]);
    assert_eq!(
        [failing.hits(), corrupt.hits(), recompressed.hits(), cut.hits(), good.hits()],
        [2, 2, 2, 2, 1]
    );
}

#[test]
fn fashion_mnist_downloads_into_its_folder_with_its_names() {
    let files: Vec<Synthetic> = FASHION_MNIST.files.iter().map(|f| synthetic(f.name, 12)).collect();
    let gz_lists: Vec<[&str; 1]> = files.iter().map(|s| [s.gz_sha.as_str()]).collect();
    let expected_files: Vec<ExpectedFile<'_>> =
        files.iter().zip(&gz_lists).map(|(s, g)| gz_only(s, g)).collect();
    let server = Server::start(files.iter().map(|s| route(s, Reply::Body(s.gz.clone()))).collect());
    let url = server.url();
    let mirrors = [url.as_str()];
    let set = IdxDataSet { mirrors: &mirrors, files: &expected_files, ..FASHION_MNIST };
    let root = tempfile::tempdir().unwrap();
    let default_dir = root.path().join(FASHION_MNIST.default_dir);

    // A folder variable naming an empty folder is an error that names the variable and the
    // command that fetches this data set.
    let e = resolve_dir_with(&set, None, Some(root.path().to_path_buf()), &default_dir, false).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("FASHION_MNIST_DIR") && msg.contains("Fashion-MNIST IDX files"), "{msg}");
    assert!(msg.contains("host download --dataset fashion-mnist --dir"), "{msg}");
    assert_eq!(server.hits(), 0);

    assert_eq!(resolve_dir_with(&set, None, None, &default_dir, false).unwrap(), default_dir);
    assert_eq!(server.hits(), 4);
    let (train, test) = set.load(&default_dir).unwrap();
    assert_eq!((train.name(), test.name(), train.len()), ("fashion-mnist train", "fashion-mnist test", 12));
    let names = train.class_names().unwrap();
    assert_eq!((names[0].as_str(), names[9].as_str()), ("T-shirt/top", "Ankle boot"));
    assert_eq!(test.class_names(), train.class_names());
    // The same folder read as MNIST: named after the folder, no class names (as before).
    let (mnist_train, _) = MNIST.load(&default_dir).unwrap();
    assert_eq!((mnist_train.name(), mnist_train.class_names()), ("fashion-mnist train", None));
}

#[test]
fn data_sets_are_found_by_name_and_an_unknown_name_lists_them() {
    assert_eq!(catalog::find("fashion-mnist").unwrap().title, "Fashion-MNIST");
    assert_eq!(catalog::find(" KMNIST ").unwrap().dir_var, "KMNIST_DIR");
    assert_eq!(*catalog::find("mnist").unwrap(), MNIST);
    let e = catalog::find("cifar10").unwrap_err().to_string();
    assert!(e.contains("unknown data set 'cifar10'") && e.contains("mnist, fashion-mnist, kmnist"), "{e}");
    assert_eq!(MNIST.download_command(), "host download");
    assert_eq!(KMNIST.download_command(), "host download --dataset kmnist");
}

#[test]
fn every_data_set_has_the_four_files_with_well_formed_digests() {
    for set in catalog::DATA_SETS {
        let names: Vec<&str> = set.files.iter().map(|f| f.name).collect();
        let mnist_names: Vec<&str> = MNIST_FILES.iter().map(|f| f.name).collect();
        assert_eq!(names, mnist_names, "{}", set.name);
        for f in set.files {
            assert!(!f.gz_sha256.is_empty() || f.content_sha256.is_some(), "{} {}", set.name, f.name);
            for d in f.gz_sha256.iter().chain(f.content_sha256.as_ref()) {
                assert_eq!(d.len(), 64, "{} {}", set.name, f.name);
                assert!(d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
        }
        assert!(set.class_names.is_none_or(|n| n.len() == 10), "{}", set.name);
        assert!(!set.mirrors.is_empty(), "{}", set.name);
    }
}
