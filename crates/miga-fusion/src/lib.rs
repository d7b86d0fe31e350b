//! Fusion modules of miga, generic over the backend and independent of the backbones (they
//! take token tensors):
//!
//! - Cross-Modal Token Fusion: video tokens (MViTv2) and skeleton tokens (2s-AGCN) to one of
//!   the 32 micro-gesture classes;
//! - InterFusion: face (SwinFace) and context (MViTv2) sequences of a whole video to Win/Lose.

mod error;

pub use error::{Error, Result};
