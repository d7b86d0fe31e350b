//! The hyper-parameters of a Swin Transformer, its presets and the per-stage geometry derived
//! from them.

use burn::config::Config;
use serde::{Deserialize, Serialize};

/// What the network puts after its final norm and average pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SwinHead {
    /// A linear classifier (timm's `head.fc`, Microsoft's `head`).
    Classifier {
        /// Number of classes (1000 for ImageNet-1k checkpoints).
        num_classes: usize,
    },
    /// SwinFace's embedding path (its `feature`): Linear (no bias), BatchNorm1d,
    /// Linear (no bias), BatchNorm1d, both norms with eps 2e-5.
    FaceEmbedding {
        /// Embedding size (512).
        dim: usize,
    },
}

/// A Swin Transformer (Liu et al., ICCV 2021): patch embedding, stages of window attention
/// blocks (every second block shifted) each followed by patch merging but the last, final
/// norm, average pool and a head.
#[derive(Config, Debug, PartialEq)]
pub struct SwinConfig {
    /// Side of the square input image.
    pub image_size: usize,
    /// Side of the square patches of the embedding.
    pub patch_size: usize,
    /// Channels of the first stage; each later stage doubles them.
    pub embed_dim: usize,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    pub num_heads: Vec<usize>,
    /// Side of the attention windows (a stage whose map is no larger uses the whole map, unshifted).
    pub window_size: usize,
    /// The head after pooling.
    pub head: SwinHead,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// MLP width as a multiple of the channels.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// LayerNorm epsilon (PyTorch's default, used by both references).
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Dropout after the attention projection and in the MLPs (training only).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Dropout of the attention weights (training only).
    #[config(default = 0.0)]
    pub attention_dropout: f64,
    /// Stochastic depth of the last block; it rises linearly from 0 at the first (training only).
    #[config(default = 0.1)]
    pub drop_path_rate: f64,
}

/// The geometry of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageGeometry {
    /// Side of the stage's square token map.
    pub resolution: usize,
    /// Channels.
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Side of its windows.
    pub window: usize,
    /// Cyclic shift of its odd blocks (0: none).
    pub shift: usize,
}

impl SwinConfig {
    /// SwinFace's backbone (Qin et al., 2023): 112x112 faces, patch 2, channels 96, depths
    /// 2-2-6-2, heads 3-6-12-24, window 7, and the 512-d face embedding.
    pub fn swinface() -> Self {
        SwinConfig::new(
            112,
            2,
            96,
            vec![2, 2, 6, 2],
            vec![3, 6, 12, 24],
            7,
            SwinHead::FaceEmbedding { dim: 512 },
        )
    }

    /// A narrow SwinFace backbone for quick runs (the demo, tests): 112x112 faces, patch 4,
    /// channels 32, depths 1-1-1, heads 1-2-4, window 7, the 512-d embedding. No checkpoint
    /// of it exists; it is for random-feature pipelines.
    pub fn swinface_xs() -> Self {
        SwinConfig::new(
            112,
            4,
            32,
            vec![1, 1, 1],
            vec![1, 2, 4],
            7,
            SwinHead::FaceEmbedding { dim: 512 },
        )
    }

    /// timm's `swin_tiny_patch4_window7_224` (Swin-T): 224x224, patch 4, the same stages, and
    /// a classifier of `num_classes` (1000 for ImageNet-1k).
    pub fn swin_t(num_classes: usize) -> Self {
        SwinConfig::new(
            224,
            4,
            96,
            vec![2, 2, 6, 2],
            vec![3, 6, 12, 24],
            7,
            SwinHead::Classifier { num_classes },
        )
    }

    /// A preset by name: `swinface`, `swinface_xs` or `swin_t` (with `num_classes`).
    pub fn preset(name: &str, num_classes: usize) -> crate::Result<Self> {
        match name {
            "swinface" => Ok(Self::swinface()),
            "swinface_xs" => Ok(Self::swinface_xs()),
            "swin_t" => Ok(Self::swin_t(num_classes)),
            _ => Err(crate::Error::InvalidConfig {
                model: "swin",
                reason: format!("unknown preset `{name}` (swinface, swinface_xs, swin_t)"),
            }),
        }
    }

    /// Channels of the last stage (768 for Swin-T): the size of the pooled features.
    pub fn num_features(&self) -> usize {
        self.embed_dim << self.depths.len().saturating_sub(1)
    }

    /// Size of [`super::SwinOutput::embedding`]: the face embedding, or the pooled features.
    pub fn embedding_dim(&self) -> usize {
        match self.head {
            SwinHead::FaceEmbedding { dim } => dim,
            SwinHead::Classifier { .. } => self.num_features(),
        }
    }

