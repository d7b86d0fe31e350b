//! The per-video label files (iMiGUE seconds and MiGA frames).
#![no_main]

use libfuzzer_sys::fuzz_target;
use miga_datasets::annotations::{SegmentFormat, parse_segments};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("fuzz_label.csv");
        let _ = parse_segments(text, path, SegmentFormat::ImigueSeconds);
        let _ = parse_segments(text, path, SegmentFormat::MigaFrames);
    }
});
