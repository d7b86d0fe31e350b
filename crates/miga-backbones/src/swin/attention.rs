//! Window attention with a learned relative position bias (W-MSA), and the window partition
//! and attention mask of shifted windows (SW-MSA).

use crate::kernels::nn::{Dropout, DropoutConfig, Linear};
use crate::kernels::{matmul, softmax_last, swap_heads};
use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::config::StageGeometry;
use crate::layers::init_linear;

/// Multi-head self-attention inside windows, with a relative position bias table
/// (`[(2w-1)^2, heads]`) indexed by the offset between two tokens of a window.
#[derive(Module, Debug)]
pub struct WindowAttention<B: Backend> {
    /// Query, key and value projection (with bias).
    pub qkv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    /// The learned bias table `[(2w-1)^2, heads]` (the references' `relative_position_bias_table`).
    pub relative_position_bias_table: Param<Tensor<B, 2>>,
    /// Row of the table for every (query, key) pair of a window, `[w^4]`: a constant the
    /// references keep as the `relative_position_index` buffer.
    relative_position_index: Tensor<B, 1, Int>,
    /// The shifted-window mask (0 or -100), when the block is shifted, repeated for every
    /// head: `[windows, heads * w^4]`, window by window the layout of the attention scores.
    mask: Option<Tensor<B, 2>>,
    attn_dropout: Dropout,
    proj_dropout: Dropout,
    heads: usize,
    window: usize,
}

impl<B: Backend> WindowAttention<B> {
    /// The attention of a block of `stage`, shifted or not.
    pub(crate) fn new(
        stage: &StageGeometry,
        shifted: bool,
        dropout: f64,
        attention_dropout: f64,
        device: &B::Device,
    ) -> Self {
        let (dim, heads, w) = (stage.dim, stage.heads, stage.window);
        let index = relative_position_index(w);
        let mask = (shifted && stage.shift > 0).then(|| {
            let windows = (stage.resolution / w).pow(2);
            let per_window = shift_mask(stage.resolution, w, stage.shift);
            let data = per_window
                .chunks(w.pow(4))
                .flat_map(|window| std::iter::repeat_n(window, heads).flatten().copied())
                .collect::<Vec<_>>();
            Tensor::from_data(TensorData::new(data, [windows, heads * w.pow(4)]), device)
        });
        WindowAttention {
            qkv: init_linear(dim, 3 * dim, true, device),
            proj: init_linear(dim, dim, true, device),
            relative_position_bias_table: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([(2 * w - 1).pow(2), heads], device),
            relative_position_index: Tensor::from_data(TensorData::new(index, [w.pow(4)]), device),
            mask,
            attn_dropout: DropoutConfig::new(attention_dropout).init(),
            proj_dropout: DropoutConfig::new(dropout).init(),
            heads,
            window: w,
        }
    }

    /// Attention within each window: `[B * windows, w^2, C]` to the same shape.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [bw, n, c] = x.dims();
        let heads = self.heads;
        let head_dim = c / heads;
        // [B*nW, N, 3 heads, Dh] -> [B*nW, 3 heads, N, Dh], contiguous: q, k and v are runs.
        let qkv = swap_heads(self.qkv.forward(x).reshape([bw, n, 3 * heads, head_dim]));
        let q = qkv.clone().narrow(1, 0, heads);
        let k = qkv.clone().narrow(1, heads, heads);
        let v = qkv.narrow(1, 2 * heads, heads);
        // The bias (and mask) of every window of one image, one row `[1, windows * heads * N^2]`
        // added to the scores viewed as one row per image: contiguous operands and a shared-row
        // broadcast, the fast paths of element-wise operations.
        let row = heads * n * n;
        let bias = self.bias().reshape([1, row]);
        let bias = match &self.mask {
            Some(mask) => mask.clone() + bias,
            None => bias,
        };
        let windows = bias.dims()[0];
        let scores = matmul(q, k.swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
        let scores =
            scores.reshape([bw / windows, windows * row]) + bias.reshape([1, windows * row]);
        let weights = softmax_last(scores.reshape([bw, heads, n, n]));
        let x = matmul(self.attn_dropout.forward(weights), v);
        let x = swap_heads(x).reshape([bw, n, c]);
        self.proj_dropout.forward(self.proj.forward(x))
    }

