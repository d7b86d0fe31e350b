//! One raw OpenPose JSON frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miga_datasets::skeleton::{PersonSelection, parse_openpose_frame};

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("v_000000000000_keypoints.json");
    for selection in [PersonSelection::MostConfident, PersonSelection::Largest, PersonSelection::Index(1)] {
        let _ = parse_openpose_frame(data, path, selection);
    }
});
