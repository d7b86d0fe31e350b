//! The emotion task (Win/Lose per video): SwinFace face embeddings and MViTv2 context
//! embeddings extracted per video ([`extract_emotion`]), InterFusion trained on them
//! ([`train_emotion`]), and its evaluation (accuracy, F1, AUROC) and per-video predictions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use miga_backbones::mvit::Mvit;
use miga_backbones::swin::{SwinFace, SwinFaceConfig};
use miga_datasets::emotion::{EmotionConfig, EmotionDataset, EmotionRecord};
use miga_fusion::{
    ClassificationLossConfig, InterFusion, InterFusionConfig, InterFusionInput, InterFusionVariant,
    Sequence,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::evaluate::{Scores, load_best, score_items};
use crate::extract::{ExtractSummary, Weights, drawn_now, mvit, part_todo};
use crate::features::{FeatureKind, FeatureSet, FeatureWriter, item_label};
use crate::standardise::Standardise;
use crate::train::{Metrics, RunSpec, TrainConfig, TrainSummary, feature_inputs, fit, main_device};
use crate::{Error, Result};

/// Task name of emotion features and runs.
pub const EMOTION: &str = "emotion";

/// Which streams emotion extraction computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmotionExtractStreams {
    /// SwinFace embeddings of the faces and MViTv2 embeddings of the context windows.
    #[default]
    Both,
    /// Faces only (needs the video and its skeleton, which places the faces).
    Face,
    /// Context only (needs the video; the skeleton only for `video.rgb.person_box`).
    Context,
}

impl EmotionExtractStreams {
    fn face(self) -> bool {
        self != Self::Context
    }
    fn context(self) -> bool {
        self != Self::Face
    }
}

/// How emotion features are extracted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmotionExtraction {
    /// The streams extracted.
    pub streams: EmotionExtractStreams,
    /// Context windows, face crops and their sampling.
    pub video: EmotionConfig,
    /// MViTv2 preset of the context windows (`mvit_v2_s`, `mvit_v2_b`, `mvit_v2_xs`).
    pub mvit: String,
    /// SwinFace backbone preset (`swinface`, `swinface_xs`).
    pub swinface: String,
    /// Also store SwinFace's facial-expression probabilities (7 per face; `swinface` only).
    pub expressions: bool,
    /// Faces a SwinFace forward pass.
    pub face_batch: usize,
    /// Videos a shard.
    pub shard_items: usize,
    /// Seed of the backbones' random initialisation when no weights are given.
    pub seed: u64,
}

impl Default for EmotionExtraction {
    fn default() -> Self {
        Self {
            streams: EmotionExtractStreams::Both,
            video: EmotionConfig::default(),
            mvit: "mvit_v2_s".into(),
            swinface: "swinface".into(),
            expressions: true,
            face_batch: 32,
            shard_items: 16,
            seed: 0,
        }
    }
}

/// The backbones of the streams extracted.
struct Backbones<B: Backend> {
    mvit: Option<Mvit<B>>,
    swinface: Option<SwinFace<B>>,
}

/// Seeds of the randomly initialised backbones: MViTv2 draws from the settings' seed,
/// SwinFace from it mixed with this, so that each is the same whichever streams are extracted.
const SWINFACE_SEED: u64 = 0x5eed_face;

fn backbones<B: Backend>(
    settings: &EmotionExtraction,
    weights: &Weights,
    device: &B::Device,
) -> Result<Backbones<B>> {
    let video = &settings.video;
    let mvit = match settings.streams.context() {
        true => {
            B::seed(device, settings.seed);
            Some(mvit(
                &settings.mvit,
                video.frames,
                video.rgb.crop,
                weights,
                device,
            )?)
        }
        false => None,
    };
    let swinface = match settings.streams.face() {
        true => {
            let face = SwinFaceConfig::preset(&settings.swinface, settings.expressions)?;
            Some(match &weights.swinface {
                Some(path) => face.load_checkpoint(path, device)?,
                None => {
                    B::seed(device, settings.seed ^ SWINFACE_SEED);
                    drawn_now(face.init(device)?)
                }
            })
        }
        false => None,
    };
    Ok(Backbones { mvit, swinface })
}

