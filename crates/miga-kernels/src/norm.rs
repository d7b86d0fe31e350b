//! Layer normalisation and batch normalisation with batch statistics.

use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Ad, assert_same_gradients};
    use burn::backend::Flex;
    use burn::tensor::{Distribution, TensorData, Tolerance};

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
}
