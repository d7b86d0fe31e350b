//! Turning a modality's features into fusion tokens.

use burn::module::{Initializer, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};
use miga_kernels::nn::Linear;

use super::cross::Stream;
use super::time::clock_code;

/// Projects features `[B, T, R, C]` (R tokens per time step: grid cells, body parts, or 1)
/// to `[B, T * R, D]` tokens in time-major order, adding `embedding` `[R, D]` (modality plus
/// region embeddings) and the shared clock code of each time step. `padding` `[B, T]` marks
/// padded time steps; each of their R tokens is padded.
pub fn embed_steps<B: Backend>(
    projection: &Linear<B>,
    x: Tensor<B, 4>,
    padding: Tensor<B, 2, Bool>,
    embedding: Tensor<B, 2>,
    clock_scale: f64,
) -> Stream<B> {
    let [b, t, r, _] = x.dims();
    let d = embedding.dims()[1];
    let clock = clock_code(padding.clone(), d, clock_scale).reshape([b, t, 1, d]);
    // Padded steps are zeroed first: whatever they hold (NaN included) cannot leak.
    let c = x.dims()[3];
    let x = x.mask_fill(
        padding.clone().reshape([b, t, 1, 1]).expand([b, t, r, c]),
        0.0,
    );
    let tokens = projection.forward(x) + clock + embedding.reshape([1, 1, r, d]);
    Stream {
        tokens: tokens.reshape([b, t * r, d]),
        padding: padding
            .reshape([b, t, 1])
            .expand([b, t, r])
            .reshape([b, t * r]),
    }
}

/// `[n, d]` (or `[d]`) parameters drawn from N(0, 0.02), as ViT-style embeddings.
pub fn embedding<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Initializer::Normal {
        mean: 0.0,
        std: 0.02,
    }
    .init(shape, device)
}
