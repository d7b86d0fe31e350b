//! Data of miga: the iMiGUE and MiGA 2025 formats (annotations, protocols, OpenPose
//! skeletons, H.264 video), clip sampling and batching, and synthetic data in the same layout.
//!
//! Every reader reports bad input as an [`Error`] naming the file and the place in it.

pub mod annotations;
pub mod cache;
pub mod check;
pub mod classes;
pub mod clips;
pub mod convert;
pub mod emotion;
mod error;
pub mod faces;
pub mod io;
pub mod lock;
pub mod protocols;
pub mod sampling;
pub mod skeleton;
pub mod source;
pub mod stages;
pub mod synth;
pub mod tensors;
#[cfg(test)]
mod testing;
pub mod untrimmed;
pub mod video;

pub use annotations::{Clip, LabelTable, Segment, SegmentFormat};
pub use classes::{MicroGesture, NUM_CLASSES, Outcome};
pub use error::{Error, Result};
pub use protocols::{MigaLayout, Protocol, Split};
pub use skeleton::{PersonSelection, Skeleton};
pub use source::{DataSource, ImigueRelease};

/// For tests: reports that a test cannot run here (missing shared data, tool or driver), so
/// that it can return early, and counts it. With `MIGA_NO_SKIP=1` (as CI runs) it panics
/// instead: nothing may skip there. With `MIGA_SKIP_LOG=FILE` it appends the reason as a line
/// to FILE, from which `.ci/run` counts the skips of a test run.
pub fn skip_test(reason: &str) {
    if std::env::var("MIGA_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("cannot skip with MIGA_NO_SKIP=1: {reason}");
    }
    eprintln!("skipped: {reason}");
    if let Ok(log) = std::env::var("MIGA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(file, "{reason}");
        }
    }
}
