//! The building blocks of 2s-AGCN: the adaptive graph convolution (`unit_gcn`), the temporal
//! convolution (`unit_tcn`) and the unit that chains them with a residual (`TCN_GCN_unit`).
//! Field names follow the reference so that its state_dict keys map one to one.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::kernels::{matmul, time_taps};

/// Configuration of the adaptive graph convolution `unit_gcn`.
#[derive(Config, Debug)]
pub struct UnitGcnConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Embedding reduction of `conv_a` / `conv_b` (inter channels = out / this).
    #[config(default = 4)]
    pub coff_embedding: usize,
}

/// The adaptive graph convolution: for each of the three partitions, the fixed graph `A`,
/// the learned offset `PA` and a data-dependent attention between joints.
#[derive(Module, Debug)]
pub struct UnitGcn<B: Backend> {
    /// Fixed adjacency `[3, V, V]`: a constant, not a parameter, not in checkpoints.
    pub a: Tensor<B, 3>,
    /// Learned adjacency offset `[3, V, V]` (the reference's `PA`).
    pub pa: Param<Tensor<B, 3>>,
    /// Query embeddings, one per partition.
    pub conv_a: Vec<Conv2d<B>>,
    /// Key embeddings, one per partition.
    pub conv_b: Vec<Conv2d<B>>,
    /// Output projections, one per partition.
    pub conv_d: Vec<Conv2d<B>>,
    /// Projection of the input when the channel count changes (the reference's `down`).
    pub down: Option<ConvBn<B>>,
    /// Output norm.
    pub bn: BatchNorm<B>,
    inter_channels: usize,
}

/// A 1x1 convolution followed by batch norm (the reference's `down` Sequential).
#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    /// The convolution (`down.0`).
    pub conv: Conv2d<B>,
    /// The norm (`down.1`).
    pub bn: BatchNorm<B>,
}

impl UnitGcnConfig {
    /// Builds the unit on `adjacency` (`[3, V, V]`, row-major, from [`super::Graph::adjacency`])
    /// with the reference's initialisation.
    pub fn init<B: Backend>(
        &self,
        adjacency: &[f32],
        num_nodes: usize,
        device: &B::Device,
    ) -> UnitGcn<B> {
        let subsets = adjacency.len() / (num_nodes * num_nodes);
        let inter = self.out_channels / self.coff_embedding;
        let a = Tensor::from_data(
            TensorData::new(adjacency.to_vec(), [subsets, num_nodes, num_nodes]),
            device,
        );
        let pa = Param::from_tensor(Tensor::full([subsets, num_nodes, num_nodes], 1e-6, device));
        let conv = |out: usize, init: Initializer| {
            Conv2dConfig::new([self.in_channels, out], [1, 1])
                .with_initializer(init)
                .init(device)
        };
        let branch_std = (2.0 / (self.out_channels * self.in_channels * subsets) as f64).sqrt();
        let conv_d = (0..subsets)
            .map(|_| {
                conv(
                    self.out_channels,
                    Initializer::Normal {
                        mean: 0.0,
                        std: branch_std,
                    },
                )
            })
            .collect();
        let down = (self.in_channels != self.out_channels).then(|| ConvBn {
            conv: conv(self.out_channels, kaiming_fan_out()),
            bn: BatchNormConfig::new(self.out_channels).init(device),
        });
        UnitGcn {
            a,
            pa,
            conv_a: (0..subsets)
                .map(|_| conv(inter, kaiming_fan_out()))
                .collect(),
            conv_b: (0..subsets)
                .map(|_| conv(inter, kaiming_fan_out()))
                .collect(),
            conv_d,
            down,
            bn: batch_norm_scaled(self.out_channels, 1e-6, device),
            inter_channels: inter,
        }
    }
}

