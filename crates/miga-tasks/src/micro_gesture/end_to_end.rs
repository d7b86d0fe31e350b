//! `miga train --end-to-end`: MViTv2, 2s-AGCN and Cross-Modal Token Fusion fine-tuned together
//! from raw clips (video + OpenPose skeleton), the GPU path. The backbones start from their
//! checkpoints (or the seed's random initialisation), as extraction builds them; clips are
//! decoded by the data loader, batch by batch.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use miga_datasets::clips::{
    ClipBatch, ClipBatcher, ClipConfig, ClipDataset, ClipRecord, Modalities,
};

use crate::loader::EpochClock;
use crate::models::Weights;
use crate::models::micro_gesture::{
    Backbones, EndToEndModel, FeatureDescription, MicroGestureExtraction, MicroGestureModel,
    TrainConfig,
};
use crate::training::{RunSpec, TrainSummary, fit, load_best, main_device};
use crate::{Error, Result};
use burn::train::Interrupter;

/// Decodes a batch of clip records (video frames and skeleton) into a [`ClipBatch`]; with
/// augmentation, each clip's random draws follow from the seed, the epoch being trained and the
/// clip's id (so a resumed run draws as an uninterrupted one).
#[derive(Debug, Clone)]
pub struct RawClipBatcher {
    config: ClipConfig,
    seed: u64,
    epoch: Option<EpochClock>,
}

impl RawClipBatcher {
    /// Evaluation batches: centre crops, uniform frames.
    fn evaluation(config: &ClipConfig) -> Self {
        Self {
            config: ClipConfig {
                augment: false,
                ..config.clone()
            },
            seed: 0,
            epoch: None,
        }
    }
}

impl<B: Backend> Batcher<B, ClipRecord, ClipBatch<B>> for RawClipBatcher {
    fn batch(&self, records: Vec<ClipRecord>, device: &B::Device) -> ClipBatch<B> {
        // The settings were checked when training started; what can still fail (the clip
        // cache's folder) fails every clip, and the training step stops the run naming it.
        let (dataset, _) = match ClipDataset::new(records.clone(), self.config.clone(), self.seed) {
            Ok(made) => made,
            Err(error) => {
                return ClipBatch {
                    ids: Vec::new(),
                    labels: None,
                    rgb: None,
                    skeleton: None,
                    skipped: records
                        .into_iter()
                        .map(|r| (r.id, error.to_string()))
                        .collect(),
                };
            }
        };
        if let Some(clock) = &self.epoch {
            dataset.set_epoch(clock.epoch() as u64);
        }
        let items = (0..dataset.len()).filter_map(|i| dataset.get(i)).collect();
        ClipBatcher.batch(items, device)
    }
}

/// The labelled clips with the streams `clip` reads (a video, a skeleton or both), and how many
/// others were left out; a skeleton that cannot be read, or a clip beyond its end, is an error
/// naming it.
fn usable(records: Vec<ClipRecord>, clip: &ClipConfig) -> Result<(Vec<ClipRecord>, usize)> {
    let total = records.len();
    let (rgb, skeleton) = (
        clip.modalities != Modalities::Skeleton,
        clip.modalities != Modalities::Rgb,
    );
    let records_copy = records.clone();
    let keep: Vec<ClipRecord> = records
        .into_iter()
        .filter(|r| {
            r.class.is_some() && (!rgb || r.rgb.is_some()) && (!skeleton || r.skeleton.is_some())
        })
        .collect();
    if keep.is_empty()
        && let Some(missing) = records_missing(&records_copy, rgb, skeleton)
    {
        return Err(missing);
    }
    let (_, problems) = ClipDataset::new(keep.clone(), clip.clone(), 0)?;
    if let Some(problem) = problems.into_iter().next() {
        return Err(problem.into());
    }
    let left_out = total - keep.len();
    Ok((keep, left_out))
}

/// Why none of `records` can be used, naming a clip and the file it lacks.
fn records_missing(records: &[ClipRecord], rgb: bool, skeleton: bool) -> Option<Error> {
    let first = records.first()?;
    let lacks = if rgb && records.iter().all(|r| r.rgb.is_none()) {
        "a video"
    } else if skeleton && records.iter().all(|r| r.skeleton.is_none()) {
        "a skeleton"
    } else if records.iter().all(|r| r.class.is_none()) {
        "a label"
    } else {
        "a label, video or skeleton"
    };
    Some(Error::Mismatch {
        path: first.video.clone().into(),
        reason: format!(
            "none of the {} clips has {lacks} (clip {} for one), which the model's streams \
             need; on data with one modality, train a single-stream model (--streams video or \
             --streams skeleton)",
            records.len(),
            first.id
        ),
    })
}

