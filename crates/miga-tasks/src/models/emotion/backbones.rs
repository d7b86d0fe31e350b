//! SwinFace and MViTv2 as emotion extraction builds them.

use burn::prelude::*;
use miga_backbones::catalogue::{Backbone, Checkpoint};
use miga_backbones::mvit::Mvit;
use miga_backbones::swin::{SwinFace, SwinFaceConfig};
use miga_datasets::emotion::EmotionConfig;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::models::{Weights, drawn_now, mvit};

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
    pub(crate) fn face(self) -> bool {
        self != Self::Context
    }
    pub(crate) fn context(self) -> bool {
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

/// The backbones of the emotion network: those of the streams extracted.
#[derive(Module, Debug)]
pub struct Backbones<B: Backend> {
    /// MViTv2, on the context windows.
    pub mvit: Option<Mvit<B>>,
    /// SwinFace, on the face crops.
    pub swinface: Option<SwinFace<B>>,
}

/// Seeds of the randomly initialised backbones: MViTv2 draws from the settings' seed,
/// SwinFace from it mixed with this, so that each is the same whichever streams are extracted.
const SWINFACE_SEED: u64 = 0x5eed_face;

impl<B: Backend> Backbones<B> {
    /// The backbones of the streams `settings` extract, as `weights` make them; random ones are
    /// initialised under the settings' seed.
    pub fn new(
        settings: &EmotionExtraction,
        weights: &Weights,
        device: &B::Device,
    ) -> Result<Self> {
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
                    Some(path) => {
                        Checkpoint::head_classes(path, Backbone::Swin, &settings.swinface, 0)?;
                        face.load_checkpoint(path, device)?
                    }
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
}
