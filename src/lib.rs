//! # miga
//!
//! Multimodal micro-gesture recognition and behaviour-based emotion prediction on
//! [Burn](https://burn.dev): MViTv2, 2s-AGCN and SwinFace backbones, Cross-Modal Token Fusion
//! and InterFusion, the iMiGUE / MiGA data formats, and the two tasks built from them. One code
//! base runs on CPU (Flex, ndarray), wgpu (Vulkan, Metal) and CUDA.
//!
//! This crate gathers the workspace's crates under one name and owns backend selection:
//!
//! - [`backbones`]: video, skeleton and face backbones, generic over `B: Backend`;
//! - [`fusion`]: the fusion modules, which take backbone tokens as tensors;
//! - [`datasets`]: annotations, protocols, skeletons, video decoding, batching;
//! - [`tasks`]: the composed networks (`tasks::models`), the training core and the two tasks
//!   (`tasks::micro_gesture`, `tasks::emotion`): extraction, training, evaluation, prediction;
//! - [`device`]: `--device` parsing and dispatch of generic work onto a compiled backend;
//! - [`agreement`]: runs one computation on two backends and compares the outputs;
//! - [`check`]: the parity checks against the committed reference fixtures, on any device;
//! - [`bench`]: times models on any compiled backend.
//!
//! ```
//! let spec: miga::device::DeviceSpec = "cpu".parse()?;
//! let report = miga::device::probe(spec)?;
//! assert_eq!(report.backend, "flex");
//! # Ok::<(), miga::Error>(())
//! ```

pub mod agreement;
pub mod bench;
pub mod check;
pub mod device;
mod error;

pub use error::Error;
pub use miga_backbones as backbones;
pub use miga_datasets as datasets;
pub use miga_fusion as fusion;
pub use miga_tasks as tasks;

/// This library's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
