//! Builds the CPU emulator of the CUDA kernels: emu/launch.cpp, which compiles src/kernels.cu
//! unmodified as C++17 against emu/cuda_emu.h (the emulated backend's tests run the kernels
//! through it; see src/emulator/kernels.rs). Needs only a C++17 compiler (the `cc` crate's
//! default, g++ here), never CUDA.
//!
//! Flags: -ffp-contract=off (NVRTC compiles the kernels with --fmad=false, so a*b+c rounds
//! twice there too), -pthread, and -O2 even in debug builds so the tests stay fast.
//!
//! Sanitizers: `MLP_GPU_EMU_SANITIZE=address` or `=thread` instruments the emulator (and so
//! the kernels) with ASan or TSan and links the runtime into the binaries (as their first
//! needed library; the Rust code itself is not instrumented). Preloading the runtime through
//! cargo's runner keeps that true for any test binary without touching cargo itself (with a
//! plain `LD_PRELOAD=...`, LeakSanitizer would report cargo's own leaks and fail the run).
//! A separate target directory keeps the plain build from being rebuilt each time. From the
//! workspace root, with GCC (`asan` and `tsan` are GCC's runtime libraries):
//!
//! ```text
//! MLP_GPU_EMU_SANITIZE=address MLP_GPU_EMU_THREADS=all CARGO_TARGET_DIR=target/emu-sanitize \
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env LD_PRELOAD=$(g++ -print-file-name=libasan.so)" \
//!   cargo test -p gpu --lib emulator
//!
//! MLP_GPU_EMU_SANITIZE=thread MLP_GPU_EMU_THREADS=all CARGO_TARGET_DIR=target/emu-sanitize \
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env LD_PRELOAD=$(g++ -print-file-name=libtsan.so)" \
//!   cargo test -p gpu --lib emulator
//! ```
//!
//! A report stops the test process with a non-zero status (ASan: 1, TSan: 66), so the run
//! fails. launch.cpp sets the defaults: ASan `halt_on_error=1` (leak detection stays on);
//! TSan `halt_on_error=1:ignore_interceptors_accesses=1` (the uninstrumented Rust standard
//! library otherwise shows races inside its own channels and Arcs); ASAN_OPTIONS and
//! TSAN_OPTIONS override them. The sanitizer builds run kernels with barriers on OS threads
//! (the plain build: as fibers, much faster); MLP_GPU_EMU_THREADS=all runs the other kernels
//! on OS threads too, instead of as a loop (MLP_GPU_EMU_THREADS=threads: OS threads for the
//! kernels with barriers only, also in the plain build).
//!
//! `MLP_GPU_EMU_KERNELS=/path/to/scratch/kernels.cu` compiles that file instead of
//! src/kernels.cu (with a warning on every build), e.g. to check that a planted bug is
//! reported: a loop bound `r <= batch` in bn_train (ASan: heap-buffer-overflow), a removed
//! `__syncthreads()` in sum_squares (TSan: data race on `sum_squares::sh`).

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=emu/launch.cpp");
    println!("cargo:rerun-if-changed=emu/cuda_emu.h");
    println!("cargo:rerun-if-changed=src/kernels.cu");
    println!("cargo:rerun-if-env-changed=MLP_GPU_EMU_SANITIZE");
    println!("cargo:rerun-if-env-changed=MLP_GPU_EMU_KERNELS");

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("emu/launch.cpp")
        .std("c++17")
        .flag("-ffp-contract=off")
        .flag("-pthread")
        .opt_level(2);
    match env::var("MLP_GPU_EMU_SANITIZE").as_deref() {
        Err(_) | Ok("") => {}
        Ok(s @ ("address" | "thread")) => {
            build.flag(format!("-fsanitize={s}")).flag("-fno-omit-frame-pointer").flag("-g");
            let runtime = if s == "address" { "asan" } else { "tsan" };
            println!("cargo:rustc-link-lib=dylib={runtime}");
        }
        Ok(other) => panic!("MLP_GPU_EMU_SANITIZE is {other:?}; it must be unset, `address` or `thread`"),
    }
    if let Some(path) = env::var_os("MLP_GPU_EMU_KERNELS").filter(|p| !p.is_empty()) {
        let path = std::path::absolute(&path).expect("MLP_GPU_EMU_KERNELS: not a usable path");
        let text = path.to_str().filter(|t| !t.contains(['"', '\\']));
        let text = text.expect("MLP_GPU_EMU_KERNELS: the path must be UTF-8 without quotes or backslashes");
        assert!(path.is_file(), "MLP_GPU_EMU_KERNELS: {text} is not a file");
        println!("cargo:rerun-if-changed={text}");
        println!(
            "cargo:warning=the CPU emulator compiles {text} instead of src/kernels.cu (MLP_GPU_EMU_KERNELS)"
        );
        build.define("MLP_GPU_EMU_KERNELS", format!("\"{text}\"").as_str());
    }
    build.compile("mlp_gpu_emu");
}
