//! `miga eval` and `miga predict` for emotion: a trained run's Win/Lose scores per video, their
//! metrics (accuracy, F1, AUROC) and the per-video prediction file.

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use serde::Serialize;

use crate::Result;
use crate::features::FeatureSet;
use crate::models::emotion::{
    EmotionFeatureBatcher, EmotionFeatures, EmotionModel, EmotionStreams, EmotionTrainConfig,
    emotion_items,
};
use crate::training::{Scores, load_best, score_items};

/// A trained emotion run, loaded for inference.
pub struct EmotionRun<B: Backend> {
    /// The run folder.
    pub dir: PathBuf,
    /// The feature settings it was trained on.
    pub features: String,
    /// Its best model.
    pub model: EmotionModel<B>,
    /// The streams it sees.
    streams: EmotionStreams,
}

impl<B: Backend> EmotionRun<B> {
    /// Loads `run/best.mpk` with the run's settings.
    pub fn load(run: &Path, device: &B::Device) -> Result<Self> {
        let (info, config, model) = load_best(
            run,
            |config: &EmotionTrainConfig| EmotionModel::new(config, device),
            device,
        )?;
        Ok(Self {
            dir: run.to_path_buf(),
            features: info.features,
            model,
            streams: config.streams,
        })
    }

    /// Win/Lose scores (logits, Lose then Win) of every video of `features`.
    pub fn scores(&self, features: &FeatureSet, path: &Path, device: &B::Device) -> Result<Scores> {
        let items = emotion_items(features, path, self.streams)?;
        score_items(
            &self.features,
            features,
            path,
            &items,
            EmotionFeatures::label,
            |chunk| {
                let batch = EmotionFeatureBatcher.batch(chunk, device);
                self.model.logits(&batch)
            },
        )
    }
}

/// Emotion metrics over videos.
#[derive(Debug, Clone, Serialize)]
pub struct EmotionEvaluation {
    /// Labelled videos.
    pub videos: usize,
    /// Share predicted right.
    pub accuracy: f64,
    /// F1 of the Win class (harmonic mean of its precision and recall).
    pub f1: f64,
    /// Area under the ROC curve of the Win probability (0.5: chance; ties count half).
    pub auroc: f64,
    /// Counts `[true][predicted]`, 0 Lose, 1 Win.
    pub confusion: [[usize; 2]; 2],
}

impl EmotionEvaluation {
    /// Writes `metrics.json` into `dir` (atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        miga_datasets::io::write_atomic(&dir.join("metrics.json"), text.as_bytes())?;
        Ok(())
    }
}

/// The probability of Win from a row of logits (Lose, Win).
fn win_probability(logits: &[f32]) -> f64 {
    let (lose, win) = (f64::from(logits[0]), f64::from(logits[1]));
    1.0 / (1.0 + (lose - win).exp())
}

/// Accuracy, F1 and AUROC of `scores` (Lose, Win logits) for videos labelled `labels` (1 Win,
/// 0 Lose; others are left out).
pub fn evaluate_emotion(labels: &[i64], scores: &[Vec<f32>]) -> EmotionEvaluation {
    let rows: Vec<(usize, f64)> = labels
        .iter()
        .zip(scores)
        .filter(|(l, _)| (0..2).contains(*l))
        .map(|(&l, s)| (l as usize, win_probability(s)))
        .collect();
    let mut confusion = [[0usize; 2]; 2];
    for &(label, p) in &rows {
        confusion[label][usize::from(p > 0.5)] += 1;
    }
    let videos = rows.len();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let tp = confusion[1][1];
    let precision = ratio(tp, confusion[0][1] + tp);
    let recall = ratio(tp, confusion[1][0] + tp);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    // Mann-Whitney: the share of (Win, Lose) pairs ranked right.
    let (wins, losses): (Vec<&(usize, f64)>, Vec<_>) = rows.iter().partition(|r| r.0 == 1);
    let mut right = 0.0;
    for w in &wins {
        for l in &losses {
            right += if w.1 > l.1 {
                1.0
            } else if w.1 == l.1 {
                0.5
            } else {
                0.0
            };
        }
    }
    EmotionEvaluation {
        videos,
        accuracy: ratio(confusion[0][0] + tp, videos),
        f1,
        auroc: if wins.is_empty() || losses.is_empty() {
            f64::NAN
        } else {
            right / (wins.len() * losses.len()) as f64
        },
        confusion,
    }
}

/// The per-video prediction file: `Id,Target,P_win`, Target 1 for Win and 0 for Lose.
pub fn emotion_csv(ids: &[String], scores: &[Vec<f32>]) -> String {
    let mut out = String::from("Id,Target,P_win\n");
    for (id, s) in ids.iter().zip(scores) {
        let p = win_probability(s);
        out.push_str(&format!("{id},{},{p:.6}\n", u8::from(p > 0.5)));
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emotion_metrics() {
        let labels = [1, 1, 0, 0, -1];
        let scores = [
            vec![0.0, 2.0],
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![3.0, 0.0],
            vec![0.0, 9.0],
        ];
        let e = evaluate_emotion(&labels, &scores);
        assert_eq!(e.videos, 4);
        assert_eq!(e.confusion, [[1, 1], [1, 1]]);
        assert!((e.accuracy - 0.5).abs() < 1e-12 && (e.f1 - 0.5).abs() < 1e-12);
        // Win probabilities 0.88, 0.27 against Lose 0.73, 0.05: 3 of 4 pairs ranked right.
        assert!((e.auroc - 0.75).abs() < 1e-12, "{}", e.auroc);
        let csv = emotion_csv(&["0001".into()], &scores[..1]);
        assert_eq!(csv, "Id,Target,P_win\n0001,1,0.880797\n");
    }
}
