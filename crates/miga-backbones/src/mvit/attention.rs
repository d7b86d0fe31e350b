//! Multiscale pooling attention (torchvision's `MultiscaleAttention`, `Pool` and
//! `_add_rel_pos`): queries, keys and values pooled by depthwise 3D convolutions, a decomposed
//! relative-position bias, and the residual pooling connection.

use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::config::MultiscaleBlockConfig;
use crate::kernels::nn::{
    DepthwiseConv3d, DepthwiseConv3dConfig, Dropout, DropoutConfig, Formulation, LayerNorm,
    LayerNormConfig, Linear, formulation,
};
use crate::kernels::{contiguous, matmul, narrow, rel_pos_query, softmax_last, swap_heads};
use crate::layers::init_linear;

/// Token grid (T, H, W), without the class token.
pub type Grid = [usize; 3];

/// A pooling of `head_dim` channels: a depthwise convolution padded by half its kernel, and a
/// LayerNorm.
fn attention_pool<B: Backend>(
    head_dim: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    norm_eps: f64,
    device: &B::Device,
) -> AttentionPool<B> {
    AttentionPool {
        pool: DepthwiseConv3dConfig::new(head_dim, kernel)
            .with_stride(stride)
            .with_padding(kernel.map(|k| k / 2))
            .init(device),
        norm: LayerNormConfig::new(head_dim)
            .with_epsilon(norm_eps)
            .init(device),
    }
}

/// Pools the token grid of one of q, k, v per head (torchvision's `Pool`): the class token
/// bypasses the convolution, then all tokens, class token included, are normalised.
#[derive(Module, Debug)]
pub struct AttentionPool<B: Backend> {
    /// Depthwise convolution over (T, H, W), one filter per head channel.
    pub pool: DepthwiseConv3d<B>,
    /// LayerNorm over head channels (torchvision's `norm_act.0`).
    pub norm: LayerNorm<B>,
}

impl<B: Backend> AttentionPool<B> {
    /// Channels-first `[G, head_dim, 1 + T*H*W]` on grid `thw` (G: every head of every clip)
    /// to the pooled, normalised tokens `[G, 1 + T'*H'*W', head_dim]` and their grid.
    pub fn forward(&self, x: Tensor<B, 3>, thw: Grid) -> (Tensor<B, 3>, Grid) {
        let [heads, d, n] = x.dims();
        let [t, h, w] = thw;
        let class = narrow(x.clone(), 2, 0, 1);
        let grid = contiguous(narrow(x, 2, 1, n - 1)).reshape([heads, d, t, h, w]);
        let pooled = self.pool.forward(grid);
        let [_, _, t, h, w] = pooled.dims();
        let pooled = pooled.reshape([heads, d, t * h * w]);
        let x = swap_last_two(Tensor::cat(vec![class, pooled], 2).unsqueeze()).squeeze_dim(0);
        (self.norm.forward(x), [t, h, w])
    }
}

/// `x.swap_dims(2, 3)` in a contiguous buffer ([`contiguous`]: Flex would copy the batched
/// transpose element by element, on one thread, at the next reshape).
pub(crate) fn swap_last_two<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    contiguous(x.swap_dims(2, 3))
}

/// Multiscale pooling attention with MViTv2's decomposed relative positions and residual
/// pooling.
#[derive(Module, Debug)]
pub struct MultiscaleAttention<B: Backend> {
    /// Joint q, k, v projection.
    pub qkv: Linear<B>,
    /// Output projection (torchvision's `project.0`).
    pub project: Linear<B>,
    /// Query pooling; absent when its kernel and stride are all 1.
    pub pool_q: Option<AttentionPool<B>>,
    /// Key pooling; absent when its kernel and stride are all 1.
    pub pool_k: Option<AttentionPool<B>>,
    /// Value pooling; absent when its kernel and stride are all 1.
    pub pool_v: Option<AttentionPool<B>>,
    /// Relative-position table along H `[2 * size - 1, head_dim]`.
    pub rel_pos_h: Param<Tensor<B, 2>>,
    /// Relative-position table along W.
    pub rel_pos_w: Param<Tensor<B, 2>>,
    /// Relative-position table along T.
    pub rel_pos_t: Param<Tensor<B, 2>>,
    dropout: Dropout,
    num_heads: usize,
}

