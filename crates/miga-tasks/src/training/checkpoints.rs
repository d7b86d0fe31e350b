//! A run folder's checkpoints: which epochs are written, which are kept, and the best epoch's
//! model as `best.mpk` the moment its validation ends.
//!
//! burn-train asks a [`CheckpointingStrategy`] at the end of every epoch (after validation)
//! whether to save and what to delete, then hands the model, optimiser and scheduler records to
//! three writer threads, each through a [`FileRecorder`]. [`RunCheckpoints`] is that strategy
//! and [`RunRecorder`] that recorder; they share a [`Plan`] saying, for each epoch, whether the
//! epoch gets a full checkpoint and whether its model is the best so far.
//!
//! - Every file is written to a temporary name, flushed to disk and renamed: a file under its
//!   final name is complete. A checkpoint (`model-`, `optim-` and `scheduler-<epoch>.mpk`) is
//!   complete when its three files are.
//! - Retention: while the run goes on, the newest `keep_checkpoints` full checkpoints are kept,
//!   plus every `keep_every`-th epoch's; when it has finished, its last one and the
//!   `keep_every` ones. A checkpoint is deleted only while a newer complete one exists:
//!   burn-train hands an epoch's deletions to the writer threads after that epoch's saves, and
//!   the epoch's own checkpoint (possibly still being written) never counts as the complete one.
//!   A kill at any moment therefore leaves a resumable run.
//! - Which epochs get a full checkpoint: every `checkpoint_every`-th, or (0, the default) as
//!   soon as the time since the last one is at least [`AUTO_RATIO`] times what writing the last
//!   one took; always the last epoch (the configured count, or the one early stopping ends on)
//!   and the `keep_every` epochs.
//! - The best epoch (highest mean validation accuracy, the earliest of equals) is decided as its
//!   validation ends; its model is written to `best.mpk` (and `best.json` says which epoch and
//!   score), whether or not the epoch gets a full checkpoint. When it does, the one file gets
//!   both names (a hard link), `best.mpk` first, so a complete checkpoint always comes with the
//!   `best.mpk` of its time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use burn::record::{
    FileRecorder, FullPrecisionSettings, NamedMpkFileRecorder, Recorder, RecorderError,
};
use burn::tensor::backend::Backend;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Error, Result};

/// With `checkpoint_every = 0`, a full checkpoint is written once the time since the last one
/// is at least this many times what writing the last one took (so writing costs at most about
/// a fifth of a run's time).
pub const AUTO_RATIO: u32 = 4;

/// How a run writes and keeps checkpoints (fields of the training settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Newest full checkpoints kept (at least 1).
    pub keep: usize,
    /// Also keep every epoch that is a multiple of this (0: none).
    pub keep_every: usize,
    /// A full checkpoint every this many epochs (0: by time, see [`AUTO_RATIO`]).
    pub every: usize,
}

/// What is written for one epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct EpochPlan {
    /// Model, optimiser and scheduler.
    full: bool,
    /// The model as `best.mpk`, with this validation accuracy (0..1).
    best: Option<f64>,
}

/// What the strategy decided and what the writers measured.
#[derive(Debug, Default)]
struct Plan {
    epochs: BTreeMap<usize, EpochPlan>,
    /// Seconds spent writing each epoch's files (the three writer threads together).
    write_seconds: BTreeMap<usize, f64>,
}

/// The best epoch's record, `best.json` beside `best.mpk`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// The epoch whose model `best.mpk` is.
    pub epoch: usize,
    /// Its mean validation accuracy (0..1).
    pub accuracy: f64,
}