/// Extracts part `part = (i, n)` of the emotion videos `records` into `out`: per video
/// `context_embeddings` `[windows, C]` (MViTv2's normalised class token of each window),
/// `face_embeddings` `[faces, 512]` and, with `expressions`, `face_expressions` `[faces, 7]`
/// (absent for a video without a usable face), and `label` (1 Win, 0 Lose, -1 unknown).
/// Resumes an earlier run of the same part and settings; `progress(done, total)` is called after
/// each video.
pub fn extract_emotion<B: Backend>(
    records: Vec<EmotionRecord>,
    settings: &EmotionExtraction,
    weights: &Weights,
    out: &Path,
    part: (usize, usize),
    device: &B::Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExtractSummary> {
    let description = serde_json::json!({
        "settings": settings,
        "mvit_weights": weights.mvit,
        "swinface_weights": weights.swinface,
    });
    let kind = FeatureKind {
        task: EMOTION.into(),
        settings: description.to_string(),
    };
    let mut writer = FeatureWriter::open(out, kind, part, settings.shard_items)?;
    let (clips, todo) = part_todo(records, |r| &r.id, part, &writer);
    let resumed = clips - todo.len();
    // Only the streams extracted are decoded; the skeleton tensor is not used here.
    let dataset = EmotionDataset::new(
        todo,
        EmotionConfig {
            windows: if settings.streams.context() {
                settings.video.windows
            } else {
                0
            },
            faces: if settings.streams.face() {
                settings.video.faces
            } else {
                0
            },
            skeleton_frames: 0,
            ..settings.video.clone()
        },
    )?;
    let models = backbones::<B>(settings, weights, device)?;
    let total = dataset.len();
    let mut failed = Vec::new();
    let mut extracted = 0;
    progress(0, total);
    // Two videos decode in parallel while the backbones run on one at a time.
    for start in (0..total).step_by(2) {
        let items: Vec<_> = (start..(start + 2).min(total))
            .into_par_iter()
            .filter_map(|i| dataset.get(i))
            .collect();
        for item in items {
            let data = match item.data {
                Ok(data) => data,
                Err(reason) => {
                    failed.push((item.id, reason));
                    continue;
                }
            };
            let mut tensors = BTreeMap::from([(
                "label".to_string(),
                TensorData::new(vec![item.label.map_or(-1.0, |l| l as f32)], [1]),
            )]);
            if let (Some(mvit), Some(windows)) = (&models.mvit, data.context) {
                let context = Tensor::<B, 5>::from_data(windows, device);
                tensors.insert(
                    "context_embeddings".to_string(),
                    miga_kernels::on_cpu_workers::<B, _>(|| mvit.try_forward(context))?
                        .embedding
                        .into_data(),
                );
            }
            let faces = data.face_frames.len();
            if let Some(swinface) = models.swinface.as_ref().filter(|_| faces > 0) {
                let crops = Tensor::<B, 4>::from_data(data.faces, device);
                let (mut embeddings, mut expressions) = (Vec::new(), Vec::new());
                for first in (0..faces).step_by(settings.face_batch.max(1)) {
                    let n = settings.face_batch.max(1).min(faces - first);
                    let crops = crops.clone().narrow(0, first, n);
                    let out = miga_kernels::on_cpu_workers::<B, _>(|| swinface.try_forward(crops))?;
                    expressions.extend(out.expression_probabilities());
                    embeddings.push(out.embedding);
                }
                tensors.insert(
                    "face_embeddings".into(),
                    Tensor::cat(embeddings, 0).into_data(),
                );
                if !expressions.is_empty() {
                    tensors.insert(
                        "face_expressions".into(),
                        Tensor::cat(expressions, 0).into_data(),
                    );
                }
            }
            writer.push(&item.id, tensors)?;
            extracted += 1;
        }
        progress((start + 2).min(total), total);
    }
    writer.finish()?;
    Ok(ExtractSummary {
        clips,
        resumed,
        extracted,
        failed,
    })
}

/// Which streams an emotion model sees: both (InterFusion), one (the baselines), or both
/// through late fusion (the mean of two single-stream models' logits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmotionStreams {
    /// Faces and context, InterFusion.
    #[default]
    Both,
    /// Faces only.
    Face,
    /// Context only.
    Context,
    /// Faces and context, late fusion.
    Late,
}

impl EmotionStreams {
    /// The InterFusion variant that sees these streams.
    pub fn variant(self) -> InterFusionVariant {
        match self {
            Self::Both => InterFusionVariant::Full,
            Self::Face => InterFusionVariant::FaceOnly,
            Self::Context => InterFusionVariant::ContextOnly,
            Self::Late => InterFusionVariant::LateFusion,
        }
    }
}

