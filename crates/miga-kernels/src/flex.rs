//! The Flex fast paths of [`super`]: vectorised kernels over a Flex tensor's buffer, reached
//! by downcasting the backend's tensor primitive (other backends are handed back untouched).

use burn::tensor::backend::Backend;
use burn::tensor::{Bytes, DType, Shape, Tensor};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use crate::primitive::{is_f32, map_primitive, unwrap, unwrap_pair, wrap};

mod matmul;
pub(crate) use matmul::{linear_backward, linear_forward, matmul_backward, matmul_forward};

/// Defines `fn $name(...)` running `$body` compiled for the widest instruction set the CPU
/// has: the body is inlined into functions with those target features, where its loops
/// vectorise (through a closure or `FnOnce` it may not be inlined, and stays scalar).
macro_rules! vectorised {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
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

mod batch_norm;
pub(crate) use batch_norm::{BatchNormSaved, batch_norm_backward, batch_norm_forward};

mod rel_pos;
pub(crate) use rel_pos::{RelPosSaved, rel_pos_backward, rel_pos_forward};

/// Elements per parallel task: large enough to amortise scheduling, small enough to split a
/// layer's activations over the threads.
const CHUNK: usize = 1 << 15;

/// [`super::gelu`] on Flex; gives the tensor back on any other backend.
pub(super) fn gelu<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, gelu_forward)
}

/// [`super::softmax_last`] on Flex, whole rows per task; gives the tensor back on any other
/// backend.
pub(super) fn softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, softmax_forward)
}

/// [`super::masked_softmax_last`] on Flex; gives the tensor back on any other backend.
pub(super) fn masked_softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    keep: &[f32],
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, |x| masked_softmax_forward(x, keep))
}

/// [`super::matmul`] on Flex; gives the operands back on any other backend.
#[allow(clippy::type_complexity)]
pub(super) fn matmul<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    let (lhs, rhs): (FlexTensor, FlexTensor) = unwrap_pair(lhs, rhs)?;
    Ok(wrap(matmul_forward(&lhs, &rhs)))
}

/// [`super::linear`] on Flex; gives the input back on any other backend.
pub(super) fn linear<B: Backend, const D: usize>(
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !(is_f32::<FlexTensor, B, D>(&x) && weight.dtype() == DType::F32) {
        return Err(x);
    }
    let weight: FlexTensor = unwrap(weight.clone());
    let bias: Option<FlexTensor> = bias.map(|b| unwrap(b.clone()));
    let x: FlexTensor = unwrap(x);
    Ok(wrap(linear_forward(&x, &weight, bias.as_ref())))
}

/// [`super::rel_pos_query`] on Flex; gives the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(super) fn rel_pos_query<B: Backend>(
    q: Tensor<B, 3>,
    scale: f64,
    tables: [Tensor<B, 3>; 3],
) -> Result<Tensor<B, 3>, (Tensor<B, 3>, [Tensor<B, 3>; 3])> {
    if !(is_f32::<FlexTensor, B, 3>(&q) && tables.iter().all(|t| is_f32::<FlexTensor, B, 3>(t))) {
        return Err((q, tables));
    }
    let q: FlexTensor = unwrap(q);
    let tables: [FlexTensor; 3] = tables.map(unwrap);
    let (y, _) = rel_pos_forward(&q, tables.each_ref(), scale as f32);
    Ok(wrap(y))
}

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

/// Exact GELU of a Flex f32 tensor.
pub(crate) fn gelu_forward(x: FlexTensor) -> FlexTensor {
    map_flex(x, CHUNK, gelu_slice)
}

/// The gradient through GELU at `x`: `grad * (Phi(x) + x phi(x))`.
pub(crate) fn gelu_backward(x: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    map_with(x, grad, CHUNK, gelu_grad_slice)
}

/// Elements per task for whole rows of `row` elements.
fn rows_chunk(row: usize) -> usize {
    let row = row.max(1);
    row * CHUNK.div_ceil(row)
}

/// Softmax over the last axis of a Flex f32 tensor.
pub(crate) fn softmax_forward(x: FlexTensor) -> FlexTensor {
    let row = last_dim(&x);
    map_flex(x, rows_chunk(row), move |rows: &mut [f32]| {
        rows.chunks_exact_mut(row).for_each(softmax_row)
    })
}

