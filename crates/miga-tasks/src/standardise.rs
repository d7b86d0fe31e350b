//! Per-channel standardisation of backbone features, with statistics of the training split.
//!
//! Features of frozen backbones differ in scale between streams (2s-AGCN tokens have a spread
//! of tens, SwinFace embeddings of tenths) and often share a large common component across
//! items; the fusion module's LayerNorms work per token and keep that component. Subtracting
//! each channel's training mean and dividing by its standard deviation puts every stream on one
//! scale. The statistics are part of the model (saved with it, never trained), so evaluation and
//! prediction use the training split's.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::TensorData;

/// A channel's standard deviation is floored at this share of the mean over channels: a channel
/// (nearly) constant on the training set, such as a ReLU output that is always 0 there, must
/// not blow up a small difference at test time.
const MIN_RELATIVE_STD: f64 = 0.1;

/// Per-channel mean and standard deviation over every row (`width` channels) of every tensor
/// in `data`.
pub(crate) fn channel_moments<'a>(
    data: impl IntoIterator<Item = &'a TensorData>,
    width: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut sum = vec![0.0f64; width];
    let mut squares = vec![0.0f64; width];
    let mut rows = 0usize;
    for tensor in data {
        let owned;
        let values = match tensor.as_slice::<f32>() {
            Ok(values) => values,
            Err(_) => {
                owned = tensor.to_vec::<f32>().unwrap_or_default();
                &owned
            }
        };
        for row in values.chunks_exact(width) {
            for (c, &v) in row.iter().enumerate() {
                sum[c] += f64::from(v);
                squares[c] += f64::from(v) * f64::from(v);
            }
            rows += 1;
        }
    }
    if rows == 0 {
        // No data (a stream the features do not have): the identity.
        return (vec![0.0; width], vec![1.0; width]);
    }
    let n = rows as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = squares
        .iter()
        .zip(&mean)
        .map(|(q, m)| (q / n - m * m).max(0.0).sqrt())
        .collect();
    (mean, std)
}

/// `(x - mean) / std` over the last dimension.
#[derive(Module, Debug)]
pub struct Standardise<B: Backend> {
    /// Channel means `[C]`.
    pub mean: Param<Tensor<B, 1>>,
    /// Channel reciprocal standard deviations `[C]`.
    pub scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> Standardise<B> {
    /// The identity over `width` channels (statistics are then loaded with a checkpoint, or set
    /// by [`Standardise::fit`]).
    pub fn identity(width: usize, device: &B::Device) -> Self {
        Self::new(vec![0.0; width], vec![1.0; width], device)
    }

    fn new(mean: Vec<f32>, scale: Vec<f32>, device: &B::Device) -> Self {
        let fixed = |values: Vec<f32>| {
            let n = values.len();
            Param::from_tensor(Tensor::from_data(TensorData::new(values, [n]), device))
                .set_require_grad(false)
        };
        Self {
            mean: fixed(mean),
            scale: fixed(scale),
        }
    }

    /// Statistics of every row (`width` channels) of every tensor in `data`.
    pub fn fit<'a>(
        data: impl IntoIterator<Item = &'a TensorData>,
        width: usize,
        device: &B::Device,
    ) -> Self {
        let (mean, std) = channel_moments(data, width);
        let floor = (MIN_RELATIVE_STD * std.iter().sum::<f64>() / width.max(1) as f64).max(1e-12);
        let scale = std.iter().map(|s| (1.0 / s.max(floor)) as f32).collect();
        Self::new(mean.into_iter().map(|m| m as f32).collect(), scale, device)
    }

    /// Standardises `x` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let mut shape = [1; D];
        shape[D - 1] = self.mean.dims()[0];
        (x - self.mean.val().reshape(shape)) * self.scale.val().reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use super::*;

    #[test]
    fn standardises_with_the_fitted_statistics_and_never_trains() {
        let device = Default::default();
        // The second channel is constant: its deviation is floored at a tenth of the mean
        // (1 / 2), so a test value 0.1 away moves 0.1 / 0.05, not 0.1 / 0.
        let rows = TensorData::new(vec![1.0f32, 10.0, 3.0, 10.0], [2, 2]);
        let norm = Standardise::<Autodiff<Flex>>::fit([&rows], 2, &device);
        let test = TensorData::new(vec![1.0f32, 10.0, 3.0, 10.1], [2, 2]);
        let x = Tensor::<Autodiff<Flex>, 2>::from_data(test, &device).require_grad();
        let y = norm.forward(x.clone());
        y.clone().into_data().assert_approx_eq::<f32>(
            &TensorData::new(vec![-1.0f32, 0.0, 1.0, 2.0], [2, 2]),
            burn::tensor::Tolerance::absolute(1e-4),
        );
        let grads = y.sum().backward();
        assert!(x.grad(&grads).is_some());
        assert!(norm.mean.val().grad(&grads).is_none());
    }
}
