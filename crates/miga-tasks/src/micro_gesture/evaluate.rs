//! `miga eval` and `miga predict` for micro-gestures: a trained run on extracted features,
//! giving metrics (top-1, top-5, mean class accuracy, per-class accuracy, confusion matrix) and
//! the MiGA submission file.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use miga_datasets::classes::{MicroGesture, NUM_CLASSES};
use serde::Serialize;

use crate::features::FeatureSet;
use crate::models::micro_gesture::{
    FeatureBatcher, FeatureItem, MicroGestureModel, TrainConfig, centre_video_features,
    feature_items,
};
use crate::run_info::RunInfo;
use crate::training::{Scores, load_best, score_items};
use crate::{Error, Result};

/// A trained micro-gesture run, loaded for inference.
pub struct TrainedRun<B: Backend> {
    /// The run folder.
    pub dir: PathBuf,
    /// What it was trained with.
    pub info: RunInfo,
    /// Its best model.
    pub model: MicroGestureModel<B>,
    /// Its settings (scored items are averaged per body part as they are read, with the
    /// streams the model sees).
    config: TrainConfig,
}

impl<B: Backend> TrainedRun<B> {
    /// Loads `run/best.mpk` with the run's settings; errors name a folder that is not a run or a
    /// checkpoint that does not match the settings.
    pub fn load(run: &Path, device: &B::Device) -> Result<Self> {
        let (info, config, model) = load_best(
            run,
            |config: &TrainConfig| MicroGestureModel::new(config, device),
            device,
        )?;
        Ok(Self {
            dir: run.to_path_buf(),
            info,
            model,
            config,
        })
    }

    /// Class scores for every labelled or unlabelled item of `features`.
    pub fn scores(&self, features: &FeatureSet, path: &Path, device: &B::Device) -> Result<Scores> {
        let mut items = feature_items(
            features,
            path,
            Some(&self.config.fusion),
            self.config.streams,
        )?;
        if self.model.transductive_centring {
            centre_video_features(&mut items);
        }
        score_items(
            &self.info.features,
            features,
            path,
            &items,
            FeatureItem::label,
            |chunk| self.model.logits(&FeatureBatcher.batch(chunk, device)),
        )
    }
}

/// Accuracy of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassAccuracy {
    /// iMiGUE code.
    pub code: u32,
    /// Name.
    pub name: &'static str,
    /// Clips of the class.
    pub clips: usize,
    /// Of those, predicted right (None when the class has no clip).
    pub accuracy: Option<f64>,
}

