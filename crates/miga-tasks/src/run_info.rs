//! What a run folder or an exported run records: what was trained, with which settings, on
//! which features (`run.json`; an exported run's `config.json`, written by `miga export`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::training::BestEpoch;
use crate::{Error, Result};

/// What a run folder holds besides burn-train's files: what was trained on what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `micro-gesture`.
    pub task: String,
    /// The training settings, as TOML.
    pub config: String,
    /// The feature settings the model was trained on.
    pub features: String,
}

/// `run.json` of a run folder; a folder without one is not a run.
pub fn read_run_info(run: &Path) -> Result<RunInfo> {
    if is_export(run) {
        return Ok(read_export(run)?.run);
    }
    let path = run.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|_| Error::Mismatch {
        path: run.to_path_buf(),
        reason: "not a run folder (no run.json): train one with `miga train`".into(),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Mismatch {
        path,
        reason: format!("not a run: {e}"),
    })
}

/// The tensors of an exported run.
pub const EXPORT_MODEL: &str = "model.safetensors";
/// What an exported run was trained with.
pub const EXPORT_CONFIG: &str = "config.json";
/// The format of [`EXPORT_CONFIG`].
pub const EXPORT_FORMAT: &str = "miga-export/1";

/// `config.json` of an exported run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportConfig {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The task (`micro-gesture`, `micro-gesture-end-to-end`, `emotion`).
    pub task: String,
    /// The miga version that wrote it.
    pub miga_version: String,
    /// How the tensors are laid out and named.
    pub conventions: String,
    /// The best epoch the tensors are from, and its validation score.
    pub best: Option<BestEpoch>,
    /// The training settings, as a table (the same as `run.toml`).
    pub settings: serde_json::Value,
    /// The feature or extraction settings the model takes its inputs from.
    pub features: serde_json::Value,
    /// Every tensor of `model.safetensors`: its name and shape.
    pub tensors: Vec<(String, Vec<usize>)>,
    /// The run's own record of its settings (read back to load the model).
    pub run: RunInfo,
}

/// Reads the `config.json` of an exported run in `dir`.
pub fn read_export(dir: &Path) -> Result<ExportConfig> {
    let path = dir.join(EXPORT_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let config: ExportConfig = serde_json::from_str(&text).map_err(|e| Error::Mismatch {
        path: path.clone(),
        reason: format!("not an exported run: {e}"),
    })?;
    if config.format != EXPORT_FORMAT {
        return Err(Error::Mismatch {
            path,
            reason: format!(
                "format `{}`; this miga reads `{EXPORT_FORMAT}`",
                config.format
            ),
        });
    }
    Ok(config)
}

/// Whether `dir` holds an exported run (and not a run folder).
pub fn is_export(dir: &Path) -> bool {
    dir.join(EXPORT_CONFIG).is_file() && !dir.join("run.json").is_file()
}
