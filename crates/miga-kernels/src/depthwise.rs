//! MViTv2's depthwise Conv3d (attention pooling): the CPU kernel, Burn's grouped Conv3d and the
//! sum of 2-D convolutions.

use super::*;

/// Burn's grouped `conv3d` of `x` `[N, C, T, H, W]` with the depthwise `weight`
/// `[C, 1, kt, kh, kw]` (no bias), with the input gradient right on every backend: an axis whose
/// stride is larger than its kernel is convolved at stride 1 and then subsampled, as in
/// [`conv2d_strided`].
pub(crate) fn grouped_conv3d<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Tensor<B, 5> {
    let [_, c, t, h, w] = x.dims();
    let [_, _, kt, kh, kw] = weight.dims();
    let kernel = [kt, kh, kw];
    let applied = std::array::from_fn(|a| if stride[a] > kernel[a] { 1 } else { stride[a] });
    let options = ConvOptions::new(applied, padding, [1, 1, 1], c);
    let mut y = burn::tensor::module::conv3d(x, weight, None, options);
    for (a, len) in [t, h, w].into_iter().enumerate() {
        if applied[a] != stride[a] {
            let n = (len + 2 * padding[a] - kernel[a]) / stride[a] + 1;
            y = subsample(y, 2 + a, stride[a], n);
        }
    }
    y
}

/// A depthwise 3D convolution without bias and with zero padding: `x` `[N, C, T, H, W]`,
/// `weight` `[C, 1, kt, kh, kw]` (one filter per channel).
///
/// On Flex a direct kernel that reads `x` in whatever layout it has (a strided view, such as
/// the token grid behind a class token, needs no copy), one channel per task; under autodiff
/// on Flex one graph node whose backward pass is direct too (the filter scattered back over the
/// output gradient, and each tap's inputs against it; Burn's Conv3d backward through a
/// transposed convolution was a fifth of an MViTv2-S training step); elsewhere the sum over
/// temporal taps of depthwise 2D convolutions.
pub fn depthwise_conv3d<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Tensor<B, 5> {
    #[cfg(feature = "flex")]
    let (x, weight) = match flex::depthwise_conv3d(x, weight, stride, padding)
        .or_else(|(x, weight)| autodiff::depthwise_conv3d(x, weight, stride, padding))
    {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    depthwise_conv3d_by_taps(x, weight, stride, padding)
}

/// [`depthwise_conv3d`] on any backend: the sum over temporal taps of depthwise 2D convolutions
/// with time folded into the channels (Burn's Conv3d has no depthwise path on the CPU; GPU
/// backends run either well).
fn depthwise_conv3d_by_taps<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Tensor<B, 5> {
    let [n, c, t, _, _] = x.dims();
    let [_, _, kt, kh, kw] = weight.dims();
    let t_out = (t + 2 * padding[0] - kt) / stride[0] + 1;
    let x = x.pad(
        [(padding[0], padding[0]), (0, 0), (0, 0)],
        PadMode::Constant(0.0),
    );
    let [_, _, _, h, w] = x.dims();
    let device = x.device();
    let options = ConvOptions::new(
        [stride[1], stride[2]],
        [padding[1], padding[2]],
        [1, 1],
        c * t_out,
    );
    let taps = (0..kt).map(|tap| {
        // A contiguous run of frames is a view; a strided one is gathered.
        let input = if stride[0] == 1 {
            x.clone().narrow(2, tap, t_out)
        } else {
            let frames: Vec<i64> = (0..t_out).map(|o| (o * stride[0] + tap) as i64).collect();
            let frames = TensorData::new(frames, [t_out]);
            x.clone()
                .select(2, Tensor::<B, 1, Int>::from_data(frames, &device))
        };
        let input = input.reshape([n, c * t_out, h, w]);
        let filter = weight
            .clone()
            .narrow(2, tap, 1)
            .expand([c, t_out, 1, kh, kw])
            .reshape([c * t_out, 1, kh, kw]);
        conv2d_strided(input, filter, options.clone())
    });
    let sum = taps
        .reduce(|a, b| a + b)
        .expect("a kernel has at least one temporal tap");
    let [_, _, h, w] = sum.dims();
    sum.reshape([n, c, t_out, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Ad;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn depthwise_conv3d_agrees_with_the_sum_of_2d_convolutions() {
        let device = Default::default();
        let weight =
            Tensor::<Flex, 5>::random([6, 1, 3, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        for stride in [[1, 1, 1], [1, 2, 2], [2, 4, 4], [1, 8, 8], [2, 1, 3]] {
            // A strided view: channels last, one extra token in front (as MViT's class token).
            let tokens = Tensor::<Flex, 3>::random(
                [2, 6, 1 + 5 * 9 * 11],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let x = tokens.narrow(2, 1, 5 * 9 * 11).reshape([2, 6, 5, 9, 11]);
            let fast = depthwise_conv3d(x.clone(), weight.clone(), stride, [1, 1, 1]);
            let reference = depthwise_conv3d_by_taps(x, weight.clone(), stride, [1, 1, 1]);
            assert_eq!(fast.dims(), reference.dims(), "stride {stride:?}");
            fast.into_data()
                .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn depthwise_conv3d_gradients_match_the_2d_convolutions() {
        let device = Default::default();
        for (stride, padding) in [
            ([1, 1, 1], [1, 1, 1]),
            ([1, 2, 2], [1, 1, 1]),
            ([2, 4, 4], [0, 1, 1]),
        ] {
            let weight =
                Tensor::<Ad, 5>::random([6, 1, 3, 3, 3], Distribution::Normal(0.0, 1.0), &device);
            let x =
                Tensor::<Ad, 5>::random([2, 6, 5, 9, 11], Distribution::Normal(0.0, 1.0), &device);
            // A strided view, as MViT's pooled grids are.
            let x = x.permute([0, 1, 2, 4, 3]);
            let run = |f: &dyn Fn(Tensor<Ad, 5>, Tensor<Ad, 5>) -> Tensor<Ad, 5>| {
                let (x, w) = (x.clone().require_grad(), weight.clone().require_grad());
                let y = f(x.clone(), w.clone());
                let upstream = Tensor::<Ad, 5>::ones(y.dims(), &device).cumsum(4) / 10.0;
                let grads = (y.clone() * upstream).sum().backward();
                [
                    y.into_data(),
                    x.grad(&grads).unwrap().into_data(),
                    w.grad(&grads).unwrap().into_data(),
                ]
            };
            let ours = run(&|x, w| depthwise_conv3d(x, w, stride, padding));
            let theirs = run(&|x, w| depthwise_conv3d_by_taps(x, w, stride, padding));
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(a.shape, b.shape, "stride {stride:?}");
                a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(1e-4, 1e-4));
            }
        }
    }
}