/// Emotion training settings (`miga train --task emotion --print-config` shows the defaults;
/// the fusion variant follows `streams`).
pub type EmotionTrainConfig = TrainConfig<InterFusionConfig, EmotionStreams>;

impl Default for EmotionTrainConfig {
    fn default() -> Self {
        Self {
            streams: EmotionStreams::Both,
            epochs: 40,
            batch: 8,
            learning_rate: 5e-4,
            min_learning_rate: 1e-5,
            warmup_epochs: 2,
            weight_decay: 0.05,
            patience: 10,
            seed: 0,
            keep_checkpoints: 2,
            keep_every: 0,
            checkpoint_every: 0,
            transductive_centring: false,
            fusion: InterFusionConfig::new(),
            loss: ClassificationLossConfig::new(),
        }
    }
}

/// One video's emotion features.
#[derive(Debug, Clone)]
pub struct EmotionFeatures {
    /// `[faces, face_dim]`, none without a usable face.
    face: Option<TensorData>,
    /// `[faces, 7]`, when extracted.
    expressions: Option<TensorData>,
    /// `[windows, context_dim]`, when the model sees the context.
    context: Option<TensorData>,
    label: i64,
}

impl EmotionFeatures {
    /// 1 Win, 0 Lose, -1 unknown.
    pub fn label(&self) -> i64 {
        self.label
    }
}

/// The emotion feature items of a set, in id order, with the streams `streams` sees: a set
/// extracted without one of them is an error saying so (a video without a usable face has no
/// face tensors either way: the model masks its face stream).
pub fn emotion_items(
    set: &FeatureSet,
    path: &Path,
    streams: EmotionStreams,
) -> Result<Vec<(String, EmotionFeatures)>> {
    if set.kind.task != EMOTION {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!("features for task `{}`, not {EMOTION}", set.kind.task),
        });
    }
    let extracted = serde_json::from_str::<serde_json::Value>(&set.kind.settings)
        .ok()
        .and_then(|d| serde_json::from_value(d["settings"]["streams"].clone()).ok())
        .unwrap_or_default();
    let (face, context) = (
        streams != EmotionStreams::Context,
        streams != EmotionStreams::Face,
    );
    let missing = match extracted {
        EmotionExtractStreams::Context if face => Some("face"),
        EmotionExtractStreams::Face if context => Some("context"),
        _ => None,
    };
    if let Some(missing) = missing {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!(
                "these features were extracted without the {missing} stream, which the model's \
                 streams ({streams:?}) need; extract it, or train --streams {} on them",
                if missing == "face" { "context" } else { "face" }
            ),
        });
    }
    set.items
        .iter()
        .map(|(id, tensors)| {
            let context = match context {
                true => Some(tensors.get("context_embeddings").cloned().ok_or_else(|| {
                    Error::Mismatch {
                        path: path.to_path_buf(),
                        reason: format!("item {id} has no `context_embeddings`"),
                    }
                })?),
                false => None,
            };
            let label = item_label(tensors).unwrap_or(-1);
            Ok((
                id.clone(),
                EmotionFeatures {
                    face: tensors.get("face_embeddings").cloned().filter(|_| face),
                    expressions: tensors.get("face_expressions").cloned().filter(|_| face),
                    context,
                    label,
                },
            ))
        })
        .collect()
}

/// A batch of videos' emotion features, padded to the longest sequence of the batch.
#[derive(Debug, Clone)]
pub struct EmotionFeatureBatch<B: Backend> {
    /// Face embeddings (none when no video of the batch has a face).
    pub face: Option<Sequence<B>>,
    /// Expression probabilities, one row per face (when extracted).
    pub expressions: Option<Tensor<B, 3>>,
    /// Context embeddings (none when the model does not see them).
    pub context: Option<Sequence<B>>,
    /// `[B]`: 1 Win, 0 Lose.
    pub labels: Tensor<B, 1, Int>,
}

/// Stacks [`EmotionFeatures`], padding sequences.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmotionFeatureBatcher;

