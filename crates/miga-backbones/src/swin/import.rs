//! Loading Swin checkpoints: timm state_dicts (`patch_embed.*`, `layers.N.downsample.*` at the
//! start of stage N, `head.fc.*`), the original Microsoft layout (downsample at the end of a
//! stage, `head.*`, with `relative_position_index` and `attn_mask` buffers) and SwinFace's
//! training checkpoints (a dict with `state_dict_backbone`, `state_dict_fam`,
//! `state_dict_tss`, `state_dict_om`), or the same sections as `backbone.`/`fam.`/`tss.`/`om.`
//! prefixes in one safetensors file.
//!
//! The buffers `relative_position_index` and `attn_mask` are skipped, not loaded: miga computes
//! both from the configuration. SwinFace's backbone carries an unused classifier (`head.*`,
//! never called in its forward), which is skipped too.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;

use super::config::{SwinConfig, SwinHead};
use super::face::{SwinFace, SwinFaceConfig};
use super::model::Swin;
use crate::import::{checkpoint_shapes, load_checkpoint};
use crate::{Error, Result};

/// Buffers the references keep and miga recomputes.
const BUFFERS: [&str; 3] = [
    r"\.relative_position_index$",
    r"\.attn_mask$",
    r"\.num_batches_tracked$",
];

fn pairs(remaps: &[(&str, &str)]) -> Vec<(String, String)> {
    remaps
        .iter()
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .collect()
}

/// Renames from timm's layout, where stage N (N >= 1) starts with the patch merging that the
/// original layout ends stage N - 1 with, and whose classifier is `head.fc`. In ascending
/// order, so that a renamed key is never renamed twice.
fn timm_remaps(stages: usize) -> Vec<(String, String)> {
    let mut remaps: Vec<(String, String)> = (1..stages)
        .map(|i| {
            (
                format!(r"^layers\.{i}\.downsample\."),
                format!("layers.{}.downsample.", i - 1),
            )
        })
        .collect();
    remaps.push((r"^head\.fc\.".into(), "head.".into()));
    remaps
}

fn is_timm_layout(shapes: &BTreeMap<String, Vec<usize>>) -> bool {
    let has = |prefix: &str| shapes.keys().any(|k| k.starts_with(prefix));
    !has("layers.0.downsample.") && (has("layers.1.downsample.") || has("head.fc."))
}

fn not_swin(path: &Path, what: &str) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("no `{what}`: not a Swin checkpoint"),
    }
}

impl SwinConfig {
    /// `base` with the class count of the checkpoint's classifier (timm's `head.fc.weight`
    /// or the original `head.weight`), after checking that the file is a Swin state_dict.
    pub fn from_checkpoint(path: impl AsRef<Path>, base: SwinConfig) -> Result<SwinConfig> {
        let path = path.as_ref();
        let shapes = strip_wrapper(checkpoint_shapes(path, None)?);
        if !shapes.contains_key("patch_embed.proj.weight") {
            return Err(not_swin(path, "patch_embed.proj.weight"));
        }
        let head = shapes
            .get("head.fc.weight")
            .or_else(|| shapes.get("head.weight"))
            .ok_or_else(|| not_swin(path, "head.fc.weight or head.weight"))?;
        Ok(SwinConfig {
            head: SwinHead::Classifier {
                num_classes: head[0],
            },
            ..base
        })
    }

