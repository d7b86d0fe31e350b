//! A run folder: checked against an earlier run of the same folder, then described in
//! `run.json`; one writer at a time.

use std::path::Path;

use burn::train::Interrupter;
use serde::Serialize;

use super::checkpoints::{Retention, checkpoints};
use super::{TaskModel, TrainConfig};
use crate::features::FeatureSet;
use crate::loader::EpochClock;
use crate::run_info::{RunInfo, read_run_info};
use crate::{Error, Result};

/// Where a training run goes and what it is, checked against an earlier run in the folder.
pub(crate) struct RunSpec<'a> {
    pub(super) run: &'a Path,
    /// The epochs a resumed run could continue after, newest first.
    pub(super) resumable: Vec<usize>,
    pub(super) epochs: usize,
    pub(super) batch: usize,
    pub(super) learning_rate: f64,
    pub(super) min_learning_rate: f64,
    pub(super) warmup_epochs: usize,
    pub(super) weight_decay: f32,
    pub(super) patience: usize,
    pub(super) seed: u64,
    pub(super) retention: Retention,
    /// One writer a run folder.
    pub(super) _lock: miga_datasets::lock::FolderLock,
    /// Stops the run from inside a training step; its message becomes the error [`fit`]
    /// returns.
    pub(crate) interrupter: Interrupter,
    /// The epoch being trained, and when it started (training batchers read its number).
    pub(crate) clock: EpochClock,
}

impl<'a> RunSpec<'a> {
    /// Checks `run` (a new folder, or with `resume` one of the same settings and inputs, as
    /// `inputs` describes them), then writes `run.json`.
    pub(crate) fn new<M: TaskModel, F: Serialize, S: Serialize>(
        inputs: String,
        config: &TrainConfig<F, S>,
        run: &'a Path,
        resume: bool,
    ) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let info = RunInfo {
            task: M::TASK.into(),
            config: toml::to_string(config).unwrap_or_default(),
            features: inputs,
        };
        let lock = miga_datasets::lock::FolderLock::folder(run, None, "training")?;
        let info_path = run.join("run.json");
        let resumable = match (info_path.exists(), resume) {
            (true, false) => {
                return Err(Error::Mismatch {
                    path: run.to_path_buf(),
                    reason: "already holds a run: pass --resume to continue it, or another --out"
                        .into(),
                });
            }
            (true, true) => {
                if !same_run(&read_run_info(run)?, &info) {
                    return Err(Error::Mismatch {
                        path: run.to_path_buf(),
                        reason: "this run was made with other settings or features".into(),
                    });
                }
                let mut epochs = checkpoints(run);
                epochs.reverse();
                epochs
            }
            (false, _) => Vec::new(),
        };
        std::fs::create_dir_all(run).map_err(io(run))?;
        miga_datasets::io::write_atomic(
            &info_path,
            serde_json::to_string_pretty(&info)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        Ok(Self {
            run,
            resumable,
            epochs: config.epochs,
            batch: config.batch.max(1),
            learning_rate: config.learning_rate,
            min_learning_rate: config.min_learning_rate,
            warmup_epochs: config.warmup_epochs,
            weight_decay: config.weight_decay,
            patience: config.patience,
            seed: config.seed,
            retention: Retention {
                keep: config.keep_checkpoints.max(1),
                keep_every: config.keep_every,
                every: config.checkpoint_every,
            },
            _lock: lock,
            interrupter: Interrupter::new(),
            clock: EpochClock::default(),
        })
    }
}

/// Settings that change which checkpoints a run writes and keeps, not what it trains: a
/// resumed run may change them.
const CHECKPOINT_SETTINGS: [&str; 3] = ["keep_checkpoints", "keep_every", "checkpoint_every"];

/// Whether `a` and `b` describe the same training (task, features and settings, the
/// checkpoint settings aside).
fn same_run(a: &RunInfo, b: &RunInfo) -> bool {
    let training = |config: &str| {
        config.parse::<toml::Table>().ok().map(|mut table| {
            for key in CHECKPOINT_SETTINGS {
                table.remove(key);
            }
            table
        })
    };
    a.task == b.task
        && a.features == b.features
        && training(&a.config).is_some()
        && training(&a.config) == training(&b.config)
}

/// Checks that `train` and `valid` are features of `task` extracted alike; their description.
pub(crate) fn feature_inputs(
    task: &str,
    train: &FeatureSet,
    valid: &FeatureSet,
    run: &Path,
) -> Result<String> {
    for (set, name) in [(train, "training"), (valid, "validation")] {
        if set.kind.task != task {
            return Err(Error::Mismatch {
                path: run.to_path_buf(),
                reason: format!(
                    "the {name} features are for task `{}`, not {task}",
                    set.kind.task
                ),
            });
        }
    }
    if train.kind != valid.kind {
        return Err(Error::Mismatch {
            path: run.to_path_buf(),
            reason: "training and validation features were extracted with different settings"
                .into(),
        });
    }
    Ok(train.kind.settings.clone())
}