impl MultiscaleBlockConfig {
    /// This block's attention with torchvision's initialisation: `input_channels` in,
    /// `output_channels` wide (projection after attention), relative-position tables sized for
    /// `input_size`, `dropout` after the projection, pooling norms with `norm_eps`.
    pub(crate) fn attention<B: Backend>(
        &self,
        input_size: Grid,
        dropout: f64,
        norm_eps: f64,
        device: &B::Device,
    ) -> MultiscaleAttention<B> {
        let b = self;
        let head_dim = b.output_channels / b.num_heads;
        let pool = |kernel: [usize; 3], stride: [usize; 3]| {
            let trivial =
                kernel.iter().product::<usize>() == 1 && stride.iter().product::<usize>() == 1;
            (!trivial).then(|| attention_pool(head_dim, kernel, stride, norm_eps, device))
        };
        // torchvision sizes the spatial tables by the larger side, divided by the H stride.
        let size = input_size[1].max(input_size[2]);
        let spatial = 2 * (size / b.stride_q[1]).max(size / b.stride_kv[1]) - 1;
        let temporal = 2 * input_size[0] - 1;
        let table = |rows: usize| {
            Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([rows, head_dim], device)
        };
        MultiscaleAttention {
            qkv: init_linear(b.input_channels, 3 * b.output_channels, true, device),
            project: init_linear(b.output_channels, b.output_channels, true, device),
            pool_q: pool(b.kernel_q, b.stride_q),
            pool_k: pool(b.kernel_kv, b.stride_kv),
            pool_v: pool(b.kernel_kv, b.stride_kv),
            rel_pos_h: table(spatial),
            rel_pos_w: table(spatial),
            rel_pos_t: table(temporal),
            dropout: DropoutConfig::new(dropout).init(),
            num_heads: b.num_heads,
        }
    }
}

impl<B: Backend> MultiscaleAttention<B> {
    /// `[B, 1 + T*H*W, C_in]` on grid `thw` to `[B, 1 + T'*H'*W', C_out]` on the query grid.
    ///
    /// On the CPU one clip at a time (each clip's q, k and v fit the caches, and every layout
    /// copy stays a plain or two-dimensional one, which Flex does not walk element by element);
    /// elsewhere the whole batch at once, every head of every clip one batch entry of the
    /// pooling convolutions and the products.
    pub fn forward(&self, x: Tensor<B, 3>, thw: Grid) -> (Tensor<B, 3>, Grid) {
        let clips = x.dims()[0];
        if clips == 1 || formulation::<B>() == Formulation::Burn {
            return self.forward_clips(x, thw);
        }
        let (outputs, grids): (Vec<_>, Vec<_>) = (0..clips)
            .map(|i| self.forward_clips(narrow(x.clone(), 0, i, 1), thw))
            .unzip();
        (Tensor::cat(outputs, 0), grids[0])
    }

