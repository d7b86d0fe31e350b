//! Layer normalisation.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Formulation, formulation};

/// Configuration of a [`LayerNorm`], as Burn's `LayerNormConfig`.
#[derive(Config, Debug)]
pub struct LayerNormConfig {
    /// Channels normalised (the last axis).
    pub d_model: usize,
    /// Added to the variance inside the square root (PyTorch's and Burn's default 1e-5;
    /// MViTv2 uses 1e-6).
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Whether the norm has a bias (`beta`).
    #[config(default = true)]
    pub bias: bool,
}

impl LayerNormConfig {
    /// A norm with scale 1 and bias 0, as Burn's and PyTorch's.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LayerNorm<B> {
        LayerNorm {
            gamma: Initializer::Ones.init([self.d_model], device),
            beta: self
                .bias
                .then(|| Initializer::Zeros.init([self.d_model], device)),
            epsilon: self.epsilon,
        }
    }
}

/// Layer normalisation over the last axis with weight `gamma` and bias `beta` (Burn's names;
/// PyTorch's: biased variance, epsilon inside the square root). In training on the CPU one graph
/// node with a vectorised, parallel backward pass (Burn's is a chain of about ten element-wise
/// operations each way); elsewhere the backend's own layer norm.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale `[d_model]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// Bias `[d_model]`, if any.
    pub beta: Option<Param<Tensor<B, 1>>>,
    epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// `[.., d_model]` normalised over the last axis.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.forward_as(formulation::<B>(), x)
    }

    /// [`LayerNorm::forward`] in the given formulation.
    pub fn forward_as<const D: usize>(&self, how: Formulation, x: Tensor<B, D>) -> Tensor<B, D> {
        let (gamma, beta) = (self.gamma.val(), self.beta.as_ref().map(|b| b.val()));
        match how {
            Formulation::Cpu => crate::layer_norm(x, gamma, beta, self.epsilon),
            Formulation::Burn => crate::backend_layer_norm(x, gamma, beta, self.epsilon),
        }
    }

    /// The norm's epsilon.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::nn::{assert_close, assert_cpu_path, reaches_cpu_kernels, values_and_gradients};

    /// Scaled error; at most 1.5e-5 measured (the scale's gradient, Intel Xeon VM, 2026-12-07).
    const TOLERANCE: f32 = 4e-5;

    type Ad = crate::nn::TestBackend;

    /// Both formulations give Burn's module's values and gradients, and its values on rows of
    /// tiny variance (where epsilon matters); training on Flex reaches the CPU kernel.
    #[test]
    fn both_formulations_match_burns_module_and_flex_takes_the_kernel() {
        let device = Default::default();
        for epsilon in [1e-5, 1e-6] {
            let gamma = Tensor::<Ad, 1>::random([33], Distribution::Normal(1.0, 0.5), &device);
            let ours = LayerNormConfig::new(33)
                .with_epsilon(epsilon)
                .init::<Ad>(&device);
            let ours = LayerNorm {
                gamma: Param::from_tensor(gamma.clone()),
                ..ours
            };
            let mut theirs = burn::nn::LayerNormConfig::new(33)
                .with_epsilon(epsilon)
                .init::<Ad>(&device);
            theirs.gamma = Param::from_tensor(gamma);
            let x = Tensor::<Ad, 3>::random([2, 5, 33], Distribution::Normal(3.0, 1.0), &device);
            let gamma = ours.gamma.val();
            let run = |f: &dyn Fn(_) -> _| values_and_gradients(&x, &gamma, f);
            let reference = run(&|x| theirs.forward(x));
            let tiny =
                Tensor::<Ad, 3>::random([2, 5, 33], Distribution::Normal(0.0, 1e-3), &device);
            let tiny_reference = theirs.forward(tiny.clone()).into_data();
            for how in [Formulation::Cpu, Formulation::Burn] {
                for (i, (a, b)) in run(&|x| ours.forward_as(how, x))
                    .iter()
                    .zip(&reference)
                    .enumerate()
                {
                    assert_close(
                        &format!("layer norm output {i} {how:?} eps {epsilon}"),
                        a,
                        b,
                        TOLERANCE,
                    );
                }
                let y = ours.forward_as(how, tiny.clone()).into_data();
                assert_close(
                    &format!("layer norm tiny {how:?} eps {epsilon}"),
                    &y,
                    &tiny_reference,
                    TOLERANCE,
                );
            }
            assert_cpu_path(|| ours.forward(x.clone()));
            assert!(!reaches_cpu_kernels(
                || ours.forward_as(Formulation::Burn, x)
            ));
        }
    }
}
