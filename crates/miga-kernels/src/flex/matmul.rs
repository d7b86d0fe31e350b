//! Batched matrix products of Flex f32 tensors straight into a fresh buffer, and their
//! gradients.
//!
//! Flex's own product allocates its output as zeroed bytes, then copies them to an aligned
//! buffer before `gemm` overwrites them: a memset and a copy of every output, on one thread
//! (9% of a 2s-AGCN training step). Here the output is written once. The gradients of an
//! operand broadcast over the batch are summed by `gemm` itself (accumulating into the same
//! matrix) instead of one product per batch entry and then a sum over them.

use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use super::{CHUNK, add_slice, tensor};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::primitive::{is_f32, unwrap, unwrap_pair, wrap};

/// [`crate::matmul`] on Flex; gives the operands back on any other backend.
#[allow(clippy::type_complexity)]
pub(crate) fn matmul<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    let (lhs, rhs): (FlexTensor, FlexTensor) = unwrap_pair(lhs, rhs)?;
    Ok(wrap(matmul_forward(&lhs, &rhs)))
}

/// [`crate::linear`] on Flex; gives the input back on any other backend.
pub(crate) fn linear<B: Backend, const D: usize>(
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

/// Multiply-adds in one product above which `gemm` splits it over the threads (Flex's).
const PARALLEL_PRODUCT: usize = 192 * 192 * 192;
/// Multiply-adds in a whole batch above which its products run in parallel (Flex's).
const PARALLEL_BATCH: usize = 128 * 128 * 128;

/// One operand of a batched product as it is read: the matrices `[.., rows, cols]` of a Flex
/// f32 tensor through its strides, possibly transposed, with the element offset of each
/// entry of the output batch (the same offset for every entry along a broadcast axis).
struct Operand<'a> {
    data: &'a [f32],
    offsets: Vec<isize>,
    row: isize,
    col: isize,
}

impl<'a> Operand<'a> {
    /// `x`'s matrices (transposed when `transpose`) for the output batch `batch` (`x`'s batch
    /// axes are each of the output's size or 1).
    fn new(x: &'a FlexTensor, batch: &[usize], transpose: bool) -> Self {
        let layout = x.layout();
        let strides = layout.strides();
        let rank = strides.len();
        let shape = layout.shape();
        let axis_strides: Vec<isize> = (0..rank - 2)
            .map(|axis| if shape[axis] == 1 { 0 } else { strides[axis] })
            .collect();
        let start = layout.start_offset() as isize;
        let offsets = batch_indices(batch)
            .map(|index| {
                start
                    + index
                        .iter()
                        .zip(&axis_strides)
                        .map(|(&i, &s)| i as isize * s)
                        .sum::<isize>()
            })
            .collect();
        let (row, col) = (strides[rank - 2], strides[rank - 1]);
        let (row, col) = if transpose { (col, row) } else { (row, col) };
        Operand {
            data: x.storage::<f32>(),
            offsets,
            row,
            col,
        }
    }

    fn matrix(&self, entry: usize) -> Matrix {
        Matrix {
            // SAFETY: the offset is that of an element of `data` (from the tensor's layout).
            start: unsafe { self.data.as_ptr().offset(self.offsets[entry]) },
            row: self.row,
            col: self.col,
        }
    }
}

/// A matrix read in place: its first element and the steps between rows and columns.
#[derive(Clone, Copy)]
struct Matrix {
    start: *const f32,
    row: isize,
    col: isize,
}

/// `out` (`[m, n]`, rows `row` and columns `col` apart) `= a @ b`, or `+= a @ b` when
/// `accumulate`; `a` is `[m, k]`, `b` `[k, n]`.
///
/// # Safety
/// Every element of the three matrices must lie in memory valid for the access, `out` not
/// overlapping `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    out: *mut f32,
    row: isize,
    col: isize,
    [m, n, k]: [usize; 3],
    a: Matrix,
    b: Matrix,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: as the caller guarantees.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            col,
            row,
            accumulate,
            a.start,
            a.col,
            a.row,
            b.start,
            b.col,
            b.row,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// How `gemm` splits one product of `m * n * k` multiply-adds: over the threads when large.
