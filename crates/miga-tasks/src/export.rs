//! `miga export`: a trained run as files other tools open: `model.safetensors` (every tensor of
//! the run's best model, PyTorch's conventions) and `config.json` (what the run was trained
//! with, and every tensor's name and shape).
//!
//! Key names are the paths of miga's module tree, dotted as PyTorch's `state_dict` keys are
//! (`fusion.video_projection.weight`, `video_norm.mean`), the fusion module's variant parts
//! named as its PyTorch twin names them (`fusion.cross_layers.0.cross_a.attention.query.bias`
//! for miga's `fusion.layers.blocks.0...`; `miga_fusion::PyTorchNames`); linear weights are
//! `[out, in]` as PyTorch stores them (Burn's are `[in, out]`), and the norms' scale and shift
//! are `weight` and `bias` (Burn's `gamma` and `beta`), running statistics `running_mean` and
//! `running_var`. An exported folder loads back wherever a run folder does (`miga eval --run`,
//! `TrainedRun::load`, `EmotionRun::load`), through the strict loader: the same outputs as the
//! run it came from (tested).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn_store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};

use crate::emotion::{EMOTION, EmotionRun};
use crate::micro_gesture::{MICRO_GESTURE, MICRO_GESTURE_END_TO_END, TrainedRun, load_end_to_end};
use crate::run_info::read_run_info;
pub use crate::run_info::{
    EXPORT_CONFIG, EXPORT_FORMAT, EXPORT_MODEL, ExportConfig, is_export, read_export,
};
use crate::training::{BestEpoch, TaskModel};
use crate::{Error, Result};

/// Exports the run in `run` (its best model) into `out` (created; files already there are
/// replaced). Returns what was written.
pub fn export_run<B: Backend>(run: &Path, out: &Path, device: &B::Device) -> Result<ExportConfig> {
    let info = read_run_info(run)?;
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let model_path = out.join(EXPORT_MODEL);
    match info.task.as_str() {
        MICRO_GESTURE => write_tensors(&TrainedRun::<B>::load(run, device)?.model, &model_path)?,
        EMOTION => write_tensors(&EmotionRun::<B>::load(run, device)?.model, &model_path)?,
        MICRO_GESTURE_END_TO_END => {
            write_tensors(&load_end_to_end::<B>(run, device)?.1, &model_path)?
        }
        other => {
            return Err(Error::Mismatch {
                path: run.join("run.json"),
                reason: format!("a run of task `{other}`, which miga cannot export"),
            });
        }
    }
    let settings = info
        .config
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or(serde_json::Value::Null);
    let features = serde_json::from_str(&info.features)
        .unwrap_or(serde_json::Value::String(info.features.clone()));
    let config = ExportConfig {
        format: EXPORT_FORMAT.into(),
        task: info.task.clone(),
        miga_version: env!("CARGO_PKG_VERSION").into(),
        conventions: "safetensors, f32; keys are miga's module paths, the fusion module's as its \
                      PyTorch twin (scripts/fusion_reference.py) names them; linear weights \
                      [out, in] (PyTorch's); norms' scale and shift `weight` and `bias`"
            .into(),
        best: BestEpoch::read(run),
        settings,
        features,
        tensors: tensor_shapes(&model_path)?,
        run: info,
    };
    let json = serde_json::to_string_pretty(&config).unwrap_or_default();
    miga_datasets::io::write_atomic(&out.join(EXPORT_CONFIG), json.as_bytes())?;
    Ok(config)
}

