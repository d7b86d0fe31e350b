//! `miga extract --task micro-gesture`: MViTv2 video tokens and 2s-AGCN skeleton tokens of
//! every clip, written as feature shards (see [`crate::features`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;
use miga_backbones::agcn::{Agcn, AgcnConfig, Graph};
use miga_backbones::mvit::{Mvit, MvitConfig};
use miga_datasets::clips::{
    ClipBatch, ClipBatcher, ClipConfig, ClipDataset, ClipRecord, Modalities,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::features::{FeatureKind, FeatureWriter};
use crate::{Error, Result};

/// Task name of micro-gesture features.
pub const MICRO_GESTURE: &str = "micro-gesture";

/// How micro-gesture features are extracted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MicroGestureExtraction {
    /// Clip sampling and transforms (`augment` is ignored: extraction is deterministic; the
    /// skeleton keypoints are the graph's).
    pub clip: ClipConfig,
    /// MViTv2 preset (`mvit_v2_s`, `mvit_v2_b`, `mvit_v2_xs`).
    pub mvit: String,
    /// 2s-AGCN skeleton graph (a built-in layout over the OpenPose points).
    pub graph: String,
    /// The video token grid is average-pooled to `video_grid` x `video_grid` per time step.
    pub video_grid: usize,
    /// Clips a forward pass.
    pub batch: usize,
    /// Clips a shard.
    pub shard_items: usize,
    /// Seed of the backbones' random initialisation when no weights are given.
    pub seed: u64,
}

impl MicroGestureExtraction {
    /// The skeleton graph, and the settings as extraction uses them: both modalities, no
    /// augmentation, the graph's OpenPose keypoints.
    pub fn prepared(&self) -> Result<(Graph, Self)> {
        let graph = Graph::layout(&self.graph)?;
        let keypoints = graph.openpose.clone().ok_or_else(|| Error::InvalidConfig {
            path: PathBuf::from("graph"),
            reason: format!("graph `{}` has no OpenPose indices", self.graph),
        })?;
        let clip = ClipConfig {
            modalities: Modalities::Both,
            augment: false,
            skeleton: miga_datasets::clips::SkeletonTransform {
                keypoints,
                ..self.clip.skeleton.clone()
            },
            ..self.clip.clone()
        };
        Ok((
            graph,
            Self {
                clip,
                ..self.clone()
            },
        ))
    }
}

impl Default for MicroGestureExtraction {
    fn default() -> Self {
        Self {
            clip: ClipConfig::default(),
            mvit: "mvit_v2_s".into(),
            graph: "imigue-upper-hands".into(),
            video_grid: 1,
            batch: 4,
            shard_items: 64,
            seed: 0,
        }
    }
}

/// Backbone checkpoints; a backbone without one is randomly initialised (under the seed).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    /// torchvision MViTv2 `.pth` / safetensors.
    pub mvit: Option<PathBuf>,
    /// 2s-AGCN reference `.pt`.
    pub agcn: Option<PathBuf>,
    /// SwinFace training checkpoint (`.pt`) or safetensors.
    pub swinface: Option<PathBuf>,
}

/// How micro-gesture features were made, as their folder records it (`FeatureKind::settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDescription {
    /// The prepared settings.
    pub settings: MicroGestureExtraction,
    /// The MViTv2 checkpoint (none: random under the seed).
    pub mvit_weights: Option<PathBuf>,
    /// The 2s-AGCN checkpoint.
    pub agcn_weights: Option<PathBuf>,
}

impl FeatureDescription {
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a description back.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!("not micro-gesture feature settings: {e}"),
        })
    }
}

/// What an extraction did.
#[derive(Debug, Clone)]
pub struct ExtractSummary {
    /// Clips of this part.
    pub clips: usize,
    /// Of those, already extracted by an earlier run (skipped).
    pub resumed: usize,
    /// Extracted now.
    pub extracted: usize,
    /// Clips that could not be extracted, with why (a later run retries them).
    pub failed: Vec<(String, String)>,
}

/// The backbones of micro-gesture extraction (and end-to-end training).
#[derive(Module, Debug)]
pub struct Backbones<B: Backend> {
    /// The video backbone.
    pub mvit: Mvit<B>,
    /// The skeleton backbone.
    pub agcn: Agcn<B>,
}

/// The features of a batch of clips.
pub struct ClipFeatures<B: Backend> {
    /// `[B, T', k, k, C]`.
    pub video: Tensor<B, 5>,
    /// `[B, C]`.
    pub class: Tensor<B, 2>,
    /// `[B, T'', V, C_s]`.
    pub skeleton: Tensor<B, 4>,
}

impl<B: Backend> Backbones<B> {
    /// MViTv2 and 2s-AGCN features of clips `[B, 3, T, H, W]` and skeletons `[B, 3, T, V, 1]`.
    pub fn features(
        &self,
        rgb: Tensor<B, 5>,
        skeleton: Tensor<B, 5>,
        grid: usize,
    ) -> Result<ClipFeatures<B>> {
        miga_kernels::on_cpu_workers::<B, _>(|| {
            let video = self.mvit.try_forward(rgb)?;
            Ok(ClipFeatures {
                video: pool_grid(video.tokens, grid),
                class: video.embedding,
                skeleton: self.agcn.try_forward(skeleton)?.tokens,
            })
        })
    }
}

