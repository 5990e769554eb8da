//! TFLite flatbuffers from arbitrary bytes: `interop::tflite::read` returns Ok or Err, never
//! panics or allocates beyond what the input's size allows; what it returns is an int8 model
//! file core parses and runs, and that `interop::tflite::write` exports and reads back to
//! the same layers. Seed it with the committed fixtures (random bytes rarely pass the
//! flatbuffers verifier): `cargo +nightly fuzz run tflite corpus/tflite ../interop/tests/fixtures/tflite`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlp::int8::{self, Int8Model, PortableInt8};
use mlp::InputTransform;

fuzz_target!(|data: &[u8]| {
    let transform = InputTransform::Global { scale: 1.0 / 255.0, offset: 0.0 };
    let Ok((file, _notes)) = interop::tflite::read(data, &transform) else { return };
    let q = Int8Model::parse(&file).expect("the reader's output parses");
    let n = q.topology().input();
    let mut x = vec![0i8; n];
    q.quantize_u8(&vec![200u8; n], &mut x).unwrap();
    let mut act = vec![0i8; q.act_workspace_len(1)];
    let mut acc = vec![0i32; q.acc_workspace_len(1)];
    int8::forward(&PortableInt8, &q, &x, 1, &mut act, &mut acc).unwrap();
    // Export and back: the multipliers LiteRT computes are the file's, so writing succeeds.
    let tflite = interop::tflite::write(&file).expect("an imported model exports");
    let (again, _) = interop::tflite::read(&tflite, &transform).expect("an export reads back");
    let b = Int8Model::parse(&again).unwrap();
    for (la, lb) in q.layers().iter().zip(b.layers()) {
        assert_eq!(la.weights(), lb.weights());
        assert_eq!(la.multipliers(), lb.multipliers());
        assert_eq!(la.shifts(), lb.shifts());
    }
});
