//! Dropout.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};

use super::{Formulation, formulation};
use crate::random::SplitMix64;

/// Configuration of a [`Dropout`], as Burn's `DropoutConfig`.
#[derive(Config, Debug)]
pub struct DropoutConfig {
    /// The probability of zeroing an element in training.
    pub prob: f64,
}

impl DropoutConfig {
    /// The dropout layer.
    pub fn init(&self) -> Dropout {
        Dropout { prob: self.prob }
    }
}

/// Dropout, as Burn's: in training (under autodiff) each element is zeroed with probability
/// `prob` and the others scaled by `1 / (1 - prob)`; at inference the input unchanged.
///
/// Burn draws the mask through the backend's random generator, which the GPU backends do in one
/// kernel; Flex draws it one value at a time on one thread with a cryptographic generator (14%
/// of a CMTF training step at batch 32). On the CPU the mask is drawn on the host instead, in
/// parallel chunks of a SplitMix64 stream seeded from the backend's generator, so that
/// `Backend::seed` still fixes every mask, whatever the thread count.
#[derive(Module, Clone, Debug)]
pub struct Dropout {
    /// The probability of zeroing an element in training.
    pub prob: f64,
}

impl Dropout {
    /// `x` with dropout applied in training.
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.forward_as(formulation::<B>(), x)
    }

    /// [`Dropout::forward`] in the given formulation.
    pub fn forward_as<B: Backend, const D: usize>(
        &self,
        how: Formulation,
        x: Tensor<B, D>,
    ) -> Tensor<B, D> {
        if self.prob == 0.0 || !B::ad_enabled(&x.device()) {
            return x;
        }
        match how {
            Formulation::Cpu => {
                let mask = host_mask::<B, D>(x.dims(), 1.0 - self.prob, &x.device());
                x * mask
            }
            Formulation::Burn => burn::nn::Dropout { prob: self.prob }.forward(x),
        }
    }
}

/// Elements per independently seeded chunk of a host mask.
const CHUNK: usize = 1 << 14;

/// A mask of `shape` whose elements are `1 / keep` with probability `keep`, else 0, seeded from
/// the backend's generator.
fn host_mask<B: Backend, const D: usize>(
    shape: [usize; D],
    keep: f64,
    device: &B::Device,
) -> Tensor<B, D> {
    #[cfg(test)]
    super::note_cpu_kernel();
    let draws: Vec<i64> =
        Tensor::<B, 1, Int>::random([2], Distribution::Uniform(0.0, 2f64.powi(30)), device)
            .into_data()
            .iter::<i64>()
            .collect();
    let seed = ((draws[0] as u64) << 30) | (draws[1] as u64);
    let values = mask_values(seed, shape.iter().product(), keep);
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `len` mask values from `seed`: `1 / keep` with probability `keep`, else 0; the same for a
/// seed whatever the number of threads.
fn mask_values(seed: u64, len: usize, keep: f64) -> Vec<f32> {
    // A 32-bit draw below `threshold` keeps the element: probability threshold / 2^32.
    let threshold = (keep * 2f64.powi(32)).round() as u64;
    let scale = (1.0 / keep) as f32;
    let mut values = vec![0.0f32; len];
    let fill = |(chunk, out): (usize, &mut [f32])| {
        let mut stream = SplitMix64::new(seed ^ SplitMix64::new(chunk as u64).next_u64());
        for pair in out.chunks_mut(2) {
            let bits = stream.next_u64();
            for (v, half) in pair.iter_mut().zip([bits >> 32, bits & 0xFFFF_FFFF]) {
                *v = if half < threshold { scale } else { 0.0 };
            }
        }
    };
    #[cfg(feature = "flex")]
    {
        use rayon::prelude::*;
        values.par_chunks_mut(CHUNK).enumerate().for_each(fill);
    }
    #[cfg(not(feature = "flex"))]
    values.chunks_mut(CHUNK).enumerate().for_each(fill);
    values
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::nn::{assert_cpu_path, reaches_cpu_kernels};

    type A = crate::nn::TestBackend;

    /// Kept elements are scaled by 1 / (1 - p), the kept fraction is 1 - p, a seed fixes the
    /// mask; under autodiff on Flex the host mask multiplies the input, at inference nothing
    /// changes; Burn's formulation keeps the same scale.
    #[test]
    fn masks_keep_one_minus_p_scaled_and_follow_the_seed() {
        for p in [0.1, 0.5] {
            let a = mask_values(3, 300_001, 1.0 - p);
            let scale = (1.0 / (1.0 - p)) as f32;
            assert!(a.iter().all(|&v| v == 0.0 || v == scale));
            let kept = a.iter().filter(|&&v| v > 0.0).count() as f64 / a.len() as f64;
            assert!((kept - (1.0 - p)).abs() < 0.005, "p {p}: kept {kept}");
            assert_eq!(mask_values(3, 300_001, 1.0 - p), a);
            assert_ne!(mask_values(4, 300_001, 1.0 - p), a);
        }
        let device = Default::default();
        let layer = DropoutConfig::new(0.5).init();
        for how in [Formulation::Cpu, Formulation::Burn] {
            let x = Tensor::<A, 2>::full([40, 50], 3.0, &device);
            let y: Vec<f32> = layer.forward_as(how, x).into_data().to_vec().unwrap();
            assert!(y.iter().all(|&v| v == 0.0 || v == 6.0), "{how:?}");
            assert!(y.contains(&0.0) && y.contains(&6.0), "{how:?}");
        }
        // The CPU formulation draws on the host: the same mask for the same backend seed.
        let masked = || {
            A::seed(&device, 7);
            let x = Tensor::<A, 2>::ones([40, 50], &device);
            layer.forward(x).into_data()
        };
        assert_eq!(masked(), masked());
        let x = || Tensor::<A, 2>::ones([4, 5], &device);
        assert_cpu_path(|| layer.forward(x()));
        assert!(!reaches_cpu_kernels(
            || layer.forward_as(Formulation::Burn, x())
        ));
        let x = Tensor::<Flex, 2>::ones([4, 5], &device);
        assert_eq!(layer.forward(x.clone()).into_data(), x.into_data());
    }
}
