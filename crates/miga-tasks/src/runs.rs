//! What a run folder holds, for `miga runs` and the end of `miga train`: its task, how far it
//! got, its best epoch, its checkpoints and its size on disk.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::run_info::read_run_info;
use crate::training::checkpoints::{BestEpoch, checkpoints};

/// A run folder's state.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    /// The folder.
    pub path: PathBuf,
    /// `micro-gesture`, `micro-gesture-end-to-end` or `emotion`.
    pub task: String,
    /// Epochs validated so far.
    pub epochs: usize,
    /// Epochs the settings ask for (early stopping may end a run sooner).
    pub planned_epochs: Option<usize>,
    /// The epoch `best.mpk` holds, and its validation accuracy.
    pub best: Option<BestEpoch>,
    /// Epochs with a full checkpoint (resumable from), oldest first.
    pub checkpoints: Vec<usize>,
    /// Bytes of every file under the folder.
    pub bytes: u64,
}

impl RunStatus {
    /// The state of the run in `path`; `None` when it is not a run folder (no readable
    /// `run.json`).
    pub fn read(path: &Path) -> Option<Self> {
        if crate::run_info::is_export(path) {
            return None;
        }
        let info = read_run_info(path).ok()?;
        let planned_epochs = info
            .config
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("epochs")?.as_integer())
            .and_then(|e| usize::try_from(e).ok());
        let epochs = std::fs::read_dir(path.join("valid"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_prefix("epoch-")?
                            .parse::<usize>()
                            .ok()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        Some(Self {
            path: path.to_path_buf(),
            task: info.task,
            epochs,
            planned_epochs,
            best: BestEpoch::read(path),
            checkpoints: checkpoints(path),
            bytes: folder_bytes(path),
        })
    }

    /// The runs in `root`: the folder itself if it is a run, else the runs found below it (up
    /// to three levels down, not inside a run), sorted by path.
    pub fn find(root: &Path) -> Vec<Self> {
        let mut found = Vec::new();
        collect(root, 3, &mut found);
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }
}

fn collect(dir: &Path, depth: usize, found: &mut Vec<RunStatus>) {
    if let Some(run) = RunStatus::read(dir) {
        found.push(run);
        return;
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect(&entry.path(), depth - 1, found);
        }
    }
}

/// Bytes of the files under `dir` (links not followed; a file with several names, as
/// `best.mpk` and the checkpoint it was written with, counted once on Unix).
pub fn folder_bytes(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    bytes_below(dir, &mut seen)
}

fn bytes_below(dir: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.filter_map(|e| e.ok()) {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += bytes_below(&entry.path(), seen),
            Ok(t) if t.is_file() => {
                let Ok(metadata) = entry.metadata() else {
                    continue;
                };
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    if metadata.nlink() > 1 && !seen.insert((metadata.dev(), metadata.ino())) {
                        continue;
                    }
                }
                total += metadata.len();
            }
            _ => {}
        }
    }
    total
}

/// `bytes` for people: `812 B`, `3.4 MB`, `1.2 GB` (powers of 1000).
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}
