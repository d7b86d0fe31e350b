//! The official label CSV parser: any bytes give rows and problems or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miga_datasets::LabelTable;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LabelTable::parse(text, std::path::Path::new("fuzz.csv"));
    }
});
