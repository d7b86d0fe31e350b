//! `miga demo`: both tasks end to end on generated data. A synthetic dataset in the MiGA
//! layout is written, features are extracted for each split, every single-stream baseline and
//! the fusion model are trained and evaluated on the held-out test subjects, and predictions
//! are written; everything lands in one folder, and a run that was stopped picks up the work
//! already done when started again on the same folder. Every setting was chosen on the
//! validation split (docs/tasks.md keeps the history); the test split is scored once per run.
//! [`SeedStudy`] repeats the demo over seeds and reports the spread.

mod config;
mod online;
mod seeds;

pub use config::{DEMO_CLASSES, DemoConfig};
pub use online::{ONLINE, OnlineDemo};
pub use seeds::{Paired, SeedRow, SeedStudy};

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use miga_datasets::clips::{ClipConfig, ClipRecord, FrameTransform};
use miga_datasets::emotion::{EmotionConfig, EmotionRecord};
use miga_datasets::synth::{Cue, LABELS_CSV, SynthConfig, cue, synthesise};
use miga_datasets::{LabelTable, MicroGesture, MigaLayout, NUM_CLASSES, Split};
use miga_fusion::{CmtfConfig, InterFusionConfig};
use serde::{Deserialize, Serialize};

use crate::emotion::{
    EMOTION, EmotionEvaluation, EmotionExtraction, EmotionRun, EmotionStreams, EmotionTrainConfig,
    emotion_csv, evaluate_emotion, extract_emotion, train_emotion,
};
use crate::features::FeatureSet;
use crate::micro_gesture::{
    Evaluation, MICRO_GESTURE, MicroGestureExtraction, Streams, TrainConfig, TrainedRun, evaluate,
    extract_micro_gesture, submission_csv, train_micro_gesture,
};
use crate::models::Weights;
use crate::training::Scores;
use crate::{Error, Result};

/// One class's (micro-gesture) or one outcome's (emotion) test accuracy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassScore {
    /// The class (or `Win`, `Lose`).
    pub name: String,
    /// Which modality tells it from its twin in the synthetic data (micro-gestures).
    pub cue: Option<Cue>,
    /// Test items of the class.
    pub items: usize,
    /// Of those, predicted right (none without items).
    pub accuracy: Option<f64>,
}

/// One trained model's scores: on the validation split, where settings are chosen, and once
/// on the test split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoRow {
    /// `micro-gesture` or `emotion`.
    pub task: String,
    /// The streams the model saw (`fusion (transductive)`: per-video centring at scoring time).
    pub streams: String,
    /// Its run folder.
    pub run: PathBuf,
    /// Micro-gesture: top-1, top-5, mean class accuracy; emotion: accuracy, F1, AUROC; on the
    /// validation split.
    pub validation: [f64; 3],
    /// Test items (clips or videos); 0 when the test split was not scored.
    pub items: usize,
    /// The same metrics on the test split (none when it was not scored).
    pub metrics: Option<[f64; 3]>,
    /// Per class (micro-gesture) or per outcome (emotion), on the test split.
    pub per_class: Vec<ClassScore>,
}

/// The streams name of the transductive micro-gesture fusion row.
const TRANSDUCTIVE: &str = "fusion (transductive)";

/// Whether a row's streams are a single stream (not a fusion).
fn single_stream(streams: &str) -> bool {
    !streams.contains("fusion")
}

/// What the demo gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoSummary {
    /// The folder with everything.
    pub dir: PathBuf,
    /// The seeds of this run (data, extraction and training draw from their own).
    pub seeds: DemoSeeds,
    /// One row per model.
    pub rows: Vec<DemoRow>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The chance level of each task's first metric (1/classes present; 0.5).
    pub chance: [f64; 2],
    /// Online detection's speed (video frames a second), when the online rows ran.
    #[serde(default)]
    pub online_frames_per_second: Option<f64>,
    /// The temporal IoU of the online rows.
    #[serde(default)]
    pub online_tiou: f64,
}

