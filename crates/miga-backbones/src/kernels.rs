//! Element-wise kernels with a fast path on the CPU backend.
//!
//! Burn 0.21's CPU backend (Flex) runs element-wise maps one element at a time on one thread:
//! exact GELU costs about 11 ns per element there (a scalar `erf`), 13% of an MViTv2-S
//! forward pass. With the `flex` feature (on by default) these functions recognise a Flex
//! tensor and run a vectorised, multi-threaded kernel over its buffer; on every other backend
//! (GPU, ndarray, and anything under autodiff, where gradients must be tracked) they call
//! Burn's own operation. Both paths agree to float rounding (tested below).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Exact (erf) GELU, `0.5 x (1 + erf(x / sqrt 2))`, as PyTorch's `nn.GELU()`.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::map(x, CHUNK, gelu_slice) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::gelu(x)
}

/// Softmax over the last dimension, as `burn::tensor::activation::softmax(x, D - 1)`.
pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = {
        let row = x.dims()[D - 1].max(1);
        let rows_per_task = CHUNK.div_ceil(row);
        match flex::map(x, row * rows_per_task, move |rows: &mut [f32]| {
            rows.chunks_exact_mut(row).for_each(softmax_row)
        }) {
            Ok(y) => return y,
            Err(x) => x,
        }
    };
    burn::tensor::activation::softmax(x, D - 1)
}

/// Elements per parallel task: large enough to amortise scheduling, small enough to split a
/// layer's activations over the threads.
#[cfg(feature = "flex")]
const CHUNK: usize = 1 << 15;

/// Lanes of the accumulators in the reductions below: wide enough for AVX-512, and written as
/// independent lanes so that the compiler vectorises them (a float reduction in one
/// accumulator has a fixed order and stays scalar).
const LANES: usize = 16;

/// Defines `fn $name(x: &mut [f32])` running `$body` compiled for the widest instruction set
/// the CPU has: the body is inlined into functions with those target features, where its
/// loops vectorise (through a closure or `FnOnce` it may not be inlined, and stays scalar).
macro_rules! vectorised {
    ($(#[$meta:meta])* fn $name:ident($x:ident: &mut [f32]) $body:block) => {
        $(#[$meta])*
        fn $name($x: &mut [f32]) {
            #[inline(always)]
            fn body($x: &mut [f32]) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512(x: &mut [f32]) {
                    body(x)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2(x: &mut [f32]) {
                    body(x)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked on the line above).
                    return unsafe { avx512($x) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
                    return unsafe { avx2($x) };
                }
            }
            body($x)
        }
    };
}

vectorised! {
    /// One row's softmax in place: max, exponentials and their sum, scaling.
    fn softmax_row(row: &mut [f32]) {
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (m, &v) in max.iter_mut().zip(chunk) {
                *m = m.max(v);
            }
        }
        let mut max = max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for &v in chunks.remainder() {
            max = max.max(v);
        }
        let mut sum = [0.0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (s, v) in sum.iter_mut().zip(chunk) {
                *v = exp_f32(*v - max);
                *s += *v;
            }
        }
        let mut sum: f32 = sum.iter().sum();
        for v in chunks.into_remainder() {
            *v = exp_f32(*v - max);
            sum += *v;
        }
        let scale = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= scale;
        }
    }
}

/// `exp(x)` by Cephes' range reduction and degree-6 polynomial (relative error about 1e-7),
/// flushed to 0 below `EXP_FLUSH`; branch-free so that loops over it vectorise.
///
/// The flush keeps subnormal numbers, which CPUs handle on a slow path, out of the arithmetic
/// that follows (a softmax scales these values by up to 1/row length). e^-70 is 4e-31, below
/// anything a probability or an erf tail contributes in f32.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let flush = x < EXP_FLUSH;
    let x = x.clamp(EXP_FLUSH, 88.3);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    // 2^n from n's bits: adding 1.5 * 2^23 puts the integer n in the low mantissa bits (a
    // float-to-int conversion would not vectorise: Rust's `as` saturates).
    let n = (n + 12_582_912.0).to_bits() as i32 - 0x4B40_0000;
    let e = y * f32::from_bits(((n + 127) as u32) << 23);
    if flush { 0.0 } else { e }
}

