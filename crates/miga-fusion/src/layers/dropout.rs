//! Dropout with a fast mask on the CPU backend, and modality dropout.
//!
//! Burn draws a dropout mask through the backend's random generator; Flex (the CPU backend)
//! draws it one value at a time on one thread with a cryptographic generator, 14% of a CMTF
//! training step at batch 32. With the `flex` feature (on by default) the mask of a Flex
//! tensor is drawn on the host instead, in parallel chunks of a SplitMix64 stream seeded from
//! the backend's generator (so `Backend::seed` still fixes every mask, whatever the thread
//! count); other backends keep Burn's dropout.

use burn::nn::Dropout;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Distribution, Tensor};

/// `layer` applied to `x`: in training (under autodiff) each element is zeroed with the
/// layer's probability and the others scaled by `1 / (1 - p)`; at inference `x` unchanged.
pub fn dropout<B: Backend, const D: usize>(layer: &Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    if layer.prob > 0.0
        && B::ad_enabled(&x.device())
        && core::any::TypeId::of::<B::Device>() == core::any::TypeId::of::<burn_flex::FlexDevice>()
    {
        let mask = host::mask::<B, D>(x.dims(), 1.0 - layer.prob, &x.device());
        return x * mask;
    }
    layer.forward(x)
}

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

#[cfg(feature = "flex")]
mod host {
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Int, Tensor, TensorData};
    use miga_kernels::random::SplitMix64;
    use rayon::prelude::*;

    /// Elements per independently seeded chunk.
    const CHUNK: usize = 1 << 14;

    /// A mask of `shape` whose elements are `1 / keep` with probability `keep`, else 0.
    pub(super) fn mask<B: Backend, const D: usize>(
        shape: [usize; D],
        keep: f64,
        device: &B::Device,
    ) -> Tensor<B, D> {
        let draws: Vec<i64> =
            Tensor::<B, 1, Int>::random([2], Distribution::Uniform(0.0, 2f64.powi(30)), device)
                .into_data()
                .iter::<i64>()
                .collect();
        let seed = ((draws[0] as u64) << 30) | (draws[1] as u64);
        let values = values(seed, shape.iter().product(), keep);
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// `len` mask values from `seed`: `1 / keep` with probability `keep`, else 0; the same
    /// for a seed whatever the number of threads.
    pub(super) fn values(seed: u64, len: usize, keep: f64) -> Vec<f32> {
        // A 32-bit draw below `threshold` keeps the element: probability threshold / 2^32.
        let threshold = (keep * 2f64.powi(32)).round() as u64;
        let scale = (1.0 / keep) as f32;
        let mut values = vec![0.0f32; len];
        values
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, out)| {
                let mut stream = SplitMix64::new(seed ^ SplitMix64::new(chunk as u64).next_u64());
                for pair in out.chunks_mut(2) {
                    let bits = stream.next_u64();
                    for (v, half) in pair.iter_mut().zip([bits >> 32, bits & 0xFFFF_FFFF]) {
                        *v = if half < threshold { scale } else { 0.0 };
                    }
                }
            });
        values
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::nn::DropoutConfig;

    use super::*;

    type A = Autodiff<Flex>;

    /// Kept elements are scaled by 1 / (1 - p), the kept fraction is 1 - p, a seed fixes the
    /// mask; under autodiff on Flex the mask multiplies the input, at inference nothing
    /// changes.
    #[test]
    fn masks_keep_one_minus_p_scaled_and_follow_the_seed() {
        for p in [0.1, 0.5] {
            let a = host::values(3, 300_001, 1.0 - p);
            let scale = (1.0 / (1.0 - p)) as f32;
            assert!(a.iter().all(|&v| v == 0.0 || v == scale));
            let kept = a.iter().filter(|&&v| v > 0.0).count() as f64 / a.len() as f64;
            assert!((kept - (1.0 - p)).abs() < 0.005, "p {p}: kept {kept}");
            assert_eq!(host::values(3, 300_001, 1.0 - p), a);
            assert_ne!(host::values(4, 300_001, 1.0 - p), a);
        }
        let device = Default::default();
        let layer = DropoutConfig::new(0.5).init();
        let x = Tensor::<A, 2>::full([40, 50], 3.0, &device);
        let y: Vec<f32> = dropout(&layer, x).into_data().to_vec().unwrap();
        assert!(y.iter().all(|&v| v == 0.0 || v == 6.0));
        assert!(y.contains(&0.0) && y.contains(&6.0));
        let x = Tensor::<Flex, 2>::ones([4, 5], &device);
        let y = dropout(&layer, x.clone());
        assert_eq!(y.into_data(), x.into_data());
    }
}
