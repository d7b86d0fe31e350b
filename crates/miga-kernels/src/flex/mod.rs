//! The Flex fast paths of [`super`]: vectorised kernels over a Flex tensor's buffer, reached
//! by downcasting the backend's tensor primitive (other backends are handed back untouched).

use burn::tensor::backend::Backend;
use burn::tensor::{Bytes, DType, Shape, Tensor};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use crate::primitive::{map_primitive, unwrap_pair, wrap};

/// Defines `fn $name(...)` running `$body` compiled for the widest instruction set the CPU
/// has: the body is inlined into functions with those target features, where its loops
/// vectorise (through a closure or `FnOnce` it may not be inlined, and stays scalar).
macro_rules! vectorised {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
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

mod activation;
mod adamw;
mod batch_norm;
mod depthwise;
mod layer_norm;
mod layout;
mod matmul;
mod rel_pos;
mod simd;
mod time_taps;

pub(crate) use activation::*;
pub(crate) use adamw::*;
pub(crate) use batch_norm::{BatchNormSaved, batch_norm_backward, batch_norm_forward};
pub(crate) use depthwise::*;
pub(crate) use layer_norm::*;
pub(crate) use layout::*;
pub(crate) use matmul::{
    linear, linear_backward, linear_forward, matmul, matmul_backward, matmul_forward,
};
pub(crate) use rel_pos::{RelPosSaved, rel_pos_backward, rel_pos_forward, rel_pos_query};
use simd::*;
pub(crate) use time_taps::*;

/// Elements per parallel task: large enough to amortise scheduling, small enough to split a
/// layer's activations over the threads.
const CHUNK: usize = 1 << 15;

/// A contiguous f32 buffer from `values` with `shape`.
fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// Whether `x` is laid out row-major over exactly its whole buffer (a contiguous view at an
/// offset, or of part of a larger buffer, is not).
fn is_whole(x: &FlexTensor) -> bool {
    x.is_contiguous()
        && x.layout().start_offset() == 0
        && x.bytes().len() == x.layout().num_elements() * x.dtype().size()
}

/// A tensor of no elements.
pub(crate) fn empty() -> FlexTensor {
    tensor(Vec::new(), Shape::new([0]))
}

/// `x` as a contiguous f32 buffer that nothing else holds (copied in parallel when shared or
/// strided), to be written in place.
fn into_owned(x: FlexTensor) -> FlexTensor {
    if is_whole(&x) && x.is_unique() {
        x
    } else {
        copy(&x)
    }
}

/// Runs `kernel` in place over a Flex f32 tensor's elements, in parallel, on a copy where the
/// buffer is shared or not contiguous. `kernel` sees `chunk` elements at a time (the last
/// chunk may be shorter).
fn map_flex(x: FlexTensor, chunk: usize, kernel: impl Fn(&mut [f32]) + Send + Sync) -> FlexTensor {
    let mut output = into_owned(x);
    output
        .storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .for_each(kernel);
    output
}

/// Runs `kernel` over `grad` in place beside the same elements of `saved` (a tensor of the
/// same shape kept from the forward pass): the backward passes of element-wise and row-wise
/// operations. `kernel` sees `chunk` elements of each at a time.
fn map_with(
    saved: &FlexTensor,
    grad: FlexTensor,
    chunk: usize,
    kernel: impl Fn(&[f32], &mut [f32]) + Send + Sync,
) -> FlexTensor {
    let saved = saved.to_contiguous();
    let mut output = into_owned(grad);
    output
        .storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .zip(saved.storage::<f32>().par_chunks(chunk))
        .for_each(|(g, s)| kernel(s, g));
    output
}

/// Elements per task for whole rows of `row` elements.
fn rows_chunk(row: usize) -> usize {
    let row = row.max(1);
    row * CHUNK.div_ceil(row)
}

/// The length of the last axis (1 for a scalar).
fn last_dim(x: &FlexTensor) -> usize {
    x.layout().shape().last().copied().unwrap_or(1).max(1)
}

/// A row-major buffer seen as rows of `row` values, each holding a run of `width` values of a
/// slice from column `lo`.
#[derive(Clone, Copy)]
struct Rows {
    row: usize,
    lo: usize,
    width: usize,
}

impl Rows {
    /// Calls `piece(at, count, inside)` for the pieces of the `len` elements from `flat`, each
    /// within one row and either inside the slice (`inside`: the offset of its first element
    /// in the slice's own row-major buffer) or outside it (`None`); `at` counts from `flat`.
    fn pieces(&self, flat: usize, len: usize, mut piece: impl FnMut(usize, usize, Option<usize>)) {
        let Rows { row, lo, width } = *self;
        let hi = lo + width;
        let mut at = 0;
        while at < len {
            let (r, column) = ((flat + at) / row, (flat + at) % row);
            let end = if column < lo {
                lo
            } else if column < hi {
                hi
            } else {
                row
            };
            let count = (end - column).min(len - at);
            let inside = (lo..hi).contains(&column).then(|| r * width + column - lo);
            piece(at, count, inside);
            at += count;
        }
    }
}