impl BestEpoch {
    /// `run/best.json`, if the run has one.
    pub fn read(run: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(run.join("best.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The recorder of run folders: Burn's named MessagePack at full precision (Burn's
/// `CompactRecorder` would round weights and optimiser moments to half precision, and a
/// resumed run would not continue as the uninterrupted one), each file written atomically.
/// Made by [`RunCheckpoints::new`], it also follows the run's [`Plan`]; `RunRecorder::new()`
/// (no plan) writes whatever it is given.
#[derive(Debug, Clone, Default)]
pub struct RunRecorder {
    plan: Option<(Arc<Mutex<Plan>>, PathBuf)>,
}

impl RunRecorder {
    /// A recorder without a plan.
    pub fn new() -> Self {
        Self::default()
    }
}

type Mpk = NamedMpkFileRecorder<FullPrecisionSettings>;

impl<B: Backend> FileRecorder<B> for RunRecorder {
    fn file_extension() -> &'static str {
        "mpk"
    }
}

impl<B: Backend> Recorder<B> for RunRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(
        &self,
        item: I,
        file: PathBuf,
    ) -> std::result::Result<(), RecorderError> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((plan, run)) = &self.plan else {
            return write_atomic::<B, I>(&item, &file, &[]);
        };
        let Some((kind, epoch)) = name
            .rsplit_once('-')
            .and_then(|(kind, epoch)| Some((kind, epoch.parse::<usize>().ok()?)))
        else {
            return write_atomic::<B, I>(&item, &file, &[]);
        };
        let started = Instant::now();
        let this = lock(plan).epochs.get(&epoch).copied().unwrap_or_default();
        match (kind, this) {
            ("model", EpochPlan { full, best }) => {
                let mut names = Vec::new();
                if let Some(accuracy) = best {
                    names.push(run.join("best.mpk"));
                    let record = BestEpoch { epoch, accuracy };
                    if full {
                        write_atomic::<B, I>(&item, &file, &names)?;
                    } else {
                        write_atomic::<B, I>(&item, &run.join("best"), &[])?;
                    }
                    let json = serde_json::to_string_pretty(&record).unwrap_or_default();
                    miga_datasets::io::write_atomic(&run.join("best.json"), json.as_bytes())
                        .map_err(|e| RecorderError::Unknown(e.to_string()))?;
                } else if full {
                    write_atomic::<B, I>(&item, &file, &[])?;
                }
            }
            (_, EpochPlan { full: true, .. }) => write_atomic::<B, I>(&item, &file, &[])?,
            _ => {}
        }
        *lock(plan).write_seconds.entry(epoch).or_default() += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn load_item<I: DeserializeOwned>(
        &self,
        file: &mut PathBuf,
    ) -> std::result::Result<I, RecorderError> {
        match <Mpk as Recorder<B>>::load_item(&Mpk::new(), file) {
            Ok(item) => Ok(item),
            Err(error) => upgraded(&file.with_extension("mpk")).unwrap_or(Err(error)),
        }
    }
}

/// `model` with `record` (read from `file`, without extension) loaded into it. Burn panics on
/// a record of another fusion variant than the module's (a `run.json` edited after training):
/// that is an error naming the file here (the panic's message is still printed).
pub(crate) fn load_record_checked<B: Backend, M: burn::module::Module<B>>(
    model: M,
    record: M::Record,
    file: &Path,
) -> crate::Result<M> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.load_record(record))).map_err(
        |_| crate::Error::Mismatch {
            path: file.with_extension("mpk"),
            reason: "holds another fusion variant than the run's settings".into(),
        },
    )
}

/// The record in `path` brought to today's layout, when it was written before the fusion
/// variants were types ([`super::legacy`]); `None` when it is not such a record.
fn upgraded<I: DeserializeOwned>(path: &Path) -> Option<std::result::Result<I, RecorderError>> {
    let bytes = std::fs::read(path).ok()?;
    let mut record = rmpv::decode::read_value(&mut bytes.as_slice()).ok()?;
    if super::legacy::upgrade_record(&mut record) == 0 {
        return None;
    }
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &record).ok()?;
    Some(
        rmp_serde::from_slice(&bytes).map_err(|e| {
            RecorderError::Unknown(format!("{}, an older record: {e}", path.display()))
        }),
    )
}

fn lock(plan: &Mutex<Plan>) -> MutexGuard<'_, Plan> {
    plan.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `item` as `file.mpk` through a temporary file that is flushed to disk; `first` are
