//! `miga train --task micro-gesture`: Cross-Modal Token Fusion trained on extracted features
//! with burn-train (AdamW, warm-up then cosine learning rate, a checkpoint every epoch,
//! resumption, early stopping, best-epoch selection on validation, a training-curve plot).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::lr_scheduler::LrScheduler;
use burn::lr_scheduler::composed::{ComposedLrScheduler, ComposedLrSchedulerConfig};
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::module::AutodiffModule;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, GradientsParams, MultiGradientsParams,
    Optimizer, SimpleOptimizer, adaptor::OptimizerAdaptor,
};
use burn::prelude::*;
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use burn::train::logger::{FileMetricLogger, MetricLogger};
use burn::train::metric::NumericEntry;
use burn::train::metric::store::{EpochSummary, EventStoreClient, MetricsUpdate, Split};
use burn::train::metric::{
    AccuracyMetric, AurocMetric, LossMetric, MetricDefinition, MetricId, TopKAccuracyMetric,
};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{
    ClassificationOutput, EarlyStoppingStrategy, ExecutionStrategy, InferenceStep, Interrupter,
    Learner, LearnerSummary, MultiDeviceOptim, SupervisedTraining, TrainOutput, TrainStep,
    TrainingStrategy,
};
use miga_datasets::clips::Modalities;
use miga_fusion::{
    ClassificationLossConfig, Cmtf, CmtfConfig, CmtfInput, SkeletonTokens, VideoTokens,
};
use serde::{Deserialize, Serialize};

use crate::checkpoints::no_improvement_since;
pub use crate::checkpoints::{BestEpoch, RunRecorder};
use crate::checkpoints::{EpochScores, Retention, RunCheckpoints, ValidScores, checkpoints, prune};
use crate::extract::MICRO_GESTURE;
use crate::features::{FeatureSet, item_label};
use crate::loader::{EpochClock, EpochLoader};
use crate::plot::{Curve, line_chart};
use crate::run_info::{RunInfo, read_run_info};
use crate::standardise::{Standardise, channel_moments};
use crate::{Error, Result};

/// Which streams a model uses: both (fusion) or one (the single-modality baselines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Streams {
    /// Video and skeleton, fused.
    #[default]
    Both,
    /// Video only.
    Video,
    /// Skeleton only.
    Skeleton,
}

impl Streams {
    /// The clip streams a model of these streams needs.
    pub fn modalities(self) -> Modalities {
        match self {
            Self::Both => Modalities::Both,
            Self::Video => Modalities::Rgb,
            Self::Skeleton => Modalities::Skeleton,
        }
    }
}

/// Training settings (`miga train --print-config` shows the defaults): `F` is the fusion
/// module's configuration, `S` the streams it sees ([`Streams`] for micro-gestures,
/// [`crate::emotion::EmotionStreams`] for emotion).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[serde(bound(
    serialize = "F: Serialize, S: Serialize",
    deserialize = "F: serde::de::DeserializeOwned, S: serde::de::DeserializeOwned, TrainConfig<F, S>: Default"
))]
pub struct TrainConfig<F = CmtfConfig, S = Streams> {
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

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            streams: Streams::Both,
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
            fusion: CmtfConfig::new(),
            loss: ClassificationLossConfig::new(),
        }
    }
}

/// One clip's features: those of the streams a model sees.
#[derive(Debug, Clone)]
pub struct FeatureItem {
    video: Option<TensorData>,
    class: Option<TensorData>,
    skeleton: Option<TensorData>,
    label: i64,
    /// Whether `skeleton` is already averaged over the fusion's body parts.
    skeleton_pooled: bool,
}

impl FeatureItem {
    /// An unlabelled clip from its video tokens `[T', k, k, C]`, class embedding `[C]` and
    /// skeleton tokens `[T'', V, C_s]`, those extracted.
    pub(crate) fn unlabelled(
        video: Option<TensorData>,
        class: Option<TensorData>,
        skeleton: Option<TensorData>,
    ) -> Self {
        Self {
            video,
            class,
            skeleton,
            label: -1,
            skeleton_pooled: false,
        }
    }

    /// The class index, or -1 for an unlabelled clip.
    pub fn label(&self) -> i64 {
        self.label
    }
}

/// A batch of clip features, of the streams a model sees.
#[derive(Debug, Clone)]
pub struct FeatureBatch<B: Backend> {
    /// `[B, T', k, k, C]`.
    pub video: Option<Tensor<B, 5>>,
    /// `[B, C]`.
    pub class: Option<Tensor<B, 2>>,
    /// `[B, T'', V, C_s]`, or `[B, T'', P, C_s]` averaged over the fusion's P body parts.
    pub skeleton: Option<Tensor<B, 4>>,
    /// Whether `skeleton` is averaged over the body parts already.
    pub skeleton_pooled: bool,
    /// `[B]`.
    pub labels: Tensor<B, 1, Int>,
}

/// Stacks [`FeatureItem`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeatureBatcher;

/// `parts` stacked along a new first axis; none when any item lacks its part.
fn stack<B: Backend, const D: usize, const E: usize>(
    parts: Vec<Option<&TensorData>>,
    device: &B::Device,
) -> Option<Tensor<B, E>> {
    let tensors: Option<Vec<Tensor<B, E>>> = parts
        .into_iter()
        .map(|p| Some(Tensor::<B, D>::from_data(p?.clone(), device).unsqueeze()))
        .collect();
    tensors.filter(|t| !t.is_empty()).map(|t| Tensor::cat(t, 0))
}

impl<B: Backend> Batcher<B, FeatureItem, FeatureBatch<B>> for FeatureBatcher {
    fn batch(&self, items: Vec<FeatureItem>, device: &B::Device) -> FeatureBatch<B> {
        let labels: Vec<i64> = items.iter().map(|i| i.label).collect();
        FeatureBatch {
            video: stack::<B, 4, 5>(items.iter().map(|i| i.video.as_ref()).collect(), device),
            class: stack::<B, 1, 2>(items.iter().map(|i| i.class.as_ref()).collect(), device),
            skeleton: stack::<B, 3, 4>(items.iter().map(|i| i.skeleton.as_ref()).collect(), device),
            skeleton_pooled: {
                let pooled = items.first().is_some_and(|i| i.skeleton_pooled);
                debug_assert!(items.iter().all(|i| i.skeleton_pooled == pooled));
                pooled
            },
            labels: Tensor::from_data(TensorData::new(labels.clone(), [labels.len()]), device),
        }
    }
}

