//! One multiscale block (torchvision's `MultiscaleBlock`): pre-norm pooling attention with a
//! max-pooled skip connection, then a pre-norm MLP, both under stochastic depth.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::{max_pool1d, max_pool2d};

use super::attention::{Grid, MultiscaleAttention, swap_last_two};
use super::config::MultiscaleBlockConfig;
use crate::kernels::narrow;
use crate::kernels::nn::{LayerNorm, LayerNormConfig, Linear};
use crate::layers::{Mlp, drop_path, init_linear};

/// What a block needs beyond its table row.
#[derive(Config, Debug)]
pub(crate) struct MultiscaleBlockInit {
    /// The block's row of the network table.
    pub block: MultiscaleBlockConfig,
    /// Grid the relative-position tables are sized for.
    pub input_size: Grid,
    /// Dropout in attention projection and MLP.
    pub dropout: f64,
    /// This block's stochastic depth probability.
    pub drop_path: f64,
    /// LayerNorm epsilon.
    pub norm_eps: f64,
}

/// One multiscale block.
#[derive(Module, Debug)]
pub struct MultiscaleBlock<B: Backend> {
    /// Norm before attention.
    pub norm1: LayerNorm<B>,
    /// Pooling attention.
    pub attn: MultiscaleAttention<B>,
    /// Norm before the MLP.
    pub norm2: LayerNorm<B>,
    /// The MLP.
    pub mlp: Mlp<B>,
    /// Projection of the skip connection where the block changes channels.
    pub project: Option<Linear<B>>,
    stride_q: [usize; 3],
    drop_path: f64,
}

impl MultiscaleBlockInit {
    /// Builds the block with torchvision's initialisation.
    pub(crate) fn init<B: Backend>(&self, device: &B::Device) -> MultiscaleBlock<B> {
        let b = &self.block;
        let (c_in, c_out) = (b.input_channels, b.output_channels);
        let norm = |d: usize| {
            LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device)
        };
        MultiscaleBlock {
            norm1: norm(c_in),
            attn: self
                .block
                .attention(self.input_size, self.dropout, self.norm_eps, device),
            norm2: norm(c_out),
            mlp: Mlp::new(c_out, 4 * c_out, self.dropout, device),
            project: (c_in != c_out).then(|| init_linear(c_in, c_out, true, device)),
            stride_q: b.stride_q,
            drop_path: self.drop_path,
        }
    }
}

impl<B: Backend> MultiscaleBlock<B> {
    /// `[B, 1 + T*H*W, C_in]` on grid `thw` to `[B, 1 + T'*H'*W', C_out]` and its grid.
    pub fn forward(&self, x: Tensor<B, 3>, thw: Grid) -> (Tensor<B, 3>, Grid) {
        let x_norm1 = self.norm1.forward(x.clone());
        let (x_attn, thw_out) = self.attn.forward(x_norm1.clone(), thw);
        let x = match &self.project {
            Some(project) => project.forward(x_norm1),
            None => x,
        };
        let x_skip = if self.stride_q.iter().product::<usize>() > 1 {
            max_pool_tokens(x, thw, self.stride_q)
        } else {
            x
        };
        let x = x_skip + drop_path(x_attn, self.drop_path);
        let x_mlp = self.mlp.forward(self.norm2.forward(x.clone()));
        (x + drop_path(x_mlp, self.drop_path), thw_out)
    }
}

/// torchvision's skip pooling: max pooling of the token grid with kernel `stride + 1` (1
/// where the stride is 1), padded by half the kernel; the class token passes. Max pooling is
/// separable, so it runs as a 2D pool over (H, W) and a 1D pool over T.
fn max_pool_tokens<B: Backend>(x: Tensor<B, 3>, thw: Grid, stride: [usize; 3]) -> Tensor<B, 3> {
    let [b, n, c] = x.dims();
    let [t, h, w] = thw;
    let kernel = stride.map(|s| if s > 1 { s + 1 } else { s });
    let padding = kernel.map(|k| k / 2);
    let class = narrow(x.clone(), 1, 0, 1);
    let grid = swap_last_two(narrow(x, 1, 1, n - 1).unsqueeze()).reshape([b, c * t, h, w]);
    let grid = max_pool2d(
        grid,
        [kernel[1], kernel[2]],
        [stride[1], stride[2]],
        [padding[1], padding[2]],
        [1, 1],
        false,
    );
    let [_, _, h, w] = grid.dims();
    let grid = if kernel[0] > 1 || stride[0] > 1 {
        let over_time = grid
            .reshape([b, c, t, h * w])
            .swap_dims(2, 3)
            .reshape([b, c * h * w, t]);
        let pooled = max_pool1d(over_time, kernel[0], stride[0], padding[0], 1, false);
        let t = pooled.dims()[2];
        pooled.reshape([b, c, h * w, t]).swap_dims(2, 3)
    } else {
        grid.reshape([b, c, t, h * w])
    };
    let [_, _, t, hw] = grid.dims();
    let tokens = swap_last_two(grid.reshape([1, b, c, t * hw])).reshape([b, t * hw, c]);
    Tensor::cat(vec![class, tokens], 1)
}