/// [`super::masked_softmax_last`] on Flex: softmax over the last axis of `x` `[B, ..., N]`
/// where `keep` (`[B, N]`, 1 or 0) marks each sample's keys; a sample at a time per task.
pub(crate) fn masked_softmax_forward(x: FlexTensor, keep: &[f32]) -> FlexTensor {
    let row = last_dim(&x);
    let samples = (keep.len() / row).max(1);
    let per_sample = (x.layout().num_elements() / samples).max(1);
    let mut output = into_owned(x);
    output
        .storage_mut::<f32>()
        .par_chunks_mut(per_sample)
        .zip(keep.par_chunks(row))
        .for_each(|(rows, keep)| {
            if keep.iter().all(|&k| k == 0.0) {
                rows.fill(0.0);
                return;
            }
            for row in rows.chunks_exact_mut(row) {
                for (v, &k) in row.iter_mut().zip(keep) {
                    *v = if k != 0.0 { *v } else { f32::NEG_INFINITY };
                }
                softmax_row(row);
            }
        });
    output
}

/// [`super::adamw_update`] on Flex: `[param, moment_1, moment_2]` after one step, in place
/// where the buffers are not shared, in parallel chunks.
pub(crate) fn adamw_update(
    param: FlexTensor,
    grad: FlexTensor,
    moment_1: FlexTensor,
    moment_2: FlexTensor,
    update: &super::AdamWUpdate,
) -> [FlexTensor; 3] {
    // The constants as Burn's AdamW forms them (scalars in the tensors' f32).
    let (b1, b2, eps) = (update.beta_1, update.beta_2, update.epsilon);
    let (f1, f2) = (1.0 - b1, 1.0 - b2);
    let time = update.time as i32;
    let (c1, c2) = (1.0 - b1.powi(time), 1.0 - b2.powi(time));
    // Without decay `keep` is 1 and the product exact, as Burn's copy of the parameter.
    let keep = (1.0 - update.lr * f64::from(update.weight_decay)) as f32;
    let lr = update.lr as f32;
    let grad = grad.to_contiguous();
    let (mut param, mut m, mut v) = (
        into_owned(param),
        into_owned(moment_1),
        into_owned(moment_2),
    );
    param
        .storage_mut::<f32>()
        .par_chunks_mut(CHUNK)
        .zip(grad.storage::<f32>().par_chunks(CHUNK))
        .zip(m.storage_mut::<f32>().par_chunks_mut(CHUNK))
        .zip(v.storage_mut::<f32>().par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            adamw_slice(p, g, m, v, [b1, b2, f1, f2, c1, c2, eps, keep, lr])
        });
    [param, m, v]
}

/// The gradient through a softmax over the last axis whose output was `y`:
/// `y * (grad - sum(grad * y))` per row.
pub(crate) fn softmax_backward(y: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    let row = last_dim(y);
    map_with(y, grad, rows_chunk(row), move |y, g| {
        for (y, g) in y.chunks_exact(row).zip(g.chunks_exact_mut(row)) {
            softmax_grad_row(y, g)
        }
    })
}

/// The length of the last axis (1 for a scalar).
fn last_dim(x: &FlexTensor) -> usize {
    x.layout().shape().last().copied().unwrap_or(1).max(1)
}

/// [`super::swap_heads`] on Flex; gives the tensor back on any other backend.
pub(super) fn swap_heads<B: Backend>(x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    map_primitive(x, swap_heads_forward)
}

/// `[A, P, Q, R]` (any strides) to a contiguous `[A, Q, P, R]`: the layout change between
/// tokens `[B, N, H, Dh]` and heads `[B, H, N, Dh]`.
pub(crate) fn swap_heads_forward(x: FlexTensor) -> FlexTensor {
    contiguous(&x.transpose(1, 2))
}

/// [`super::contiguous`] on Flex; gives the tensor back on any other backend.
pub(super) fn contiguous_layout<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, |x: FlexTensor| contiguous(&x))
}

/// A Flex f32 tensor in a contiguous row-major buffer: the tensor itself when it has one, else
/// a [`copy`].
pub(crate) fn contiguous(x: &FlexTensor) -> FlexTensor {
    if is_whole(x) { x.clone() } else { copy(x) }
}