/// other names for the same file (hard links, or copies where the file system has none), put in
/// place before `file.mpk` is.
fn write_atomic<B: Backend, I: Serialize>(
    item: &I,
    file: &Path,
    first: &[PathBuf],
) -> std::result::Result<(), RecorderError> {
    let io =
        |e: std::io::Error, path: &Path| RecorderError::Unknown(format!("{}: {e}", path.display()));
    let target = file.with_extension("mpk");
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The temporary name keeps the `.mpk` extension, which Burn's recorder would otherwise set.
    let temporary = dir.join(format!(".partial-{}-{name}.mpk", std::process::id()));
    let result = (|| {
        <Mpk as Recorder<B>>::save_item(&Mpk::new(), item, temporary.clone())?;
        std::fs::File::open(&temporary)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(e, &temporary))?;
        for other in first {
            let partial = other.with_extension(format!("partial-{}", std::process::id()));
            let _ = std::fs::remove_file(&partial);
            std::fs::hard_link(&temporary, &partial)
                .or_else(|_| std::fs::copy(&temporary, &partial).map(|_| ()))
                .and_then(|()| std::fs::rename(&partial, other))
                .map_err(|e| io(e, other))?;
        }
        std::fs::rename(&temporary, &target).map_err(|e| io(e, &target))?;
        // The renames are durable once the folder is.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// The full checkpoints in a run folder (epochs with all three files), oldest first.
pub(crate) fn checkpoints(run: &Path) -> Vec<usize> {
    let dir = run.join("checkpoint");
    let mut epochs: Vec<usize> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("model-")?
                        .strip_suffix(".mpk")?
                        .parse()
                        .ok()
                })
                .filter(|epoch| {
                    ["optim", "scheduler"]
                        .iter()
                        .all(|kind| dir.join(format!("{kind}-{epoch}.mpk")).exists())
                })
                .collect()
        })
        .unwrap_or_default();
    epochs.sort_unstable();
    epochs
}

/// Ends a finished run's checkpoints (no writer is left): its newest checkpoint (all that
/// `--resume` of a finished run needs) and the `keep_every` ones stay; the older rolling ones,
/// kept while the run went on in case a kill cut the newest short, and the leftovers of a
/// killed writer (`.partial-*`) go.
pub(crate) fn prune(run: &Path, retention: Retention) -> Result<()> {
    let epochs = checkpoints(run);
    let dir = run.join("checkpoint");
    let newest: Vec<usize> = epochs.last().copied().into_iter().collect();
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let epoch = name
            .strip_suffix(".mpk")
            .and_then(|stem| stem.rsplit_once('-'))
            .filter(|(kind, _)| ["model", "optim", "scheduler"].contains(kind))
            .and_then(|(_, epoch)| epoch.parse::<usize>().ok());
        // Leftovers of a process killed while writing go too.
        let partial = name.starts_with(".partial-");
        let dropped = epoch.is_some_and(|e| !newest.contains(&e) && !kept_every(e, retention));
        if partial || dropped {
            std::fs::remove_file(entry.path()).map_err(|source| Error::Io {
                path: entry.path(),
                source,
            })?;
        }
    }
    Ok(())
}

fn kept_every(epoch: usize, retention: Retention) -> bool {
    retention.keep_every > 0 && epoch.is_multiple_of(retention.keep_every)
}

/// Each epoch's mean validation accuracy (0..1) and loss, as this process computed them.
///
/// burn-train 0.21 hands metrics to its event store from a worker thread, and its file logger
/// writes each metric's file from a thread of its own: when an epoch's checkpointing and early
/// stopping are decided, the store may not yet see that epoch's last validation batches (it
/// then averages part of the epoch, or finds nothing: seen for the accuracy of the second epoch
/// of a two-epoch test run). The renderer sees every batch's metrics on burn-train's worker
/// thread, in order; it averages them as the store does (each batch weighted by its count)
/// and records the epoch here when its last batch is in. The deciders wait for that.
#[derive(Debug, Clone, Default)]
pub(crate) struct ValidScores(Arc<Mutex<BTreeMap<usize, EpochScores>>>);

/// One epoch's mean validation metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct EpochScores {
    /// Accuracy, 0..1.
    pub(crate) accuracy: Option<f64>,
    /// Loss.
    pub(crate) loss: Option<f64>,
}

