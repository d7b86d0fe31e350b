//! Tasks of miga, built from backbones, fusion and data: micro-gesture classification
//! (32 classes, per clip) and behaviour-based emotion prediction (Win/Lose, per video).
//!
//! A clip's way through the crate: [`models`] composes the networks (backbones, their feature
//! adapters, fusion); [`micro_gesture`] and [`emotion`] are the tasks (extract, train, evaluate,
//! predict), each on the [`training`] core (burn-train, run folders, checkpoints) and the
//! [`features`] store.

pub mod config;
pub mod demo;
pub mod emotion;
mod error;
pub mod export;
pub mod features;
mod loader;
pub mod micro_gesture;
pub mod models;
pub mod plot;
pub mod run_info;
pub mod runs;
pub mod standardise;
#[cfg(test)]
mod testing;
pub mod training;

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
