//! Linear layers applied to token tensors.

use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `linear` over the last axis of `x` `[..., C]`, computed on the rows flattened to
/// `[rows, C]`. Same values as `linear.forward(x)`, but Burn 0.21's backward of a batched
/// linear layer forms one weight gradient per batch entry and then sums them (`[B, C, D]`
/// floats: 32 MiB for a 256x1024 layer at batch 32); flat rows give one matrix product.
pub fn linear_rows<B: Backend, const D: usize>(
    linear: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let rows = dims[..D - 1].iter().product();
    let y = linear.forward(x.reshape([rows, dims[D - 1]]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}