/// The labelled and unlabelled items of a micro-gesture feature set, in id order, with the
/// tensors `streams` needs (a feature set without them is an error saying which are missing
/// and how the set was extracted). With `fusion`, each item's skeleton tokens are averaged over
/// the fusion's body parts as they are read (what the fusion module would do with every batch):
/// P part tokens a step are kept instead of V joint tokens (1 or 3 instead of 55 for
/// `imigue-upper-hands`).
pub fn feature_items(
    set: &FeatureSet,
    path: &Path,
    fusion: Option<&CmtfConfig>,
    streams: Streams,
) -> Result<Vec<(String, FeatureItem)>> {
    if set.kind.task != MICRO_GESTURE {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!("features for task `{}`, not {MICRO_GESTURE}", set.kind.task),
        });
    }
    let (video, skeleton) = (streams != Streams::Skeleton, streams != Streams::Video);
    let needed: Vec<&str> = [
        (video, "video_tokens"),
        (video, "video_class"),
        (skeleton, "skeleton_tokens"),
    ]
    .into_iter()
    .filter_map(|(needed, name)| needed.then_some(name))
    .collect();
    if let Some((id, tensors)) = set.items.iter().next()
        && let Some(missing) = needed.iter().find(|n| !tensors.contains_key(**n))
    {
        let extracted = crate::extract::FeatureDescription::from_json(&set.kind.settings, path)
            .map(|d| format!("{:?}", d.settings.clip.modalities).to_lowercase())
            .unwrap_or_else(|_| "other settings".into());
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!(
                "the {} streams need `{missing}`, which item {id} does not have: these features \
                 were extracted with modalities = {extracted}; extract the missing stream, or \
                 train a single-stream model on them (--streams video or --streams skeleton)",
                match streams {
                    Streams::Both => "fused",
                    Streams::Video => "video",
                    Streams::Skeleton => "skeleton",
                }
            ),
        });
    }
    let mut items = Vec::new();
    for (id, tensors) in &set.items {
        let tensor = |name: &str| {
            tensors.get(name).ok_or_else(|| Error::Mismatch {
                path: path.to_path_buf(),
                reason: format!("item {id} has no `{name}`"),
            })
        };
        let get = |wanted: bool, name: &str| -> Result<Option<TensorData>> {
            wanted.then(|| tensor(name).cloned()).transpose()
        };
        let label = item_label(tensors).ok_or_else(|| Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!("item {id} has no `label`"),
        })?;
        let skeleton_tokens = match (skeleton, fusion) {
            (false, _) => None,
            (true, Some(fusion)) => Some(
                average_parts(tensor("skeleton_tokens")?, fusion).map_err(|reason| {
                    Error::Mismatch {
                        path: path.to_path_buf(),
                        reason: format!("item {id}: skeleton_tokens {reason}"),
                    }
                })?,
            ),
            (true, None) => get(true, "skeleton_tokens")?,
        };
        items.push((
            id.clone(),
            FeatureItem {
                video: get(video, "video_tokens")?,
                class: get(video, "video_class")?,
                skeleton: skeleton_tokens,
                label,
                skeleton_pooled: fusion.is_some(),
            },
        ));
    }
    Ok(items)
}

/// Skeleton tokens `[T, V, C]` averaged over the body parts of `fusion`
/// ([`CmtfConfig::skeleton_regions`]): `[T, P, C]`.
fn average_parts(
    tokens: &TensorData,
    fusion: &CmtfConfig,
) -> std::result::Result<TensorData, String> {
    let &[t, v, c] = tokens.shape.as_slice() else {
        return Err(format!("have shape {:?}, not [T, V, C]", tokens.shape));
    };
    if v == 0 || c == 0 {
        return Err(format!(
            "have shape {:?}: no joints or no channels",
            tokens.shape
        ));
    }
    let regions = fusion.skeleton_regions(v);
    if let Some(j) = regions.iter().flatten().find(|&&j| j >= v) {
        return Err(format!(
            "have {v} joints, but skeleton_parts names joint {j}"
        ));
    }
    let values = tokens.as_slice::<f32>().map_err(|e| format!("{e:?}"))?;
    let mut out = vec![0.0f32; t * regions.len() * c];
    for (step, rows) in values.chunks_exact(v * c).enumerate() {
        for (r, region) in regions.iter().enumerate() {
            let sum = &mut out[(step * regions.len() + r) * c..][..c];
            for &j in region {
                sum.iter_mut()
                    .zip(&rows[j * c..(j + 1) * c])
                    .for_each(|(s, &x)| *s += x);
            }
            let scale = 1.0 / region.len().max(1) as f32;
            sum.iter_mut().for_each(|s| *s *= scale);
        }
    }
    Ok(TensorData::new(out, [t, regions.len(), c]))
}

/// Subtracts from each item's video tokens and class embedding their per-channel means over
/// the items of the same video (see [`TrainConfig::transductive_centring`]).
pub fn centre_video_features(items: &mut [(String, FeatureItem)]) {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (id, _)) in items.iter().enumerate() {
        let video = id.rsplit_once('_').map_or(id.as_str(), |(video, _)| video);
        groups.entry(video.to_string()).or_default().push(i);
    }
    type Field = fn(&mut FeatureItem) -> &mut Option<TensorData>;
    let fields: [Field; 2] = [|i| &mut i.video, |i| &mut i.class];
    for members in groups.values() {
        for field in fields {
            let Some(tensors): Option<Vec<TensorData>> = members
                .iter()
                .map(|&m| field(&mut items[m].1).clone())
                .collect()
            else {
                continue;
            };
            let width = tensors[0].shape.iter().last().copied().unwrap_or(1).max(1);
            let (mean, _) = channel_moments(&tensors, width);
            for (&m, tensor) in members.iter().zip(tensors) {
                let mut values = tensor.to_vec::<f32>().unwrap_or_default();
                for row in values.chunks_exact_mut(width) {
                    row.iter_mut().zip(&mean).for_each(|(x, &m)| *x -= m as f32);
                }
                *field(&mut items[m].1) = Some(TensorData::new(values, tensor.shape));
            }
        }
    }
}

/// Cross-Modal Token Fusion with its loss, as burn-train trains it.
#[derive(Module, Debug)]
pub struct MicroGestureModel<B: Backend> {
    /// The fusion module.
    pub fusion: Cmtf<B>,
    /// Standardisation of the video tokens and class embedding (training statistics).
    pub video_norm: Standardise<B>,
    /// Standardisation of the skeleton tokens.
    pub skeleton_norm: Standardise<B>,
    #[module(skip)]
    loss: ClassificationLossConfig,
    #[module(skip)]
    streams: Streams,
    /// Whether scored features are centred per video first ([`TrainConfig::transductive_centring`]).
    #[module(skip)]
    pub transductive_centring: bool,
}

