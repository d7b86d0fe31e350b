//! `miga train --task emotion`: InterFusion (or a baseline) trained on emotion features.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use miga_fusion::InterFusionConfig;

use crate::features::FeatureSet;
use crate::models::emotion::{
    EMOTION, EmotionFeatureBatcher, EmotionFeatures, EmotionModel, EmotionTrainConfig,
    emotion_items,
};
use crate::training::{RunSpec, TrainSummary, feature_inputs, fit, main_device};
use crate::{Error, Result};

/// Checks that the features fit the fusion config (widths, expressions), naming what differs.
fn check_features(
    items: &[EmotionFeatures],
    config: &InterFusionConfig,
    path: &Path,
) -> Result<()> {
    let mismatch = |reason: String| Error::Mismatch {
        path: path.to_path_buf(),
        reason,
    };
    for item in items {
        if let Some(context) = &item.context
            && context.shape[1] != config.context_dim
        {
            return Err(mismatch(format!(
                "context embeddings are {} wide, fusion.context_dim is {}",
                context.shape[1], config.context_dim
            )));
        }
        if let Some(face) = &item.face {
            if face.shape[1] != config.face_dim {
                return Err(mismatch(format!(
                    "face embeddings are {} wide, fusion.face_dim is {}",
                    face.shape[1], config.face_dim
                )));
            }
            let given = item.expressions.as_ref().map_or(0, |e| e.shape[1]);
            if config.expression_classes > 0 && given != config.expression_classes {
                return Err(mismatch(format!(
                    "fusion.expression_classes is {}, the features have {given} expression \
                     probabilities a face (extract with `expressions = true`, or set it to 0)",
                    config.expression_classes
                )));
            }
        }
    }
    Ok(())
}

