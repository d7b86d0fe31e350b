//! Test fixtures shared by the modules' tests: tiny settings and synthetic feature folders.

use std::path::PathBuf;

use burn::backend::Flex;
use miga_datasets::clips::{ClipConfig, ClipRecord, FrameTransform};
use miga_datasets::emotion::EmotionConfig;
use miga_datasets::synth::{SynthConfig, synthesise};
use miga_datasets::{MigaLayout, Split};
use miga_fusion::{CmtfConfig, InterFusionConfig};

use crate::emotion::{EmotionExtraction, EmotionTrainConfig};
use crate::micro_gesture::{MicroGestureExtraction, TrainConfig, extract_micro_gesture};
use crate::models::Weights;

pub(crate) fn scratch(name: &str) -> PathBuf {
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
