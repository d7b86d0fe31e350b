//! What the demo runs, with defaults sized for a 2-core machine; every setting was chosen on
//! the validation split (docs/tasks.md, "The demo", keeps the history).

use super::*;

/// iMiGUE codes of the demo's classes: three twin pairs that one modality alone tells apart
/// (touching hat / scratching head and crossing fingers / minaret: the skeleton; rubbing hands
/// / playing with objects: the pixels) and two classes both see (folding arms, illustrative
/// gesture); see [`miga_datasets::synth`].
pub const DEMO_CLASSES: [u32; 8] = [3, 4, 17, 23, 24, 25, 26, 99];

/// Body, left hand and right hand of the `imigue-upper-hands` graph, one skeleton token each.
const UPPER_HANDS_PARTS: [std::ops::Range<usize>; 3] = [0..13, 13..34, 34..55];

/// Everything the demo does, with defaults sized for a 2-core machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// The synthetic dataset.
    pub data: SynthConfig,
    /// Micro-gesture feature extraction.
    pub micro_gesture_extraction: MicroGestureExtraction,
    /// Micro-gesture training (the streams are set per run).
    pub micro_gesture_training: TrainConfig,
    /// Emotion feature extraction.
    pub emotion_extraction: EmotionExtraction,
    /// Emotion training (the streams are set per run).
    pub emotion_training: EmotionTrainConfig,
    /// Score the test split (once per model). Off, only the train and validation splits are
    /// extracted and scored: the mode for choosing settings.
    pub test: bool,
    /// Also train and report a micro-gesture fusion with
    /// [`TrainConfig::transductive_centring`] (it uses the test clips' per-video statistics),
    /// in its own row.
    pub transductive_row: bool,
    /// The online rows: micro-gestures found in the untrimmed videos (`miga detect`).
    pub online: OnlineDemo,
}

impl DemoConfig {
    /// The seeds this configuration uses.
    pub fn seeds(&self) -> DemoSeeds {
        DemoSeeds {
            data: self.data.seed,
            extraction: self.micro_gesture_extraction.seed,
            training: self.micro_gesture_training.seed,
        }
    }

    /// The same demo with every seed (data, both extractions, every training) set to `seed`.
    pub fn with_seed(&self, seed: u64) -> Self {
        let mut config = self.clone();
        config.data.seed = seed;
        config.micro_gesture_extraction.seed = seed;
        config.emotion_extraction.seed = seed;
        config.micro_gesture_training.seed = seed;
        config.emotion_training.seed = seed;
        config
    }

    /// The demo at a third of its size (80 videos of 40 subjects): what the score test runs
    /// (`miga demo --small`).
    pub fn small() -> Self {
        let mut config = Self::default();
        config.data.videos = 80;
        config
    }

    pub(super) fn classes(&self) -> usize {
        match self.data.classes.len() {
            0 => NUM_CLASSES,
            n => n,
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        let small = |size: usize| FrameTransform {
            resize: size,
            crop: size,
            ..FrameTransform::default()
        };
        Self {
            // 240 videos of 120 subjects (72 train, 24 validation, 24 test): emotion, one label
            // a video, trains on 144 videos and is scored on 48; 3 clips a video give 720
            // micro-gesture clips of 8 classes. Every setting here was chosen on the
            // validation split (docs/tasks.md, "The demo", keeps the history).
            data: SynthConfig {
                seed: 0,
                videos: 240,
                clips_per_video: 3,
                width: 256,
                height: 144,
                classes: DEMO_CLASSES.to_vec(),
            },
            // The person's square (2 shoulder widths) rather than the whole frame and a 2x2 grid
            // of video tokens per step: with random MViTv2 weights the network is close to
            // linear in the pixels, so its features carry the colour layout of the frame, and
            // cut to the person that layout shows where the arms and a held object are.
            micro_gesture_extraction: MicroGestureExtraction {
                clip: ClipConfig {
                    frames: 4,
                    skeleton_frames: 16,
                    rgb: FrameTransform {
                        person_box: 2.0,
                        ..small(64)
                    },
                    ..ClipConfig::default()
                },
                mvit: "mvit_v2_xs".into(),
                video_grid: 2,
                batch: 8,
                shard_items: 64,
                ..MicroGestureExtraction::default()
            },
            // 80 epochs at 3e-3 with dropout 0.3, modality dropout 0.5 so that the fused head
            // does not lean on the weaker video stream, no video class token (near the mean
            // colour of the clip with random weights), the cross variant: each against its
            // alternative on validation, docs/tasks.md.
            micro_gesture_training: TrainConfig {
                epochs: 80,
                batch: 16,
                learning_rate: 3e-3,
                patience: 0,
                fusion: CmtfConfig::new()
                    .with_d_model(64)
                    .with_heads(4)
                    .with_ff_dim(128)
                    .with_dropout(0.3)
                    .with_layers(1)
                    .with_video_grid(2)
                    .with_video_class_token(false)
                    .with_modality_dropout(0.5)
                    .with_skeleton_parts(UPPER_HANDS_PARTS.map(|p| p.collect()).to_vec()),
                ..TrainConfig::default()
            },
            emotion_extraction: EmotionExtraction {
                video: EmotionConfig {
                    windows: 4,
                    frames: 4,
                    stride: 4,
                    skeleton_frames: 16,
                    faces: 8,
                    rgb: small(64),
                    ..EmotionConfig::default()
                },
                mvit: "mvit_v2_xs".into(),
                swinface: "swinface_xs".into(),
                expressions: false,
                ..EmotionExtraction::default()
            },
            // 120 epochs at 3e-4 with dropout 0.3 and no modality dropout, each against its
            // alternative on validation (docs/tasks.md).
            emotion_training: EmotionTrainConfig {
                epochs: 120,
                learning_rate: 3e-4,
                batch: 8,
                patience: 0,
                fusion: InterFusionConfig::new()
                    .with_d_model(64)
                    .with_heads(4)
                    .with_ff_dim(128)
                    .with_dropout(0.3)
                    .with_intra_layers(1),
                ..EmotionTrainConfig::default()
            },
            test: true,
            transductive_row: false,
            online: OnlineDemo::default(),
        }
    }
}
