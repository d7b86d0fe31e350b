//! The training core both tasks use: a task's model says what it is through [`TaskModel`]
//! (its name in run folders, the metrics it logs), and [`fit`] trains it with burn-train:
//! AdamW, warm-up then cosine, checkpoints, resumption, early stopping, the best epoch by
//! validation, rendering and the training-curve plot. Run folders are checked by [`RunSpec`];
//! trained runs are loaded back and scored by [`load_best`] and [`score_items`].

pub mod checkpoints;
mod fit;
pub mod legacy;
mod optim;
mod render;
mod run_spec;
mod scoring;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use miga_fusion::{ClassificationLossConfig, PyTorchNames};
use serde::{Deserialize, Serialize};

pub use checkpoints::{BestEpoch, RunRecorder};
pub(crate) use fit::fit;
pub(crate) use run_spec::{RunSpec, feature_inputs};
pub use scoring::Scores;
pub(crate) use scoring::{load_best, score_items};

use crate::{Error, Result};

/// What the training core needs to know of a task's model.
pub trait TaskModel {
    /// The task's name in `run.json` (a run is loaded back only as the task it was trained
    /// for).
    const TASK: &'static str;
    /// The metrics logged each epoch besides the loss.
    const METRICS: Metrics;

    /// How exports name the model's parameters: miga's paths, with the fusion module's as
    /// its PyTorch twin has them.
    fn pytorch_names(&self) -> PyTorchNames;
}

/// Training settings (`miga train --print-config` shows the defaults): `F` is the fusion
/// module's configuration, `S` the streams it sees ([`crate::micro_gesture::Streams`] for
/// micro-gestures, [`crate::emotion::EmotionStreams`] for emotion).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[serde(bound(
    serialize = "F: Serialize, S: Serialize",
    deserialize = "F: serde::de::DeserializeOwned, S: serde::de::DeserializeOwned, TrainConfig<F, S>: Default"
))]
pub struct TrainConfig<F, S> {
    /// The streams the model sees.
    pub streams: S,
    /// Epochs (at most; early stopping may end sooner).
    pub epochs: usize,
    /// Items (clips or videos) a batch.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Final learning rate of the cosine schedule.
    pub min_learning_rate: f64,
    /// Warm-up epochs (linear from 1% of the peak).
    pub warmup_epochs: usize,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Stop after this many epochs without a better validation loss (0: never).
    pub patience: usize,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
    /// Full checkpoints (model, optimiser, scheduler) kept while the run goes on: the newest
    /// this many (at least 1). One is deleted only while a newer one is complete on disk, so a
    /// kill at any moment leaves a resumable run. A finished run keeps its last one only (all
    /// `--resume` needs), besides the `keep_every` ones.
    pub keep_checkpoints: usize,
    /// Also keep the checkpoint of every epoch that is a multiple of this (0: none).
    pub keep_every: usize,
    /// A full checkpoint every this many epochs; 0 (the default): whenever the time since the
    /// last one is at least four times what writing it took, so writing costs at most about a
    /// fifth of the run. The last epoch always gets one; `best.mpk` is written at every epoch
    /// that improves the validation accuracy either way.
    pub checkpoint_every: usize,
    /// **Transductive** (off by default; `centre_video` in earlier runs, still read): on extracted
    /// micro-gesture features only, subtract from every clip's video tokens (and class
    /// embedding) their mean over the clips of the same video in the same feature set (the clip
    /// id's part before its last `_`, as MiGA names clips), before standardising. This removes
    /// what stays the same through a video (the person's look, the room, the camera), but at
    /// scoring time it uses the unlabelled test clips' statistics: a score with it is not an
    /// inductive score, must be reported as transductive, and needs the clips of a video
    /// together (one clip alone keeps no video signal).
    pub transductive_centring: bool,
    /// Fusion module (its input widths must match the features).
    pub fusion: F,
    /// Loss.
    pub loss: ClassificationLossConfig,
}

impl<F, S> TrainConfig<F, S> {
    /// Settings for `fusion` seeing `streams`, with the defaults the tasks share: 30 epochs of
    /// 32 items, AdamW at a peak rate of 1e-3 (2 warm-up epochs, cosine to 1e-5, weight decay
    /// 0.05), patience 10, seed 0, the newest 2 checkpoints kept.
    pub fn new(streams: S, fusion: F) -> Self {
        Self {
            streams,
            epochs: 30,
            batch: 32,
            learning_rate: 1e-3,
            min_learning_rate: 1e-5,
            warmup_epochs: 2,
            weight_decay: 0.05,
            patience: 10,
            seed: 0,
            keep_checkpoints: 2,
            keep_every: 0,
            checkpoint_every: 0,
            transductive_centring: false,
            fusion,
            loss: ClassificationLossConfig::new(),
        }
    }
}

/// What a training run gave.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Epochs trained (all of them, resumed ones included).
    pub epochs: usize,
    /// The epoch with the best validation accuracy, whose model is `best.mpk`.
    pub best_epoch: usize,
    /// Its validation accuracy (0..1).
    pub best_accuracy: f64,
    /// The plot of the training curves.
    pub plot: PathBuf,
}

/// The metrics a run logs each epoch, besides the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metrics {
    /// Accuracy and top-5 accuracy (micro-gestures).
    Classes,
    /// Accuracy and AUROC (Win/Lose).
    Binary,
}

/// The first of `devices`, which holds the optimiser; none is an error.
pub(crate) fn main_device<'a, B: Backend>(
    devices: &'a [B::Device],
    run: &Path,
) -> Result<&'a B::Device> {
    devices.first().ok_or_else(|| Error::InvalidConfig {
        path: run.to_path_buf(),
        reason: "no device to train on".into(),
    })
}
