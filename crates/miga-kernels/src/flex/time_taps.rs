//! The time-shifted copies of a temporal convolution (its `(k, 1)` taps), and their gradient.

use super::*;

/// [`crate::time_taps`] on Flex; gives the tensor back on any other backend.
pub(crate) fn time_taps<B: Backend>(
    x: Tensor<B, 4>,
    k: usize,
    stride: usize,
) -> Result<Tensor<B, 3>, Tensor<B, 4>> {
    map_primitive(x, |x| time_taps_forward(x, k, stride))
}

/// Output frames of a `(k, 1)` convolution with `k / 2` padding and `stride` over `t` frames,
/// and, for output frame `o` and tap `i`, the input frame it reads (if inside the clip).
pub(crate) fn tap_frames(
    t: usize,
    k: usize,
    stride: usize,
) -> (usize, impl Fn(usize, usize) -> Option<usize>) {
    let p = k / 2;
    let t_out = (t + 2 * p - k) / stride + 1;
    (t_out, move |o: usize, i: usize| {
        (o * stride + i).checked_sub(p).filter(|&f| f < t)
    })
}

/// `[N, C, T, V]` to the columns `[N, C * k, T_out * V]` of [`crate::time_taps`]: each task one
/// channel of one sample, frames copied whole.
pub(crate) fn time_taps_forward(x: FlexTensor, k: usize, stride: usize) -> FlexTensor {
    let x = x.to_contiguous();
    let shape = x.layout().shape().clone();
    let [n, c, t, v] = [shape[0], shape[1], shape[2], shape[3]];
    let (t_out, source) = tap_frames(t, k, stride);
    let src = x.storage::<f32>();
    let mut values = vec![0.0f32; n * c * k * t_out * v];
    if !values.is_empty() {
        values
            .par_chunks_mut(k * t_out * v)
            .zip(src.par_chunks(t * v))
            .for_each(|(dst, frames)| {
                for (i, tap) in dst.chunks_exact_mut(t_out * v).enumerate() {
                    for (o, run) in tap.chunks_exact_mut(v).enumerate() {
                        if let Some(f) = source(o, i) {
                            run.copy_from_slice(&frames[f * v..][..v]);
                        }
                    }
                }
            });
    }
    tensor(values, Shape::new([n, c * k, t_out * v]))
}

/// The backward pass of [`time_taps_forward`] for a clip of `t` frames: every column frame's
/// gradient added to the input frame it was copied from.
pub(crate) fn time_taps_backward(
    grad: FlexTensor,
    t: usize,
    k: usize,
    stride: usize,
) -> FlexTensor {
    let grad = grad.to_contiguous();
    let shape = grad.layout().shape().clone();
    let (t_out, source) = tap_frames(t, k, stride);
    let [n, c, v] = [shape[0], shape[1] / k, shape[2] / t_out];
    let src = grad.storage::<f32>();
    let mut values = vec![0.0f32; n * c * t * v];
    if !values.is_empty() {
        values
            .par_chunks_mut(t * v)
            .zip(src.par_chunks(k * t_out * v))
            .for_each(|(dx, columns)| {
                for (i, tap) in columns.chunks_exact(t_out * v).enumerate() {
                    for (o, run) in tap.chunks_exact(v).enumerate() {
                        if let Some(f) = source(o, i) {
                            for (d, g) in dx[f * v..][..v].iter_mut().zip(run) {
                                *d += g;
                            }
                        }
                    }
                }
            });
    }
    tensor(values, Shape::new([n, c, t, v]))
}