/// MViTv2 preset `name` for clips of `frames` x `crop` x `crop`, from `weights.mvit` or randomly
/// initialised.
pub(crate) fn mvit<B: Backend>(
    name: &str,
    frames: usize,
    crop: usize,
    weights: &Weights,
    device: &B::Device,
) -> Result<Mvit<B>> {
    let config = MvitConfig::preset(name, 400)?
        .with_temporal_size(frames)
        .with_spatial_size([crop; 2]);
    Ok(match &weights.mvit {
        Some(path) => config.load_checkpoint(path, device)?,
        None => config.init(device)?,
    })
}

/// The backbones as `settings` (prepared) and `weights` make them; random ones are initialised
/// under the settings' seed, so the same settings give the same backbones.
pub(crate) fn backbones<B: Backend>(
    settings: &MicroGestureExtraction,
    graph: Graph,
    weights: &Weights,
    device: &B::Device,
) -> Result<Backbones<B>> {
    B::seed(device, settings.seed);
    let clip = &settings.clip;
    let mvit = mvit(&settings.mvit, clip.frames, clip.rgb.crop, weights, device)?;
    let agcn = match &weights.agcn {
        Some(path) => AgcnConfig::load(path, graph, device)?,
        None => AgcnConfig::new(graph, 32)
            .with_num_persons(1)
            .init(device)?,
    };
    Ok(Backbones { mvit, agcn })
}

/// The items of part `(i, n)` (every n-th in id order from the i-th): how many there are, and
/// those `writer` does not have yet.
pub(crate) fn part_todo<R>(
    mut records: Vec<R>,
    id: impl Fn(&R) -> &String,
    part: (usize, usize),
    writer: &FeatureWriter,
) -> (usize, Vec<R>) {
    records.sort_by(|a, b| id(a).cmp(id(b)));
    let mine: Vec<R> = records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % part.1 == part.0)
        .map(|(_, r)| r)
        .collect();
    let count = mine.len();
    let todo = mine
        .into_iter()
        .filter(|r| !writer.is_done(id(r)))
        .collect();
    (count, todo)
}

/// Average-pools `[B, T, H, W, C]` tokens over space to `[B, T, k, k, C]`.
fn pool_grid<B: Backend>(tokens: Tensor<B, 5>, k: usize) -> Tensor<B, 5> {
    let [b, t, h, w, c] = tokens.dims();
    let planes = tokens.permute([0, 1, 4, 2, 3]).reshape([b * t, c, h, w]);
    adaptive_avg_pool2d(planes, [k, k])
        .reshape([b, t, c, k, k])
        .permute([0, 1, 3, 4, 2])
}