    /// Builds this network with the checkpoint's class count and loads it strictly.
    pub fn load_checkpoint<B: Backend>(
        &self,
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<Swin<B>> {
        let config = match self.head {
            SwinHead::Classifier { .. } => SwinConfig::from_checkpoint(&path, self.clone())?,
            SwinHead::FaceEmbedding { .. } => self.clone(),
        };
        config.init(device)?.load_checkpoint(path)
    }
}

/// A wrapper around the state_dict: DataParallel's `module.`, or the `model` entry of the
/// original Microsoft release (burn-store flattens nested dicts into key prefixes).
const WRAPPER: &str = r"^(module|model)\.";

fn unwrap_key(key: &str) -> &str {
    key.strip_prefix("module.")
        .or_else(|| key.strip_prefix("model."))
        .unwrap_or(key)
}

fn strip_wrapper(shapes: BTreeMap<String, Vec<usize>>) -> BTreeMap<String, Vec<usize>> {
    shapes
        .into_iter()
        .map(|(k, v)| (unwrap_key(&k).to_string(), v))
        .collect()
}

impl<B: Backend> Swin<B> {
    /// Loads a Swin state_dict (`.pth`/`.pt` or `.safetensors`, optionally under `model` or
    /// `module.`) strictly: timm's layout or the original one; for SwinFace's embedding, its backbone state_dict (for SwinFace's training
    /// checkpoints, see [`SwinFace::load_checkpoint`]).
    pub fn load_checkpoint(self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shapes = strip_wrapper(checkpoint_shapes(path, None)?);
        if !shapes.contains_key("patch_embed.proj.weight") {
            return Err(not_swin(path, "patch_embed.proj.weight"));
        }
        let mut remaps = pairs(&[(WRAPPER, "")]);
        remaps.extend(pairs(&FACE_EMBEDDING));
        if is_timm_layout(&shapes) {
            remaps.extend(timm_remaps(self.layers.len()));
        }
        let mut ignorable = BUFFERS.to_vec();
        if self.feature.is_some() {
            ignorable.push(r"^head\.");
        }
        load_checkpoint(self, path, None, &remaps, &ignorable)
    }
}

/// SwinFace's `feature` Sequential to miga's names.
const FACE_EMBEDDING: [(&str, &str); 4] = [
    (r"^((backbone\.)?)feature\.0\.", "${1}feature.fc1."),
    (r"^((backbone\.)?)feature\.1\.", "${1}feature.bn1."),
    (r"^((backbone\.)?)feature\.2\.", "${1}feature.fc2."),
    (r"^((backbone\.)?)feature\.3\.", "${1}feature.bn2."),
];

/// SwinFace's sections to miga's module paths: the training checkpoint's dict keys (which
/// burn-store flattens to prefixes) or the prefixes of a safetensors file.
const SECTIONS: [(&str, &str); 3] = [
    (WRAPPER, ""),
    (r"^(state_dict_)?backbone\.", "backbone."),
    (r"^(state_dict_)?(fam|tss|om)\.", "heads.$2."),
];

/// The heads' submodules to miga's names.
const HEADS: [(&str, &str); 5] = [
    (
        r"^heads\.fam\.(nets\.\d+)\.conv\.convs\.",
        "heads.fam.$1.convs.",
    ),
    (r"\.channel_attention\.mlp\.1\.", ".gate_fc1."),
    (r"\.channel_attention\.mlp\.3\.", ".gate_fc2."),
    (
        r"^heads\.tss\.(nets\.\d+)\.feature\.0\.",
        "heads.tss.$1.fc1.",
    ),
    (
        r"^heads\.tss\.(nets\.\d+)\.feature\.3\.",
        "heads.tss.$1.fc2.",
    ),
];

/// Which SwinFace sections a file has (`backbone`, `fam`, `tss`, `om`), after checking that
/// it is a SwinFace checkpoint (it has the backbone).
fn swinface_sections(path: &Path) -> Result<Vec<&'static str>> {
    let shapes = strip_wrapper(checkpoint_shapes(path, None)?);
    let sections: Vec<&str> = ["backbone", "fam", "tss", "om"]
        .into_iter()
        .filter(|section| {
            shapes.keys().any(|k| {
                k.starts_with(&format!("{section}."))
                    || k.starts_with(&format!("state_dict_{section}."))
            })
        })
        .collect();
    if !sections.contains(&"backbone") {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "no `state_dict_backbone` (or `backbone.*`): not a SwinFace checkpoint".into(),
        });
    }
    Ok(sections)
}

impl SwinFaceConfig {
    /// `base` with its heads kept only if the checkpoint has them (a backbone-only file gives
    /// the embedding alone), after checking that the file is a SwinFace checkpoint.
    pub fn from_checkpoint(path: impl AsRef<Path>, base: SwinFaceConfig) -> Result<Self> {
        let path = path.as_ref();
        let sections = swinface_sections(path)?;
        let heads = ["fam", "tss", "om"].iter().all(|s| sections.contains(s));
        Ok(SwinFaceConfig {
            heads: base.heads.filter(|_| heads),
            ..base
        })
    }

    /// Builds SwinFace and loads a checkpoint strictly; see [`SwinFace::load_checkpoint`].
    pub fn load_checkpoint<B: Backend>(
        &self,
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<SwinFace<B>> {
        self.init(device)?.load_checkpoint(path)
    }
}

impl<B: Backend> SwinFace<B> {
    /// Loads SwinFace's training checkpoint (`.pt`: a dict with `state_dict_backbone`,
    /// `state_dict_fam`, `state_dict_tss`, `state_dict_om`; other entries such as the
    /// partial-FC classifier or the optimizer state are not read) or a safetensors file with
    /// those sections as `backbone.`/`fam.`/`tss.`/`om.` prefixes. Without heads only the
    /// backbone is read; with heads, a file that has none is an error that says so.
    pub fn load_checkpoint(self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let sections = swinface_sections(path)?;
        let mut ignorable = BUFFERS.to_vec();
        // SwinFace's backbone has a classifier its forward never calls; other dict entries
        // (partial FC, optimizer) are not SwinFace's network.
        ignorable.extend([r"^backbone\.head\.", r"^state_"]);
        if self.heads.is_some() {
            if let Some(missing) = ["fam", "tss", "om"]
                .into_iter()
                .find(|s| !sections.contains(s))
            {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!(
                        "no face-analysis heads (`state_dict_{missing}` / `{missing}.*` absent); \
                         build SwinFace without heads for the embedding alone"
                    ),
                });
            }
        } else {
            ignorable.push(r"^heads\.");
        }
        let mut remaps = pairs(&SECTIONS);
        remaps.extend(pairs(&FACE_EMBEDDING));
        remaps.extend(pairs(&HEADS));
        load_checkpoint(self, path, None, &remaps, &ignorable)
    }
}

