//! Tasks of miga, built from backbones, fusion and data: micro-gesture classification
//! (32 classes, per clip) and behaviour-based emotion prediction (Win/Lose, per video):
//! feature extraction, training (burn-train), evaluation and prediction files.

pub mod checkpoints;
pub mod config;
pub mod demo;
pub mod emotion;
pub mod end_to_end;
mod error;
pub mod evaluate;
pub mod export;
pub mod extract;
pub mod features;
mod loader;
pub mod pipeline;
pub mod plot;
pub mod run_info;
pub mod runs;
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

/// `../shared/data/<sub>` beside the repository (the real iMiGUE files), or `None` where it is
/// absent and the test is skipped ([`miga_datasets::skip_test`]).
#[cfg(test)]
pub(crate) fn shared_data(sub: &str) -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(sub);
    if path.exists() {
        return Some(path);
    }
    miga_datasets::skip_test(&format!("{} is absent", path.display()));
    None
}
