//! A safetensors tensor file. The input goes through a file, as miga reads it; the parser is the one
//! `tests/fuzz.rs` names `safetensors`, and its seeds are that test's (`MIGA_FUZZ_CORPUS`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("miga-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = &dir.join("tensors.safetensors");
    if std::fs::write(path, data).is_err() {
        return;
    }
    let _ = miga_datasets::tensors::read_tensors(path);
});