fn split(product: usize) -> gemm::Parallelism {
    if product >= PARALLEL_PRODUCT {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// Every multi-index of `shape`, in row-major order.
fn batch_indices(shape: &[usize]) -> impl Iterator<Item = Vec<usize>> + '_ {
    let count: usize = shape.iter().product();
    (0..count).map(move |mut flat| {
        let mut index = vec![0; shape.len()];
        for (i, &size) in index.iter_mut().zip(shape).rev() {
            *i = flat % size;
            flat /= size;
        }
        index
    })
}

/// The batch axes of `x` `[.., rows, cols]`.
fn batch_of(x: &FlexTensor) -> &[usize] {
    let shape = x.layout().shape();
    &shape[..shape.num_dims() - 2]
}

/// `lhs` `[.., M, K]` times `rhs` `[.., K, N]`, the batch axes broadcast (each the same size
/// in both or 1 in one): `[.., M, N]`.
pub(crate) fn matmul_forward(lhs: &FlexTensor, rhs: &FlexTensor) -> FlexTensor {
    let batch: Vec<usize> = batch_of(lhs)
        .iter()
        .zip(batch_of(rhs))
        .map(|(&l, &r)| l.max(r))
        .collect();
    let (l, r) = (lhs.layout().shape(), rhs.layout().shape());
    let [m, k, n] = [
        l[l.num_dims() - 2],
        l[l.num_dims() - 1],
        r[r.num_dims() - 1],
    ];
    let entries = batch.iter().product();
    let a = Operand::new(lhs, &batch, false);
    let b = Operand::new(rhs, &batch, false);
    let values = products(
        m,
        n,
        k,
        &a,
        &b,
        (0..entries).map(|e| vec![e]).collect(),
        false,
    );
    let mut dims = batch;
    dims.extend([m, n]);
    tensor(values, Shape::from(dims))
}

/// The gradients of `lhs` and `rhs` (where `want` says) from `grad`, the gradient of
/// `lhs @ rhs`: `grad @ rhs^T` and `lhs^T @ grad`, each summed over the batch axes its operand
/// was broadcast along.
pub(crate) fn matmul_backward(
    lhs: &FlexTensor,
    rhs: &FlexTensor,
    grad: &FlexTensor,
    want: [bool; 2],
) -> [Option<FlexTensor>; 2] {
    let batch = batch_of(grad).to_vec();
    let shape = grad.layout().shape();
    let [m, n] = [shape[shape.num_dims() - 2], shape[shape.num_dims() - 1]];
    let g = Operand::new(grad, &batch, false);
    // The gradient of `x` as the products `first @ second` over `inner`, its matrices laid out
    // as `x`'s are (a transposed view gets a transposed gradient, whose transpose back and
    // reshape are then free).
    let gradient = |x: &FlexTensor, first: &Operand, second: &Operand, inner: usize| {
        let shape = x.layout().shape().clone();
        let rank = shape.num_dims();
        let (rows, cols) = (shape[rank - 2], shape[rank - 1]);
        let strides = x.layout().strides();
        let column_major = strides[rank - 2] == 1 && strides[rank - 1] != 1;
        let groups = sources(&batch, batch_of(x));
        let values = products(rows, cols, inner, first, second, groups, column_major);
        if !column_major {
            return tensor(values, shape);
        }
        let mut strides: Vec<isize> = vec![(rows * cols) as isize; rank];
        for axis in (0..rank - 2).rev().skip(1) {
            strides[axis] = strides[axis + 1] * shape[axis + 1] as isize;
        }
        (strides[rank - 2], strides[rank - 1]) = (1, rows as isize);
        FlexTensor::new(
            Bytes::from_elems(values),
            Layout::new(shape, strides, 0),
            DType::F32,
        )
    };
    let d_lhs = want[0].then(|| gradient(lhs, &g, &Operand::new(rhs, &batch, true), n));
    let d_rhs = want[1].then(|| gradient(rhs, &Operand::new(lhs, &batch, true), &g, m));
    [d_lhs, d_rhs]
}

/// For each entry of the batch `target` (an operand's, each axis the size of `batch`'s or 1),
/// the entries of `batch` that were broadcast from it.
fn sources(batch: &[usize], target: &[usize]) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); target.iter().product()];
    for (entry, index) in batch_indices(batch).enumerate() {
        let to = index.iter().zip(target).fold(0, |flat, (&i, &size)| {
            flat * size + if size == 1 { 0 } else { i }
        });
        groups[to].push(entry);
    }
    groups
}

