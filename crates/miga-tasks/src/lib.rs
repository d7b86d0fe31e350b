//! Tasks of miga, built from backbones, fusion and data: micro-gesture classification
//! (32 classes, per clip) and behaviour-based emotion prediction (Win/Lose, per video):
//! feature extraction, training (burn-train), evaluation and prediction files.

pub mod config;
pub mod demo;
pub mod emotion;
pub mod end_to_end;
mod error;
pub mod evaluate;
pub mod extract;
pub mod features;
mod loader;
pub mod pipeline;
pub mod plot;
pub mod standardise;
pub mod train;

pub use error::{Error, Result};

/// Serialises the tests that draw from the backend's random generator: it is global to the
/// process, so a test reproducing a seeded initialisation must not run beside another that
/// draws from it.
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
