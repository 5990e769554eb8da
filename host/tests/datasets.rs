//! `--dataset` end to end on generated IDX folders (no real data set is read or fetched):
//! Fashion-MNIST's class names in the model file, the train line, eval and predict; the
//! data set's own folder variable; unknown names; `host download --dataset` refusing a
//! copy that does not match the published digests; and the CSV split's name.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

mod common;

use common::{host, stderr, stdout, write_idx};

const FASHION: [&str; 10] = [
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
];

/// The class names stored in a model file.
fn stored_class_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let file = mlp::format::ModelFile::parse(&bytes).unwrap();
    (0..file.class_name_count()).map(|i| file.class_name(i).unwrap().to_string()).collect()
}

#[test]
fn fashion_mnist_names_reach_the_model_file_eval_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("fashion"), 300, 100);
    let train = ["train", "--dataset", "fashion-mnist", "--data", "fashion", "--recipe", "tutorial"];
    let out = host(&[&train[..], &["--epochs", "1", "--out", "f.mlp", "--plots", "plots", "-q"]].concat(), d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("on fashion-mnist train (300 samples)"), "{}", stdout(&out));
    assert_eq!(stored_class_names(&d.join("f.mlp")), FASHION);
    for plot in ["predictions.png", "confusion.png"] {
        assert!(d.join("plots").join(plot).is_file(), "{plot}");
    }

    let out = host(&["eval", "f.mlp", "--dataset", "fashion-mnist", "--data", "fashion"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("on fashion-mnist test (100 samples)"), "{text}");
    for name in FASHION {
        assert!(text.lines().any(|l| l.trim_start().starts_with(name)), "eval lacks {name}:\n{text}");
    }

    // A 28x28 PGM of class 3's blob; predict names the classes, not their indices.
    let mut pgm = b"P5 28 28 255\n".to_vec();
    let mut img = vec![255u8; 784];
    for p in 0..60 {
        img[(3 * 70 + p + (3 * 7 + p * 13) % 20) % 784] = 0;
    }
    pgm.extend_from_slice(&img);
    std::fs::write(d.join("x.pgm"), pgm).unwrap();
    let out = host(&["predict", "f.mlp", "x.pgm"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert_eq!(FASHION.iter().filter(|n| line.contains(&format!("{n} ("))).count(), 3, "{line}");
}

#[test]
fn a_data_set_is_found_through_its_own_variable_not_mnists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(&d.join("k"), 100, 50);
    std::fs::create_dir(d.join("empty")).unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host"));
        cmd.args(["eval", "m.mlp", "--dataset", "kmnist"]).current_dir(d).env_remove("MNIST_DIR");
        cmd.env_remove("KMNIST_DIR").envs(vars.iter().copied());
        cmd.output().unwrap()
    };
    let out = host(
        &[
            "train",
            "--data",
            "k",
            "--recipe",
            "tutorial",
            "--epochs",
            "1",
            "--out",
            "m.mlp",
            "--no-plots",
            "-q",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run(&[("KMNIST_DIR", "k"), ("MNIST_DIR", "empty")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("on kmnist test (50 samples)"), "{}", stdout(&out));
    assert!(stdout(&out).lines().any(|l| l.trim_start().starts_with("tsu ")), "{}", stdout(&out));

    let out = run(&[("KMNIST_DIR", "empty"), ("MNIST_DIR", "k")]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("KMNIST_DIR") && e.contains("host download --dataset kmnist --dir empty"), "{e}");
}

#[test]
fn an_unknown_data_set_is_refused_with_the_known_names() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["train", "--dataset", "cifar10"][..],
        &["download", "--dataset", "cifar10"],
        &["eval", "m.mlp", "--dataset", "cifar10"],
    ] {
        let out = host(args, dir.path());
        assert!(!out.status.success(), "{args:?}");
        let e = stderr(&out);
        assert!(
            e.contains("unknown data set 'cifar10'") && e.contains("mnist, fashion-mnist, kmnist"),
            "{args:?}: {e}"
        );
    }
    let out = host(&["train", "--dataset", "kmnist", "--csv", "t.csv"], dir.path());
    assert!(!out.status.success() && stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

/// A server on 127.0.0.1 answering every request with 200 and `body`, for `n` requests.
fn serve_junk(body: &'static [u8], n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/fashion/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(body));
        }
    });
    url
}

#[test]
fn download_checks_fashion_mnist_against_its_published_digest() {
    let dir = tempfile::tempdir().unwrap();
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let junk = serve_junk(b"not the file", 1);
    let out = host(
        &["download", "--dataset", "fashion-mnist", "--dir", "f", "--mirror", &refused, "--mirror", &junk],
        dir.path(),
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    // The first file's digest from TensorFlow Datasets' url_checksums/fashion_mnist.txt.
    let train_images = "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84";
    assert!(e.contains(&format!("expected file {train_images}")), "{e}");
    assert!(e.contains(&refused) && e.contains(&junk), "both mirrors are reported: {e}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("f")).unwrap().collect();
    assert!(left.is_empty(), "nothing is kept: {left:?}");
}

#[test]
fn a_validation_split_of_a_csv_table_says_train_split_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = String::from("a,b,label\n");
    for i in 0..60 {
        csv += &format!("{},{},{}\n", i % 7, (i * 3) % 11, i % 2);
    }
    std::fs::write(d.join("t.csv"), csv).unwrap();
    let out =
        host(&["train", "--csv", "t.csv", "--val-split", "0.2", "--epochs", "1", "--no-plots", "-q"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("on t (train split) (38 samples"), "{text}");
    assert!(!text.contains("(train split) (train split)"), "{text}");
}
