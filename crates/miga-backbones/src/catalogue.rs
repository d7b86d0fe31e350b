//! The published checkpoints the backbones load, as data (in the style of the tracel-ai/models
//! crates' weight tables): the backbone and preset each fits, the name it is published under,
//! its head's class count and where it comes from.
//!
//! miga downloads nothing: a user fetches the file from its source. A path whose file name is
//! in the catalogue is checked against the preset it is loaded into before it is read, so that a
//! published file given to the wrong preset is an error that says which preset it is for
//! (instead of a list of mis-shaped keys), and its head gets the right class count. 2s-AGCN's
//! reference repository publishes no weights (its checkpoints are trained per dataset), so it has
//! no entry; files not in the catalogue load as before.
//!
//! ```
//! use miga_backbones::catalogue::{Backbone, Checkpoint};
//!
//! let published = Checkpoint::identify("weights/mvit_v2_s-ae3be167.pth".as_ref()).unwrap();
//! assert_eq!((published.preset, published.classes), ("mvit_v2_s", 400));
//! assert!(published.fits(Backbone::Mvit, "mvit_v2_b").is_err());
//! ```

use std::path::Path;

use crate::{Error, Result};

/// The backbone a checkpoint is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backbone {
    /// MViTv2 ([`crate::mvit`]).
    Mvit,
    /// Swin Transformer and SwinFace ([`crate::swin`]).
    Swin,
}

/// A published checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// miga's name for it.
    pub name: &'static str,
    /// The backbone it loads into.
    pub backbone: Backbone,
    /// The preset it fits (`MvitConfig::preset`, `SwinConfig::preset`).
    pub preset: &'static str,
    /// The file name it is published under.
    pub file: &'static str,
    /// Classes of the head it carries (SwinFace: its facial-expression head).
    pub classes: usize,
    /// Where it is published.
    pub source: &'static str,
}

/// torchvision's `MViT_V2_S_Weights.KINETICS400_V1`.
pub const MVIT_V2_S_KINETICS400: Checkpoint = Checkpoint {
    name: "mvit_v2_s.kinetics400_v1",
    backbone: Backbone::Mvit,
    preset: "mvit_v2_s",
    file: "mvit_v2_s-ae3be167.pth",
    classes: 400,
    source: "https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth",
};

/// SwinFace's released training checkpoint (lxq1000/SwinFace).
pub const SWINFACE: Checkpoint = Checkpoint {
    name: "swinface",
    backbone: Backbone::Swin,
    preset: "swinface",
    file: "checkpoint_step_79999_gpu_0.pt",
    classes: 7,
    source: "https://drive.google.com/drive/folders/1NjVN3Kp_Tmwt17hWCIWgHpuWzkHYaman \
             (linked from github.com/lxq1000/SwinFace)",
};

/// Swin-T on ImageNet-1k, Microsoft's release (`swin_tiny_patch4_window7_224`).
pub const SWIN_T_IMAGENET1K: Checkpoint = Checkpoint {
    name: "swin_t.imagenet1k",
    backbone: Backbone::Swin,
    preset: "swin_t",
    file: "swin_tiny_patch4_window7_224.pth",
    classes: 1000,
    source: "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/\
             swin_tiny_patch4_window7_224.pth",
};

/// Every published checkpoint miga knows.
pub const CATALOGUE: [Checkpoint; 3] = [MVIT_V2_S_KINETICS400, SWINFACE, SWIN_T_IMAGENET1K];

impl Checkpoint {
    /// The catalogue entry published under `path`'s file name, if any.
    pub fn identify(path: &Path) -> Option<Checkpoint> {
        let file = path.file_name()?.to_str()?;
        CATALOGUE.into_iter().find(|c| c.file == file)
    }

    /// Whether this checkpoint loads into `backbone` at `preset`; the error says which preset
    /// it is for.
    pub fn fits(&self, backbone: Backbone, preset: &str) -> Result<()> {
        if self.backbone == backbone && self.preset == preset {
            return Ok(());
        }
        Err(Error::Checkpoint {
            path: self.file.into(),
            reason: format!(
                "this is the published `{}` checkpoint, for the {:?} preset `{}`, not `{preset}`",
                self.name, self.backbone, self.preset
            ),
        })
    }

    /// The class count of the head to build for the file `path` loaded into `backbone` at
    /// `preset`: the catalogue's for a published file (after checking it fits; the error names
    /// `path`), `otherwise` for any other file.
    pub fn head_classes(
        path: &Path,
        backbone: Backbone,
        preset: &str,
        otherwise: usize,
    ) -> Result<usize> {
        match Checkpoint::identify(path) {
            Some(published) => match published.fits(backbone, preset) {
                Ok(()) => Ok(published.classes),
                Err(Error::Checkpoint { reason, .. }) => Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    reason,
                }),
                Err(other) => Err(other),
            },
            None => Ok(otherwise),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_files_are_known_by_name_and_checked_against_the_preset() {
        let names: Vec<&str> = CATALOGUE.iter().map(|c| c.file).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names.len(), unique.len());
        let path = Path::new("/weights/mvit_v2_s-ae3be167.pth");
        assert_eq!(Checkpoint::identify(path), Some(MVIT_V2_S_KINETICS400));
        assert_eq!(
            Checkpoint::head_classes(path, Backbone::Mvit, "mvit_v2_s", 0).unwrap(),
            400
        );
        let err = Checkpoint::head_classes(path, Backbone::Mvit, "mvit_v2_b", 400)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/weights/mvit_v2_s-ae3be167.pth")
                && err.contains("`mvit_v2_s`")
                && err.contains("`mvit_v2_b`"),
            "{err}"
        );
        assert!(
            Checkpoint::head_classes(path, Backbone::Swin, "mvit_v2_s", 0).is_err(),
            "a file of another backbone"
        );
        // Any other file: the caller's class count.
        let own = Path::new("my-finetuned.pth");
        assert_eq!(Checkpoint::identify(own), None);
        assert_eq!(
            Checkpoint::head_classes(own, Backbone::Mvit, "mvit_v2_b", 32).unwrap(),
            32
        );
        assert_eq!(
            Checkpoint::identify(Path::new("checkpoint_step_79999_gpu_0.pt")).map(|c| c.preset),
            Some("swinface")
        );
    }
}
