//! safetensors files from arbitrary bytes: `interop::safetensors::read` returns Ok or Err,
//! never panics or allocates beyond what the input's size allows; a model that reads is a
//! valid network and writes back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = interop::safetensors::read(data, None) {
        assert_eq!(m.params.len(), m.topology.param_len());
        assert_eq!(m.running.len(), m.topology.running_len());
    }
});
