//! A Swin block (pre-norm window attention, then a pre-norm MLP), patch merging, and a stage.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::attention::{WindowAttention, window_partition, window_reverse};
use super::config::{StageGeometry, SwinConfig};
use crate::kernels::nn::{Formulation, LayerNorm, LayerNormConfig, Linear, formulation};
use crate::kernels::{contiguous, swap_heads};
use crate::layers::{Mlp, drop_path, init_linear};

/// One Swin block: `x + attn(norm1(x))` over (possibly shifted) windows, then
/// `x + mlp(norm2(x))`, both under stochastic depth.
#[derive(Module, Debug)]
pub struct SwinBlock<B: Backend> {
    /// Norm before attention.
    pub norm1: LayerNorm<B>,
    /// Window attention.
    pub attn: WindowAttention<B>,
    /// Norm before the MLP.
    pub norm2: LayerNorm<B>,
    /// The MLP.
    pub mlp: Mlp<B>,
    window: usize,
    shift: usize,
    drop_path: f64,
}

impl<B: Backend> SwinBlock<B> {
    /// `[B, H, W, C]` to the same shape.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let s = self.shift;
        let y = self.norm1.forward(x.clone());
        // The references' cyclic shift towards the top left (PyTorch's `roll(-s)`).
        let y = roll(y, [s, s]);
        let windows = self.attn.forward(window_partition(y, self.window));
        let y = window_reverse(windows, self.window, h, w);
        let y = roll(y, [(h - s) % h, (w - s) % w]);
        let x = x + drop_path(y, self.drop_path);
        let x = x.reshape([b, h * w, c]);
        let y = self.mlp.forward(self.norm2.forward(x.clone()));
        (x + drop_path(y, self.drop_path)).reshape([b, h, w, c])
    }
}

/// `x` `[B, H, W, C]` shifted cyclically by `[sh, sw]` towards the top left (row `sh` to row
/// 0, column `sw` to column 0: PyTorch's `roll((-sh, -sw), (1, 2))`). On the CPU each axis is
/// two blocks swapped, each block copied in runs of the rows it spans ([`contiguous`]; Burn's
/// `roll` concatenates strided views, which Flex copies element by element); elsewhere Burn's
/// `roll`.
fn roll<B: Backend>(x: Tensor<B, 4>, shifts: [usize; 2]) -> Tensor<B, 4> {
    roll_as(formulation::<B>(), x, shifts)
}

/// [`roll`] in the given formulation.
fn roll_as<B: Backend>(how: Formulation, x: Tensor<B, 4>, [sh, sw]: [usize; 2]) -> Tensor<B, 4> {
    if how == Formulation::Burn {
        // Burn's `roll` by `s` brings entry `s` to the front: PyTorch's `roll(-s)`.
        return x.roll(&[sh, sw], &[1, 2]);
    }
    let swap = |x: Tensor<B, 4>, axis: usize, shift: usize| {
        let size = x.dims()[axis];
        if shift == 0 {
            return x;
        }
        Tensor::cat(
            vec![
                contiguous(x.clone().narrow(axis, shift, size - shift)),
                contiguous(x.narrow(axis, 0, shift)),
            ],
            axis,
        )
    };
    swap(swap(x, 1, sh), 2, sw)
}

/// Patch merging: each 2x2 neighbourhood concatenated in the references' order
/// (`[0::2, 0::2]`, `[1::2, 0::2]`, `[0::2, 1::2]`, `[1::2, 1::2]`), normed, and reduced
/// from 4C to 2C channels by a linear layer without bias.
#[derive(Module, Debug)]
pub struct PatchMerging<B: Backend> {
    /// Norm over the 4C concatenated channels.
    pub norm: LayerNorm<B>,
    /// 4C to 2C, no bias.
    pub reduction: Linear<B>,
}

impl<B: Backend> PatchMerging<B> {
    /// `[B, H, W, C]` to `[B, H/2, W/2, 2C]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        // [B * H/2, dh, W/2 * dw, C] -> [B * H/2, W/2 * dw, dh, C]: dh varies fastest, as in
        // the references' concatenation.
        let x = swap_heads(x.reshape([b * h / 2, 2, w, c])).reshape([b, h / 2, w / 2, 4 * c]);
        self.reduction.forward(self.norm.forward(x))
    }
}

/// One stage: its blocks, then patch merging except in the last stage (the Microsoft and
/// SwinFace layout; timm puts the merging at the start of the next stage).
#[derive(Module, Debug)]
pub struct SwinStage<B: Backend> {
    /// The blocks, every second one shifted.
    pub blocks: Vec<SwinBlock<B>>,
    /// Patch merging at the end of the stage.
    pub downsample: Option<PatchMerging<B>>,
}

impl<B: Backend> SwinStage<B> {
    /// Stage `stage` of `config` with stochastic depth `drop_paths[j]` for its block `j`.
    pub(crate) fn new(
        config: &SwinConfig,
        stage: &StageGeometry,
        drop_paths: &[f64],
        last: bool,
        device: &B::Device,
    ) -> Self {
        let norm = |d: usize| {
            LayerNormConfig::new(d)
                .with_epsilon(config.norm_eps)
                .init(device)
        };
        let hidden = (stage.dim as f64 * config.mlp_ratio) as usize;
        let blocks = drop_paths
            .iter()
            .enumerate()
            .map(|(j, &p)| {
                let shifted = j % 2 == 1;
                SwinBlock {
                    norm1: norm(stage.dim),
                    attn: WindowAttention::new(
                        stage,
                        shifted,
                        config.dropout,
                        config.attention_dropout,
                        device,
                    ),
                    norm2: norm(stage.dim),
                    mlp: Mlp::new(stage.dim, hidden, config.dropout, device),
                    window: stage.window,
                    shift: if shifted { stage.shift } else { 0 },
                    drop_path: p,
                }
            })
            .collect();
        SwinStage {
            blocks,
            downsample: (!last).then(|| PatchMerging {
                norm: norm(4 * stage.dim),
                reduction: init_linear(4 * stage.dim, 2 * stage.dim, false, device),
            }),
        }
    }

    /// `[B, H, W, C]` to `[B, H/2, W/2, 2C]` (`[B, H, W, C]` in the last stage).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        match &self.downsample {
            Some(merge) => merge.forward(x),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    use super::*;

    /// Both formulations shift towards the top left as PyTorch's `roll((-sh, -sw), (1, 2))`:
    /// entry `(i, j)` of the result is entry `((i + sh) % H, (j + sw) % W)` of the input.
    #[test]
    fn both_formulations_roll_as_pytorch() {
        let device = Default::default();
        let (h, w) = (5, 7);
        let values: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(values, [1, h, w, 1]), &device);
        for shifts in [[2, 3], [0, 1], [4, 0]] {
            let expected: Vec<f32> = (0..h * w)
                .map(|k| (((k / w + shifts[0]) % h) * w + (k % w + shifts[1]) % w) as f32)
                .collect();
            for how in [Formulation::Cpu, Formulation::Burn] {
                let y = roll_as(how, x.clone(), shifts).into_data();
                assert_eq!(y.to_vec::<f32>().unwrap(), expected, "{how:?} {shifts:?}");
            }
        }
    }
}
