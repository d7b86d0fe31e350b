//! Layers the transformers share: the two-layer MLP, normal-initialised linear layers and
//! stochastic depth.

use burn::module::{Initializer, Module};
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use crate::kernels::nn::{Dropout, DropoutConfig, Linear};

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
            .forward(crate::kernels::gelu(self.fc1.forward(x)));
        self.dropout.forward(self.fc2.forward(x))
    }
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
    layer.into()
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
