//! Data of miga: the iMiGUE and MiGA 2025 formats (annotations, protocols, OpenPose
//! skeletons, H.264 video), clip sampling and batching, and synthetic data in the same layout.
//!
//! Every reader reports bad input as an [`Error`] naming the file and the place in it.

mod error;

pub use error::{Error, Result};