/// The seeds a demo run used (micro-gesture extraction and training; [`DemoConfig::with_seed`]
/// sets the emotion ones to the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoSeeds {
    /// The synthetic data.
    pub data: u64,
    /// The random backbones of the micro-gesture extraction.
    pub extraction: u64,
    /// Initialisation and shuffling of the micro-gesture trainings.
    pub training: u64,
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn metric_cells(task: &str, m: [f64; 3]) -> [String; 3] {
    if task != EMOTION {
        m.map(percent)
    } else {
        [
            percent(m[0]),
            format!("{:.3}", m[1]),
            format!("{:.3}", m[2]),
        ]
    }
}

impl DemoSummary {
    /// The summary table as Markdown: validation and test scores of every model, then each
    /// task's per-class test accuracy by stream.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| task | streams | validation top-1 / accuracy / F1 | test items | top-1 / accuracy / F1 | top-5 / F1 / precision | mean class acc. / AUROC / recall |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for r in &self.rows {
            let [a, b, c] = match r.metrics {
                Some(m) => metric_cells(&r.task, m),
                None => ["not scored".to_string(), String::new(), String::new()],
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {a} | {b} | {c} |\n",
                r.task,
                r.streams,
                metric_cells(&r.task, r.validation)[0],
                r.items
            ));
        }
        out.push_str(&format!(
            "\nChance: micro-gesture top-1 {:.1}% (classes in the test split), emotion accuracy {:.0}%. Seeds: data {}, extraction {}, training {}.\n",
            self.chance[0] * 100.0,
            self.chance[1] * 100.0,
            self.seeds.data,
            self.seeds.extraction,
            self.seeds.training,
        ));
        if let Some(fps) = self.online_frames_per_second {
            out.push_str(&format!(
                "Online: F1, precision and recall of the micro-gesture instances found in the untrimmed videos (tIoU {}, docs/online.md), detection at {fps:.0} frames/s.\n",
                self.online_tiou
            ));
        }
        for task in [MICRO_GESTURE, EMOTION] {
            let rows: Vec<&DemoRow> = self
                .rows
                .iter()
                .filter(|r| r.task == task && !r.per_class.is_empty())
                .collect();
            let Some(first) = rows.first() else {
                continue;
            };
            out.push_str(&format!(
                "\n{task}, test accuracy per {}:\n\n| {} | items |",
                if task == MICRO_GESTURE {
                    "class"
                } else {
                    "outcome"
                },
                if task == MICRO_GESTURE {
                    "class | told apart by"
                } else {
                    "outcome"
                }
            ));
            for r in &rows {
                out.push_str(&format!(" {} |", r.streams));
            }
            out.push_str(&format!(
                "\n|{}\n",
                " --- |".repeat(rows.len() + if task == MICRO_GESTURE { 3 } else { 2 })
            ));
            for (i, class) in first.per_class.iter().enumerate() {
                if class.items == 0 {
                    continue;
                }
                out.push_str(&format!("| {} |", class.name));
                if let Some(cue) = class.cue {
                    out.push_str(&format!(" {cue} |"));
                }
                out.push_str(&format!(" {} |", class.items));
                for r in &rows {
                    let cell = r.per_class[i].accuracy.map(percent).unwrap_or_default();
                    out.push_str(&format!(" {cell} |"));
                }
                out.push('\n');
            }
        }
        out
    }
}

/// A stage of the demo, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Writing the synthetic videos.
    Data,
    /// Extracting features of one task and split.
    Extract(&'static str, Split),
    /// Training one model.
    Train(&'static str, &'static str),
    /// Finding micro-gestures in the untrimmed videos of a split.
    Detect(Split),
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Data => write!(f, "synthetic data"),
            Self::Extract(task, split) => write!(f, "{task} features, {split}"),
            Self::Train(task, streams) => write!(f, "training {task} ({streams})"),
            Self::Detect(split) => write!(f, "online detection, {split}"),
        }
    }
}

const SPLITS: [Split; 3] = [Split::Train, Split::Validate, Split::Test];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The synthetic dataset in `dir`, generated unless a finished one of the same config is there.
fn data(
    config: &SynthConfig,
    dir: &Path,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<()> {
    let marker = dir.join("synth.toml");
    let same = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|text| toml::from_str::<SynthConfig>(&text).ok())
        .is_some_and(|c| c == *config);
    if !same {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        progress(Stage::Data, 0, config.videos);
        synthesise(config, dir, &|_, _| {})?;
    }
    progress(Stage::Data, config.videos, config.videos);
    Ok(())
}