/// `[B, N, C]` from per-item `[n_i, C]` rows (`None`: none), zero-padded, with the padding mask.
fn pad<B: Backend>(
    rows: &[Option<&TensorData>],
    device: &B::Device,
) -> Option<(Tensor<B, 3>, Tensor<B, 2, Bool>)> {
    let width = rows.iter().flatten().next()?.shape[1];
    let longest = rows.iter().flatten().map(|r| r.shape[0]).max()?.max(1);
    let mut values = vec![0.0f32; rows.len() * longest * width];
    let mut padding = vec![true; rows.len() * longest];
    for (i, row) in rows.iter().enumerate() {
        let Some(data) = row else { continue };
        let n = data.shape[0];
        let v = data.to_vec::<f32>().unwrap_or_default();
        let at = i * longest * width;
        values[at..at + v.len()].copy_from_slice(&v);
        padding[i * longest..i * longest + n].fill(false);
    }
    Some((
        Tensor::from_data(
            TensorData::new(values, [rows.len(), longest, width]),
            device,
        ),
        Tensor::from_data(TensorData::new(padding, [rows.len(), longest]), device),
    ))
}

impl<B: Backend> Batcher<B, EmotionFeatures, EmotionFeatureBatch<B>> for EmotionFeatureBatcher {
    fn batch(&self, items: Vec<EmotionFeatures>, device: &B::Device) -> EmotionFeatureBatch<B> {
        let faces: Vec<_> = items.iter().map(|i| i.face.as_ref()).collect();
        let expressions: Vec<_> = items.iter().map(|i| i.expressions.as_ref()).collect();
        let contexts: Vec<_> = items.iter().map(|i| i.context.as_ref()).collect();
        let labels: Vec<i64> = items.iter().map(|i| i.label).collect();
        EmotionFeatureBatch {
            face: pad(&faces, device).map(|(t, p)| Sequence::new(t).with_padding(p)),
            expressions: pad(&expressions, device).map(|(t, _)| t),
            context: pad(&contexts, device).map(|(t, p)| Sequence::new(t).with_padding(p)),
            labels: Tensor::from_data(TensorData::new(labels.clone(), [labels.len()]), device),
        }
    }
}

/// InterFusion with its loss, as burn-train trains it.
#[derive(Module, Debug)]
pub struct EmotionModel<B: Backend> {
    /// The fusion module.
    pub fusion: InterFusion<B>,
    /// Standardisation of the face embeddings (training statistics).
    pub face_norm: Standardise<B>,
    /// Standardisation of the context embeddings.
    pub context_norm: Standardise<B>,
    #[module(skip)]
    loss: ClassificationLossConfig,
    #[module(skip)]
    expressions: bool,
}

impl<B: Backend> EmotionModel<B> {
    /// A new model; `fusion.variant` must be left `Full` (`streams` chooses it).
    pub fn new(config: &EmotionTrainConfig, device: &B::Device) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidConfig {
            path: "fusion".into(),
            reason,
        };
        if config.fusion.variant != InterFusionVariant::Full {
            return Err(invalid(
                "set `streams` (both, face, context, late), not fusion.variant".into(),
            ));
        }
        let fusion = config
            .fusion
            .clone()
            .with_variant(config.streams.variant())
            .init(device)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            fusion,
            face_norm: Standardise::identity(config.fusion.face_dim, device),
            context_norm: Standardise::identity(config.fusion.context_dim, device),
            loss: config.loss.clone(),
            expressions: config.fusion.expression_classes > 0,
        })
    }

    /// The model with its inputs standardised by the statistics of `items` (the training set).
    pub fn standardised(self, items: &[EmotionFeatures], device: &B::Device) -> Self {
        Self {
            face_norm: Standardise::fit(
                items.iter().filter_map(|i| i.face.as_ref()),
                self.face_norm.mean.dims()[0],
                device,
            ),
            context_norm: Standardise::fit(
                items.iter().filter_map(|i| i.context.as_ref()),
                self.context_norm.mean.dims()[0],
                device,
            ),
            ..self
        }
    }

    /// Win/Lose scores `[B, 2]` of a batch.
    pub fn logits(&self, batch: &EmotionFeatureBatch<B>) -> Tensor<B, 2> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.fusion.forward(self.input(batch)).logits)
    }

    fn input(&self, batch: &EmotionFeatureBatch<B>) -> InterFusionInput<B> {
        let standardise = |sequence: &Sequence<B>, norm: &Standardise<B>| Sequence {
            tokens: norm.forward(sequence.tokens.clone()),
            padding: sequence.padding.clone(),
        };
        InterFusionInput {
            face: batch.face.as_ref().map(|f| standardise(f, &self.face_norm)),
            expressions: batch.expressions.clone().filter(|_| self.expressions),
            context: batch
                .context
                .as_ref()
                .map(|c| standardise(c, &self.context_norm)),
        }
    }

    fn classify(&self, batch: EmotionFeatureBatch<B>) -> ClassificationOutput<B> {
        let logits = self.logits(&batch);
        let loss = self
            .loss
            .init::<B>(None, &batch.labels.device())
            .expect("validated when the model was built");
        let value = loss.forward(logits.clone(), batch.labels.clone(), None);
        ClassificationOutput::new(value, logits, batch.labels)
    }
}

