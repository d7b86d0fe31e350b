//! Swin Transformer (Liu et al., ICCV 2021) and SwinFace (Qin et al., 2023), one
//! implementation for both: window attention with a relative position bias, shifted windows
//! with their attention mask, patch merging, exact GELU. [`SwinConfig::swin_t`] is timm's
//! `swin_tiny_patch4_window7_224`; [`SwinConfig::swinface`] is SwinFace's backbone with its
//! 512-d face embedding, and [`SwinFace`] adds its face-analysis heads (facial expression and
//! 41 more).
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use miga_backbones::swin::{SwinConfig, SwinHead};
//!
//! let device = Default::default();
//! // Two stages of 8 then 16 channels on 28x28 images (SwinFace's is `SwinConfig::swinface()`).
//! let config = SwinConfig::new(28, 2, 8, vec![2, 2], vec![1, 2], 7, SwinHead::FaceEmbedding { dim: 16 });
//! let model = config.init::<Flex>(&device)?;
//! let faces = Tensor::<Flex, 4>::zeros([2, 3, 28, 28], &device);
//! let out = model.try_forward(faces)?;
//! assert_eq!(out.embedding.dims(), [2, 16]);
//! assert_eq!(out.stages[1].dims(), [2, 16, 7, 7]); // B, C, H, W
//! # Ok::<(), miga_backbones::Error>(())
//! ```

mod attention;
mod block;
mod config;
mod face;
mod import;
mod model;

pub use attention::WindowAttention;
pub use block::{PatchMerging, SwinBlock, SwinStage};
pub use config::{StageGeometry, SwinConfig, SwinHead};
pub use face::{
    FACE_HEADS, FaceAnalysis, FaceAnalysisConfig, FaceHead, FeatureAttentionModule,
    FeatureAttentionNet, OutputModule, SwinFace, SwinFaceConfig, SwinFaceOutput,
    TaskSpecificSubnet, TaskSpecificSubnets, multi_level_features,
};
pub use model::{FaceEmbedding, PatchEmbed, Swin, SwinOutput};