/// Fine-tunes the backbones (built from `extraction` and `weights`) and the fusion module
/// (`config`) together on the `train` clips, validating on `valid`, in the run folder `run`;
/// resumption, early stopping, best epoch and devices as [`super::train_micro_gesture`].
/// Clips without a label, or without a stream the model sees (`config.streams`: a video, a
/// skeleton, or both) are left out (their count is returned with the summary); only the
/// backbones of those streams are built and read.
#[allow(clippy::too_many_arguments)]
pub fn train_end_to_end<B: AutodiffBackend>(
    train: Vec<ClipRecord>,
    valid: Vec<ClipRecord>,
    extraction: &MicroGestureExtraction,
    weights: &Weights,
    config: &TrainConfig,
    run: &Path,
    resume: bool,
    devices: &[B::Device],
) -> Result<(TrainSummary, usize)> {
    let device = main_device::<B>(devices, run)?;
    if config.transductive_centring {
        return Err(Error::InvalidConfig {
            path: run.to_path_buf(),
            reason:
                "transductive_centring works on extracted features; end-to-end training sees one \
                     clip at a time"
                    .into(),
        });
    }
    // The clips are read for the streams the model sees, and only their backbones are built.
    let mut extraction = extraction.clone();
    extraction.clip.modalities = config.streams.modalities();
    let (graph, mut settings) = extraction.prepared()?;
    // Training clips are augmented as the clip settings say (extraction never is); the run
    // records the settings with it, so a resumed run augments alike.
    settings.clip.augment = extraction.clip.augment;
    let (train, left_train) = usable(train, &settings.clip)?;
    let (valid, left_valid) = usable(valid, &settings.clip)?;
    let inputs = FeatureDescription {
        settings: settings.clone(),
        mvit_weights: weights.mvit.clone(),
        agcn_weights: weights.agcn.clone(),
    };
    let inputs = serde_json::to_string(&inputs).unwrap_or_default();
    let spec = RunSpec::new::<EndToEndModel<B>, _, _>(inputs, config, run, resume)?;
    let interrupter = spec.interrupter.clone();
    let build = |_: &[ClipRecord]| {
        Ok(EndToEndModel::new(
            Backbones::<B>::new(&settings, graph, weights, device)?,
            MicroGestureModel::new(config, device)?,
            settings.video_grid,
            interrupter,
        ))
    };
    let batchers = (
        RawClipBatcher {
            config: settings.clip.clone(),
            seed: config.seed,
            epoch: Some(spec.clock.clone()),
        },
        RawClipBatcher::evaluation(&settings.clip),
    );
    let summary = fit(spec, build, (train, valid), batchers, config.batch, devices)?;
    miga_datasets::cache::close_all()?;
    Ok((summary, left_train + left_valid))
}