impl<B: AutodiffBackend> TrainStep for EmotionModel<B> {
    type Input = EmotionFeatureBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: EmotionFeatureBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        // Forward and backward on one of the CPU pool's threads (one hand-off a step).
        miga_kernels::on_cpu_workers::<B, _>(|| {
            let output = self.classify(batch);
            TrainOutput::new(self, output.loss.backward(), output)
        })
    }
}

impl<B: Backend> InferenceStep for EmotionModel<B> {
    type Input = EmotionFeatureBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: EmotionFeatureBatch<B>) -> ClassificationOutput<B> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.classify(batch))
    }
}

/// Checks that the features fit the fusion config (widths, expressions), naming what differs.
fn check_features(
    items: &[EmotionFeatures],
    config: &InterFusionConfig,
    path: &Path,
) -> Result<()> {
    let mismatch = |reason: String| Error::Mismatch {
        path: path.to_path_buf(),
        reason,
    };
    for item in items {
        if let Some(context) = &item.context
            && context.shape[1] != config.context_dim
        {
            return Err(mismatch(format!(
                "context embeddings are {} wide, fusion.context_dim is {}",
                context.shape[1], config.context_dim
            )));
        }
        if let Some(face) = &item.face {
            if face.shape[1] != config.face_dim {
                return Err(mismatch(format!(
                    "face embeddings are {} wide, fusion.face_dim is {}",
                    face.shape[1], config.face_dim
                )));
            }
            let given = item.expressions.as_ref().map_or(0, |e| e.shape[1]);
            if config.expression_classes > 0 && given != config.expression_classes {
                return Err(mismatch(format!(
                    "fusion.expression_classes is {}, the features have {given} expression \
                     probabilities a face (extract with `expressions = true`, or set it to 0)",
                    config.expression_classes
                )));
            }
        }
    }
    Ok(())
}

/// Trains InterFusion (or a baseline, after `streams`) on emotion features, validating on
/// `valid`, in the run folder `run`; resumption and errors as
/// [`crate::train::train_micro_gesture`], and so is training on several `devices`. Validation runs on all validation videos at once, so
/// its AUROC is the set's.
pub fn train_emotion<B: AutodiffBackend>(
    train: &FeatureSet,
    valid: &FeatureSet,
    config: &EmotionTrainConfig,
    run: &Path,
    resume: bool,
    devices: &[B::Device],
) -> Result<TrainSummary> {
    let device = main_device::<B>(devices, run)?;
    if config.transductive_centring {
        return Err(Error::InvalidConfig {
            path: run.to_path_buf(),
            reason:
                "transductive_centring is for micro-gesture clips; an emotion item is a whole video"
                    .into(),
        });
    }
    let labelled = |set: &FeatureSet| -> Result<Vec<EmotionFeatures>> {
        Ok(emotion_items(set, run, config.streams)?
            .into_iter()
            .map(|(_, i)| i)
            .filter(|i| i.label >= 0)
            .collect())
    };
    let (train_items, valid_items) = (labelled(train)?, labelled(valid)?);
    check_features(&train_items, &config.fusion, run)?;
    let inputs = feature_inputs(EMOTION, train, valid, run)?;
    let spec = RunSpec::new(EMOTION, inputs, config, run, resume)?;
    let build = |items: &[EmotionFeatures]| {
        Ok(EmotionModel::<B>::new(config, device)?.standardised(items, device))
    };
    let valid_batch = valid_items.len();
    fit(
        spec,
        build,
        (train_items, valid_items),
        (EmotionFeatureBatcher, EmotionFeatureBatcher),
        valid_batch,
        Metrics::Binary,
        devices,
    )
}

