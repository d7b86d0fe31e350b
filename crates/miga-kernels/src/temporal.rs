//! 2s-AGCN's `(k, 1)` convolutions over time: the time-shifted columns, their product with
//! the weights, and Burn's strided Conv2d with a correct input gradient.

use super::*;

/// The columns (im2col) of a `(k, 1)` convolution over time with `k / 2` zero frames of
/// padding on each side and temporal stride `stride`: `[N, C, T, V]` to
/// `[N, C * k, T_out * V]`, row `c * k + i` holding channel `c` at frames
/// `o * stride + i - k / 2` for `o` in `0..T_out` (zeros outside the clip), where
/// `T_out = (T + 2 * (k / 2) - k) / stride + 1`. Rows are in the order of a `[out, C, k, 1]`
/// weight's flattening, so the convolution is one product with that weight as `[out, C * k]`.
///
/// A 1x1 kernel of stride 1 gives `x` itself, reshaped. Otherwise, on Flex this is one pass
/// writing whole frames (Burn's composition pads, copies each tap
/// and concatenates: about twenty passes), and under autodiff one graph node whose backward
/// pass adds the frames back.
pub fn time_taps<B: Backend>(x: Tensor<B, 4>, k: usize, stride: usize) -> Tensor<B, 3> {
    if k == 1 && stride == 1 {
        let [n, c, t, v] = x.dims();
        return x.reshape([n, c, t * v]);
    }
    #[cfg(feature = "flex")]
    let x = match flex::time_taps(x, k, stride).or_else(|x| autodiff::time_taps(x, k, stride)) {
        Ok(y) => return y,
        Err(x) => x,
    };
    time_taps_by_copies(x, k, stride)
}

/// [`time_taps`] from Burn's operations: the padded clip split into its `stride` phases, each
/// tap a run of whole frames of one phase, concatenated.
pub(crate) fn time_taps_by_copies<B: Backend>(
    x: Tensor<B, 4>,
    k: usize,
    stride: usize,
) -> Tensor<B, 3> {
    let [n, c, t, v] = x.dims();
    let (p, s) = (k / 2, stride);
    let t_out = (t + 2 * p - k) / s + 1;
    // Padded at the end to a multiple of the stride: tap i reads phase i % s from row i / s.
    let len = (t + 2 * p).div_ceil(s) * s;
    let padded = x.pad([(p, len - t - p), (0, 0)], PadMode::Constant(0.0));
    let phases = swap_heads(padded.reshape([n * c, len / s, s, v])).reshape([n, c, s, len / s, v]);
    let taps = (0..k)
        .map(|i| phases.clone().narrow(2, i % s, 1).narrow(3, i / s, t_out))
        .collect();
    Tensor::cat(taps, 2).reshape([n, c * k, t_out * v])
}

/// Burn's `conv2d` (no bias) with an input gradient that is right on every backend: on Burn
/// 0.21's cubecl backends (wgpu; CUDA shares the kernels) the gradient of the input is wrong
/// whenever a stride is larger than the kernel along its axis (the forward pass is right;
/// the gradient tests of `tests/backend_agreement.rs` found it: MViTv2's key and value pooling,
/// kernel 3 with stride 4 or 8). Such an axis is convolved at stride 1 and then subsampled.
pub(crate) fn conv2d_strided<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    let [_, _, kh, kw] = weight.dims();
    let [sh, sw] = options.stride;
    if sh <= kh && sw <= kw {
        return conv2d(x, weight, None, options);
    }
    let [_, _, h, w] = x.dims();
    let [ph, pw] = options.padding;
    let out = |l: usize, p: usize, k: usize, s: usize| (l + 2 * p - k) / s + 1;
    let (oh, ow) = (out(h, ph, kh, sh), out(w, pw, kw, sw));
    let (ah, aw) = (if sh > kh { 1 } else { sh }, if sw > kw { 1 } else { sw });
    let y = conv2d(
        x,
        weight,
        None,
        ConvOptions::new([ah, aw], options.padding, options.dilation, options.groups),
    );
    let y = if ah != sh { subsample(y, 2, sh, oh) } else { y };
    if aw != sw { subsample(y, 3, sw, ow) } else { y }
}

