//! Layer normalisation over the last axis, forward and backward.

use super::*;

/// What the backward pass of [`layer_norm_forward`] needs: the normalised input and each
/// row's reciprocal standard deviation.
#[derive(Clone, Debug)]
pub(crate) struct LayerNormSaved {
    normalised: FlexTensor,
    rstd: std::sync::Arc<Vec<f32>>,
    gamma: FlexTensor,
}

/// Layer normalisation over the last axis of a Flex f32 tensor: `(x - mean) / sqrt(var + eps)
/// * gamma + beta` per row (biased variance, as PyTorch), and what its backward pass needs.
pub(crate) fn layer_norm_forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: Option<FlexTensor>,
    epsilon: f64,
) -> (FlexTensor, LayerNormSaved) {
    let row = last_dim(&x);
    let mut normalised = into_owned(x);
    let rows = normalised.layout().num_elements() / row;
    let mut rstd = vec![0.0f32; rows];
    let chunk = rows_chunk(row);
    normalised
        .storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .zip(rstd.par_chunks_mut(chunk / row))
        .for_each(|(x, r)| {
            for (x, r) in x.chunks_exact_mut(row).zip(r) {
                *r = normalise_row(x, epsilon as f32);
            }
        });
    let gamma = gamma.to_contiguous();
    let beta = beta.map(|b| b.to_contiguous());
    let mut output = tensor(
        vec![0.0; normalised.layout().num_elements()],
        normalised.layout().shape().clone(),
    );
    {
        let (g, b) = (
            gamma.storage::<f32>(),
            beta.as_ref().map(|b| b.storage::<f32>()),
        );
        output
            .storage_mut::<f32>()
            .par_chunks_mut(chunk)
            .zip(normalised.storage::<f32>().par_chunks(chunk))
            .for_each(|(y, x)| {
                for (y, x) in y.chunks_exact_mut(row).zip(x.chunks_exact(row)) {
                    scale_shift_row(x, g, b, y);
                }
            });
    }
    let saved = LayerNormSaved {
        normalised,
        rstd: std::sync::Arc::new(rstd),
        gamma,
    };
    (output, saved)
}

/// The gradients of [`layer_norm_forward`] with respect to the input, gamma and beta.
pub(crate) fn layer_norm_backward(
    saved: &LayerNormSaved,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let row = last_dim(&saved.normalised);
    let chunk = rows_chunk(row);
    let mut grad = into_owned(grad);
    let normalised = saved.normalised.storage::<f32>();
    let gamma = saved.gamma.storage::<f32>();
    // Per task: the partial sums of grad * normalised (gamma's gradient) and of grad (beta's),
    // then the input's gradient in place of grad.
    let partial: Vec<(Vec<f32>, Vec<f32>)> = grad
        .storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .zip(normalised.par_chunks(chunk))
        .zip(saved.rstd.par_chunks(chunk / row))
        .map(|((g, x), r)| {
            let mut sums = (vec![0.0f32; row], vec![0.0f32; row]);
            for ((g, x), &r) in g.chunks_exact_mut(row).zip(x.chunks_exact(row)).zip(r) {
                layer_norm_grad_row(x, gamma, r, g, &mut sums.0, &mut sums.1);
            }
            sums
        })
        .collect();
    let (mut d_gamma, mut d_beta) = (vec![0.0f32; row], vec![0.0f32; row]);
    for (dg, db) in partial {
        d_gamma.iter_mut().zip(dg).for_each(|(a, b)| *a += b);
        d_beta.iter_mut().zip(db).for_each(|(a, b)| *a += b);
    }
    let shape = Shape::new([row]);
    (grad, tensor(d_gamma, shape.clone()), tensor(d_beta, shape))
}
