//! Loading torchvision's MViT state_dicts (`mvit_v2_s-ae3be167.pth` and the like, or the same
//! keys in safetensors): `conv_proj.*`, `pos_encoding.class_token`, `blocks.N.*`, `norm.*`,
//! `head.1.*`.

use std::path::Path;

use burn::tensor::backend::Backend;

use super::{Mvit, MvitConfig};
use crate::import::{checkpoint_shapes, load_checkpoint};
use crate::{Error, Result};

/// Key renames from torchvision to miga; a `module.` prefix (DataParallel) is dropped.
const REMAPS: [(&str, &str); 7] = [
    (r"^module\.", ""),
    (r"^pos_encoding\.class_token$", "class_token"),
    (r"\.attn\.project\.0\.", ".attn.project."),
    (r"\.norm_act\.0\.", ".norm."),
    (r"\.mlp\.0\.", ".mlp.fc1."),
    (r"\.mlp\.3\.", ".mlp.fc2."),
    (r"^head\.1\.", "head."),
];

fn remaps() -> Vec<(String, String)> {
    REMAPS
        .iter()
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .collect()
}

impl MvitConfig {
    /// `base` with the class count of the checkpoint's head, after checking that the file is
    /// a torchvision MViT checkpoint; the rest of the network is checked when it loads.
    pub fn from_checkpoint(path: impl AsRef<Path>, base: MvitConfig) -> Result<MvitConfig> {
        let path = path.as_ref();
        let shapes = checkpoint_shapes(path, None)?;
        let shape = |key: &str| {
            shapes
                .get(key)
                .or_else(|| shapes.get(&format!("module.{key}")))
                .ok_or_else(|| Error::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!("no `{key}`: not a torchvision MViT checkpoint"),
                })
        };
        shape("conv_proj.weight")?;
        shape("blocks.0.attn.qkv.weight")?;
        let head = shape("head.1.weight")?;
        Ok(MvitConfig {
            num_classes: head[0],
            ..base
        })
    }

    /// Builds this network with the checkpoint's class count and loads it strictly.
    pub fn load_checkpoint<B: Backend>(
        &self,
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<Mvit<B>> {
        let config = MvitConfig::from_checkpoint(path.as_ref(), self.clone())?;
        config.init(device)?.load_checkpoint(path)
    }
}

impl<B: Backend> Mvit<B> {
    /// Loads a torchvision state_dict (`.pth`/`.pt`, or `.safetensors`) into this network:
    /// every parameter must be present with its shape, and every tensor of the file used.
    pub fn load_checkpoint(self, path: impl AsRef<Path>) -> Result<Self> {
        load_checkpoint(self, path.as_ref(), None, &remaps(), &[])
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::backend::Flex;
    use burn::config::Config;
    use burn::tensor::Tensor;

    use super::*;
    use miga_datasets::tensors::read_tensors;

    fn fixture(case: &str, file: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mvit")
            .join(case)
            .join(file)
    }

    fn config(case: &str) -> MvitConfig {
        MvitConfig::load(fixture(case, "config.json")).unwrap()
    }

    #[test]
    fn strict_loading_names_mismatched_missing_and_unexpected_keys() {
        let device = Default::default();
        let path = fixture("tiny", "weights.pth");
        let base = config("tiny");

        // Wider last block: its weights and the head are mis-shaped.
        let mut blocks = base.blocks.clone();
        blocks[4].input_channels = 32;
        blocks[4].output_channels = 64;
        let wide = MvitConfig {
            blocks,
            ..base.clone()
        };
        let err = wide
            .load_checkpoint::<Flex>(&path, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("blocks.4.attn.qkv.weight"), "{err}");
        assert!(err.contains("head.weight"), "{err}");

        // One block fewer: blocks.4 is unexpected; one more: blocks.5 is missing.
        let shorter = MvitConfig {
            blocks: base.blocks[..4].to_vec(),
            ..base.clone()
        };
        let mut blocks = base.blocks.clone();
        blocks.push(blocks[4].clone());
        let longer = MvitConfig {
            blocks,
            ..base.clone()
        };
        let err = format!(
            "{} | {}",
            shorter.load_checkpoint::<Flex>(&path, &device).unwrap_err(),
            longer.load_checkpoint::<Flex>(&path, &device).unwrap_err()
        );
        assert!(err.contains("unexpected keys: blocks.4."), "{err}");
        assert!(
            err.contains("missing keys") && err.contains("blocks.5."),
            "{err}"
        );

        // A 2s-AGCN checkpoint, a truncated file, no file.
        let agcn =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agcn/kinetics/joint.pt");
        let err = base
            .load_checkpoint::<Flex>(&agcn, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a torchvision MViT checkpoint"), "{err}");
        let dir = std::env::temp_dir().join(format!("miga-mvit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["cut.pth", "cut.safetensors"] {
            let source = if name.ends_with("pth") {
                &path
            } else {
                &fixture("odd", "weights.safetensors")
            };
            let bytes = std::fs::read(source).unwrap();
            let cut = dir.join(name);
            std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
            let err = base
                .load_checkpoint::<Flex>(&cut, &device)
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            base.load_checkpoint::<Flex>(fixture("tiny", "absent.pth"), &device)
                .unwrap_err()
                .to_string()
                .contains("no such file")
        );
    }

    #[test]
    fn a_new_head_keeps_the_rest() {
        let device = Default::default();
        let model = config("tiny")
            .load_checkpoint::<Flex>(fixture("tiny", "weights.pth"), &device)
            .unwrap();
        let io = read_tensors(fixture("tiny", "io.safetensors")).unwrap();
        let x = Tensor::<Flex, 5>::from_data(io["input"].clone(), &device);
        let before = model.forward(x.clone()).embedding;
        let tuned = model.with_num_classes(32);
        let out = tuned.forward(x);
        assert_eq!(out.logits.dims(), [2, 32]);
        assert_eq!(tuned.num_classes(), 32);
        let diff: f32 = (out.embedding - before).abs().max().into_scalar();
        assert_eq!(diff, 0.0);
    }
}
