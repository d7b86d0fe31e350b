//! Helpers of the operations' tests.

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor, Tolerance};

/// Flex under autodiff.
pub(crate) type Ad = burn::backend::Autodiff<Flex>;

pub(crate) fn assert_same_gradients(
    fast: impl Fn(Tensor<Ad, 3>, Tensor<Ad, 1>, Tensor<Ad, 1>) -> Tensor<Ad, 3>,
    reference: impl Fn(Tensor<Ad, 3>, Tensor<Ad, 1>, Tensor<Ad, 1>) -> Tensor<Ad, 3>,
    tolerance: f32,
) {
    let device = Default::default();
    // A strided view, rows not a multiple of the vector width.
    let x = Tensor::<Ad, 3>::random([3, 70, 37], Distribution::Normal(0.5, 2.0), &device)
        .swap_dims(1, 2);
    let gamma = Tensor::<Ad, 1>::random([70], Distribution::Normal(1.0, 0.5), &device);
    let beta = Tensor::<Ad, 1>::random([70], Distribution::Normal(0.0, 0.5), &device);
    let weight = Tensor::<Ad, 3>::random([3, 37, 70], Distribution::Normal(0.0, 1.0), &device);
    let run = |f: &dyn Fn(Tensor<Ad, 3>, Tensor<Ad, 1>, Tensor<Ad, 1>) -> Tensor<Ad, 3>| {
        let (x, gamma, beta) = (
            x.clone().require_grad(),
            gamma.clone().require_grad(),
            beta.clone().require_grad(),
        );
        let y = f(x.clone(), gamma.clone(), beta.clone());
        let grads = (y.clone() * weight.clone()).sum().backward();
        let grad = |t: &Tensor<Ad, 1>| t.grad(&grads).map(|g| g.into_data());
        (
            y.into_data(),
            x.grad(&grads).unwrap().into_data(),
            grad(&gamma),
            grad(&beta),
        )
    };
    let (ours, theirs) = (run(&fast), run(&reference));
    let tolerance = Tolerance::absolute(tolerance);
    ours.0.assert_approx_eq::<f32>(&theirs.0, tolerance);
    ours.1.assert_approx_eq::<f32>(&theirs.1, tolerance);
    for (a, b) in [(ours.2, theirs.2), (ours.3, theirs.3)] {
        assert_eq!(a.is_some(), b.is_some());
        if let (Some(a), Some(b)) = (a, b) {
            a.assert_approx_eq::<f32>(&b, tolerance);
        }
    }
    // Without gradients the same values come out.
    let untracked = fast(x.clone(), gamma.clone(), beta.clone()).into_data();
    untracked.assert_approx_eq::<f32>(&theirs.0, tolerance);
}
