//! Operations with fast paths on the CPU backend, shared by miga's models, and the layers built
//! on them ([`nn`]: linear, layer and batch norm, dropout, depthwise Conv3d, temporal
//! convolution), which choose their formulation for the backend in one place
//! ([`nn::formulation`]). The operations: matrix products, exact GELU, softmax over the last
//! axis (also with a per-sample key mask), layer normalisation, layout copies (the head swap of
//! attention, any view made contiguous), the time-shifted columns of temporal convolutions, the
//! depthwise Conv3d of MViTv2's pooling and AdamW's update; and [`on_cpu_workers`], which runs a
//! step on the CPU pool's threads.
//!
//! Burn 0.21's CPU backend (Flex) runs element-wise maps one element at a time on one thread:
//! exact GELU costs about 11 ns per element there (a scalar `erf`), 13% of an MViTv2-S
//! forward pass. Under autodiff it is worse: a layer norm is eleven graph nodes, each with its
//! own backward pass, each a pass over the tensor. With the `flex` feature (on by default) these
//! functions recognise a Flex tensor and run a vectorised, multi-threaded kernel over its buffer
//! (`flex.rs`), and under `Autodiff<Flex>` (training on the CPU) they are one graph node each
//! whose backward pass is a kernel too (`autodiff.rs`). On every other backend (GPU, ndarray,
//! other autodiff checkpointing strategies) they call Burn's own operations. All paths agree
//! to float rounding, gradients included (tested below).
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::{Distribution, Tensor};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let x = Tensor::<B, 2>::random([4, 64], Distribution::Normal(0.0, 1.0), &device).require_grad();
//! let gamma = Tensor::<B, 1>::ones([64], &device).require_grad();
//! let beta = Tensor::<B, 1>::zeros([64], &device).require_grad();
//! let y = miga_kernels::layer_norm(x.clone(), gamma.clone(), Some(beta), 1e-5);
//! let y = miga_kernels::softmax_last(miga_kernels::gelu(y));
//! let grads = (y * x.clone()).sum().backward();
//! assert_eq!(x.grad(&grads).unwrap().dims(), [4, 64]);
//! assert_eq!(gamma.grad(&grads).unwrap().dims(), [64]);
//! ```

use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod flex;
pub mod nn;
#[cfg(feature = "flex")]
mod primitive;
pub mod random;

/// Runs `op` on a worker thread of rayon's global pool when `B` is Flex (alone or under
/// autodiff) and the pool has more than one thread; on the calling thread otherwise.
///
/// Flex splits each operation over rayon's pool. From a thread outside the pool every operation
/// is handed to a worker while the caller sleeps until it is done: two thread wake-ups an
/// operation, thousands a training step. From a worker, an operation forks there and the
/// caller takes its share. Wrapping a whole step (forward, backward, or an optimiser update)
/// makes that one hand-off: on 2 threads a batch-1 CMTF forward went from 5.4 to 2.8 ms and a
/// CMTF training epoch over 2,048 clips from 10.5-11.3 to 9.0-9.9 s (docs/benchmarks.md).
///
/// `op` must not wait for another thread that needs the pool (a channel, a join): it holds one
/// of the pool's threads while it runs. With a single-thread pool `op` runs where it is called,
/// so that such a wait cannot stall the pool's only thread.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let x = Tensor::<Flex, 1>::from_floats([1.0, 2.0], &device);
/// let y = miga_kernels::on_cpu_workers::<Flex, _>(|| (x.clone() * 2.0).sum().into_scalar());
/// assert_eq!(y, 6.0);
/// ```
pub fn on_cpu_workers<B: Backend, R: Send>(op: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "flex")]
    if primitive::is_flex::<B>() && !generic_only() && rayon::current_num_threads() > 1 {
        return rayon::scope(|_| op());
    }
    op()
}

/// Whether every operation takes its backend-generic formulation (the one the GPU backends
/// get), the CPU kernels off: `MIGA_KERNELS=generic` in the environment, read once.
pub fn generic_only() -> bool {
    static GENERIC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GENERIC.get_or_init(|| std::env::var("MIGA_KERNELS").is_ok_and(|v| v == "generic"))
}

/// The matrix product `lhs @ rhs` of `[.., M, K]` and `[.., K, N]` tensors, batch axes
/// broadcast (each the same in both or 1 in one), as `lhs.matmul(rhs)`.
///
/// On Flex Burn's product zeroes a buffer for the output and copies it to an aligned one
/// before writing it (two passes over every output on one thread, 9% of a 2s-AGCN training
/// step), and under autodiff the gradient of a broadcast operand (a weight shared by the batch)
/// is one product per batch entry, then their sum. Here the output is written once and the
/// broadcast gradient is accumulated by the products themselves.
///
/// Panics, as `Tensor::matmul`, when the shapes do not multiply.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let weight = Tensor::<Flex, 3>::from_floats([[[1.0, 2.0], [3.0, 4.0]]], &device);
/// let x = Tensor::<Flex, 3>::from_floats([[[1.0], [1.0]], [[0.0], [1.0]]], &device);
/// let y = miga_kernels::matmul(weight, x);
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), [3.0, 7.0, 2.0, 4.0]);
/// ```
pub fn matmul<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    let (l, r) = (lhs.dims(), rhs.dims());
    assert!(
        D >= 2
            && l[D - 1] == r[D - 2]
            && (0..D - 2).all(|i| l[i] == r[i] || l[i] == 1 || r[i] == 1),
        "matmul: {l:?} @ {r:?} do not multiply"
    );
    #[cfg(feature = "flex")]
    let (lhs, rhs) = match flex::matmul(lhs, rhs).or_else(|(l, r)| autodiff::matmul(l, r)) {
        Ok(y) => return y,
        Err(operands) => operands,
    };
    lhs.matmul(rhs)
}

