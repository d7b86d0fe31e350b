//! MP4 demuxing and H.264 decoding of the first and last frame: the bytes go through a file,
//! as `Video::open` reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miga_datasets::video::Video;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("miga-fuzz-{}.mp4", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut video) = Video::open(&path) {
        let last = video.info().frames.saturating_sub(1);
        let _ = video.frames(&[0, last]);
    }
});