/// A Flex f32 tensor copied to a fresh row-major buffer in parallel, in runs along its last
/// axis (Flex's own copy walks a strided tensor element by element, on one thread, and a
/// contiguous one in one `memcpy`).
fn copy(x: &FlexTensor) -> FlexTensor {
    let layout = x.layout();
    let shape = layout.shape().clone();
    // The axes, size-1 ones dropped and neighbours that step as one merged.
    let mut axes: Vec<(usize, isize)> = Vec::new();
    for (&size, &stride) in shape.iter().zip(layout.strides()) {
        match axes.last_mut() {
            _ if size == 1 => {}
            Some((outer, outer_stride)) if *outer_stride == stride * size as isize => {
                *outer *= size;
                *outer_stride = stride;
            }
            _ => axes.push((size, stride)),
        }
    }
    let total = shape.num_elements();
    if total == 0 {
        return tensor(Vec::new(), shape);
    }
    let (run, step) = axes.pop().unwrap_or((1, 1));
    let start = layout.start_offset() as isize;
    let src = x.storage::<f32>();
    let mut values = Vec::with_capacity(total);
    values.spare_capacity_mut()[..total]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(task, dst)| {
            // Output element `flat` is element `flat % run` of row `flat / run`; a task's
            // elements are the pieces of the rows it overlaps.
            let (mut flat, mut done) = (task * CHUNK, 0);
            while done < dst.len() {
                let (mut row, column) = (flat / run, flat % run);
                let count = (run - column).min(dst.len() - done);
                // The source offset of the row over the outer axes, then of the column.
                let mut offset = start + column as isize * step;
                for &(size, stride) in axes.iter().rev() {
                    offset += (row % size) as isize * stride;
                    row /= size;
                }
                let out = &mut dst[done..done + count];
                if step == 1 {
                    let src = &src[offset as usize..][..count];
                    for (o, &v) in out.iter_mut().zip(src) {
                        o.write(v);
                    }
                } else {
                    for (t, o) in out.iter_mut().enumerate() {
                        o.write(src[(offset + t as isize * step) as usize]);
                    }
                }
                done += count;
                flat += count;
            }
        });
    // SAFETY: the chunks cover the `total` elements, each written above.
    unsafe { values.set_len(total) };
    tensor(values, shape)
}

/// `a + b` for f32 tensors of the same shape, in parallel, written into whichever of the two
/// buffers is free to take it (a fresh one where neither is): the sum of two gradients of one
/// node, which Burn's autodiff forms with Flex's single-threaded addition.
pub(crate) fn add(a: FlexTensor, b: FlexTensor) -> FlexTensor {
    let free = |x: &FlexTensor| is_whole(x) && x.is_unique();
    let (mut sum, other) = if free(&a) {
        (a, b)
    } else if free(&b) {
        (b, a)
    } else {
        (copy(&a), b)
    };
    let other = if other.is_contiguous() {
        other
    } else {
        copy(&other)
    };
    let other = other.as_slice::<f32>().expect("a contiguous f32 tensor");
    sum.storage_mut::<f32>()
        .par_chunks_mut(CHUNK)
        .zip(other.par_chunks(CHUNK))
        .for_each(|(s, o)| add_slice(s, o));
    sum
}

vectorised! {
    /// `sum += other`, element by element.
    fn add_slice(sum: &mut [f32], other: &[f32]) {
        for (s, &o) in sum.iter_mut().zip(other) {
            *s += o;
        }
    }
}