/// Micro-gesture per-class accuracies with each class's cue.
fn class_scores(evaluation: &Evaluation) -> Vec<ClassScore> {
    evaluation
        .per_class
        .iter()
        .map(|c| ClassScore {
            name: c.name.to_string(),
            cue: MicroGesture::from_code(c.code).map(cue),
            items: c.clips,
            accuracy: c.accuracy,
        })
        .collect()
}

/// Emotion per-outcome accuracies (Lose, Win).
fn outcome_scores(evaluation: &EmotionEvaluation) -> Vec<ClassScore> {
    ["Lose", "Win"]
        .iter()
        .zip(evaluation.confusion)
        .map(|(name, row)| {
            let items = row[0] + row[1];
            let right = if *name == "Lose" { row[0] } else { row[1] };
            ClassScore {
                name: name.to_string(),
                cue: None,
                items,
                accuracy: (items > 0).then(|| right as f64 / items as f64),
            }
        })
        .collect()
}

/// A task's metrics as the demo reports them.
trait DemoMetrics {
    /// Top-1, top-5, mean class accuracy; or accuracy, F1, AUROC.
    fn metrics(&self) -> [f64; 3];
    /// Labelled items scored.
    fn items(&self) -> usize;
    /// Per class or per outcome.
    fn per_class(&self) -> Vec<ClassScore>;
    /// Writes `metrics.json` (and friends) into a folder.
    fn write(&self, dir: &Path) -> Result<()>;
}

impl DemoMetrics for Evaluation {
    fn metrics(&self) -> [f64; 3] {
        [self.top1, self.top5, self.mean_class_accuracy]
    }
    fn items(&self) -> usize {
        self.clips
    }
    fn per_class(&self) -> Vec<ClassScore> {
        class_scores(self)
    }
    fn write(&self, dir: &Path) -> Result<()> {
        Evaluation::write(self, dir)
    }
}

impl DemoMetrics for EmotionEvaluation {
    fn metrics(&self) -> [f64; 3] {
        [self.accuracy, self.f1, self.auroc]
    }
    fn items(&self) -> usize {
        self.videos
    }
    fn per_class(&self) -> Vec<ClassScore> {
        outcome_scores(self)
    }
    fn write(&self, dir: &Path) -> Result<()> {
        EmotionEvaluation::write(self, dir)
    }
}

/// A trained run's row: scored (`score`) and evaluated (`evaluate`) on the validation features,
/// then on the test features when there are any; each evaluation is written into the run's
/// `eval-validate/` or `eval-test/`. Returns the row and the test scores.
fn demo_row<E: DemoMetrics>(
    (task, streams, run): (&str, &str, &Path),
    score: impl Fn(&FeatureSet, &Path) -> Result<Scores>,
    evaluate: impl Fn(&[i64], &[Vec<f32>]) -> E,
    valid: (&FeatureSet, &Path),
    test: Option<&(FeatureSet, PathBuf)>,
) -> Result<(DemoRow, Option<Scores>)> {
    let scores = score(valid.0, valid.1)?;
    let validation = evaluate(&scores.labels, &scores.scores);
    validation.write(&run.join("eval-validate"))?;
    let mut row = DemoRow {
        task: task.into(),
        streams: streams.into(),
        run: run.to_path_buf(),
        validation: validation.metrics(),
        items: 0,
        metrics: None,
        per_class: Vec::new(),
    };
    let Some((test, test_path)) = test else {
        return Ok((row, None));
    };
    let scores = score(test, test_path)?;
    let evaluation = evaluate(&scores.labels, &scores.scores);
    evaluation.write(&run.join("eval-test"))?;
    row.items = evaluation.items();
    row.metrics = Some(evaluation.metrics());
    row.per_class = evaluation.per_class();
    Ok((row, Some(scores)))
}

