//! The depthwise 3D convolution of MViTv2's attention pooling.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::PaddingConfig3d;
use burn::nn::conv::Conv3dConfig;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Formulation, formulation};

/// Configuration of a [`DepthwiseConv3d`].
#[derive(Config, Debug)]
pub struct DepthwiseConv3dConfig {
    /// Channels, each filtered on its own.
    pub channels: usize,
    /// Kernel `[kt, kh, kw]`.
    pub kernel_size: [usize; 3],
    /// Stride `[st, sh, sw]`.
    #[config(default = "[1, 1, 1]")]
    pub stride: [usize; 3],
    /// Zero padding on both sides of each axis.
    #[config(default = "[0, 0, 0]")]
    pub padding: [usize; 3],
}

impl DepthwiseConv3dConfig {
    /// The convolution, initialised as Burn's `Conv3d` with `channels` groups (PyTorch's
    /// default initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> DepthwiseConv3d<B> {
        let [pt, ph, pw] = self.padding;
        let c = self.channels;
        let conv = Conv3dConfig::new([c, c], self.kernel_size)
            .with_stride(self.stride)
            .with_padding(PaddingConfig3d::Explicit(pt, ph, pw))
            .with_groups(c)
            .with_bias(false)
            .init(device);
        DepthwiseConv3d {
            weight: conv.weight,
            stride: self.stride,
            padding: self.padding,
        }
    }
}

/// A depthwise 3D convolution without bias: `[N, C, T, H, W]` filtered channel by channel by
/// `weight` `[C, 1, kt, kh, kw]` (Burn's `Conv3d` with `C` groups and the same parameter).
///
/// On the CPU a direct kernel that reads the input in whatever layout it has (a strided view
/// needs no copy), and under autodiff one graph node whose backward pass is direct too (Burn's
/// Conv3d has no depthwise path on the CPU; its backward pass through a transposed convolution
/// was a fifth of an MViTv2-S training step). Elsewhere Burn's grouped Conv3d.
#[derive(Module, Debug)]
pub struct DepthwiseConv3d<B: Backend> {
    /// `[C, 1, kt, kh, kw]`.
    pub weight: Param<Tensor<B, 5>>,
    /// Stride `[st, sh, sw]`.
    pub stride: [usize; 3],
    /// Zero padding on both sides of each axis.
    pub padding: [usize; 3],
}

impl<B: Backend> DepthwiseConv3d<B> {
    /// `[N, C, T, H, W]` to `[N, C, T', H', W']`.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        self.forward_as(formulation::<B>(), x)
    }

    /// [`DepthwiseConv3d::forward`] in the given formulation.
    pub fn forward_as(&self, how: Formulation, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let weight = self.weight.val();
        match how {
            Formulation::Cpu => crate::depthwise_conv3d(x, weight, self.stride, self.padding),
            Formulation::Burn => crate::grouped_conv3d(x, weight, self.stride, self.padding),
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::module::AutodiffModule;
    use burn::tensor::Distribution;

    use super::*;
    use crate::nn::{assert_close, assert_cpu_path, reaches_cpu_kernels, values_and_gradients};

    /// Scaled error; at most 3.1e-5 measured (the weight gradient, Intel Xeon VM, 2026-12-07).
    const TOLERANCE: f32 = 2e-4;

    type Ad = crate::nn::TestBackend;

    /// Both formulations give Burn's grouped Conv3d's values and gradients (MViTv2's query and
    /// key/value poolings, stride larger than the kernel included); Flex reaches the kernel.
    #[test]
    fn both_formulations_match_burns_conv3d_and_flex_takes_the_kernel() {
        let device = Default::default();
        for stride in [[1, 2, 2], [1, 4, 4], [2, 1, 1]] {
            let conv = DepthwiseConv3dConfig::new(3, [3, 3, 3])
                .with_stride(stride)
                .with_padding([1, 1, 1])
                .init::<Ad>(&device);
            let mut theirs = Conv3dConfig::new([3, 3], [3, 3, 3])
                .with_stride(stride)
                .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                .with_groups(3)
                .with_bias(false)
                .init::<Ad>(&device);
            // Both on the same parameter tensor (so that its gradient is found).
            theirs.weight = Param::from_tensor(conv.weight.val());
            let x =
                Tensor::<Ad, 5>::random([2, 3, 4, 9, 9], Distribution::Normal(0.0, 1.0), &device);
            let weight = conv.weight.val();
            let run = |f: &dyn Fn(_) -> _| values_and_gradients(&x, &weight, f);
            let reference = run(&|x| theirs.forward(x));
            for how in [Formulation::Cpu, Formulation::Burn] {
                for (i, (a, b)) in run(&|x| conv.forward_as(how, x))
                    .iter()
                    .zip(&reference)
                    .enumerate()
                {
                    assert_close(
                        &format!("depthwise output {i} {how:?} stride {stride:?}"),
                        a,
                        b,
                        TOLERANCE,
                    );
                }
            }
            assert_cpu_path(|| conv.forward(x.clone()));
            assert_cpu_path(|| conv.valid().forward(x.clone().inner()));
            assert!(!reaches_cpu_kernels(
                || conv.forward_as(Formulation::Burn, x.clone())
            ));
        }
    }
}
