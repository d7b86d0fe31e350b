//! An MP4 container and the H.264 decode of its first, middle and last frames. The input goes through a file, as miga reads it; the parser is the one
//! `tests/fuzz.rs` names `mp4_h264`, and its seeds are that test's (`MIGA_FUZZ_CORPUS`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("miga-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = &dir.join("0001.mp4");
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Ok(mut video) = miga_datasets::video::Video::open(path) {
        let last = video.info().frames.saturating_sub(1);
        let _ = video.frames(&[0, last / 2, last]);
    }
});
