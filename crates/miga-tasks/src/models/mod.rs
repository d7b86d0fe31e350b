//! The composed networks, from a clip to a prediction:
//!
//! ```text
//! clip (frames + OpenPose skeleton) --MViTv2--> video tokens --grid pool--+
//!                                   --2s-AGCN-> skeleton tokens ----------+--> CMTF --> 32 classes
//! video (faces + context windows)   --SwinFace--> face embeddings --------+
//!                                   --MViTv2---> context embeddings ------+--> InterFusion --> Win/Lose
//! ```
//!
//! Each network is a pair of configurations and modules: the backbones with their feature
//! adapter ([`micro_gesture::MicroGestureExtraction`] -> [`micro_gesture::Backbones`],
//! [`emotion::EmotionExtraction`] -> [`emotion::Backbones`]) and the fusion model trained on
//! their features ([`micro_gesture::TrainConfig`] -> [`micro_gesture::MicroGestureModel`],
//! [`emotion::EmotionTrainConfig`] -> [`emotion::EmotionModel`]). Extraction, training
//! (on features or end to end), evaluation, the pipeline and `miga forward` all build them
//! here.

pub mod emotion;
pub mod micro_gesture;

use std::path::PathBuf;

use burn::prelude::*;
use miga_backbones::catalogue::{Backbone, Checkpoint};
use miga_backbones::mvit::{Mvit, MvitConfig};

use crate::Result;

/// The checkpoint files a user gives the backbones; a backbone without one is randomly
/// initialised (under the seed). A published file ([`miga_backbones::catalogue`]) is checked
/// against the preset it is loaded into before it is read.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    /// torchvision MViTv2 `.pth` / safetensors.
    pub mvit: Option<PathBuf>,
    /// 2s-AGCN reference `.pt`.
    pub agcn: Option<PathBuf>,
    /// SwinFace training checkpoint (`.pt`) or safetensors.
    pub swinface: Option<PathBuf>,
}

/// `module` with its parameters drawn now. Burn initialises parameters lazily, on first use:
/// a module initialised right after seeding the backend's generator would otherwise draw
/// its values whenever it first runs, after whatever else drew meanwhile.
pub(crate) fn drawn_now<B: Backend, M: Module<B>>(module: M) -> M {
    struct Touch;
    impl<B: Backend> burn::module::ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
    module
}

/// MViTv2 preset `name` for clips of `frames` x `crop` x `crop`, from `weights.mvit` or randomly
/// initialised (with torchvision's 400 Kinetics classes, as a published checkpoint's head).
pub(crate) fn mvit<B: Backend>(
    name: &str,
    frames: usize,
    crop: usize,
    weights: &Weights,
    device: &B::Device,
) -> Result<Mvit<B>> {
    let classes = match &weights.mvit {
        Some(path) => Checkpoint::head_classes(path, Backbone::Mvit, name, 400)?,
        None => 400,
    };
    let config = MvitConfig::preset(name, classes)?
        .with_temporal_size(frames)
        .with_spatial_size([crop; 2]);
    Ok(match &weights.mvit {
        Some(path) => config.load_checkpoint(path, device)?,
        None => drawn_now(config.init(device)?),
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    #[test]
    fn a_published_checkpoint_is_refused_by_another_preset_before_it_is_read() {
        let weights = Weights {
            mvit: Some("absent/mvit_v2_s-ae3be167.pth".into()),
            ..Weights::default()
        };
        let err = mvit::<Flex>("mvit_v2_xs", 4, 32, &weights, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mvit_v2_s-ae3be167.pth") && err.contains("`mvit_v2_xs`"),
            "{err}"
        );
    }
}