impl<B: Backend> UnitGcn<B> {
    /// `[N, C, T, V]` to `[N, out, T, V]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, t, v] = x.dims();
        let (subsets, inter) = (self.conv_a.len(), self.inter_channels);
        let adjacency = (self.a.clone() + self.pa.val()).unsqueeze::<4>();
        // Every partition at once, each a batch entry: conv_a's and conv_b's embeddings as one
        // product each (`[N, subsets, inter * T, V]`, channel-major rows).
        let embed = |convs: &[Conv2d<B>]| {
            let convs: Vec<_> = convs.iter().collect();
            project(
                Tensor::cat(convs.iter().map(|conv| weight_rows(conv)).collect(), 0),
                Some(Tensor::cat(biases(&convs), 0)),
                x.clone().reshape([n, c, t * v]),
            )
            .reshape([n, subsets, inter * t, v])
        };
        let (a1, a2) = (embed(&self.conv_a), embed(&self.conv_b));
        // [N, s, V, inter*T] x [N, s, inter*T, V] -> [N, s, V, V], softmax over the first V.
        let scale = (inter * t) as f64;
        let attention = softmax(matmul(a1.swap_dims(2, 3), a2) / scale, 2) + adjacency;
        // The input mixed over the joints by each partition's graph: [N, s, C * T, V], as rows
        // `[N, s * C, T * V]` of the partitions stacked under each other.
        let mixed =
            matmul(x.clone().reshape([n, 1, c * t, v]), attention).reshape([n, subsets * c, t * v]);
        // Every partition's conv_d as one product over the stacked partitions, biases summed;
        // at inference with the output BN folded in.
        let conv_d: Vec<_> = self.conv_d.iter().collect();
        let weight = Tensor::cat(conv_d.iter().map(|conv| weight_rows(conv)).collect(), 1);
        let bias = biases(&conv_d).into_iter().reduce(|a, b| a + b);
        let out = weight.dims()[0];
        let y = match folded_norm(&self.bn, &x.device()) {
            Some((scale, shift)) => {
                let (weight, bias) = affine_rows(weight, bias, scale, shift);
                project(weight, bias, mixed)
            }
            None => crate::layers::batch_norm(&self.bn, project(weight, bias, mixed)),
        };
        let y = y.reshape([n, out, t, v]);
        let residual = match &self.down {
            Some(down) => conv_bn(&down.conv, &down.bn, x),
            None => x,
        };
        relu(y + residual)
    }
}

/// A convolution's weight `[out, C, kh, kw]` as rows `[out, C * kh * kw]`.
fn weight_rows<B: Backend>(conv: &Conv2d<B>) -> Tensor<B, 2> {
    let [out, c, kh, kw] = conv.weight.dims();
    conv.weight.val().reshape([out, c * kh * kw])
}

/// The convolutions' biases (zeros for one without), to be stacked when their outputs are
/// and summed when their outputs are added.
fn biases<B: Backend>(convs: &[&Conv2d<B>]) -> Vec<Tensor<B, 1>> {
    convs
        .iter()
        .map(|conv| match &conv.bias {
            Some(bias) => bias.val(),
            None => Tensor::zeros([conv.weight.dims()[0]], &conv.weight.device()),
        })
        .collect()
}

/// The product of `weight` `[out, K]` with `columns` `[N, K, L]`, `bias` added to each output
/// row: `[N, out, L]`.
fn project<B: Backend>(
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    columns: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let [n, _, l] = columns.dims();
    let out = weight.dims()[0];
    let y = matmul(weight.unsqueeze::<3>(), columns);
    match bias {
        Some(bias) => {
            let bias = crate::layers::channel_rows(bias.reshape([1, out]), n);
            (y.reshape([n * out, l]) + bias).reshape([n, out, l])
        }
        None => y,
    }
}

/// Configuration of the temporal convolution `unit_tcn`: a `(k, 1)` convolution and batch norm.
#[derive(Config, Debug)]
pub struct UnitTcnConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Temporal kernel size.
    #[config(default = 9)]
    pub kernel_size: usize,
    /// Temporal stride.
    #[config(default = 1)]
    pub stride: usize,
}

/// Temporal convolution over frames, joint by joint.
#[derive(Module, Debug)]
pub struct UnitTcn<B: Backend> {
    /// `(k, 1)` convolution with padding `(k - 1) / 2` on time.
    pub conv: Conv2d<B>,
    /// Norm.
    pub bn: BatchNorm<B>,
}

impl UnitTcnConfig {
    /// Builds the unit with the reference's initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> UnitTcn<B> {
        let pad = (self.kernel_size - 1) / 2;
        let conv = Conv2dConfig::new([self.in_channels, self.out_channels], [self.kernel_size, 1])
            .with_stride([self.stride, 1])
            .with_padding(PaddingConfig2d::Explicit(pad, 0, pad, 0))
            .with_initializer(kaiming_fan_out())
            .init(device);
        UnitTcn {
            conv,
            bn: BatchNormConfig::new(self.out_channels).init(device),
        }
    }
}

