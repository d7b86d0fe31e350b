//! The network (torchvision's `MViT` with MViTv2's switches): patch embedding, class token,
//! multiscale blocks, final norm and head.

use burn::module::{Initializer, Module, Param};
use burn::nn::PaddingConfig3d;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::attention::{Grid, swap_last_two};
use super::block::{MultiscaleBlock, MultiscaleBlockInit};
use super::config::{MvitConfig, conv_grid};
use crate::Error;
use crate::kernels::narrow;
use crate::kernels::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear};
use crate::layers::init_linear;

/// An MViTv2 network.
#[derive(Module, Debug)]
pub struct Mvit<B: Backend> {
    /// Patch embedding (torchvision's `conv_proj`).
    pub conv_proj: Conv3d<B>,
    /// Class token (torchvision's `pos_encoding.class_token`).
    pub class_token: Param<Tensor<B, 1>>,
    /// The multiscale blocks.
    pub blocks: Vec<MultiscaleBlock<B>>,
    /// Final LayerNorm.
    pub norm: LayerNorm<B>,
    /// Classifier (torchvision's `head.1`).
    pub head: Linear<B>,
    head_dropout: Dropout,
    clip: [usize; 3],
    patch_padding: [usize; 3],
    grid: Grid,
}

/// What the network computes for a batch of clips.
#[derive(Debug, Clone)]
pub struct MvitOutput<B: Backend> {
    /// Class scores `[B, classes]`.
    pub logits: Tensor<B, 2>,
    /// The normalised class token `[B, C]` (768 for MViTv2-S): the input of the head.
    pub embedding: Tensor<B, 2>,
    /// The normalised final token grid `[B, T', H', W', C]` (8x7x7 for 16x224x224 clips).
    pub tokens: Tensor<B, 5>,
}

impl MvitConfig {
    /// Builds the network with torchvision's initialisation, after [`MvitConfig::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<Mvit<B>> {
        self.validate()?;
        let c0 = self.blocks[0].input_channels;
        let [pt, ph, pw] = self.patch_padding;
        let mut input_size = self.token_grid();
        let depth = self.blocks.len();
        let blocks = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, block)| {
                let drop_path = if depth > 1 {
                    self.stochastic_depth_prob * i as f64 / (depth as f64 - 1.0)
                } else {
                    0.0
                };
                let built = MultiscaleBlockInit::new(
                    block.clone(),
                    input_size,
                    self.attention_dropout,
                    drop_path,
                    self.norm_eps,
                )
                .init(device);
                input_size = std::array::from_fn(|d| input_size[d] / block.stride_q[d]);
                built
            })
            .collect();
        Ok(Mvit {
            conv_proj: Conv3dConfig::new([3, c0], self.patch_kernel)
                .with_stride(self.patch_stride)
                .with_padding(PaddingConfig3d::Explicit(pt, ph, pw))
                .init(device),
            class_token: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([c0], device),
            blocks,
            norm: LayerNormConfig::new(self.embed_dim())
                .with_epsilon(self.norm_eps)
                .init(device),
            head: init_linear(self.embed_dim(), self.num_classes, true, device),
            head_dropout: DropoutConfig::new(self.dropout).init(),
            clip: self.clip_size(),
            patch_padding: self.patch_padding,
            grid: self.token_grid(),
        })
    }
}

impl<B: Backend> Mvit<B> {
    /// Checks a clip batch's shape `[B, 3, T, H, W]`: the patch embedding must make the token
    /// grid the network is sized for.
    pub fn check_input(&self, dims: [usize; 5]) -> crate::Result<()> {
        let [b, c, t, h, w] = dims;
        let invalid = |reason: String| Error::InvalidInput {
            model: "mvit",
            reason,
        };
        if c != 3 {
            return Err(invalid(format!(
                "input {dims:?} has {c} channels; clips are [B, 3, T, H, W] RGB"
            )));
        }
        if b == 0 {
            return Err(invalid(format!("input {dims:?} is an empty batch")));
        }
        let grid = conv_grid(
            [t, h, w],
            self.conv_proj.kernel_size,
            self.conv_proj.stride,
            self.patch_padding,
        );
        if grid != self.grid {
            let [ct, ch, cw] = self.clip;
            return Err(invalid(format!(
                "a {t}x{h}x{w} clip makes a {grid:?} token grid; the network is sized for \
                 {ct}x{ch}x{cw} clips ({:?} tokens)",
                self.grid
            )));
        }
        Ok(())
    }

