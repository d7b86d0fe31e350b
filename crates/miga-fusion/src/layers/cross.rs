//! A block that lets two token sequences attend to each other.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::AttentionMap;

use super::sublayer::{AttentionSublayer, FeedForwardSublayer, LayerConfig};

/// One sequence of a [`CrossBlock`]: tokens `[B, N, D]` and padding `[B, N]` (true = ignore).
#[derive(Debug, Clone)]
pub struct Stream<B: Backend> {
    /// Tokens.
    pub tokens: Tensor<B, 3>,
    /// Padding mask.
    pub padding: Tensor<B, 2, Bool>,
}

impl<B: Backend> Stream<B> {
    /// A stand-in for a modality absent from the whole batch: one padded zero token per sample.
    pub fn absent(batch: usize, d_model: usize, device: &B::Device) -> Self {
        Self {
            tokens: Tensor::zeros([batch, 1, d_model], device),
            padding: Tensor::<B, 2, Int>::ones([batch, 1], device).bool(),
        }
    }

    /// `padding`, or a mask of shape `[batch, steps]` with nothing padded.
    pub fn padding_or_none(
        padding: Option<Tensor<B, 2, Bool>>,
        [batch, steps]: [usize; 2],
        device: &B::Device,
    ) -> Tensor<B, 2, Bool> {
        padding.unwrap_or_else(|| Tensor::<B, 2, Int>::zeros([batch, steps], device).bool())
    }
}

/// Attention weights of one [`CrossBlock`], when asked for.
#[derive(Debug, Clone)]
pub struct CrossMaps<B: Backend> {
    /// Self-attention of stream a `[B, heads, Na, Na]` (blocks with self-attention).
    pub self_a: Option<Tensor<B, 4>>,
    /// Self-attention of stream b `[B, heads, Nb, Nb]`.
    pub self_b: Option<Tensor<B, 4>>,
    /// Stream a querying stream b `[B, heads, Na, Nb]`.
    pub a_to_b: Option<Tensor<B, 4>>,
    /// Stream b querying stream a `[B, heads, Nb, Na]`.
    pub b_to_a: Option<Tensor<B, 4>>,
}

impl<B: Backend> CrossMaps<B> {
    /// The maps that were computed, as [`AttentionMap`]s of `layer` named (in this order)
    /// self a, self b, a to b, b to a.
    pub fn named(self, layer: usize, names: [&'static str; 4]) -> Vec<AttentionMap<B>> {
        [self.self_a, self.self_b, self.a_to_b, self.b_to_a]
            .into_iter()
            .zip(names)
            .filter_map(|(w, name)| {
                w.map(|weights| AttentionMap {
                    layer,
                    name,
                    weights,
                })
            })
            .collect()
    }
}

/// Per-stream self-attention (optional), bidirectional cross-attention and per-stream
/// feed-forward, all pre-norm and residual. Both cross-attentions read the other stream as it
/// was before this block's cross step, so the block is symmetric in its two inputs.
#[derive(Module, Debug)]
pub struct CrossBlock<B: Backend> {
    /// Self-attention of stream a.
    pub self_a: Option<AttentionSublayer<B>>,
    /// Self-attention of stream b.
    pub self_b: Option<AttentionSublayer<B>>,
    /// Stream a querying stream b.
    pub cross_a: AttentionSublayer<B>,
    /// Stream b querying stream a.
    pub cross_b: AttentionSublayer<B>,
    /// Feed-forward of stream a.
    pub feed_forward_a: FeedForwardSublayer<B>,
    /// Feed-forward of stream b.
    pub feed_forward_b: FeedForwardSublayer<B>,
}

impl LayerConfig {
    /// A cross block, with per-stream self-attention first when `self_attention` is set.
    pub fn cross_block<B: Backend>(
        &self,
        self_attention: bool,
        device: &B::Device,
    ) -> CrossBlock<B> {
        CrossBlock {
            self_a: self_attention.then(|| self.attention(false, device)),
            self_b: self_attention.then(|| self.attention(false, device)),
            cross_a: self.attention(true, device),
            cross_b: self.attention(true, device),
            feed_forward_a: self.feed_forward(device),
            feed_forward_b: self.feed_forward(device),
        }
    }
}

impl<B: Backend> CrossBlock<B> {
    /// Runs the block on streams `a` and `b`; attention weights when `weights` is set.
    pub fn forward(
        &self,
        a: Stream<B>,
        b: Stream<B>,
        weights: bool,
    ) -> (Stream<B>, Stream<B>, CrossMaps<B>) {
        let self_attend = |layer: &Option<AttentionSublayer<B>>, s: &Stream<B>| match layer {
            Some(layer) => layer.forward(s.tokens.clone(), None, Some(s.padding.clone()), weights),
            None => (s.tokens.clone(), None),
        };
        let (xa, self_a) = self_attend(&self.self_a, &a);
        let (xb, self_b) = self_attend(&self.self_b, &b);
        let (ya, a_to_b) = self.cross_a.forward(
            xa.clone(),
            Some(xb.clone()),
            Some(b.padding.clone()),
            weights,
        );
        let (yb, b_to_a) = self
            .cross_b
            .forward(xb, Some(xa), Some(a.padding.clone()), weights);
        (
            Stream {
                tokens: self.feed_forward_a.forward(ya),
                padding: a.padding,
            },
            Stream {
                tokens: self.feed_forward_b.forward(yb),
                padding: b.padding,
            },
            CrossMaps {
                self_a,
                self_b,
                a_to_b,
                b_to_a,
            },
        )
    }
}

/// Runs `blocks` in turn on streams `a` and `b`, adding each block's attention maps (when
/// `weights` is set) to `maps`, named `names`: self a, self b, a to b, b to a.
pub fn run_cross_blocks<B: Backend>(
    blocks: &[CrossBlock<B>],
    mut a: Stream<B>,
    mut b: Stream<B>,
    weights: bool,
    names: [&'static str; 4],
    maps: &mut Vec<AttentionMap<B>>,
) -> (Stream<B>, Stream<B>) {
    for (layer, block) in blocks.iter().enumerate() {
        let (na, nb, m) = block.forward(a, b, weights);
        (a, b) = (na, nb);
        maps.extend(m.named(layer, names));
    }
    (a, b)
}