impl<B: Backend> UnitTcn<B> {
    /// `[N, C, T, V]` to `[N, out, T / stride, V]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv_bn(&self.conv, &self.bn, x)
    }
}

/// Configuration of one `TCN_GCN_unit`.
#[derive(Config, Debug)]
pub struct TcnGcnUnitConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Temporal stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Whether the unit has a residual connection (the first unit has none).
    #[config(default = true)]
    pub residual: bool,
    /// Temporal kernel size.
    #[config(default = 9)]
    pub temporal_kernel: usize,
    /// Embedding reduction of the graph attention.
    #[config(default = 4)]
    pub coff_embedding: usize,
}

/// Graph convolution, temporal convolution and a residual, then ReLU.
#[derive(Module, Debug)]
pub struct TcnGcnUnit<B: Backend> {
    /// Spatial part.
    pub gcn1: UnitGcn<B>,
    /// Temporal part.
    pub tcn1: UnitTcn<B>,
    /// Projected residual when the shape changes.
    pub residual: Option<UnitTcn<B>>,
    /// Whether the input is added back unchanged (same shape) when `residual` is `None`.
    identity_residual: bool,
}

impl TcnGcnUnitConfig {
    /// Builds the unit on `adjacency` (`[3, V, V]`).
    pub fn init<B: Backend>(
        &self,
        adjacency: &[f32],
        num_nodes: usize,
        device: &B::Device,
    ) -> TcnGcnUnit<B> {
        let same_shape = self.in_channels == self.out_channels && self.stride == 1;
        let residual = (self.residual && !same_shape).then(|| {
            UnitTcnConfig::new(self.in_channels, self.out_channels)
                .with_kernel_size(1)
                .with_stride(self.stride)
                .init(device)
        });
        TcnGcnUnit {
            gcn1: UnitGcnConfig::new(self.in_channels, self.out_channels)
                .with_coff_embedding(self.coff_embedding)
                .init(adjacency, num_nodes, device),
            tcn1: UnitTcnConfig::new(self.out_channels, self.out_channels)
                .with_kernel_size(self.temporal_kernel)
                .with_stride(self.stride)
                .init(device),
            residual,
            identity_residual: self.residual && same_shape,
        }
    }
}

impl<B: Backend> TcnGcnUnit<B> {
    /// `[N, C, T, V]` to `[N, out, T / stride, V]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = self.tcn1.forward(self.gcn1.forward(x.clone()));
        let y = match (&self.residual, self.identity_residual) {
            (Some(residual), _) => y + residual.forward(x),
            (None, true) => y + x,
            (None, false) => y,
        };
        relu(y)
    }
}

/// A convolution followed by batch norm. At inference (a backend without autodiff) the norm
/// is folded into the convolution's weights and bias, which saves a pass over the activations
/// (four broadcast operations, the costliest part of the network on CPU backends); in training
/// it runs as is, with batch statistics.
fn conv_bn<B: Backend>(conv: &Conv2d<B>, bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match folded_norm(bn, &x.device()) {
        Some((scale, shift)) => conv2d(&with_affine(conv, scale, shift), x),
        None => crate::layers::batch_norm(bn, conv2d(conv, x)),
    }
}

/// `conv` on `x`. A `(k, 1)` convolution with `k / 2` padding on time (k odd, any temporal
/// stride: every convolution of the network) runs as one matrix product of the weight as
/// `[out, C * k]` with the k time-shifted copies of `x` stacked under each channel
/// ([`time_taps`]; 1x1 of stride 1: `x` itself), and the bias is added to the rows of the
/// `[N * out, T * V]` view. On the CPU backend this beats Burn's convolution, whose layout changes walk the
/// activations element by element (a fifth of the forward pass), and under autodiff its
/// backward pass transposes no activation either. Other shapes go to Burn's convolution.
fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, _, _, v] = x.dims();
    let [out, _, k, _] = conv.weight.dims();
    let (p, s) = (k / 2, conv.stride[0]);
    if k % 2 == 0
        || conv.kernel_size[1] != 1
        || conv.stride[1] != 1
        || conv.dilation != [1, 1]
        || conv.groups != 1
        || !(conv.padding == PaddingConfig2d::Explicit(p, 0, p, 0)
            || (p == 0 && conv.padding == PaddingConfig2d::Valid))
    {
        return conv.forward(x);
    }
    // Channel-major rows, the order of the weight's own `[out, C, k, 1]` layout.
    let bias = conv.bias.as_ref().map(|b| b.val());
    let y = project(weight_rows(conv), bias, time_taps(x, k, s));
    let frames = y.dims()[2] / v;
    y.reshape([n, out, frames, v])
}