/// Writes every tensor of `module` to `path` in PyTorch's conventions, atomically.
fn write_tensors<B: Backend, M: Module<B> + TaskModel>(module: &M, path: &Path) -> Result<()> {
    let partial = path.with_extension("safetensors.partial");
    let failed = |reason: String| Error::Mismatch {
        path: path.to_path_buf(),
        reason,
    };
    let names = KeyRemapper::from_patterns(module.pytorch_names().to_twin())
        .map_err(|e| failed(e.to_string()))?;
    let mut store = SafetensorsStore::from_file(&partial)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .remap(names)
        .metadata("format", EXPORT_FORMAT);
    module
        .save_into(&mut store)
        .map_err(|e| failed(e.to_string()))?;
    std::fs::rename(&partial, path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Every tensor's name and shape in the safetensors file `path`, by name, from its header
/// alone (an 8-byte little-endian length, then JSON): the tensors are not read again.
fn tensor_shapes(path: &PathBuf) -> Result<Vec<(String, Vec<usize>)>> {
    let malformed = |reason: String| Error::Mismatch {
        path: path.clone(),
        reason,
    };
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(io)?;
    let mut header = vec![0u8; u64::from_le_bytes(length) as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| malformed(e.to_string()))?;
    header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, entry)| {
            let shape = serde_json::from_value(entry["shape"].clone())
                .map_err(|e| malformed(format!("{name}: {e}")))?;
            Ok((name, shape))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use std::collections::BTreeSet;

    use miga_datasets::tensors::read_tensors;
    use miga_fusion::{CmtfConfig, InterFusionConfig, InterFusionVariant};

    use super::*;
    use crate::emotion::{EmotionStreams, EmotionTrainConfig};
    use crate::features::FeatureSet;
    use crate::micro_gesture::{TrainConfig, train_micro_gesture};
    use crate::models::emotion::EmotionModel;
    use crate::models::micro_gesture::MicroGestureModel;
    use crate::testing::tiny_config;
    use crate::testing::tiny_features;

    /// Every fusion variant is exported with exactly its PyTorch twin's names: those of the
    /// parity fixtures the twin wrote (scripts/fusion_reference.py); a single-stream variant's
    /// are the late-fusion twin's for its stream.
    #[test]
    fn every_variant_is_exported_with_its_twins_names() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../miga-fusion/tests/fixtures");
        let twin = |case: &str| -> BTreeSet<String> {
            let weights = read_tensors(fixtures.join(case).join("weights.safetensors"));
            weights.unwrap().into_keys().collect()
        };
        let config = |case: &str| -> String {
            std::fs::read_to_string(fixtures.join(case).join("config.json")).unwrap()
        };
        let out = crate::testing::scratch("twin-names");
        std::fs::create_dir_all(&out).unwrap();
        let exported = |model: &dyn Fn(&Path)| -> BTreeSet<String> {
            let path = out.join("model.safetensors");
            model(&path);
            let keys = read_tensors(&path).unwrap().into_keys();
            keys.filter_map(|k| k.strip_prefix("fusion.").map(str::to_string))
                .collect()
        };
        let device = Default::default();
        for case in ["cmtf_cross", "cmtf_joint"] {
            let fusion: CmtfConfig = serde_json::from_str(&config(case)).unwrap();
            let settings = TrainConfig {
                fusion,
                ..TrainConfig::default()
            };
            let model = MicroGestureModel::<Flex>::new(&settings, &device).unwrap();
            let names = exported(&|path| write_tensors(&model, path).unwrap());
            assert_eq!(names, twin(case), "{case}");
        }
        let late = twin("interfusion_late");
        let stream = |name: &str| -> BTreeSet<String> {
            let prefix = format!("{name}.");
            let of_stream = |k: &&String| k.starts_with(&prefix) || *k == "modality";
            late.iter().filter(of_stream).cloned().collect()
        };
        for (case, streams, expected) in [
            (
                "interfusion_full",
                EmotionStreams::Both,
                twin("interfusion_full"),
            ),
            ("interfusion_late", EmotionStreams::Late, late.clone()),
            ("interfusion_late", EmotionStreams::Face, stream("face")),
            (
                "interfusion_late",
                EmotionStreams::Context,
                stream("context"),
            ),
        ] {
            let mut fusion: InterFusionConfig = serde_json::from_str(&config(case)).unwrap();
            // The emotion model takes its variant from `streams`.
            fusion.variant = InterFusionVariant::Full;
            let settings = EmotionTrainConfig {
                fusion,
                streams,
                ..EmotionTrainConfig::default()
            };
            let model = EmotionModel::<Flex>::new(&settings, &device).unwrap();
            let names = exported(&|path| write_tensors(&model, path).unwrap());
            assert_eq!(names, expected, "{case} {streams:?}");
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// A run exported and loaded back (strictly) scores every item exactly as the run does; its
    /// keys follow PyTorch's conventions.
    #[test]
    fn an_exported_run_loads_back_with_the_same_scores() {
        let _rng = crate::rng_lock();
        let (train_dir, valid_dir) = tiny_features("export");
        let (train, valid) = (
            FeatureSet::read(&train_dir).unwrap(),
            FeatureSet::read(&valid_dir).unwrap(),
        );
        let root = std::env::temp_dir().join(format!("miga-export-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (run, out) = (root.join("run"), root.join("exported"));
        let device = Default::default();
        train_micro_gesture::<Autodiff<Flex>>(
            &train,
            &valid,
            &tiny_config(1),
            &run,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        let config = export_run::<Flex>(&run, &out, &device).unwrap();
        assert_eq!(config.task, MICRO_GESTURE);
        assert_eq!(read_export(&out).unwrap().tensors, config.tensors);
        let names: Vec<&str> = config.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"video_norm.mean"), "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with("gamma") && !n.ends_with("beta")),
            "{names:?}"
        );
        // The fusion's layers as its PyTorch twin names them (scripts/fusion_reference.py).
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("fusion.cross_layers.0.")),
            "{names:?}"
        );
        assert!(names.iter().all(|n| !n.contains("blocks")), "{names:?}");
        // Linear weights are [out, in]: the head's rows are the classes.
        let original = TrainedRun::<Flex>::load(&run, &device).unwrap();
        let [d_in, d_out] = original.model.fusion.head.dims();
        let head = config
            .tensors
            .iter()
            .find(|(n, _)| n == "fusion.head.weight");
        assert_eq!(head.unwrap().1, [d_out, d_in]);
        let exported = TrainedRun::<Flex>::load(&out, &device).unwrap();
        let scores = |r: &TrainedRun<Flex>| r.scores(&valid, &valid_dir, &device).unwrap();
        let (ours, theirs) = (scores(&exported), scores(&original));
        assert_eq!(ours.ids, theirs.ids);
        assert_eq!(ours.scores, theirs.scores);
        // Not a run folder: `miga runs` leaves it out; a damaged config is named.
        assert!(crate::runs::RunStatus::read(&out).is_none());
        std::fs::write(out.join(EXPORT_CONFIG), "{").unwrap();
        let err = TrainedRun::<Flex>::load(&out, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("not an exported run"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
