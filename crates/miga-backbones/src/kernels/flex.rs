//! The Flex fast paths of [`super`]: vectorised kernels over a Flex tensor's buffer, reached
//! by downcasting the backend's tensor primitive (other backends are handed back untouched).

use std::any::{Any, TypeId};

use burn::tensor::backend::Backend;
use burn::tensor::{Bytes, DType, Shape, Tensor, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

/// Defines `fn $name(...)` running `$body` compiled for the widest instruction set the CPU
/// has: the body is inlined into functions with those target features, where its loops
/// vectorise (through a closure or `FnOnce` it may not be inlined, and stays scalar).
macro_rules! vectorised {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked on the line above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// Elements per parallel task: large enough to amortise scheduling, small enough to split a
/// layer's activations over the threads.
const CHUNK: usize = 1 << 15;

/// [`super::gelu`] on Flex; gives the tensor back on any other backend.
pub(super) fn gelu<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map(x, CHUNK, gelu_slice)
}

/// [`super::softmax_last`] on Flex, whole rows per task; gives the tensor back on any other
/// backend.
pub(super) fn softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let row = x.dims()[D - 1].max(1);
    let rows_per_task = CHUNK.div_ceil(row);
    map(x, row * rows_per_task, move |rows: &mut [f32]| {
        rows.chunks_exact_mut(row).for_each(softmax_row)
    })
}

/// Whether `x` is an f32 tensor of the Flex backend (not under autodiff).
fn is_flex_f32<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<FlexTensor>() && x.dtype() == DType::F32
}

/// The Flex tensor behind `x` (checked with [`is_flex_f32`]).
fn into_flex<B: Backend, const D: usize>(x: Tensor<B, D>) -> FlexTensor {
    let TensorPrimitive::Float(primitive) = x.into_primitive() else {
        unreachable!("an f32 tensor is not quantized")
    };
    *(Box::new(primitive) as Box<dyn Any>)
        .downcast::<FlexTensor>()
        .expect("the primitive type was checked")
}

/// A Flex tensor as `B`'s (`B` is Flex).
fn from_flex<B: Backend, const D: usize>(x: FlexTensor) -> Tensor<B, D> {
    let primitive = *(Box::new(x) as Box<dyn Any>)
        .downcast::<B::FloatTensorPrimitive>()
        .expect("B's primitive is FlexTensor");
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// A contiguous f32 buffer from `values` with `shape`.
fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// Runs `kernel` in place over a Flex f32 tensor's elements (in parallel; on a copy where
/// the buffer is shared or not contiguous); gives the tensor back untouched on any other
/// backend or element type. `kernel` sees `chunk` elements at a time (the last chunk may
/// be shorter).
fn map<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    chunk: usize,
    kernel: impl Fn(&mut [f32]) + Send + Sync,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !is_flex_f32(&x) {
        return Err(x);
    }
    let input = into_flex(x);
    // A contiguous buffer of our own, written in place.
    let mut output = input.to_contiguous();
    drop(input);
    if !output.is_unique() {
        output = tensor(
            output.storage::<f32>().to_vec(),
            output.layout().shape().clone(),
        );
    }
    output
        .storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .for_each(kernel);
    Ok(from_flex(output))
}