impl<B: Backend> MicroGestureModel<B> {
    /// A new model.
    pub fn new(config: &TrainConfig, device: &B::Device) -> Result<Self> {
        let fusion = config
            .fusion
            .init(device)
            .map_err(|e| Error::InvalidConfig {
                path: "fusion".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            fusion,
            video_norm: Standardise::identity(config.fusion.video_dim, device),
            skeleton_norm: Standardise::identity(config.fusion.skeleton_dim, device),
            loss: config.loss.clone(),
            streams: config.streams,
            transductive_centring: config.transductive_centring,
        })
    }

    /// The model with its inputs standardised by the statistics of the training set: the
    /// video tokens and class embeddings of `items`, and `skeleton`, the skeleton tokens of the
    /// same items before any averaging over body parts.
    pub fn standardised<'a>(
        self,
        items: &[FeatureItem],
        skeleton: impl IntoIterator<Item = &'a TensorData>,
        device: &B::Device,
    ) -> Self {
        let video = Standardise::fit(
            items
                .iter()
                .flat_map(|i| [i.video.as_ref(), i.class.as_ref()])
                .flatten(),
            self.video_norm.mean.dims()[0],
            device,
        );
        let skeleton = Standardise::fit(skeleton, self.skeleton_norm.mean.dims()[0], device);
        Self {
            video_norm: video,
            skeleton_norm: skeleton,
            ..self
        }
    }

    /// The streams the model sees.
    pub fn streams(&self) -> Streams {
        self.streams
    }

    /// Class scores `[B, 32]` of a batch.
    pub fn logits(&self, batch: &FeatureBatch<B>) -> Tensor<B, 2> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.fusion.forward(self.input(batch)).logits)
    }

    fn input(&self, batch: &FeatureBatch<B>) -> CmtfInput<B> {
        let video = match (self.streams, &batch.video) {
            (Streams::Skeleton, _) | (_, None) => None,
            (_, Some(video)) => Some(VideoTokens::new(
                self.video_norm.forward(video.clone()),
                batch
                    .class
                    .as_ref()
                    .map(|class| self.video_norm.forward(class.clone())),
            )),
        };
        let wanted = self.streams != Streams::Video;
        let skeleton = batch.skeleton.as_ref().filter(|_| wanted).map(|skeleton| {
            let tokens = self.skeleton_norm.forward(skeleton.clone());
            if batch.skeleton_pooled {
                SkeletonTokens::pooled(tokens)
            } else {
                SkeletonTokens::new(tokens)
            }
        });
        CmtfInput { video, skeleton }
    }

    /// The classification output (loss, scores, labels) of a batch.
    pub(crate) fn classify(&self, batch: FeatureBatch<B>) -> ClassificationOutput<B> {
        let output = self.fusion.forward(self.input(&batch));
        let loss = self
            .loss
            .init::<B>(None, &batch.labels.device())
            .expect("validated when the model was built");
        let value = self.fusion.loss(&output, batch.labels.clone(), &loss);
        ClassificationOutput::new(value, output.logits, batch.labels)
    }
}

impl<B: AutodiffBackend> TrainStep for MicroGestureModel<B> {
    type Input = FeatureBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: FeatureBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        // Forward and backward on one of the CPU pool's threads (one hand-off a step).
        miga_kernels::on_cpu_workers::<B, _>(|| {
            let output = self.classify(batch);
            TrainOutput::new(self, output.loss.backward(), output)
        })
    }
}

impl<B: Backend> InferenceStep for MicroGestureModel<B> {
    type Input = FeatureBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: FeatureBatch<B>) -> ClassificationOutput<B> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.classify(batch))
    }
}

/// One line a finished epoch with its time (from the moment its first batch is asked for to
/// the end of its validation: checkpoint writing is not in it), on standard error (rewritten
/// in place on a terminal). It also averages each epoch's validation accuracy and loss
/// ([`ValidScores`]).
struct EpochLines {
    /// Started as each epoch's training begins.
    clock: EpochClock,
    /// Metric names by id.
    names: std::collections::HashMap<MetricId, String>,
    /// The validation epoch so far: per metric, the sum of value x count, and the count.
    sums: BTreeMap<String, (f64, usize)>,
    /// Where finished epochs' means go.
    scores: ValidScores,
}

impl MetricsRendererTraining for EpochLines {
    fn update_train(&mut self, _: MetricState) {}
    fn update_valid(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, value) = state
            && let Some(name) = self.names.get(&entry.metric_id)
        {
            let (v, n) = match value {
                NumericEntry::Value(v) => (v, 1),
                NumericEntry::Aggregated {
                    aggregated_value,
                    count,
                } => (aggregated_value * count as f64, count),
            };
            let sum = self.sums.entry(name.clone()).or_default();
            *sum = (sum.0 + v, sum.1 + n);
        }
    }
    fn render_train(&mut self, _: TrainingProgress, _: Vec<ProgressType>) {}
    fn render_valid(&mut self, p: TrainingProgress, _: Vec<ProgressType>) {
        if let Some(progress) = &p.progress
            && progress.items_processed == progress.items_total
        {
            let (done, total) = (
                p.global_progress.items_processed,
                p.global_progress.items_total,
            );
            let sums = std::mem::take(&mut self.sums);
            let mean = |name: &str| sums.get(name).map(|&(v, n)| v / n.max(1) as f64);
            self.scores.record(
                done,
                EpochScores {
                    accuracy: mean("Accuracy").map(|a| a / 100.0),
                    loss: mean("Loss"),
                },
            );
            // An information event (the program's subscriber decides: `miga -q` hides it). On a
            // terminal one line is rewritten, like a progress bar; in a log each epoch has its
            // line.
            let seconds = self.clock.take();
            if !tracing::enabled!(tracing::Level::INFO) {
            } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let end = if done == total { "\n" } else { "" };
                eprint!("\repoch {done}/{total} done ({seconds:.2} s){end}");
            } else {
                tracing::info!("epoch {done}/{total} done ({seconds:.2} s)");
            }
        }
    }
}

impl MetricsRendererEvaluation for EpochLines {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for EpochLines {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}

/// burn-train's file metric logger with the epochs of a resumed run numbered right: burn-train
/// 0.21's event store counts epochs from 1 in every process until an epoch ends, so the
/// metrics of the first epoch after a checkpoint went to `epoch-1` (overwriting the first
/// epoch's, which best-epoch selection then read as that epoch's). Until a split ends its first
/// epoch here, its metrics are logged as epoch `first`.
struct ResumedMetricLogger {
    inner: FileMetricLogger,
    first: usize,
    ended: Vec<Split>,
}

impl MetricLogger for ResumedMetricLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let epoch = if self.ended.contains(split) {
            epoch
        } else {
            self.first
        };
        self.inner.log(update, epoch, split);
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> std::result::Result<Vec<NumericEntry>, String> {
        self.inner.read_numeric(name, epoch, split)
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.inner.log_metric_definition(definition);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        if !self.ended.contains(&summary.split) {
            self.ended.push(summary.split.clone());
        }
        self.inner.log_epoch_summary(summary);
    }
}