/// Runs the demo into `dir` on backend `B` (extraction on its inner backend): data, features,
/// the runs (micro-gesture: video, skeleton, fusion, and with
/// [`DemoConfig::transductive_row`] the transductive fusion; emotion: face, context, late
/// fusion, InterFusion), their validation metrics, their test metrics (with
/// [`DemoConfig::test`]) and the fusion models' predictions; `progress(stage, done, total)`
/// reports each stage.
pub fn run_demo<B: AutodiffBackend>(
    config: &DemoConfig,
    dir: &Path,
    device: &B::Device,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<DemoSummary> {
    let start = Instant::now();
    let _lock = miga_datasets::lock::FolderLock::folder(dir, None, "demo")?;
    miga_datasets::io::write_atomic(
        &dir.join("demo.toml"),
        toml::to_string(config).unwrap_or_default().as_bytes(),
    )?;
    let data_dir = dir.join("data");
    data(&config.data, &data_dir, progress)?;
    let layout = MigaLayout::scan(&data_dir)?;
    let labels = LabelTable::read(data_dir.join(LABELS_CSV))?;
    // The inner backend's device is the autodiff backend's.
    let inner = device;
    let splits: &[Split] = if config.test { &SPLITS } else { &SPLITS[..2] };
    let features =
        |task: &str, split: Split| dir.join("features").join(task).join(split.to_string());
    for &split in splits {
        let (records, problems) = ClipRecord::from_miga(&layout, split);
        if let Some(problem) = problems.into_iter().next() {
            return Err(problem.into());
        }
        let stage = Stage::Extract(MICRO_GESTURE, split);
        extract_micro_gesture::<B::InnerBackend>(
            records,
            &config.micro_gesture_extraction,
            &Weights::default(),
            &features(MICRO_GESTURE, split),
            (0, 1),
            inner,
            &mut |done, total| progress(stage, done, total),
        )?;
        let records = EmotionRecord::from_miga(&layout, split, &labels);
        let stage = Stage::Extract(EMOTION, split);
        extract_emotion::<B::InnerBackend>(
            records,
            &config.emotion_extraction,
            &Weights::default(),
            &features(EMOTION, split),
            (0, 1),
            inner,
            &mut |done, total| progress(stage, done, total),
        )?;
    }
    let read = |task: &str, split: Split| -> Result<(FeatureSet, PathBuf)> {
        let path = features(task, split);
        Ok((FeatureSet::read(&path)?, path))
    };
    let read_test = |task: &str| config.test.then(|| read(task, Split::Test)).transpose();
    let predictions = dir.join("predictions");
    let mut rows = Vec::new();
    let (train, _) = read(MICRO_GESTURE, Split::Train)?;
    let (valid, valid_path) = read(MICRO_GESTURE, Split::Validate)?;
    let test = read_test(MICRO_GESTURE)?;
    let mut micro_gesture_runs = vec![
        (Streams::Video, "video", false),
        (Streams::Skeleton, "skeleton", false),
        (Streams::Both, "fusion", false),
    ];
    if config.transductive_row {
        micro_gesture_runs.push((Streams::Both, TRANSDUCTIVE, true));
    }
    for (streams, name, transductive) in micro_gesture_runs {
        let run = dir
            .join("runs")
            .join(MICRO_GESTURE)
            .join(name.replace(" (", "-").replace(')', ""));
        let training = TrainConfig {
            streams,
            transductive_centring: transductive,
            ..config.micro_gesture_training.clone()
        };
        progress(Stage::Train(MICRO_GESTURE, name), 0, 1);
        train_micro_gesture::<B>(
            &train,
            &valid,
            &training,
            &run,
            true,
            std::slice::from_ref(device),
        )?;
        progress(Stage::Train(MICRO_GESTURE, name), 1, 1);
        let trained = TrainedRun::<B::InnerBackend>::load(&run, inner)?;
        let (row, test_scores) = demo_row(
            (MICRO_GESTURE, name, &run),
            |features, path| trained.scores(features, path, inner),
            evaluate,
            (&valid, &valid_path),
            test.as_ref(),
        )?;
        if let (Some(scores), "fusion") = (test_scores, name) {
            miga_datasets::io::write_atomic(
                &predictions.join("micro_gesture.csv"),
                submission_csv(&scores.ids, &scores.scores).as_bytes(),
            )?;
        }
        rows.push(row);
    }
    let mut online_frames_per_second = None;
    if config.online.background > 0.0 {
        let (online, fps) =
            online::online_rows::<B>(config, dir, &layout, (&train, &valid), device, progress)?;
        rows.extend(online);
        online_frames_per_second = Some(fps);
    }
    let (train, _) = read(EMOTION, Split::Train)?;
    let (valid, valid_path) = read(EMOTION, Split::Validate)?;
    let test = read_test(EMOTION)?;
    for (streams, name) in [
        (EmotionStreams::Face, "face"),
        (EmotionStreams::Context, "context"),
        (EmotionStreams::Late, "late fusion"),
        (EmotionStreams::Both, "fusion"),
    ] {
        let run = dir.join("runs").join(EMOTION).join(name.replace(' ', "-"));
        let training = EmotionTrainConfig {
            streams,
            ..config.emotion_training.clone()
        };
        progress(Stage::Train(EMOTION, name), 0, 1);
        train_emotion::<B>(
            &train,
            &valid,
            &training,
            &run,
            true,
            std::slice::from_ref(device),
        )?;
        progress(Stage::Train(EMOTION, name), 1, 1);
        let trained = EmotionRun::<B::InnerBackend>::load(&run, inner)?;
        let (row, test_scores) = demo_row(
            (EMOTION, name, &run),
            |features, path| trained.scores(features, path, inner),
            evaluate_emotion,
            (&valid, &valid_path),
            test.as_ref(),
        )?;
        if let (Some(scores), EmotionStreams::Both) = (test_scores, streams) {
            miga_datasets::io::write_atomic(
                &predictions.join("emotion.csv"),
                emotion_csv(&scores.ids, &scores.scores).as_bytes(),
            )?;
        }
        rows.push(row);
    }
    // Chance: one over the classes the test split has (all the config's when it is not scored).
    let classes = rows
        .iter()
        .find(|r| r.task == MICRO_GESTURE && r.metrics.is_some())
        .map_or(config.classes(), |r| {
            r.per_class.iter().filter(|c| c.items > 0).count()
        })
        .max(1);
    let summary = DemoSummary {
        dir: dir.to_path_buf(),
        seeds: config.seeds(),
        rows,
        seconds: start.elapsed().as_secs_f64(),
        chance: [1.0 / classes as f64, 0.5],
        online_frames_per_second,
        online_tiou: config.online.tiou,
    };
    miga_datasets::io::write_atomic(&dir.join("summary.md"), summary.table().as_bytes())?;
    miga_datasets::io::write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use super::*;
    use crate::testing::{tiny_extraction, tiny_settings, tiny_training};

    /// The score check of the demo (`DemoConfig::small`, seed 0, validation split only):
    /// every stream above chance, and each task's fusion not more than `MARGIN` below its best
    /// single stream. Over seeds 0-4 (release build, 2026-12-06) fusion minus the best single
    /// stream on validation was +2.1, +6.3, -10.4, -6.3, 0.0 points for micro-gestures (mean
    /// -1.7, sd 6.6) and 0.0, -6.3, -12.5, -6.3, 0.0 for emotion (mean -5.0, sd 5.3); the
    /// margin is the mean less three standard deviations, about 21 points for both, rounded
    /// down to 20. The weakest stream scored 45.8% (8 classes, chance 12.5%) and 68.8%
    /// (chance 50%).
    #[test]
    fn every_stream_learns_and_fusion_keeps_up_on_validation() {
        const MARGIN: f64 = 0.20;
        let _rng = crate::rng_lock();
        let dir = std::env::temp_dir().join(format!("miga-demo-scores-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = DemoConfig {
            test: false,
            ..DemoConfig::small()
        };
        let summary =
            run_demo::<Autodiff<Flex>>(&config, &dir, &Default::default(), &mut |_, _, _| {})
                .unwrap();
        for (task, chance) in [(MICRO_GESTURE, 1.0 / 8.0), (EMOTION, 0.5)] {
            let rows: Vec<&DemoRow> = summary.rows.iter().filter(|r| r.task == task).collect();
            for row in &rows {
                assert!(row.metrics.is_none(), "the test split was scored");
                assert!(
                    row.validation[0] > chance,
                    "{task} {}: {:.3} is not above chance {chance}",
                    row.streams,
                    row.validation[0]
                );
            }
            let best_single = rows
                .iter()
                .filter(|r| single_stream(&r.streams))
                .map(|r| r.validation[0])
                .fold(0.0, f64::max);
            let fusion = rows.iter().find(|r| r.streams == "fusion").unwrap();
            assert!(
                fusion.validation[0] >= best_single - MARGIN,
                "{task}: fusion {:.3} more than {MARGIN} below the best single stream {best_single:.3}",
                fusion.validation[0]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_demo_leaves_every_artefact_in_its_folder_and_resumes() {
        let _rng = crate::rng_lock();
        let dir = std::env::temp_dir().join(format!("miga-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = DemoConfig {
            data: SynthConfig {
                seed: 1,
                videos: 6,
                clips_per_video: 3,
                width: 128,
                height: 72,
                classes: DEMO_CLASSES.to_vec(),
            },
            micro_gesture_extraction: tiny_settings(),
            micro_gesture_training: TrainConfig {
                epochs: 1,
                batch: 4,
                warmup_epochs: 1,
                fusion: CmtfConfig::new()
                    .with_d_model(16)
                    .with_heads(2)
                    .with_ff_dim(32)
                    .with_layers(1),
                ..TrainConfig::default()
            },
            emotion_extraction: tiny_extraction(),
            emotion_training: tiny_training(1),
            test: true,
            transductive_row: true,
            online: OnlineDemo::default(),
        };
        let device = Default::default();
        let mut stages = Vec::new();
        let summary =
            run_demo::<Autodiff<Flex>>(&config, &dir, &device, &mut |s, _, _| stages.push(s))
                .unwrap();
        assert_eq!(summary.rows.len(), 10);
        assert!(stages.contains(&Stage::Train(EMOTION, "fusion")));
        assert!(stages.contains(&Stage::Detect(Split::Test)));
        assert!(stages.contains(&Stage::Train(MICRO_GESTURE, TRANSDUCTIVE)));
        for file in [
            "summary.md",
            "summary.json",
            "demo.toml",
            "predictions/micro_gesture.csv",
            "predictions/emotion.csv",
            "runs/micro-gesture/fusion/training.svg",
            "runs/micro-gesture/fusion/eval-test/confusion.svg",
            "runs/micro-gesture/fusion/eval-validate/metrics.json",
            "runs/micro-gesture/fusion-transductive/eval-test/metrics.json",
            "runs/emotion/late-fusion/eval-test/metrics.json",
            "features/emotion/test/index-0of1.json",
            "runs/online/fusion/detect-test/detections.csv",
            "runs/online/fusion/detect-validate/online.json",
        ] {
            assert!(dir.join(file).exists(), "{file}");
        }
        // Every row scored on both splits; per-class tables with each class's cue.
        let table = summary.table();
        assert!(summary.rows.iter().all(|r| r.metrics.is_some()));
        assert!(
            summary
                .rows
                .iter()
                .all(|r| r.task == ONLINE || !r.per_class.is_empty())
        );
        assert!(
            table.contains("Online: F1") && table.contains("frames/s"),
            "{table}"
        );
        assert!(table.contains("| told apart by |"), "{table}");
        assert!(table.contains("| Lose |"), "{table}");
        // Again on the same folder: the data, features and runs are there; nothing is redone.
        let mut stages = Vec::new();
        let again =
            run_demo::<Autodiff<Flex>>(&config, &dir, &device, &mut |s, _, _| stages.push(s))
                .unwrap();
        assert_eq!(again.rows.len(), 10);
        assert!(again.seconds < summary.seconds);
        // Two identical runs: every spread is zero, the comparisons are the runs' own.
        let study = SeedStudy::new(&[summary.clone(), again]);
        assert_eq!(study.rows.len(), 10);
        assert!(study.rows.iter().all(|r| r.test_moments(0).1 == 0.0));
        for paired in &study.paired {
            let fusion = summary
                .rows
                .iter()
                .find(|r| r.task == paired.task && r.streams == "fusion")
                .unwrap();
            let single = summary
                .rows
                .iter()
                .find(|r| r.task == paired.task && r.streams == paired.single)
                .unwrap();
            let difference = fusion.metrics.unwrap()[0] - single.metrics.unwrap()[0];
            assert_eq!(paired.differences, [difference; 2]);
            assert!(single_stream(&paired.single));
        }
        assert_eq!(study.paired.len(), 2);
        assert!(study.table().contains("seeds above / level / below"));
    }
}