/// The gradient of `x` from the gradient `grad` of its slice `x.narrow(axis, start, _)`
/// (`shape` is `x`'s), added in place to `x`'s gradient so far where there is one; where there
/// is none, a fresh buffer of zeros around the slice. One parallel pass over the slice (and
/// over the zeros); Burn's slice backward fills a zeroed buffer, copies it again to assign the
/// slice and adds the result to the gradient so far, each pass on one thread.
pub(crate) fn narrow_backward(
    so_far: Option<FlexTensor>,
    grad: &FlexTensor,
    shape: &Shape,
    axis: usize,
    start: usize,
) -> FlexTensor {
    let grad = contiguous(grad);
    let grad = grad.storage::<f32>();
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let width = grad.len() / outer.max(1);
    // Each outer index's row of `x` is `shape[axis] * inner` values; the slice's part of it
    // is the `width` from `start * inner`.
    let rows = Rows {
        row: shape[axis] * inner,
        lo: start * inner,
        width,
    };
    match so_far {
        Some(so_far) => {
            let mut sum = into_owned(so_far);
            sum.storage_mut::<f32>()
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(task, out)| {
                    rows.pieces(task * CHUNK, out.len(), |at, n, inside| {
                        if let Some(from) = inside {
                            add_slice(&mut out[at..at + n], &grad[from..from + n]);
                        }
                    })
                });
            sum
        }
        None => {
            let total = shape.num_elements();
            let mut values = Vec::with_capacity(total);
            values.spare_capacity_mut()[..total]
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(task, out)| {
                    rows.pieces(task * CHUNK, out.len(), |at, n, inside| {
                        let out = &mut out[at..at + n];
                        match inside {
                            Some(from) => {
                                for (o, &g) in out.iter_mut().zip(&grad[from..from + n]) {
                                    o.write(g);
                                }
                            }
                            None => out.iter_mut().for_each(|o| {
                                o.write(0.0);
                            }),
                        }
                    })
                });
            // SAFETY: the chunks cover the `total` elements, each written above.
            unsafe { values.set_len(total) };
            tensor(values, shape.clone())
        }
    }
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

/// [`super::time_taps`] on Flex; gives the tensor back on any other backend.
pub(super) fn time_taps<B: Backend>(
    x: Tensor<B, 4>,
    k: usize,
    stride: usize,
) -> Result<Tensor<B, 3>, Tensor<B, 4>> {
    map_primitive(x, |x| time_taps_forward(x, k, stride))
}

/// Output frames of a `(k, 1)` convolution with `k / 2` padding and `stride` over `t` frames,
/// and, for output frame `o` and tap `i`, the input frame it reads (if inside the clip).
fn tap_frames(
    t: usize,
    k: usize,
    stride: usize,
) -> (usize, impl Fn(usize, usize) -> Option<usize>) {
    let p = k / 2;
    let t_out = (t + 2 * p - k) / stride + 1;
    (t_out, move |o: usize, i: usize| {
        (o * stride + i).checked_sub(p).filter(|&f| f < t)
    })
}

/// `[N, C, T, V]` to the columns `[N, C * k, T_out * V]` of [`super::time_taps`]: each task one
/// channel of one sample, frames copied whole.
pub(crate) fn time_taps_forward(x: FlexTensor, k: usize, stride: usize) -> FlexTensor {
    let x = x.to_contiguous();
    let shape = x.layout().shape().clone();
    let [n, c, t, v] = [shape[0], shape[1], shape[2], shape[3]];
    let (t_out, source) = tap_frames(t, k, stride);
    let src = x.storage::<f32>();
    let mut values = vec![0.0f32; n * c * k * t_out * v];
    if !values.is_empty() {
        values
            .par_chunks_mut(k * t_out * v)
            .zip(src.par_chunks(t * v))
            .for_each(|(dst, frames)| {
                for (i, tap) in dst.chunks_exact_mut(t_out * v).enumerate() {
                    for (o, run) in tap.chunks_exact_mut(v).enumerate() {
                        if let Some(f) = source(o, i) {
                            run.copy_from_slice(&frames[f * v..][..v]);
                        }
                    }
                }
            });
    }
    tensor(values, Shape::new([n, c * k, t_out * v]))
}

/// The backward pass of [`time_taps_forward`] for a clip of `t` frames: every column frame's
/// gradient added to the input frame it was copied from.
pub(crate) fn time_taps_backward(
    grad: FlexTensor,
    t: usize,
    k: usize,
    stride: usize,
) -> FlexTensor {
    let grad = grad.to_contiguous();
    let shape = grad.layout().shape().clone();
    let (t_out, source) = tap_frames(t, k, stride);
    let [n, c, v] = [shape[0], shape[1] / k, shape[2] / t_out];
    let src = grad.storage::<f32>();
    let mut values = vec![0.0f32; n * c * t * v];
    if !values.is_empty() {
        values
            .par_chunks_mut(t * v)
            .zip(src.par_chunks(k * t_out * v))
            .for_each(|(dx, columns)| {
                for (i, tap) in columns.chunks_exact(t_out * v).enumerate() {
                    for (o, run) in tap.chunks_exact(v).enumerate() {
                        if let Some(f) = source(o, i) {
                            for (d, g) in dx[f * v..][..v].iter_mut().zip(run) {
                                *d += g;
                            }
                        }
                    }
                }
            });
    }
    tensor(values, Shape::new([n, c, t, v]))
}

