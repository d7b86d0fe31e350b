//! Matrix products and linear layers.

use super::*;

/// The matrix product `lhs @ rhs` of `[.., M, K]` and `[.., K, N]` tensors, batch axes
/// broadcast (each the same in both or 1 in one), as `lhs.matmul(rhs)`.
///
/// On Flex Burn's product zeroes a buffer for the output and copies it to an aligned one
/// before writing it (two passes over every output on one thread, 9% of a 2s-AGCN training
/// step), and under autodiff the gradient of a broadcast operand (a weight shared by the batch)
/// is one product per batch entry, then their sum. Here the output is written once and the
/// broadcast gradient is accumulated by the products themselves.
///
/// Panics, as `Tensor::matmul`, when the shapes do not multiply.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let weight = Tensor::<Flex, 3>::from_floats([[[1.0, 2.0], [3.0, 4.0]]], &device);
/// let x = Tensor::<Flex, 3>::from_floats([[[1.0], [1.0]], [[0.0], [1.0]]], &device);
/// let y = miga_kernels::matmul(weight, x);
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), [3.0, 7.0, 2.0, 4.0]);
/// ```
pub fn matmul<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    let (l, r) = (lhs.dims(), rhs.dims());
    assert!(
        D >= 2
            && l[D - 1] == r[D - 2]
            && (0..D - 2).all(|i| l[i] == r[i] || l[i] == 1 || r[i] == 1),
        "matmul: {l:?} @ {r:?} do not multiply"
    );
    #[cfg(feature = "flex")]
    let (lhs, rhs) = match flex::matmul(lhs, rhs).or_else(|(l, r)| autodiff::matmul(l, r)) {
        Ok(y) => return y,
        Err(operands) => operands,
    };
    lhs.matmul(rhs)
}

/// `x @ weight + bias` for `x` `[.., in]`, `weight` `[in, out]` (Burn's layout), as Burn's
/// linear layer ([`nn::Linear`] is the module).
///
/// On Flex Burn's linear layer is a product (whose output is zeroed and copied before it is
/// written, as in [`matmul`]) and then a pass adding the bias; under autodiff the weight's
/// gradient is one product per batch entry, then their sum. Here the output starts as the
/// bias and the product adds to it, and the weight's gradient is one product over all rows.
///
/// On other backends the rows are flattened to `[rows, in]` before Burn's layer: its
/// weight gradient for a `[B, .., in]` input is a `[B, in, out]` batch of products summed
/// afterwards, a buffer that grows with the batch (192 MiB for a CMTF training step at batch
/// 32, more than Mesa's software Vulkan driver binds), where one `[in, out]` product does.
pub(crate) fn linear<B: Backend, const D: usize>(
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::linear(weight, bias, x).or_else(|x| autodiff::linear(weight, bias, x)) {
        Ok(y) => return y,
        Err(x) => x,
    };
    linear_on_rows(weight, bias, x)
}

/// Burn's linear on `x` `[.., in]` flattened to `[rows, in]`, then shaped back.
pub(crate) fn linear_on_rows<B: Backend, const D: usize>(
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let (weight, bias) = (weight.clone(), bias.cloned());
    if D <= 2 {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let mut dims = x.dims();
    let y = burn::tensor::module::linear(x.flatten::<2>(0, D - 2), weight, bias);
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Ad;
    use burn::tensor::{Distribution, Tolerance};

    /// Values and gradients of `fast` and `reference` (the same function of `x` and two
    /// parameters) under `Autodiff<Flex>`, with a random weighting of the output as the loss.
    #[test]
    fn matmul_values_and_gradients_match_burns() {
        let device = Default::default();
        let random = |dims: [usize; 4]| {
            Tensor::<Ad, 4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
        };
        // Broadcast batch axes on either side or both, a transposed view, and products large
        // enough to be split over the threads (one big product; a batch of small ones; one
        // gradient summed over many entries).
        let cases = [
            (random([2, 3, 7, 5]).swap_dims(2, 3), random([1, 3, 7, 4])),
            (random([1, 1, 6, 9]), random([2, 3, 9, 5])),
            (
                random([2, 1, 4, 8]),
                random([1, 3, 8, 6]).swap_dims(0, 1).swap_dims(0, 1),
            ),
            (
                random([1, 1, 200, 300]),
                random([4, 1, 250, 300]).swap_dims(2, 3),
            ),
            (random([8, 1, 64, 64]), random([8, 1, 64, 64])),
            // A weight shared by an odd number of entries, its gradient summed over them in
            // shares, one per thread.
            (random([1, 1, 16, 40]), random([5, 1, 40, 900])),
        ];
        for (lhs, rhs) in cases {
            let ([a, b, m, _], [c, d, _, n]) = (lhs.dims(), rhs.dims());
            let upstream = random([a.max(c), b.max(d), m, n]);
            let run = |f: &dyn Fn(Tensor<Ad, 4>, Tensor<Ad, 4>) -> Tensor<Ad, 4>| {
                let (l, r) = (lhs.clone().require_grad(), rhs.clone().require_grad());
                let y = f(l.clone(), r.clone());
                let grads = (y.clone() * upstream.clone()).sum().backward();
                [
                    y.into_data(),
                    l.grad(&grads).unwrap().into_data(),
                    r.grad(&grads).unwrap().into_data(),
                ]
            };
            let ours = run(&|l, r| matmul(l, r));
            let theirs = run(&|l, r| l.matmul(r));
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(a.shape, b.shape);
                a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(1e-4, 1e-4));
            }
            // Untracked under autodiff and on Flex alone: the same values.
            matmul(lhs.clone(), rhs.clone())
                .into_data()
                .assert_approx_eq::<f32>(&theirs[0], Tolerance::rel_abs(1e-4, 1e-4));
            matmul(lhs.clone().inner(), rhs.clone().inner())
                .into_data()
                .assert_approx_eq::<f32>(&theirs[0], Tolerance::rel_abs(1e-4, 1e-4));
        }
    }
}