/// Extracts part `part = (i, n)` of `records` (every n-th clip from the i-th, in id order) into
/// `out`, resuming an earlier run of the same part and settings. `progress(done, total)` is
/// called after each batch.
pub fn extract_micro_gesture<B: Backend>(
    records: Vec<ClipRecord>,
    settings: &MicroGestureExtraction,
    weights: &Weights,
    out: &Path,
    part: (usize, usize),
    device: &B::Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExtractSummary> {
    let (graph, settings) = settings.prepared()?;
    let kind = FeatureKind {
        task: MICRO_GESTURE.into(),
        settings: FeatureDescription {
            settings: settings.clone(),
            mvit_weights: weights.mvit.clone(),
            agcn_weights: weights.agcn.clone(),
        }
        .to_json(),
    };
    let mut writer = FeatureWriter::open(out, kind, part, settings.shard_items)?;
    let (clips, todo) = part_todo(records, |r| &r.id, part, &writer);
    let resumed = clips - todo.len();
    // Clips with problems (no skeleton, beyond the end) fail with their reason when loaded.
    let (dataset, _) = ClipDataset::new(todo, settings.clip.clone(), 0)?;
    let mut failed: Vec<(String, String)> = Vec::new();
    let models = backbones::<B>(&settings, graph, weights, device)?;
    let mut extracted = 0;
    let total = dataset.len();
    progress(0, total);
    for start in (0..total).step_by(settings.batch.max(1)) {
        let end = (start + settings.batch.max(1)).min(total);
        let items: Vec<_> = (start..end)
            .into_par_iter()
            .filter_map(|i| dataset.get(i))
            .collect();
        let labels: Vec<Option<usize>> = items
            .iter()
            .filter(|i| i.data.is_ok())
            .map(|i| i.label)
            .collect();
        let batch: ClipBatch<B> = ClipBatcher.batch(items, device);
        failed.extend(batch.skipped);
        if let (Some(rgb), Some(skeleton)) = (batch.rgb, batch.skeleton) {
            let features = models.features(rgb, skeleton, settings.video_grid)?;
            let (grid, class, skeleton) = (features.video, features.class, features.skeleton);
            for (row, id) in batch.ids.iter().enumerate() {
                let take5 =
                    |t: &Tensor<B, 5>| t.clone().narrow(0, row, 1).squeeze_dim::<4>(0).into_data();
                let label = labels[row].map_or(-1.0, |l| l as f32);
                let tensors = BTreeMap::from([
                    ("video_tokens".to_string(), take5(&grid)),
                    (
                        "video_class".to_string(),
                        class
                            .clone()
                            .narrow(0, row, 1)
                            .squeeze_dim::<1>(0)
                            .into_data(),
                    ),
                    (
                        "skeleton_tokens".to_string(),
                        skeleton
                            .clone()
                            .narrow(0, row, 1)
                            .squeeze_dim::<3>(0)
                            .into_data(),
                    ),
                    ("label".to_string(), TensorData::new(vec![label], [1])),
                ]);
                writer.push(id, tensors)?;
                extracted += 1;
            }
        }
        progress(end, total);
    }
    writer.finish()?;
    Ok(ExtractSummary {
        clips,
        resumed,
        extracted,
        failed,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::backend::Flex;
    use miga_datasets::clips::FrameTransform;
    use miga_datasets::synth::{SynthConfig, synthesise};
    use miga_datasets::{MigaLayout, Split};

    use super::*;
    use crate::features::FeatureSet;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("miga-extract-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Settings small enough for tests: 4 frames of 64x64, mvit_v2_xs, 16 skeleton frames.
    pub(crate) fn tiny_settings() -> MicroGestureExtraction {
        MicroGestureExtraction {
            clip: ClipConfig {
                frames: 4,
                skeleton_frames: 16,
                rgb: FrameTransform {
                    resize: 64,
                    crop: 64,
                    ..FrameTransform::default()
                },
                ..ClipConfig::default()
            },
            mvit: "mvit_v2_xs".into(),
            batch: 2,
            shard_items: 2,
            ..MicroGestureExtraction::default()
        }
    }

    /// Train and validation features of a small synthetic dataset (6 videos of 3 clips).
    pub(crate) fn tiny_features(name: &str) -> (PathBuf, PathBuf) {
        let data = scratch(&format!("{name}-data"));
        let config = SynthConfig {
            seed: 4,
            videos: 6,
            clips_per_video: 3,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &data, &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(&data).unwrap();
        let out: Vec<PathBuf> = [Split::Train, Split::Validate]
            .into_iter()
            .map(|split| {
                let (records, _) = ClipRecord::from_miga(&layout, split);
                let out = scratch(&format!("{name}-{split}"));
                extract_micro_gesture::<Flex>(
                    records,
                    &tiny_settings(),
                    &Weights::default(),
                    &out,
                    (0, 1),
                    &Default::default(),
                    &mut |_, _| {},
                )
                .unwrap();
                out
            })
            .collect();
        (out[0].clone(), out[1].clone())
    }

    #[test]
    fn extracts_every_clip_once_and_resumes() {
        let _rng = crate::rng_lock();
        let data = scratch("data");
        let config = SynthConfig {
            seed: 4,
            videos: 2,
            clips_per_video: 3,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &data, &|_, _| {}).unwrap();
        let (records, problems) =
            ClipRecord::from_miga(&MigaLayout::scan(&data).unwrap(), Split::Train);
        assert!(problems.is_empty());
        let settings = tiny_settings();
        let out = scratch("features");
        let device = Default::default();
        let mut calls = 0;
        let summary = extract_micro_gesture::<Flex>(
            records.clone(),
            &settings,
            &Weights::default(),
            &out,
            (0, 1),
            &device,
            &mut |_, _| calls += 1,
        )
        .unwrap();
        assert_eq!(
            (summary.clips, summary.extracted, summary.resumed),
            (6, 6, 0),
            "{:?}",
            summary.failed
        );
        assert!(calls >= 4);
        let again = extract_micro_gesture::<Flex>(
            records,
            &settings,
            &Weights::default(),
            &out,
            (0, 1),
            &device,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!((again.extracted, again.resumed), (0, 6));
        let set = FeatureSet::read(&out).unwrap();
        assert!(set.complete);
        assert_eq!(set.items.len(), 6);
        let item = &set.items["0001_0"];
        assert_eq!(item["video_tokens"].shape, [2, 1, 1, 768].into());
        assert_eq!(item["video_class"].shape, [768].into());
        let nodes = Graph::layout("imigue-upper-hands").unwrap().num_nodes();
        assert_eq!(item["skeleton_tokens"].shape, [4, nodes, 256].into());
        let other = MicroGestureExtraction {
            video_grid: 2,
            ..settings
        };
        let message = extract_micro_gesture::<Flex>(
            Vec::new(),
            &other,
            &Weights::default(),
            &out,
            (0, 1),
            &device,
            &mut |_, _| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert!(message.contains("not task"), "{message}");
    }
}
