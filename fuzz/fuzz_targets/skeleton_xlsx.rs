//! The MiGA skeleton tables (xlsx: a zip of XML).
#![no_main]

use libfuzzer_sys::fuzz_target;
use miga_datasets::skeleton::parse_skeleton_xlsx;

fuzz_target!(|data: &[u8]| {
    let _ = parse_skeleton_xlsx(data, std::path::Path::new("fuzz_openpose.xlsx"));
});
