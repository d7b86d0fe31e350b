//! The network's shape: torchvision's `MSBlockConfig` table, the clip size, and the presets.

use burn::config::Config;

use crate::Error;

/// One multiscale block, as a row of torchvision's `MSBlockConfig` table.
#[derive(Config, Debug, PartialEq)]
pub struct MultiscaleBlockConfig {
    /// Attention heads.
    pub num_heads: usize,
    /// Channels in.
    pub input_channels: usize,
    /// Channels out (a block that changes them projects after attention).
    pub output_channels: usize,
    /// Kernel (T, H, W) of the query pooling convolution.
    #[config(default = "[3, 3, 3]")]
    pub kernel_q: [usize; 3],
    /// Kernel (T, H, W) of the key and value pooling convolutions.
    #[config(default = "[3, 3, 3]")]
    pub kernel_kv: [usize; 3],
    /// Stride (T, H, W) of the query pooling: the block's output token grid shrinks by it.
    #[config(default = "[1, 1, 1]")]
    pub stride_q: [usize; 3],
    /// Stride (T, H, W) of the key and value pooling.
    #[config(default = "[1, 1, 1]")]
    pub stride_kv: [usize; 3],
}

/// An MViTv2 network: torchvision's `MViT` with relative positions, residual pooling and the
/// projection after attention (the switches `mvit_v2_s` sets).
#[derive(Config, Debug)]
pub struct MvitConfig {
    /// The multiscale blocks, first to last.
    pub blocks: Vec<MultiscaleBlockConfig>,
    /// Classes of the head.
    pub num_classes: usize,
    /// Frames per clip (T).
    #[config(default = 16)]
    pub temporal_size: usize,
    /// Clip height and width (H, W).
    #[config(default = "[224, 224]")]
    pub spatial_size: [usize; 2],
    /// Kernel (T, H, W) of the patch embedding convolution.
    #[config(default = "[3, 7, 7]")]
    pub patch_kernel: [usize; 3],
    /// Stride of the patch embedding: one token per stride-sized patch.
    #[config(default = "[2, 4, 4]")]
    pub patch_stride: [usize; 3],
    /// Padding of the patch embedding.
    #[config(default = "[1, 3, 3]")]
    pub patch_padding: [usize; 3],
    /// Dropout before the head (training only).
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Dropout after the attention projection and in the MLPs (training only).
    #[config(default = 0.0)]
    pub attention_dropout: f64,
    /// Stochastic depth of the last block; block `i` of `n` drops with `p * i / (n - 1)`.
    #[config(default = 0.2)]
    pub stochastic_depth_prob: f64,
    /// Epsilon of every LayerNorm.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
}

