//! IDX parsing of arbitrary bytes (raw or gzip): must return Ok or Err, never panic, never
//! allocate from an unchecked header; on Ok the shapes must be consistent.
#![no_main]

use data::idx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(images) = idx::parse_images("fuzz", data) {
        assert_eq!(images.pixels.len(), images.count * images.rows * images.cols);
    }
    if let Ok(labels) = idx::parse_labels("fuzz", data, 10) {
        assert!(labels.iter().all(|&l| l < 10));
    }
    // An images file and a labels file cut from the same input at a fuzzed point.
    if let Some((&cut, rest)) = data.split_first() {
        let at = (cut as usize * rest.len()) / 255;
        let (images, labels) = rest.split_at(at.min(rest.len()));
        if let Ok(ds) = idx::parse_dataset("fuzz", "images", images, "labels", labels, 10) {
            assert_eq!(ds.features().len(), ds.len() * ds.input_len());
        }
    }
});
