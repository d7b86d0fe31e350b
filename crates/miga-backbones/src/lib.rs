//! Backbones of miga: the networks that turn raw clips, skeletons and faces into tokens.
//!
//! - [`mvit`]: MViTv2 (video; torchvision's `mvit_v2_s` and other presets),
//! - [`agcn`]: 2s-AGCN (OpenPose skeletons; joint and bone streams),
//! - [`swin`]: Swin Transformer and SwinFace (faces; timm's `swin_tiny_patch4_window7_224`),
//! - [`catalogue`]: the published checkpoints they load (preset, file name, classes, source),
//!
//! and the layers they share ([`kernels`]: GELU, softmax and depthwise Conv3d with vectorised
//! fast paths on the CPU backend). Every model is generic over `B: Backend` and names no backend;
//! backend choice belongs to the application (see the `miga` crate's `device` module).
//! Checkpoints load strictly: every tensor is mapped and shape-checked, and anything missing,
//! unexpected or mis-shaped is an [`Error`] that names it.

pub mod agcn;
pub mod catalogue;
mod error;
mod import;
pub use miga_kernels as kernels;
mod layers;
pub mod mvit;
pub mod parity;
pub mod swin;

pub use error::{Error, Result};
pub use import::{Remaps, in_device_precision, load_checkpoint};
