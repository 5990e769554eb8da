//! Random byte strings and mutated valid files never panic the parser, nor parsing followed
//! by inference (int8 or f32).

use mlp::format::{self, ModelFile};
use mlp::int8::{self, Int8Model};
use mlp::{Activation, DType, InputTransform, Model, Portable, Rng};
use mlp_tests::fixtures::OUTPUT_ACTIVATIONS;
use mlp_tests::int8::*;
use proptest::prelude::*;

/// Parses `bytes`; if that works, runs inference on a fixed input. Must never panic.
fn parse_and_run(bytes: &[u8]) -> bool {
    let Ok(file) = ModelFile::parse(bytes) else { return false };
    let t = file.topology().clone();
    match file.dtype() {
        DType::Int8 => {
            let m = file.int8().expect("a parsed int8 file has an int8 view");
            let x: Vec<i8> = (0..t.input()).map(|j| (j * 31 % 256) as u8 as i8).collect();
            let (mut act, mut acc) = (vec![0i8; m.act_workspace_len(1)], vec![0i32; m.acc_workspace_len(1)]);
            let out = int8::forward(&int8::PortableInt8, &m, &x, 1, &mut act, &mut acc).unwrap();
            assert_eq!(out.len(), t.output());
            let mut raw = vec![0i8; t.input()];
            let _ = m.quantize_u8(&vec![200u8; t.input()], &mut raw);
            let mut deq = vec![0.0; out.len()];
            m.dequantize_output(out, &mut deq).unwrap();
            assert!(Int8Model::parse(bytes).is_ok());
        }
        _ => {
            let mut p = vec![0.0; t.param_len()];
            let mut r = vec![0.0; t.running_len()];
            file.read_params(&mut p).unwrap();
            file.read_running(&mut r).unwrap();
            let model = Model::new(&t, &p, &r).unwrap();
            let mut ws = vec![0.0; t.infer_workspace_len(1)];
            model.forward(&Portable, &vec![0.5; t.input()], 1, &mut ws).unwrap();
        }
    }
    true
}

fn valid_files() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(1234);
    let mut out = Vec::new();
    for (k, output) in OUTPUT_ACTIVATIONS.iter().enumerate() {
        let b = random_model(&mut rng, 3 + k, *output, k % 2 == 0);
        let x = random_inputs(&mut rng, 8 * (3 + k));
        let tf = if k % 2 == 0 {
            InputTransform::Global { scale: 0.5, offset: 0.1 }
        } else {
            InputTransform::Identity
        };
        out.push(mlp_tests::int8::quantize(&b, &x, 8, &tf));
        let mut f32_bytes = vec![0u8; format::encoded_len(&b.t, &tf)];
        format::write(&b.t, &b.params, &b.running, &tf, &mut f32_bytes).unwrap();
        out.push(f32_bytes);
    }
    let _ = Activation::Identity;
    out
}

#[test]
fn the_seed_files_parse_and_run() {
    for f in valid_files() {
        assert!(parse_and_run(&f));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        parse_and_run(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        dtype in 0u8..3,
        transform in 0u8..3,
        input in 1u32..6,
        widths in proptest::collection::vec((1u32..6, 0u8..8), 1..4),
        tail in proptest::collection::vec(any::<u8>(), 0..900),
        seal in any::<bool>(),
    ) {
        let mut b = Vec::new();
        b.extend_from_slice(b"MLPM");
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&[dtype, transform]);
        b.extend_from_slice(&input.to_le_bytes());
        b.extend_from_slice(&(widths.len() as u32).to_le_bytes());
        let mut fan_in = input;
        let mut p = 0u32;
        for &(w, act) in &widths {
            b.extend_from_slice(&w.to_le_bytes());
            b.extend_from_slice(&[act, 0, 0, 0]);
            b.extend_from_slice(&0.1f32.to_le_bytes());
            b.extend_from_slice(&0f32.to_le_bytes());
            p += w * (fan_in + 1);
            fan_in = w;
        }
        b.extend_from_slice(&p.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&tail);
        if seal && b.len() >= 4 {
            reseal(&mut b);
        }
        parse_and_run(&b);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        which in 0usize..10,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        seal in any::<bool>(),
    ) {
        thread_local!(static FILES: Vec<Vec<u8>> = valid_files());
        let mut f = FILES.with(|f| f[which % f.len()].clone());
        for (at, v) in &edits {
            let i = at.index(f.len());
            f[i] = *v;
        }
        if truncate {
            f.truncate(cut.index(f.len() + 1));
        }
        // Resealing gets mutations past the checksum, into the semantic validation.
        if seal && f.len() >= 4 {
            reseal(&mut f);
        }
        parse_and_run(&f);
    }
}

/// Writes the seed files (int8 and f32 models) for the `model` fuzz target:
/// `MLP_FUZZ_SEEDS=fuzz/corpus/model cargo test -p mlp --test int8_parse_fuzz -- --ignored`
/// (paths relative to `core/`, so `../fuzz/corpus/model` from the repository layout).
#[test]
#[ignore = "writes fuzz seeds to $MLP_FUZZ_SEEDS; run on demand"]
fn write_fuzz_seeds() {
    let dir = std::env::var("MLP_FUZZ_SEEDS").expect("set MLP_FUZZ_SEEDS to the corpus folder");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, f) in valid_files().iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i}.bin"), f).unwrap();
    }
}