    /// Floating-point operations of a forward pass over `batch` images, a multiply-add counted
    /// as two: the patch convolution, linear layers and the attention products (norms,
    /// softmax and the bias gathers are left out, a few percent). 0 for an invalid config.
    pub fn forward_flops(&self, batch: usize) -> u64 {
        let Ok(stages) = self.stages() else {
            return 0;
        };
        let p = self.patch_size;
        let r0 = stages[0].resolution;
        let mut flops = 2 * r0 * r0 * self.in_channels * p * p * self.embed_dim;
        let hidden = |c: usize| (c as f64 * self.mlp_ratio) as usize;
        for (i, (stage, &depth)) in stages.iter().zip(&self.depths).enumerate() {
            let (n, c, w) = (stage.resolution.pow(2), stage.dim, stage.window);
            let block = 2 * n * c * 3 * c // qkv
                + 2 * 2 * n * w * w * c // q k^T and attn v, within windows
                + 2 * n * c * c // projection
                + 2 * 2 * n * c * hidden(c); // mlp
            flops += depth * block;
            if i + 1 < stages.len() {
                flops += 2 * (n / 4) * 4 * c * 2 * c; // patch merging
            }
        }
        let c = self.num_features();
        flops += match self.head {
            SwinHead::Classifier { num_classes } => 2 * c * num_classes,
            SwinHead::FaceEmbedding { dim } => 2 * c * c + 2 * c * dim,
        };
        (batch * flops) as u64
    }

    /// Every stage's geometry, after checking that the configuration builds a network: the
    /// patches tile the image, every map is tiled by its windows, maps halve evenly, heads
    /// divide channels.
    pub fn stages(&self) -> crate::Result<Vec<StageGeometry>> {
        let invalid = |reason: String| crate::Error::InvalidConfig {
            model: "swin",
            reason,
        };
        if self.depths.is_empty() || self.depths.len() != self.num_heads.len() {
            return Err(invalid(format!(
                "depths {:?} and num_heads {:?} must name the same (non-zero) number of stages",
                self.depths, self.num_heads
            )));
        }
        if self.patch_size == 0 || self.window_size == 0 || self.embed_dim == 0 {
            return Err(invalid(
                "patch size, window size and embed_dim must be > 0".into(),
            ));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(invalid(format!(
                "patches of {} do not tile a {} image",
                self.patch_size, self.image_size
            )));
        }
        let mut resolution = self.image_size / self.patch_size;
        let last = self.depths.len() - 1;
        let mut stages = Vec::new();
        for (i, &heads) in self.num_heads.iter().enumerate() {
            let dim = self.embed_dim << i;
            if heads == 0 || !dim.is_multiple_of(heads) {
                return Err(invalid(format!(
                    "stage {i}: {heads} heads do not divide {dim} channels"
                )));
            }
            let (window, shift) = if resolution <= self.window_size {
                (resolution, 0)
            } else {
                (self.window_size, self.window_size / 2)
            };
            if resolution == 0 || !resolution.is_multiple_of(window) {
                return Err(invalid(format!(
                    "stage {i}: windows of {window} do not tile its {resolution}x{resolution} map"
                )));
            }
            if i < last && !resolution.is_multiple_of(2) {
                return Err(invalid(format!(
                    "stage {i}: its {resolution}x{resolution} map cannot be halved by patch merging"
                )));
            }
            stages.push(StageGeometry {
                resolution,
                dim,
                heads,
                window,
                shift,
            });
            resolution /= 2;
        }
        Ok(stages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_reference_geometry() {
        let face = SwinConfig::swinface().stages().unwrap();
        let rows: Vec<_> = face
            .iter()
            .map(|s| (s.resolution, s.dim, s.heads, s.window, s.shift))
            .collect();
        assert_eq!(
            rows,
            [
                (56, 96, 3, 7, 3),
                (28, 192, 6, 7, 3),
                (14, 384, 12, 7, 3),
                (7, 768, 24, 7, 0)
            ]
        );
        assert_eq!(SwinConfig::swinface().embedding_dim(), 512);
        let tiny = SwinConfig::swin_t(1000);
        assert_eq!(tiny.stages().unwrap()[0].resolution, 56);
        assert_eq!(tiny.embedding_dim(), 768);
        // Swin-T at 224: 4.5 GFLOPs (multiply-adds) in the paper, 8.7-9.0 G operations here.
        let gflops = SwinConfig::swin_t(1000).forward_flops(1) as f64 / 1e9;
        assert!((8.7..9.1).contains(&gflops), "{gflops}");
    }

    #[test]
    fn untileable_configurations_are_refused_with_the_reason() {
        let err = SwinConfig {
            image_size: 100,
            ..SwinConfig::swinface()
        }
        .stages()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("windows of 7 do not tile its 50x50 map"),
            "{err}"
        );
        let err = SwinConfig {
            image_size: 226,
            ..SwinConfig::swin_t(10)
        }
        .stages()
        .unwrap_err()
        .to_string();
        assert!(err.contains("do not tile a 226 image"), "{err}");
        let err = SwinConfig {
            num_heads: vec![3, 6, 12],
            ..SwinConfig::swinface()
        }
        .stages()
        .unwrap_err()
        .to_string();
        assert!(err.contains("same (non-zero) number of stages"), "{err}");
        assert!(SwinConfig::preset("swin_l", 1).is_err());
    }
}
