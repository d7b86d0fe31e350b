//! Data of miga: the iMiGUE and MiGA 2025 formats (annotations, protocols, OpenPose
//! skeletons, H.264 video), clip sampling and batching, and synthetic data in the same layout.
//!
//! Every reader reports bad input as an [`Error`] naming the file and the place in it.

pub mod annotations;
pub mod check;
pub mod classes;
pub mod clips;
pub mod emotion;
mod error;
pub mod faces;
pub mod io;
pub mod protocols;
pub mod sampling;
pub mod skeleton;
pub mod synth;
#[cfg(test)]
mod testing;
pub mod video;

pub use annotations::{Clip, LabelTable, Segment, SegmentFormat};
pub use classes::{MicroGesture, NUM_CLASSES, Outcome};
pub use error::{Error, Result};
pub use protocols::{MigaLayout, Protocol, Split};
pub use skeleton::{PersonSelection, Skeleton};