/// What the backward pass of [`layer_norm_forward`] needs: the normalised input and each
/// row's reciprocal standard deviation.
#[derive(Clone, Debug)]
pub(crate) struct LayerNormSaved {
    normalised: FlexTensor,
    rstd: std::sync::Arc<Vec<f32>>,
    gamma: FlexTensor,
}

/// Layer normalisation over the last axis of a Flex f32 tensor: `(x - mean) / sqrt(var + eps)
/// * gamma + beta` per row (biased variance, as PyTorch), and what its backward pass needs.
pub(crate) fn layer_norm_forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: Option<FlexTensor>,
    epsilon: f64,
) -> (FlexTensor, LayerNormSaved) {
    let row = last_dim(&x);
    let mut normalised = into_owned(x);
    let rows = normalised.layout().num_elements() / row;
    let mut rstd = vec![0.0f32; rows];
    let chunk = rows_chunk(row);
    normalised
        .storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .zip(rstd.par_chunks_mut(chunk / row))
        .for_each(|(x, r)| {
            for (x, r) in x.chunks_exact_mut(row).zip(r) {
                *r = normalise_row(x, epsilon as f32);
            }
        });
    let gamma = gamma.to_contiguous();
    let beta = beta.map(|b| b.to_contiguous());
    let mut output = tensor(
        vec![0.0; normalised.layout().num_elements()],
        normalised.layout().shape().clone(),
    );
    {
        let (g, b) = (
            gamma.storage::<f32>(),
            beta.as_ref().map(|b| b.storage::<f32>()),
        );
        output
            .storage_mut::<f32>()
            .par_chunks_mut(chunk)
            .zip(normalised.storage::<f32>().par_chunks(chunk))
            .for_each(|(y, x)| {
                for (y, x) in y.chunks_exact_mut(row).zip(x.chunks_exact(row)) {
                    scale_shift_row(x, g, b, y);
                }
            });
    }
    let saved = LayerNormSaved {
        normalised,
        rstd: std::sync::Arc::new(rstd),
        gamma,
    };
    (output, saved)
}

/// The gradients of [`layer_norm_forward`] with respect to the input, gamma and beta.
pub(crate) fn layer_norm_backward(
    saved: &LayerNormSaved,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let row = last_dim(&saved.normalised);
    let chunk = rows_chunk(row);
    let mut grad = into_owned(grad);
    let normalised = saved.normalised.storage::<f32>();
    let gamma = saved.gamma.storage::<f32>();
    // Per task: the partial sums of grad * normalised (gamma's gradient) and of grad (beta's),
    // then the input's gradient in place of grad.
    let partial: Vec<(Vec<f32>, Vec<f32>)> = grad
        .storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .zip(normalised.par_chunks(chunk))
        .zip(saved.rstd.par_chunks(chunk / row))
        .map(|((g, x), r)| {
            let mut sums = (vec![0.0f32; row], vec![0.0f32; row]);
            for ((g, x), &r) in g.chunks_exact_mut(row).zip(x.chunks_exact(row)).zip(r) {
                layer_norm_grad_row(x, gamma, r, g, &mut sums.0, &mut sums.1);
            }
            sums
        })
        .collect();
    let (mut d_gamma, mut d_beta) = (vec![0.0f32; row], vec![0.0f32; row]);
    for (dg, db) in partial {
        d_gamma.iter_mut().zip(dg).for_each(|(a, b)| *a += b);
        d_beta.iter_mut().zip(db).for_each(|(a, b)| *a += b);
    }
    let shape = Shape::new([row]);
    (grad, tensor(d_gamma, shape.clone()), tensor(d_beta, shape))
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
    let (x, weight): (FlexTensor, FlexTensor) = unwrap_pair(x, weight)?;
    Ok(wrap(depthwise_forward(&x, &weight, stride, padding).0))
}

/// What the backward pass of [`depthwise_forward`] needs.
#[derive(Clone, Debug)]
pub(crate) struct DepthwiseSaved {
    x: FlexTensor,
    weight: FlexTensor,
    plane: Plane,
}

