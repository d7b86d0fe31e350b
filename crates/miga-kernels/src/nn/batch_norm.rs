//! Batch normalisation.

use burn::module::{Module, Param, RunningState};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Formulation, formulation};

/// Batch normalisation of `[N, C, ..]` activations, as Burn's `nn::BatchNorm` with the same
/// parameters and PyTorch's semantics: at inference (a backend without autodiff) the running
/// statistics, Burn's formula; in training the batch's own statistics (the mean and biased
/// variance of each channel), the running statistics moved by `momentum` towards the batch mean
/// and the *unbiased* batch variance. In training on the CPU one graph node (statistics in one
/// pass, output in one more, a backward pass of two); elsewhere Burn's operations on the
/// `[N * C, L]` rows, which copy no transposed activation.
///
/// ```
/// use burn::backend::Flex;
/// use burn::nn::BatchNormConfig;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let norm: miga_kernels::nn::BatchNorm<Flex> = BatchNormConfig::new(3).init(&device).into();
/// assert_eq!(norm.forward(Tensor::<Flex, 3>::ones([2, 3, 4], &device)).dims(), [2, 3, 4]);
/// ```
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    /// Scale `[C]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift `[C]`.
    pub beta: Param<Tensor<B, 1>>,
    /// Running mean `[C]`.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running (unbiased) variance `[C]`.
    pub running_var: RunningState<Tensor<B, 1>>,
    /// How far a training batch moves the running statistics.
    pub momentum: f64,
    /// Added to the variance inside the square root.
    pub epsilon: f64,
}

impl<B: Backend> From<burn::nn::BatchNorm<B>> for BatchNorm<B> {
    fn from(bn: burn::nn::BatchNorm<B>) -> Self {
        BatchNorm {
            gamma: bn.gamma,
            beta: bn.beta,
            running_mean: bn.running_mean,
            running_var: bn.running_var,
            momentum: bn.momentum,
            epsilon: bn.epsilon,
        }
    }
}