/// [`super::depthwise_conv3d`] on Flex: one task per (sample, channel) plane, reading the
/// input through its strides. Gives the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(super) fn depthwise_conv3d<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Result<Tensor<B, 5>, (Tensor<B, 5>, Tensor<B, 5>)> {
    if !is_flex_f32(&x) || weight.dtype() != DType::F32 {
        return Err((x, weight));
    }
    let [n, c, t, h, w] = x.dims();
    let [_, _, kt, kh, kw] = weight.dims();
    let mut x = into_flex(x);
    if x.layout().strides().iter().any(|&s| s < 0) {
        x = x.to_contiguous();
    }
    let weight = into_flex(weight).to_contiguous();
    let kernel = [kt, kh, kw];
    let size = [t, h, w];
    let out = [0, 1, 2].map(|a| (size[a] + 2 * padding[a] - kernel[a]) / stride[a] + 1);
    let strides: Vec<usize> = x.layout().strides().iter().map(|&s| s as usize).collect();
    let plane = Plane {
        size,
        strides: [strides[2], strides[3], strides[4]],
        kernel,
        stride,
        padding,
        out,
    };
    let src: &[f32] = x.storage();
    let offset = x.layout().start_offset();
    let filters = &weight.storage::<f32>()[..c * kt * kh * kw];
    let mut values = vec![0.0f32; n * c * out.iter().product::<usize>()];
    values
        .par_chunks_mut(out.iter().product())
        .enumerate()
        .for_each(|(i, dst)| {
            let (sample, channel) = (i / c, i % c);
            let base = offset + sample * strides[0] + channel * strides[1];
            let filter = &filters[channel * kt * kh * kw..][..kt * kh * kw];
            conv_plane(src, base, filter, plane, dst);
        });
    Ok(from_flex(tensor(
        values,
        Shape::from(vec![n, c, out[0], out[1], out[2]]),
    )))
}

/// Geometry of one channel's depthwise convolution (see [`conv_plane`]).
#[derive(Clone, Copy, Debug)]
struct Plane {
    /// Input sizes (T, H, W) and element strides.
    size: [usize; 3],
    strides: [usize; 3],
    /// Kernel, stride and padding per axis.
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    /// Output sizes.
    out: [usize; 3],
}

impl Plane {
    /// The output positions `o` whose input position `o * stride + tap - padding` lies in
    /// `0..size`, on `axis`.
    fn valid(&self, axis: usize, tap: usize) -> std::ops::Range<usize> {
        let (s, p, n) = (self.stride[axis], self.padding[axis], self.size[axis]);
        let first = p.saturating_sub(tap).div_ceil(s);
        let end = if n + p > tap {
            (n + p - tap).div_ceil(s)
        } else {
            0
        };
        first..end.min(self.out[axis]).max(first)
    }
}

vectorised! {
    /// One channel: `dst` (T' x H' x W', zeroed) += the taps of `filter` over the input that
    /// starts at `src[base]` with `plane`'s strides.
    fn conv_plane(src: &[f32], base: usize, filter: &[f32], plane: Plane, dst: &mut [f32]) {
        let [_, ho, wo] = plane.out;
        let [kt, kh, kw] = plane.kernel;
        let [st, sh, sw] = plane.strides;
        for (t, i) in (0..kt).flat_map(|t| plane.valid(0, t).map(move |i| (t, i))) {
            let ti = i * plane.stride[0] + t - plane.padding[0];
            for (y, j) in (0..kh).flat_map(|y| plane.valid(1, y).map(move |j| (y, j))) {
                let yi = j * plane.stride[1] + y - plane.padding[1];
                let row = base + ti * st + yi * sh;
                let out = &mut dst[(i * ho + j) * wo..][..wo];
                for x in 0..kw {
                    let weight = filter[(t * kh + y) * kw + x];
                    let cols = plane.valid(2, x);
                    let first = cols.start * plane.stride[2] + x - plane.padding[2];
                    if plane.stride[2] == 1 && sw == 1 {
                        let input = &src[row + first..][..cols.len()];
                        for (o, v) in out[cols].iter_mut().zip(input) {
                            *o += weight * v;
                        }
                    } else {
                        for (k, o) in out[cols].iter_mut().enumerate() {
                            *o += weight * src[row + (first + k * plane.stride[2]) * sw];
                        }
                    }
                }
            }
        }
    }
}

/// Lanes of the accumulators in the reductions below: wide enough for AVX-512, and written as
/// independent lanes so that the compiler vectorises them (a float reduction in one
/// accumulator has a fixed order and stays scalar).
const LANES: usize = 16;

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
    p = p * r + 0.5;
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

#[cfg(test)]
mod tests {
    use super::*;

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