/// Trains InterFusion (or a baseline, after `streams`) on emotion features, validating on
/// `valid`, in the run folder `run`; resumption and errors as
/// [`crate::micro_gesture::train_micro_gesture`], and so is training on several `devices`. Validation runs on all validation videos at once, so
/// its AUROC is the set's.
pub fn train_emotion<B: AutodiffBackend>(
    train: &FeatureSet,
    valid: &FeatureSet,
    config: &EmotionTrainConfig,
    run: &Path,
    resume: bool,
    devices: &[B::Device],
) -> Result<TrainSummary> {
    let device = main_device::<B>(devices, run)?;
    if config.transductive_centring {
        return Err(Error::InvalidConfig {
            path: run.to_path_buf(),
            reason:
                "transductive_centring is for micro-gesture clips; an emotion item is a whole video"
                    .into(),
        });
    }
    let labelled = |set: &FeatureSet| -> Result<Vec<EmotionFeatures>> {
        Ok(emotion_items(set, run, config.streams)?
            .into_iter()
            .map(|(_, i)| i)
            .filter(|i| i.label >= 0)
            .collect())
    };
    let (train_items, valid_items) = (labelled(train)?, labelled(valid)?);
    check_features(&train_items, &config.fusion, run)?;
    let inputs = feature_inputs(EMOTION, train, valid, run)?;
    let spec = RunSpec::new::<EmotionModel<B>, _, _>(inputs, config, run, resume)?;
    let build = |items: &[EmotionFeatures]| {
        Ok(EmotionModel::<B>::new(config, device)?.standardised(items, device))
    };
    let valid_batch = valid_items.len();
    fit(
        spec,
        build,
        (train_items, valid_items),
        (EmotionFeatureBatcher, EmotionFeatureBatcher),
        valid_batch,
        devices,
    )
}
#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use miga_datasets::emotion::EmotionRecord;
    use miga_datasets::synth::{LABELS_CSV, SynthConfig, synthesise};
    use miga_datasets::{LabelTable, MigaLayout, Split};

    use super::*;
    use crate::emotion::{EmotionRun, emotion_csv, evaluate_emotion, extract_emotion};
    use crate::models::Weights;
    use crate::models::emotion::{EmotionExtractStreams, EmotionExtraction, EmotionStreams};
    use crate::testing::{tiny_extraction, tiny_training};

    #[test]
    fn extracts_trains_evaluates_and_resumes() {
        let _rng = crate::rng_lock();
        let root = std::env::temp_dir().join(format!("miga-emotion-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = SynthConfig {
            seed: 3,
            videos: 6,
            clips_per_video: 2,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &root.join("data"), &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(root.join("data")).unwrap();
        let labels = LabelTable::read(root.join("data").join(LABELS_CSV)).unwrap();
        let device = Default::default();
        let extract = |split: Split| {
            let out = root.join(split.to_string());
            let summary = extract_emotion::<Flex>(
                EmotionRecord::from_miga(&layout, split, &labels),
                &tiny_extraction(),
                &Weights::default(),
                &out,
                (0, 1),
                &device,
                &mut |_, _| {},
            )
            .unwrap();
            (out, summary)
        };
        let (train_dir, summary) = extract(Split::Train);
        assert_eq!(
            (summary.clips, summary.extracted),
            (2, 2),
            "{:?}",
            summary.failed
        );
        let (_, again) = extract(Split::Train);
        assert_eq!((again.extracted, again.resumed), (0, 2));
        let (valid_dir, _) = extract(Split::Validate);
        let train = FeatureSet::read(&train_dir).unwrap();
        let valid = FeatureSet::read(&valid_dir).unwrap();
        let item = train.items.values().next().unwrap();
        assert_eq!(item["context_embeddings"].shape, [2, 768].into());
        assert_eq!(item["face_embeddings"].shape, [3, 512].into());
        assert!(!item.contains_key("face_expressions"));

        let run = root.join("run");
        let summary = train_emotion::<Autodiff<Flex>>(
            &train,
            &valid,
            &tiny_training(2),
            &run,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(summary.epochs, 2);
        for file in [
            "checkpoint/model-2.mpk",
            "best.mpk",
            "training.svg",
            "run.json",
        ] {
            assert!(run.join(file).exists(), "{file}");
        }
        let scores = EmotionRun::<Flex>::load(&run, &device)
            .unwrap()
            .scores(&valid, &valid_dir, &device)
            .unwrap();
        assert_eq!(scores.ids.len(), 2);
        assert_eq!(evaluate_emotion(&scores.labels, &scores.scores).videos, 2);
        assert_eq!(emotion_csv(&scores.ids, &scores.scores).lines().count(), 3);
        // Exported, it loads back (strictly) and scores the same.
        let exported = root.join("exported");
        crate::export::export_run::<Flex>(&run, &exported, &device).unwrap();
        let again = EmotionRun::<Flex>::load(&exported, &device)
            .unwrap()
            .scores(&valid, &valid_dir, &device)
            .unwrap();
        assert_eq!(
            (again.ids, again.scores),
            (scores.ids.clone(), scores.scores.clone())
        );
        // A run of the other task, and a fusion that does not fit the features, are refused.
        let message = crate::micro_gesture::TrainedRun::<Flex>::load(&run, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("task `emotion`"), "{message}");
        let wide = EmotionTrainConfig {
            fusion: tiny_training(1).fusion.with_face_dim(256),
            ..tiny_training(1)
        };
        let centred = EmotionTrainConfig {
            transductive_centring: true,
            ..tiny_training(1)
        };
        for (config, expected) in [
            (wide, "face_dim is 256"),
            (centred, "transductive_centring"),
        ] {
            let message = train_emotion::<Autodiff<Flex>>(
                &train,
                &valid,
                &config,
                &root.join("other"),
                false,
                std::slice::from_ref(&device),
            )
            .err()
            .unwrap()
            .to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    /// Each stream on its own: face-only extraction decodes no context windows, context-only
    /// needs no skeleton; each gives the tensors of a full extraction, trains its stream, and
    /// a model that needs the other stream says so.
    #[test]
    fn extracts_and_trains_one_stream_alone() {
        let _rng = crate::rng_lock();
        let root = std::env::temp_dir().join(format!("miga-emotion-alone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = SynthConfig {
            seed: 3,
            videos: 4,
            clips_per_video: 1,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &root.join("data"), &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(root.join("data")).unwrap();
        let labels = LabelTable::read(root.join("data").join(LABELS_CSV)).unwrap();
        let records = EmotionRecord::from_miga(&layout, Split::Train, &labels);
        let device = Default::default();
        let extract = |streams: EmotionExtractStreams, records: Vec<EmotionRecord>| {
            let out = root.join(format!("{streams:?}"));
            let summary = extract_emotion::<Flex>(
                records,
                &EmotionExtraction {
                    streams,
                    ..tiny_extraction()
                },
                &Weights::default(),
                &out,
                (0, 1),
                &device,
                &mut |_, _| {},
            )
            .unwrap();
            assert!(summary.failed.is_empty(), "{:?}", summary.failed);
            FeatureSet::read(&out).unwrap()
        };
        let both = extract(EmotionExtractStreams::Both, records.clone());
        let faces = extract(EmotionExtractStreams::Face, records.clone());
        let no_skeleton: Vec<EmotionRecord> = records
            .iter()
            .cloned()
            .map(|r| EmotionRecord {
                skeleton: None,
                ..r
            })
            .collect();
        let context = extract(EmotionExtractStreams::Context, no_skeleton);
        for (id, tensors) in &both.items {
            let names =
                |set: &FeatureSet| -> Vec<String> { set.items[id].keys().cloned().collect() };
            assert_eq!(names(&faces), ["face_embeddings", "label"]);
            assert_eq!(names(&context), ["context_embeddings", "label"]);
            assert_eq!(
                faces.items[id]["face_embeddings"],
                tensors["face_embeddings"]
            );
            assert_eq!(
                context.items[id]["context_embeddings"],
                tensors["context_embeddings"]
            );
        }
        let train = |set: &FeatureSet, streams: EmotionStreams, name: &str| {
            train_emotion::<Autodiff<Flex>>(
                set,
                set,
                &EmotionTrainConfig {
                    streams,
                    ..tiny_training(1)
                },
                &root.join(name),
                false,
                std::slice::from_ref(&device),
            )
        };
        train(&faces, EmotionStreams::Face, "face").unwrap();
        train(&context, EmotionStreams::Context, "context").unwrap();
        for (set, streams, missing) in [
            (&faces, EmotionStreams::Both, "context stream"),
            (&context, EmotionStreams::Late, "face stream"),
        ] {
            let message = train(set, streams, "refused").err().unwrap().to_string();
            assert!(message.contains(missing), "{message}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