/// Below this, [`exp_f32`] is 0.
const EXP_FLUSH: f32 = -70.0;

/// GELU of one value through Abramowitz & Stegun 7.1.26 for erf (absolute error under
/// 1.5e-7, the formula PyTorch's vectorised CPU `erf` uses).
#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let erf = (1.0 - poly * exp_f32(-a * a)).copysign(z);
    0.5 * x * (1.0 + erf)
}

vectorised! {
    /// GELU in place.
    fn gelu_slice(x: &mut [f32]) {
        for v in x {
            *v = gelu_f32(*v);
        }
    }
}

#[cfg(feature = "flex")]
mod flex {
    use std::any::{Any, TypeId};

    use burn::tensor::Bytes;
    use burn::tensor::backend::Backend;
    use burn::tensor::{DType, Tensor, TensorPrimitive};
    use burn_flex::FlexTensor;
    use rayon::prelude::*;

    /// Runs `kernel` in place over a Flex f32 tensor's elements (in parallel; on a copy where
    /// the buffer is shared or not contiguous);
    /// gives the tensor back untouched on any other backend or element type.
    /// `kernel` sees `chunk` elements at a time (the last chunk may be shorter).
    pub(super) fn map<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        chunk: usize,
        kernel: impl Fn(&mut [f32]) + Send + Sync,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        if TypeId::of::<B::FloatTensorPrimitive>() != TypeId::of::<FlexTensor>()
            || x.dtype() != DType::F32
        {
            return Err(x);
        }
        let TensorPrimitive::Float(primitive) = x.into_primitive() else {
            unreachable!("an f32 tensor is not quantized")
        };
        let input = *(Box::new(primitive) as Box<dyn Any>)
            .downcast::<FlexTensor>()
            .expect("the primitive type was checked above");
        // A contiguous buffer of our own, written in place.
        let mut output = input.to_contiguous();
        drop(input);
        if !output.is_unique() {
            let copy = output.storage::<f32>().to_vec();
            output = FlexTensor::new(Bytes::from_elems(copy), output.layout().clone(), DType::F32);
        }
        output
            .storage_mut::<f32>()
            .par_chunks_mut(chunk)
            .for_each(kernel);
        let primitive = *(Box::new(output) as Box<dyn Any>)
            .downcast::<B::FloatTensorPrimitive>()
            .expect("B's primitive is FlexTensor (checked above)");
        Ok(Tensor::from_primitive(TensorPrimitive::Float(primitive)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    #[test]
    fn gelu_matches_the_exact_definition() {
        let values: Vec<f32> = (-4000..4000).map(|i| i as f32 * 2.5e-3).collect();
        let mut fast = values.clone();
        gelu_slice(&mut fast);
        for (x, y) in values.iter().zip(&fast) {
            let exact = 0.5 * (*x as f64) * (1.0 + libm_erf(*x as f64 / 2f64.sqrt()));
            // erf's error (1.5e-7) scaled by 0.5 |x|, plus f32 rounding.
            let bound = 1e-7 + 0.75e-7 * x.abs() as f64 + 1e-7 * exact.abs();
            assert!(
                (*y as f64 - exact).abs() < bound,
                "gelu({x}) = {y}, exact {exact}"
            );
        }
        let mut edge = [-200.0, 200.0, 0.0, f32::NAN];
        gelu_slice(&mut edge);
        assert_eq!(&edge[..3], &[-0.0, 200.0, 0.0]);
        assert!(edge[3].is_nan());
    }

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

    /// erf in f64 by its Taylor series (|x| < 3) or continued fraction, for the reference.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut sum = x;
            let mut term = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc by Lentz's continued fraction.
            let a = x.abs();
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            let erfc = (-a * a).exp() / (f * std::f64::consts::PI.sqrt());
            (1.0 - erfc).copysign(x)
        }
    }
}