/// Inference batch norm as a per-channel affine map `(scale, shift)`; `None` in training.
fn folded_norm<B: Backend>(
    bn: &BatchNorm<B>,
    device: &B::Device,
) -> Option<(Tensor<B, 1>, Tensor<B, 1>)> {
    if B::ad_enabled(device) {
        return None;
    }
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
    Some((scale, shift))
}

/// `conv` followed by the per-channel affine map `(scale, shift)`.
fn with_affine<B: Backend>(
    conv: &Conv2d<B>,
    scale: Tensor<B, 1>,
    shift: Tensor<B, 1>,
) -> Conv2d<B> {
    let bias = conv.bias.as_ref().map(|b| b.val());
    let (weight, bias) = affine_rows(weight_rows(conv), bias, scale, shift);
    let mut folded = conv.clone();
    folded.weight = Param::from_tensor(weight.reshape(conv.weight.dims()));
    folded.bias = bias.map(Param::from_tensor);
    folded
}

/// Weight rows `[out, K]` and bias of a product followed by the per-channel affine map: each
/// row scaled by `scale` (a per-row broadcast, which the CPU backend vectorises), `shift`
/// added to the scaled bias.
fn affine_rows<B: Backend>(
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    scale: Tensor<B, 1>,
    shift: Tensor<B, 1>,
) -> (Tensor<B, 2>, Option<Tensor<B, 1>>) {
    let out = scale.dims()[0];
    let bias = match bias {
        Some(bias) => bias * scale.clone() + shift,
        None => shift,
    };
    (weight * scale.reshape([out, 1]), Some(bias))
}

/// The reference's `conv_init`: Kaiming normal over fan-out (gain sqrt 2).
fn kaiming_fan_out() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

