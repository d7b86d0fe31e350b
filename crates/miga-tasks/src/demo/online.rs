//! The demo's online rows: every micro-gesture found in the untrimmed validation and test
//! videos by a fusion model trained with background windows (`miga detect`'s procedure),
//! scored by F1 at a temporal IoU, against a trivial baseline that calls every window the most
//! frequent training class.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use miga_datasets::untrimmed::{UntrimmedVideo, background_clips};
use miga_datasets::{MicroGesture, MigaLayout, Split};
use serde::{Deserialize, Serialize};

use super::{DemoConfig, DemoRow, Stage};
use crate::Result;
use crate::features::{FeatureSet, item_label};
use crate::micro_gesture::online::{
    DetectSettings, Instance, OnlineEvaluation, detect, evaluate_online, instances_csv, labelled,
};
use crate::micro_gesture::{
    MicroGesturePipeline, Streams, TrainConfig, extract_micro_gesture, train_micro_gesture,
};
use crate::models::Weights;

/// Task name of the online rows.
pub const ONLINE: &str = "online";

/// The online rows' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlineDemo {
    /// Background clips (`detect.window` frames, from the stretches no label covers) a
    /// labelled training clip; 0: no online rows.
    pub background: f64,
    /// How windows are laid and instances found.
    pub detect: DetectSettings,
    /// The temporal IoU a detection needs.
    pub tiou: f64,
}

impl Default for OnlineDemo {
    fn default() -> Self {
        Self {
            background: 1.0,
            // Windows of 16 frames: the synthetic gestures last 16-63 frames, with 6-19 frames
            // between them. Stride 8 against 16: 44.6% against 42.7% validation F1 (seed 0,
            // docs/online.md), for 21 s more of the demo.
            detect: DetectSettings {
                window: 16,
                stride: 8,
                smooth: 5,
                threshold: 0.3,
                min_length: 8,
            },
            tiou: 0.5,
        }
    }
}

/// One split's scores: the fusion's, the baseline's, and the ground-truth instances counted.
struct SplitScores {
    fusion: OnlineEvaluation,
    baseline: OnlineEvaluation,
    instances: usize,
}

/// [`OnlineEvaluation`]'s F1, precision and recall, the row's three numbers.
fn cells(e: &OnlineEvaluation) -> [f64; 3] {
    [e.overall.f1, e.overall.precision, e.overall.recall]
}

/// Every window (laid end to end) called the most frequent class (of the labelled training
/// clips, so the row's name is the same whichever class it is): the trivial baseline.
fn baseline(videos: &[UntrimmedVideo], class: MicroGesture, window: usize) -> Vec<Instance> {
    videos
        .iter()
        .flat_map(|v| {
            (0..v.frames).step_by(window.max(1)).map(move |s| Instance {
                video: v.id.clone(),
                class,
                start: s as u32,
                end: (s + window).min(v.frames) as u32 - 1,
                score: 1.0,
            })
        })
        .collect()
}