/// Micro-gesture metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Labelled clips evaluated.
    pub clips: usize,
    /// Top-1 accuracy (0..1).
    pub top1: f64,
    /// Top-5 accuracy.
    pub top5: f64,
    /// Mean over classes with clips of the per-class accuracy (the long tail counts as much as
    /// the head).
    pub mean_class_accuracy: f64,
    /// Per class, in index order.
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[true][predicted]` clip counts.
    pub confusion: Vec<Vec<usize>>,
}

fn ranked(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// Metrics of class scores against labels (unlabelled items, label < 0, are left out).
pub fn evaluate(labels: &[i64], scores: &[Vec<f32>]) -> Evaluation {
    let mut confusion = vec![vec![0usize; NUM_CLASSES]; NUM_CLASSES];
    let (mut top1, mut top5, mut clips) = (0usize, 0usize, 0usize);
    for (&label, s) in labels.iter().zip(scores) {
        let Ok(label) = usize::try_from(label) else {
            continue;
        };
        if label >= NUM_CLASSES {
            continue;
        }
        let order = ranked(s);
        clips += 1;
        top1 += usize::from(order[0] == label);
        top5 += usize::from(order.iter().take(5).any(|&c| c == label));
        confusion[label][order[0].min(NUM_CLASSES - 1)] += 1;
    }
    let per_class: Vec<ClassAccuracy> = MicroGesture::all()
        .map(|c| {
            let row = &confusion[c.index()];
            let n: usize = row.iter().sum();
            ClassAccuracy {
                code: c.code(),
                name: c.name(),
                clips: n,
                accuracy: (n > 0).then(|| row[c.index()] as f64 / n as f64),
            }
        })
        .collect();
    let present: Vec<f64> = per_class.iter().filter_map(|c| c.accuracy).collect();
    let ratio = |k: usize| {
        if clips == 0 {
            0.0
        } else {
            k as f64 / clips as f64
        }
    };
    Evaluation {
        clips,
        top1: ratio(top1),
        top5: ratio(top5),
        mean_class_accuracy: if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        },
        per_class,
        confusion,
    }
}

impl Evaluation {
    /// Writes `metrics.json`, `confusion.csv`, `confusion.svg` (rows normalised) and
    /// `per_class.csv` (code, name, clips, accuracy) into `dir`, each atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut per_class = String::from("code,name,clips,accuracy\n");
        for c in &self.per_class {
            let accuracy = c.accuracy.map(|a| format!("{a:.4}")).unwrap_or_default();
            per_class.push_str(&format!(
                "{},\"{}\",{},{accuracy}\n",
                c.code, c.name, c.clips
            ));
        }
        for (name, text) in [
            (
                "metrics.json",
                serde_json::to_string_pretty(self).unwrap_or_default(),
            ),
            ("confusion.csv", self.confusion_csv()),
            (
                "confusion.svg",
                self.confusion_svg().map_err(|reason| Error::Mismatch {
                    path: dir.join("confusion.svg"),
                    reason: format!("the chart could not be drawn: {reason}"),
                })?,
            ),
            ("per_class.csv", per_class),
        ] {
            miga_datasets::io::write_atomic(&dir.join(name), text.as_bytes())?;
        }
        Ok(())
    }

    /// The confusion matrix as CSV: a header of predicted codes, one row per true code.
    pub fn confusion_csv(&self) -> String {
        let codes: Vec<String> = MicroGesture::all().map(|c| c.code().to_string()).collect();
        let mut csv = format!("true\\predicted,{}\n", codes.join(","));
        for (c, row) in MicroGesture::all().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(ToString::to_string).collect();
            let _ = writeln!(csv, "{},{}", c.code(), cells.join(","));
        }
        csv
    }

    /// The confusion matrix as an SVG heat map, rows normalised per true class (or why it could
    /// not be drawn).
    pub fn confusion_svg(&self) -> std::result::Result<String, String> {
        let codes: Vec<String> = MicroGesture::all().map(|c| c.code().to_string()).collect();
        crate::plot::heat_map(
            "confusion (rows: true class code, columns: predicted)",
            &codes,
            &self.confusion,
        )
    }
}

/// The MiGA submission: `Id,Target` with ids `<video>_<clip index>` and targets 0..31.
pub fn submission_csv(ids: &[String], scores: &[Vec<f32>]) -> String {
    let mut csv = String::from("Id,Target\n");
    for (id, s) in ids.iter().zip(scores) {
        let _ = writeln!(csv, "{id},{}", ranked(s)[0]);
    }
    csv
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_known_predictions() {
        let one_hot = |c: usize| {
            (0..NUM_CLASSES)
                .map(|k| if k == c { 1.0 } else { -(k as f32) * 0.01 })
                .collect::<Vec<f32>>()
        };
        // Class 0 twice right, class 1 once wrong (predicted 0, with class 1 second), one unlabelled.
        let mut wrong = one_hot(0);
        wrong[1] = 0.5;
        let scores = vec![one_hot(0), one_hot(0), wrong, one_hot(3)];
        let e = evaluate(&[0, 0, 1, -1], &scores);
        assert_eq!(e.clips, 3);
        assert!((e.top1 - 2.0 / 3.0).abs() < 1e-9);
        assert!((e.top5 - 1.0).abs() < 1e-9);
        assert!((e.mean_class_accuracy - 0.5).abs() < 1e-9);
        assert_eq!(e.confusion[1][0], 1);
        assert_eq!(e.per_class[2].accuracy, None);
        assert!(
            e.confusion_csv()
                .lines()
                .nth(2)
                .unwrap()
                .starts_with("2,1,0")
        );
        assert!(e.confusion_svg().unwrap().starts_with("<svg"));
        let ids = ["0001_0".to_string(), "0001_1".to_string()];
        assert_eq!(
            submission_csv(&ids, &scores[..2]),
            "Id,Target\n0001_0,0\n0001_1,0\n"
        );
    }
}
