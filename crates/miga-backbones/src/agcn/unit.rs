//! The building blocks of 2s-AGCN: the adaptive graph convolution (`unit_gcn`), the temporal
//! convolution (`unit_tcn`) and the unit that chains them with a residual (`TCN_GCN_unit`).
//! Field names follow the reference so that its state_dict keys map one to one.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::BatchNormConfig;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use crate::kernels::nn::{BatchNorm, TemporalConv, TemporalConvConfig};
use crate::kernels::{matmul, project};

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
    /// The 1x1 convolution (`down.0`).
    pub conv: TemporalConv<B>,
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
            conv: TemporalConvConfig::new([self.in_channels, self.out_channels], 1)
                .with_initializer(kaiming_fan_out())
                .init(device),
            bn: BatchNormConfig::new(self.out_channels).init(device).into(),
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
        // [N, s, V, inter*T] x [N, s, inter*T, V] -> [N, s, V, V] / (inter * T), softmax over
        // the first V. In half precision the division comes first: the sum of inter * T
        // products overflows f16's range (65504) at full width.
        let scale = (inter * t) as f64;
        let scores = if a1.dtype() == DType::F32 {
            matmul(a1.swap_dims(2, 3), a2) / scale
        } else {
            matmul((a1 / scale).swap_dims(2, 3), a2)
        };
        let attention = softmax(scores, 2) + adjacency;
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
            None => self.bn.forward(project(weight, bias, mixed)),
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
    pub conv: TemporalConv<B>,
    /// Norm.
    pub bn: BatchNorm<B>,
}

impl UnitTcnConfig {
    /// Builds the unit with the reference's initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> UnitTcn<B> {
        let conv = TemporalConvConfig::new([self.in_channels, self.out_channels], self.kernel_size)
            .with_stride(self.stride)
            .with_initializer(kaiming_fan_out())
            .init(device);
        UnitTcn {
            conv,
            bn: BatchNormConfig::new(self.out_channels).init(device).into(),
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
fn conv_bn<B: Backend>(conv: &TemporalConv<B>, bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match folded_norm(bn, &x.device()) {
        Some((scale, shift)) => with_affine(conv, scale, shift).forward(x),
        None => bn.forward(conv.forward(x)),
    }
}

/// Inference batch norm as a per-channel affine map `(scale, shift)`; `None` in training.
fn folded_norm<B: Backend>(
    bn: &BatchNorm<B>,
    device: &B::Device,
) -> Option<(Tensor<B, 1>, Tensor<B, 1>)> {
    (!B::ad_enabled(device)).then(|| bn.folded())
}

/// `conv` followed by the per-channel affine map `(scale, shift)`.
fn with_affine<B: Backend>(
    conv: &TemporalConv<B>,
    scale: Tensor<B, 1>,
    shift: Tensor<B, 1>,
) -> TemporalConv<B> {
    let dims = conv.weight.dims();
    let rows = conv
        .weight
        .val()
        .reshape([dims[0], dims[1] * dims[2] * dims[3]]);
    let bias = conv.bias.as_ref().map(|b| b.val());
    let (weight, bias) = affine_rows(rows, bias, scale, shift);
    TemporalConv {
        weight: Param::from_tensor(weight.reshape(dims)),
        bias: bias.map(Param::from_tensor),
        stride: conv.stride,
    }
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
    let mut bn: BatchNorm<B> = BatchNormConfig::new(channels).init(device).into();
    bn.gamma = Param::from_tensor(Tensor::full([channels], gamma, device));
    bn
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    use super::*;

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
            Some(down) => down.bn.forward(down.conv.forward(x)),
            None => x,
        };
        relu(unit.bn.forward(y) + residual)
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