/// `x @ weight + bias` for `x` `[.., in]`, `weight` `[in, out]` (Burn's layout), as Burn's
/// linear layer ([`nn::Linear`] is the module).
///
/// On Flex Burn's linear layer is a product (whose output is zeroed and copied before it is
/// written, as in [`matmul`]) and then a pass adding the bias; under autodiff the weight's
/// gradient is one product per batch entry, then their sum. Here the output starts as the
/// bias and the product adds to it, and the weight's gradient is one product over all rows.
///
/// On other backends the rows are flattened to `[rows, in]` before Burn's layer: its
/// weight gradient for a `[B, .., in]` input is a `[B, in, out]` batch of products summed
/// afterwards, a buffer that grows with the batch (192 MiB for a CMTF training step at batch
/// 32, more than Mesa's software Vulkan driver binds), where one `[in, out]` product does.
pub(crate) fn linear<B: Backend, const D: usize>(
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::linear(weight, bias, x).or_else(|x| autodiff::linear(weight, bias, x)) {
        Ok(y) => return y,
        Err(x) => x,
    };
    linear_on_rows(weight, bias, x)
}

/// Burn's linear on `x` `[.., in]` flattened to `[rows, in]`, then shaped back.
pub(crate) fn linear_on_rows<B: Backend, const D: usize>(
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let (weight, bias) = (weight.clone(), bias.cloned());
    if D <= 2 {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let mut dims = x.dims();
    let y = burn::tensor::module::linear(x.flatten::<2>(0, D - 2), weight, bias);
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// Exact (erf) GELU, `0.5 x (1 + erf(x / sqrt 2))`, as PyTorch's `nn.GELU()`.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::gelu(x).or_else(autodiff::gelu) {
        Ok(y) => return y,
        Err(x) => x,
    };
    // The formula written out rather than Burn's `gelu`: on Burn 0.21's cubecl backends the
    // latter's gradient is off by up to 7e-4 (its derivative is approximated; the gradient
    // tests found it), the composition's by 3e-7.
    (x.clone() * ((x / std::f64::consts::SQRT_2).erf() + 1.0)) * 0.5
}

/// Softmax over the last dimension, as `burn::tensor::activation::softmax(x, D - 1)`.
pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::softmax_last(x).or_else(autodiff::softmax_last) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::softmax(x, D - 1)
}

/// Softmax over the last axis of `scores` `[B, ..., N]` with each sample's keys masked:
/// `keep` `[B, N]` is 1 for a key and 0 for padding. A masked key gets weight 0, and a row
/// whose keys are all masked is all zeros. The same as
/// `softmax_last(scores + (keep - 1) * 1e4) * keep` with `keep` broadcast over the middle
/// axes, which on Flex walks both broadcasts element by element (7% of an InterFusion
/// training step); here one pass a row, and under autodiff one graph node.
///
/// Panics when `keep` is not `[B, N]` for `scores` `[B, ..., N]`.
pub fn masked_softmax_last<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    keep: Tensor<B, 2>,
) -> Tensor<B, D> {
    let dims = scores.dims();
    assert_eq!(
        keep.dims(),
        [dims[0], dims[D - 1]],
        "masked_softmax_last: a key mask [B, N] for scores {dims:?}"
    );
    #[cfg(feature = "flex")]
    let scores = if primitive::is_flex::<B>()
        && !generic_only()
        && scores.dtype() == burn::tensor::DType::F32
    {
        let mask = keep
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("converted to f32");
        match flex::masked_softmax_last(scores, &mask)
            .or_else(|scores| autodiff::masked_softmax_last(scores, &mask))
        {
            Ok(y) => return y,
            Err(scores) => scores,
        }
    } else {
        scores
    };
    masked_softmax_broadcast(scores, keep)
}

/// [`masked_softmax_last`] through Burn's broadcast operations (every backend but Flex).
fn masked_softmax_broadcast<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    keep: Tensor<B, 2>,
) -> Tensor<B, D> {
    let [b, n] = keep.dims();
    let mut shape = [1; D];
    shape[0] = b;
    shape[D - 1] = n;
    let keep = keep.reshape(shape);
    burn::tensor::activation::softmax(scores + (keep.clone() - 1.0) * 1.0e4, D - 1) * keep
}

/// One AdamW update's settings (Burn's `AdamW`, without AMSGrad or cautious decay).
#[derive(Debug, Clone, Copy)]
pub struct AdamWUpdate {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
    /// Decoupled weight decay (times the learning rate).
    pub weight_decay: f32,
    /// Steps taken, this one included (bias correction).
    pub time: usize,
}

