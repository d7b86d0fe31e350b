//! Layers the transformers share: the two-layer MLP, truncated-normal-style linear layers and
//! stochastic depth.

use burn::module::{Initializer, Module};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, LayerNorm, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// The two-layer MLP of a transformer block (Linear, exact GELU, Dropout, Linear, Dropout),
/// as torchvision's `MLP` and timm's/Swin's `Mlp` define it.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Widening layer (torchvision's `mlp.0`, Swin's `mlp.fc1`).
    pub fc1: Linear<B>,
    /// Narrowing layer (torchvision's `mlp.3`, Swin's `mlp.fc2`).
    pub fc2: Linear<B>,
    dropout: Dropout,
}

impl<B: Backend> Mlp<B> {
    /// An MLP `dim -> hidden -> dim` initialised like the references (normal, std 0.02; zero
    /// bias), with `dropout` after each layer.
    pub(crate) fn new(dim: usize, hidden: usize, dropout: f64, device: &B::Device) -> Self {
        Mlp {
            fc1: init_linear(dim, hidden, true, device),
            fc2: init_linear(hidden, dim, true, device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// `[..., C]` to `[..., C]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let x = self
            .dropout
            .forward(crate::kernels::gelu(crate::kernels::linear(&self.fc1, x)));
        self.dropout.forward(crate::kernels::linear(&self.fc2, x))
    }
}

/// `norm.forward(x)` for a norm built with `epsilon` (Burn's `LayerNorm` keeps its own
/// private), through [`crate::kernels::layer_norm`]: in training on the CPU backend one graph
/// node with a vectorised, parallel backward pass, where Burn's module is a chain of about ten
/// element-wise operations each way, each run on one thread.
pub(crate) fn layer_norm<B: Backend, const D: usize>(
    norm: &LayerNorm<B>,
    epsilon: f64,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    crate::kernels::layer_norm(
        x,
        norm.gamma.val(),
        norm.beta.as_ref().map(|beta| beta.val()),
        epsilon,
    )
}

/// A linear layer initialised as torchvision's MViT and timm's Swin do (normal, std 0.02;
/// zero bias).
pub(crate) fn init_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device);
    layer.bias = layer.bias.map(|b| b.map(|t| t.zeros_like()));
    layer
}

/// Stochastic depth ("row" mode): in training (under autodiff), each sample's branch is
/// dropped with probability `p` and the survivors rescaled by `1 / (1 - p)`; at inference the
/// branch passes unchanged.
pub(crate) fn drop_path<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64) -> Tensor<B, D> {
    if p == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    let keep = 1.0 - p;
    let mut shape = [1; D];
    shape[0] = x.dims()[0];
    // The rescaling on the per-sample mask: one pass over the activations, not two.
    let mask = Tensor::<B, D>::random(shape, Distribution::Bernoulli(keep), &x.device());
    x * (mask / keep)
}

/// Per-channel values `[1, C]` as a column `[N * C, 1]` for the rows of an `[N * C, ...]`
/// view of `[N, C, ...]` activations: a broadcast the CPU backend runs row by row, whose
/// backward pass is a sum along rows.
pub(crate) fn channel_rows<B: Backend>(values: Tensor<B, 2>, n: usize) -> Tensor<B, 2> {
    let c = values.dims()[1];
    values.expand([n, c]).reshape([n * c, 1])
}

/// Batch norm of `[N, C, ...]` activations. At inference (no autodiff) Burn's `BatchNorm` with
/// the running statistics. In training [`crate::kernels::batch_norm_train`] with the batch
/// statistics (one graph node on the CPU backend; Burn's own training path swaps the batch and
/// channel axes twice, copies the CPU backend makes one element at a time); the running
/// statistics move by `momentum` towards the batch mean and the unbiased batch variance, as
/// PyTorch's `BatchNorm` does.
pub(crate) fn batch_norm<B: Backend, const D: usize>(
    bn: &BatchNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let device = x.device();
    if !B::ad_enabled(&device) {
        return bn.forward(x);
    }
    let dims = x.dims();
    let count: usize = dims[2..].iter().product::<usize>() * dims[0];
    let (y, mean, var) =
        crate::kernels::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    let unbiased = count as f64 / count.saturating_sub(1).max(1) as f64;
    let moved = |running: Tensor<B, 1>, batch: Tensor<B, 1>, factor: f64| {
        running.to_device(&device).mul_scalar(1.0 - bn.momentum)
            + batch.to_device(&device).mul_scalar(bn.momentum * factor)
    };
    bn.running_mean
        .update(moved(bn.running_mean.value_sync(), mean, 1.0).detach());
    bn.running_var
        .update(moved(bn.running_var.value_sync(), var, unbiased).detach());
    y
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::nn::BatchNormConfig;
    use burn::tensor::TensorData;

    use super::*;

    /// The training path against the definition: normalised by the biased batch statistics,
    /// running statistics moved towards the mean and the unbiased variance; the same
    /// gradients as Burn's own batch norm.
    #[test]
    fn batch_norm_in_training_matches_the_definition_and_burns_gradients() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let values: Vec<f32> = (0..2 * 3 * 4 * 5)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3)
            .collect();
        let input = || {
            Tensor::<A, 4>::from_data(TensorData::new(values.clone(), [2, 3, 4, 5]), &device)
                .require_grad()
        };
        let mut bn = BatchNormConfig::new(3).init::<A>(&device);
        bn.gamma = bn.gamma.map(|g| g * 1.5);
        bn.beta = bn.beta.map(|b| b + 0.25);
        let reference = BatchNormConfig::new(3).init::<A>(&device);
        let reference = BatchNorm {
            gamma: bn.gamma.clone(),
            beta: bn.beta.clone(),
            ..reference
        };
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
        let (y_ref, g_ref) = run(&|x| reference.forward(x));
        let (y, g) = run(&|x| batch_norm(&bn, x));
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
            "{running:?}"
        );
        let running: Vec<f32> = bn.running_var.value_sync().to_data().to_vec().unwrap();
        assert!(
            (f64::from(running[0]) - (0.9 + 0.1 * var)).abs() < 1e-5,
            "{running:?}"
        );
    }
}
