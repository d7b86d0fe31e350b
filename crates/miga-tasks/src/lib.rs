//! Tasks of miga, built from backbones, fusion and data: micro-gesture classification
//! (32 classes, per clip) and behaviour-based emotion prediction (Win/Lose, per video):
//! feature extraction, training (burn-train), evaluation and prediction files.

pub mod config;
pub mod demo;
pub mod emotion;
mod error;
pub mod evaluate;
pub mod extract;
pub mod features;
pub mod pipeline;
pub mod plot;
pub mod standardise;
pub mod train;

pub use error::{Error, Result};
