//! A trained run loaded back, and items scored by it.

use std::path::Path;

use burn::prelude::*;
use burn::record::Recorder;

use super::TaskModel;
use super::checkpoints::RunRecorder;
use crate::features::FeatureSet;
use crate::run_info::{RunInfo, read_run_info};
use crate::{Error, Result};

/// The run info, settings and best model of a run of `task`: `build` makes the model from the
/// run's settings, then `best.mpk` is loaded into it (or, from an exported run, its
/// `model.safetensors`, through the strict loader).
pub(crate) fn load_best<B, M, C>(
    run: &Path,
    build: impl FnOnce(&C) -> Result<M>,
    device: &B::Device,
) -> Result<(RunInfo, C, M)>
where
    B: Backend,
    M: Module<B> + TaskModel,
    C: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let info = read_run_info(run)?;
    let info_path = run.join("run.json");
    if info.task != M::TASK {
        return Err(Error::Mismatch {
            path: info_path,
            reason: format!("a run of task `{}`, not {}", info.task, M::TASK),
        });
    }
    let config: C = crate::config::from_toml(&C::default(), &info.config, &info_path)?;
    if crate::run_info::is_export(run) {
        let path = run.join(crate::run_info::EXPORT_MODEL);
        let model = miga_backbones::load_checkpoint(build(&config)?, &path, None, &[], &[])?;
        return Ok((info, config, model));
    }
    let best = run.join("best");
    let record = RunRecorder::new()
        .load(best.clone(), device)
        .map_err(|e| Error::Mismatch {
            path: best.with_extension("mpk"),
            reason: format!("does not match the run's settings: {e}"),
        })?;
    let model = build(&config)?.load_record(record);
    Ok((info, config, model))
}

/// Scores of `items` (from `features`, read at `path`) by `logits`, 32 items a batch, after
/// checking the features were extracted as the run's (`trained_on`).
pub(crate) fn score_items<B: Backend, I: Clone>(
    trained_on: &str,
    features: &FeatureSet,
    path: &Path,
    items: &[(String, I)],
    label: impl Fn(&I) -> i64,
    logits: impl Fn(Vec<I>) -> Tensor<B, 2>,
) -> Result<Scores> {
    if features.kind.settings != trained_on {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: "these features were extracted with other settings than the run was trained on"
                .into(),
        });
    }
    let (mut ids, mut labels, mut scores) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in items.chunks(32) {
        let out = logits(chunk.iter().map(|(_, i)| i.clone()).collect());
        let [n, k] = out.dims();
        let values = out
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::Mismatch {
                path: path.to_path_buf(),
                reason: format!("{e:?}"),
            })?;
        for (row, (id, item)) in chunk.iter().enumerate().take(n) {
            ids.push(id.clone());
            labels.push(label(item));
            scores.push(values[row * k..(row + 1) * k].to_vec());
        }
    }
    Ok(Scores {
        ids,
        labels,
        scores,
    })
}

/// Class scores of items.
#[derive(Debug, Clone)]
pub struct Scores {
    /// Item ids (`<video>_<clip index>`), in id order.
    pub ids: Vec<String>,
    /// Class index of each item, -1 when unlabelled.
    pub labels: Vec<i64>,
    /// One score per class (logits) of each item.
    pub scores: Vec<Vec<f32>>,
}