/// Burn's AdamW update of `param` from `grad` and the moments of the steps before, in one pass
/// over the four tensors on Flex (Burn's `AdamW` makes 13 tensors a parameter, each a pass):
/// `[param, moment_1, moment_2]` after the step, equal to Burn's to float rounding. On other
/// backends the inputs come back untouched, for Burn's own `AdamW`.
#[allow(clippy::type_complexity)]
#[cfg_attr(not(feature = "flex"), allow(unused_variables))]
pub fn adamw_update<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moment_1: Tensor<B, D>,
    moment_2: Tensor<B, D>,
    update: &AdamWUpdate,
) -> Result<[Tensor<B, D>; 3], [Tensor<B, D>; 4]> {
    #[cfg(feature = "flex")]
    if [&param, &grad, &moment_1, &moment_2]
        .iter()
        .all(|x| primitive::is_f32::<burn_flex::FlexTensor, B, D>(x))
        && grad.dims() == param.dims()
        && moment_1.dims() == param.dims()
        && moment_2.dims() == param.dims()
    {
        let [p, g, m, v] =
            [param, grad, moment_1, moment_2].map(primitive::unwrap::<burn_flex::FlexTensor, B, D>);
        return Ok(flex::adamw_update(p, g, m, v, update).map(primitive::wrap));
    }
    Err([param, grad, moment_1, moment_2])
}

/// `x` with its elements in a contiguous row-major buffer, for a view (a slice, a permutation)
/// about to be reshaped or read many times: the same values, and under autodiff the same
/// gradient. On Flex a copy in parallel runs (Flex's own, which a reshape of a view makes,
/// goes element by element on one thread); on other backends `x` as it is, each backend
/// copying when it needs to.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let x = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
/// let y = miga_kernels::contiguous(x.clone().transpose()).reshape([4]);
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), [1.0, 3.0, 2.0, 4.0]);
/// ```
pub fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::contiguous_layout(x).or_else(autodiff::contiguous) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x
}

/// `x.narrow(axis, start, len)`: the `len` entries along `axis` from `start`, a view.
///
/// Under autodiff on Flex one graph node whose backward pass adds the gradient into the slice
/// of the input's gradient so far, in one parallel pass. Burn's fills a zeroed buffer the size
/// of the input, copies it again to assign the slice and adds it to the gradient so far: three
/// passes over the whole input, each on one thread (a seventh of an MViTv2-S training step,
/// which splits the class token from the token grid in every block).
///
/// Panics, as `Tensor::narrow`, when the range is not within the axis.
///
/// ```
/// use burn::backend::{Autodiff, Flex};
/// use burn::tensor::Tensor;
///
/// type B = Autodiff<Flex>;
/// let device = Default::default();
/// let x = Tensor::<B, 2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &device).require_grad();
/// let (class, grid) = (miga_kernels::narrow(x.clone(), 1, 0, 1), miga_kernels::narrow(x.clone(), 1, 1, 2));
/// let grads = (class * 2.0 + grid.sum_dim(1)).sum().backward();
/// let grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
/// assert_eq!(grad, [2.0, 1.0, 1.0, 2.0, 1.0, 1.0]);
/// ```
pub fn narrow<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    axis: usize,
    start: usize,
    len: usize,
) -> Tensor<B, D> {
    let dims = x.dims();
    assert!(
        axis < D && start + len <= dims[axis],
        "narrow: {start}..{} is not within axis {axis} of {dims:?}",
        start + len
    );
    #[cfg(feature = "flex")]
    let x = match autodiff::narrow(x, axis, start, len) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x.narrow(axis, start, len)
}