/// The narrow configurations of the committed fixtures (`scripts/swin_reference.py`).
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::PathBuf;

    use burn::config::Config;

    use super::super::{SwinConfig, SwinFaceConfig};

    /// A fixture file: `case` is `swinface` or `swin_t`.
    pub fn file(case: &str, name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/swin")
            .join(case)
            .join(name)
    }

    /// SwinFace narrowed: channels 8 to 64, depths 2-2-2-2, a 16-d embedding, FAM splits of
    /// 2, 4, 5, 5.
    pub fn swinface() -> SwinFaceConfig {
        SwinFaceConfig::load(file("swinface", "config.json")).unwrap()
    }

    /// timm's Swin narrowed: 112x112, patch 4, channels 8 to 32, three stages, 10 classes.
    pub fn swin_t() -> SwinConfig {
        SwinConfig::load(file("swin_t", "config.json")).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};

    use super::fixtures::{file, swin_t, swinface};
    use super::*;
    use crate::swin::{FACE_HEADS, FaceAnalysisConfig, multi_level_features};
    use miga_datasets::tensors::{read_tensors, write_tensors};

    /// Parity tolerances, scaled errors (docs/testing.md): at most 10x the worst error
    /// measured (Flex and wgpu, 2026-12-06): Swin-T 2.7e-7, SwinFace's outputs 1.5e-6, its
    /// multi-level features 5.6e-7.
    const SWIN_T: f32 = 2e-6;
    const SWINFACE: f32 = 1e-5;
    const SWINFACE_FEATURES: f32 = 5e-6;

    /// The scaled error of `a` against the reference `b` ([`crate::parity::scaled_error`]).
    fn max_abs<const D: usize>(a: Tensor<Flex, D>, b: &TensorData) -> f32 {
        crate::parity::scaled_error(&a.into_data(), b).unwrap()
    }

    fn input(io: &BTreeMap<String, TensorData>) -> Tensor<Flex, 4> {
        Tensor::from_data(io["input"].clone(), &Default::default())
    }

    #[test]
    fn swinface_matches_its_reference_code() {
        let device = Default::default();
        let model = swinface()
            .load_checkpoint::<Flex>(file("swinface", "weights.pt"), &device)
            .unwrap();
        let io = read_tensors(file("swinface", "io.safetensors")).unwrap();
        let backbone = model.backbone.forward(input(&io));
        let features = max_abs(multi_level_features(&backbone.stages), &io["features"]);
        let out = model.try_forward(input(&io)).unwrap();
        let mut worst = (
            "embedding",
            max_abs(out.embedding.clone(), &io["embedding"]),
        );
        for head in FACE_HEADS {
            let got = out.head(head.name).unwrap().clone();
            let err = max_abs(got, &io[&format!("head.{}", head.name)]);
            if err > worst.1 {
                worst = (head.name, err);
            }
        }
        eprintln!(
            "swinface: features {features:e}, worst output {} {:e}",
            worst.0, worst.1
        );
        assert!(features <= SWINFACE_FEATURES && worst.1 <= SWINFACE);
        let probabilities = out.expression_probabilities().unwrap();
        assert_eq!(probabilities.dims(), [2, 7]);
    }

    #[test]
    fn swin_matches_timm_in_both_layouts() {
        let device = Default::default();
        let io = read_tensors(file("swin_t", "io.safetensors")).unwrap();
        for weights in ["weights.safetensors", "weights.pth"] {
            let base = SwinConfig {
                head: SwinHead::Classifier { num_classes: 1 },
                ..swin_t()
            };
            let model = base
                .load_checkpoint::<Flex>(file("swin_t", weights), &device)
                .unwrap();
            let out = model.try_forward(input(&io)).unwrap();
            let logits = max_abs(out.logits.unwrap(), &io["logits"]);
            let embedding = max_abs(out.embedding, &io["embedding"]);
            eprintln!("swin {weights}: logits {logits:e}, embedding {embedding:e}");
            assert!(logits.max(embedding) <= SWIN_T, "{weights}");
        }
        // The original release wraps its state_dict in a `model` entry.
        let wrapped: BTreeMap<String, TensorData> =
            read_tensors(file("swin_t", "weights.safetensors"))
                .unwrap()
                .into_iter()
                .map(|(k, v)| (format!("model.{k}"), v))
                .collect();
        let path = std::env::temp_dir().join(format!(
            "miga-swin-model-{}.safetensors",
            std::process::id()
        ));
        write_tensors(&path, &wrapped).unwrap();
        let out = swin_t()
            .load_checkpoint::<Flex>(&path, &device)
            .unwrap()
            .try_forward(input(&io))
            .unwrap();
        assert!(max_abs(out.logits.unwrap(), &io["logits"]) <= SWIN_T);
        std::fs::remove_file(&path).unwrap();
    }

    /// A copy of the SwinFace fixture with only the sections in `keep`, as safetensors.
    fn sections(keep: &[&str], dir: &Path) -> std::path::PathBuf {
        use burn_store::{ModuleStore, PytorchStore};
        let mut store =
            PytorchStore::from_file(file("swinface", "weights.pt")).map_indices_contiguous(false);
        let tensors: BTreeMap<String, TensorData> = store
            .get_all_snapshots()
            .unwrap()
            .iter()
            .filter_map(|(key, snapshot)| {
                let (section, rest) = key.strip_prefix("state_dict_")?.split_once('.')?;
                keep.contains(&section)
                    .then(|| (format!("{section}.{rest}"), snapshot.to_data().unwrap()))
            })
            .collect();
        let path = dir.join(format!("{}.safetensors", keep.join("-")));
        write_tensors(&path, &tensors).unwrap();
        path
    }

    #[test]
    fn strict_loading_names_what_is_wrong() {
        let device = Default::default();
        let dir = std::env::temp_dir().join(format!("miga-swin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let io = read_tensors(file("swinface", "io.safetensors")).unwrap();

        // The same sections as safetensors load the same network.
        let all = sections(&["backbone", "fam", "tss", "om"], &dir);
        let out = swinface()
            .load_checkpoint::<Flex>(&all, &device)
            .unwrap()
            .try_forward(input(&io))
            .unwrap();
        assert!(max_abs(out.embedding, &io["embedding"]) <= SWINFACE);

        // Heads requested from a backbone-only file: an error that says so; without heads the
        // embedding still loads and matches.
        let backbone_only = sections(&["backbone"], &dir);
        let err = swinface()
            .load_checkpoint::<Flex>(&backbone_only, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no face-analysis heads"), "{err}");
        let embedding_only = swinface().with_heads(None);
        let model = embedding_only
            .load_checkpoint::<Flex>(&backbone_only, &device)
            .unwrap();
        let out = model.try_forward(input(&io)).unwrap();
        assert!(out.heads.is_none());
        assert!(max_abs(out.embedding, &io["embedding"]) <= SWINFACE);

        // A deeper third stage: its extra blocks are missing, by name.
        let mut deeper = swinface();
        deeper.backbone.depths[2] = 3;
        let err = deeper
            .load_checkpoint::<Flex>(file("swinface", "weights.pt"), &device)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing keys") && err.contains("backbone.layers.2.blocks.2."),
            "{err}"
        );
        // Wider FAM splits: mis-shaped convolutions, by name.
        let mut wider = swinface();
        wider.heads = Some(FaceAnalysisConfig::new(vec![2, 4, 5, 6]));
        let err = wider
            .load_checkpoint::<Flex>(file("swinface", "weights.pt"), &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("heads.fam.nets.0.convs.3.weight"), "{err}");
        // A timm file is not SwinFace; an MViT file is not Swin; truncated files name themselves.
        let err = swinface()
            .load_checkpoint::<Flex>(file("swin_t", "weights.pth"), &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a SwinFace checkpoint"), "{err}");
        let mvit =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mvit/tiny/weights.pth");
        let err = swin_t()
            .load_checkpoint::<Flex>(&mvit, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Swin checkpoint"), "{err}");
        let bytes = std::fs::read(file("swinface", "weights.pt")).unwrap();
        let cut = dir.join("cut.pt");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = swinface()
            .load_checkpoint::<Flex>(&cut, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.pt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_inputs_are_refused() {
        let device = Default::default();
        let model = swin_t().init::<Flex>(&device).unwrap();
        for shape in [
            [1, 3, 112, 96],
            [1, 3, 224, 224],
            [1, 1, 112, 112],
            [0, 3, 112, 112],
        ] {
            let err = model
                .try_forward(Tensor::zeros(shape, &device))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("this network takes [B >= 1, 3, 112, 112]"),
                "{err}"
            );
        }
    }
}
