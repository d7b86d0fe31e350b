//! Backend agreement: run one computation on two backends and compare the outputs.
//!
//! A [`Probe`] is a computation written once, generic over the backend; it builds its inputs
//! and weights with [`seeded_tensor`] and [`seed_params`], so every backend sees the same
//! numbers, and returns its outputs as host data. [`check`] runs it on two devices and reports,
//! per output, the largest difference scaled by the reference output's size:
//! `max |a - b| / max(1, max |reference|)` (an absolute error for outputs of order 1 or less, a
//! relative one for larger outputs). A NaN or an infinity in either output is a failure. The
//! tests in `tests/backend_agreement.rs` use it for single operations and whole networks.
//!
//! ```
//! use burn::tensor::{TensorData, activation, backend::Backend};
//! use miga::agreement::{Probe, check, seeded_tensor};
//! use miga::device::DeviceSpec;
//!
//! struct Gelu;
//! impl Probe for Gelu {
//!     fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
//!         let x = seeded_tensor::<B, 2>([4, 8], 7, device);
//!         vec![activation::gelu(x).into_data()]
//!     }
//! }
//! let agreement = check(&Gelu, DeviceSpec::CPU, DeviceSpec::CPU)?;
//! assert_eq!(agreement.max_error(), 0.0);
//! # Ok::<(), miga::Error>(())
//! ```

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use miga_backbones::parity::scaled_error;
use miga_kernels::random::SplitMix64;

use crate::Error;
use crate::device::{BackendTask, DeviceSpec};

/// A computation that runs on any backend and returns its outputs as host data.
pub trait Probe {
    /// Runs the computation on backend `B`.
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData>;
}

/// How closely two backends agreed on a probe.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// Each output's largest difference, `max |a - b| / max(1, max |reference|)`, in the
    /// probe's order.
    pub errors: Vec<f32>,
}

impl Agreement {
    /// The largest scaled difference over all outputs.
    pub fn max_error(&self) -> f32 {
        self.errors.iter().copied().fold(0.0, f32::max)
    }
}

/// Runs `probe` on `reference` and on `other` and compares the outputs element by element.
///
/// Fails when a device cannot run, when the two runs disagree on the number or shape of the
/// outputs, or when either holds a NaN or an infinity.
pub fn check(
    probe: &impl Probe,
    reference: DeviceSpec,
    other: DeviceSpec,
) -> Result<Agreement, Error> {
    let expected = reference.run(RunProbe(probe))?;
    compare_on(probe, other, &expected, reference.to_string())
}

/// Runs `probe` on `device` and compares its outputs with `expected`, outputs of a reference
/// implementation (for example PyTorch fixtures).
pub fn check_against(
    probe: &impl Probe,
    device: DeviceSpec,
    expected: &[TensorData],
) -> Result<Agreement, Error> {
    compare_on(probe, device, expected, "reference outputs".to_string())
}

/// Runs `probe` on `device` and compares with `expected`, which came from `reference`.
fn compare_on(
    probe: &impl Probe,
    device: DeviceSpec,
    expected: &[TensorData],
    reference: String,
) -> Result<Agreement, Error> {
    let actual = device.run(RunProbe(probe))?;
    compare(expected, &actual).map_err(|reason| Error::Disagreement {
        reference,
        other: device.to_string(),
        reason,
    })
}

struct RunProbe<'a, P>(&'a P);

impl<P: Probe> BackendTask for RunProbe<'_, P> {
    type Output = Vec<TensorData>;
    fn run<B: Backend>(self, device: B::Device) -> Vec<TensorData> {
        self.0.run::<B>(&device)
    }
}

fn compare(expected: &[TensorData], actual: &[TensorData]) -> Result<Agreement, String> {
    if expected.len() != actual.len() {
        return Err(format!(
            "{} outputs against {}",
            expected.len(),
            actual.len()
        ));
    }
    let mut errors = Vec::with_capacity(expected.len());
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        errors.push(scaled_error(a, e).map_err(|reason| format!("output {i}: {reason}"))?);
    }
    Ok(Agreement { errors })
}

/// A tensor of uniform values in [-1, 1) drawn from `seed`: the same numbers on every backend.
pub fn seeded_tensor<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    device: &B::Device,
) -> Tensor<B, D> {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.symmetric()).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Replaces every float parameter of `module` with seeded values, uniform in
/// (-1/sqrt(fan), 1/sqrt(fan)) where fan is the parameter's size over its first dimension, so
/// that a module built on two backends holds the same weights.
pub fn seed_params<B: Backend, M: Module<B>>(module: M, seed: u64) -> M {
    struct Seeder(SplitMix64);
    impl<B: Backend> ModuleMapper<B> for Seeder {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let rng = &mut self.0;
            param.map(|tensor| {
                let dims = tensor.dims();
                let n: usize = dims.iter().product();
                let fan = (n / dims.first().copied().unwrap_or(1).max(1)).max(1);
                let scale = 1.0 / (fan as f32).sqrt();
                let values: Vec<f32> = (0..n).map(|_| rng.symmetric() * scale).collect();
                let device = tensor.device();
                let seeded = Tensor::from_data(TensorData::new(values, dims), &device);
                if tensor.is_require_grad() {
                    seeded.require_grad()
                } else {
                    seeded
                }
            })
        }
    }
    module.map(&mut Seeder(SplitMix64::new(seed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_worst_difference_and_mismatches() {
        let a = TensorData::new(vec![1.0f32, 2.0, 3.0], [3]);
        let b = TensorData::new(vec![1.0f32, 2.5, 3.0], [3]);
        let agreement = compare(std::slice::from_ref(&a), &[b]).unwrap();
        // Scaled by the largest reference value, 3.
        assert_eq!(agreement.errors, vec![0.5 / 3.0]);
        let small = TensorData::new(vec![0.1f32, -0.2], [2]);
        let near = TensorData::new(vec![0.1f32, -0.25], [2]);
        let agreement = compare(std::slice::from_ref(&small), &[near]).unwrap();
        assert!(
            (agreement.errors[0] - 0.05).abs() < 1e-7,
            "absolute below 1"
        );

        let shape = TensorData::new(vec![1.0f32, 2.0, 3.0], [3, 1]);
        assert!(
            compare(std::slice::from_ref(&a), &[shape])
                .unwrap_err()
                .contains("shape")
        );
        let nan = TensorData::new(vec![1.0f32, f32::NAN, 3.0], [3]);
        assert!(
            compare(std::slice::from_ref(&a), &[nan])
                .unwrap_err()
                .contains("not finite")
        );
        // NaN on both sides is no agreement.
        let both = TensorData::new(vec![1.0f32, f32::NAN, 3.0], [3]);
        assert!(
            compare(std::slice::from_ref(&both), std::slice::from_ref(&both))
                .unwrap_err()
                .contains("not finite")
        );
        assert!(compare(&[a], &[]).unwrap_err().contains("outputs"));
    }
}
