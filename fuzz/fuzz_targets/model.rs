//! Model files (f32 and int8) from arbitrary bytes: parsing must return Ok or Err, never
//! panic or allocate from an unchecked header; a file that parses must run inference on a
//! fixed input without panicking, and its outputs must have the topology's width.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlp::format::ModelFile;
use mlp::int8::{self, Int8Model};
use mlp::{DType, Model, Portable};

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes with a correct CRC-32 trailer, so mutations get past the checksum and
    // into the size and int8 payload validation.
    if data.len() >= 4 {
        let mut sealed = data.to_vec();
        let n = sealed.len();
        let crc = mlp::format::crc32(&sealed[..n - 4]);
        sealed[n - 4..].copy_from_slice(&crc.to_le_bytes());
        check(&sealed);
    }
});

fn check(data: &[u8]) {
    let Ok(file) = ModelFile::parse(data) else {
        assert!(Int8Model::parse(data).is_err());
        return;
    };
    let t = file.topology().clone();
    // Every stored name reads back (the names section was checked by parse).
    for i in 0..file.class_name_count() {
        assert!(file.class_name(i).is_some());
    }
    for j in 0..file.feature_name_count() {
        assert!(file.feature_name(j).is_some());
    }
    match file.dtype() {
        DType::Int8 => {
            let m = file.int8().expect("a parsed int8 file has an int8 view");
            let x: Vec<i8> = (0..t.input()).map(|j| (j * 31 % 256) as u8 as i8).collect();
            let mut act = vec![0i8; m.act_workspace_len(2)];
            let mut acc = vec![0i32; m.acc_workspace_len(2)];
            let xx = [x.clone(), x].concat();
            let out = int8::forward(&int8::PortableInt8, &m, &xx, 2, &mut act, &mut acc).unwrap().to_vec();
            assert_eq!(out.len(), 2 * t.output());
            // The batch rows are independent: both equal.
            assert_eq!(out[..t.output()], out[t.output()..]);
            let mut raw = vec![0i8; t.input()];
            let _ = m.quantize_u8(&vec![200u8; t.input()], &mut raw);
            let mut deq = vec![0.0; out.len()];
            m.dequantize_output(&out, &mut deq).unwrap();
        }
        _ => {
            let mut p = vec![0.0; t.param_len()];
            let mut r = vec![0.0; t.running_len()];
            file.read_params(&mut p).unwrap();
            file.read_running(&mut r).unwrap();
            let model = Model::new(&t, &p, &r).unwrap();
            let mut ws = vec![0.0; t.infer_workspace_len(1)];
            let out = model.forward(&Portable, &vec![0.5; t.input()], 1, &mut ws).unwrap();
            assert_eq!(out.len(), t.output());
        }
    }
}
