//! A trained micro-gesture model with the backbones its features came from (or, for an
//! end-to-end run, the backbones it fine-tuned): raw clips (a video and its OpenPose skeleton)
//! in, classes out.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use miga_datasets::clips::ClipRecord;
//! use miga_datasets::{MigaLayout, Split};
//! use miga_tasks::micro_gesture::MicroGesturePipeline;
//!
//! # fn main() -> miga_tasks::Result<()> {
//! let device = Default::default();
//! let pipeline = MicroGesturePipeline::<Flex>::from_run("runs/fusion".as_ref(), &device)?;
//! let layout = MigaLayout::scan("miga2025")?;
//! let (clips, _) = ClipRecord::from_miga(&layout, Split::Test);
//! for prediction in pipeline.predict(&clips[..4])? {
//!     println!("{}: {} ({:.0}%)", prediction.id, prediction.class.name(), prediction.probability * 100.0);
//! }
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use miga_datasets::classes::MicroGesture;
use miga_datasets::clips::{ClipBatch, ClipBatcher, ClipDataset, ClipRecord};

use super::evaluate::TrainedRun;
use super::load_end_to_end;
use crate::features::rows;
use crate::models::Weights;
use crate::models::micro_gesture::{
    Backbones, FeatureBatcher, FeatureDescription, FeatureItem, MICRO_GESTURE_END_TO_END,
    MicroGestureExtraction, MicroGestureModel, centre_video_features,
};
use crate::run_info::read_run_info;
use crate::{Error, Result};

/// One clip's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipPrediction {
    /// The clip id (`<video>_<clip index>`).
    pub id: String,
    /// The most probable class.
    pub class: MicroGesture,
    /// Its probability.
    pub probability: f32,
    /// Every class's probability, in class index order.
    pub probabilities: Vec<f32>,
}

/// MViTv2 and 2s-AGCN as the run's features were extracted (or as an end-to-end run trained
/// them), and the run's fusion model.
pub struct MicroGesturePipeline<B: Backend> {
    settings: MicroGestureExtraction,
    backbones: Backbones<B>,
    model: MicroGestureModel<B>,
    dir: PathBuf,
    device: B::Device,
}

impl<B: Backend> MicroGesturePipeline<B> {
    /// Loads the run's best model and rebuilds the backbones its training features were
    /// extracted with (the checkpoints named in the features' settings, or the same random
    /// initialisation under their seed: the backend's generator is global to the process, so
    /// that holds when nothing else draws from it meanwhile, and on the backend that extracted).
    pub fn from_run(run: &Path, device: &B::Device) -> Result<Self> {
        if read_run_info(run)?.task == MICRO_GESTURE_END_TO_END {
            let (settings, model) = load_end_to_end::<B>(run, device)?;
            return Ok(Self {
                settings,
                backbones: model.backbones,
                model: model.head,
                dir: run.to_path_buf(),
                device: device.clone(),
            });
        }
        let trained = TrainedRun::<B>::load(run, device)?;
        let description = FeatureDescription::from_json(&trained.info.features, run)?;
        let weights = Weights {
            mvit: description.mvit_weights,
            agcn: description.agcn_weights,
            swinface: None,
        };
        Self::new(description.settings, &weights, trained, device)
    }

    /// A pipeline of `run` with backbones from `settings` and `weights` (they must be the
    /// ones the run's features were extracted with).
    pub fn new(
        settings: MicroGestureExtraction,
        weights: &Weights,
        run: TrainedRun<B>,
        device: &B::Device,
    ) -> Result<Self> {
        // Only the streams the model sees are read and run.
        let mut settings = settings;
        settings.clip.modalities = run.model.streams().modalities();
        let (graph, settings) = settings.prepared()?;
        let backbones = Backbones::<B>::new(&settings, graph, weights, device)?;
        Ok(Self {
            settings,
            backbones,
            model: run.model,
            dir: run.dir,
            device: device.clone(),
        })
    }