    /// Runs the network on clips `[B, 3, T, H, W]` after [`Mvit::check_input`].
    pub fn try_forward(&self, x: Tensor<B, 5>) -> crate::Result<MvitOutput<B>> {
        self.check_input(x.dims())?;
        Ok(self.forward(x))
    }

    /// Runs the network on clips `[B, 3, T, H, W]`. Panics on a shape the network does not
    /// take; [`Mvit::try_forward`] returns an error instead.
    pub fn forward(&self, x: Tensor<B, 5>) -> MvitOutput<B> {
        let x = self.conv_proj.forward(x);
        let [b, c, t, h, w] = x.dims();
        let x = swap_last_two(x.reshape([1, b, c, t * h * w])).reshape([b, t * h * w, c]);
        let class = self.class_token.val().reshape([1, 1, c]).expand([b, 1, c]);
        let mut x = Tensor::cat(vec![class, x], 1);
        let mut thw = [t, h, w];
        for block in &self.blocks {
            (x, thw) = block.forward(x, thw);
        }
        let x = self.norm.forward(x);
        let [b, n, c] = x.dims();
        let embedding = narrow(x.clone(), 1, 0, 1).reshape([b, c]);
        let tokens = narrow(x, 1, 1, n - 1).reshape([b, thw[0], thw[1], thw[2], c]);
        MvitOutput {
            logits: self
                .head
                .forward(self.head_dropout.forward(embedding.clone())),
            embedding,
            tokens,
        }
    }

    /// Number of classes of the head.
    pub fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// The same network with a new `num_classes`-way head (torchvision's initialisation) for
    /// fine-tuning; every other weight is kept.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        let device = self.head.weight.device();
        self.head = init_linear(self.head.weight.dims()[0], num_classes, true, &device);
        self
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::{Distribution, Int, TensorData};

    use super::*;
    use crate::mvit::MultiscaleBlockConfig;

    fn small() -> MvitConfig {
        MvitConfig::new(
            vec![
                MultiscaleBlockConfig::new(1, 8, 8).with_stride_kv([1, 2, 2]),
                MultiscaleBlockConfig::new(2, 8, 16).with_stride_q([1, 2, 2]),
                MultiscaleBlockConfig::new(2, 16, 16),
            ],
            3,
        )
        .with_temporal_size(4)
        .with_spatial_size([16, 16])
        .with_stochastic_depth_prob(0.5)
    }

    #[test]
    fn training_lowers_the_loss_and_randomness_is_for_training_only() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        B::seed(&device, 5);
        let mut model = small().init::<B>(&device).unwrap();
        let x = Tensor::<B, 5>::random([6, 3, 4, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<B, 1, Int>::from_data(
            TensorData::new(vec![0i64, 1, 2, 0, 1, 2], [6]),
            &device,
        );

        // Training mode: head dropout and stochastic depth make two passes differ.
        let a = model.forward(x.clone()).logits;
        let b = model.forward(x.clone()).logits;
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(
            diff > 0.0,
            "dropout and stochastic depth are inactive in training"
        );

        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut optimizer = AdamConfig::new().init::<B, Mvit<B>>();
        let mut losses = Vec::new();
        for _ in 0..30 {
            let loss = loss_fn.forward(model.forward(x.clone()).logits, y.clone());
            losses.push(loss.clone().into_scalar());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(3e-3, model, grads);
        }
        let (first, last) = (losses[0], losses[25..].iter().sum::<f32>() / 5.0);
        assert!(last < 0.5 * first, "loss did not fall: {losses:?}");

        // Inference: deterministic, and a clip's output does not depend on the batch.
        let model = model.valid();
        let x = x.inner();
        let a = model.forward(x.clone()).logits;
        let b = model.forward(x.clone()).logits;
        assert_eq!((a.clone() - b).abs().max().into_scalar(), 0.0);
        let alone = model.forward(x.narrow(0, 2, 1)).logits;
        let diff: f32 = (alone - a.narrow(0, 2, 1)).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn bad_clips_are_errors_that_name_the_problem() {
        let device = Default::default();
        let model = small().init::<Flex>(&device).unwrap();
        let err = |dims| model.check_input(dims).unwrap_err().to_string();
        assert!(err([1, 1, 4, 16, 16]).contains("1 channels"));
        assert!(err([0, 3, 4, 16, 16]).contains("empty batch"));
        let e = err([1, 3, 4, 24, 16]);
        assert!(e.contains("4x24x16") && e.contains("4x16x16"), "{e}");
        model.check_input([2, 3, 4, 16, 16]).unwrap();
        // Sizes that tile into the same grid are taken, as by torchvision.
        model.check_input([2, 3, 3, 15, 15]).unwrap();
    }
}
