//! [`fit`]: a task's model trained by burn-train in a run folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::lr_scheduler::LrScheduler;
use burn::lr_scheduler::composed::{ComposedLrScheduler, ComposedLrSchedulerConfig};
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::prelude::*;
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use burn::train::logger::FileMetricLogger;
use burn::train::metric::{AccuracyMetric, AurocMetric, LossMetric, TopKAccuracyMetric};
use burn::train::{
    ClassificationOutput, ExecutionStrategy, InferenceStep, Learner, LearnerSummary,
    MultiDeviceOptim, SupervisedTraining, TrainStep, TrainingStrategy,
};

use super::checkpoints::{
    BestEpoch, RunCheckpoints, RunRecorder, ValidScores, load_record_checked, prune,
};
use super::optim::{FusedAdamW, OnCpuWorkers};
use super::render::{EpochLines, LossPatience, ResumedMetricLogger};
use super::{Metrics, RunSpec, TaskModel, TrainSummary, main_device};
use crate::loader::EpochLoader;
use crate::plot::{Curve, line_chart};
use crate::{Error, Result};

/// Whether the record file `path` (without extension) reads as an `R`.
fn readable<B: Backend, R: burn::record::Record<B>>(path: PathBuf, device: &B::Device) -> bool {
    RunRecorder::new().load::<R>(path, device).is_ok()
}

/// Whether `path` reads as the record of optimiser `_optimizer`.
fn readable_as<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>>(
    _optimizer: &O,
    path: PathBuf,
    device: &B::Device,
) -> bool {
    readable::<B, O::Record>(path, device)
}

/// A run resumed after `epoch` from a folder written before `best.json` existed (every epoch's
/// checkpoint kept, `best.mpk` chosen at the end): its best epoch so far, from the logs, is
/// written as `best.mpk` now, while its checkpoint is still there (retention would delete it).
fn best_of_earlier_run<B: AutodiffBackend, M: AutodiffModule<B>>(
    run: &Path,
    epoch: usize,
    device: &B::Device,
) -> Result<()> {
    if BestEpoch::read(run).is_some() {
        return Ok(());
    }
    let Ok(summary) = LearnerSummary::new(run, &["Accuracy"]) else {
        return Ok(());
    };
    let best = summary
        .metrics
        .valid
        .iter()
        .find(|m| m.name == "Accuracy")
        .into_iter()
        .flat_map(|m| m.entries.iter())
        .filter(|e| e.step <= epoch)
        .fold(None, |best: Option<(usize, f64)>, e| match best {
            Some((_, a)) if e.value / 100.0 <= a => best,
            _ => Some((e.step, e.value / 100.0)),
        });
    let Some((epoch, accuracy)) = best else {
        return Ok(());
    };
    let checkpoint = run.join(format!("checkpoint/model-{epoch}"));
    let Ok(record) = RunRecorder::new().load::<<M as Module<B>>::Record>(checkpoint, device) else {
        return Ok(());
    };
    let mismatch = |e: String| Error::Mismatch {
        path: run.join("best.mpk"),
        reason: e,
    };
    RunRecorder::new()
        .record::<<M as Module<B>>::Record>(record, run.join("best"))
        .map_err(|e| mismatch(e.to_string()))?;
    let json = serde_json::to_string_pretty(&BestEpoch { epoch, accuracy }).unwrap_or_default();
    miga_datasets::io::write_atomic(&run.join("best.json"), json.as_bytes())?;
    Ok(())
}

