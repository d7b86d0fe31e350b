//! A pre-norm transformer encoder layer over one token sequence.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use super::sublayer::{AttentionSublayer, FeedForwardSublayer, LayerConfig};

/// Self-attention then feed-forward, each pre-norm and residual.
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    /// Self-attention sub-layer.
    pub attention: AttentionSublayer<B>,
    /// Feed-forward sub-layer.
    pub feed_forward: FeedForwardSublayer<B>,
}

impl LayerConfig {
    /// An encoder layer.
    pub fn encoder<B: Backend>(&self, device: &B::Device) -> EncoderLayer<B> {
        EncoderLayer {
            attention: self.attention(false, device),
            feed_forward: self.feed_forward(device),
        }
    }
}

impl<B: Backend> EncoderLayer<B> {
    /// Encodes `x` `[B, N, D]` with `padding` `[B, N]`; the weights `[B, heads, N, N]` when
    /// asked for.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
        weights: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let (x, w) = self.attention.forward(x, None, padding, weights);
        (self.feed_forward.forward(x), w)
    }
}
