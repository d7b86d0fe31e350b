//! MViTv2's depthwise Conv3d (its attention pooling), forward and backward, as 2-D planes of
//! taps.

use super::*;

/// [`crate::depthwise_conv3d`] on Flex: one task per (sample, channel) plane, reading the
/// input through its strides. Gives the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(crate) fn depthwise_conv3d<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Result<Tensor<B, 5>, (Tensor<B, 5>, Tensor<B, 5>)> {
    let (x, weight): (FlexTensor, FlexTensor) = unwrap_pair(x, weight)?;
    Ok(wrap(depthwise_forward(&x, &weight, stride, padding).0))
}

/// What the backward pass of [`depthwise_forward`] needs.
#[derive(Clone, Debug)]
pub(crate) struct DepthwiseSaved {
    x: FlexTensor,
    weight: FlexTensor,
    plane: Plane,
}

/// The depthwise Conv3d of a Flex f32 `x` `[N, C, T, H, W]` (any non-negative strides) with
/// `weight` `[C, 1, kt, kh, kw]`: one task per sample and channel. Also what its backward pass
/// needs.
pub(crate) fn depthwise_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    stride: [usize; 3],
    padding: [usize; 3],
) -> (FlexTensor, DepthwiseSaved) {
    let x = if x.layout().strides().iter().any(|&s| s < 0) {
        contiguous(x)
    } else {
        x.clone()
    };
    let weight = contiguous(weight);
    let shape = x.layout().shape();
    let [n, c, t, h, w] = [shape[0], shape[1], shape[2], shape[3], shape[4]];
    let wshape = weight.layout().shape();
    let kernel = [wshape[2], wshape[3], wshape[4]];
    let size = [t, h, w];
    let out = [0, 1, 2].map(|a| (size[a] + 2 * padding[a] - kernel[a]) / stride[a] + 1);
    let strides: Vec<usize> = x.layout().strides().iter().map(|&s| s as usize).collect();
    let plane = Plane {
        size,
        strides: [strides[2], strides[3], strides[4]],
        kernel,
        stride,
        padding,
        out,
    };
    let src: &[f32] = x.storage();
    let offset = x.layout().start_offset();
    let taps = kernel.iter().product::<usize>();
    let filters = &weight.storage::<f32>()[..c * taps];
    let mut values = vec![0.0f32; n * c * out.iter().product::<usize>()];
    values
        .par_chunks_mut(out.iter().product::<usize>().max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            let (sample, channel) = (i / c, i % c);
            let base = offset + sample * strides[0] + channel * strides[1];
            conv_plane(src, base, &filters[channel * taps..][..taps], plane, dst);
        });
    let y = tensor(values, Shape::from(vec![n, c, out[0], out[1], out[2]]));
    (y, DepthwiseSaved { x, weight, plane })
}

/// The gradients of [`depthwise_forward`] with respect to its input (contiguous) and weight,
/// from the output's gradient: each channel's input gradient is the filter scattered back over
/// the output gradient, its weight gradient the output gradient against each tap's inputs,
/// summed over the batch (one task per channel, so no two tasks write the same value).
pub(crate) fn depthwise_backward(saved: &DepthwiseSaved, grad: &FlexTensor) -> [FlexTensor; 2] {
    let grad = contiguous(grad);
    let (x, plane) = (&saved.x, saved.plane);
    let shape = x.layout().shape().clone();
    let [n, c] = [shape[0], shape[1]];
    let [t, h, w] = plane.size;
    let taps = plane.kernel.iter().product::<usize>();
    let outputs = plane.out.iter().product::<usize>();
    let filters = saved.weight.storage::<f32>();
    let g = grad.storage::<f32>();
    let strides: Vec<usize> = x.layout().strides().iter().map(|&s| s as usize).collect();
    let (src, offset) = (x.storage::<f32>(), x.layout().start_offset());
    // The input gradient as a contiguous tensor: planes of `t * h * w`.
    let dense = Plane {
        strides: [h * w, w, 1],
        ..plane
    };
    let mut dx = vec![0.0f32; n * c * t * h * w];
    dx.par_chunks_mut((t * h * w).max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            let filter = &filters[(i % c) * taps..][..taps];
            conv_plane_adjoint(&g[i * outputs..][..outputs], filter, dense, dst);
        });
    let mut d_weight = vec![0.0f32; c * taps];
    d_weight
        .par_chunks_mut(taps.max(1))
        .enumerate()
        .for_each(|(channel, d)| {
            for sample in 0..n {
                let base = offset + sample * strides[0] + channel * strides[1];
                let g = &g[(sample * c + channel) * outputs..][..outputs];
                conv_plane_weight(src, base, g, plane, d);
            }
        });
    [
        tensor(dx, shape),
        tensor(d_weight, saved.weight.layout().shape().clone()),
    ]
}