/// Trains `model` with burn-train as `spec` says: AdamW, warm-up then cosine, a checkpoint
/// every epoch, early stopping, then `best.mpk` (best validation accuracy) and `training.svg`.
/// `build` makes the model (from the training items) after the backend is seeded. The training
/// batches are made by the first batcher, the validation batches (of `valid_batch` items) by the
/// second.
pub(crate) fn fit<B, M, I, T, V>(
    spec: RunSpec<'_>,
    build: impl FnOnce(&[I]) -> Result<M>,
    (train, valid): (Vec<I>, Vec<I>),
    (batcher, valid_batcher): (T, V),
    valid_batch: usize,
    devices: &[B::Device],
) -> Result<TrainSummary>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>
        + TaskModel
        + TrainStep<Output = ClassificationOutput<B>>
        + core::fmt::Display
        + 'static,
    M::InnerModule: InferenceStep<Output = ClassificationOutput<B::InnerBackend>>,
    I: Clone + core::fmt::Debug + Send + Sync + 'static,
    T: Batcher<B, I, <M as TrainStep>::Input> + 'static,
    V: Batcher<B::InnerBackend, I, <M::InnerModule as InferenceStep>::Input> + 'static,
    <M as TrainStep>::Input: Clone + core::fmt::Debug + Send + 'static,
    <M::InnerModule as InferenceStep>::Input: Clone + core::fmt::Debug + Send + 'static,
{
    let run = spec.run;
    let device = main_device::<B>(devices, run)?;
    if train.is_empty() || valid.is_empty() {
        return Err(Error::Mismatch {
            path: run.to_path_buf(),
            reason: "no labelled items in the training or validation features".into(),
        });
    }
    // Initialisation draws from the seed; each epoch seeds its own draws ([`EpochLoader`]).
    B::seed(device, spec.seed);
    let model = build(&train)?;
    let batches = train.len().div_ceil(spec.batch);
    let optimizer = OnCpuWorkers(OptimizerAdaptor::<_, M, B>::from(FusedAdamW::new(
        spec.weight_decay,
    )));
    // The newest epoch whose checkpoint reads back: a process killed while writing one leaves
    // a truncated or missing file, and the run then continues after the epoch before.
    let dir = run.join("checkpoint");
    let resumed = spec.resumable.iter().copied().find_map(|epoch| {
        let model = dir.join(format!("model-{epoch}"));
        let record = RunRecorder::new()
            .load::<<M as Module<B>>::Record>(model.clone(), device)
            .ok()?;
        (readable_as(&optimizer, dir.join(format!("optim-{epoch}")), device)
            && readable::<B, <ComposedLrScheduler as LrScheduler>::Record<B>>(
                dir.join(format!("scheduler-{epoch}")),
                device,
            ))
        .then_some((epoch, model, record))
    });
    let start = resumed.as_ref().map(|(epoch, _, _)| *epoch);
    let first = start.map_or(1, |epoch| epoch + 1);
    let clock = spec.clock.clone();
    let loader_train: Arc<dyn DataLoader<B, <M as TrainStep>::Input>> = Arc::new(EpochLoader::new(
        Arc::new(InMemDataset::new(train)),
        Arc::new(batcher),
        (spec.batch, spec.seed, first),
        device.clone(),
        clock.clone(),
    ));
    let loader_valid: Arc<
        dyn DataLoader<B::InnerBackend, <M::InnerModule as InferenceStep>::Input>,
    > = DataLoaderBuilder::new(valid_batcher)
        .batch_size(valid_batch.max(1))
        .build(InMemDataset::new(valid));
    let bad = |e: String| Error::InvalidConfig {
        path: "learning rate".into(),
        reason: e,
    };
    let warmup = (spec.warmup_epochs * batches).max(1);
    let scheduler = ComposedLrSchedulerConfig::new()
        .linear(LinearLrSchedulerConfig::new(0.01, 1.0, warmup))
        .cosine(
            CosineAnnealingLrSchedulerConfig::new(spec.learning_rate, spec.epochs * batches)
                .with_min_lr(spec.min_learning_rate),
        )
        .init()
        .map_err(|e| bad(format!("{e:?}")))?;
    if let Some((epoch, checkpoint, record)) = resumed {
        // burn-train loads the checkpoint into the model itself, and would panic on one of
        // another fusion variant: it is tried on a copy first.
        load_record_checked(model.clone(), record, &checkpoint)?;
        best_of_earlier_run::<B, M>(run, epoch, device)?;
    }
    let scores = ValidScores::default();
    let (strategy, recorder) = RunCheckpoints::new(
        run,
        spec.retention,
        spec.epochs,
        spec.patience,
        scores.clone(),
    );
    let training = SupervisedTraining::new(run, loader_train, loader_valid);
    let mut training = match M::METRICS {
        Metrics::Classes => training.metrics((
            AccuracyMetric::new(),
            TopKAccuracyMetric::new(5),
            LossMetric::new(),
        )),
        Metrics::Binary => {
            training.metrics((AccuracyMetric::new(), AurocMetric::new(), LossMetric::new()))
        }
    }
    .with_file_checkpointer(recorder)
    .with_checkpointing_strategy(strategy)
    .num_epochs(spec.epochs)
    .renderer(EpochLines {
        clock,
        names: Default::default(),
        sums: BTreeMap::new(),
        scores: scores.clone(),
    })
    .with_application_logger(None);
    if spec.patience > 0 {
        training = training.early_stopping(LossPatience {
            patience: spec.patience,
            scores,
        });
    }
    if let Some(epoch) = start {
        training = training.checkpoint(epoch);
    }
    training = training.with_metric_logger(ResumedMetricLogger {
        inner: FileMetricLogger::new(run),
        first,
        ended: Vec::new(),
    });
    if devices.len() > 1 {
        training = training.with_training_strategy(TrainingStrategy::Default(
            ExecutionStrategy::multi(devices.to_vec(), MultiDeviceOptim::OptimMainDevice),
        ));
    }
    let result = training
        .with_interrupter(spec.interrupter.clone())
        .launch(Learner::new(model, optimizer, scheduler));
    // A step that stopped the run: the epochs finished before it are checkpointed (burn-train
    // saves no interrupted epoch), so `--resume` continues once the cause is fixed; no best
    // model or plot is written for a run that did not finish.
    if spec.interrupter.should_stop() {
        return Err(Error::Mismatch {
            path: run.to_path_buf(),
            reason: format!(
                "training stopped: {}; the finished epochs are kept, fix the cause and pass \
                 --resume to continue",
                spec.interrupter.get_message().unwrap_or_default()
            ),
        });
    }
    let summary = LearnerSummary::new(run, &["Loss", "Accuracy"]).map_err(|e| Error::Mismatch {
        path: run.to_path_buf(),
        reason: e,
    })?;
    // `best.mpk` was written as its epoch's validation ended; only a run whose epochs all
    // failed to validate has none, and keeps its last model.
    let best = match BestEpoch::read(run) {
        Some(best) if run.join("best.mpk").exists() => best,
        _ => {
            result
                .model
                .save_file(run.join("best"), &RunRecorder::new())
                .map_err(|e| Error::Mismatch {
                    path: run.join("best.mpk"),
                    reason: e.to_string(),
                })?;
            BestEpoch {
                epoch: 0,
                accuracy: f64::MIN,
            }
        }
    };
    prune(run, spec.retention)?;
    let curves: Vec<Curve> = ["Loss", "Accuracy"]
        .into_iter()
        .flat_map(|name| {
            let pick = move |split: &[burn::train::MetricSummary], label: &str| {
                split.iter().find(|m| m.name == name).map(|m| Curve {
                    label: format!("{label} {name}"),
                    points: m.entries.iter().map(|e| (e.step as f64, e.value)).collect(),
                })
            };
            [
                pick(&summary.metrics.train, "train"),
                pick(&summary.metrics.valid, "valid"),
            ]
        })
        .flatten()
        .collect();
    let plot = run.join("training.svg");
    let (loss, acc): (Vec<Curve>, Vec<Curve>) =
        curves.into_iter().partition(|c| c.label.ends_with("Loss"));
    miga_datasets::io::write_atomic(
        &plot,
        line_chart("Training", &[("loss", loss), ("accuracy (%)", acc)])
            .map_err(|reason| Error::Mismatch {
                path: plot.clone(),
                reason: format!("the training chart could not be drawn: {reason}"),
            })?
            .as_bytes(),
    )?;
    Ok(TrainSummary {
        epochs: summary.epochs,
        best_epoch: best.epoch,
        best_accuracy: best.accuracy,
        plot,
    })
}
