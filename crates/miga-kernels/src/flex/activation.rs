//! GELU and softmax (with a key mask) over the last axis, forward and backward.

use super::*;

/// [`crate::gelu`] on Flex; gives the tensor back on any other backend.
pub(crate) fn gelu<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, gelu_forward)
}

/// [`crate::softmax_last`] on Flex, whole rows per task; gives the tensor back on any other
/// backend.
pub(crate) fn softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, softmax_forward)
}

/// [`crate::masked_softmax_last`] on Flex; gives the tensor back on any other backend.
pub(crate) fn masked_softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    keep: &[f32],
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, |x| masked_softmax_forward(x, keep))
}

/// Exact GELU of a Flex f32 tensor.
pub(crate) fn gelu_forward(x: FlexTensor) -> FlexTensor {
    map_flex(x, CHUNK, gelu_slice)
}

/// The gradient through GELU at `x`: `grad * (Phi(x) + x phi(x))`.
pub(crate) fn gelu_backward(x: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    map_with(x, grad, CHUNK, gelu_grad_slice)
}

/// Softmax over the last axis of a Flex f32 tensor.
pub(crate) fn softmax_forward(x: FlexTensor) -> FlexTensor {
    let row = last_dim(&x);
    map_flex(x, rows_chunk(row), move |rows: &mut [f32]| {
        rows.chunks_exact_mut(row).for_each(softmax_row)
    })
}

/// [`crate::masked_softmax_last`] on Flex: softmax over the last axis of `x` `[B, ..., N]`
/// where `keep` (`[B, N]`, 1 or 0) marks each sample's keys; a sample at a time per task.
pub(crate) fn masked_softmax_forward(x: FlexTensor, keep: &[f32]) -> FlexTensor {
    let row = last_dim(&x);
    let samples = (keep.len() / row).max(1);
    let per_sample = (x.layout().num_elements() / samples).max(1);
    let mut output = into_owned(x);
    output
        .storage_mut::<f32>()
        .par_chunks_mut(per_sample)
        .zip(keep.par_chunks(row))
        .for_each(|(rows, keep)| {
            if keep.iter().all(|&k| k == 0.0) {
                rows.fill(0.0);
                return;
            }
            for row in rows.chunks_exact_mut(row) {
                for (v, &k) in row.iter_mut().zip(keep) {
                    *v = if k != 0.0 { *v } else { f32::NEG_INFINITY };
                }
                softmax_row(row);
            }
        });
    output
}

/// The gradient through a softmax over the last axis whose output was `y`:
/// `y * (grad - sum(grad * y))` per row.
pub(crate) fn softmax_backward(y: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    let row = last_dim(y);
    map_with(y, grad, rows_chunk(row), move |y, g| {
        for (y, g) in y.chunks_exact(row).zip(g.chunks_exact_mut(row)) {
            softmax_grad_row(y, g)
        }
    })
}
