//! MViTv2 and 2s-AGCN as micro-gesture extraction (and end-to-end training) builds them, and
//! their feature adapter: the video token grid pooled to `k x k` a time step.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;
use miga_backbones::agcn::{Agcn, AgcnConfig, Graph};
use miga_backbones::mvit::Mvit;
use miga_datasets::clips::{ClipConfig, Modalities};
use serde::{Deserialize, Serialize};

use crate::models::{Weights, drawn_now, mvit};
use crate::{Error, Result};

/// How micro-gesture features are extracted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MicroGestureExtraction {
    /// Clip sampling and transforms (`augment` is ignored: extraction is deterministic; the
    /// skeleton keypoints are the graph's). `clip.modalities` picks the streams extracted:
    /// `both`, `rgb` (MViTv2 only: no skeleton needed) or `skeleton` (2s-AGCN only: no video
    /// needed).
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
    /// The skeleton graph, and the settings as extraction uses them: no augmentation, the
    /// graph's OpenPose keypoints.
    pub fn prepared(&self) -> Result<(Graph, Self)> {
        let graph = Graph::layout(&self.graph)?;
        let keypoints = graph.openpose.clone().ok_or_else(|| Error::InvalidConfig {
            path: PathBuf::from("graph"),
            reason: format!("graph `{}` has no OpenPose indices", self.graph),
        })?;
        let clip = ClipConfig {
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
    pub(crate) fn to_json(&self) -> String {
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

/// The backbones of micro-gesture extraction (and end-to-end training): those of the streams
/// extracted.
#[derive(Module, Debug)]
pub struct Backbones<B: Backend> {
    /// The video backbone.
    pub mvit: Option<Mvit<B>>,
    /// The skeleton backbone.
    pub agcn: Option<Agcn<B>>,
}

/// The features of a batch of clips, of the streams extracted.
pub struct ClipFeatures<B: Backend> {
    /// `[B, T', k, k, C]`.
    pub video: Option<Tensor<B, 5>>,
    /// `[B, C]`.
    pub class: Option<Tensor<B, 2>>,
    /// `[B, T'', V, C_s]`.
    pub skeleton: Option<Tensor<B, 4>>,
}

impl<B: Backend> Backbones<B> {
    /// MViTv2 features of clips `[B, 3, T, H, W]` and 2s-AGCN features of skeletons
    /// `[B, 3, T, V, 1]`, each where both the input and the backbone are there.
    pub fn features(
        &self,
        rgb: Option<Tensor<B, 5>>,
        skeleton: Option<Tensor<B, 5>>,
        grid: usize,
    ) -> Result<ClipFeatures<B>> {
        miga_kernels::on_cpu_workers::<B, _>(|| {
            let video = match (&self.mvit, rgb) {
                (Some(mvit), Some(rgb)) => Some(mvit.try_forward(rgb)?),
                _ => None,
            };
            let skeleton = match (&self.agcn, skeleton) {
                (Some(agcn), Some(skeleton)) => Some(agcn.try_forward(skeleton)?.tokens),
                _ => None,
            };
            let (video, class) = match video {
                Some(v) => (Some(pool_grid(v.tokens, grid)), Some(v.embedding)),
                None => (None, None),
            };
            Ok(ClipFeatures {
                video,
                class,
                skeleton,
            })
        })
    }
}

/// Seeds of the randomly initialised backbones: MViTv2 draws from the settings' seed, 2s-AGCN
/// from it mixed with this, so that each backbone is the same whichever streams are extracted.
const AGCN_SEED: u64 = 0x5eed_a6c1;

impl<B: Backend> Backbones<B> {
    /// The backbones of the streams `settings` (prepared) extract, as `weights` make them; random
    /// ones are initialised under the settings' seed, so the same settings give the same backbones.
    pub fn new(
        settings: &MicroGestureExtraction,
        graph: Graph,
        weights: &Weights,
        device: &B::Device,
    ) -> Result<Self> {
        let clip = &settings.clip;
        let mvit = match clip.modalities != Modalities::Skeleton {
            true => {
                B::seed(device, settings.seed);
                Some(mvit(
                    &settings.mvit,
                    clip.frames,
                    clip.rgb.crop,
                    weights,
                    device,
                )?)
            }
            false => None,
        };
        let agcn = match (clip.modalities != Modalities::Rgb, &weights.agcn) {
            (false, _) => None,
            (true, Some(path)) => Some(AgcnConfig::load(path, graph, device)?),
            (true, None) => {
                B::seed(device, settings.seed ^ AGCN_SEED);
                Some(drawn_now(
                    AgcnConfig::new(graph, 32)
                        .with_num_persons(1)
                        .init(device)?,
                ))
            }
        };
        Ok(Backbones { mvit, agcn })
    }
}

/// Average-pools `[B, T, H, W, C]` tokens over space to `[B, T, k, k, C]`.
fn pool_grid<B: Backend>(tokens: Tensor<B, 5>, k: usize) -> Tensor<B, 5> {
    let [b, t, h, w, c] = tokens.dims();
    let planes = tokens.permute([0, 1, 4, 2, 3]).reshape([b * t, c, h, w]);
    adaptive_avg_pool2d(planes, [k, k])
        .reshape([b, t, c, k, k])
        .permute([0, 1, 3, 4, 2])
}
