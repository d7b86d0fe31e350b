//! Layout copies: the head swap of attention, views made contiguous, sums of gradients and
//! the gradient of a slice.

use super::*;

/// [`crate::swap_heads`] on Flex; gives the tensor back on any other backend.
pub(crate) fn swap_heads<B: Backend>(x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    map_primitive(x, swap_heads_forward)
}

/// `[A, P, Q, R]` (any strides) to a contiguous `[A, Q, P, R]`: the layout change between
/// tokens `[B, N, H, Dh]` and heads `[B, H, N, Dh]`.
pub(crate) fn swap_heads_forward(x: FlexTensor) -> FlexTensor {
    contiguous(&x.transpose(1, 2))
}

/// [`crate::contiguous`] on Flex; gives the tensor back on any other backend.
pub(crate) fn contiguous_layout<B: Backend, const D: usize>(
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
pub(crate) fn copy(x: &FlexTensor) -> FlexTensor {
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
    pub(crate) fn add_slice(sum: &mut [f32], other: &[f32]) {
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
