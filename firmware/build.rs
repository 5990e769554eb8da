//! Picks the core (`MLP_CORE`: m0, m3, m4, m7, m33 or m55; by default the one the target
//! implies), puts its memory map (`memory/<core>.x`) on the linker path, tells the code which
//! core it is built for (`cfg(mlp_core = "..")`, `cfg(mlp_dsp)` where the core has the DSP
//! extension), and fails early, with the command to run, when the files `host export`
//! generates are missing (they derive from MNIST and are never committed).

use std::path::{Path, PathBuf};

/// Core, the Rust target it needs, whether it has the DSP extension (SMLAD), the folder of
/// its generated files. The micro:bit's 256 KiB of flash holds the model with 30 test images
/// (`generated/m0/`), the others take the 100 of `generated/`.
const CORES: [(&str, &str, bool, &str); 6] = [
    ("m0", "thumbv6m-none-eabi", false, "generated/m0"),
    ("m3", "thumbv7m-none-eabi", false, "generated"),
    ("m4", "thumbv7em-none-eabihf", true, "generated"),
    ("m7", "thumbv7em-none-eabihf", true, "generated"),
    ("m33", "thumbv8m.main-none-eabihf", true, "generated"),
    ("m55", "thumbv8m.main-none-eabihf", true, "generated"),
];

fn fail(message: &str) -> ! {
    eprintln!("\nerror: {message}\n");
    std::process::exit(1);
}

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rerun-if-env-changed=MLP_CORE");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(mlp_dsp)");
    println!(
        "cargo::rustc-check-cfg=cfg(mlp_core, values(\"m0\", \"m3\", \"m4\", \"m7\", \"m33\", \"m55\"))"
    );
    let core = match std::env::var("MLP_CORE") {
        Ok(c) if !c.is_empty() => c,
        _ => CORES.iter().find(|c| c.1 == target).map_or("m4", |c| c.0).to_string(),
    };
    let Some(&(core, core_target, dsp, dir)) = CORES.iter().find(|c| c.0 == core) else {
        fail(&format!("MLP_CORE={core} is not a core this firmware knows: m0, m3, m4, m7, m33 or m55"));
    };
    if core_target != target {
        fail(&format!(
            "MLP_CORE={core} needs --target {core_target}, not {target} (scripts/firmware-check.sh \
             shows the pairs)"
        ));
    }
    let memory = format!("memory/{core}.x");
    std::fs::copy(&memory, out.join("memory.x")).expect("copy memory/<core>.x to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    // The lean build's interrupt table is its own (src/lean.rs): cortex-m-rt's `device`
    // feature includes a device.x of handler names, which it does not need.
    if std::env::var_os("CARGO_FEATURE_LEAN").is_some() {
        std::fs::write(out.join("device.x"), "/* the lean build names no device interrupts */\n")
            .expect("write device.x to OUT_DIR");
    }
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rustc-cfg=mlp_core=\"{core}\"");
    if dsp {
        println!("cargo:rustc-cfg=mlp_dsp");
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-env=MLP_GENERATED={manifest}/{dir}");

    let f32_model = std::env::var_os("CARGO_FEATURE_F32").is_some();
    let train = std::env::var_os("CARGO_FEATURE_TRAIN").is_some();
    let (model, images, export) = if f32_model {
        (
            "model_f32.rs",
            "model_f32_images.rs",
            "cargo run --release -p host -- export model.mlp --format rust --dtype f32 \
             --out firmware/generated/model_f32.rs --images 100"
                .to_string(),
        )
    } else {
        let flags =
            if dir == "generated" { "--images 100 --train-images 300" } else { "--images 30 --flash 256K" };
        (
            "model.rs",
            "model_images.rs",
            format!("cargo run --release -p host -- export model.mlp --format rust --out firmware/{dir}/model.rs {flags}"),
        )
    };
    for file in [model, images] {
        let file = format!("{dir}/{file}");
        println!("cargo:rerun-if-changed={file}");
        if !Path::new(&file).is_file() {
            fail(&format!(
                "firmware/{file} is missing. It is generated from a trained model (and MNIST),\n\
                 so it is not in the repository. From the repository root, run:\n\n    {export}\n\n\
                 (after `cargo run --release -p host -- train --recipe tutorial` if there is no model.mlp)."
            ));
        }
    }
    if train && f32_model {
        fail("the features `train` and `f32` are separate programs: enable one of them");
    }
    if (train || f32_model) && core != "m4" {
        fail("the f32 and train builds run on the Cortex-M4 (MLP_CORE=m4); the other cores run the int8 builds");
    }
}
