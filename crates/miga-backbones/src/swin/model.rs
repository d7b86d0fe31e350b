//! The network: patch embedding, stages, final norm, average pool and head.

use burn::module::Module;
use burn::nn::BatchNormConfig;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::block::SwinStage;
use super::config::{SwinConfig, SwinHead};
use crate::kernels::nn::{BatchNorm, LayerNorm, LayerNormConfig, Linear};
use crate::layers::init_linear;
use crate::{Error, Result};

/// Patch embedding: a strided convolution to `embed_dim` channels, then LayerNorm.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// `patch x patch` convolution with stride `patch`.
    pub proj: Conv2d<B>,
    /// Norm of the embedded patches.
    pub norm: LayerNorm<B>,
}

/// SwinFace's embedding path (its `feature` Sequential): Linear, BatchNorm1d, Linear,
/// BatchNorm1d, the linear layers without bias, the norms with eps 2e-5.
#[derive(Module, Debug)]
pub struct FaceEmbedding<B: Backend> {
    /// `feature.0`: C to C.
    pub fc1: Linear<B>,
    /// `feature.1`.
    pub bn1: BatchNorm<B>,
    /// `feature.2`: C to the embedding size.
    pub fc2: Linear<B>,
    /// `feature.3`.
    pub bn2: BatchNorm<B>,
}

/// A Swin Transformer.
#[derive(Module, Debug)]
pub struct Swin<B: Backend> {
    /// Patch embedding.
    pub patch_embed: PatchEmbed<B>,
    /// The stages (the references' `layers`).
    pub layers: Vec<SwinStage<B>>,
    /// Final LayerNorm on the last stage's tokens.
    pub norm: LayerNorm<B>,
    /// Classifier, for [`SwinHead::Classifier`].
    pub head: Option<Linear<B>>,
    /// Face embedding, for [`SwinHead::FaceEmbedding`].
    pub feature: Option<FaceEmbedding<B>>,
    image_size: usize,
    in_channels: usize,
}

/// What the network computes for a batch of images.
#[derive(Debug, Clone)]
pub struct SwinOutput<B: Backend> {
    /// Class scores `[B, classes]`, with a classifier head.
    pub logits: Option<Tensor<B, 2>>,
    /// The face embedding `[B, 512]` (SwinFace; not L2-normalised), or the pooled, normed
    /// features `[B, C]` (a classifier's input).
    pub embedding: Tensor<B, 2>,
    /// Every stage's output map `[B, C_i, H_i, W_i]` (channels first, after the stage's patch
    /// merging, before the final norm): SwinFace's heads read them.
    pub stages: Vec<Tensor<B, 4>>,
}

impl SwinConfig {
    /// Builds the network with timm's initialisation (normal linear weights with std 0.02,
    /// zero biases), after checking the configuration ([`SwinConfig::stages`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Swin<B>> {
        let stages = self.stages()?;
        let total: usize = self.depths.iter().sum();
        let rate = |i: usize| {
            if total > 1 {
                self.drop_path_rate * i as f64 / (total - 1) as f64
            } else {
                0.0
            }
        };
        let mut first = 0;
        let layers = stages
            .iter()
            .zip(&self.depths)
            .enumerate()
            .map(|(i, (stage, &depth))| {
                let drop_paths: Vec<f64> = (first..first + depth).map(rate).collect();
                first += depth;
                SwinStage::new(self, stage, &drop_paths, i + 1 == stages.len(), device)
            })
            .collect();
        let norm = |d: usize| {
            LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device)
        };
        let c = self.num_features();
        let bn = |d: usize| {
            BatchNormConfig::new(d)
                .with_epsilon(2e-5)
                .init(device)
                .into()
        };
        let (head, feature) = match self.head {
            SwinHead::Classifier { num_classes } => {
                (Some(init_linear(c, num_classes, true, device)), None)
            }
            SwinHead::FaceEmbedding { dim } => (
                None,
                Some(FaceEmbedding {
                    fc1: init_linear(c, c, false, device),
                    bn1: bn(c),
                    fc2: init_linear(c, dim, false, device),
                    bn2: bn(dim),
                }),
            ),
        };
        Ok(Swin {
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([self.in_channels, self.embed_dim], [self.patch_size; 2])
                    .with_stride([self.patch_size; 2])
                    .init(device),
                norm: norm(self.embed_dim),
            },
            layers,
            norm: norm(c),
            head,
            feature,
            image_size: self.image_size,
            in_channels: self.in_channels,
        })
    }
}

impl<B: Backend> Swin<B> {
    /// Images `[B, C, H, W]` (normalised as the checkpoint expects) to the outputs; the size
    /// must be the configuration's.
    pub fn try_forward(&self, images: Tensor<B, 4>) -> Result<SwinOutput<B>> {
        let [b, c, h, w] = images.dims();
        let s = self.image_size;
        if b == 0 || c != self.in_channels || h != s || w != s {
            return Err(Error::InvalidInput {
                model: "swin",
                reason: format!(
                    "images of shape {:?}; this network takes [B >= 1, {}, {s}, {s}]",
                    [b, c, h, w],
                    self.in_channels
                ),
            });
        }
        Ok(self.forward(images))
    }

    /// [`Swin::try_forward`] without the shape check.
    pub fn forward(&self, images: Tensor<B, 4>) -> SwinOutput<B> {
        let x = self.patch_embed.proj.forward(images).permute([0, 2, 3, 1]);
        let mut x = self.patch_embed.norm.forward(x);
        let mut stages = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            x = layer.forward(x);
            stages.push(x.clone().permute([0, 3, 1, 2]));
        }
        let [b, h, w, c] = x.dims();
        let pooled = self
            .norm
            .forward(x.reshape([b, h * w, c]))
            .mean_dim(1)
            .reshape([b, c]);
        let logits = (self.head.as_ref()).map(|head| head.forward(pooled.clone()));
        let embedding = match &self.feature {
            Some(f) => {
                let x = f.bn1.forward(f.fc1.forward(pooled));
                f.bn2.forward(f.fc2.forward(x))
            }
            None => pooled,
        };
        SwinOutput {
            logits,
            embedding,
            stages,
        }
    }

    /// Side of the square images the network takes.
    pub fn image_size(&self) -> usize {
        self.image_size
    }
}
