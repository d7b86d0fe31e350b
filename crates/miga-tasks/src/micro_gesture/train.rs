//! `miga train --task micro-gesture`: Cross-Modal Token Fusion trained on extracted features
//! with burn-train (AdamW, warm-up then cosine learning rate, a checkpoint every epoch,
//! resumption, early stopping, best-epoch selection on validation, a training-curve plot).

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;

use crate::Result;
use crate::features::{FeatureSet, item_label};
use crate::models::micro_gesture::{
    FeatureBatcher, FeatureItem, MICRO_GESTURE, MicroGestureModel, TrainConfig,
    centre_video_features, feature_items,
};
use crate::training::{RunSpec, TrainSummary, feature_inputs, fit, main_device};

/// Trains on `train` features, validating on `valid`, in the run folder `run`. With `resume`,
/// an interrupted run of the same settings continues after its last finished epoch; without
/// it, a folder that already holds a run is an error. With several `devices` (of one
/// backend), training is data-parallel through burn-train's multi-device strategy, the first
/// device holding the optimiser.
pub fn train_micro_gesture<B: AutodiffBackend>(
    train: &FeatureSet,
    valid: &FeatureSet,
    config: &TrainConfig,
    run: &Path,
    resume: bool,
    devices: &[B::Device],
) -> Result<TrainSummary> {
    let device = main_device::<B>(devices, run)?;
    // Skeleton tokens are averaged over the body parts once, here: standardising commutes with
    // that average, so the statistics come from the tokens as extracted.
    let labelled = |set: &FeatureSet| -> Result<Vec<FeatureItem>> {
        let mut items = feature_items(set, run, Some(&config.fusion), config.streams)?;
        if config.transductive_centring {
            centre_video_features(&mut items);
        }
        Ok(items
            .into_iter()
            .map(|(_, i)| i)
            .filter(|i| i.label >= 0)
            .collect())
    };
    let (train_items, valid_items) = (labelled(train)?, labelled(valid)?);
    let inputs = feature_inputs(MICRO_GESTURE, train, valid, run)?;
    let run_spec = RunSpec::new::<MicroGestureModel<B>, _, _>(inputs, config, run, resume)?;
    let skeleton_tokens = train
        .items
        .values()
        .filter(|t| item_label(t).is_some_and(|l| l >= 0))
        .filter_map(|t| t.get("skeleton_tokens"));
    let build = |items: &[FeatureItem]| {
        Ok(MicroGestureModel::<B>::new(config, device)?.standardised(
            items,
            skeleton_tokens,
            device,
        ))
    };
    fit(
        run_spec,
        build,
        (train_items, valid_items),
        (FeatureBatcher, FeatureBatcher),
        config.batch,
        devices,
    )
}
#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::data::dataloader::batcher::Batcher;
    use burn::prelude::*;
    use burn::record::Recorder;
    use burn::train::LearnerSummary;

    use super::*;
    use crate::models::micro_gesture::Streams;
    use crate::testing::{tiny_config, tiny_features};
    use crate::training::checkpoints::{BestEpoch, RunRecorder, checkpoints};

    /// The validation scores of the model checkpointed after `epoch` in `run`.
    fn checkpoint_scores(
        run: &Path,
        epoch: usize,
        config: &TrainConfig,
        set: &FeatureSet,
    ) -> Vec<f32> {
        let device = Default::default();
        let record = RunRecorder::new()
            .load(run.join(format!("checkpoint/model-{epoch}")), &device)
            .unwrap();
        let model = MicroGestureModel::<Flex>::new(config, &device)
            .unwrap()
            .load_record(record);
        let items = feature_items(set, run, None, Streams::Both).unwrap();
        let batch = FeatureBatcher.batch(items.into_iter().map(|(_, i)| i).collect(), &device);
        model.logits(&batch).into_data().to_vec().unwrap()
    }

    /// Retention: a run of many short epochs never holds more than the configured checkpoints
    /// (plus the one being written), ends with exactly them, keeps `best.mpk` and `best.json`
    /// of the best epoch, and a run killed while writing, resumed after retention removed the
    /// older checkpoints, ends with the weights of the uninterrupted run.
    #[test]
    fn keeps_the_configured_checkpoints_and_resumes_after_retention() {
        let _rng = crate::rng_lock();
        let (train_dir, valid_dir) = tiny_features("retention");
        let (train, valid) = (
            FeatureSet::read(&train_dir).unwrap(),
            FeatureSet::read(&valid_dir).unwrap(),
        );
        let config = TrainConfig {
            keep_checkpoints: 2,
            keep_every: 5,
            checkpoint_every: 1,
            ..tiny_config(12)
        };
        let device = Default::default();
        let run = |name: &str| {
            let dir = std::env::temp_dir().join(format!("miga-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            dir
        };
        let (whole, killed) = (run("retention-whole"), run("retention-killed"));
        // A watcher samples the folder while the run writes it.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (done, dir) = (done.clone(), whole.clone());
            std::thread::spawn(move || {
                let mut most = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let rolling = checkpoints(&dir).iter().filter(|&&e| e % 5 != 0).count();
                    most = most.max(rolling);
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                most
            })
        };
        let summary = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &config,
            &whole,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let most = watcher.join().unwrap();
        assert!(most <= 3, "{most} rolling checkpoints at once");
        assert_eq!(summary.epochs, 12);
        // The finished run keeps its last checkpoint and the `keep_every` ones.
        assert_eq!(checkpoints(&whole), [5, 10, 12]);
        let files = std::fs::read_dir(whole.join("checkpoint")).unwrap().count();
        assert_eq!(files, 9, "three files a checkpoint, nothing else");
        // `best.mpk` is the best epoch's model, chosen as the logs choose it.
        let best = BestEpoch::read(&whole).unwrap();
        assert_eq!(
            (best.epoch, best.accuracy),
            (summary.best_epoch, summary.best_accuracy)
        );
        let logged: Vec<f64> = LearnerSummary::new(&whole, &["Accuracy"])
            .unwrap()
            .metrics
            .valid
            .iter()
            .find(|m| m.name == "Accuracy")
            .unwrap()
            .entries
            .iter()
            .map(|e| e.value / 100.0)
            .collect();
        assert_eq!(logged.len(), 12);
        let first_best = logged
            .iter()
            .enumerate()
            .fold(0, |b, (e, &a)| if a > logged[b] { e } else { b });
        assert_eq!(best.epoch, first_best + 1, "{logged:?}");
        assert_eq!(best.accuracy, logged[first_best]);
        let device_scores = |dir: &Path, epoch| checkpoint_scores(dir, epoch, &config, &valid);
        let best_scores = {
            let model = MicroGestureModel::<Flex>::new(&config, &device)
                .unwrap()
                .load_file(whole.join("best"), &RunRecorder::new(), &device)
                .unwrap();
            let items = feature_items(&valid, &whole, None, Streams::Both).unwrap();
            let batch = FeatureBatcher.batch(items.into_iter().map(|(_, i)| i).collect(), &device);
            model.logits(&batch).into_data().to_vec::<f32>().unwrap()
        };
        // The same run, killed while it wrote epoch 12's checkpoint: epochs 5, 10 (kept every
        // 5) and 11 (the newest complete one) are there, the older rolling ones are gone, a
        // temporary file is left. (Made from a run that kept everything: the checkpoint
        // settings change no weight, and a resumed run may change them.)
        let keep_all = TrainConfig {
            keep_every: 1,
            ..config.clone()
        };
        train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &keep_all,
            &killed,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(checkpoints(&killed), (1..=12).collect::<Vec<_>>());
        let scores_all = |epoch| device_scores(&killed, epoch);
        assert_eq!(scores_all(12), device_scores(&whole, 12));
        assert_eq!(scores_all(best.epoch), best_scores);
        for epoch in (1..=12).filter(|e| ![5, 10, 11].contains(e)) {
            for kind in ["model", "optim", "scheduler"] {
                std::fs::remove_file(killed.join(format!("checkpoint/{kind}-{epoch}.mpk")))
                    .unwrap();
            }
        }
        std::fs::write(
            killed.join("checkpoint/.partial-1-optim-12.mpk"),
            b"cut short",
        )
        .unwrap();
        for split in ["train", "valid"] {
            std::fs::remove_dir_all(killed.join(format!("{split}/epoch-12"))).unwrap();
        }
        let resumed = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &config,
            &killed,
            true,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(resumed.epochs, 12);
        assert_eq!(checkpoints(&killed), [5, 10, 12]);
        assert!(!killed.join("checkpoint/.partial-1-optim-12.mpk").exists());
        assert_eq!(device_scores(&killed, 12), device_scores(&whole, 12));
        assert_eq!(BestEpoch::read(&killed), Some(best));
        for dir in [whole, killed] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn trains_checkpoints_every_epoch_and_resumes() {
        // Every epoch's checkpoint kept.
        let every_epoch = || TrainConfig {
            keep_every: 1,
            ..tiny_config(2)
        };
        let _rng = crate::rng_lock();
        let (train_dir, valid_dir) = tiny_features("train");
        let (train, valid) = (
            FeatureSet::read(&train_dir).unwrap(),
            FeatureSet::read(&valid_dir).unwrap(),
        );
        let run = std::env::temp_dir().join(format!("miga-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let device = Default::default();
        let summary = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &every_epoch(),
            &run,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(summary.epochs, 2);
        for file in [
            "checkpoint/model-1.mpk",
            "checkpoint/model-2.mpk",
            "best.mpk",
            "training.svg",
            "run.json",
        ] {
            assert!(run.join(file).exists(), "{file}");
        }
        assert!((1..=2).contains(&summary.best_epoch));
        // A second run in the same folder needs --resume; with it, training goes on from epoch 2.
        let again = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &every_epoch(),
            &run,
            false,
            std::slice::from_ref(&device),
        );
        assert!(again.err().unwrap().to_string().contains("--resume"));
        let other = TrainConfig {
            seed: 9,
            ..every_epoch()
        };
        let message = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &other,
            &run,
            true,
            std::slice::from_ref(&device),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(message.contains("other settings"), "{message}");
        // Resuming a finished run has nothing left to train.
        let resumed = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &every_epoch(),
            &run,
            true,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(resumed.epochs, 2);
        // A checkpoint cut short (a kill while it was written) is passed over: the run goes on
        // after epoch 1.
        let model = run.join("checkpoint/model-2.mpk");
        let bytes = std::fs::read(&model).unwrap();
        let scores = checkpoint_scores(&run, 2, &every_epoch(), &valid);
        std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(checkpoints(&run), [1, 2]);
        let logs = |epoch: usize| {
            ["train", "valid"].map(|split| {
                std::fs::read_to_string(run.join(format!("{split}/epoch-{epoch}/Loss.log")))
                    .unwrap()
            })
        };
        let epoch_1 = logs(1);
        for split in ["train", "valid"] {
            std::fs::remove_dir_all(run.join(format!("{split}/epoch-2"))).unwrap();
        }
        let resumed = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &every_epoch(),
            &run,
            true,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(resumed.epochs, 2);
        // Epoch 2 trained again is the epoch 2 of the uninterrupted run, bit for bit.
        assert_eq!(checkpoint_scores(&run, 2, &every_epoch(), &valid), scores);
        // The retrained epoch has its own logs; the first epoch's are untouched.
        assert_eq!(logs(1), epoch_1);
        assert!(logs(2).iter().all(|log| !log.is_empty()));
    }

    #[test]
    fn trains_data_parallel_on_two_cpu_devices() {
        let _rng = crate::rng_lock();
        let (train_dir, valid_dir) = tiny_features("parallel");
        let (train, valid) = (
            FeatureSet::read(&train_dir).unwrap(),
            FeatureSet::read(&valid_dir).unwrap(),
        );
        let run = std::env::temp_dir().join(format!("miga-run-parallel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let devices = vec![Default::default(); 2];
        let summary = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &tiny_config(2),
            &run,
            false,
            &devices,
        )
        .unwrap();
        assert_eq!(summary.epochs, 2);
        assert!(run.join("checkpoint/model-2.mpk").exists() && run.join("best.mpk").exists());
        let none: Vec<burn::backend::flex::FlexDevice> = Vec::new();
        let message = train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &tiny_config(2),
            &run.join("none"),
            false,
            &none,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(message.contains("no device"), "{message}");
    }
}
