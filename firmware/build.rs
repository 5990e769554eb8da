//! Puts memory.x on the linker path and fails early, with the command to run, when the
//! files `host export` generates are missing (they derive from MNIST and are never committed).

use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");

    let f32_model = std::env::var_os("CARGO_FEATURE_F32").is_some();
    let train = std::env::var_os("CARGO_FEATURE_TRAIN").is_some();
    let (model, images, export) = if f32_model {
        (
            "generated/model_f32.rs",
            "generated/model_f32_images.rs",
            "cargo run --release -p host -- export model.mlp --format rust --dtype f32 \
             --out firmware/generated/model_f32.rs --images 100",
        )
    } else {
        (
            "generated/model.rs",
            "generated/model_images.rs",
            "cargo run --release -p host -- export model.mlp --format rust \
             --out firmware/generated/model.rs --images 100 --train-images 300",
        )
    };
    for file in [model, images] {
        println!("cargo:rerun-if-changed={file}");
        if !Path::new(file).is_file() {
            eprintln!(
                "\nerror: firmware/{file} is missing. It is generated from a trained model (and MNIST),\n\
                 so it is not in the repository. From the repository root, run:\n\n    {export}\n\n\
                 (after `cargo run --release -p host -- train --recipe tutorial` if there is no model.mlp).\n"
            );
            std::process::exit(1);
        }
    }
    if train && f32_model {
        eprintln!("\nerror: the features `train` and `f32` are separate programs: enable one of them\n");
        std::process::exit(1);
    }
}