/// `groups.len()` contiguous `[m, n]` matrices (column-major where `column_major`), the
/// `t`-th the sum over the batch entries `e` in `groups[t]` of `a_e @ b_e` (`a_e` `[m, k]`,
/// `b_e` `[k, n]`); zero for no entry.
fn products(
    m: usize,
    n: usize,
    k: usize,
    a: &Operand,
    b: &Operand,
    groups: Vec<Vec<usize>>,
    column_major: bool,
) -> Vec<f32> {
    let size = m * n;
    let mut values = Vec::with_capacity(groups.len() * size);
    if size == 0 {
        return values;
    }
    let (row, col) = if column_major {
        (1, m as isize)
    } else {
        (n as isize, 1)
    };
    // Each product accumulates into its group's matrix, which the first one overwrites:
    // the buffer is written before it is read.
    let run = |out: *mut f32, group: &[usize], parallelism: gemm::Parallelism| {
        if group.is_empty() || k == 0 {
            // SAFETY: `out` is the start of `size` elements of the buffer's capacity.
            unsafe { std::ptr::write_bytes(out, 0, size) };
            return;
        }
        for (i, &entry) in group.iter().enumerate() {
            let (a, b) = (a.matrix(entry), b.matrix(entry));
            // SAFETY: `out` is `[m, n]` (through `row`, `col`) within the buffer's capacity;
            // `a` and `b` are read through their tensors' strides, within their buffers.
            unsafe { gemm_into(out, row, col, [m, n, k], a, b, i > 0, parallelism) };
        }
    };
    let product = m * n * k;
    let total = product * groups.iter().map(Vec::len).sum::<usize>();
    let spare = &mut values.spare_capacity_mut()[..groups.len() * size];
    if groups.len() > 1
        && total >= PARALLEL_BATCH
        && (groups.len() >= 4 || product < PARALLEL_PRODUCT)
    {
        spare
            .par_chunks_mut(size)
            .zip(groups.par_iter())
            .for_each(|(out, group)| run(out.as_mut_ptr().cast(), group, gemm::Parallelism::None));
    } else if let [group] = groups.as_slice()
        && group.len() > 1
        && total >= PARALLEL_BATCH
    {
        // One sum over many entries (the gradient of an operand broadcast over the batch,
        // e.g. a weight): `gemm` splits a product with few rows poorly over the threads, so
        // each thread sums its share of the entries into its own matrix, and those are added.
        let threads = rayon::current_num_threads().clamp(1, group.len());
        let share = group.len().div_ceil(threads);
        let head = &mut spare[..size];
        let ((), partials) = rayon::join(
            || {
                run(
                    head.as_mut_ptr().cast(),
                    &group[..share],
                    gemm::Parallelism::None,
                )
            },
            || {
                group[share..]
                    .par_chunks(share)
                    .map(|part| {
                        let mut partial = Vec::with_capacity(size);
                        run(partial.as_mut_ptr(), part, gemm::Parallelism::None);
                        // SAFETY: `run` wrote the `size` elements.
                        unsafe { partial.set_len(size) };
                        partial
                    })
                    .collect::<Vec<Vec<f32>>>()
            },
        );
        // SAFETY: `run` wrote the first `size` elements.
        let out = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<f32>(), size) };
        for partial in &partials {
            out.par_chunks_mut(CHUNK)
                .zip(partial.par_chunks(CHUNK))
                .for_each(|(o, p)| add_slice(o, p));
        }
    } else {
        let parallelism = split(product);
        for (out, group) in spare.chunks_mut(size).zip(&groups) {
            run(out.as_mut_ptr().cast(), group, parallelism);
        }
    }
    // SAFETY: every one of the matrices was written above.
    unsafe { values.set_len(groups.len() * size) };
    values
}

/// A 2-D tensor as a [`Matrix`] read in place.
fn matrix_2d(x: &FlexTensor) -> Matrix {
    let layout = x.layout();
    let strides = layout.strides();
    Matrix {
        // SAFETY: the start offset is that of the tensor's first element, within its buffer.
        start: unsafe { x.storage::<f32>().as_ptr().add(layout.start_offset()) },
        row: strides[0],
        col: strides[1],
    }
}

