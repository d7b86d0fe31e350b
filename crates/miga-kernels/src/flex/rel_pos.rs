//! MViTv2's decomposed relative-position terms as extra columns of the queries, and their
//! gradients (see [`crate::rel_pos_query`]).

use std::mem::MaybeUninit;

use burn::tensor::Shape;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{CHUNK, contiguous, dot, tensor};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::primitive::{is_f32, unwrap, wrap};

/// [`crate::rel_pos_query`] on Flex; gives the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(crate) fn rel_pos_query<B: Backend>(
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

/// What the backward pass needs: the queries, the three tables and the scale.
#[derive(Clone, Debug)]
pub(crate) struct RelPosSaved {
    q: FlexTensor,
    tables: [FlexTensor; 3],
    scale: f32,
}

/// The shapes of one call: `groups` x `1 + T*H*W` queries of `dim` channels on the grid
/// `[T, H, W]`, and the key lengths `[kt, kh, kw]` of the three tables.
#[derive(Clone, Copy)]
struct Geometry {
    groups: usize,
    dim: usize,
    grid: [usize; 3],
    keys: [usize; 3],
}

impl Geometry {
    fn new(q: &FlexTensor, tables: &[FlexTensor; 3]) -> Self {
        let shape = q.layout().shape();
        let table = |i: usize| {
            let s = tables[i].layout().shape();
            (s[0], s[1])
        };
        let [(qt, kt), (qh, kh), (qw, kw)] = [table(0), table(1), table(2)];
        Geometry {
            groups: shape[0],
            dim: shape[2],
            grid: [qt, qh, qw],
            keys: [kt, kh, kw],
        }
    }

    /// Queries per group: the class token and the grid.
    fn queries(&self) -> usize {
        1 + self.grid.iter().product::<usize>()
    }

    /// Columns of the output: the scaled query, then the terms of each axis.
    fn width(&self) -> usize {
        self.dim + self.keys.iter().sum::<usize>()
    }

    /// The grid position `(t, h, w)` of query `i` of a group (`None`: the class token).
    fn position(&self, i: usize) -> Option<[usize; 3]> {
        let [_, qh, qw] = self.grid;
        let p = i.checked_sub(1)?;
        Some([p / (qh * qw), (p / qw) % qh, p % qw])
    }

    /// The queries of every group whose position on `axis` is `at`, as row indices of the
    /// `[groups * queries, ..]` rows.
    fn rows_at(&self, axis: usize, at: usize) -> impl Iterator<Item = usize> + '_ {
        let [qt, qh, qw] = self.grid;
        let range = move |a: usize, len: usize| if a == axis { at..at + 1 } else { 0..len };
        let n = self.queries();
        (0..self.groups).flat_map(move |g| {
            range(0, qt).flat_map(move |t| {
                range(1, qh)
                    .flat_map(move |h| range(2, qw).map(move |w| g * n + 1 + (t * qh + h) * qw + w))
            })
        })
    }
}

/// `[G, 1 + T*H*W, d]` queries and tables `[T, kt, d]`, `[H, kh, d]`, `[W, kw, d]` to the
/// columns `[G, 1 + T*H*W, d + kt + kh + kw]` of [`crate::rel_pos_query`], rows in parallel.
pub(crate) fn rel_pos_forward(
    q: &FlexTensor,
    tables: [&FlexTensor; 3],
    scale: f32,
) -> (FlexTensor, RelPosSaved) {
    let q = contiguous(q);
    let tables = tables.map(contiguous);
    let geometry = Geometry::new(&q, &tables);
    let (width, n) = (geometry.width(), geometry.queries());
    let rows = geometry.groups * n;
    let total = rows * width;
    let mut values = Vec::with_capacity(total);
    if total > 0 {
        let per_task = CHUNK.div_ceil(width).max(1);
        let (qs, ts) = (
            q.storage::<f32>(),
            tables.each_ref().map(|t| t.storage::<f32>()),
        );
        values.spare_capacity_mut()[..total]
            .par_chunks_mut(per_task * width)
            .enumerate()
            .for_each(|(task, out)| {
                query_rows(out, task * per_task, qs, ts, geometry, scale);
            });
    }
    // SAFETY: every row was written above.
    unsafe { values.set_len(total) };
    let y = tensor(values, Shape::new([geometry.groups, n, width]));
    (y, RelPosSaved { q, tables, scale })
}

