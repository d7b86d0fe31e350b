//! MViTv2, the multiscale vision transformer of Li et al. (CVPR 2022), as torchvision's
//! `torchvision.models.video.MViT` defines it with the switches of `mvit_v2_s`: pooling
//! attention with decomposed relative positions, residual pooling and the projection after
//! attention. Loads torchvision checkpoints; gives class scores, the class embedding and the
//! final token grid for fusion.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use miga_backbones::mvit::{MultiscaleBlockConfig, MvitConfig};
//!
//! let device = Default::default();
//! // Two blocks, 8 then 16 channels, on 4x32x32 clips (mvit_v2_s is `MvitConfig::mvit_v2_s`).
//! let config = MvitConfig::new(
//!     vec![
//!         MultiscaleBlockConfig::new(1, 8, 8).with_stride_kv([1, 2, 2]),
//!         MultiscaleBlockConfig::new(2, 8, 16).with_stride_q([1, 2, 2]),
//!     ],
//!     32,
//! )
//! .with_temporal_size(4)
//! .with_spatial_size([32, 32]);
//! let model = config.init::<Flex>(&device)?;
//! let clips = Tensor::<Flex, 5>::zeros([1, 3, 4, 32, 32], &device); // B, C, T, H, W
//! let out = model.try_forward(clips)?;
//! assert_eq!(out.logits.dims(), [1, 32]);
//! assert_eq!(out.embedding.dims(), [1, 16]);
//! assert_eq!(out.tokens.dims(), [1, 2, 4, 4, 16]); // B, T', H', W', C
//! # Ok::<(), miga_backbones::Error>(())
//! ```

mod attention;
mod block;
mod config;
mod import;
mod model;

pub use crate::layers::Mlp;
pub use attention::{AttentionPool, Grid, MultiscaleAttention};
pub use block::MultiscaleBlock;
pub use config::{MultiscaleBlockConfig, MvitConfig};
pub use model::{Mvit, MvitOutput};