/// A trained emotion run, loaded for inference.
pub struct EmotionRun<B: Backend> {
    /// The run folder.
    pub dir: PathBuf,
    /// The feature settings it was trained on.
    pub features: String,
    /// Its best model.
    pub model: EmotionModel<B>,
    /// The streams it sees.
    streams: EmotionStreams,
}

impl<B: Backend> EmotionRun<B> {
    /// Loads `run/best.mpk` with the run's settings.
    pub fn load(run: &Path, device: &B::Device) -> Result<Self> {
        let (info, config, model) = load_best(
            run,
            EMOTION,
            |config: &EmotionTrainConfig| EmotionModel::new(config, device),
            device,
        )?;
        Ok(Self {
            dir: run.to_path_buf(),
            features: info.features,
            model,
            streams: config.streams,
        })
    }

    /// Win/Lose scores (logits, Lose then Win) of every video of `features`.
    pub fn scores(&self, features: &FeatureSet, path: &Path, device: &B::Device) -> Result<Scores> {
        let items = emotion_items(features, path, self.streams)?;
        score_items(
            &self.features,
            features,
            path,
            &items,
            EmotionFeatures::label,
            |chunk| {
                let batch = EmotionFeatureBatcher.batch(chunk, device);
                self.model.logits(&batch)
            },
        )
    }
}

/// Emotion metrics over videos.
#[derive(Debug, Clone, Serialize)]
pub struct EmotionEvaluation {
    /// Labelled videos.
    pub videos: usize,
    /// Share predicted right.
    pub accuracy: f64,
    /// F1 of the Win class (harmonic mean of its precision and recall).
    pub f1: f64,
    /// Area under the ROC curve of the Win probability (0.5: chance; ties count half).
    pub auroc: f64,
    /// Counts `[true][predicted]`, 0 Lose, 1 Win.
    pub confusion: [[usize; 2]; 2],
}

impl EmotionEvaluation {
    /// Writes `metrics.json` into `dir` (atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        miga_datasets::io::write_atomic(&dir.join("metrics.json"), text.as_bytes())?;
        Ok(())
    }
}

/// The probability of Win from a row of logits (Lose, Win).
fn win_probability(logits: &[f32]) -> f64 {
    let (lose, win) = (f64::from(logits[0]), f64::from(logits[1]));
    1.0 / (1.0 + (lose - win).exp())
}

/// Accuracy, F1 and AUROC of `scores` (Lose, Win logits) for videos labelled `labels` (1 Win,
/// 0 Lose; others are left out).
pub fn evaluate_emotion(labels: &[i64], scores: &[Vec<f32>]) -> EmotionEvaluation {
    let rows: Vec<(usize, f64)> = labels
        .iter()
        .zip(scores)
        .filter(|(l, _)| (0..2).contains(*l))
        .map(|(&l, s)| (l as usize, win_probability(s)))
        .collect();
    let mut confusion = [[0usize; 2]; 2];
    for &(label, p) in &rows {
        confusion[label][usize::from(p > 0.5)] += 1;
    }
    let videos = rows.len();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let tp = confusion[1][1];
    let precision = ratio(tp, confusion[0][1] + tp);
    let recall = ratio(tp, confusion[1][0] + tp);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    // Mann-Whitney: the share of (Win, Lose) pairs ranked right.
    let (wins, losses): (Vec<&(usize, f64)>, Vec<_>) = rows.iter().partition(|r| r.0 == 1);
    let mut right = 0.0;
    for w in &wins {
        for l in &losses {
            right += if w.1 > l.1 {
                1.0
            } else if w.1 == l.1 {
                0.5
            } else {
                0.0
            };
        }
    }
    EmotionEvaluation {
        videos,
        accuracy: ratio(confusion[0][0] + tp, videos),
        f1,
        auroc: if wins.is_empty() || losses.is_empty() {
            f64::NAN
        } else {
            right / (wins.len() * losses.len()) as f64
        },
        confusion,
    }
}