    /// Predicts each clip; a clip that cannot be read (no video, no skeleton, frames beyond
    /// the end) is an error that names it. A run trained with `transductive_centring` centres the video
    /// features over the clips of each video given here.
    pub fn predict(&self, clips: &[ClipRecord]) -> Result<Vec<ClipPrediction>> {
        let (dataset, problems) = ClipDataset::new(clips.to_vec(), self.settings.clip.clone(), 0)?;
        if let Some(problem) = problems.into_iter().next() {
            return Err(problem.into());
        }
        let failed = |reason: String| Error::Mismatch {
            path: self.dir.clone(),
            reason,
        };
        let step = self.settings.batch.max(1);
        let mut items = Vec::new();
        for start in (0..dataset.len()).step_by(step) {
            let end = (start + step).min(dataset.len());
            let batch: ClipBatch<B> = ClipBatcher.batch(
                (start..end).filter_map(|i| dataset.get(i)).collect(),
                &self.device,
            );
            if let Some((id, reason)) = batch.skipped.first() {
                return Err(Error::Mismatch {
                    path: id.into(),
                    reason: reason.clone(),
                });
            }
            if batch.ids.is_empty() {
                continue;
            }
            let features =
                self.backbones
                    .features(batch.rgb, batch.skeleton, self.settings.video_grid)?;
            let mut video = features.video.map(|t| rows(t).into_iter());
            let mut class = features.class.map(|t| rows(t).into_iter());
            let mut skeleton = features.skeleton.map(|t| rows(t).into_iter());
            for id in batch.ids {
                let next = |rows: &mut Option<std::vec::IntoIter<TensorData>>| {
                    rows.as_mut().and_then(Iterator::next)
                };
                let item = FeatureItem::unlabelled(
                    next(&mut video),
                    next(&mut class),
                    next(&mut skeleton),
                );
                items.push((id, item));
            }
        }
        if self.model.transductive_centring {
            centre_video_features(&mut items);
        }
        let mut out = Vec::new();
        for chunk in items.chunks(step) {
            let features =
                FeatureBatcher.batch(chunk.iter().map(|(_, i)| i.clone()).collect(), &self.device);
            let n = chunk.len();
            let probabilities = softmax(self.model.logits(&features), 1);
            let values = probabilities
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| failed(format!("{e:?}")))?;
            let k = values.len() / n.max(1);
            for (row, (id, _)) in chunk.iter().enumerate() {
                let probabilities = values[row * k..(row + 1) * k].to_vec();
                let (best, &probability) = probabilities
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap_or((0, &0.0));
                out.push(ClipPrediction {
                    id: id.clone(),
                    class: MicroGesture::from_index(best)
                        .unwrap_or(MicroGesture::all().last().expect("32 classes")),
                    probability,
                    probabilities,
                });
            }
        }
        Ok(out)
    }
}
#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use miga_datasets::{MigaLayout, Split};

    use super::*;
    use crate::features::FeatureSet;
    use crate::micro_gesture::{TrainConfig, train_micro_gesture};
    use crate::testing::{tiny_config, tiny_features};

    #[test]
    fn predicts_raw_clips_as_the_run_scores_their_features() {
        let _rng = crate::rng_lock();
        let (train_dir, valid_dir) = tiny_features("pipeline");
        let (train, valid) = (
            FeatureSet::read(&train_dir).unwrap(),
            FeatureSet::read(&valid_dir).unwrap(),
        );
        let run = std::env::temp_dir().join(format!("miga-pipeline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let device = Default::default();
        train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            // Centred per video: the pipeline must centre over the clips it is given as the
            // run's scoring does over the feature set.
            &TrainConfig {
                transductive_centring: true,
                ..tiny_config(1)
            },
            &run,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        let pipeline = MicroGesturePipeline::<Flex>::from_run(&run, &device).unwrap();
        let data = train_dir.with_file_name(
            train_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace("-train", "-data"),
        );
        let (clips, _) = ClipRecord::from_miga(&MigaLayout::scan(&data).unwrap(), Split::Validate);
        let predictions = pipeline.predict(&clips).unwrap();
        assert_eq!(predictions.len(), clips.len());
        let scores = TrainedRun::<Flex>::load(&run, &device)
            .unwrap()
            .scores(&valid, &valid_dir, &device)
            .unwrap();
        for (prediction, logits) in predictions.iter().zip(&scores.scores) {
            // The same backbones (the seed's), the same features, the same class.
            let best = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            assert_eq!(prediction.class.index(), best, "{}", prediction.id);
            let total: f32 = prediction.probabilities.iter().sum();
            assert!((total - 1.0).abs() < 1e-4);
        }
    }
}