/// The online rows (fusion with background windows, and the baseline) of the demo in `dir`:
/// background features of the train and validation videos, the run, detection in the
/// validation videos (and the test videos with [`DemoConfig::test`]), and the detection speed
/// in frames a second.
pub(super) fn online_rows<B: AutodiffBackend>(
    config: &DemoConfig,
    dir: &Path,
    layout: &MigaLayout,
    (train, valid): (&FeatureSet, &FeatureSet),
    device: &B::Device,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<(Vec<DemoRow>, f64)> {
    let online = &config.online;
    let videos = |split: Split| -> Result<Vec<UntrimmedVideo>> {
        let (videos, problems) = UntrimmedVideo::from_miga(layout, split);
        match problems.into_iter().next() {
            Some(problem) => Err(problem.into()),
            None => Ok(videos),
        }
    };
    // Each video is opened once (for its length): the validation videos serve twice.
    let (train_videos, valid_videos) = (videos(Split::Train)?, videos(Split::Validate)?);
    // Labelled and background clips together, for training and validation.
    let mut with_background = Vec::new();
    for (split, split_videos, clips_set) in [
        (Split::Train, &train_videos, train),
        (Split::Validate, &valid_videos, valid),
    ] {
        let path = dir
            .join("features/micro-gesture-background")
            .join(split.to_string());
        let clips = background_clips(
            split_videos,
            online.background,
            online.detect.window,
            config.micro_gesture_extraction.seed,
        );
        let stage = Stage::Extract("background", split);
        extract_micro_gesture::<B::InnerBackend>(
            clips,
            &config.micro_gesture_extraction,
            &Weights::default(),
            &path,
            (0, 1),
            device,
            &mut |done, total| progress(stage, done, total),
        )?;
        let mut set = FeatureSet::read(&path)?;
        set.items.extend(clips_set.items.clone());
        with_background.push(set);
    }
    let run = dir.join("runs").join(ONLINE).join("fusion");
    let training = TrainConfig {
        streams: Streams::Both,
        ..config.micro_gesture_training.clone()
    };
    progress(Stage::Train(ONLINE, "fusion"), 0, 1);
    train_micro_gesture::<B>(
        &with_background[0],
        &with_background[1],
        &training,
        &run,
        true,
        std::slice::from_ref(device),
    )?;
    progress(Stage::Train(ONLINE, "fusion"), 1, 1);
    let pipeline = MicroGesturePipeline::<B::InnerBackend>::from_run(&run, device)?;
    // The baseline's class: the most frequent micro-gesture among the labelled training clips.
    let mut counts = [0usize; miga_datasets::NUM_CLASSES];
    for tensors in train.items.values() {
        if let Some(label) = item_label(tensors).filter(|&l| l >= 0) {
            counts[label as usize] += 1;
        }
    }
    let frequent = MicroGesture::all()
        .filter(|c| c.code() != miga_datasets::classes::NON_MICRO_GESTURE_CODE)
        .max_by_key(|c| (counts[c.index()], std::cmp::Reverse(c.index())))
        .expect("31 micro-gestures");
    let ignored = MicroGesture::from_code(miga_datasets::classes::NON_MICRO_GESTURE_CODE)
        .into_iter()
        .collect::<Vec<_>>();
    let test_videos = config.test.then(|| videos(Split::Test)).transpose()?;
    let mut scored = Vec::new();
    let (mut frames, mut seconds) = (0usize, 0.0f64);
    for (split, videos) in [
        (Split::Validate, Some(&valid_videos)),
        (Split::Test, test_videos.as_ref()),
    ] {
        let Some(videos) = videos else { continue };
        let mut found = Vec::new();
        for (k, video) in videos.iter().enumerate() {
            progress(Stage::Detect(split), k, videos.len());
            let detection = detect(&pipeline, video, &online.detect)?;
            frames += detection.frames;
            seconds += detection.seconds;
            found.extend(detection.instances);
        }
        progress(Stage::Detect(split), videos.len(), videos.len());
        let known: Vec<Instance> = videos
            .iter()
            .flat_map(|v| labelled(&v.id, &v.segments))
            .collect();
        let out = run.join(format!("detect-{split}"));
        miga_datasets::io::write_atomic(
            &out.join("detections.csv"),
            instances_csv(&found).as_bytes(),
        )?;
        let fusion = evaluate_online(&known, &found, online.tiou, &ignored);
        fusion.write(&out)?;
        let trivial = baseline(videos, frequent, online.detect.window);
        let trivial = evaluate_online(&known, &trivial, online.tiou, &ignored);
        let instances = fusion.overall.true_positives + fusion.overall.false_negatives;
        scored.push(SplitScores {
            fusion,
            baseline: trivial,
            instances,
        });
    }
    let row = |streams: &str, pick: fn(&SplitScores) -> [f64; 3]| DemoRow {
        task: ONLINE.into(),
        streams: streams.into(),
        run: run.clone(),
        validation: pick(&scored[0]),
        items: scored.get(1).map_or(0, |s| s.instances),
        metrics: scored.get(1).map(pick),
        per_class: Vec::new(),
    };
    let rows = vec![
        row("fusion, background windows", |s| cells(&s.fusion)),
        row("every window the most frequent class", |s| {
            cells(&s.baseline)
        }),
    ];
    Ok((rows, frames as f64 / seconds.max(1e-9)))
}