/// Every `s`-th entry of `y` along `axis` from the first, `n` of them (zeros past the end).
pub(crate) fn subsample<B: Backend, const D: usize>(
    y: Tensor<B, D>,
    axis: usize,
    s: usize,
    n: usize,
) -> Tensor<B, D> {
    let dims = y.dims();
    let before = dims[..axis].iter().product::<usize>();
    let after = dims[axis + 1..].iter().product::<usize>();
    let picked = subsample_rows(y.reshape([before, dims[axis], after]), s, n);
    let mut shape = dims;
    shape[axis] = n;
    picked.reshape(shape)
}

/// Every `s`-th entry along the middle axis of `y` `[R, L, K]` from the first, `n` of them
/// (zeros past the end).
fn subsample_rows<B: Backend>(y: Tensor<B, 3>, s: usize, n: usize) -> Tensor<B, 3> {
    let [r, len, k] = y.dims();
    let want = n * s;
    let y = if len >= want {
        y.narrow(1, 0, want)
    } else {
        y.pad([(0, want - len), (0, 0)], PadMode::Constant(0.0))
    };
    y.reshape([r, n, s * k]).narrow(2, 0, k)
}

/// The product of `weight` rows `[out, K]` with `columns` `[N, K, L]`, `bias` `[out]` added
/// to each output row: `[N, out, L]` (a convolution written as a product with its columns).
pub fn project<B: Backend>(
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    columns: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let [n, _, l] = columns.dims();
    let out = weight.dims()[0];
    let y = matmul(weight.unsqueeze::<3>(), columns);
    match bias {
        // The bias as a column of the `[N * out, L]` rows: a broadcast Flex runs row by row.
        Some(bias) => {
            let column = bias
                .reshape([1, out])
                .expand([n, out])
                .reshape([n * out, 1]);
            (y.reshape([n * out, l]) + column).reshape([n, out, l])
        }
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Ad;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn time_taps_values_and_gradients_match_burns_composition() {
        let device = Default::default();
        for (k, stride, frames) in [
            (1, 1, 8),
            (1, 2, 8),
            (3, 1, 7),
            (9, 1, 10),
            (9, 2, 10),
            (9, 2, 11),
        ] {
            let x = Tensor::<Ad, 4>::random([2, 3, frames, 5], Distribution::Default, &device);
            let t_out = (frames + 2 * (k / 2) - k) / stride + 1;
            let weight =
                Tensor::<Ad, 3>::random([2, 3 * k, t_out * 5], Distribution::Default, &device);
            let run = |f: &dyn Fn(Tensor<Ad, 4>) -> Tensor<Ad, 3>| {
                let x = x.clone().require_grad();
                let y = f(x.clone());
                let grads = (y.clone() * weight.clone()).sum().backward();
                (y.into_data(), x.grad(&grads).unwrap().into_data())
            };
            let ours = run(&|x| time_taps(x, k, stride));
            let theirs = run(&|x| time_taps_by_copies(x, k, stride));
            assert_eq!(
                ours.0.shape, theirs.0.shape,
                "k {k} stride {stride} frames {frames}"
            );
            assert_eq!(ours.0, theirs.0);
            // Nine gradients a frame summed in another order: a few units in the last place.
            ours.1
                .assert_approx_eq::<f32>(&theirs.1, Tolerance::rel_abs(1e-6, 1e-6));
            // On Flex without autodiff, from a strided view.
            let plain = Tensor::<Flex, 4>::from_data(x.to_data(), &device);
            let strided = plain.clone().swap_dims(0, 1).swap_dims(0, 1);
            assert_eq!(time_taps(strided, k, stride).into_data(), theirs.0);
        }
    }
}
