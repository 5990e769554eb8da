//! safetensors files from arbitrary bytes: `interop::safetensors::read` returns Ok or Err,
//! never panics or allocates beyond what the input's size allows; a model that reads is a
//! valid network and writes back, and what it writes reads back as the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = interop::safetensors::read(data, None) {
        assert_eq!(m.params.len(), m.topology.param_len());
        assert_eq!(m.running.len(), m.topology.running_len());
        let written = interop::safetensors::write(&m).expect("a model that reads writes");
        let back = interop::safetensors::read(&written, None).expect("our own file reads");
        assert_eq!(back.topology, m.topology);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.params), bits(&m.params));
        assert_eq!(bits(&back.running), bits(&m.running));
        assert_eq!((back.input, back.classes), (m.input, m.classes));
    }
});
