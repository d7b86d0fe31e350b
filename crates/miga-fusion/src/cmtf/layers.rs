//! How CMTF's two token sets meet: one module type per [`CmtfVariant`].

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::{CmtfConfig, CmtfVariant};
use crate::AttentionMap;
use crate::layers::{CrossBlock, EncoderLayer, LayerConfig, Stream, embedding, run_cross_blocks};

/// The fusion layers of a [`super::Cmtf`], as its [`CmtfVariant`] has them. They sit where
/// the record of miga's first CMTF had its `cls`, `cross_layers` and `joint_layers`, in that
/// order: Burn initialises a parameter when the module is first mapped, in field order, so a
/// seed draws the model it always drew.
#[derive(Module, Debug)]
pub enum CmtfLayers<B: Backend> {
    /// Per-modality self-attention, bidirectional cross-attention and feed-forward per layer.
    Cross(CrossLayers<B>),
    /// Both token sets and a [CLS] token through a plain transformer encoder.
    Joint(JointLayers<B>),
}

/// The cross variant's layers.
#[derive(Module, Debug)]
pub struct CrossLayers<B: Backend> {
    /// One cross block a layer.
    pub blocks: Vec<CrossBlock<B>>,
}

/// The joint variant's layers.
#[derive(Module, Debug)]
pub struct JointLayers<B: Backend> {
    /// The [CLS] token `[d_model]`; its last state is the fused embedding.
    pub cls: Param<Tensor<B, 1>>,
    /// One encoder layer a layer, over `[CLS, video tokens, skeleton tokens]`.
    pub blocks: Vec<EncoderLayer<B>>,
}

/// The streams after the fusion layers, and the fused embedding `[B, D]` where the layers make
/// one (the joint variant's [CLS] token).
pub(super) type Fused<B> = (Stream<B>, Stream<B>, Option<Tensor<B, 2>>);

impl CmtfConfig {
    /// The fusion layers of the configured variant.
    pub(super) fn fusion_layers<B: Backend>(&self, device: &B::Device) -> CmtfLayers<B> {
        let layer = LayerConfig::new(self.d_model, self.heads, self.ff_dim, self.dropout);
        match self.variant {
            CmtfVariant::Cross => CmtfLayers::Cross(CrossLayers {
                blocks: (0..self.layers)
                    .map(|_| layer.cross_block(true, device))
                    .collect(),
            }),
            CmtfVariant::Joint => CmtfLayers::Joint(JointLayers {
                cls: embedding([self.d_model], device),
                blocks: (0..self.layers).map(|_| layer.encoder(device)).collect(),
            }),
        }
    }
}

impl<B: Backend> CmtfLayers<B> {
    /// Runs the layers over the video stream `v` and the skeleton stream `s`, adding their
    /// attention maps (when `weights`) to `maps`.
    pub(super) fn forward(
        &self,
        v: Stream<B>,
        s: Stream<B>,
        weights: bool,
        maps: &mut Vec<AttentionMap<B>>,
    ) -> Fused<B> {
        match self {
            Self::Cross(cross) => cross.forward(v, s, weights, maps),
            Self::Joint(joint) => joint.forward(v, s, weights, maps),
        }
    }
}

impl<B: Backend> CrossLayers<B> {
    fn forward(
        &self,
        v: Stream<B>,
        s: Stream<B>,
        weights: bool,
        maps: &mut Vec<AttentionMap<B>>,
    ) -> Fused<B> {
        let names = [
            "video self",
            "skeleton self",
            "video->skeleton",
            "skeleton->video",
        ];
        let (v, s) = run_cross_blocks(&self.blocks, v, s, weights, names, maps);
        (v, s, None)
    }
}

impl<B: Backend> JointLayers<B> {
    fn forward(
        &self,
        v: Stream<B>,
        s: Stream<B>,
        weights: bool,
        maps: &mut Vec<AttentionMap<B>>,
    ) -> Fused<B> {
        let [b, nv, d] = v.tokens.dims();
        let ns = s.tokens.dims()[1];
        let device = v.tokens.device();
        let cls_padding = Tensor::<B, 2, Int>::zeros([b, 1], &device).bool();
        let mut x = Tensor::cat(
            vec![
                self.cls.val().reshape([1, 1, d]).expand([b, 1, d]),
                v.tokens,
                s.tokens,
            ],
            1,
        );
        let padding = Tensor::cat(vec![cls_padding, v.padding.clone(), s.padding.clone()], 1);
        for (layer, encoder) in self.blocks.iter().enumerate() {
            let (nx, w) = encoder.forward(x, Some(padding.clone()), weights);
            x = nx;
            if let Some(weights) = w {
                maps.push(AttentionMap {
                    layer,
                    name: "joint self",
                    weights,
                });
            }
        }
        let fused = x.clone().narrow(1, 0, 1).reshape([b, d]);
        (
            Stream {
                tokens: x.clone().narrow(1, 1, nv),
                padding: v.padding,
            },
            Stream {
                tokens: x.narrow(1, 1 + nv, ns),
                padding: s.padding,
            },
            Some(fused),
        )
    }
}
