//! The emotion network: SwinFace embeddings of a video's faces and MViTv2 embeddings of its
//! context windows ([`Backbones`]), fused by InterFusion ([`EmotionModel`]).

mod backbones;
mod features;
mod fusion;

pub use backbones::{Backbones, EmotionExtractStreams, EmotionExtraction};
pub use features::{
    EmotionFeatureBatch, EmotionFeatureBatcher, EmotionFeatures, EmotionStreams, emotion_items,
};
pub use fusion::{EmotionModel, EmotionTrainConfig};

/// Task name of emotion features and runs.
pub const EMOTION: &str = "emotion";
