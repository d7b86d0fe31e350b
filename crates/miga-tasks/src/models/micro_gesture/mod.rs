//! The micro-gesture network: MViTv2 and 2s-AGCN tokens of a clip ([`Backbones`], with the
//! grid pooling of the video tokens), fused by Cross-Modal Token Fusion ([`MicroGestureModel`]),
//! or all of it trained as one ([`EndToEndModel`]).

mod backbones;
mod end_to_end;
mod features;
mod fusion;

pub use backbones::{Backbones, ClipFeatures, FeatureDescription, MicroGestureExtraction};
pub use end_to_end::{EndToEndModel, MICRO_GESTURE_END_TO_END};
pub use features::{
    FeatureBatch, FeatureBatcher, FeatureItem, Streams, centre_video_features, feature_items,
};
pub use fusion::{MicroGestureModel, TrainConfig};

/// Task name of micro-gesture features.
pub const MICRO_GESTURE: &str = "micro-gesture";