/// The extraction settings and weights an end-to-end run was trained from, and its model.
pub(crate) fn load_end_to_end<B: Backend>(
    run: &Path,
    device: &B::Device,
) -> Result<(MicroGestureExtraction, EndToEndModel<B>)> {
    let info = crate::run_info::read_run_info(run)?;
    let description = FeatureDescription::from_json(&info.features, run)?;
    let weights = Weights {
        mvit: description.mvit_weights,
        agcn: description.agcn_weights,
        swinface: None,
    };
    let (graph, settings) = description.settings.prepared()?;
    let (_, _, model) = load_best(
        run,
        |config: &TrainConfig| {
            Ok(EndToEndModel::new(
                Backbones::<B>::new(&settings, graph, &weights, device)?,
                MicroGestureModel::new(config, device)?,
                settings.video_grid,
                Interrupter::new(),
            ))
        },
        device,
    )?;
    Ok((settings, model))
}
#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use miga_datasets::synth::{SynthConfig, synthesise};
    use miga_datasets::{MigaLayout, Split};

    use super::*;
    use crate::micro_gesture::MicroGesturePipeline;
    use crate::testing::{tiny_config, tiny_settings};

    #[test]
    fn fine_tunes_backbones_and_fusion_from_raw_clips() {
        let _rng = crate::rng_lock();
        let root = std::env::temp_dir().join(format!("miga-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = root.join("data");
        let config = SynthConfig {
            seed: 2,
            videos: 6,
            clips_per_video: 2,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &data, &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(&data).unwrap();
        let (train, _) = ClipRecord::from_miga(&layout, Split::Train);
        let (valid, _) = ClipRecord::from_miga(&layout, Split::Validate);
        let run = root.join("run");
        let device = Default::default();
        // Training clips augmented (random frames, resized crops, flips), validation not.
        let mut settings = tiny_settings();
        settings.clip.augment = true;
        let train_on = |run: &Path, resume: bool| {
            train_end_to_end::<Autodiff<Flex>>(
                train.clone(),
                valid.clone(),
                &settings,
                &Weights::default(),
                &tiny_config(1),
                run,
                resume,
                std::slice::from_ref(&device),
            )
        };
        let (summary, left_out) = train_on(&run, false).unwrap();
        assert_eq!((summary.epochs, left_out), (1, 0));
        // A video damaged after the clips were checked stops the run with an error naming the
        // clip, before any best model; restored, the run resumes and finishes.
        let video = train[0].rgb.clone().unwrap();
        let bytes = std::fs::read(&video).unwrap();
        std::fs::write(&video, &bytes[..bytes.len() / 8]).unwrap();
        let damaged = root.join("damaged");
        let message = train_on(&damaged, false).unwrap_err().to_string();
        // The error names the first clip of that video the shuffled epoch reached.
        let named = train
            .iter()
            .filter(|clip| clip.rgb.as_ref() == Some(&video))
            .any(|clip| message.contains(&clip.id));
        assert!(message.contains("no longer reads") && named, "{message}");
        assert!(!damaged.join("best.mpk").exists());
        std::fs::write(&video, &bytes).unwrap();
        assert_eq!(train_on(&damaged, true).unwrap().0.epochs, 1);
        assert!(run.join("best.mpk").exists() && run.join("checkpoint/optim-1.mpk").exists());
        // The run predicts raw clips with its fine-tuned backbones.
        let pipeline = MicroGesturePipeline::<Flex>::from_run(&run, &device).unwrap();
        let predictions = pipeline.predict(&valid).unwrap();
        assert_eq!(predictions.len(), valid.len());
        // Exported with its backbones, it loads back (strictly) and predicts the same.
        let exported = root.join("exported");
        let config = crate::export::export_run::<Flex>(&run, &exported, &device).unwrap();
        assert!(
            config
                .tensors
                .iter()
                .any(|(n, _)| n.starts_with("backbones."))
        );
        let pipeline = MicroGesturePipeline::<Flex>::from_run(&exported, &device).unwrap();
        assert_eq!(pipeline.predict(&valid).unwrap(), predictions);
        let message = crate::micro_gesture::TrainedRun::<Flex>::load(&run, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("micro-gesture-end-to-end"), "{message}");
        // Two runs with backbone checkpoints: hundreds of MB.
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn training_batches_draw_by_epoch_and_validation_batches_do_not() {
        let root = std::env::temp_dir().join(format!("miga-e2e-draws-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = SynthConfig {
            seed: 5,
            videos: 2,
            clips_per_video: 2,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &root, &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(&root).unwrap();
        let (records, _) = ClipRecord::from_miga(&layout, Split::Train);
        let (_, settings) = tiny_settings().prepared().unwrap();
        let clip = ClipConfig {
            augment: true,
            ..settings.clip
        };
        let rgb = |batcher: &RawClipBatcher| {
            let batch: ClipBatch<Flex> = batcher.batch(records.clone(), &Default::default());
            batch.rgb.unwrap().into_data()
        };
        let training = |epoch: usize| RawClipBatcher {
            config: clip.clone(),
            seed: 1,
            epoch: Some(EpochClock::at(epoch)),
        };
        assert_eq!(rgb(&training(1)), rgb(&training(1)), "reproducible");
        assert_ne!(rgb(&training(1)), rgb(&training(2)), "new draws each epoch");
        let evaluation = RawClipBatcher::evaluation(&clip);
        let plain = RawClipBatcher {
            config: ClipConfig {
                augment: false,
                ..clip.clone()
            },
            seed: 0,
            epoch: None,
        };
        assert_eq!(rgb(&evaluation), rgb(&plain));
        let _ = std::fs::remove_dir_all(&root);
    }
}