/// `x` `[.., K]` as contiguous rows `[R, K]`: `(x, R, K)`.
fn rows(x: &FlexTensor) -> (FlexTensor, usize, usize) {
    let shape = x.layout().shape();
    let width = shape[shape.num_dims() - 1];
    let count = shape.num_elements() / width.max(1);
    (x.to_contiguous(), count, width)
}

/// The row-major `[m, n]` product `a @ b` over `k`, plus `bias` `[n]` on every row when given
/// (its starting value), written once.
fn product(m: usize, n: usize, k: usize, a: Matrix, b: Matrix, bias: Option<&[f32]>) -> Vec<f32> {
    let size = m * n;
    let mut values = Vec::with_capacity(size);
    let spare = &mut values.spare_capacity_mut()[..size];
    if size > 0 {
        match bias {
            Some(bias) => spare.par_chunks_mut(n).for_each(|row| {
                for (v, &b) in row.iter_mut().zip(bias) {
                    v.write(b);
                }
            }),
            None if k == 0 => spare.iter_mut().for_each(|v| {
                v.write(0.0);
            }),
            None => {}
        }
        if k > 0 {
            // SAFETY: `spare` holds the `[m, n]` output, `a` and `b` lie in their buffers;
            // without a bias the output is only written.
            unsafe {
                gemm_into(
                    spare.as_mut_ptr().cast(),
                    n as isize,
                    1,
                    [m, n, k],
                    a,
                    b,
                    bias.is_some(),
                    split(size * k),
                )
            };
        }
    }
    // SAFETY: every element was written above (the bias, then the product, or zeros).
    unsafe { values.set_len(size) };
    values
}

/// `x` `[.., in]` times `weight` `[in, out]` plus `bias` `[out]` on every row: `[.., out]`,
/// Burn's `linear` in one pass (the bias is the output's starting value).
pub(crate) fn linear_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
) -> FlexTensor {
    let (x, count, inner) = rows(x);
    let out = weight.layout().shape()[1];
    let mut dims = x.layout().shape().to_vec();
    *dims.last_mut().expect("a linear input has an axis") = out;
    let input = Matrix {
        start: x.storage::<f32>().as_ptr(),
        row: inner as isize,
        col: 1,
    };
    let bias = bias.map(|b| b.to_contiguous());
    let bias = bias.as_ref().map(|b| b.storage::<f32>());
    let values = product(count, out, inner, input, matrix_2d(weight), bias);
    tensor(values, Shape::from(dims))
}

/// The gradients of `linear_forward(x, weight, bias)` from the output's `grad`, where `want`
/// says (input, weight, bias): `grad @ weight^T`, `x^T @ grad` over every row at once, and
/// the column sums of `grad`.
pub(crate) fn linear_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    want: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let (grad, count, out) = rows(grad);
    let (x, _, inner) = rows(x);
    let g = Matrix {
        start: grad.storage::<f32>().as_ptr(),
        row: out as isize,
        col: 1,
    };
    let w = matrix_2d(weight);
    let d_x = want[0].then(|| {
        let transposed = Matrix {
            row: w.col,
            col: w.row,
            ..w
        };
        let values = product(count, inner, out, g, transposed, None);
        tensor(values, x.layout().shape().clone())
    });
    let d_weight = want[1].then(|| {
        let columns = Matrix {
            start: x.storage::<f32>().as_ptr(),
            row: 1,
            col: inner as isize,
        };
        tensor(
            product(inner, out, count, columns, g, None),
            Shape::new([inner, out]),
        )
    });
    let d_bias = want[2].then(|| {
        let sums = grad
            .storage::<f32>()
            .par_chunks(out.max(1) * 256)
            .fold(
                || vec![0.0f32; out],
                |mut sums, block| {
                    for row in block.chunks_exact(out) {
                        sums.iter_mut().zip(row).for_each(|(s, &g)| *s += g);
                    }
                    sums
                },
            )
            .reduce(
                || vec![0.0f32; out],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        tensor(sums, Shape::new([out]))
    });
    [d_x, d_weight, d_bias]
}
