//! MViTv2's decomposed relative positions as extra query columns.

use super::*;

/// MViTv2's queries with their decomposed relative-position terms as extra columns, so that
/// one product with keys carrying a 0/1 selector of their own `(t, h, w)` gives
/// `scale * q k^T` plus torchvision's `_add_rel_pos` bias.
///
/// `q` `[G, 1 + T*H*W, d]` (the class token first, then the grid `[T, H, W]` row-major) and
/// the tables `[T, kt, d]`, `[H, kh, d]`, `[W, kw, d]` (the relative-position rows for every
/// query and key position of each axis) give `[G, 1 + T*H*W, d + kt + kh + kw]`: each row
/// `scale * q`, then `q · table[t][j]` for each key time `j`, row and column; the class row's
/// terms are zero.
///
/// On Flex one pass over the rows (under autodiff one graph node, whose backward pass gives
/// the queries' and the tables' gradients in one pass each); elsewhere batched products and
/// concatenations.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// // One head, 1-d queries on a 1x1x2 grid, one key position per axis.
/// let q = Tensor::<Flex, 3>::from_floats([[[5.0], [1.0], [2.0]]], &device);
/// let t = Tensor::<Flex, 3>::from_floats([[[10.0]]], &device);
/// let h = Tensor::<Flex, 3>::from_floats([[[20.0]]], &device);
/// let w = Tensor::<Flex, 3>::from_floats([[[30.0]], [[40.0]]], &device);
/// let y = miga_kernels::rel_pos_query(q, 0.5, [t, h, w]);
/// assert_eq!(
///     y.into_data().to_vec::<f32>().unwrap(),
///     [2.5, 0.0, 0.0, 0.0, 0.5, 10.0, 20.0, 30.0, 1.0, 20.0, 40.0, 80.0]
/// );
/// ```
pub fn rel_pos_query<B: Backend>(
    q: Tensor<B, 3>,
    scale: f64,
    tables: [Tensor<B, 3>; 3],
) -> Tensor<B, 3> {
    let [_, n, d] = q.dims();
    let grid = tables.each_ref().map(|t| t.dims()[0]);
    assert!(
        n == 1 + grid.iter().product::<usize>() && tables.iter().all(|t| t.dims()[2] == d),
        "rel_pos_query: queries {:?} do not fit tables {:?}",
        q.dims(),
        tables.each_ref().map(|t| t.dims())
    );
    #[cfg(feature = "flex")]
    let (q, tables) = match flex::rel_pos_query(q, scale, tables)
        .or_else(|(q, tables)| autodiff::rel_pos_query(q, scale, tables))
    {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    rel_pos_query_by_products(q, scale, tables)
}

/// [`rel_pos_query`] from Burn's operations: each axis's terms a batched product of the grid
/// queries with that axis's table, concatenated after the scaled queries.
fn rel_pos_query_by_products<B: Backend>(
    q: Tensor<B, 3>,
    scale: f64,
    [t, h, w]: [Tensor<B, 3>; 3],
) -> Tensor<B, 3> {
    let [g, n, d] = q.dims();
    let ([qt, kt, _], [qh, kh, _], [qw, kw, _]) = (t.dims(), h.dims(), w.dims());
    let r = q.clone().narrow(1, 1, n - 1);
    let by_t = r
        .clone()
        .reshape([g, qt, qh * qw, d])
        .matmul(t.swap_dims(1, 2).unsqueeze())
        .reshape([g, n - 1, kt]);
    let by_h = r
        .clone()
        .reshape([g * qt, qh, qw, d])
        .matmul(h.swap_dims(1, 2).unsqueeze())
        .reshape([g, n - 1, kh]);
    let by_w = r
        .reshape([g * qt * qh, qw, d])
        .swap_dims(0, 1)
        .matmul(w.swap_dims(1, 2))
        .swap_dims(0, 1)
        .reshape([g, n - 1, kw]);
    let terms =
        Tensor::cat(vec![by_t, by_h, by_w], 2).pad([(1, 0), (0, 0)], PadMode::Constant(0.0));
    Tensor::cat(vec![q * scale, terms], 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Ad;
    use burn::tensor::{Distribution, Tolerance};

    /// The relative-position columns as one pass (plain Flex and under autodiff) give the
    /// batched products' values and gradients (queries and tables), on a grid with three
    /// different axis lengths, key lengths unlike them, several heads, and queries that are a
    /// strided view.
    #[test]
    fn rel_pos_query_values_and_gradients_match_the_products() {
        let device = Default::default();
        let (grid, keys, d, g) = ([3, 5, 4], [2, 6, 3], 9, 2);
        let n = 1 + grid.iter().product::<usize>();
        let q = Tensor::<Ad, 3>::random([n, g, d], Distribution::Default, &device);
        let tables: Vec<_> = (0..3)
            .map(|a| Tensor::<Ad, 3>::random([grid[a], keys[a], d], Distribution::Default, &device))
            .collect();
        let width = d + keys.iter().sum::<usize>();
        let upstream = Tensor::<Ad, 3>::random([g, n, width], Distribution::Default, &device);
        type Columns<'a> = &'a dyn Fn(Tensor<Ad, 3>, [Tensor<Ad, 3>; 3]) -> Tensor<Ad, 3>;
        let run = |f: Columns| {
            let leaf =
                |t: &Tensor<Ad, 3>| Tensor::<Ad, 3>::from_data(t.to_data(), &device).require_grad();
            let q = leaf(&q);
            let tables: [Tensor<Ad, 3>; 3] = std::array::from_fn(|a| leaf(&tables[a]));
            let y = f(q.clone().swap_dims(0, 1), tables.clone());
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let mut out = vec![y.to_data(), q.grad(&grads).unwrap().to_data()];
            out.extend(tables.iter().map(|t| t.grad(&grads).unwrap().to_data()));
            out
        };
        let ours = run(&|q, tables| rel_pos_query(q, 0.37, tables));
        let products = run(&|q, tables| rel_pos_query_by_products(q, 0.37, tables));
        for (ours, products) in ours.iter().zip(&products) {
            ours.assert_approx_eq::<f32>(products, Tolerance::rel_abs(1e-5, 1e-5));
        }
        let plain = rel_pos_query(
            q.inner().swap_dims(0, 1),
            0.37,
            std::array::from_fn(|a| tables[a].clone().inner()),
        );
        plain
            .into_data()
            .assert_approx_eq::<f32>(&products[0], Tolerance::rel_abs(1e-5, 1e-5));
    }
}
