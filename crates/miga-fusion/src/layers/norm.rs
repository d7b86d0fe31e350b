//! Layer normalisation as the fusion modules apply it.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The epsilon of every layer norm in the fusion modules: Burn's `LayerNormConfig` default and
/// PyTorch's `nn.LayerNorm` default.
pub const NORM_EPSILON: f64 = 1e-5;

/// A layer norm over `width` channels with [`NORM_EPSILON`]: every norm of the fusion modules.
pub fn norm_layer<B: Backend>(width: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(width)
        .with_epsilon(NORM_EPSILON)
        .init(device)
}

/// `norm.forward(x)` for a norm from [`norm_layer`], through [`miga_kernels::layer_norm`] (one
/// graph node with a vectorised backward pass when training on the CPU).
pub fn norm<B: Backend, const D: usize>(norm: &LayerNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    miga_kernels::layer_norm(
        x,
        norm.gamma.val(),
        norm.beta.as_ref().map(|beta| beta.val()),
        NORM_EPSILON,
    )
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    #[test]
    fn matches_the_layer_norm_module() {
        let device = Default::default();
        // Rows of tiny variance, where epsilon matters.
        let x = Tensor::<Flex, 3>::random([2, 5, 8], Distribution::Normal(0.0, 1e-3), &device);
        let layer = norm_layer::<Flex>(8, &device);
        norm(&layer, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&layer.forward(x).into_data(), Tolerance::absolute(1e-6));
    }
}