/// The depthwise Conv3d of a Flex f32 `x` `[N, C, T, H, W]` (any non-negative strides) with
/// `weight` `[C, 1, kt, kh, kw]`: one task per sample and channel. Also what its backward pass
/// needs.
pub(crate) fn depthwise_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    stride: [usize; 3],
    padding: [usize; 3],
) -> (FlexTensor, DepthwiseSaved) {
    let x = if x.layout().strides().iter().any(|&s| s < 0) {
        contiguous(x)
    } else {
        x.clone()
    };
    let weight = contiguous(weight);
    let shape = x.layout().shape();
    let [n, c, t, h, w] = [shape[0], shape[1], shape[2], shape[3], shape[4]];
    let wshape = weight.layout().shape();
    let kernel = [wshape[2], wshape[3], wshape[4]];
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
    let taps = kernel.iter().product::<usize>();
    let filters = &weight.storage::<f32>()[..c * taps];
    let mut values = vec![0.0f32; n * c * out.iter().product::<usize>()];
    values
        .par_chunks_mut(out.iter().product::<usize>().max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            let (sample, channel) = (i / c, i % c);
            let base = offset + sample * strides[0] + channel * strides[1];
            conv_plane(src, base, &filters[channel * taps..][..taps], plane, dst);
        });
    let y = tensor(values, Shape::from(vec![n, c, out[0], out[1], out[2]]));
    (y, DepthwiseSaved { x, weight, plane })
}

/// The gradients of [`depthwise_forward`] with respect to its input (contiguous) and weight,
/// from the output's gradient: each channel's input gradient is the filter scattered back over
/// the output gradient, its weight gradient the output gradient against each tap's inputs,
/// summed over the batch (one task per channel, so no two tasks write the same value).
pub(crate) fn depthwise_backward(saved: &DepthwiseSaved, grad: &FlexTensor) -> [FlexTensor; 2] {
    let grad = contiguous(grad);
    let (x, plane) = (&saved.x, saved.plane);
    let shape = x.layout().shape().clone();
    let [n, c] = [shape[0], shape[1]];
    let [t, h, w] = plane.size;
    let taps = plane.kernel.iter().product::<usize>();
    let outputs = plane.out.iter().product::<usize>();
    let filters = saved.weight.storage::<f32>();
    let g = grad.storage::<f32>();
    let strides: Vec<usize> = x.layout().strides().iter().map(|&s| s as usize).collect();
    let (src, offset) = (x.storage::<f32>(), x.layout().start_offset());
    // The input gradient as a contiguous tensor: planes of `t * h * w`.
    let dense = Plane {
        strides: [h * w, w, 1],
        ..plane
    };
    let mut dx = vec![0.0f32; n * c * t * h * w];
    dx.par_chunks_mut((t * h * w).max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            let filter = &filters[(i % c) * taps..][..taps];
            conv_plane_adjoint(&g[i * outputs..][..outputs], filter, dense, dst);
        });
    let mut d_weight = vec![0.0f32; c * taps];
    d_weight
        .par_chunks_mut(taps.max(1))
        .enumerate()
        .for_each(|(channel, d)| {
            for sample in 0..n {
                let base = offset + sample * strides[0] + channel * strides[1];
                let g = &g[(sample * c + channel) * outputs..][..outputs];
                conv_plane_weight(src, base, g, plane, d);
            }
        });
    [
        tensor(dx, shape),
        tensor(d_weight, saved.weight.layout().shape().clone()),
    ]
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
        let (step, sw) = (plane.stride[2], plane.strides[2]);
        for_each_tap_row(
            plane,
            #[inline(always)]
            |tap, out_row, in_row, cols, first| {
                let weight = filter[tap];
                let row = base + in_row;
                let out = &mut dst[out_row..][cols];
                if step == 1 && sw == 1 {
                    for (o, v) in out.iter_mut().zip(&src[row + first..]) {
                        *o += weight * v;
                    }
                } else {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o += weight * src[row + (first + k * step) * sw];
                    }
                }
            },
        );
    }
}