impl<B: Backend> BatchNorm<B> {
    /// `[N, C, ..]` normalised per channel.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.forward_as(formulation::<B>(), x)
    }

    /// [`BatchNorm::forward`] in the given formulation.
    pub fn forward_as<const D: usize>(&self, how: Formulation, x: Tensor<B, D>) -> Tensor<B, D> {
        let device = x.device();
        if !B::ad_enabled(&device) {
            return self.as_burn().forward(x);
        }
        let dims = x.dims();
        let count: usize = dims[2..].iter().product::<usize>() * dims[0];
        let (gamma, beta) = (self.gamma.val(), self.beta.val());
        let (y, mean, var) = match how {
            Formulation::Cpu => crate::batch_norm_train(x, gamma, beta, self.epsilon),
            Formulation::Burn => crate::batch_norm_by_rows(x, gamma, beta, self.epsilon),
        };
        let unbiased = count as f64 / count.saturating_sub(1).max(1) as f64;
        let moved = |running: Tensor<B, 1>, batch: Tensor<B, 1>, factor: f64| {
            running.to_device(&device).mul_scalar(1.0 - self.momentum)
                + batch.to_device(&device).mul_scalar(self.momentum * factor)
        };
        self.running_mean
            .update(moved(self.running_mean.value_sync(), mean, 1.0).detach());
        self.running_var
            .update(moved(self.running_var.value_sync(), var, unbiased).detach());
        y
    }

    /// The same norm as Burn's module (sharing the parameters and running statistics).
    fn as_burn(&self) -> burn::nn::BatchNorm<B> {
        burn::nn::BatchNorm {
            gamma: self.gamma.clone(),
            beta: self.beta.clone(),
            running_mean: self.running_mean.clone(),
            running_var: self.running_var.clone(),
            momentum: self.momentum,
            epsilon: self.epsilon,
        }
    }

    /// Inference as a per-channel affine map `(scale, shift)`: `y = x * scale + shift`.
    pub fn folded(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let scale = self.gamma.val() / (self.running_var.value() + self.epsilon).sqrt();
        let shift = self.beta.val() - self.running_mean.value() * scale.clone();
        (scale, shift)
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::nn::BatchNormConfig;
    use burn::tensor::TensorData;

    use super::*;
    use crate::nn::{assert_cpu_path, reaches_cpu_kernels};

    type A = crate::nn::TestBackend;

    /// Both formulations in training against the definition: normalised by the biased batch
    /// statistics, running statistics moved towards the mean and the unbiased variance; the
    /// same gradients as Burn's own batch norm. Training on Flex reaches the CPU kernel.
    #[test]
    fn training_matches_the_definition_and_burns_gradients() {
        let device = Default::default();
        let values: Vec<f32> = (0..2 * 3 * 4 * 5)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3)
            .collect();
        let input = || {
            Tensor::<A, 4>::from_data(TensorData::new(values.clone(), [2, 3, 4, 5]), &device)
                .require_grad()
        };
        let mut reference = BatchNormConfig::new(3).init::<A>(&device);
        reference.gamma = reference.gamma.map(|g| g * 1.5);
        reference.beta = reference.beta.map(|b| b + 0.25);
        let weights = Tensor::<A, 4>::from_data(
            TensorData::new(
                (0..120).map(|i| (i % 7) as f32).collect::<Vec<_>>(),
                [2, 3, 4, 5],
            ),
            &device,
        );
        // Output and input gradient of one norm, each graph built and run on its own.
        let run = |norm: &dyn Fn(Tensor<A, 4>) -> Tensor<A, 4>| {
            let x = input();
            let y = norm(x.clone());
            let grads = (y.clone() * weights.clone()).sum().backward();
            (y.to_data(), x.grad(&grads).unwrap().to_data())
        };
        let (y_ref, g_ref) = run(&|x| reference.clone().forward(x));
        for how in [Formulation::Cpu, Formulation::Burn] {
            let bn = BatchNorm::from(BatchNormConfig::new(3).init::<A>(&device));
            let bn = BatchNorm {
                gamma: reference.gamma.clone(),
                beta: reference.beta.clone(),
                ..bn
            };
            let (y, g) = run(&|x| bn.forward_as(how, x));
            y.assert_approx_eq::<f32>(&y_ref, Default::default());
            g.assert_approx_eq::<f32>(&g_ref, Default::default());
            // Running statistics: channel 0's 40 values.
            let channel: Vec<f64> = (0..2)
                .flat_map(|b| values[b * 60..b * 60 + 20].iter().map(|&v| f64::from(v)))
                .collect();
            let mean = channel.iter().sum::<f64>() / 40.0;
            let var = channel.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 39.0;
            let running: Vec<f32> = bn.running_mean.value_sync().to_data().to_vec().unwrap();
            assert!(
                (f64::from(running[0]) - 0.1 * mean).abs() < 1e-5,
                "{how:?}: {running:?}"
            );
            let running: Vec<f32> = bn.running_var.value_sync().to_data().to_vec().unwrap();
            assert!(
                (f64::from(running[0]) - (0.9 + 0.1 * var)).abs() < 1e-5,
                "{how:?}: {running:?}"
            );
            if how == Formulation::Cpu {
                assert_cpu_path(|| bn.forward(input()));
            } else {
                assert!(!reaches_cpu_kernels(|| bn.forward_as(how, input())));
            }
        }
        // Inference: Burn's module with the running statistics.
        let (bn, x) = (BatchNorm::from(reference.clone()), input().inner());
        let theirs = burn::module::AutodiffModule::valid(&reference).forward(x.clone());
        burn::module::AutodiffModule::valid(&bn)
            .forward(x)
            .into_data()
            .assert_approx_eq::<f32>(&theirs.into_data(), Default::default());
    }
}