    /// Clips `[B, N, C_in]` together. q, k and v come out of the projection channels-first,
    /// `[B * heads, head_dim, N]`, which is what the pooling convolutions take, and are turned
    /// token-major after pooling.
    fn forward_clips(&self, x: Tensor<B, 3>, thw: Grid) -> (Tensor<B, 3>, Grid) {
        let [clips, n, _] = x.dims();
        let out = self.project.weight.dims()[0];
        let (heads, head_dim) = (self.num_heads, out / self.num_heads);
        let groups = clips * heads;
        // q, k, v as W^T x^T + b, `[B * heads, d, N]` each (one product apiece, so that each
        // comes out as its own buffer).
        let x = x.swap_dims(1, 2);
        let part = |i: usize| {
            let weight = narrow(self.qkv.weight.val(), 1, i * out, out);
            let y = matmul(weight.transpose().unsqueeze::<3>(), x.clone());
            let y = match &self.qkv.bias {
                Some(bias) => y + narrow(bias.val(), 0, i * out, out).reshape([1, out, 1]),
                None => y,
            };
            y.reshape([groups, head_dim, n])
        };
        let pool = |pool: &Option<AttentionPool<B>>, x: Tensor<B, 3>| match pool {
            Some(pool) => pool.forward(x, thw),
            None => (swap_last_two(x.unsqueeze()).squeeze_dim(0), thw),
        };
        let (k, k_thw) = pool(&self.pool_k, part(1));
        let (v, _) = pool(&self.pool_v, part(2));
        let (q, q_thw) = pool(&self.pool_q, part(0));

        // softmax(scale * q k^T + rel-pos bias) v, with the bias folded into the product: the
        // queries carry their relative-position terms as extra columns, the keys a 0/1
        // selector of their (t, h, w) position.
        let scale = (head_dim as f64).powf(-0.5);
        let tables = [&self.rel_pos_t, &self.rel_pos_h, &self.rel_pos_w];
        let tables = std::array::from_fn(|a| relative_table(tables[a].val(), q_thw[a], k_thw[a]));
        let query = rel_pos_query(q.clone(), scale, tables);
        let selector = key_selector(k_thw, &q.device());
        let [_, nk, _] = k.dims();
        let extra = selector.dims()[1];
        let key = Tensor::cat(
            vec![
                k,
                selector.reshape([1, nk, extra]).expand([groups, nk, extra]),
            ],
            2,
        );
        let weights = softmax_last(matmul(query, key.swap_dims(1, 2)));
        let x = matmul(weights, v);
        // Residual pooling: the pooled queries are added back, except on the class row.
        let nq = x.dims()[1];
        let sum = x.clone() + q;
        let x = Tensor::cat(vec![narrow(x, 1, 0, 1), narrow(sum, 1, 1, nq - 1)], 1);
        // [B * heads, Nq, d] to [B, Nq, heads * d].
        let x = swap_heads(x.reshape([clips, heads, nq, head_dim])).reshape([
            clips,
            nq,
            heads * head_dim,
        ]);
        (self.dropout.forward(self.project.forward(x)), q_thw)
    }
}

