//! The linear layer.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Formulation, formulation};

/// `y = x W + b` over the last axis, as Burn's `nn::Linear` with the same parameters (`weight`
/// `[in, out]`, `bias` `[out]`): on the CPU one product written once with the bias in place and,
/// under autodiff, one graph node whose weight gradient is one product over all rows; elsewhere
/// Burn's linear on the rows flattened to `[rows, in]` (one `[in, out]` weight gradient, where a
/// `[B, .., in]` input would make a `[B, in, out]` batch of them).
///
/// Built from Burn's layer, which keeps its initialisers:
///
/// ```
/// use burn::backend::Flex;
/// use burn::nn::LinearConfig;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let layer: miga_kernels::nn::Linear<Flex> = LinearConfig::new(4, 3).init(&device).into();
/// assert_eq!(layer.forward(Tensor::<Flex, 3>::ones([2, 5, 4], &device)).dims(), [2, 5, 3]);
/// ```
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[in, out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out]`, if the layer has a bias.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> From<burn::nn::Linear<B>> for Linear<B> {
    fn from(layer: burn::nn::Linear<B>) -> Self {
        Linear {
            weight: layer.weight,
            bias: layer.bias,
        }
    }
}

impl<B: Backend> Linear<B> {
    /// `[.., in]` to `[.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.forward_as(formulation::<B>(), x)
    }

    /// [`Linear::forward`] in the given formulation.
    pub fn forward_as<const D: usize>(&self, how: Formulation, x: Tensor<B, D>) -> Tensor<B, D> {
        let (weight, bias) = (self.weight.val(), self.bias.as_ref().map(|b| b.val()));
        match how {
            Formulation::Cpu => crate::linear(&weight, bias.as_ref(), x),
            Formulation::Burn => crate::linear_on_rows(&weight, bias.as_ref(), x),
        }
    }

    /// Input and output widths.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.dims()
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::module::AutodiffModule;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::nn::{assert_cpu_path, reaches_cpu_kernels};

    type Ad = crate::nn::TestBackend;

    #[test]
    fn the_cpu_formulation_reaches_the_kernels_on_flex() {
        let device = Default::default();
        let layer: Linear<Ad> = burn::nn::LinearConfig::new(4, 3).init(&device).into();
        let x = Tensor::<Ad, 3>::ones([2, 5, 4], &device);
        assert_cpu_path(|| layer.forward(x.clone()));
        assert_cpu_path(|| layer.valid().forward(x.clone().inner()));
        assert!(!reaches_cpu_kernels(
            || layer.forward_as(Formulation::Burn, x)
        ));
    }

    #[test]
    fn linear_values_and_gradients_match_burns() {
        use burn::nn::LinearConfig;
        let device = Default::default();
        // With and without a bias; a strided input; one large enough for a threaded product.
        for (bias, [b, n, d_in, d_out]) in [
            (true, [3, 7, 5, 4]),
            (false, [2, 9, 6, 3]),
            (true, [4, 300, 96, 384]),
        ] {
            let layer = LinearConfig::new(d_in, d_out)
                .with_bias(bias)
                .init::<Ad>(&device);
            // Both layers on the same parameter tensors (so that their gradients are found).
            let ours = Linear {
                weight: Param::from_tensor(layer.weight.val()),
                bias: layer.bias.as_ref().map(|b| Param::from_tensor(b.val())),
            };
            let x = Tensor::<Ad, 3>::random([b, d_in, n], Distribution::Normal(0.0, 1.0), &device)
                .swap_dims(1, 2);
            let upstream =
                Tensor::<Ad, 3>::random([b, n, d_out], Distribution::Normal(0.0, 1.0), &device);
            let run = |f: &dyn Fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>| {
                let x = x.clone().require_grad();
                let y = f(x.clone());
                let grads = (y.clone() * upstream.clone()).sum().backward();
                let bias = layer
                    .bias
                    .as_ref()
                    .map(|b| b.val().grad(&grads).unwrap().into_data());
                (
                    [
                        y.into_data(),
                        x.grad(&grads).unwrap().into_data(),
                        layer.weight.val().grad(&grads).unwrap().into_data(),
                    ],
                    bias,
                )
            };
            let theirs = run(&|x| layer.forward(x));
            let tolerance = Tolerance::rel_abs(1e-4, 1e-4);
            // The Flex kernel, and the flattened rows other backends get.
            for ours in [
                run(&|x| ours.forward_as(Formulation::Cpu, x)),
                run(&|x| ours.forward_as(Formulation::Burn, x)),
            ] {
                for (a, b) in ours.0.iter().zip(&theirs.0) {
                    assert_eq!(a.shape, b.shape);
                    a.assert_approx_eq::<f32>(b, tolerance);
                }
                assert_eq!(ours.1.is_some(), bias);
                if let (Some(a), Some(b)) = (ours.1, &theirs.1) {
                    a.assert_approx_eq::<f32>(b, tolerance);
                }
            }
            // On Flex alone, and a rank-2 input: the same values.
            let (plain, theirs) = (ours.valid(), layer.valid());
            let x = x.inner();
            plain
                .forward(x.clone())
                .into_data()
                .assert_approx_eq::<f32>(&theirs.forward(x.clone()).into_data(), tolerance);
            let x = x.reshape([b * n, d_in]);
            plain
                .forward(x.clone())
                .into_data()
                .assert_approx_eq::<f32>(&theirs.forward(x).into_data(), tolerance);
        }
    }
}
