//! A trained run loaded back, and items scored by it.

use std::path::Path;

use burn::prelude::*;
use burn::record::Recorder;

use super::TaskModel;
use super::checkpoints::{RunRecorder, load_record_checked};
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
    let model = build(&config)?;
    if crate::run_info::is_export(run) {
        let path = run.join(crate::run_info::EXPORT_MODEL);
        let names = model.pytorch_names().to_miga();
        let model = miga_backbones::load_checkpoint(model, &path, None, &names, &[])?;
        return Ok((info, config, model));
    }
    let best = run.join("best");
    let record = RunRecorder::new()
        .load(best.clone(), device)
        .map_err(|e| Error::Mismatch {
            path: best.with_extension("mpk"),
            reason: format!("does not match the run's settings: {e}"),
        })?;
    let model = load_record_checked(model, record, &best)?;
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

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use miga_fusion::CmtfVariant;

    use super::*;
    use crate::micro_gesture::{MICRO_GESTURE, TrainConfig};
    use crate::models::micro_gesture::MicroGestureModel;
    use crate::run_info::RunInfo;

    /// A run whose `best.mpk` holds another fusion variant than its settings (a `run.json`
    /// edited after training) is refused with an error naming the file (Burn would panic).
    #[test]
    fn a_record_of_another_variant_is_an_error() {
        let run = crate::testing::scratch("other-variant");
        std::fs::create_dir_all(&run).unwrap();
        let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy");
        // A cross-variant model (written before the variants were types; read all the same).
        std::fs::copy(legacy.join("micro_gesture_model.mpk"), run.join("best.mpk")).unwrap();
        let fixture = legacy.join("../../../../miga-fusion/tests/fixtures/cmtf_cross/config.json");
        let mut config = TrainConfig {
            fusion: serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap(),
            ..TrainConfig::default()
        };
        let device = Default::default();
        let load = |config: &TrainConfig| {
            let info = RunInfo {
                task: MICRO_GESTURE.into(),
                config: toml::to_string(config).unwrap(),
                features: String::new(),
            };
            std::fs::write(run.join("run.json"), serde_json::to_string(&info).unwrap()).unwrap();
            load_best::<Flex, _, TrainConfig>(&run, |c| MicroGestureModel::new(c, &device), &device)
                .map(|_| ())
        };
        load(&config).unwrap();
        config.fusion.variant = CmtfVariant::Joint;
        let error = load(&config).unwrap_err().to_string();
        assert!(
            error.contains("best.mpk") && error.contains("another fusion variant"),
            "{error}"
        );
        std::fs::remove_dir_all(&run).unwrap();
    }
}
