//! Proves that integer inference uses no floating point: builds core for Cortex-M0
//! (`thumbv6m-none-eabi`, no FPU: every float operation is a call to a soft-float routine)
//! and Cortex-M4F (`thumbv7em-none-eabihf`: float operations are VFP instructions), emits
//! assembly, and walks the call graph from the integer entry points (`int8::forward`, the
//! fixed-point primitives, the portable int8 kernel, `Int8Model::quantize_u8` / `forward` /
//! `predict`). No reachable function may call `__aeabi_f*`, `__aeabi_d*`, `__aeabi_*2f`,
//! `__*sf*`/`__*df*` helpers (thumbv6m) or execute a VFP instruction (thumbv7em).
//!
//! Needs the two targets (`rustup target add thumbv6m-none-eabi thumbv7em-none-eabihf`), so
//! it is ignored by default; CI installs them and runs
//! `cargo test -p mlp-tests --test int8_float_free -- --ignored`. Equivalent by hand:
//! `cargo rustc -p mlp --release --target thumbv6m-none-eabi -- --emit asm` and reading the
//! `mlp::int8` functions in `target/thumbv6m-none-eabi/release/deps/mlp-*.s`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

fn emit_asm(target: &str) -> String {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = manifest.join("../target/int8-float-free");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&manifest)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["rustc", "-p", "mlp", "--lib", "--release", "--target", target, "--", "--emit", "asm"])
        .args(["-C", "debuginfo=0"])
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "building core for {target} failed; is the target installed (rustup target add {target})?"
    );
    let deps = target_dir.join(target).join("release/deps");
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(&deps).expect("deps folder") {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("mlp-") && name.ends_with(".s") {
            let t = p.metadata().unwrap().modified().unwrap();
            if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                newest = Some((t, p));
            }
        }
    }
    std::fs::read_to_string(newest.expect("an mlp-*.s file").1).unwrap()
}

/// Function label -> body lines.
fn functions(asm: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in asm.lines() {
        let is_label =
            !line.starts_with(char::is_whitespace) && line.ends_with(':') && !line.starts_with('.');
        if is_label {
            let name = line.trim_end_matches(':').to_string();
            out.entry(name.clone()).or_insert_with(Vec::new);
            current = Some(name);
        } else if let Some(c) = &current {
            out.get_mut(c).unwrap().push(line.trim().to_string());
        }
    }
    out
}

fn is_root(name: &str) -> bool {
    name.contains("4int85infer")
        || name.contains("4int85fixed")
        || name.contains("PortableInt8$u20$as$u20$mlp..int8..kernels..Int8Kernels")
        || name.contains("4int84view9Int8Model11quantize_u8")
        || name.contains("4int84view9Int8Model7forward")
        || name.contains("4int84view9Int8Model7predict")
}

fn soft_float(sym: &str) -> bool {
    let s = sym.trim_start_matches('_');
    let aeabi_float = [
        "aeabi_f",
        "aeabi_d",
        "aeabi_i2f",
        "aeabi_i2d",
        "aeabi_ui2f",
        "aeabi_ui2d",
        "aeabi_l2f",
        "aeabi_l2d",
        "aeabi_ul2f",
        "aeabi_ul2d",
    ];
    aeabi_float.iter().any(|p| s.starts_with(p))
        || ["sf2", "sf3", "df2", "df3", "sfsi", "dfsi", "sfdi", "dfdi", "sisf", "sidf", "disf", "didf"]
            .iter()
            .any(|p| s.contains(p))
        || ["expf", "logf", "tanhf", "erff", "sqrtf", "round", "frexp", "fabs"].contains(&s)
}

/// The call targets of one line (`bl sym`, `b sym`, `blx sym`, a literal-pool `.long sym`).
fn callee(line: &str) -> Option<&str> {
    let mut it = line.split_whitespace();
    let op = it.next()?;
    let arg = it.next()?;
    let is_branch = matches!(op, "bl" | "b" | "b.w" | "blx") || op == ".long";
    let arg = arg.trim_end_matches(',');
    // Symbols only: not local labels, registers (`blx r4`) or literal numbers (`.long 1289`).
    let is_symbol = arg.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic())
        && !matches!(arg, "lr" | "sp" | "pc" | "ip")
        && !(arg.starts_with('r') && arg[1..].parse::<u8>().is_ok());
    (is_branch && is_symbol).then_some(arg)
}

fn check(target: &str, vfp: bool) {
    let asm = emit_asm(target);
    let funcs = functions(&asm);
    let roots: Vec<&String> = funcs.keys().filter(|n| is_root(n)).collect();
    assert!(
        roots.iter().any(|n| n.contains("5infer7forward")),
        "int8::forward not found in the {target} assembly"
    );
    assert!(roots.len() >= 4, "too few integer entry points found: {roots:?}");
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    let mut violations = Vec::new();
    let mut external = BTreeSet::new();
    while let Some(f) = stack.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        let Some(body) = funcs.get(&f) else {
            if soft_float(&f) {
                violations.push(format!("calls soft-float routine {f}"));
            }
            external.insert(f);
            continue;
        };
        for line in body {
            if vfp && line.starts_with('v') {
                violations.push(format!("{f}: VFP instruction `{line}`"));
            }
            if let Some(c) = callee(line) {
                stack.push(c.to_string());
            }
        }
    }
    eprintln!(
        "{target}: {} reachable functions from {} integer entry points; external: {external:?}",
        seen.len() - external.len(),
        roots.len()
    );
    assert!(
        violations.is_empty(),
        "float operations on the integer path for {target}:\n{}",
        violations.join("\n")
    );
    // The check can fail: the float side of int8 (quantization) does call soft-float routines.
    let quantize = funcs.iter().find(|(n, _)| n.contains("4int88quantize8quantize")).expect("int8::quantize");
    let has_float = quantize.1.iter().filter_map(|l| callee(l)).any(soft_float)
        || quantize.1.iter().any(|l| l.starts_with("v"));
    assert!(has_float, "the detector found no float in int8::quantize, so it proves nothing");
}

#[test]
#[ignore = "needs the thumbv6m-none-eabi and thumbv7em-none-eabihf targets (rustup target add ...); CI runs it"]
fn integer_inference_calls_no_soft_float_on_cortex_m0() {
    check("thumbv6m-none-eabi", false);
}

#[test]
#[ignore = "needs the thumbv6m-none-eabi and thumbv7em-none-eabihf targets (rustup target add ...); CI runs it"]
fn integer_inference_runs_no_vfp_instruction_on_cortex_m4f() {
    check("thumbv7em-none-eabihf", true);
}
