//! The `(k, 1)` convolution over time of skeleton networks.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::ops::ConvOptions;

use super::{Formulation, formulation};

/// Configuration of a [`TemporalConv`].
#[derive(Config, Debug)]
pub struct TemporalConvConfig {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Frames the kernel spans (odd).
    pub kernel_size: usize,
    /// Temporal stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Whether the convolution has a bias.
    #[config(default = true)]
    pub bias: bool,
    /// The weights' initialiser (Burn's Conv2d default).
    #[config(default = "Initializer::KaimingUniform{gain:1.0/3.0f64.sqrt(),fan_out_only:false}")]
    pub initializer: Initializer,
}

impl TemporalConvConfig {
    /// The convolution, initialised as Burn's `Conv2d` of the same shape.
    ///
    /// Panics when the kernel size is even (the padding `k / 2` on each side keeps the length
    /// only for odd kernels).
    pub fn init<B: Backend>(&self, device: &B::Device) -> TemporalConv<B> {
        let k = self.kernel_size;
        assert!(
            k % 2 == 1,
            "a temporal convolution's kernel is odd, not {k}"
        );
        let p = k / 2;
        let conv = Conv2dConfig::new(self.channels, [k, 1])
            .with_stride([self.stride, 1])
            .with_padding(PaddingConfig2d::Explicit(p, 0, p, 0))
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device);
        TemporalConv {
            weight: conv.weight,
            bias: conv.bias,
            stride: self.stride,
        }
    }
}

/// A `(k, 1)` convolution of `[N, C, T, V]` over time (frames `T`, joint by joint `V`) with
/// `k / 2` zero frames of padding on each side and temporal stride `stride`: Burn's `Conv2d`
/// with the same parameters (`weight` `[out, C, k, 1]`, `bias` `[out]`).
///
/// On the CPU one matrix product of the weight as `[out, C * k]` with the `k` time-shifted
/// copies of the input stacked under each channel ([`crate::time_taps`]; a 1x1 kernel of stride
/// 1 is the input itself), the bias added to the rows: Burn's convolution on Flex walks the
/// activations element by element for its layout changes (a fifth of a 2s-AGCN forward pass),
/// and under autodiff this transposes no activation either. Elsewhere Burn's Conv2d at
/// inference, and in training the same product from Burn's operations (one batched product):
/// Burn 0.21's Conv2d backward made a 2s-AGCN training step 6.7x slower on wgpu over Mesa's
/// software driver (128 s against 19 s at batch 2, Intel Xeon VM, 2026-12-07).
#[derive(Module, Debug)]
pub struct TemporalConv<B: Backend> {
    /// `[out, C, k, 1]`.
    pub weight: Param<Tensor<B, 4>>,
    /// `[out]`, if any.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Temporal stride.
    pub stride: usize,
}

impl<B: Backend> TemporalConv<B> {
    /// `[N, C, T, V]` to `[N, out, T_out, V]`, `T_out = (T - 1) / stride + 1`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_as(formulation::<B>(), x)
    }

    /// [`TemporalConv::forward`] in the given formulation.
    pub fn forward_as(&self, how: Formulation, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, _, _, v] = x.dims();
        let [out, c, k, _] = self.weight.dims();
        let (weight, bias) = (self.weight.val(), self.bias.as_ref().map(|b| b.val()));
        match how {
            Formulation::Cpu => {
                let rows = weight.reshape([out, c * k]);
                let y = crate::project(rows, bias, crate::time_taps(x, k, self.stride));
                let frames = y.dims()[2] / v;
                y.reshape([n, out, frames, v])
            }
            // Training: the product with the time-shifted copies, from Burn's operations.
            Formulation::Burn if B::ad_enabled(&x.device()) => {
                let rows = weight.reshape([out, c * k]);
                let y = crate::project(rows, bias, crate::time_taps_by_copies(x, k, self.stride));
                let frames = y.dims()[2] / v;
                y.reshape([n, out, frames, v])
            }
            Formulation::Burn => {
                let options = ConvOptions::new([self.stride, 1], [k / 2, 0], [1, 1], 1);
                let y = crate::conv2d_strided(x, weight, options);
                match bias {
                    Some(bias) => y + bias.reshape([1, out, 1, 1]),
                    None => y,
                }
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::module::AutodiffModule;
    use burn::tensor::Distribution;

    use super::*;
    use crate::nn::{assert_close, assert_cpu_path, reaches_cpu_kernels, values_and_gradients};

    /// Scaled error; at most 1.9e-5 measured (the weight gradient, Intel Xeon VM, 2026-12-07).
    const TOLERANCE: f32 = 1e-4;

    type Ad = crate::nn::TestBackend;

    /// Both formulations give Burn's Conv2d's values and gradients (kernels 9 and 1, strides
    /// 1 and 2, with and without a bias); Flex reaches the CPU kernels, in training and not.
    #[test]
    fn both_formulations_match_burns_conv2d_and_flex_takes_the_kernels() {
        let device = Default::default();
        for (k, stride, bias) in [(9, 1, true), (9, 2, false), (1, 2, true), (3, 1, true)] {
            let conv = TemporalConvConfig::new([6, 5], k)
                .with_stride(stride)
                .with_bias(bias)
                .init::<Ad>(&device);
            let mut theirs = Conv2dConfig::new([6, 5], [k, 1])
                .with_stride([stride, 1])
                .with_padding(PaddingConfig2d::Explicit(k / 2, 0, k / 2, 0))
                .with_bias(bias)
                .init::<Ad>(&device);
            // Both on the same parameter tensors (so that their gradients are found).
            theirs.weight = Param::from_tensor(conv.weight.val());
            theirs.bias = conv.bias.as_ref().map(|b| Param::from_tensor(b.val()));
            let x = Tensor::<Ad, 4>::random([2, 6, 11, 4], Distribution::Normal(0.0, 1.0), &device);
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
                        &format!("temporal conv output {i} {how:?} k {k} s {stride}"),
                        a,
                        b,
                        TOLERANCE,
                    );
                }
            }
            if (k, stride) != (1, 1) {
                assert_cpu_path(|| conv.forward(x.clone()));
                assert_cpu_path(|| conv.valid().forward(x.clone().inner()));
            }
            // Burn's Conv2d at inference (in training the product's helpers may take Flex's
            // kernels on Flex: the formulation is the GPU one, its operations Flex's).
            let (plain, x) = (conv.valid(), x.clone().inner());
            assert!(!reaches_cpu_kernels(
                || plain.forward_as(Formulation::Burn, x)
            ));
        }
    }
}