/// The output size of a convolution or pooling over `size` (T, H, W).
pub(crate) fn conv_grid(
    size: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> [usize; 3] {
    std::array::from_fn(|i| (size[i] + 2 * padding[i]).saturating_sub(kernel[i]) / stride[i] + 1)
}

/// Blocks of an MViTv2 with 96 channels and 1 head in the first stage, each later stage
/// starting at a block of `stage_starts` that doubles channels and heads, pools queries by
/// (1, 2, 2) and halves the key/value stride (8 at first) as the paper's adaptive pooling.
fn staged_blocks(depth: usize, stage_starts: [usize; 3]) -> Vec<MultiscaleBlockConfig> {
    let (mut channels, mut heads, mut kv) = (96, 1, 8);
    (0..depth)
        .map(|i| {
            let input = channels;
            let mut stride_q = [1, 1, 1];
            if stage_starts.contains(&i) {
                channels *= 2;
                heads *= 2;
                kv = (kv / 2).max(1);
                stride_q = [1, 2, 2];
            }
            MultiscaleBlockConfig::new(heads, input, channels)
                .with_stride_q(stride_q)
                .with_stride_kv([1, kv, kv])
        })
        .collect()
}

impl MvitConfig {
    /// torchvision's `mvit_v2_s`: 16 blocks, 96-192-384-768 channels, 16x224x224 clips.
    pub fn mvit_v2_s(num_classes: usize) -> MvitConfig {
        MvitConfig::new(staged_blocks(16, [1, 3, 14]), num_classes)
    }

    /// MViTv2-B of the paper (24 blocks, stages 2-3-16-3), built from the same pieces; there is
    /// no torchvision preset for it.
    pub fn mvit_v2_b(num_classes: usize) -> MvitConfig {
        MvitConfig::new(staged_blocks(24, [2, 5, 21]), num_classes)
    }

    /// A 4-block MViTv2 (one block a stage, 96-192-384-768 channels) for demos and tests on a
    /// CPU: the same pieces as `mvit_v2_s`, about a quarter of its compute; not a paper model
    /// and without pretrained weights.
    pub fn mvit_v2_xs(num_classes: usize) -> MvitConfig {
        MvitConfig::new(staged_blocks(4, [1, 2, 3]), num_classes)
    }

    /// The preset called `name` (`mvit_v2_s`, `mvit_v2_b`, `mvit_v2_xs`).
    pub fn preset(name: &str, num_classes: usize) -> crate::Result<MvitConfig> {
        match name {
            "mvit_v2_s" => Ok(MvitConfig::mvit_v2_s(num_classes)),
            "mvit_v2_b" => Ok(MvitConfig::mvit_v2_b(num_classes)),
            "mvit_v2_xs" => Ok(MvitConfig::mvit_v2_xs(num_classes)),
            other => Err(Error::InvalidConfig {
                model: "mvit",
                reason: format!("no preset `{other}` (known: mvit_v2_s, mvit_v2_b, mvit_v2_xs)"),
            }),
        }
    }

    /// The clip (T, H, W) the network takes.
    pub fn clip_size(&self) -> [usize; 3] {
        [
            self.temporal_size,
            self.spatial_size[0],
            self.spatial_size[1],
        ]
    }

    /// The token grid (T', H', W') after the patch embedding, as torchvision sizes it: clip
    /// size divided by the patch stride, rounded down.
    pub fn token_grid(&self) -> [usize; 3] {
        let clip = self.clip_size();
        std::array::from_fn(|i| clip[i] / self.patch_stride[i])
    }

    /// Channels of the embedding and of the final tokens.
    pub fn embed_dim(&self) -> usize {
        self.blocks.last().map_or(0, |b| b.output_channels)
    }

    /// The grid the patch convolution makes of a clip (T, H, W).
    fn patch_grid(&self, clip: [usize; 3]) -> [usize; 3] {
        conv_grid(
            clip,
            self.patch_kernel,
            self.patch_stride,
            self.patch_padding,
        )
    }

    /// Checks that the configuration builds a network, with a reason naming the block.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |reason: String| Error::InvalidConfig {
            model: "mvit",
            reason,
        };
        if self.blocks.is_empty() || self.num_classes == 0 {
            return Err(invalid("blocks and num_classes must be non-empty".into()));
        }
        let strides = [self.patch_stride, self.patch_kernel];
        if strides.iter().flatten().any(|&s| s == 0) {
            return Err(invalid("patch kernel and stride must be positive".into()));
        }
        let (clip, grid) = (self.clip_size(), self.token_grid());
        if grid.contains(&0) || self.patch_grid(clip) != grid {
            return Err(invalid(format!(
                "the patch embedding (kernel {:?}, stride {:?}, padding {:?}) makes a {:?} \
                 token grid of a {clip:?} clip, not the {grid:?} the positions are sized for; \
                 choose a clip size divisible by the stride",
                self.patch_kernel,
                self.patch_stride,
                self.patch_padding,
                self.patch_grid(clip)
            )));
        }
        for p in [
            self.dropout,
            self.attention_dropout,
            self.stochastic_depth_prob,
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(invalid(format!("probability {p} is not in [0, 1)")));
            }
        }
        let mut channels = self.blocks[0].input_channels;
        for (i, block) in self.blocks.iter().enumerate() {
            let problem = if block.input_channels != channels {
                Some(format!(
                    "takes {} channels, the previous block gives {channels}",
                    block.input_channels
                ))
            } else if block.num_heads == 0
                || block.output_channels == 0
                || block.output_channels % block.num_heads != 0
            {
                Some(format!(
                    "{} output channels are not divisible into {} heads",
                    block.output_channels, block.num_heads
                ))
            } else if [
                block.stride_q,
                block.stride_kv,
                block.kernel_q,
                block.kernel_kv,
            ]
            .iter()
            .flatten()
            .any(|&s| s == 0)
            {
                Some("kernels and strides must be positive".into())
            } else {
                None
            };
            if let Some(reason) = problem {
                return Err(invalid(format!("block {i}: {reason}")));
            }
            channels = block.output_channels;
        }
        Ok(())
    }

    /// Floating-point operations of one forward pass on `batch` clips, a multiply-add counted
    /// as two: convolutions, linear layers and the attention products (normalisation,
    /// softmax and the relative-position terms are left out, a few percent).
    pub fn forward_flops(&self, batch: usize) -> u64 {
        let grid = self.token_grid();
        let k: usize = self.patch_kernel.iter().product();
        let c0 = self.blocks.first().map_or(0, |b| b.input_channels);
        let mut flops = 2 * (grid.iter().product::<usize>() * 3 * k * c0) as u64;
        let mut thw = grid;
        let pooled = |thw: [usize; 3], stride: [usize; 3]| -> [usize; 3] {
            std::array::from_fn(|i| thw[i].div_ceil(stride[i]))
        };
        for b in &self.blocks {
            let n = thw.iter().product::<usize>() + 1;
            let q = pooled(thw, b.stride_q);
            let kv = pooled(thw, b.stride_kv);
            let (nq, nk) = (
                q.iter().product::<usize>() + 1,
                kv.iter().product::<usize>() + 1,
            );
            let (c_in, c_out) = (b.input_channels, b.output_channels);
            let conv = |grid: [usize; 3], kernel: [usize; 3]| {
                2 * grid.iter().product::<usize>() * kernel.iter().product::<usize>() * c_out
            };
            let mut block = 2 * n * c_in * 3 * c_out // qkv
                + conv(q, b.kernel_q) + 2 * conv(kv, b.kernel_kv) // pooling
                + 2 * 2 * nq * nk * c_out // q k^T and attn v
                + 2 * nq * c_out * c_out // project
                + 2 * 2 * nq * c_out * 4 * c_out; // mlp
            if c_in != c_out {
                block += 2 * n * c_in * c_out;
            }
            flops += block as u64;
            thw = q;
        }
        flops += 2 * (self.embed_dim() * self.num_classes) as u64;
        batch as u64 * flops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_s_preset_is_torchvisions_table() {
        // torchvision/models/video/mvit.py, mvit_v2_s.
        let heads = [1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8];
        let input = [
            96, 96, 192, 192, 384, 384, 384, 384, 384, 384, 384, 384, 384, 384, 384, 768,
        ];
        let output = [
            96, 192, 192, 384, 384, 384, 384, 384, 384, 384, 384, 384, 384, 384, 768, 768,
        ];
        let q_at = [1, 3, 14];
        let kv = [8, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1];
        let config = MvitConfig::mvit_v2_s(400);
        assert_eq!(config.blocks.len(), 16);
        for (i, b) in config.blocks.iter().enumerate() {
            let stride_q = if q_at.contains(&i) { 2 } else { 1 };
            let expected = MultiscaleBlockConfig::new(heads[i], input[i], output[i])
                .with_stride_q([1, stride_q, stride_q])
                .with_stride_kv([1, kv[i], kv[i]]);
            assert_eq!(b, &expected, "block {i}");
        }
        assert_eq!(config.token_grid(), [8, 56, 56]);
        assert_eq!(config.embed_dim(), 768);
        config.validate().unwrap();
        // The paper's 64.5 GFLOPs (multiply-adds) per 16x224x224 clip, within the few percent
        // left out.
        let gmacs = config.forward_flops(1) as f64 / 2e9;
        assert!((60.0..66.0).contains(&gmacs), "{gmacs}");
    }

    #[test]
    fn the_v2_b_preset_has_the_papers_stages() {
        let config = MvitConfig::mvit_v2_b(400);
        assert_eq!(config.blocks.len(), 24);
        let widths: Vec<usize> = config.blocks.iter().map(|b| b.output_channels).collect();
        assert_eq!(widths.iter().filter(|&&c| c == 96).count(), 2);
        assert_eq!(widths.iter().filter(|&&c| c == 768).count(), 3);
        config.validate().unwrap();
    }

    #[test]
    fn configurations_that_cannot_build_are_refused_with_the_reason() {
        let err = |c: MvitConfig| c.validate().unwrap_err().to_string();
        let s = || MvitConfig::mvit_v2_s(10);
        assert!(err(s().with_spatial_size([226, 224])).contains("token grid"));
        assert!(err(s().with_temporal_size(1)).contains("token grid"));
        let mut blocks = s().blocks;
        blocks[3].input_channels = 100;
        assert!(err(MvitConfig { blocks, ..s() }).contains("block 3"));
        let mut blocks = s().blocks;
        blocks[0].num_heads = 5;
        assert!(err(MvitConfig { blocks, ..s() }).contains("heads"));
        assert!(
            err(MvitConfig {
                blocks: vec![],
                ..s()
            })
            .contains("non-empty")
        );
        assert!(MvitConfig::preset("mvit_v9", 3).is_err());
    }
}
