//! Modality dropout: a whole stream of a sample dropped in training (element dropout is
//! [`miga_kernels::nn::Dropout`]).

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Distribution, Tensor};

/// Modality dropout: in training (under autodiff), drops stream `a` of a sample with
/// probability `p` and, exclusively, stream `b` with probability `p` (one uniform draw per
/// sample: below `p` drops `a`, between `p` and `2p` drops `b`), never a stream whose partner is
/// already absent. `a` and `b` are the streams' time-step paddings `[B, T]` (true = ignore); a
/// dropped stream has every step padded.
pub fn modality_dropout<B: Backend>(
    a: Tensor<B, 2, Bool>,
    b: Tensor<B, 2, Bool>,
    p: f64,
) -> (Tensor<B, 2, Bool>, Tensor<B, 2, Bool>) {
    let device = a.device();
    if p == 0.0 || !B::ad_enabled(&device) {
        return (a, b);
    }
    let [n, ta] = a.dims();
    let tb = b.dims()[1];
    let has = |x: &Tensor<B, 2, Bool>| x.clone().bool_not().any_dim(1);
    let u = Tensor::<B, 2>::random([n, 1], Distribution::Uniform(0.0, 1.0), &device);
    let drop_a = u.clone().lower_elem(p).bool_and(has(&b));
    let drop_b = u
        .clone()
        .greater_equal_elem(p)
        .bool_and(u.lower_elem(2.0 * p))
        .bool_and(has(&a));
    (
        a.bool_or(drop_a.expand([n, ta])),
        b.bool_or(drop_b.expand([n, tb])),
    )
}