    /// The relative position bias `[heads, w^4]`, head-major and contiguous (the table is
    /// transposed before the lookup, not the much larger bias after it).
    fn bias(&self) -> Tensor<B, 2> {
        self.relative_position_bias_table
            .val()
            .transpose()
            .select(1, self.relative_position_index.clone())
    }
}

/// For every (query, key) pair of a `w x w` window (row-major tokens), the row of the bias
/// table holding their offset: `(dh + w - 1) * (2w - 1) + (dw + w - 1)`.
fn relative_position_index(w: usize) -> Vec<i64> {
    let n = w * w;
    let mut index = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let dh = (i / w) as i64 - (j / w) as i64 + w as i64 - 1;
            let dw = (i % w) as i64 - (j % w) as i64 + w as i64 - 1;
            index.push(dh * (2 * w as i64 - 1) + dw);
        }
    }
    index
}

/// The mask of shifted windows on a `size x size` map rolled by `-shift`: tokens from regions
/// that were not neighbours before the roll get -100 (the references' value), others 0;
/// `[windows, w^2, w^2]`, windows in row-major order.
fn shift_mask(size: usize, w: usize, shift: usize) -> Vec<f32> {
    // The references label nine regions: rows and columns each split at size-w and size-shift.
    let region = |p: usize| usize::from(p >= size - w) + usize::from(p >= size - shift);
    let per_side = size / w;
    let mut mask = Vec::with_capacity(per_side * per_side * w.pow(4));
    for wy in 0..per_side {
        for wx in 0..per_side {
            let labels: Vec<usize> = (0..w * w)
                .map(|t| 3 * region(wy * w + t / w) + region(wx * w + t % w))
                .collect();
            for &a in &labels {
                mask.extend(labels.iter().map(|&b| if a == b { 0.0 } else { -100.0 }));
            }
        }
    }
    mask
}

/// `[B, H, W, C]` to windows `[B * (H/w) * (W/w), w * w, C]`, windows in row-major order per
/// image (the references' `window_partition`): a swap of the window-row and window-column
/// axes of `[B * H/w, w, W/w, w * C]`.
pub(crate) fn window_partition<B: Backend>(x: Tensor<B, 4>, w: usize) -> Tensor<B, 3> {
    let [b, h, wd, c] = x.dims();
    swap_heads(x.reshape([b * (h / w), w, wd / w, w * c])).reshape([
        b * (h / w) * (wd / w),
        w * w,
        c,
    ])
}

/// The inverse of [`window_partition`] for `h x wd` maps.
pub(crate) fn window_reverse<B: Backend>(
    windows: Tensor<B, 3>,
    w: usize,
    h: usize,
    wd: usize,
) -> Tensor<B, 4> {
    let [bw, _, c] = windows.dims();
    let b = bw / ((h / w) * (wd / w));
    swap_heads(windows.reshape([b * (h / w), wd / w, w, w * c])).reshape([b, h, wd, c])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_mask_match_the_reference_construction() {
        // 2x2 window: offsets (dh, dw) in {-1, 0, 1}^2 map to rows 0..9, the diagonal to the centre 4.
        let index = relative_position_index(2);
        assert_eq!(index, [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]);
        // 4x4 map, window 2, shift 1: the first window is all region 0, the last mixes all four.
        let mask = shift_mask(4, 2, 1);
        assert_eq!(mask.len(), 4 * 16);
        assert!(mask[..16].iter().all(|&v| v == 0.0));
        let last = &mask[48..];
        let zeros = last.iter().filter(|&&v| v == 0.0).count();
        assert_eq!(zeros, 4, "only each token with itself");
    }
}