/// The per-video prediction file: `Id,Target,P_win`, Target 1 for Win and 0 for Lose.
pub fn emotion_csv(ids: &[String], scores: &[Vec<f32>]) -> String {
    let mut out = String::from("Id,Target,P_win\n");
    for (id, s) in ids.iter().zip(scores) {
        let p = win_probability(s);
        out.push_str(&format!("{id},{},{p:.6}\n", u8::from(p > 0.5)));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::backend::{Autodiff, Flex};
    use miga_datasets::clips::FrameTransform;
    use miga_datasets::synth::{LABELS_CSV, SynthConfig, synthesise};
    use miga_datasets::{LabelTable, MigaLayout, Split};

    use super::*;

    /// Settings small enough for tests: 2 windows of 4 frames of 64x64, 3 faces, narrow
    /// backbones.
    pub(crate) fn tiny_extraction() -> EmotionExtraction {
        EmotionExtraction {
            video: EmotionConfig {
                windows: 2,
                frames: 4,
                skeleton_frames: 8,
                faces: 3,
                rgb: FrameTransform {
                    resize: 64,
                    crop: 64,
                    ..FrameTransform::default()
                },
                ..EmotionConfig::default()
            },
            mvit: "mvit_v2_xs".into(),
            swinface: "swinface_xs".into(),
            expressions: false,
            shard_items: 1,
            ..EmotionExtraction::default()
        }
    }

    /// A fusion small enough for tests.
    pub(crate) fn tiny_training(epochs: usize) -> EmotionTrainConfig {
        EmotionTrainConfig {
            epochs,
            batch: 2,
            warmup_epochs: 1,
            patience: 0,
            fusion: InterFusionConfig::new()
                .with_d_model(16)
                .with_heads(2)
                .with_ff_dim(32)
                .with_intra_layers(1),
            ..EmotionTrainConfig::default()
        }
    }

    #[test]
    fn extracts_trains_evaluates_and_resumes() {
        let _rng = crate::rng_lock();
        let root = std::env::temp_dir().join(format!("miga-emotion-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = SynthConfig {
            seed: 3,
            videos: 6,
            clips_per_video: 2,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &root.join("data"), &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(root.join("data")).unwrap();
        let labels = LabelTable::read(root.join("data").join(LABELS_CSV)).unwrap();
        let device = Default::default();
        let extract = |split: Split| {
            let out = root.join(split.to_string());
            let summary = extract_emotion::<Flex>(
                EmotionRecord::from_miga(&layout, split, &labels),
                &tiny_extraction(),
                &Weights::default(),
                &out,
                (0, 1),
                &device,
                &mut |_, _| {},
            )
            .unwrap();
            (out, summary)
        };
        let (train_dir, summary) = extract(Split::Train);
        assert_eq!(
            (summary.clips, summary.extracted),
            (2, 2),
            "{:?}",
            summary.failed
        );
        let (_, again) = extract(Split::Train);
        assert_eq!((again.extracted, again.resumed), (0, 2));
        let (valid_dir, _) = extract(Split::Validate);
        let train = FeatureSet::read(&train_dir).unwrap();
        let valid = FeatureSet::read(&valid_dir).unwrap();
        let item = train.items.values().next().unwrap();
        assert_eq!(item["context_embeddings"].shape, [2, 768].into());
        assert_eq!(item["face_embeddings"].shape, [3, 512].into());
        assert!(!item.contains_key("face_expressions"));

        let run = root.join("run");
        let summary = train_emotion::<Autodiff<Flex>>(
            &train,
            &valid,
            &tiny_training(2),
            &run,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(summary.epochs, 2);
        for file in [
            "checkpoint/model-2.mpk",
            "best.mpk",
            "training.svg",
            "run.json",
        ] {
            assert!(run.join(file).exists(), "{file}");
        }
        let scores = EmotionRun::<Flex>::load(&run, &device)
            .unwrap()
            .scores(&valid, &valid_dir, &device)
            .unwrap();
        assert_eq!(scores.ids.len(), 2);
        assert_eq!(evaluate_emotion(&scores.labels, &scores.scores).videos, 2);
        assert_eq!(emotion_csv(&scores.ids, &scores.scores).lines().count(), 3);
        // Exported, it loads back (strictly) and scores the same.
        let exported = root.join("exported");
        crate::export::export_run::<Flex>(&run, &exported, &device).unwrap();
        let again = EmotionRun::<Flex>::load(&exported, &device)
            .unwrap()
            .scores(&valid, &valid_dir, &device)
            .unwrap();
        assert_eq!(
            (again.ids, again.scores),
            (scores.ids.clone(), scores.scores.clone())
        );
        // A run of the other task, and a fusion that does not fit the features, are refused.
        let message = crate::evaluate::TrainedRun::<Flex>::load(&run, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("task `emotion`"), "{message}");
        let wide = EmotionTrainConfig {
            fusion: tiny_training(1).fusion.with_face_dim(256),
            ..tiny_training(1)
        };
        let centred = EmotionTrainConfig {
            transductive_centring: true,
            ..tiny_training(1)
        };
        for (config, expected) in [
            (wide, "face_dim is 256"),
            (centred, "transductive_centring"),
        ] {
            let message = train_emotion::<Autodiff<Flex>>(
                &train,
                &valid,
                &config,
                &root.join("other"),
                false,
                std::slice::from_ref(&device),
            )
            .err()
            .unwrap()
            .to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    /// Each stream on its own: face-only extraction decodes no context windows, context-only
    /// needs no skeleton; each gives the tensors of a full extraction, trains its stream, and
    /// a model that needs the other stream says so.
    #[test]
    fn extracts_and_trains_one_stream_alone() {
        let _rng = crate::rng_lock();
        let root = std::env::temp_dir().join(format!("miga-emotion-alone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = SynthConfig {
            seed: 3,
            videos: 4,
            clips_per_video: 1,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &root.join("data"), &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(root.join("data")).unwrap();
        let labels = LabelTable::read(root.join("data").join(LABELS_CSV)).unwrap();
        let records = EmotionRecord::from_miga(&layout, Split::Train, &labels);
        let device = Default::default();
        let extract = |streams: EmotionExtractStreams, records: Vec<EmotionRecord>| {
            let out = root.join(format!("{streams:?}"));
            let summary = extract_emotion::<Flex>(
                records,
                &EmotionExtraction {
                    streams,
                    ..tiny_extraction()
                },
                &Weights::default(),
                &out,
                (0, 1),
                &device,
                &mut |_, _| {},
            )
            .unwrap();
            assert!(summary.failed.is_empty(), "{:?}", summary.failed);
            FeatureSet::read(&out).unwrap()
        };
        let both = extract(EmotionExtractStreams::Both, records.clone());
        let faces = extract(EmotionExtractStreams::Face, records.clone());
        let no_skeleton: Vec<EmotionRecord> = records
            .iter()
            .cloned()
            .map(|r| EmotionRecord {
                skeleton: None,
                ..r
            })
            .collect();
        let context = extract(EmotionExtractStreams::Context, no_skeleton);
        for (id, tensors) in &both.items {
            let names =
                |set: &FeatureSet| -> Vec<String> { set.items[id].keys().cloned().collect() };
            assert_eq!(names(&faces), ["face_embeddings", "label"]);
            assert_eq!(names(&context), ["context_embeddings", "label"]);
            assert_eq!(
                faces.items[id]["face_embeddings"],
                tensors["face_embeddings"]
            );
            assert_eq!(
                context.items[id]["context_embeddings"],
                tensors["context_embeddings"]
            );
        }
        let train = |set: &FeatureSet, streams: EmotionStreams, name: &str| {
            train_emotion::<Autodiff<Flex>>(
                set,
                set,
                &EmotionTrainConfig {
                    streams,
                    ..tiny_training(1)
                },
                &root.join(name),
                false,
                std::slice::from_ref(&device),
            )
        };
        train(&faces, EmotionStreams::Face, "face").unwrap();
        train(&context, EmotionStreams::Context, "context").unwrap();
        for (set, streams, missing) in [
            (&faces, EmotionStreams::Both, "context stream"),
            (&context, EmotionStreams::Late, "face stream"),
        ] {
            let message = train(set, streams, "refused").err().unwrap().to_string();
            assert!(message.contains(missing), "{message}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn emotion_metrics() {
        let labels = [1, 1, 0, 0, -1];
        let scores = [
            vec![0.0, 2.0],
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![3.0, 0.0],
            vec![0.0, 9.0],
        ];
        let e = evaluate_emotion(&labels, &scores);
        assert_eq!(e.videos, 4);
        assert_eq!(e.confusion, [[1, 1], [1, 1]]);
        assert!((e.accuracy - 0.5).abs() < 1e-12 && (e.f1 - 0.5).abs() < 1e-12);
        // Win probabilities 0.88, 0.27 against Lose 0.73, 0.05: 3 of 4 pairs ranked right.
        assert!((e.auroc - 0.75).abs() < 1e-12, "{}", e.auroc);
        let csv = emotion_csv(&["0001".into()], &scores[..1]);
        assert_eq!(csv, "Id,Target,P_win\n0001,1,0.880797\n");
    }
}