/// Batch norm whose scale starts at `gamma` (the reference's `bn_init(bn, scale)`).
pub(crate) fn batch_norm_scaled<B: Backend>(
    channels: usize,
    gamma: f64,
    device: &B::Device,
) -> BatchNorm<B> {
    let mut bn = BatchNormConfig::new(channels).init(device);
    bn.gamma = Param::from_tensor(Tensor::full([channels], gamma, device));
    bn
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    use super::*;

    type ConvFn<'a> =
        &'a dyn Fn(&Conv2d<Autodiff<Flex>>, Tensor<Autodiff<Flex>, 4>) -> Tensor<Autodiff<Flex>, 4>;

    /// `conv2d` (one matrix product with the time-shifted copies, bias on rows) gives Burn's
    /// convolution's output and gradients, for 1x1 and 9x1 convolutions of stride 1 and 2, on
    /// an even and an odd number of frames.
    #[test]
    fn training_convolution_matches_burns() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        for (kernel, stride, frames) in [(1, 1, 10), (9, 1, 10), (1, 2, 10), (9, 2, 10), (9, 2, 11)]
        {
            let x = Tensor::<A, 4>::random([2, 6, frames, 5], Distribution::Default, &device);
            let weights = Tensor::<A, 4>::random([2, 4, frames, 5], Distribution::Default, &device);
            let conv = Conv2dConfig::new([6, 4], [kernel, 1])
                .with_stride([stride, 1])
                // 1x1 with Burn's default padding, as the graph convolutions have.
                .with_padding(match kernel {
                    1 => PaddingConfig2d::Valid,
                    k => PaddingConfig2d::Explicit(k / 2, 0, k / 2, 0),
                })
                .init::<A>(&device);
            let (weight, bias) = (
                conv.weight.val().to_data(),
                conv.bias.clone().unwrap().val(),
            );
            let bias = bias.to_data();
            // Each run on its own graph: fresh leaves for the input and the parameters.
            let run = |f: ConvFn| {
                let leaf = |data: &burn::tensor::TensorData| {
                    Tensor::<A, 4>::from_data(data.clone(), &device).require_grad()
                };
                let x = leaf(&x.to_data());
                let mut conv = conv.clone();
                conv.weight = Param::from_tensor(leaf(&weight));
                let b = Tensor::<A, 1>::from_data(bias.clone(), &device).require_grad();
                conv.bias = Some(Param::from_tensor(b.clone()));
                let y = f(&conv, x.clone());
                let w = weights.clone().narrow(2, 0, y.dims()[2]);
                let grads = (y.clone() * w).sum().backward();
                (
                    y.to_data(),
                    x.grad(&grads).unwrap().to_data(),
                    conv.weight.val().grad(&grads).unwrap().to_data(),
                    b.grad(&grads).unwrap().to_data(),
                )
            };
            let ours = run(&|conv, x| conv2d(conv, x));
            let burn = run(&|conv, x| conv.forward(x));
            let tolerance = burn::tensor::Tolerance::<f32>::absolute(1e-4);
            ours.0.assert_approx_eq::<f32>(&burn.0, tolerance);
            ours.1.assert_approx_eq::<f32>(&burn.1, tolerance);
            ours.2.assert_approx_eq::<f32>(&burn.2, tolerance);
            ours.3.assert_approx_eq::<f32>(&burn.3, tolerance);
        }
    }

    /// The graph convolution written as the reference's `unit_gcn.forward`, one partition
    /// at a time with Burn's own operations.
    fn reference_gcn(
        unit: &UnitGcn<Autodiff<Flex>>,
        x: Tensor<Autodiff<Flex>, 4>,
    ) -> Tensor<Autodiff<Flex>, 4> {
        let [n, c, t, v] = x.dims();
        let inter = unit.inter_channels;
        let adjacency = unit.a.clone() + unit.pa.val();
        let y = (0..unit.conv_a.len())
            .map(|i| {
                let a1 = unit.conv_a[i]
                    .forward(x.clone())
                    .permute([0, 3, 1, 2])
                    .reshape([n, v, inter * t]);
                let a2 = unit.conv_b[i].forward(x.clone()).reshape([n, inter * t, v]);
                let attention = softmax(a1.matmul(a2) / (inter * t) as f64, 1)
                    + adjacency.clone().narrow(0, i, 1);
                let mixed = x.clone().reshape([n, c * t, v]).matmul(attention);
                unit.conv_d[i].forward(mixed.reshape([n, c, t, v]))
            })
            .reduce(|y, z| y + z)
            .unwrap();
        let residual = match &unit.down {
            Some(down) => crate::layers::batch_norm(&down.bn, down.conv.forward(x)),
            None => x,
        };
        relu(crate::layers::batch_norm(&unit.bn, y) + residual)
    }

    /// The graph convolution (all partitions batched, its own matrix products) gives the
    /// reference's output and gradients in training, to the input and to the parameters.
    #[test]
    fn training_graph_convolution_matches_the_reference() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let (subsets, v) = (3, 5);
        let adjacency: Vec<f32> = (0..subsets * v * v)
            .map(|i| ((i * 7) % 5) as f32 / 4.0)
            .collect();
        for (c_in, c_out) in [(6, 8), (8, 8)] {
            let mut unit = UnitGcnConfig::new(c_in, c_out).init::<A>(&adjacency, v, &device);
            // The output norm's scale is 1e-6 at initialisation, which would hide the graph
            // convolution behind the residual.
            unit.bn.gamma = Param::from_tensor(Tensor::ones([c_out], &device));
            // Spread wide enough that the attention is far from uniform.
            let x =
                Tensor::<A, 4>::random([2, c_in, 7, v], Distribution::Normal(0.0, 8.0), &device);
            let upstream = Tensor::<A, 4>::random([2, c_out, 7, v], Distribution::Default, &device);
            let run = |f: &dyn Fn(Tensor<A, 4>) -> Tensor<A, 4>| {
                let x = x.clone().require_grad();
                let y = f(x.clone());
                let grads = (y.clone() * upstream.clone()).sum().backward();
                [
                    y.to_data(),
                    x.grad(&grads).unwrap().to_data(),
                    unit.pa.val().grad(&grads).unwrap().to_data(),
                    unit.conv_a[1].weight.val().grad(&grads).unwrap().to_data(),
                    unit.conv_b[2]
                        .bias
                        .as_ref()
                        .unwrap()
                        .val()
                        .grad(&grads)
                        .unwrap()
                        .to_data(),
                    unit.conv_d[0].weight.val().grad(&grads).unwrap().to_data(),
                ]
            };
            let ours = run(&|x| unit.forward(x));
            let reference = run(&|x| reference_gcn(&unit, x));
            for (ours, reference) in ours.iter().zip(&reference) {
                ours.assert_approx_eq::<f32>(
                    reference,
                    burn::tensor::Tolerance::rel_abs(1e-3, 1e-6),
                );
            }
        }
    }
}
