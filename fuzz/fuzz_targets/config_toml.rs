//! The settings TOML of `train`, `extract` and `demo`. The input goes through a file, as miga reads it; the parser is the one
//! `tests/fuzz.rs` names `config_toml`, and its seeds are that test's (`MIGA_FUZZ_CORPUS`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("miga-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = &dir.join("settings.toml");
    if std::fs::write(path, data).is_err() {
        return;
    }
    use miga_tasks::config::read_toml;
    let _ = read_toml(&<miga_tasks::micro_gesture::TrainConfig>::default(), path);
    let _ = read_toml(&miga_tasks::micro_gesture::MicroGestureExtraction::default(), path);
    let _ = read_toml(&miga_tasks::demo::DemoConfig::default(), path);
});
