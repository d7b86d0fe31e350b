//! Pooling: masked mean and attention pooling over a sequence, and fixed region averages
//! (a spatial grid of video tokens, body parts of skeleton joints).

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};
use miga_kernels::nn::Linear;

use miga_kernels::matmul;

/// Mean of the valid tokens of `x` `[B, N, D]` (`padding` `[B, N]` true = ignore), and whether
/// each sample has any valid token `[B]`. A sample with none pools to zeros.
pub fn masked_mean<B: Backend>(
    x: Tensor<B, 3>,
    padding: Tensor<B, 2, Bool>,
) -> (Tensor<B, 2>, Tensor<B, 1, Bool>) {
    let [b, _, d] = x.dims();
    let valid = padding.bool_not().float();
    let count = valid.clone().sum_dim(1);
    let sum = (x * valid.unsqueeze_dim::<3>(2)).sum_dim(1).reshape([b, d]);
    let present = count.clone().greater_elem(0.0).reshape([b]);
    (sum / count.clamp_min(1.0), present)
}

/// Attention pooling: a learned score per token, softmax over the valid tokens, weighted sum.
/// The score has no bias: the softmax would cancel it.
#[derive(Module, Debug)]
pub struct AttentionPool<B: Backend> {
    /// Token score.
    pub score: Linear<B>,
}

impl<B: Backend> AttentionPool<B> {
    /// A pool over `d_model`-wide tokens.
    pub fn new(d_model: usize, device: &B::Device) -> Self {
        Self {
            score: LinearConfig::new(d_model, 1)
                .with_bias(false)
                .init(device)
                .into(),
        }
    }

    /// Pools `x` `[B, N, D]` to `[B, D]`; also returns the weights `[B, N]` (zero on padding,
    /// and everywhere for a sample with no valid token).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        padding: Tensor<B, 2, Bool>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [b, n, d] = x.dims();
        let scores = self.score.forward(x.clone()).reshape([b, n]);
        let weights = miga_kernels::masked_softmax_last(scores, padding.bool_not().float());
        let pooled = matmul(weights.clone().unsqueeze_dim::<3>(1), x).reshape([b, d]);
        (pooled, weights)
    }
}

/// The cells of an adaptive `k x k` grid over an `h x w` map (PyTorch's adaptive pooling bins:
/// `floor(i * n / k)` to `ceil((i + 1) * n / k)`), as row-major index lists.
pub fn grid_regions(h: usize, w: usize, k: usize) -> Vec<Vec<usize>> {
    let bins = |n: usize| -> Vec<(usize, usize)> {
        (0..k)
            .map(|i| (i * n / k, ((i + 1) * n).div_ceil(k)))
            .collect()
    };
    let (rows, cols) = (bins(h), bins(w));
    rows.iter()
        .flat_map(|&(r0, r1)| {
            cols.iter().map(move |&(c0, c1)| {
                (r0..r1)
                    .flat_map(|r| (c0..c1).map(move |c| r * w + c))
                    .collect()
            })
        })
        .collect()
}

/// Averages `x` `[M, n, C]` over each region (index lists into `0..n`): `[M, regions, C]`.
pub fn pool_regions<B: Backend>(x: Tensor<B, 3>, regions: &[Vec<usize>]) -> Tensor<B, 3> {
    let n = x.dims()[1];
    let p = regions.len();
    let mut weights = vec![0.0f32; p * n];
    for (r, region) in regions.iter().enumerate() {
        for &i in region {
            weights[r * n + i] = 1.0 / region.len() as f32;
        }
    }
    let matrix = Tensor::<B, 3>::from_data(TensorData::new(weights, [1, p, n]), &x.device());
    matmul(matrix, x)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    type B = Flex;

    #[test]
    fn grid_regions_are_adaptive_pooling_bins() {
        assert_eq!(grid_regions(2, 3, 1), vec![vec![0, 1, 2, 3, 4, 5]]);
        // 7 -> 2 bins: [0, 4) and [3, 7), overlapping as PyTorch's.
        let r = grid_regions(7, 7, 2);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].len(), 16);
        assert!(r[0].contains(&(3 * 7 + 3)) && r[3].contains(&(3 * 7 + 3)));
    }

    #[test]
    fn masked_mean_ignores_padding_and_reports_absence() {
        let device = Default::default();
        let x =
            Tensor::<B, 3>::from_data([[[1.0], [3.0], [100.0]], [[5.0], [6.0], [7.0]]], &device);
        let padding =
            Tensor::<B, 2, Bool>::from_data([[false, false, true], [true, true, true]], &device);
        let (mean, present) = masked_mean(x, padding);
        assert_eq!(mean.into_data().to_vec::<f32>().unwrap(), vec![2.0, 0.0]);
        assert_eq!(
            present.into_data().to_vec::<bool>().unwrap(),
            vec![true, false]
        );
    }

    #[test]
    fn pool_regions_averages_each_region() {
        let device = Default::default();
        let x = Tensor::<B, 3>::from_data([[[1.0, 10.0], [3.0, 30.0], [8.0, 80.0]]], &device);
        let y = pool_regions(x, &[vec![0, 1], vec![2], vec![0, 1, 2]]);
        assert_eq!(
            y.into_data().to_vec::<f32>().unwrap(),
            vec![2.0, 20.0, 8.0, 80.0, 4.0, 40.0]
        );
    }
}
