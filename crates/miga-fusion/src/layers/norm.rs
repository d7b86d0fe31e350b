//! Layer normalisation as the fusion modules apply it.

use burn::nn::LayerNorm;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The epsilon of every layer norm in the fusion modules: Burn's `LayerNormConfig` default and
/// PyTorch's `nn.LayerNorm` default.
pub const NORM_EPSILON: f64 = 1e-5;

/// `norm.forward(x)` through [`miga_kernels::layer_norm`] (one graph node with a vectorised
/// backward pass when training on the CPU). `norm` must have been built with
/// [`NORM_EPSILON`], as every norm in this crate is (`LayerNormConfig::new(width)`).
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
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    #[test]
    fn matches_the_default_layer_norm() {
        assert_eq!(LayerNormConfig::new(8).epsilon, NORM_EPSILON);
        let device = Default::default();
        // Rows of tiny variance, where epsilon matters.
        let x = Tensor::<Flex, 3>::random([2, 5, 8], Distribution::Normal(0.0, 1e-3), &device);
        let layer = LayerNormConfig::new(8).init::<Flex>(&device);
        norm(&layer, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&layer.forward(x).into_data(), Tolerance::absolute(1e-6));
    }
}