/// Early stopping after `patience` epochs without a lower mean validation loss, deciding from
/// every epoch's loss as logged in the run folder: a resumed run stops where the uninterrupted
/// one would have (burn-train's `MetricEarlyStoppingStrategy` keeps the best epoch in memory,
/// so it started counting again at a resumption).
#[derive(Clone)]
struct LossPatience {
    patience: usize,
    /// This process's epochs' losses ([`ValidScores`]: the store may not have the newest).
    scores: ValidScores,
}

impl EarlyStoppingStrategy for LossPatience {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        self.scores.wait(epoch);
        let losses: Vec<Option<f64>> = (1..=epoch)
            .map(|e| self.scores.metric(store, "Loss", e))
            .collect();
        no_improvement_since(&losses, self.patience)
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

/// Whether the record file `path` (without extension) reads as an `R`.
fn readable<B: Backend, R: burn::record::Record<B>>(path: PathBuf, device: &B::Device) -> bool {
    RunRecorder::new().load::<R>(path, device).is_ok()
}

/// Trains on `train` features, validating on `valid`, in the run folder `run`. With `resume`,
/// an interrupted run of the same settings continues after its last finished epoch; without
/// it, a folder that already holds a run is an error. With several `devices` (of one
/// backend), training is data-parallel through burn-train's multi-device strategy, the first
/// device holding the optimiser.
pub fn train_micro_gesture<B: AutodiffBackend>(
    train: &FeatureSet,
    valid: &FeatureSet,
    config: &TrainConfig,
    run: &Path,
    resume: bool,
    devices: &[B::Device],
) -> Result<TrainSummary> {
    let device = main_device::<B>(devices, run)?;
    // Skeleton tokens are averaged over the body parts once, here: standardising commutes with
    // that average, so the statistics come from the tokens as extracted.
    let labelled = |set: &FeatureSet| -> Result<Vec<FeatureItem>> {
        let mut items = feature_items(set, run, Some(&config.fusion), config.streams)?;
        if config.transductive_centring {
            centre_video_features(&mut items);
        }
        Ok(items
            .into_iter()
            .map(|(_, i)| i)
            .filter(|i| i.label >= 0)
            .collect())
    };
    let (train_items, valid_items) = (labelled(train)?, labelled(valid)?);
    let inputs = feature_inputs(MICRO_GESTURE, train, valid, run)?;
    let run_spec = RunSpec::new(MICRO_GESTURE, inputs, config, run, resume)?;
    let skeleton_tokens = train
        .items
        .values()
        .filter(|t| item_label(t).is_some_and(|l| l >= 0))
        .filter_map(|t| t.get("skeleton_tokens"));
    let build = |items: &[FeatureItem]| {
        Ok(MicroGestureModel::<B>::new(config, device)?.standardised(
            items,
            skeleton_tokens,
            device,
        ))
    };
    fit(
        run_spec,
        build,
        (train_items, valid_items),
        (FeatureBatcher, FeatureBatcher),
        config.batch,
        Metrics::Classes,
        devices,
    )
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

/// Where a training run goes and what it is, checked against an earlier run in the folder.
pub(crate) struct RunSpec<'a> {
    run: &'a Path,
    /// The epochs a resumed run could continue after, newest first.
    resumable: Vec<usize>,
    epochs: usize,
    batch: usize,
    learning_rate: f64,
    min_learning_rate: f64,
    warmup_epochs: usize,
    weight_decay: f32,
    patience: usize,
    seed: u64,
    retention: Retention,
    /// One writer a run folder.
    _lock: miga_datasets::lock::FolderLock,
    /// Stops the run from inside a training step; its message becomes the error [`fit`]
    /// returns.
    pub(crate) interrupter: Interrupter,
    /// The epoch being trained, and when it started (training batchers read its number).
    pub(crate) clock: EpochClock,
}

impl<'a> RunSpec<'a> {
    /// Checks `run` (a new folder, or with `resume` one of the same settings and inputs, as
    /// `inputs` describes them), then writes `run.json`.
    pub(crate) fn new<F: Serialize, S: Serialize>(
        task: &str,
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
            task: task.into(),
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

/// The metrics a run logs each epoch, besides the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metrics {
    /// Accuracy and top-5 accuracy (micro-gestures).
    Classes,
    /// Accuracy and AUROC (Win/Lose).
    Binary,
}

/// Burn's AdamW (its default betas and epsilon) with each parameter's update as one pass on
/// the CPU ([`miga_kernels::adamw_update`]; Burn's makes 13 tensors a parameter). Its state is
/// Burn's `AdamWState`, so checkpoints are the same records; the first step (which creates the
/// moments) and other backends run Burn's own `AdamW`.
#[derive(Clone)]
struct FusedAdamW {
    burn: AdamW,
    update: miga_kernels::AdamWUpdate,
}

impl FusedAdamW {
    fn new(weight_decay: f32) -> Self {
        let (beta_1, beta_2, epsilon) = (0.9, 0.999, 1e-5);
        Self {
            burn: AdamWConfig::new()
                .with_beta_1(beta_1)
                .with_beta_2(beta_2)
                .with_epsilon(epsilon)
                .with_weight_decay(weight_decay)
                .build(),
            update: miga_kernels::AdamWUpdate {
                lr: 0.0,
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
                time: 0,
            },
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let Some(AdamWState {
            momentum:
                AdaptiveMomentumState {
                    time,
                    moment_1,
                    moment_2,
                    max_moment_2: None,
                },
        }) = state
        else {
            return self.burn.step(lr, tensor, grad, state);
        };
        let update = miga_kernels::AdamWUpdate {
            lr,
            time: time + 1,
            ..self.update
        };
        let state = |time, moment_1, moment_2| {
            Some(AdamWState::new(AdaptiveMomentumState::new(
                time, moment_1, moment_2,
            )))
        };
        match miga_kernels::adamw_update(tensor, grad, moment_1, moment_2, &update) {
            Ok([param, moment_1, moment_2]) => (param, state(update.time, moment_1, moment_2)),
            Err([tensor, grad, moment_1, moment_2]) => {
                self.burn
                    .step(lr, tensor, grad, state(time, moment_1, moment_2))
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

/// An optimiser whose updates run on the CPU pool's threads ([`miga_kernels::on_cpu_workers`]):
/// an AdamW update is a few operations per parameter tensor, each otherwise handed to the pool
/// from the training thread.
#[derive(Clone)]
struct OnCpuWorkers<O>(O);

impl<M, B, O> Optimizer<M, B> for OnCpuWorkers<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        let inner = &mut self.0;
        miga_kernels::on_cpu_workers::<B, _>(move || inner.step(lr, module, grads))
    }

    fn step_multi(&mut self, lr: f64, module: M, grads: MultiGradientsParams) -> M {
        let inner = &mut self.0;
        miga_kernels::on_cpu_workers::<B, _>(move || inner.step_multi(lr, module, grads))
    }

    fn to_record(&self) -> Self::Record {
        self.0.to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self(self.0.load_record(record))
    }
}

/// Whether `path` reads as the record of optimiser `_optimizer`.
fn readable_as<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>>(
    _optimizer: &O,
    path: PathBuf,
    device: &B::Device,
) -> bool {
    readable::<B, O::Record>(path, device)
}

/// A run resumed after `epoch` from a folder written before `best.json` existed (every epoch's
/// checkpoint kept, `best.mpk` chosen at the end): its best epoch so far, from the logs, is
/// written as `best.mpk` now, while its checkpoint is still there (retention would delete it).
fn best_of_earlier_run<B: AutodiffBackend, M: AutodiffModule<B>>(
    run: &Path,
    epoch: usize,
    device: &B::Device,
) -> Result<()> {
    if BestEpoch::read(run).is_some() {
        return Ok(());
    }
    let Ok(summary) = LearnerSummary::new(run, &["Accuracy"]) else {
        return Ok(());
    };
    let best = summary
        .metrics
        .valid
        .iter()
        .find(|m| m.name == "Accuracy")
        .into_iter()
        .flat_map(|m| m.entries.iter())
        .filter(|e| e.step <= epoch)
        .fold(None, |best: Option<(usize, f64)>, e| match best {
            Some((_, a)) if e.value / 100.0 <= a => best,
            _ => Some((e.step, e.value / 100.0)),
        });
    let Some((epoch, accuracy)) = best else {
        return Ok(());
    };
    let checkpoint = run.join(format!("checkpoint/model-{epoch}"));
    let Ok(record) = RunRecorder::new().load::<<M as Module<B>>::Record>(checkpoint, device) else {
        return Ok(());
    };
    let mismatch = |e: String| Error::Mismatch {
        path: run.join("best.mpk"),
        reason: e,
    };
    RunRecorder::new()
        .record::<<M as Module<B>>::Record>(record, run.join("best"))
        .map_err(|e| mismatch(e.to_string()))?;
    let json = serde_json::to_string_pretty(&BestEpoch { epoch, accuracy }).unwrap_or_default();
    miga_datasets::io::write_atomic(&run.join("best.json"), json.as_bytes())?;
    Ok(())
}

/// Trains `model` with burn-train as `spec` says: AdamW, warm-up then cosine, a checkpoint
/// every epoch, early stopping, then `best.mpk` (best validation accuracy) and `training.svg`.
/// `build` makes the model (from the training items) after the backend is seeded. The training
/// batches are made by the first batcher, the validation batches (of `valid_batch` items) by the
/// second.
pub(crate) fn fit<B, M, I, T, V>(
    spec: RunSpec<'_>,
    build: impl FnOnce(&[I]) -> Result<M>,
    (train, valid): (Vec<I>, Vec<I>),
    (batcher, valid_batcher): (T, V),
    valid_batch: usize,
    metrics: Metrics,
    devices: &[B::Device],
) -> Result<TrainSummary>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>
        + TrainStep<Output = ClassificationOutput<B>>
        + core::fmt::Display
        + 'static,
    M::InnerModule: InferenceStep<Output = ClassificationOutput<B::InnerBackend>>,
    I: Clone + core::fmt::Debug + Send + Sync + 'static,
    T: Batcher<B, I, <M as TrainStep>::Input> + 'static,
    V: Batcher<B::InnerBackend, I, <M::InnerModule as InferenceStep>::Input> + 'static,
    <M as TrainStep>::Input: Clone + core::fmt::Debug + Send + 'static,
    <M::InnerModule as InferenceStep>::Input: Clone + core::fmt::Debug + Send + 'static,
{
    let run = spec.run;
    let device = main_device::<B>(devices, run)?;
    if train.is_empty() || valid.is_empty() {
        return Err(Error::Mismatch {
            path: run.to_path_buf(),
            reason: "no labelled items in the training or validation features".into(),
        });
    }
    // Initialisation draws from the seed; each epoch seeds its own draws ([`EpochLoader`]).
    B::seed(device, spec.seed);
    let model = build(&train)?;
    let batches = train.len().div_ceil(spec.batch);
    let optimizer = OnCpuWorkers(OptimizerAdaptor::<_, M, B>::from(FusedAdamW::new(
        spec.weight_decay,
    )));
    // The newest epoch whose checkpoint reads back: a process killed while writing one leaves
    // a truncated or missing file, and the run then continues after the epoch before.
    let dir = run.join("checkpoint");
    let start = spec.resumable.iter().copied().find(|epoch| {
        readable::<B, <M as Module<B>>::Record>(dir.join(format!("model-{epoch}")), device)
            && readable_as(&optimizer, dir.join(format!("optim-{epoch}")), device)
            && readable::<B, <ComposedLrScheduler as LrScheduler>::Record<B>>(
                dir.join(format!("scheduler-{epoch}")),
                device,
            )
    });
    let first = start.map_or(1, |epoch| epoch + 1);
    let clock = spec.clock.clone();
    let loader_train: Arc<dyn DataLoader<B, <M as TrainStep>::Input>> = Arc::new(EpochLoader::new(
        Arc::new(InMemDataset::new(train)),
        Arc::new(batcher),
        (spec.batch, spec.seed, first),
        device.clone(),
        clock.clone(),
    ));
    let loader_valid: Arc<
        dyn DataLoader<B::InnerBackend, <M::InnerModule as InferenceStep>::Input>,
    > = DataLoaderBuilder::new(valid_batcher)
        .batch_size(valid_batch.max(1))
        .build(InMemDataset::new(valid));
    let bad = |e: String| Error::InvalidConfig {
        path: "learning rate".into(),
        reason: e,
    };
    let warmup = (spec.warmup_epochs * batches).max(1);
    let scheduler = ComposedLrSchedulerConfig::new()
        .linear(LinearLrSchedulerConfig::new(0.01, 1.0, warmup))
        .cosine(
            CosineAnnealingLrSchedulerConfig::new(spec.learning_rate, spec.epochs * batches)
                .with_min_lr(spec.min_learning_rate),
        )
        .init()
        .map_err(|e| bad(format!("{e:?}")))?;
    if let Some(epoch) = start {
        best_of_earlier_run::<B, M>(run, epoch, device)?;
    }
    let scores = ValidScores::default();
    let (strategy, recorder) = RunCheckpoints::new(
        run,
        spec.retention,
        spec.epochs,
        spec.patience,
        scores.clone(),
    );
    let training = SupervisedTraining::new(run, loader_train, loader_valid);
    let mut training = match metrics {
        Metrics::Classes => training.metrics((
            AccuracyMetric::new(),
            TopKAccuracyMetric::new(5),
            LossMetric::new(),
        )),
        Metrics::Binary => {
            training.metrics((AccuracyMetric::new(), AurocMetric::new(), LossMetric::new()))
        }
    }
    .with_file_checkpointer(recorder)
    .with_checkpointing_strategy(strategy)
    .num_epochs(spec.epochs)
    .renderer(EpochLines {
        clock,
        names: Default::default(),
        sums: BTreeMap::new(),
        scores: scores.clone(),
    })
    .with_application_logger(None);
    if spec.patience > 0 {
        training = training.early_stopping(LossPatience {
            patience: spec.patience,
            scores,
        });
    }
    if let Some(epoch) = start {
        training = training.checkpoint(epoch);
    }
    training = training.with_metric_logger(ResumedMetricLogger {
        inner: FileMetricLogger::new(run),
        first,
        ended: Vec::new(),
    });
    if devices.len() > 1 {
        training = training.with_training_strategy(TrainingStrategy::Default(
            ExecutionStrategy::multi(devices.to_vec(), MultiDeviceOptim::OptimMainDevice),
        ));
    }
    let result = training
        .with_interrupter(spec.interrupter.clone())
        .launch(Learner::new(model, optimizer, scheduler));
    // A step that stopped the run: the epochs finished before it are checkpointed (burn-train
    // saves no interrupted epoch), so `--resume` continues once the cause is fixed; no best
    // model or plot is written for a run that did not finish.
    if spec.interrupter.should_stop() {
        return Err(Error::Mismatch {
            path: run.to_path_buf(),
            reason: format!(
                "training stopped: {}; the finished epochs are kept, fix the cause and pass \
                 --resume to continue",
                spec.interrupter.get_message().unwrap_or_default()
            ),
        });
    }
    let summary = LearnerSummary::new(run, &["Loss", "Accuracy"]).map_err(|e| Error::Mismatch {
        path: run.to_path_buf(),
        reason: e,
    })?;
    // `best.mpk` was written as its epoch's validation ended; only a run whose epochs all
    // failed to validate has none, and keeps its last model.
    let best = match BestEpoch::read(run) {
        Some(best) if run.join("best.mpk").exists() => best,
        _ => {
            result
                .model
                .save_file(run.join("best"), &RunRecorder::new())
                .map_err(|e| Error::Mismatch {
                    path: run.join("best.mpk"),
                    reason: e.to_string(),
                })?;
            BestEpoch {
                epoch: 0,
                accuracy: f64::MIN,
            }
        }
    };
    prune(run, spec.retention)?;
    let curves: Vec<Curve> = ["Loss", "Accuracy"]
        .into_iter()
        .flat_map(|name| {
            let pick = move |split: &[burn::train::MetricSummary], label: &str| {
                split.iter().find(|m| m.name == name).map(|m| Curve {
                    label: format!("{label} {name}"),
                    points: m.entries.iter().map(|e| (e.step as f64, e.value)).collect(),
                })
            };
            [
                pick(&summary.metrics.train, "train"),
                pick(&summary.metrics.valid, "valid"),
            ]
        })
        .flatten()
        .collect();
    let plot = run.join("training.svg");
    let (loss, acc): (Vec<Curve>, Vec<Curve>) =
        curves.into_iter().partition(|c| c.label.ends_with("Loss"));
    miga_datasets::io::write_atomic(
        &plot,
        line_chart("Training", &[("loss", loss), ("accuracy (%)", acc)]).as_bytes(),
    )?;
    Ok(TrainSummary {
        epochs: summary.epochs,
        best_epoch: best.epoch,
        best_accuracy: best.accuracy,
        plot,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::backend::{Autodiff, Flex};

    use super::*;
    use crate::extract::tests::tiny_features;

    /// The fused AdamW follows Burn's over several steps (the first one is Burn's own).
    #[test]
    fn fused_adamw_matches_burns() {
        type B = Autodiff<Flex>;
        type Model = burn::nn::Linear<B>;
        let device = Default::default();
        let _rng = crate::rng_lock();
        B::seed(&device, 3);
        // Parameters are initialised on first use: use them once so that every clone starts
        // from the same values.
        let start = burn::nn::LinearConfig::new(300, 7).init::<B>(&device);
        let initial = start.weight.val().into_data();
        let _ = start.bias.as_ref().map(|b| b.val());
        let x = Tensor::<B, 2>::random([5, 300], burn::tensor::Distribution::Default, &device);
        let train = |optimizer: &mut dyn FnMut(Model, GradientsParams) -> Model| {
            let mut model = start.clone();
            for step in 0..4 {
                let loss = (model.forward(x.clone()) * (step as f64 + 1.0))
                    .powi_scalar(2)
                    .sum();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer(model, grads);
            }
            model.weight.val().into_data()
        };
        let mut fused = OptimizerAdaptor::<_, Model, B>::from(FusedAdamW::new(0.05));
        let mut burn = AdamWConfig::new()
            .with_weight_decay(0.05)
            .init::<B, Model>();
        let ours = train(&mut |m, g| fused.step(1e-2, m, g));
        let theirs = train(&mut |m, g| burn.step(1e-2, m, g));
        assert_ne!(ours, initial);
        ours.assert_approx_eq::<f32>(&theirs, burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn skeleton_tokens_are_averaged_per_body_part() {
        // Two steps of three joints, two channels.
        let tokens = TensorData::new((0..12).map(|v| v as f32).collect(), [2, 3, 2]);
        let parts = CmtfConfig::new().with_skeleton_parts(vec![vec![0, 1], vec![2]]);
        let pooled = average_parts(&tokens, &parts).unwrap();
        assert_eq!(pooled.shape, [2, 2, 2].into());
        let expected = [1.0f32, 2.0, 4.0, 5.0, 7.0, 8.0, 10.0, 11.0];
        assert_eq!(pooled.to_vec::<f32>().unwrap(), expected);
        let all = average_parts(&tokens, &CmtfConfig::new()).unwrap();
        assert_eq!(all.to_vec::<f32>().unwrap(), [2.0f32, 3.0, 8.0, 9.0]);
        let far = CmtfConfig::new().with_skeleton_parts(vec![vec![3]]);
        assert!(
            average_parts(&tokens, &far)
                .unwrap_err()
                .contains("joint 3")
        );
        let flat = TensorData::new(vec![0.0f32; 4], [4]);
        assert!(
            average_parts(&flat, &parts)
                .unwrap_err()
                .contains("[T, V, C]")
        );
        let empty = TensorData::new(Vec::<f32>::new(), [2, 0, 2]);
        assert!(
            average_parts(&empty, &parts)
                .unwrap_err()
                .contains("no joints")
        );
    }

    #[test]
    fn a_standardised_model_scores_pooled_and_unpooled_items_alike() {
        // Extraction and initialisation draw from the backend's (global) generator.
        let _rng = crate::rng_lock();
        let (train_dir, _) = tiny_features("pooled");
        let set = FeatureSet::read(&train_dir).unwrap();
        let device = Default::default();
        let config = TrainConfig {
            fusion: tiny_config(1)
                .fusion
                .with_skeleton_parts(vec![vec![0, 1, 2], vec![3, 4]]),
            ..tiny_config(1)
        };
        let items = |fusion: Option<&CmtfConfig>| -> Vec<FeatureItem> {
            feature_items(&set, &train_dir, fusion, Streams::Both)
                .unwrap()
                .into_iter()
                .map(|(_, i)| i)
                .collect()
        };
        let (full, pooled) = (items(None), items(Some(&config.fusion)));
        let model = MicroGestureModel::<Flex>::new(&config, &device)
            .unwrap()
            .standardised(
                &full,
                full.iter().filter_map(|i| i.skeleton.as_ref()),
                &device,
            );
        let scores = |items: Vec<FeatureItem>| model.logits(&FeatureBatcher.batch(items, &device));
        let diff: f32 = (scores(full) - scores(pooled)).abs().max().into_scalar();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn early_stopping_counts_from_the_logged_losses() {
        let losses = [Some(1.0), Some(0.5), Some(0.6), Some(0.5), Some(0.7)];
        // The lowest is epoch 2 (epoch 4 only equals it).
        let stops = |n: usize, patience| no_improvement_since(&losses[..n], patience);
        assert!(!stops(2, 2) && !stops(3, 2) && stops(4, 2) && stops(5, 3));
        assert!(!stops(5, 4));
        // Decided from the logs alone: a strategy made after a resumption answers alike, and
        // an epoch whose loss is not logged never stops the run.
        assert!(!no_improvement_since(&[Some(1.0), Some(2.0), None], 1));
        assert!(no_improvement_since(&[None, Some(1.0), Some(2.0)], 1));
    }

    #[test]
    fn video_features_are_centred_per_video() {
        let item = |video: [f32; 4], class: [f32; 2]| FeatureItem {
            video: Some(TensorData::new(video.to_vec(), [2, 1, 1, 2])),
            class: Some(TensorData::new(class.to_vec(), [2])),
            skeleton: Some(TensorData::new(vec![7.0f32; 2], [1, 1, 2])),
            label: 0,
            skeleton_pooled: false,
        };
        let mut items = vec![
            ("0001_0".to_string(), item([1.0, 2.0, 3.0, 4.0], [1.0, 0.0])),
            ("0001_1".to_string(), item([5.0, 6.0, 7.0, 8.0], [3.0, 2.0])),
            ("0002_0".to_string(), item([1.0, 1.0, 2.0, 2.0], [4.0, 4.0])),
        ];
        centre_video_features(&mut items);
        let values = |t: &Option<TensorData>| t.as_ref().unwrap().to_vec::<f32>().unwrap();
        // Video 0001: token mean (4, 5), class mean (2, 1).
        assert_eq!(values(&items[0].1.video), [-3.0, -3.0, -1.0, -1.0]);
        assert_eq!(values(&items[1].1.video), [1.0, 1.0, 3.0, 3.0]);
        assert_eq!(values(&items[1].1.class), [1.0, 1.0]);
        assert_eq!(
            items[1].1.video.as_ref().unwrap().shape,
            [2, 1, 1, 2].into()
        );
        // A video of one clip keeps only its change over time; skeletons are left alone.
        assert_eq!(values(&items[2].1.video), [-0.5, -0.5, 0.5, 0.5]);
        assert_eq!(values(&items[2].1.class), [0.0, 0.0]);
        assert_eq!(values(&items[2].1.skeleton), [7.0, 7.0]);
    }

    pub(crate) fn tiny_config(epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch: 4,
            warmup_epochs: 1,
            patience: 0,
            fusion: CmtfConfig::new()
                .with_d_model(32)
                .with_heads(2)
                .with_ff_dim(64)
                .with_layers(1),
            ..TrainConfig::default()
        }
    }

    /// The validation scores of the model checkpointed after `epoch` in `run`.
    fn checkpoint_scores(
        run: &Path,
        epoch: usize,
        config: &TrainConfig,
        set: &FeatureSet,
    ) -> Vec<f32> {
        let device = Default::default();
        let record = RunRecorder::new()
            .load(run.join(format!("checkpoint/model-{epoch}")), &device)
            .unwrap();
        let model = MicroGestureModel::<Flex>::new(config, &device)
            .unwrap()
            .load_record(record);
        let items = feature_items(set, run, None, Streams::Both).unwrap();
        let batch = FeatureBatcher.batch(items.into_iter().map(|(_, i)| i).collect(), &device);
        model.logits(&batch).into_data().to_vec().unwrap()
    }

    /// Retention: a run of many short epochs never holds more than the configured checkpoints
    /// (plus the one being written), ends with exactly them, keeps `best.mpk` and `best.json`
    /// of the best epoch, and a run killed while writing, resumed after retention removed the
    /// older checkpoints, ends with the weights of the uninterrupted run.
    #[test]
    fn keeps_the_configured_checkpoints_and_resumes_after_retention() {
        let _rng = crate::rng_lock();
        let (train_dir, valid_dir) = tiny_features("retention");
        let (train, valid) = (
            FeatureSet::read(&train_dir).unwrap(),
            FeatureSet::read(&valid_dir).unwrap(),
        );
        let config = TrainConfig {
            keep_checkpoints: 2,
            keep_every: 5,
            checkpoint_every: 1,
            ..tiny_config(12)
        };
        let device = Default::default();
        let run = |name: &str| {
            let dir = std::env::temp_dir().join(format!("miga-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            dir
        };
        let (whole, killed) = (run("retention-whole"), run("retention-killed"));
        // A watcher samples the folder while the run writes it.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (done, dir) = (done.clone(), whole.clone());
            std::thread::spawn(move || {
                let mut most = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let rolling = checkpoints(&dir).iter().filter(|&&e| e % 5 != 0).count();
                    most = most.max(rolling);
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                most
            })
        };
        let summary = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &config,
            &whole,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let most = watcher.join().unwrap();
        assert!(most <= 3, "{most} rolling checkpoints at once");
        assert_eq!(summary.epochs, 12);
        // The finished run keeps its last checkpoint and the `keep_every` ones.
        assert_eq!(checkpoints(&whole), [5, 10, 12]);
        let files = std::fs::read_dir(whole.join("checkpoint")).unwrap().count();
        assert_eq!(files, 9, "three files a checkpoint, nothing else");
        // `best.mpk` is the best epoch's model, chosen as the logs choose it.
        let best = BestEpoch::read(&whole).unwrap();
        assert_eq!(
            (best.epoch, best.accuracy),
            (summary.best_epoch, summary.best_accuracy)
        );
        let logged: Vec<f64> = LearnerSummary::new(&whole, &["Accuracy"])
            .unwrap()
            .metrics
            .valid
            .iter()
            .find(|m| m.name == "Accuracy")
            .unwrap()
            .entries
            .iter()
            .map(|e| e.value / 100.0)
            .collect();
        assert_eq!(logged.len(), 12);
        let first_best = logged
            .iter()
            .enumerate()
            .fold(0, |b, (e, &a)| if a > logged[b] { e } else { b });
        assert_eq!(best.epoch, first_best + 1, "{logged:?}");
        assert_eq!(best.accuracy, logged[first_best]);
        let device_scores = |dir: &Path, epoch| checkpoint_scores(dir, epoch, &config, &valid);
        let best_scores = {
            let model = MicroGestureModel::<Flex>::new(&config, &device)
                .unwrap()
                .load_file(whole.join("best"), &RunRecorder::new(), &device)
                .unwrap();
            let items = feature_items(&valid, &whole, None, Streams::Both).unwrap();
            let batch = FeatureBatcher.batch(items.into_iter().map(|(_, i)| i).collect(), &device);
            model.logits(&batch).into_data().to_vec::<f32>().unwrap()
        };
        // The same run, killed while it wrote epoch 12's checkpoint: epochs 5, 10 (kept every
        // 5) and 11 (the newest complete one) are there, the older rolling ones are gone, a
        // temporary file is left. (Made from a run that kept everything: the checkpoint
        // settings change no weight, and a resumed run may change them.)
        let keep_all = TrainConfig {
            keep_every: 1,
            ..config.clone()
        };
        train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &keep_all,
            &killed,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(checkpoints(&killed), (1..=12).collect::<Vec<_>>());
        let scores_all = |epoch| device_scores(&killed, epoch);
        assert_eq!(scores_all(12), device_scores(&whole, 12));
        assert_eq!(scores_all(best.epoch), best_scores);
        for epoch in (1..=12).filter(|e| ![5, 10, 11].contains(e)) {
            for kind in ["model", "optim", "scheduler"] {
                std::fs::remove_file(killed.join(format!("checkpoint/{kind}-{epoch}.mpk")))
                    .unwrap();
            }
        }
        std::fs::write(
            killed.join("checkpoint/.partial-1-optim-12.mpk"),
            b"cut short",
        )
        .unwrap();
        for split in ["train", "valid"] {
            std::fs::remove_dir_all(killed.join(format!("{split}/epoch-12"))).unwrap();
        }
        let resumed = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &config,
            &killed,
            true,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(resumed.epochs, 12);
        assert_eq!(checkpoints(&killed), [5, 10, 12]);
        assert!(!killed.join("checkpoint/.partial-1-optim-12.mpk").exists());
        assert_eq!(device_scores(&killed, 12), device_scores(&whole, 12));
        assert_eq!(BestEpoch::read(&killed), Some(best));
        for dir in [whole, killed] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn trains_checkpoints_every_epoch_and_resumes() {
        // Every epoch's checkpoint kept.
        let every_epoch = || TrainConfig {
            keep_every: 1,
            ..tiny_config(2)
        };
        let _rng = crate::rng_lock();
        let (train_dir, valid_dir) = tiny_features("train");
        let (train, valid) = (
            FeatureSet::read(&train_dir).unwrap(),
            FeatureSet::read(&valid_dir).unwrap(),
        );
        let run = std::env::temp_dir().join(format!("miga-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let device = Default::default();
        let summary = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &every_epoch(),
            &run,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(summary.epochs, 2);
        for file in [
            "checkpoint/model-1.mpk",
            "checkpoint/model-2.mpk",
            "best.mpk",
            "training.svg",
            "run.json",
        ] {
            assert!(run.join(file).exists(), "{file}");
        }
        assert!((1..=2).contains(&summary.best_epoch));
        // A second run in the same folder needs --resume; with it, training goes on from epoch 2.
        let again = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &every_epoch(),
            &run,
            false,
            std::slice::from_ref(&device),
        );
        assert!(again.err().unwrap().to_string().contains("--resume"));
        let other = TrainConfig {
            seed: 9,
            ..every_epoch()
        };
        let message = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &other,
            &run,
            true,
            std::slice::from_ref(&device),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(message.contains("other settings"), "{message}");
        // Resuming a finished run has nothing left to train.
        let resumed = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &every_epoch(),
            &run,
            true,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(resumed.epochs, 2);
        // A checkpoint cut short (a kill while it was written) is passed over: the run goes on
        // after epoch 1.
        let model = run.join("checkpoint/model-2.mpk");
        let bytes = std::fs::read(&model).unwrap();
        let scores = checkpoint_scores(&run, 2, &every_epoch(), &valid);
        std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(checkpoints(&run), [1, 2]);
        let logs = |epoch: usize| {
            ["train", "valid"].map(|split| {
                std::fs::read_to_string(run.join(format!("{split}/epoch-{epoch}/Loss.log")))
                    .unwrap()
            })
        };
        let epoch_1 = logs(1);
        for split in ["train", "valid"] {
            std::fs::remove_dir_all(run.join(format!("{split}/epoch-2"))).unwrap();
        }
        let resumed = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &every_epoch(),
            &run,
            true,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(resumed.epochs, 2);
        // Epoch 2 trained again is the epoch 2 of the uninterrupted run, bit for bit.
        assert_eq!(checkpoint_scores(&run, 2, &every_epoch(), &valid), scores);
        // The retrained epoch has its own logs; the first epoch's are untouched.
        assert_eq!(logs(1), epoch_1);
        assert!(logs(2).iter().all(|log| !log.is_empty()));
    }

    #[test]
    fn trains_data_parallel_on_two_cpu_devices() {
        let _rng = crate::rng_lock();
        let (train_dir, valid_dir) = tiny_features("parallel");
        let (train, valid) = (
            FeatureSet::read(&train_dir).unwrap(),
            FeatureSet::read(&valid_dir).unwrap(),
        );
        let run = std::env::temp_dir().join(format!("miga-run-parallel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let devices = vec![Default::default(); 2];
        let summary = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &tiny_config(2),
            &run,
            false,
            &devices,
        )
        .unwrap();
        assert_eq!(summary.epochs, 2);
        assert!(run.join("checkpoint/model-2.mpk").exists() && run.join("best.mpk").exists());
        let none: Vec<burn::backend::flex::FlexDevice> = Vec::new();
        let message = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &tiny_config(2),
            &run.join("none"),
            false,
            &none,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(message.contains("no device"), "{message}");
    }
}
