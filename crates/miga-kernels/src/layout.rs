//! Layout copies: views made contiguous, slices, the head swap of attention.

use super::*;

/// `x` with its elements in a contiguous row-major buffer, for a view (a slice, a permutation)
/// about to be reshaped or read many times: the same values, and under autodiff the same
/// gradient. On Flex a copy in parallel runs (Flex's own, which a reshape of a view makes,
/// goes element by element on one thread); on other backends `x` as it is, each backend
/// copying when it needs to.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let x = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
/// let y = miga_kernels::contiguous(x.clone().transpose()).reshape([4]);
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), [1.0, 3.0, 2.0, 4.0]);
/// ```
pub fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::contiguous_layout(x).or_else(autodiff::contiguous) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x
}

/// `x.narrow(axis, start, len)`: the `len` entries along `axis` from `start`, a view.
///
/// Under autodiff on Flex one graph node whose backward pass adds the gradient into the slice
/// of the input's gradient so far, in one parallel pass. Burn's fills a zeroed buffer the size
/// of the input, copies it again to assign the slice and adds it to the gradient so far: three
/// passes over the whole input, each on one thread (a seventh of an MViTv2-S training step,
/// which splits the class token from the token grid in every block).
///
/// Panics, as `Tensor::narrow`, when the range is not within the axis.
///
/// ```
/// use burn::backend::{Autodiff, Flex};
/// use burn::tensor::Tensor;
///
/// type B = Autodiff<Flex>;
/// let device = Default::default();
/// let x = Tensor::<B, 2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &device).require_grad();
/// let (class, grid) = (miga_kernels::narrow(x.clone(), 1, 0, 1), miga_kernels::narrow(x.clone(), 1, 1, 2));
/// let grads = (class * 2.0 + grid.sum_dim(1)).sum().backward();
/// let grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
/// assert_eq!(grad, [2.0, 1.0, 1.0, 2.0, 1.0, 1.0]);
/// ```
pub fn narrow<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    axis: usize,
    start: usize,
    len: usize,
) -> Tensor<B, D> {
    let dims = x.dims();
    assert!(
        axis < D && start + len <= dims[axis],
        "narrow: {start}..{} is not within axis {axis} of {dims:?}",
        start + len
    );
    #[cfg(feature = "flex")]
    let x = match autodiff::narrow(x, axis, start, len) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x.narrow(axis, start, len)
}

/// `[A, P, Q, R]` to `[A, Q, P, R]` in a contiguous layout: the change between tokens
/// `[B, N, H, Dh]` and attention heads `[B, H, N, Dh]`, both ways (it is its own inverse).
///
/// Burn's `swap_dims(1, 2)` is a view, and the reshape that follows it (forward, or in the
/// backward pass) copies it element by element on the CPU backend; this copies runs of `R`
/// values, and under autodiff its backward pass is the same swap.
pub fn swap_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match flex::swap_heads(x).or_else(autodiff::swap_heads) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x.swap_dims(1, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Ad, assert_same_gradients};
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn swap_heads_values_and_gradients_match_swap_dims() {
        assert_same_gradients(
            |x, _, _| {
                let [b, n, d] = x.dims();
                let heads = swap_heads(x.reshape([b, n, 5, d / 5]));
                // Back to tokens, as attention's output is.
                swap_heads(heads * 2.0).reshape([b, n, d])
            },
            |x, _, _| {
                let [b, n, d] = x.dims();
                let heads = x.reshape([b, n, 5, d / 5]).swap_dims(1, 2);
                (heads * 2.0).swap_dims(1, 2).reshape([b, n, d])
            },
            0.0,
        );
        // A strided input on Flex.
        let device = Default::default();
        let x =
            Tensor::<Flex, 4>::random([2, 3, 4, 5], Distribution::Default, &device).swap_dims(0, 2);
        let expected = x.clone().swap_dims(1, 2).into_data();
        assert_eq!(swap_heads(x).into_data(), expected);
    }

    #[test]
    fn contiguous_copies_views_and_passes_gradients() {
        let device = Default::default();
        // Over several of the copy's tasks.
        let x = Tensor::<Flex, 4>::random([3, 1, 200, 120], Distribution::Default, &device);
        let views = [
            x.clone().permute([3, 1, 0, 2]),
            x.clone().slice([1..3, 0..1, 5..60, 3..40]),
            x.clone().swap_dims(2, 3).narrow(3, 10, 30),
            x.clone().flip([2]),
            // Contiguous, at an offset into a larger buffer.
            x.clone().narrow(0, 1, 2),
            x.clone(),
        ];
        for view in views {
            let copy = contiguous(view.clone());
            assert_eq!(copy.dims(), view.dims());
            assert_eq!(copy.into_data(), view.into_data());
        }
        let x = Tensor::<Ad, 3>::random([4, 6, 5], Distribution::Default, &device).require_grad();
        let weights = Tensor::<Ad, 3>::random([5, 4, 6], Distribution::Default, &device);
        let grads = (contiguous(x.clone().permute([2, 0, 1])) * weights.clone())
            .sum()
            .backward();
        x.grad(&grads)
            .unwrap()
            .into_data()
            .assert_eq(&weights.permute([1, 2, 0]).inner().into_data(), true);
    }

    /// Slices of one tensor along each axis, beside two other uses of it (a product, and a sum
    /// whose gradient is shared with another tensor's): the values and every gradient match
    /// Burn's slices, whichever order the backward pass meets them in (a first gradient of
    /// zeros around a slice, a slice added in place, a shared gradient so far copied first).
    #[test]
    fn narrow_values_and_gradients_match_burns() {
        let device = Default::default();
        // Over several of the backward pass's tasks.
        let x = Tensor::<Ad, 3>::random([3, 150, 90], Distribution::Default, &device);
        let z = Tensor::<Ad, 3>::random([3, 150, 90], Distribution::Default, &device);
        let m = Tensor::<Ad, 3>::random([3, 90, 4], Distribution::Default, &device);
        type Narrow<'a> = &'a dyn Fn(Tensor<Ad, 3>, usize, usize, usize) -> Tensor<Ad, 3>;
        for axis in 0..3 {
            let len = x.dims()[axis];
            let ranges = [(0, 1), (1, len - 1), (len / 3, len / 3)];
            let run = |narrow: Narrow| {
                let leaf = |t: &Tensor<Ad, 3>| {
                    Tensor::<Ad, 3>::from_data(t.to_data(), &device).require_grad()
                };
                let (x, z) = (leaf(&x), leaf(&z));
                let mut outputs = Vec::new();
                let mut total = (matmul(x.clone(), m.clone()).powi_scalar(2)).sum()
                    + ((x.clone() + z.clone()) * m.clone().sum_dim(2).swap_dims(1, 2)).sum();
                for (i, &(start, len)) in ranges.iter().enumerate() {
                    let y = narrow(x.clone(), axis, start, len);
                    outputs.push(y.to_data());
                    total = total + (y * (i as f64 + 2.0)).powi_scalar(2).sum();
                }
                let grads = total.backward();
                outputs.push(x.grad(&grads).unwrap().to_data());
                outputs.push(z.grad(&grads).unwrap().to_data());
                outputs
            };
            let ours = run(&|x, axis, start, len| narrow(x, axis, start, len));
            let burn = run(&|x, axis, start, len| x.narrow(axis, start, len));
            for (ours, burn) in ours.iter().zip(&burn) {
                ours.assert_approx_eq::<f32>(burn, Tolerance::rel_abs(1e-5, 1e-5));
            }
        }
    }
}