/// The keys' side of the decomposed relative-position bias (torchvision's `_add_rel_pos`) as a
/// product with [`rel_pos_query`]'s columns: for each key of the grid `[T_k, H_k, W_k]` (after
/// the class token, whose row is zero) a 0/1 selector `[1 + T_k*H_k*W_k, T_k + H_k + W_k]` of
/// its own time, row and column.
fn key_selector<B: Backend>(k_thw: Grid, device: &B::Device) -> Tensor<B, 2> {
    let [kt, kh, kw] = k_thw;
    let width = kt + kh + kw;
    let mut selector = vec![0.0f32; (1 + kt * kh * kw) * width];
    for t in 0..kt {
        for y in 0..kh {
            for x in 0..kw {
                let row = 1 + (t * kh + y) * kw + x;
                for column in [t, kt + y, kt + kh + x] {
                    selector[row * width + column] = 1.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(selector, [1 + kt * kh * kw, width]), device)
}

/// The rows of a relative-position `table` for every (query, key) pair of an axis:
/// `[q_len, k_len, d]`. As torchvision: the table is linearly resized (align_corners=false) to
/// `2 * max(q_len, k_len) - 1` rows when it has another length, and the distance between
/// grids of different lengths is scaled to the finer one, in f32.
fn relative_table<B: Backend>(table: Tensor<B, 2>, q_len: usize, k_len: usize) -> Tensor<B, 3> {
    let [rows, d] = table.dims();
    let wanted = 2 * q_len.max(k_len) - 1;
    let device = table.device();
    let table = if rows == wanted {
        table
    } else {
        let weights = linear_resize_matrix(rows, wanted);
        Tensor::<B, 2>::from_data(TensorData::new(weights, [wanted, rows]), &device).matmul(table)
    };
    let q_ratio = (k_len as f64 / q_len as f64).max(1.0) as f32;
    let k_ratio = (q_len as f64 / k_len as f64).max(1.0) as f32;
    let index: Vec<i64> = (0..q_len)
        .flat_map(|i| {
            (0..k_len).map(move |j| {
                let offset = j as f32 + (1.0 - k_len as f32);
                (i as f32 * q_ratio - offset * k_ratio) as i64
            })
        })
        .collect();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [q_len * k_len]), &device);
    table.select(0, index).reshape([q_len, k_len, d])
}

/// The `[to, from]` matrix of PyTorch's 1D linear interpolation with align_corners=false.
fn linear_resize_matrix(from: usize, to: usize) -> Vec<f32> {
    let scale = from as f32 / to as f32;
    let mut m = vec![0.0f32; to * from];
    for i in 0..to {
        let src = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(from - 1);
        let i1 = (i0 + 1).min(from - 1);
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        m[i * from + i0] += 1.0 - l1;
        m[i * from + i1] += l1;
    }
    m
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    use super::*;

    /// The batched formulation (every clip at once, as the GPU backends run it) gives the
    /// per-clip one's values and gradients, with query and key/value pooling, two heads and a
    /// channel change.
    #[test]
    fn batched_clips_match_one_clip_at_a_time() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let block = MultiscaleBlockConfig::new(2, 8, 16)
            .with_stride_q([1, 2, 2])
            .with_stride_kv([1, 2, 2]);
        let attention = block.attention::<A>([2, 4, 4], 0.0, 1e-6, &device);
        let x = Tensor::<A, 3>::random(
            [3, 1 + 2 * 4 * 4, 8],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |batched: bool| {
            let x = x.clone().require_grad();
            let (y, thw) = if batched {
                attention.forward_clips(x.clone(), [2, 4, 4])
            } else {
                let ys = (0..3)
                    .map(|i| {
                        attention
                            .forward_clips(narrow(x.clone(), 0, i, 1), [2, 4, 4])
                            .0
                    })
                    .collect();
                (Tensor::cat(ys, 0), [2, 2, 2])
            };
            assert_eq!(thw, [2, 2, 2]);
            let grads = (y.clone() * y.clone()).sum().backward();
            [
                y.into_data(),
                x.grad(&grads).unwrap().into_data(),
                attention.qkv.weight.val().grad(&grads).unwrap().into_data(),
                attention.rel_pos_h.val().grad(&grads).unwrap().into_data(),
            ]
        };
        // Scaled errors; at most 2.9e-7 measured (Intel Xeon VM, 2026-12-07).
        for (i, (a, b)) in run(true).iter().zip(&run(false)).enumerate() {
            let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
            let scale = b.iter().fold(1.0f32, |m, y| m.max(y.abs()));
            let error = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
                / scale;
            eprintln!("measured output {i}: {error:e}");
            assert!(error <= 2.5e-6, "output {i}: {error:e}");
        }
    }

    #[test]
    fn linear_resize_matches_pytorch() {
        // torch.nn.functional.interpolate(torch.arange(3.).view(1, 1, 3), size=5, mode="linear")
        // = [0.0, 0.4, 1.0, 1.6, 2.0]
        let m = linear_resize_matrix(3, 5);
        let out: Vec<f32> = (0..5)
            .map(|i| (0..3).map(|j| m[i * 3 + j] * j as f32).sum())
            .collect();
        let expected = [0.0, 0.4, 1.0, 1.6, 2.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }
}