/// Calls `f(tap, out_row, in_row, columns, first_input_column)` for every filter tap and
/// output row of one channel's convolution with `plane`: `out_row` starts the row of outputs
/// (row-major `T' x H' x W'`), `in_row` the input row (through `plane`'s strides), `columns` the
/// valid output columns, whose inputs start at column `first_input_column`.
#[inline(always)]
fn for_each_tap_row(
    plane: Plane,
    mut f: impl FnMut(usize, usize, usize, std::ops::Range<usize>, usize),
) {
    let [_, ho, wo] = plane.out;
    let [kt, kh, kw] = plane.kernel;
    let [st, sh, _] = plane.strides;
    for (t, i) in (0..kt).flat_map(|t| plane.valid(0, t).map(move |i| (t, i))) {
        let ti = i * plane.stride[0] + t - plane.padding[0];
        for (y, j) in (0..kh).flat_map(|y| plane.valid(1, y).map(move |j| (y, j))) {
            let yi = j * plane.stride[1] + y - plane.padding[1];
            for x in 0..kw {
                let cols = plane.valid(2, x);
                let first = cols.start * plane.stride[2] + x - plane.padding[2];
                f(
                    (t * kh + y) * kw + x,
                    (i * ho + j) * wo,
                    ti * st + yi * sh,
                    cols,
                    first,
                );
            }
        }
    }
}

vectorised! {
    /// The adjoint of [`conv_plane`] for one channel: `dst` (the input plane, zeroed, laid out
    /// by `plane`'s strides) += each tap's weight times the output gradient `grad` at the
    /// outputs that read it.
    fn conv_plane_adjoint(grad: &[f32], filter: &[f32], plane: Plane, dst: &mut [f32]) {
        let (step, sw) = (plane.stride[2], plane.strides[2]);
        for_each_tap_row(
            plane,
            #[inline(always)]
            |tap, out_row, in_row, cols, first| {
                let weight = filter[tap];
                let g = &grad[out_row..][cols];
                if step == 1 && sw == 1 {
                    for (d, &g) in dst[in_row + first..][..g.len()].iter_mut().zip(g) {
                        *d += weight * g;
                    }
                } else {
                    for (k, &g) in g.iter().enumerate() {
                        dst[in_row + (first + k * step) * sw] += weight * g;
                    }
                }
            },
        );
    }
}

vectorised! {
    /// One sample and channel's contribution to the weight gradient of [`conv_plane`]: `d`
    /// (one per tap) += the output gradient `grad` against each tap's inputs.
    fn conv_plane_weight(src: &[f32], base: usize, grad: &[f32], plane: Plane, d: &mut [f32]) {
        let (step, sw) = (plane.stride[2], plane.strides[2]);
        for_each_tap_row(
            plane,
            #[inline(always)]
            |tap, out_row, in_row, cols, first| {
                let g = &grad[out_row..][cols];
                let row = base + in_row;
                d[tap] += if step == 1 && sw == 1 {
                    dot(g, &src[row + first..][..g.len()])
                } else {
                    g.iter()
                        .enumerate()
                        .map(|(k, &g)| g * src[row + (first + k * step) * sw])
                        .sum::<f32>()
                };
            },
        );
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
        let sum = map_sum(row, |v| exp_f32(v - max), |e| e);
        let scale = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= scale;
        }
    }
}

