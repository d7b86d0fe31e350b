//! Batch normalisation with batch statistics (training) over Flex f32 tensors `[N, C, ...]`:
//! the statistics in one pass over the input, the output in one more, and the backward pass in
//! two (Burn's composition of the same function is about a dozen passes, forward and backward).

use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::tensor::Shape;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{CHUNK, contiguous, lane_sum, sum, tensor};

/// What the backward pass of [`batch_norm_forward`] needs: the input (contiguous), each
/// channel's batch mean and reciprocal standard deviation, and the scale.
#[derive(Clone, Debug)]
pub(crate) struct BatchNormSaved {
    x: FlexTensor,
    mean: Arc<Vec<f32>>,
    rstd: Arc<Vec<f32>>,
    gamma: Vec<f32>,
}

/// `[N, C, ...]` as `(N, C, L)`: rows of `L` values, row `n * C + c` of channel `c`.
fn rows_of(x: &FlexTensor) -> (usize, usize, usize) {
    let shape = x.layout().shape();
    let length = shape[2..].iter().product();
    (shape[0], shape[1], length)
}

/// Rows per parallel task for rows of `length` values.
fn rows_per_task(length: usize) -> usize {
    CHUNK.div_ceil(length.max(1))
}

/// `f` over every row `(index, values)` of `x` (rows of `length`), in parallel: one result a row.
fn per_row<T: Send>(
    x: &[f32],
    length: usize,
    f: impl Fn(usize, &[f32]) -> T + Sync + Send,
) -> Vec<T> {
    let per_task = rows_per_task(length);
    x.par_chunks(per_task * length.max(1))
        .enumerate()
        .flat_map_iter(|(task, rows)| {
            let f = &f;
            rows.chunks_exact(length)
                .enumerate()
                .map(move |(i, row)| f(task * per_task + i, row))
        })
        .collect()
}

/// `rows` rows of `length` values, each written by `f(index, row)` (every value of it), in
/// parallel.
fn write_rows(
    rows: usize,
    length: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let total = rows * length;
    let per_task = rows_per_task(length);
    let mut values = Vec::with_capacity(total);
    values.spare_capacity_mut()[..total]
        .par_chunks_mut(per_task * length.max(1))
        .enumerate()
        .for_each(|(task, dst)| {
            for (i, row) in dst.chunks_exact_mut(length.max(1)).enumerate() {
                f(task * per_task + i, row);
            }
        });
    // SAFETY: `f` wrote every value of every row.
    unsafe { values.set_len(total) };
    values
}

/// `(x - mean_c) / sqrt(var_c + epsilon) * gamma_c + beta_c` with the biased batch variance of
/// each channel `c` over the batch and the trailing axes, as PyTorch's `BatchNorm` in training;
/// also the batch means and variances, and what the backward pass needs.
pub(crate) fn batch_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> (FlexTensor, Vec<f32>, Vec<f32>, BatchNormSaved) {
    let x = contiguous(x);
    let (n, c, length) = rows_of(&x);
    let values = x.storage::<f32>();
    // Each row's mean and sum of squared deviations (the row is in cache for the second
    // pass), then each channel's by Chan's combination of equal-length parts.
    let stats = per_row(values, length, |_, row| {
        let mean = sum(row) / length as f32;
        (mean, squared_deviations(row, mean))
    });
    let count = (n * length) as f32;
    let mut mean = vec![0.0f32; c];
    let mut var = vec![0.0f32; c];
    for (channel, (m, v)) in mean.iter_mut().zip(&mut var).enumerate() {
        let rows = || (0..n).map(|i| stats[i * c + channel]);
        *m = rows().map(|(m, _)| m).sum::<f32>() / n as f32;
        let spread: f32 = rows().map(|(r, _)| (r - *m) * (r - *m)).sum();
        *v = (rows().map(|(_, d)| d).sum::<f32>() + length as f32 * spread) / count;
    }
    let rstd: Vec<f32> = var
        .iter()
        .map(|&v| 1.0 / (v + epsilon as f32).sqrt())
        .collect();
    let gamma = contiguous(gamma).storage::<f32>().to_vec();
    let beta = contiguous(beta);
    let beta = beta.storage::<f32>();
    // y = x * scale + shift, per channel.
    let affine: Vec<(f32, f32)> = (0..c)
        .map(|i| {
            let scale = gamma[i] * rstd[i];
            (scale, beta[i] - mean[i] * scale)
        })
        .collect();
    let out = write_rows(n * c, length, |row, dst| {
        let (scale, shift) = affine[row % c];
        let src = &values[row * length..][..length];
        for (d, &s) in dst.iter_mut().zip(src) {
            d.write(s * scale + shift);
        }
    });
    let y = tensor(out, x.layout().shape().clone());
    let saved = BatchNormSaved {
        x,
        mean: Arc::new(mean.clone()),
        rstd: Arc::new(rstd),
        gamma,
    };
    (y, mean, var, saved)
}

/// The gradients of [`batch_norm_forward`]'s output with respect to the input, gamma and beta,
/// from the output's gradient `grad`.
pub(crate) fn batch_norm_backward(saved: &BatchNormSaved, grad: &FlexTensor) -> [FlexTensor; 3] {
    let grad = contiguous(grad);
    let (n, c, length) = rows_of(&saved.x);
    let (x, g) = (saved.x.storage::<f32>(), grad.storage::<f32>());
    let (mean, rstd) = (&saved.mean, &saved.rstd);
    // Per row: the sum of the gradient and of the gradient times the centred input.
    let sums = per_row(g, length, |row, g| {
        let x = &x[row * length..][..length];
        (sum(g), centred_dot(g, x, mean[row % c]))
    });
    let count = (n * length) as f32;
    let mut d_gamma = vec![0.0f32; c];
    let mut d_beta = vec![0.0f32; c];
    // dx = a * g + b * x + k per channel (the usual formula, expanded).
    let mut coefficients = vec![(0.0f32, 0.0f32, 0.0f32); c];
    for channel in 0..c {
        let (sum_g, sum_gx) = (0..n)
            .map(|i| sums[i * c + channel])
            .fold((0.0, 0.0), |(a, b), (g, gx)| (a + g, b + gx));
        let r = rstd[channel];
        d_beta[channel] = sum_g;
        d_gamma[channel] = sum_gx * r;
        let a = saved.gamma[channel] * r;
        let b = -a * r * r * sum_gx / count;
        let k = -a * sum_g / count - b * mean[channel];
        coefficients[channel] = (a, b, k);
    }
    let dx = write_rows(n * c, length, |row, dst| {
        let (a, b, k) = coefficients[row % c];
        let (g, x) = (&g[row * length..][..length], &x[row * length..][..length]);
        for ((d, &g), &x) in dst.iter_mut().zip(g).zip(x) {
            d.write(a * g + b * x + k);
        }
    });
    [
        tensor(dx, saved.x.layout().shape().clone()),
        tensor(d_gamma, Shape::new([c])),
        tensor(d_beta, Shape::new([c])),
    ]
}

/// `sum((x - mean)^2)`.
fn squared_deviations(x: &[f32], mean: f32) -> f32 {
    lane_sum(x, x, |x, _| (x - mean) * (x - mean))
}

/// `sum(g * (x - mean))`.
fn centred_dot(g: &[f32], x: &[f32], mean: f32) -> f32 {
    lane_sum(g, x, |g, x| g * (x - mean))
}
