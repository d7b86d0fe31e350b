//! A run folder's `run.json`. The input goes through a file, as miga reads it; the parser is the one
//! `tests/fuzz.rs` names `run_json`, and its seeds are that test's (`MIGA_FUZZ_CORPUS`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("miga-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = &dir.join("run.json");
    if std::fs::write(path, data).is_err() {
        return;
    }
    let _ = miga_tasks::run_info::read_run_info(path.parent().expect("in a folder"));
});
