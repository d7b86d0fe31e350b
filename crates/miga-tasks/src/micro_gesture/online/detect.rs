//! Detection in a whole video: windows scored by a trained pipeline, then instances.

use std::time::Instant;

use burn::prelude::*;
use miga_datasets::annotations::Segment;
use miga_datasets::clips::ClipRecord;
use miga_datasets::untrimmed::UntrimmedVideo;

use super::{DetectSettings, Instance, frame_scores, instances};
use crate::Result;
use crate::micro_gesture::MicroGesturePipeline;

/// What detection in one video gave.
#[derive(Debug, Clone)]
pub struct Detection {
    /// The video id.
    pub video: String,
    /// The instances found.
    pub instances: Vec<Instance>,
    /// Per-frame class probabilities (step 2 of the procedure, before smoothing).
    pub frame_scores: Vec<Vec<f32>>,
    /// Frames of the video.
    pub frames: usize,
    /// Windows scored.
    pub windows: usize,
    /// Seconds it took (decoding, backbones, fusion and segmentation).
    pub seconds: f64,
}

impl Detection {
    /// Video frames processed a second.
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }
}

/// Finds the micro-gestures of `video` with `pipeline` (see the procedure in [`super`]).
pub fn detect<B: Backend>(
    pipeline: &MicroGesturePipeline<B>,
    video: &UntrimmedVideo,
    settings: &DetectSettings,
) -> Result<Detection> {
    settings.validate()?;
    let started = Instant::now();
    let windows = settings.windows(video.frames);
    let clips: Vec<ClipRecord> = windows.iter().map(|&(a, b)| video.window(a, b)).collect();
    let predictions = pipeline.predict(&clips)?;
    let scored: Vec<((usize, usize), Vec<f32>)> = windows
        .into_iter()
        .zip(predictions)
        .map(|(window, p)| (window, p.probabilities))
        .collect();
    let frame_scores = frame_scores(video.frames, &scored);
    let instances = instances(&video.id, &frame_scores, settings);
    Ok(Detection {
        video: video.id.clone(),
        instances,
        frame_scores,
        frames: video.frames,
        windows: scored.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Labelled segments of video `video` as instances (score 1): the ground truth.
pub fn labelled(video: &str, segments: &[Segment]) -> Vec<Instance> {
    segments
        .iter()
        .map(|s| Instance {
            video: video.to_string(),
            class: s.class,
            start: s.start_frame,
            end: s.end_frame,
            score: 1.0,
        })
        .collect()
}