/// Geometry of one channel's depthwise convolution (see [`conv_plane`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plane {
    /// Input sizes (T, H, W) and element strides.
    size: [usize; 3],
    strides: [usize; 3],
    /// Kernel, stride and padding per axis.
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    /// Output sizes.
    out: [usize; 3],
}

impl Plane {
    /// The output positions `o` whose input position `o * stride + tap - padding` lies in
    /// `0..size`, on `axis`.
    fn valid(&self, axis: usize, tap: usize) -> std::ops::Range<usize> {
        let (s, p, n) = (self.stride[axis], self.padding[axis], self.size[axis]);
        let first = p.saturating_sub(tap).div_ceil(s);
        let end = if n + p > tap {
            (n + p - tap).div_ceil(s)
        } else {
            0
        };
        first..end.min(self.out[axis]).max(first)
    }
}

vectorised! {
    /// One channel: `dst` (T' x H' x W', zeroed) += the taps of `filter` over the input that
    /// starts at `src[base]` with `plane`'s strides.
    pub(crate) fn conv_plane(src: &[f32], base: usize, filter: &[f32], plane: Plane, dst: &mut [f32]) {
        let (step, sw) = (plane.stride[2], plane.strides[2]);
        for_each_tap_row(
            plane,
            #[inline(always)]
            |tap, out_row, in_row, cols, first| {
                let weight = filter[tap];
                let row = base + in_row;
                let out = &mut dst[out_row..][cols];
                if step == 1 && sw == 1 {
                    for (o, v) in out.iter_mut().zip(&src[row + first..]) {
                        *o += weight * v;
                    }
                } else {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o += weight * src[row + (first + k * step) * sw];
                    }
                }
            },
        );
    }
}

/// Calls `f(tap, out_row, in_row, columns, first_input_column)` for every filter tap and
/// output row of one channel's convolution with `plane`: `out_row` starts the row of outputs
/// (row-major `T' x H' x W'`), `in_row` the input row (through `plane`'s strides), `columns` the
/// valid output columns, whose inputs start at column `first_input_column`.
#[inline(always)]
pub(crate) fn for_each_tap_row(
    plane: Plane,
    mut f: impl FnMut(usize, usize, usize, std::ops::Range<usize>, usize),
) {
    let [_, ho, wo] = plane.out;
    let [kt, kh, kw] = plane.kernel;
    let [st, sh, _] = plane.strides;
    for (t, i) in (0..kt).flat_map(|t| plane.valid(0, t).map(move |i| (t, i))) {
        let ti = i * plane.stride[0] + t - plane.padding[0];
        for (y, j) in (0..kh).flat_map(|y| plane.valid(1, y).map(move |j| (y, j))) {
            let yi = j * plane.stride[1] + y - plane.padding[1];
            for x in 0..kw {
                let cols = plane.valid(2, x);
                let first = cols.start * plane.stride[2] + x - plane.padding[2];
                f(
                    (t * kh + y) * kw + x,
                    (i * ho + j) * wo,
                    ti * st + yi * sh,
                    cols,
                    first,
                );
            }
        }
    }
}

vectorised! {
    /// The adjoint of [`conv_plane`] for one channel: `dst` (the input plane, zeroed, laid out
    /// by `plane`'s strides) += each tap's weight times the output gradient `grad` at the
    /// outputs that read it.
    pub(crate) fn conv_plane_adjoint(grad: &[f32], filter: &[f32], plane: Plane, dst: &mut [f32]) {
        let (step, sw) = (plane.stride[2], plane.strides[2]);
        for_each_tap_row(
            plane,
            #[inline(always)]
            |tap, out_row, in_row, cols, first| {
                let weight = filter[tap];
                let g = &grad[out_row..][cols];
                if step == 1 && sw == 1 {
                    for (d, &g) in dst[in_row + first..][..g.len()].iter_mut().zip(g) {
                        *d += weight * g;
                    }
                } else {
                    for (k, &g) in g.iter().enumerate() {
                        dst[in_row + (first + k * step) * sw] += weight * g;
                    }
                }
            },
        );
    }
}

vectorised! {
    /// One sample and channel's contribution to the weight gradient of [`conv_plane`]: `d`
    /// (one per tap) += the output gradient `grad` against each tap's inputs.
    pub(crate) fn conv_plane_weight(src: &[f32], base: usize, grad: &[f32], plane: Plane, d: &mut [f32]) {
        let (step, sw) = (plane.stride[2], plane.strides[2]);
        for_each_tap_row(
            plane,
            #[inline(always)]
            |tap, out_row, in_row, cols, first| {
                let g = &grad[out_row..][cols];
                let row = base + in_row;
                d[tap] += if step == 1 && sw == 1 {
                    dot(g, &src[row + first..][..g.len()])
                } else {
                    g.iter()
                        .enumerate()
                        .map(|(k, &g)| g * src[row + (first + k * step) * sw])
                        .sum::<f32>()
                };
            },
        );
    }
}
