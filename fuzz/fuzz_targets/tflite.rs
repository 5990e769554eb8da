//! TFLite flatbuffers from arbitrary bytes: `interop::tflite::read` returns Ok or Err, never
//! panics or allocates beyond what the input's size allows; what it returns is an int8 model
//! file core parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlp::InputTransform;

fuzz_target!(|data: &[u8]| {
    let transform = InputTransform::Global { scale: 1.0 / 255.0, offset: 0.0 };
    if let Ok((file, _notes)) = interop::tflite::read(data, &transform) {
        assert!(mlp::int8::Int8Model::parse(&file).is_ok());
    }
});