vectorised! {
    /// AdamW on a slice, each step as Burn's AdamW rounds it: `c` is `[beta_1, beta_2,
    /// 1 - beta_1, 1 - beta_2, bias correction 1, bias correction 2, epsilon, 1 - lr * decay,
    /// lr]`.
    fn adamw_slice(
        param: &mut [f32],
        grad: &[f32],
        moment_1: &mut [f32],
        moment_2: &mut [f32],
        c: [f32; 9],
    ) {
        let [b1, b2, f1, f2, c1, c2, eps, keep, lr] = c;
        for (((p, &g), m), v) in param
            .iter_mut()
            .zip(grad)
            .zip(moment_1.iter_mut())
            .zip(moment_2.iter_mut())
        {
            *m = *m * b1 + g * f1;
            *v = *v * b2 + (g * g) * f2;
            let delta = (*m / c1) / ((*v / c2).sqrt() + eps);
            *p = *p * keep - delta * lr;
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

/// erf(x / sqrt 2) and exp(-x^2 / 2) through Abramowitz & Stegun 7.1.26 (absolute error
/// under 1.5e-7, the formula PyTorch's vectorised CPU `erf` uses).
#[inline(always)]
fn erf_and_gauss(x: f32) -> (f32, f32) {
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
    let gauss = exp_f32(-a * a);
    ((1.0 - poly * gauss).copysign(z), gauss)
}

/// GELU of one value: `0.5 x (1 + erf(x / sqrt 2))`.
#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_and_gauss(x).0)
}

/// GELU's derivative at `x`: `Phi(x) + x phi(x)`.
#[inline(always)]
fn gelu_grad_f32(x: f32) -> f32 {
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let (erf, gauss) = erf_and_gauss(x);
    0.5 * (1.0 + erf) + x * gauss * FRAC_1_SQRT_2PI
}

vectorised! {
    /// GELU in place.
    fn gelu_slice(x: &mut [f32]) {
        for v in x {
            *v = gelu_f32(*v);
        }
    }
}

vectorised! {
    /// The gradient through GELU in place of `grad`, at `x`.
    fn gelu_grad_slice(x: &[f32], grad: &mut [f32]) {
        for (g, &x) in grad.iter_mut().zip(x) {
            *g *= gelu_grad_f32(x);
        }
    }
}

vectorised! {
    /// One row of the softmax's backward pass, in place of `grad`.
    fn softmax_grad_row(y: &[f32], grad: &mut [f32]) {
        let dot = dot(y, grad);
        for (g, &y) in grad.iter_mut().zip(y) {
            *g = y * (*g - dot);
        }
    }
}

vectorised! {
    /// Normalises one row in place to zero mean and unit variance; returns 1 / sqrt(var + eps).
    fn normalise_row(x: &mut [f32], epsilon: f32) -> f32 {
        let n = x.len() as f32;
        let mean = sum(x) / n;
        let var = map_sum(x, |v| v - mean, |d| d * d);
        let rstd = 1.0 / (var / n + epsilon).sqrt();
        for v in x.iter_mut() {
            *v *= rstd;
        }
        rstd
    }
}

vectorised! {
    /// `y = x * gamma + beta` over one row.
    fn scale_shift_row(x: &[f32], gamma: &[f32], beta: Option<&[f32]>, y: &mut [f32]) {
        match beta {
            Some(beta) => {
                for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                    *y = x * g + b;
                }
            }
            None => {
                for ((y, &x), &g) in y.iter_mut().zip(x).zip(gamma) {
                    *y = x * g;
                }
            }
        }
    }
}

vectorised! {
    /// One row of the layer norm's backward pass: adds `grad * x` and `grad` to gamma's and
    /// beta's sums, then writes the input's gradient over `grad`:
    /// `rstd * (dx - mean(dx) - x * mean(dx * x))` with `dx = grad * gamma`, `x` normalised.
    fn layer_norm_grad_row(
        x: &[f32],
        gamma: &[f32],
        rstd: f32,
        grad: &mut [f32],
        d_gamma: &mut [f32],
        d_beta: &mut [f32],
    ) {
        let n = x.len() as f32;
        let mut sum_dx = [0.0f32; LANES];
        let mut sum_dx_x = [0.0f32; LANES];
        for (i, ((g, &x), &gm)) in grad.iter_mut().zip(x).zip(gamma).enumerate() {
            d_gamma[i] += *g * x;
            d_beta[i] += *g;
            *g *= gm;
            sum_dx[i % LANES] += *g;
            sum_dx_x[i % LANES] += *g * x;
        }
        let mean_dx = sum_dx.iter().sum::<f32>() / n;
        let mean_dx_x = sum_dx_x.iter().sum::<f32>() / n;
        for (g, &x) in grad.iter_mut().zip(x) {
            *g = rstd * (*g - mean_dx - x * mean_dx_x);
        }
    }
}

/// The sum of `x`, in [`LANES`] independent accumulators.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Replaces each value of `x` by `f(value)` and returns the sum of `term` over the new values,
/// in [`LANES`] independent accumulators.
#[inline(always)]
fn map_sum(x: &mut [f32], f: impl Fn(f32) -> f32, term: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *v = f(*v);
            *a += term(*v);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = f(*v);
        sum += term(*v);
    }
    sum
}

/// The dot product of `a` and `b`, in [`LANES`] independent accumulators.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// The sum of `term(a_i, b_i)` in [`LANES`] independent accumulators (which vectorise).
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += term(x, y);
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| term(x, y))
        .sum();
    acc.iter().sum::<f32>() + tail
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
