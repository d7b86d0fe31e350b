//! Exact GELU and softmax over the last axis (also with a per-sample key mask).

use super::*;

/// Exact (erf) GELU, `0.5 x (1 + erf(x / sqrt 2))`, as PyTorch's `nn.GELU()`.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::gelu(x).or_else(autodiff::gelu) {
        Ok(y) => return y,
        Err(x) => x,
    };
    // The formula written out rather than Burn's `gelu`: on Burn 0.21's cubecl backends the
    // latter's gradient is off by up to 7e-4 (its derivative is approximated; the gradient
    // tests found it), the composition's by 3e-7.
    (x.clone() * ((x / std::f64::consts::SQRT_2).erf() + 1.0)) * 0.5
}

/// Softmax over the last dimension, as `burn::tensor::activation::softmax(x, D - 1)`.
pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::softmax_last(x).or_else(autodiff::softmax_last) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::softmax(x, D - 1)
}

/// Softmax over the last axis of `scores` `[B, ..., N]` with each sample's keys masked:
/// `keep` `[B, N]` is 1 for a key and 0 for padding. A masked key gets weight 0, and a row
/// whose keys are all masked is all zeros. The same as
/// `softmax_last(scores + (keep - 1) * 1e4) * keep` with `keep` broadcast over the middle
/// axes, which on Flex walks both broadcasts element by element (7% of an InterFusion
/// training step); here one pass a row, and under autodiff one graph node.
///
/// Panics when `keep` is not `[B, N]` for `scores` `[B, ..., N]`.
pub fn masked_softmax_last<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    keep: Tensor<B, 2>,
) -> Tensor<B, D> {
    let dims = scores.dims();
    assert_eq!(
        keep.dims(),
        [dims[0], dims[D - 1]],
        "masked_softmax_last: a key mask [B, N] for scores {dims:?}"
    );
    #[cfg(feature = "flex")]
    let scores = if primitive::is_flex::<B>()
        && !generic_only()
        && scores.dtype() == burn::tensor::DType::F32
    {
        let mask = keep
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("converted to f32");
        match flex::masked_softmax_last(scores, &mask)
            .or_else(|scores| autodiff::masked_softmax_last(scores, &mask))
        {
            Ok(y) => return y,
            Err(scores) => scores,
        }
    } else {
        scores
    };
    masked_softmax_broadcast(scores, keep)
}

/// [`masked_softmax_last`] through Burn's broadcast operations (every backend but Flex).
fn masked_softmax_broadcast<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    keep: Tensor<B, 2>,
) -> Tensor<B, D> {
    let [b, n] = keep.dims();
    let mut shape = [1; D];
    shape[0] = b;
    shape[D - 1] = n;
    let keep = keep.reshape(shape);
    burn::tensor::activation::softmax(scores + (keep.clone() - 1.0) * 1.0e4, D - 1) * keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_same_gradients;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    #[test]
    fn flex_path_agrees_with_burn_gelu() {
        let device = Default::default();
        let x = Tensor::<Flex, 3>::random([3, 50, 700], Distribution::Normal(0.0, 2.0), &device);
        // A non-contiguous view goes through the fast path too.
        let x = x.swap_dims(1, 2);
        let fast = gelu(x.clone());
        let reference = burn::tensor::activation::gelu(x);
        assert_eq!(fast.dims(), [3, 700, 50]);
        fast.into_data()
            .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::absolute(5e-7));
    }

    #[test]
    fn softmax_matches_f64_and_burn() {
        let device = Default::default();
        // Rows longer and shorter than the vector width, a large spread of values.
        for last in [1, 7, 16, 393, 1569] {
            let x =
                Tensor::<Flex, 3>::random([2, 33, last], Distribution::Normal(0.0, 8.0), &device);
            let fast = softmax_last(x.clone()).into_data().to_vec::<f32>().unwrap();
            let values = x.clone().into_data().to_vec::<f32>().unwrap();
            for (row, out) in values.chunks(last).zip(fast.chunks(last)) {
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
                for (&v, &p) in row.iter().zip(out) {
                    let exact = (v as f64 - max).exp() / sum;
                    assert!(
                        (p as f64 - exact).abs() < 1e-6 * exact.max(1e-3),
                        "{p} vs {exact}"
                    );
                }
            }
            let reference = burn::tensor::activation::softmax(x, 2).into_data();
            TensorData::new(fast, [2, 33, last])
                .assert_approx_eq::<f32>(&reference, Tolerance::absolute(5e-6));
        }
    }

    #[test]
    fn gelu_gradients_under_autodiff_match_burn() {
        assert_same_gradients(
            |x, _, _| gelu(x),
            |x, _, _| burn::tensor::activation::gelu(x),
            2e-6,
        );
    }

    #[test]
    fn softmax_gradients_under_autodiff_match_burn() {
        assert_same_gradients(
            |x, _, _| softmax_last(x * 3.0),
            |x, _, _| burn::tensor::activation::softmax(x * 3.0, 2),
            // Burn's backward goes through exp and a division: its gradient rounds differently.
            5e-6,
        );
    }

    /// Keys kept `[3, 70]`: some masked, none masked, all masked.
    fn keep_mask<B: Backend>(device: &B::Device) -> Tensor<B, 2> {
        let values: Vec<f32> = (0..3 * 70)
            .map(|i| match i / 70 {
                0 => f32::from(i % 3 != 0),
                1 => 1.0,
                _ => 0.0,
            })
            .collect();
        Tensor::from_data(TensorData::new(values, [3, 70]), device)
    }

    #[test]
    fn masked_softmax_matches_burns_broadcast_form() {
        let device = Default::default();
        let keep = keep_mask::<Flex>(&device);
        let scores =
            Tensor::<Flex, 4>::random([3, 2, 5, 70], Distribution::Normal(0.0, 3.0), &device);
        let ours = masked_softmax_last(scores.clone(), keep.clone());
        ours.clone().into_data().assert_approx_eq::<f32>(
            &masked_softmax_broadcast(scores, keep.clone()).into_data(),
            Tolerance::absolute(1e-6),
        );
        let rows: Vec<f32> = ours.sum_dim(3).into_data().to_vec().unwrap();
        assert!(
            rows[..20].iter().all(|s| (s - 1.0).abs() < 1e-5),
            "{rows:?}"
        );
        assert!(rows[20..].iter().all(|&s| s == 0.0), "{rows:?}");
        // Rank 2 (attention pooling), and a strided input.
        let scores = Tensor::<Flex, 2>::random([70, 3], Distribution::Default, &device).transpose();
        masked_softmax_last(scores.clone(), keep.clone())
            .into_data()
            .assert_approx_eq::<f32>(
                &masked_softmax_broadcast(scores, keep).into_data(),
                Tolerance::absolute(1e-6),
            );
    }

    #[test]
    fn masked_softmax_gradients_under_autodiff_match_burn() {
        let device = Default::default();
        assert_same_gradients(
            |x, _, _| masked_softmax_last(x * 3.0, keep_mask(&device)),
            |x, _, _| masked_softmax_broadcast(x * 3.0, keep_mask(&device)),
            5e-6,
        );
    }
}
