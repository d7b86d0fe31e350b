//! Layer normalisation as the fusion modules apply it.

use burn::tensor::backend::Backend;
use miga_kernels::nn::{LayerNorm, LayerNormConfig};

/// The epsilon of every layer norm in the fusion modules: Burn's `LayerNormConfig` default and
/// PyTorch's `nn.LayerNorm` default.
pub const NORM_EPSILON: f64 = 1e-5;

/// A layer norm over `width` channels with [`NORM_EPSILON`]: every norm of the fusion modules.
pub fn norm_layer<B: Backend>(width: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(width)
        .with_epsilon(NORM_EPSILON)
        .init(device)
}