vectorised! {
    /// Output rows from `first` on (`out` holds whole rows): the scaled query, then its dot
    /// product with every table row of its position on each axis (zeros for the class token).
    fn query_rows(
        out: &mut [MaybeUninit<f32>],
        first: usize,
        q: &[f32],
        tables: [&[f32]; 3],
        geometry: Geometry,
        scale: f32,
    ) {
        let (d, width, n) = (geometry.dim, geometry.width(), geometry.queries());
        for (r, out) in out.chunks_exact_mut(width).enumerate() {
            let row = first + r;
            let q = &q[row * d..][..d];
            for (o, &v) in out.iter_mut().zip(q) {
                o.write(v * scale);
            }
            let position = geometry.position(row % n);
            let mut column = d;
            for axis in 0..3 {
                let k = geometry.keys[axis];
                let terms = &mut out[column..column + k];
                match position {
                    Some(position) => {
                        let table = &tables[axis][position[axis] * k * d..][..k * d];
                        for (o, key) in terms.iter_mut().zip(table.chunks_exact(d)) {
                            o.write(dot(q, key));
                        }
                    }
                    None => terms.iter_mut().for_each(|o| {
                        o.write(0.0);
                    }),
                }
                column += k;
            }
        }
    }
}

/// The gradients of the queries and the three tables from the output's `grad`.
pub(crate) fn rel_pos_backward(saved: &RelPosSaved, grad: &FlexTensor) -> [FlexTensor; 4] {
    let geometry = Geometry::new(&saved.q, &saved.tables);
    let grad = contiguous(grad);
    let (g, q) = (grad.storage::<f32>(), saved.q.storage::<f32>());
    let tables = saved.tables.each_ref().map(|t| t.storage::<f32>());
    let (d, width) = (geometry.dim, geometry.width());
    let rows = geometry.groups * geometry.queries();
    let mut dq = vec![0.0f32; rows * d];
    if !dq.is_empty() {
        let per_task = CHUNK.div_ceil(d).max(1);
        dq.par_chunks_mut(per_task * d)
            .enumerate()
            .for_each(|(task, dq)| {
                query_gradients(dq, task * per_task, g, tables, geometry, saved.scale)
            });
    }
    let mut column = d;
    let d_tables = std::array::from_fn(|axis| {
        let (len, k) = (geometry.grid[axis], geometry.keys[axis]);
        let mut dt = vec![0.0f32; len * k * d];
        if !dt.is_empty() {
            dt.par_chunks_mut(k * d).enumerate().for_each(|(at, dt)| {
                let rows = geometry.rows_at(axis, at);
                table_gradient(dt, rows, g, q, width, column, d);
            });
        }
        column += k;
        tensor(dt, Shape::new([len, k, d]))
    });
    let [dt, dh, dw] = d_tables;
    [tensor(dq, saved.q.layout().shape().clone()), dt, dh, dw]
}

vectorised! {
    /// The query gradients of rows from `first` on (`dq` holds whole rows, zeroed): the
    /// scaled gradient of the query's own columns plus each term's gradient times its table
    /// row.
    fn query_gradients(
        dq: &mut [f32],
        first: usize,
        grad: &[f32],
        tables: [&[f32]; 3],
        geometry: Geometry,
        scale: f32,
    ) {
        let (d, width, n) = (geometry.dim, geometry.width(), geometry.queries());
        for (r, dq) in dq.chunks_exact_mut(d).enumerate() {
            let row = first + r;
            let g = &grad[row * width..][..width];
            for (o, &v) in dq.iter_mut().zip(g) {
                *o = v * scale;
            }
            let Some(position) = geometry.position(row % n) else {
                continue;
            };
            let mut column = d;
            for axis in 0..3 {
                let k = geometry.keys[axis];
                let table = &tables[axis][position[axis] * k * d..][..k * d];
                for (&gk, key) in g[column..column + k].iter().zip(table.chunks_exact(d)) {
                    axpy(dq, gk, key);
                }
                column += k;
            }
        }
    }
}

vectorised! {
    /// One table position's gradient `[k, d]` (zeroed): the sum over its `rows` of each
    /// term's gradient (from column `column` of `width`) times the query.
    fn table_gradient(
        dt: &mut [f32],
        rows: impl Iterator<Item = usize>,
        grad: &[f32],
        q: &[f32],
        width: usize,
        column: usize,
        d: usize,
    ) {
        let k = dt.len() / d;
        for row in rows {
            let g = &grad[row * width + column..][..k];
            let q = &q[row * d..][..d];
            for (dt, &gk) in dt.chunks_exact_mut(d).zip(g) {
                axpy(dt, gk, q);
            }
        }
    }
}

/// `y += a * x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}