/// `[A, P, Q, R]` to `[A, Q, P, R]` in a contiguous layout: the change between tokens
/// `[B, N, H, Dh]` and attention heads `[B, H, N, Dh]`, both ways (it is its own inverse).
///
/// Burn's `swap_dims(1, 2)` is a view, and the reshape that follows it (forward, or in the
/// backward pass) copies it element by element on the CPU backend; this copies runs of `R`
/// values, and under autodiff its backward pass is the same swap.
pub fn swap_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match flex::swap_heads(x).or_else(autodiff::swap_heads) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x.swap_dims(1, 2)
}

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
fn subsample<B: Backend, const D: usize>(
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

/// MViTv2's queries with their decomposed relative-position terms as extra columns, so that
/// one product with keys carrying a 0/1 selector of their own `(t, h, w)` gives
/// `scale * q k^T` plus torchvision's `_add_rel_pos` bias.
///
/// `q` `[G, 1 + T*H*W, d]` (the class token first, then the grid `[T, H, W]` row-major) and
/// the tables `[T, kt, d]`, `[H, kh, d]`, `[W, kw, d]` (the relative-position rows for every
/// query and key position of each axis) give `[G, 1 + T*H*W, d + kt + kh + kw]`: each row
/// `scale * q`, then `q · table[t][j]` for each key time `j`, row and column; the class row's
/// terms are zero.
///
/// On Flex one pass over the rows (under autodiff one graph node, whose backward pass gives
/// the queries' and the tables' gradients in one pass each); elsewhere batched products and
/// concatenations.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// // One head, 1-d queries on a 1x1x2 grid, one key position per axis.
/// let q = Tensor::<Flex, 3>::from_floats([[[5.0], [1.0], [2.0]]], &device);
/// let t = Tensor::<Flex, 3>::from_floats([[[10.0]]], &device);
/// let h = Tensor::<Flex, 3>::from_floats([[[20.0]]], &device);
/// let w = Tensor::<Flex, 3>::from_floats([[[30.0]], [[40.0]]], &device);
/// let y = miga_kernels::rel_pos_query(q, 0.5, [t, h, w]);
/// assert_eq!(
///     y.into_data().to_vec::<f32>().unwrap(),
///     [2.5, 0.0, 0.0, 0.0, 0.5, 10.0, 20.0, 30.0, 1.0, 20.0, 40.0, 80.0]
/// );
/// ```
pub fn rel_pos_query<B: Backend>(
    q: Tensor<B, 3>,
    scale: f64,
    tables: [Tensor<B, 3>; 3],
) -> Tensor<B, 3> {
    let [_, n, d] = q.dims();
    let grid = tables.each_ref().map(|t| t.dims()[0]);
    assert!(
        n == 1 + grid.iter().product::<usize>() && tables.iter().all(|t| t.dims()[2] == d),
        "rel_pos_query: queries {:?} do not fit tables {:?}",
        q.dims(),
        tables.each_ref().map(|t| t.dims())
    );
    #[cfg(feature = "flex")]
    let (q, tables) = match flex::rel_pos_query(q, scale, tables)
        .or_else(|(q, tables)| autodiff::rel_pos_query(q, scale, tables))
    {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    rel_pos_query_by_products(q, scale, tables)
}

/// [`rel_pos_query`] from Burn's operations: each axis's terms a batched product of the grid
/// queries with that axis's table, concatenated after the scaled queries.
fn rel_pos_query_by_products<B: Backend>(
    q: Tensor<B, 3>,
    scale: f64,
    [t, h, w]: [Tensor<B, 3>; 3],
) -> Tensor<B, 3> {
    let [g, n, d] = q.dims();
    let ([qt, kt, _], [qh, kh, _], [qw, kw, _]) = (t.dims(), h.dims(), w.dims());
    let r = q.clone().narrow(1, 1, n - 1);
    let by_t = r
        .clone()
        .reshape([g, qt, qh * qw, d])
        .matmul(t.swap_dims(1, 2).unsqueeze())
        .reshape([g, n - 1, kt]);
    let by_h = r
        .clone()
        .reshape([g * qt, qh, qw, d])
        .matmul(h.swap_dims(1, 2).unsqueeze())
        .reshape([g, n - 1, kh]);
    let by_w = r
        .reshape([g * qt * qh, qw, d])
        .swap_dims(0, 1)
        .matmul(w.swap_dims(1, 2))
        .swap_dims(0, 1)
        .reshape([g, n - 1, kw]);
    let terms =
        Tensor::cat(vec![by_t, by_h, by_w], 2).pad([(1, 0), (0, 0)], PadMode::Constant(0.0));
    Tensor::cat(vec![q * scale, terms], 2)
}

/// Layer normalisation over the last dimension, as `burn::nn::LayerNorm` with weight `gamma`,
/// bias `beta` and `epsilon` (PyTorch's: biased variance, epsilon inside the square root).
pub fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    epsilon: f64,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (x, gamma, beta) = match beta {
        Some(beta) => match autodiff::layer_norm(x, gamma, beta, epsilon) {
            Ok(y) => return y,
            Err((x, gamma, beta)) => (x, gamma, Some(beta)),
        },
        None => (x, gamma, None),
    };
    backend_layer_norm(x, gamma, beta, epsilon)
}

/// The backend's own layer norm ([`layer_norm`] where no CPU kernel applies).
pub(crate) fn backend_layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    epsilon: f64,
) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm(
        x.into_primitive().tensor(),
        gamma.into_primitive().tensor(),
        beta.map(|b| b.into_primitive().tensor()),
        epsilon,
    )))
}

/// Batch normalisation of `x` `[N, C, ...]` with its own batch statistics, as PyTorch's
/// `BatchNorm` in training: `(x - mean_c) / sqrt(var_c + epsilon) * gamma_c + beta_c`, the mean
/// and biased variance of each channel `c` taken over the batch and the trailing axes. Also
/// gives the batch means and biased variances `[C]` (not tracked), for the running
/// statistics.
///
/// Under autodiff on Flex one graph node: the statistics in one pass over `x`, the output in
/// one more, and a backward pass of two (the composition of Burn's operations, on any other
/// backend, is about a dozen passes each way).
///
/// ```
/// use burn::backend::{Autodiff, Flex};
/// use burn::tensor::{Distribution, Tensor};
///
/// type B = Autodiff<Flex>;
/// let device = Default::default();
/// let x = Tensor::<B, 3>::random([4, 3, 10], Distribution::Normal(2.0, 3.0), &device);
/// let (gamma, beta) = (Tensor::ones([3], &device), Tensor::zeros([3], &device));
/// let (y, mean, _var) = miga_kernels::batch_norm_train(x, gamma, beta, 1e-5);
/// assert_eq!(mean.dims(), [3]);
/// let channel_means = y.mean_dim(2).mean_dim(0).into_data().to_vec::<f32>().unwrap();
/// assert!(channel_means.iter().all(|m| m.abs() < 1e-4));
/// ```
pub fn batch_norm_train<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> (Tensor<B, D>, Tensor<B, 1>, Tensor<B, 1>) {
    #[cfg(feature = "flex")]
    let (x, gamma, beta) = match autodiff::batch_norm_train(x, gamma, beta, epsilon) {
        Ok((y, mean, var)) => {
            let device = y.device();
            let stat = |v: Vec<f32>| {
                let c = v.len();
                Tensor::from_data(TensorData::new(v, [c]), &device)
            };
            return (y, stat(mean), stat(var));
        }
        Err(inputs) => inputs,
    };
    batch_norm_by_rows(x, gamma, beta, epsilon)
}

