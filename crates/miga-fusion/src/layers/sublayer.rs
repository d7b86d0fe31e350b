//! Pre-norm residual sub-layers: attention and feed-forward, and the width settings they share.

use burn::config::Config;
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};
use miga_kernels::nn::{Dropout, DropoutConfig, LayerNorm, Linear};

use super::attention::{MaskedAttention, MaskedAttentionConfig};
use super::norm::norm_layer;

/// Widths shared by every transformer layer of a fusion module.
#[derive(Config, Debug)]
pub struct LayerConfig {
    /// Token width.
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// Hidden width of the feed-forward.
    pub ff_dim: usize,
    /// Dropout on each residual branch and inside the feed-forward.
    pub dropout: f64,
}

impl LayerConfig {
    /// A pre-norm attention sub-layer; `cross` adds a norm for the context sequence.
    pub fn attention<B: Backend>(&self, cross: bool, device: &B::Device) -> AttentionSublayer<B> {
        AttentionSublayer {
            norm: norm_layer(self.d_model, device),
            context_norm: cross.then(|| norm_layer(self.d_model, device)),
            attention: MaskedAttentionConfig::new(self.d_model, self.heads).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }

    /// A pre-norm feed-forward sub-layer (Linear, exact GELU, Linear).
    pub fn feed_forward<B: Backend>(&self, device: &B::Device) -> FeedForwardSublayer<B> {
        FeedForwardSublayer {
            norm: norm_layer(self.d_model, device),
            fc1: LinearConfig::new(self.d_model, self.ff_dim)
                .init(device)
                .into(),
            fc2: LinearConfig::new(self.ff_dim, self.d_model)
                .init(device)
                .into(),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

/// `x + Dropout(Attention(LN(x), LN'(context)))`: self-attention when there is no context
/// norm (the context is `x` itself), cross-attention otherwise.
#[derive(Module, Debug)]
pub struct AttentionSublayer<B: Backend> {
    /// Norm of the queries (and of the keys in self-attention).
    pub norm: LayerNorm<B>,
    /// Norm of the context sequence (cross-attention only).
    pub context_norm: Option<LayerNorm<B>>,
    /// The attention.
    pub attention: MaskedAttention<B>,
    dropout: Dropout,
}

impl<B: Backend> AttentionSublayer<B> {
    /// Attention from `x` `[B, N, D]` to `context` `[B, M, D]` (cross-attention; the sub-layer
    /// must have a context norm) or to `x` itself (`None`); `padding` masks the keys.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        context: Option<Tensor<B, 3>>,
        padding: Option<Tensor<B, 2, Bool>>,
        weights: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let normed = self.norm.forward(x.clone());
        let context = match (context, &self.context_norm) {
            (Some(context), Some(context_norm)) => context_norm.forward(context),
            (None, None) => normed.clone(),
            _ => panic!(
                "cross-attention takes a context and has a context norm; self-attention neither"
            ),
        };
        let (out, w) = self.attention.forward(normed, context, padding, weights);
        (x + self.dropout.forward(out), w)
    }
}

/// `x + Dropout(fc2(Dropout(GELU(fc1(LN(x))))))`.
#[derive(Module, Debug)]
pub struct FeedForwardSublayer<B: Backend> {
    /// Pre-norm.
    pub norm: LayerNorm<B>,
    /// Expansion.
    pub fc1: Linear<B>,
    /// Projection back to the token width.
    pub fc2: Linear<B>,
    dropout: Dropout,
}

impl<B: Backend> FeedForwardSublayer<B> {
    /// Applies the sub-layer to `[B, N, D]` tokens.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = miga_kernels::gelu(self.fc1.forward(self.norm.forward(x.clone())));
        let h = self.fc2.forward(self.dropout.forward(h));
        x + self.dropout.forward(h)
    }
}