impl ValidScores {
    /// Records `epoch`'s means.
    pub(crate) fn record(&self, epoch: usize, scores: EpochScores) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(epoch, scores);
    }

    /// `epoch`'s means, if this process validated it.
    pub(crate) fn get(&self, epoch: usize) -> Option<EpochScores> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&epoch)
            .copied()
    }

    /// `epoch`'s means, waiting (at most a minute) for its validation to end.
    pub(crate) fn wait(&self, epoch: usize) -> Option<EpochScores> {
        let start = Instant::now();
        loop {
            if let Some(scores) = self.get(epoch) {
                return Some(scores);
            }
            if start.elapsed() > Duration::from_secs(60) {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The mean validation `metric` (`Accuracy` as 0..1, or `Loss`) of `epoch`: this
    /// process's, or, for an epoch an earlier process trained, the store's (from its files).
    pub(crate) fn metric(
        &self,
        store: &EventStoreClient,
        metric: &str,
        epoch: usize,
    ) -> Option<f64> {
        match (self.get(epoch), metric) {
            (Some(scores), "Accuracy") => scores.accuracy,
            (Some(scores), _) => scores.loss,
            (None, _) => store
                .find_metric(metric, epoch, Aggregate::Mean, &Split::Valid)
                .map(|v| if metric == "Accuracy" { v / 100.0 } else { v }),
        }
    }
}

/// The checkpointing strategy of a run (see the module's text).
pub(crate) struct RunCheckpoints {
    plan: Arc<Mutex<Plan>>,
    retention: Retention,
    /// The configured epoch count.
    epochs: usize,
    /// Early stopping's patience (0: none), to know the epoch it ends on.
    patience: usize,
    /// Full checkpoints on disk or being written, oldest first.
    saved: Vec<usize>,
    best: Option<(usize, f64)>,
    /// When the last full checkpoint was decided.
    last_full: Option<(usize, Instant)>,
    scores: ValidScores,
}

impl RunCheckpoints {
    /// The strategy for `run` and the recorder that follows it.
    pub(crate) fn new(
        run: &Path,
        retention: Retention,
        epochs: usize,
        patience: usize,
        scores: ValidScores,
    ) -> (Self, RunRecorder) {
        let plan = Arc::new(Mutex::new(Plan::default()));
        let recorder = RunRecorder {
            plan: Some((plan.clone(), run.to_path_buf())),
        };
        let strategy = Self {
            plan,
            retention,
            epochs,
            patience,
            saved: checkpoints(run),
            best: None,
            last_full: None,
            scores,
        };
        (strategy, recorder)
    }

    /// Whether a full checkpoint is due at `epoch` by `checkpoint_every` or by time.
    fn due(&self, epoch: usize) -> bool {
        match (self.retention.every, self.last_full) {
            (0, Some((last, at))) => {
                let write = lock(&self.plan)
                    .write_seconds
                    .get(&last)
                    .copied()
                    .unwrap_or(0.0);
                at.elapsed() >= Duration::from_secs_f64(write) * AUTO_RATIO
            }
            (0, None) => true,
            (every, _) => epoch.is_multiple_of(every),
        }
    }
}

impl CheckpointingStrategy for RunCheckpoints {
    fn checkpointing(
        &mut self,
        epoch: usize,
        store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        self.scores.wait(epoch);
        let accuracy = |e| self.scores.metric(store, "Accuracy", e);
        // A resumed run starts from the epochs before it, as logged.
        if self.best.is_none() {
            for e in 1..epoch {
                if let Some(a) = accuracy(e)
                    && self.best.is_none_or(|(_, best)| a > best)
                {
                    self.best = Some((e, a));
                }
            }
        }
        let best = accuracy(epoch).filter(|&a| self.best.is_none_or(|(_, b)| a > b));
        if let Some(a) = best {
            self.best = Some((epoch, a));
        }
        let losses: Vec<Option<f64>> = (1..=epoch)
            .map(|e| self.scores.metric(store, "Loss", e))
            .collect();
        let last = epoch >= self.epochs
            || (self.patience > 0 && no_improvement_since(&losses, self.patience));
        let full = last || kept_every(epoch, self.retention) || self.due(epoch);
        {
            let mut plan = lock(&self.plan);
            plan.epochs.insert(epoch, EpochPlan { full, best });
            // Older epochs' files are written by now (see the module's text).
            plan.epochs.retain(|&e, _| e + 2 >= epoch);
            let last = self.last_full.map(|(e, _)| e);
            plan.write_seconds
                .retain(|&e, _| e + 2 >= epoch || Some(e) == last);
        }
        let mut actions = Vec::new();
        if full || best.is_some() {
            actions.push(CheckpointingAction::Save);
        }
        if full {
            self.saved.push(epoch);
            self.last_full = Some((epoch, Instant::now()));
        }
        // The newest complete checkpoint: the newest before this epoch's.
        let complete = self.saved.iter().rev().find(|&&e| e < epoch).copied();
        let newest: Vec<usize> = self
            .saved
            .iter()
            .rev()
            .take(self.retention.keep.max(1))
            .copied()
            .collect();
        let retention = self.retention;
        self.saved.retain(|&e| {
            let keep = newest.contains(&e) || Some(e) == complete || kept_every(e, retention);
            if !keep {
                actions.push(CheckpointingAction::Delete(e));
            }
            keep
        });
        actions
    }
}

/// Whether the last of `losses` (one an epoch, the first first; `None` where not logged) comes
/// `patience` or more epochs after the lowest one (the earliest of equals), as burn-train's
/// `StoppingCondition::NoImprovementSince`; never when the last is unknown.
pub(crate) fn no_improvement_since(losses: &[Option<f64>], patience: usize) -> bool {
    let best = losses
        .iter()
        .enumerate()
        .filter_map(|(epoch, loss)| loss.map(|loss| (epoch, loss)))
        .fold(
            None,
            |best: Option<(usize, f64)>, (epoch, loss)| match best {
                Some((_, lowest)) if loss >= lowest => best,
                _ => Some((epoch, loss)),
            },
        );
    match (best, losses.last()) {
        (Some((best, _)), Some(Some(_))) => losses.len() - 1 - best >= patience,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::Module;
    use burn::tensor::backend::Backend as _;
    use burn::tensor::{Bool, Tensor, TensorData};
    use miga_datasets::tensors::read_tensors;
    use miga_fusion::{
        CmtfConfig, CmtfInput, InterFusionConfig, InterFusionInput, InterFusionVariant, Sequence,
        SkeletonTokens, VideoTokens,
    };

    use super::*;
    use crate::emotion::EmotionTrainConfig;
    use crate::micro_gesture::TrainConfig;
    use crate::models::emotion::EmotionModel;
    use crate::models::micro_gesture::MicroGestureModel;

    type B = Flex;
    type Io = BTreeMap<String, TensorData>;

    fn crate_path(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    fn json<T: DeserializeOwned>(path: PathBuf) -> T {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn mask(io: &Io, key: &str) -> Tensor<B, 2, Bool> {
        Tensor::<B, 2>::from_data(io[key].clone(), &Default::default()).greater_elem(0.5)
    }

    fn cmtf_input(io: &Io, config: &CmtfConfig) -> CmtfInput<B> {
        let tensor = |key: &str| io[key].clone();
        let device = Default::default();
        CmtfInput {
            video: Some(VideoTokens {
                tokens: Tensor::from_data(tensor("video"), &device),
                class_embedding: config
                    .video_class_token
                    .then(|| Tensor::from_data(tensor("video_class"), &device)),
                padding: Some(mask(io, "video_padding")),
            }),
            skeleton: Some(SkeletonTokens {
                tokens: Tensor::from_data(tensor("skeleton"), &device),
                padding: Some(mask(io, "skeleton_padding")),
                pooled: false,
            }),
        }
    }

    fn interfusion_input(io: &Io) -> InterFusionInput<B> {
        let tokens = |key: &str| Tensor::<B, 3>::from_data(io[key].clone(), &Default::default());
        InterFusionInput {
            face: Some(Sequence::new(tokens("face")).with_padding(mask(io, "face_padding"))),
            expressions: io
                .contains_key("expressions")
                .then(|| tokens("expressions")),
            context: Some(
                Sequence::new(tokens("context")).with_padding(mask(io, "context_padding")),
            ),
        }
    }

    /// Every parameter of `module`, in visit order (which initialises a fresh one's).
    fn parameters<M: Module<B>>(module: &M) -> Vec<TensorData> {
        struct Values(Vec<TensorData>);
        impl burn::module::ModuleVisitor<B> for Values {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
                self.0.push(param.val().into_data());
            }
        }
        let mut values = Values(Vec::new());
        module.visit(&mut values);
        values.0
    }

    /// Records written by miga before the fusion variants were types (tests/fixtures/legacy,
    /// its README says how) load through the run recorder. Each variant's record is a fresh
    /// model from seed 7: it loads into exactly the parameters seed 7 gives today (the upgrade
    /// puts every tensor in its place, and a seed still draws the model it drew). The whole
    /// models hold the parity fixtures' weights: they give what those weights give read from
    /// the PyTorch twin's file.
    #[test]
    fn records_from_before_the_typed_variants_load() {
        let legacy = crate_path("tests/fixtures/legacy");
        let fixtures = crate_path("../miga-fusion/tests/fixtures");
        let device = Default::default();
        let recorder = RunRecorder::new();
        let seeded = |init: &dyn Fn() -> Vec<TensorData>, old: Vec<TensorData>, case: &str| {
            let _rng = crate::rng_lock();
            B::seed(&device, 7);
            let today = init();
            assert!(today.len() == old.len() && today == old, "{case}");
        };
        for case in ["cmtf_cross", "cmtf_joint"] {
            let dir = fixtures.join(case);
            let config: CmtfConfig = json(dir.join("config.json"));
            let init = || config.init::<B>(&device).unwrap();
            let old = init()
                .load_file(legacy.join(case), &recorder, &device)
                .unwrap();
            seeded(&|| parameters(&init()), parameters(&old), case);
            if case == "cmtf_cross" {
                let names = old.pytorch_names().to_miga();
                let weights = dir.join("weights.safetensors");
                let twin = miga_backbones::load_checkpoint(init(), &weights, None, &names, &[]);
                let whole = TrainConfig {
                    fusion: config.clone(),
                    ..TrainConfig::default()
                };
                let whole = MicroGestureModel::<B>::new(&whole, &device).unwrap();
                let whole = whole
                    .load_file(legacy.join("micro_gesture_model"), &recorder, &device)
                    .unwrap();
                let io = read_tensors(dir.join("io.safetensors")).unwrap();
                let old = whole.fusion.forward(cmtf_input(&io, &config)).logits;
                let new = twin.unwrap().forward(cmtf_input(&io, &config)).logits;
                assert_eq!(old.into_data(), new.into_data());
            }
        }
        let dir = fixtures.join("interfusion_full");
        for (case, variant) in [
            ("interfusion_full", InterFusionVariant::Full),
            ("interfusion_face_only", InterFusionVariant::FaceOnly),
            ("interfusion_context_only", InterFusionVariant::ContextOnly),
            ("interfusion_late", InterFusionVariant::LateFusion),
        ] {
            let mut config: InterFusionConfig = json(dir.join("config.json"));
            config.variant = variant;
            let init = || config.init::<B>(&device).unwrap();
            let old = init()
                .load_file(legacy.join(case), &recorder, &device)
                .unwrap();
            seeded(&|| parameters(&init()), parameters(&old), case);
            if variant == InterFusionVariant::Full {
                let names = old.pytorch_names().to_miga();
                let weights = dir.join("weights.safetensors");
                let twin = miga_backbones::load_checkpoint(init(), &weights, None, &names, &[]);
                let whole = EmotionTrainConfig {
                    fusion: config.clone(),
                    ..EmotionTrainConfig::default()
                };
                let whole = EmotionModel::<B>::new(&whole, &device).unwrap();
                let whole = whole
                    .load_file(legacy.join("emotion_model"), &recorder, &device)
                    .unwrap();
                let io = read_tensors(dir.join("io.safetensors")).unwrap();
                let old = whole.fusion.forward(interfusion_input(&io)).logits;
                let new = twin.unwrap().forward(interfusion_input(&io)).logits;
                assert_eq!(old.into_data(), new.into_data());
            }
        }
    }

    #[test]
    fn early_stopping_counts_from_the_logged_losses() {
        let losses = [Some(1.0), Some(0.5), Some(0.6), Some(0.5), Some(0.7)];
        // The lowest is epoch 2 (epoch 4 only equals it).
        let stops = |n: usize, patience| no_improvement_since(&losses[..n], patience);
        assert!(!stops(2, 2) && !stops(3, 2) && stops(4, 2) && stops(5, 3));
        assert!(!stops(5, 4));
        // Decided from the logs alone: a strategy made after a resumption answers alike, and
        // an epoch whose loss is not logged never stops the run.
        assert!(!no_improvement_since(&[Some(1.0), Some(2.0), None], 1));
        assert!(no_improvement_since(&[None, Some(1.0), Some(2.0)], 1));
    }
}