/// [`batch_norm_train`] from Burn's operations on the `[N * C, L]` rows: each row's mean, then
/// each channel's (rows have equal lengths), so no step copies a transposed activation.
pub(crate) fn batch_norm_by_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> (Tensor<B, D>, Tensor<B, 1>, Tensor<B, 1>) {
    let c = gamma.dims()[0];
    let dims = x.dims();
    let n = dims[0];
    let rows = x.reshape([n * c, dims[2..].iter().product::<usize>()]);
    let per_channel = |t: Tensor<B, 2>| t.mean_dim(1).reshape([n, c]).mean_dim(0);
    let channel_rows = |v: Tensor<B, 2>| v.expand([n, c]).reshape([n * c, 1]);
    let mean = per_channel(rows.clone());
    let centred = rows - channel_rows(mean.clone());
    let var = per_channel(centred.clone().square());
    let scale = gamma.reshape([1, c]) / (var.clone() + epsilon).sqrt();
    let y = centred * channel_rows(scale) + channel_rows(beta.reshape([1, c]));
    (
        y.reshape(dims),
        mean.detach().reshape([c]),
        var.detach().reshape([c]),
    )
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
    use burn::backend::Flex;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    #[test]
    fn flex_path_agrees_with_burn_gelu() {
        let device = Default::default();
        let x = Tensor::<Flex, 3>::random([3, 50, 700], Distribution::Normal(0.0, 2.0), &device);
        // A non-contiguous view goes through the fast path too.
        let x = x.swap_dims(1, 2);
        let fast = gelu(x.clone());
        let reference = burn::tensor::activation::gelu(x);
        assert_eq!(fast.dims(), [3, 700, 50]);
        fast.into_data()
            .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::absolute(5e-7));
    }

    #[test]
    fn softmax_matches_f64_and_burn() {
        let device = Default::default();
        // Rows longer and shorter than the vector width, a large spread of values.
        for last in [1, 7, 16, 393, 1569] {
            let x =
                Tensor::<Flex, 3>::random([2, 33, last], Distribution::Normal(0.0, 8.0), &device);
            let fast = softmax_last(x.clone()).into_data().to_vec::<f32>().unwrap();
            let values = x.clone().into_data().to_vec::<f32>().unwrap();
            for (row, out) in values.chunks(last).zip(fast.chunks(last)) {
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
                for (&v, &p) in row.iter().zip(out) {
                    let exact = (v as f64 - max).exp() / sum;
                    assert!(
                        (p as f64 - exact).abs() < 1e-6 * exact.max(1e-3),
                        "{p} vs {exact}"
                    );
                }
            }
            let reference = burn::tensor::activation::softmax(x, 2).into_data();
            TensorData::new(fast, [2, 33, last])
                .assert_approx_eq::<f32>(&reference, Tolerance::absolute(5e-6));
        }
    }

    type Ad = burn::backend::Autodiff<Flex>;

    #[test]
    fn swap_heads_values_and_gradients_match_swap_dims() {
        assert_same_gradients(
            |x, _, _| {
                let [b, n, d] = x.dims();
                let heads = swap_heads(x.reshape([b, n, 5, d / 5]));
                // Back to tokens, as attention's output is.
                swap_heads(heads * 2.0).reshape([b, n, d])
            },
            |x, _, _| {
                let [b, n, d] = x.dims();
                let heads = x.reshape([b, n, 5, d / 5]).swap_dims(1, 2);
                (heads * 2.0).swap_dims(1, 2).reshape([b, n, d])
            },
            0.0,
        );
        // A strided input on Flex.
        let device = Default::default();
        let x =
            Tensor::<Flex, 4>::random([2, 3, 4, 5], Distribution::Default, &device).swap_dims(0, 2);
        let expected = x.clone().swap_dims(1, 2).into_data();
        assert_eq!(swap_heads(x).into_data(), expected);
    }

    /// Values and gradients of `fast` and `reference` (the same function of `x` and two
    /// parameters) under `Autodiff<Flex>`, with a random weighting of the output as the loss.
    #[test]
    fn matmul_values_and_gradients_match_burns() {
        let device = Default::default();
        let random = |dims: [usize; 4]| {
            Tensor::<Ad, 4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
        };
        // Broadcast batch axes on either side or both, a transposed view, and products large
        // enough to be split over the threads (one big product; a batch of small ones; one
        // gradient summed over many entries).
        let cases = [
            (random([2, 3, 7, 5]).swap_dims(2, 3), random([1, 3, 7, 4])),
            (random([1, 1, 6, 9]), random([2, 3, 9, 5])),
            (
                random([2, 1, 4, 8]),
                random([1, 3, 8, 6]).swap_dims(0, 1).swap_dims(0, 1),
            ),
            (
                random([1, 1, 200, 300]),
                random([4, 1, 250, 300]).swap_dims(2, 3),
            ),
            (random([8, 1, 64, 64]), random([8, 1, 64, 64])),
            // A weight shared by an odd number of entries, its gradient summed over them in
            // shares, one per thread.
            (random([1, 1, 16, 40]), random([5, 1, 40, 900])),
        ];
        for (lhs, rhs) in cases {
            let ([a, b, m, _], [c, d, _, n]) = (lhs.dims(), rhs.dims());
            let upstream = random([a.max(c), b.max(d), m, n]);
            let run = |f: &dyn Fn(Tensor<Ad, 4>, Tensor<Ad, 4>) -> Tensor<Ad, 4>| {
                let (l, r) = (lhs.clone().require_grad(), rhs.clone().require_grad());
                let y = f(l.clone(), r.clone());
                let grads = (y.clone() * upstream.clone()).sum().backward();
                [
                    y.into_data(),
                    l.grad(&grads).unwrap().into_data(),
                    r.grad(&grads).unwrap().into_data(),
                ]
            };
            let ours = run(&|l, r| matmul(l, r));
            let theirs = run(&|l, r| l.matmul(r));
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(a.shape, b.shape);
                a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(1e-4, 1e-4));
            }
            // Untracked under autodiff and on Flex alone: the same values.
            matmul(lhs.clone(), rhs.clone())
                .into_data()
                .assert_approx_eq::<f32>(&theirs[0], Tolerance::rel_abs(1e-4, 1e-4));
            matmul(lhs.clone().inner(), rhs.clone().inner())
                .into_data()
                .assert_approx_eq::<f32>(&theirs[0], Tolerance::rel_abs(1e-4, 1e-4));
        }
    }

    #[test]
    fn contiguous_copies_views_and_passes_gradients() {
        let device = Default::default();
        // Over several of the copy's tasks.
        let x = Tensor::<Flex, 4>::random([3, 1, 200, 120], Distribution::Default, &device);
        let views = [
            x.clone().permute([3, 1, 0, 2]),
            x.clone().slice([1..3, 0..1, 5..60, 3..40]),
            x.clone().swap_dims(2, 3).narrow(3, 10, 30),
            x.clone().flip([2]),
            // Contiguous, at an offset into a larger buffer.
            x.clone().narrow(0, 1, 2),
            x.clone(),
        ];
        for view in views {
            let copy = contiguous(view.clone());
            assert_eq!(copy.dims(), view.dims());
            assert_eq!(copy.into_data(), view.into_data());
        }
        let x = Tensor::<Ad, 3>::random([4, 6, 5], Distribution::Default, &device).require_grad();
        let weights = Tensor::<Ad, 3>::random([5, 4, 6], Distribution::Default, &device);
        let grads = (contiguous(x.clone().permute([2, 0, 1])) * weights.clone())
            .sum()
            .backward();
        x.grad(&grads)
            .unwrap()
            .into_data()
            .assert_eq(&weights.permute([1, 2, 0]).inner().into_data(), true);
    }

    /// Slices of one tensor along each axis, beside two other uses of it (a product, and a sum
    /// whose gradient is shared with another tensor's): the values and every gradient match
    /// Burn's slices, whichever order the backward pass meets them in (a first gradient of
    /// zeros around a slice, a slice added in place, a shared gradient so far copied first).
    #[test]
    fn narrow_values_and_gradients_match_burns() {
        let device = Default::default();
        // Over several of the backward pass's tasks.
        let x = Tensor::<Ad, 3>::random([3, 150, 90], Distribution::Default, &device);
        let z = Tensor::<Ad, 3>::random([3, 150, 90], Distribution::Default, &device);
        let m = Tensor::<Ad, 3>::random([3, 90, 4], Distribution::Default, &device);
        type Narrow<'a> = &'a dyn Fn(Tensor<Ad, 3>, usize, usize, usize) -> Tensor<Ad, 3>;
        for axis in 0..3 {
            let len = x.dims()[axis];
            let ranges = [(0, 1), (1, len - 1), (len / 3, len / 3)];
            let run = |narrow: Narrow| {
                let leaf = |t: &Tensor<Ad, 3>| {
                    Tensor::<Ad, 3>::from_data(t.to_data(), &device).require_grad()
                };
                let (x, z) = (leaf(&x), leaf(&z));
                let mut outputs = Vec::new();
                let mut total = (matmul(x.clone(), m.clone()).powi_scalar(2)).sum()
                    + ((x.clone() + z.clone()) * m.clone().sum_dim(2).swap_dims(1, 2)).sum();
                for (i, &(start, len)) in ranges.iter().enumerate() {
                    let y = narrow(x.clone(), axis, start, len);
                    outputs.push(y.to_data());
                    total = total + (y * (i as f64 + 2.0)).powi_scalar(2).sum();
                }
                let grads = total.backward();
                outputs.push(x.grad(&grads).unwrap().to_data());
                outputs.push(z.grad(&grads).unwrap().to_data());
                outputs
            };
            let ours = run(&|x, axis, start, len| narrow(x, axis, start, len));
            let burn = run(&|x, axis, start, len| x.narrow(axis, start, len));
            for (ours, burn) in ours.iter().zip(&burn) {
                ours.assert_approx_eq::<f32>(burn, Tolerance::rel_abs(1e-5, 1e-5));
            }
        }
    }

    /// The relative-position columns as one pass (plain Flex and under autodiff) give the
    /// batched products' values and gradients (queries and tables), on a grid with three
    /// different axis lengths, key lengths unlike them, several heads, and queries that are a
    /// strided view.
    #[test]
    fn rel_pos_query_values_and_gradients_match_the_products() {
        let device = Default::default();
        let (grid, keys, d, g) = ([3, 5, 4], [2, 6, 3], 9, 2);
        let n = 1 + grid.iter().product::<usize>();
        let q = Tensor::<Ad, 3>::random([n, g, d], Distribution::Default, &device);
        let tables: Vec<_> = (0..3)
            .map(|a| Tensor::<Ad, 3>::random([grid[a], keys[a], d], Distribution::Default, &device))
            .collect();
        let width = d + keys.iter().sum::<usize>();
        let upstream = Tensor::<Ad, 3>::random([g, n, width], Distribution::Default, &device);
        type Columns<'a> = &'a dyn Fn(Tensor<Ad, 3>, [Tensor<Ad, 3>; 3]) -> Tensor<Ad, 3>;
        let run = |f: Columns| {
            let leaf =
                |t: &Tensor<Ad, 3>| Tensor::<Ad, 3>::from_data(t.to_data(), &device).require_grad();
            let q = leaf(&q);
            let tables: [Tensor<Ad, 3>; 3] = std::array::from_fn(|a| leaf(&tables[a]));
            let y = f(q.clone().swap_dims(0, 1), tables.clone());
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let mut out = vec![y.to_data(), q.grad(&grads).unwrap().to_data()];
            out.extend(tables.iter().map(|t| t.grad(&grads).unwrap().to_data()));
            out
        };
        let ours = run(&|q, tables| rel_pos_query(q, 0.37, tables));
        let products = run(&|q, tables| rel_pos_query_by_products(q, 0.37, tables));
        for (ours, products) in ours.iter().zip(&products) {
            ours.assert_approx_eq::<f32>(products, Tolerance::rel_abs(1e-5, 1e-5));
        }
        let plain = rel_pos_query(
            q.inner().swap_dims(0, 1),
            0.37,
            std::array::from_fn(|a| tables[a].clone().inner()),
        );
        plain
            .into_data()
            .assert_approx_eq::<f32>(&products[0], Tolerance::rel_abs(1e-5, 1e-5));
    }

    /// One run of a batch norm on its own graph: the output and the gradients of the input,
    /// gamma and beta.
    fn batch_norm_run<const D: usize>(
        x: &Tensor<Ad, D>,
        upstream: &Tensor<Ad, D>,
        norm: &dyn Fn(Tensor<Ad, D>, Tensor<Ad, 1>, Tensor<Ad, 1>) -> Tensor<Ad, D>,
    ) -> [TensorData; 4] {
        let device = x.device();
        let c = x.dims()[1];
        let gamma = Tensor::<Ad, 1>::from_data(
            TensorData::new((0..c).map(|i| 0.5 + i as f32 * 0.25).collect(), [c]),
            &device,
        )
        .require_grad();
        let beta = Tensor::<Ad, 1>::from_data(
            TensorData::new((0..c).map(|i| i as f32 * 0.1 - 0.2).collect(), [c]),
            &device,
        )
        .require_grad();
        let x = x.clone().require_grad();
        let y = norm(x.clone(), gamma.clone(), beta.clone());
        let grads = (y.clone() * upstream.clone()).sum().backward();
        [
            y.into_data(),
            x.grad(&grads).unwrap().into_data(),
            gamma.grad(&grads).unwrap().into_data(),
            beta.grad(&grads).unwrap().into_data(),
        ]
    }

    #[test]
    fn batch_norm_train_matches_burns_module() {
        use burn::module::Param;
        use burn::nn::BatchNormConfig;
        let device = Default::default();
        let burn_norm = |x: Tensor<Ad, 4>, gamma: Tensor<Ad, 1>, beta: Tensor<Ad, 1>| {
            let mut bn = BatchNormConfig::new(gamma.dims()[0]).init::<Ad>(&device);
            bn.gamma = Param::from_tensor(gamma);
            bn.beta = Param::from_tensor(beta);
            bn.forward(x)
        };
        // Rows long enough for several parallel tasks; channels off-centre and spread.
        for dims in [[8, 6, 40, 30], [3, 5, 1, 1], [2, 4, 3, 7]] {
            let x = Tensor::<Ad, 4>::random(dims, Distribution::Normal(5.0, 3.0), &device);
            let upstream = Tensor::<Ad, 4>::random(dims, Distribution::Default, &device);
            let ours = batch_norm_run(&x, &upstream, &|x, g, b| batch_norm_train(x, g, b, 1e-5).0);
            let theirs = batch_norm_run(&x, &upstream, &burn_norm);
            // The output and x's gradient, then gamma's and beta's: sums over every sample and
            // position of a channel (9,600 terms for the first shape) that cancel to values
            // near 0, whose f32 rounding differs by order to order (7.6e-4 seen): their
            // absolute tolerance grows with the square root of the count.
            let terms = (dims[0] * dims[2] * dims[3]) as f64;
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let abs = if i < 2 { 1e-4 } else { 1e-4 * terms.sqrt() };
                a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(1e-3, abs));
            }
        }
        // The statistics: biased variance over the batch and the trailing axes.
        let x = Tensor::<Ad, 3>::from_floats(
            [[[1.0, 3.0], [0.0, 0.0]], [[5.0, 7.0], [2.0, 2.0]]],
            &device,
        );
        let (_, mean, var) = batch_norm_train(
            x,
            Tensor::ones([2], &device),
            Tensor::zeros([2], &device),
            1e-5,
        );
        assert_eq!(mean.into_data().to_vec::<f32>().unwrap(), [4.0, 1.0]);
        assert_eq!(var.into_data().to_vec::<f32>().unwrap(), [5.0, 1.0]);
    }

    fn assert_same_gradients(
        fast: impl Fn(Tensor<Ad, 3>, Tensor<Ad, 1>, Tensor<Ad, 1>) -> Tensor<Ad, 3>,
        reference: impl Fn(Tensor<Ad, 3>, Tensor<Ad, 1>, Tensor<Ad, 1>) -> Tensor<Ad, 3>,
        tolerance: f32,
    ) {
        let device = Default::default();
        // A strided view, rows not a multiple of the vector width.
        let x = Tensor::<Ad, 3>::random([3, 70, 37], Distribution::Normal(0.5, 2.0), &device)
            .swap_dims(1, 2);
        let gamma = Tensor::<Ad, 1>::random([70], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<Ad, 1>::random([70], Distribution::Normal(0.0, 0.5), &device);
        let weight = Tensor::<Ad, 3>::random([3, 37, 70], Distribution::Normal(0.0, 1.0), &device);
        let run = |f: &dyn Fn(Tensor<Ad, 3>, Tensor<Ad, 1>, Tensor<Ad, 1>) -> Tensor<Ad, 3>| {
            let (x, gamma, beta) = (
                x.clone().require_grad(),
                gamma.clone().require_grad(),
                beta.clone().require_grad(),
            );
            let y = f(x.clone(), gamma.clone(), beta.clone());
            let grads = (y.clone() * weight.clone()).sum().backward();
            let grad = |t: &Tensor<Ad, 1>| t.grad(&grads).map(|g| g.into_data());
            (
                y.into_data(),
                x.grad(&grads).unwrap().into_data(),
                grad(&gamma),
                grad(&beta),
            )
        };
        let (ours, theirs) = (run(&fast), run(&reference));
        let tolerance = Tolerance::absolute(tolerance);
        ours.0.assert_approx_eq::<f32>(&theirs.0, tolerance);
        ours.1.assert_approx_eq::<f32>(&theirs.1, tolerance);
        for (a, b) in [(ours.2, theirs.2), (ours.3, theirs.3)] {
            assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                a.assert_approx_eq::<f32>(&b, tolerance);
            }
        }
        // Without gradients the same values come out.
        let untracked = fast(x.clone(), gamma.clone(), beta.clone()).into_data();
        untracked.assert_approx_eq::<f32>(&theirs.0, tolerance);
    }

    #[test]
    fn gelu_gradients_under_autodiff_match_burn() {
        assert_same_gradients(
            |x, _, _| gelu(x),
            |x, _, _| burn::tensor::activation::gelu(x),
            2e-6,
        );
    }

    #[test]
    fn softmax_gradients_under_autodiff_match_burn() {
        assert_same_gradients(
            |x, _, _| softmax_last(x * 3.0),
            |x, _, _| burn::tensor::activation::softmax(x * 3.0, 2),
            // Burn's backward goes through exp and a division: its gradient rounds differently.
            5e-6,
        );
    }

    /// Keys kept `[3, 70]`: some masked, none masked, all masked.
    fn keep_mask<B: Backend>(device: &B::Device) -> Tensor<B, 2> {
        let values: Vec<f32> = (0..3 * 70)
            .map(|i| match i / 70 {
                0 => f32::from(i % 3 != 0),
                1 => 1.0,
                _ => 0.0,
            })
            .collect();
        Tensor::from_data(TensorData::new(values, [3, 70]), device)
    }

    #[test]
    fn masked_softmax_matches_burns_broadcast_form() {
        let device = Default::default();
        let keep = keep_mask::<Flex>(&device);
        let scores =
            Tensor::<Flex, 4>::random([3, 2, 5, 70], Distribution::Normal(0.0, 3.0), &device);
        let ours = masked_softmax_last(scores.clone(), keep.clone());
        ours.clone().into_data().assert_approx_eq::<f32>(
            &masked_softmax_broadcast(scores, keep.clone()).into_data(),
            Tolerance::absolute(1e-6),
        );
        let rows: Vec<f32> = ours.sum_dim(3).into_data().to_vec().unwrap();
        assert!(
            rows[..20].iter().all(|s| (s - 1.0).abs() < 1e-5),
            "{rows:?}"
        );
        assert!(rows[20..].iter().all(|&s| s == 0.0), "{rows:?}");
        // Rank 2 (attention pooling), and a strided input.
        let scores = Tensor::<Flex, 2>::random([70, 3], Distribution::Default, &device).transpose();
        masked_softmax_last(scores.clone(), keep.clone())
            .into_data()
            .assert_approx_eq::<f32>(
                &masked_softmax_broadcast(scores, keep).into_data(),
                Tolerance::absolute(1e-6),
            );
    }

    #[test]
    fn masked_softmax_gradients_under_autodiff_match_burn() {
        let device = Default::default();
        assert_same_gradients(
            |x, _, _| masked_softmax_last(x * 3.0, keep_mask(&device)),
            |x, _, _| masked_softmax_broadcast(x * 3.0, keep_mask(&device)),
            5e-6,
        );
    }

    #[test]
    fn layer_norm_gradients_under_autodiff_match_burn() {
        let device = Default::default();
        for epsilon in [1e-5, 1e-6] {
            let norm = burn::nn::LayerNormConfig::new(70)
                .with_epsilon(epsilon)
                .init::<Ad>(&device);
            assert_same_gradients(
                |x, gamma, beta| layer_norm(x, gamma, Some(beta), epsilon),
                |x, gamma, beta| {
                    let mut norm = norm.clone();
                    norm.gamma = burn::module::Param::from_tensor(gamma);
                    norm.beta = Some(burn::module::Param::from_tensor(beta));
                    norm.forward(x)
                },
                2e-5,
            );
        }
        // Rows of tiny variance, where epsilon matters; on Flex (no autodiff) too.
        let x = Tensor::<Flex, 2>::random([5, 33], Distribution::Normal(0.0, 1e-3), &device);
        let norm = burn::nn::LayerNormConfig::new(33).init::<Flex>(&device);
        let ours = layer_norm(
            x.clone(),
            norm.gamma.val(),
            norm.beta.as_ref().map(|b| b.val()),
            1e-5,
        );
        ours.into_data()
            .assert_approx_eq::<f32>(&norm.forward(x).into_data(), Tolerance::absolute(1e-5));
    }

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
