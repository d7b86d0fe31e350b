//! Fusion modules of miga, generic over the backend and independent of the backbones (they
//! take token tensors):
//!
//! - [`Cmtf`], Cross-Modal Token Fusion: video tokens (MViTv2) and skeleton tokens (2s-AGCN)
//!   to one of the 32 micro-gesture classes;
//! - [`InterFusion`]: face (SwinFace) and context (MViTv2) sequences of a whole video to
//!   Win/Lose.
//!
//! Both are built from the pre-norm transformer pieces in [`layers`] and trained with
//! [`ClassificationLoss`]. Each variant of a module is a module type of its own
//! ([`CmtfLayers`], [`InterFusionStreams`]); [`PyTorchNames`] spells the parameters as the
//! PyTorch twins and exports do. The paper does not publish their internals: the choices made here
//! are documented in docs/models/fusion.md and each is a config field.

mod check;
mod cmtf;
mod error;
mod interfusion;
pub mod layers;
mod loss;
mod names;
#[cfg(test)]
mod testing;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub use cmtf::{
    Cmtf, CmtfConfig, CmtfInput, CmtfLayers, CmtfOutput, CmtfVariant, CrossLayers, JointLayers,
    SkeletonTokens, VideoTokens,
};
pub use error::{Error, Result};
pub use interfusion::{
    BranchClassifier, GatedFusion, InterFusion, InterFusionConfig, InterFusionInput,
    InterFusionOutput, InterFusionStreams, InterFusionVariant, LateFusion, Sequence,
    SequenceBranch, SingleStream,
};
pub use loss::{ClassificationLoss, ClassificationLossConfig};
pub use names::PyTorchNames;

/// One attention map of a fusion module, from `forward_with_attention`.
#[derive(Debug, Clone)]
pub struct AttentionMap<B: Backend> {
    /// Layer index within its stage.
    pub layer: usize,
    /// Which attention (`video self`, `video->skeleton`, `face->context`, ...): the first
    /// stream queries, the second gives keys.
    pub name: &'static str,
    /// Weights `[B, heads, queries, keys]`; rows sum to 1 (0 for a query with no valid key).
    pub weights: Tensor<B, 4>,
}

/// Checks the widths every fusion config shares.
fn validate_widths(
    module: &'static str,
    d_model: usize,
    heads: usize,
    ff_dim: usize,
    dropout: f64,
) -> Result<()> {
    let reason = if d_model == 0 || heads == 0 || ff_dim == 0 {
        "d_model, heads and ff_dim must be at least 1".to_string()
    } else if !d_model.is_multiple_of(heads) {
        format!("d_model {d_model} is not a multiple of {heads} heads")
    } else if !d_model.is_multiple_of(2) {
        format!("d_model {d_model} is odd; the clock code needs an even width")
    } else if !(0.0..1.0).contains(&dropout) {
        format!("dropout {dropout} is outside [0, 1)")
    } else {
        return Ok(());
    };
    Err(Error::InvalidConfig { module, reason })
}

/// Floating-point operations of one attention sub-layer: query and output projections over
/// `nq` tokens, key and value projections over `nk`, scores and mixing (a multiply-add is 2).
fn attention_flops(nq: usize, nk: usize, d: usize) -> u64 {
    (4 * nq * d * d + 4 * nk * d * d + 4 * nq * nk * d) as u64
}

/// Floating-point operations of one feed-forward sub-layer over `n` tokens.
fn feed_forward_flops(n: usize, d: usize, ff: usize) -> u64 {
    (4 * n * d * ff) as u64
}
