//! The narrow fixtures' forward passes: each model loaded through miga's strict loaders from
//! the reference's own weights file, run on the fixture's inputs, its outputs named as the
//! fixture names the reference's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use miga_backbones::agcn::{AgcnConfig, Graph, bones, fuse_scores};
use miga_backbones::load_checkpoint;
use miga_backbones::mvit::MvitConfig;
use miga_backbones::swin::{FACE_HEADS, SwinConfig, SwinFaceConfig};
use miga_fusion::{
    CmtfConfig, CmtfInput, InterFusionConfig, InterFusionInput, Sequence, SkeletonTokens,
    VideoTokens,
};

use super::{Fixtures, Subject, config, read, tensor};
use crate::Error;
use crate::device::{BackendTask, DeviceSpec};

type Named = BTreeMap<String, TensorData>;

/// Our outputs and the fixture's tensors (the reference's outputs among them).
pub(super) fn outputs(
    fixtures: &Fixtures,
    subject: Subject,
    device: DeviceSpec,
) -> Result<(Named, Named), Error> {
    let dir = dir(fixtures, subject);
    let io = read(&dir.join("io.safetensors"))?;
    let ours = device.run(Forward {
        subject,
        dir,
        io: &io,
    })??;
    Ok((ours, io))
}

/// A subject's fixture folder.
pub(super) fn dir(fixtures: &Fixtures, subject: Subject) -> PathBuf {
    match subject {
        Subject::Agcn(layout) => fixtures.backbones().join("agcn").join(layout),
        Subject::Mvit(case, _) => fixtures.backbones().join("mvit").join(case),
        Subject::Swin(case) => fixtures.backbones().join("swin").join(case),
        Subject::Fusion(case) => fixtures.fusion().join(case),
        Subject::Gradients(case) => match case {
            "mvit" => dir(fixtures, Subject::Mvit("tiny", "")),
            "agcn" => dir(fixtures, Subject::Agcn("kinetics")),
            "swin_t" | "swinface" => dir(fixtures, Subject::Swin(case)),
            case => dir(fixtures, Subject::Fusion(case)),
        },
        Subject::Full(_) => fixtures.backbones().join("full"),
    }
}

struct Forward<'a> {
    subject: Subject,
    dir: PathBuf,
    io: &'a Named,
}

impl BackendTask for Forward<'_> {
    type Output = Result<Named, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Named, Error> {
        let device = &device;
        let outputs: Vec<(&str, TensorData)> = match self.subject {
            Subject::Agcn(layout) => return self.agcn::<B>(layout, device),
            Subject::Mvit(_, weights) => {
                let config: MvitConfig = config(&self.dir.join("config.json"))?;
                let model = config.load_checkpoint::<B>(self.dir.join(weights), device)?;
                let x = Tensor::<B, 5>::from_data(tensor(self.io, "input")?, device);
                let out = model.try_forward(x)?;
                vec![
                    ("logits", out.logits.into_data()),
                    ("embedding", out.embedding.into_data()),
                    ("tokens", out.tokens.into_data()),
                ]
            }
            Subject::Swin("swin_t") => {
                let config: SwinConfig = config(&self.dir.join("config.json"))?;
                let model =
                    config.load_checkpoint::<B>(self.dir.join("weights.safetensors"), device)?;
                let x = Tensor::<B, 4>::from_data(tensor(self.io, "input")?, device);
                let out = model.try_forward(x)?;
                let logits = out.logits.ok_or_else(|| missing("logits"))?;
                vec![
                    ("logits", logits.into_data()),
                    ("embedding", out.embedding.into_data()),
                ]
            }
            Subject::Swin(_) => {
                let config: SwinFaceConfig = config(&self.dir.join("config.json"))?;
                let model = config.load_checkpoint::<B>(self.dir.join("weights.pt"), device)?;
                let x = Tensor::<B, 4>::from_data(tensor(self.io, "input")?, device);
                let out = model.try_forward(x)?;
                let heads = out.heads.ok_or_else(|| missing("the face heads"))?;
                return Ok(std::iter::once(("embedding".to_string(), out.embedding))
                    .chain(
                        FACE_HEADS
                            .iter()
                            .map(|h| format!("head.{}", h.name))
                            .zip(heads),
                    )
                    .map(|(name, t)| (name, t.into_data()))
                    .collect());
            }
            Subject::Fusion(case) if case.starts_with("cmtf") => {
                let config: CmtfConfig = config(&self.dir.join("config.json"))?;
                let model = config.init::<B>(device)?;
                let names = model.pytorch_names().to_miga();
                let weights = self.dir.join("weights.safetensors");
                let model = load_checkpoint(model, &weights, None, &names, &[])?;
                let out = model.try_forward(cmtf_input(self.io, &config, device)?)?;
                vec![
                    ("logits", out.logits.into_data()),
                    ("embedding", out.embedding.into_data()),
                    ("video_logits", out.video_logits.into_data()),
                    ("skeleton_logits", out.skeleton_logits.into_data()),
                ]
            }
            Subject::Fusion(_) => {
                let config: InterFusionConfig = config(&self.dir.join("config.json"))?;
                let model = config.init::<B>(device)?;
                let names = model.pytorch_names().to_miga();
                let weights = self.dir.join("weights.safetensors");
                let model = load_checkpoint(model, &weights, None, &names, &[])?;
                let out = model.try_forward(interfusion_input(self.io, device)?)?;
                let face = out.face_weights.ok_or_else(|| missing("face_weights"))?;
                let context = out
                    .context_weights
                    .ok_or_else(|| missing("context_weights"))?;
                vec![
                    ("logits", out.logits.into_data()),
                    ("embedding", out.embedding.into_data()),
                    ("face_weights", face.into_data()),
                    ("context_weights", context.into_data()),
                ]
            }
            Subject::Full(_) | Subject::Gradients(_) => {
                unreachable!("full-size and gradient checks have their own modules")
            }
        };
        Ok(outputs
            .into_iter()
            .map(|(name, data)| (name.to_string(), data))
            .collect())
    }
}

impl Forward<'_> {
    /// Both 2s-AGCN streams and their fusion, the bone input computed by miga from the joints;
    /// the graph's adjacency must be the reference's, and the token map must pool to the
    /// embedding.
    fn agcn<B: Backend>(self, layout: &str, device: &B::Device) -> Result<Named, Error> {
        let graph = Graph::layout(layout)?;
        let adjacency = tensor(self.io, "adjacency")?.to_vec::<f32>().ok();
        if adjacency.as_deref() != Some(graph.adjacency().as_slice()) {
            return Err(Error::InvalidArgument(format!(
                "{layout}: miga's adjacency differs from the reference's"
            )));
        }
        let joint = AgcnConfig::load::<B>(self.dir.join("joint.pt"), graph.clone(), device)?;
        let bone = AgcnConfig::load::<B>(self.dir.join("bone.pt"), graph.clone(), device)?;
        let joints = Tensor::<B, 5>::from_data(tensor(self.io, "joints")?, device);
        let bone_input = bones(joints.clone(), &graph);
        let j = joint.try_forward(joints)?;
        let b = bone.try_forward(bone_input.clone())?;
        let pooled = j.tokens.clone().mean_dims(&[1, 2]).flatten::<2>(1, 3);
        let gap: f32 = (pooled - j.embedding.clone())
            .abs()
            .max()
            .into_scalar()
            .elem();
        if gap.is_nan() || gap >= 1e-5 {
            return Err(Error::InvalidArgument(format!(
                "{layout}: the token map pools to {gap:e} off the embedding"
            )));
        }
        Ok([
            ("bones", bone_input.into_data()),
            ("joint_logits", j.logits.clone().into_data()),
            ("joint_embedding", j.embedding.into_data()),
            ("bone_logits", b.logits.clone().into_data()),
            ("bone_embedding", b.embedding.into_data()),
            (
                "fused_logits",
                fuse_scores(j.logits, b.logits, 1.0).into_data(),
            ),
        ]
        .into_iter()
        .map(|(name, data)| (name.to_string(), data))
        .collect())
    }
}

fn missing(what: &str) -> Error {
    Error::InvalidArgument(format!("the model gave no {what}"))
}

/// The fusion fixtures' inputs as CMTF takes them (`scripts/fusion_reference.py`).
pub(super) fn cmtf_input<B: Backend>(
    io: &Named,
    config: &CmtfConfig,
    device: &B::Device,
) -> Result<CmtfInput<B>, Error> {
    let mask = |k: &str| -> Result<_, Error> {
        Ok(Tensor::<B, 2>::from_data(tensor(io, k)?, device).greater_elem(0.5))
    };
    let class_embedding = match config.video_class_token {
        true => Some(Tensor::from_data(tensor(io, "video_class")?, device)),
        false => None,
    };
    Ok(CmtfInput {
        video: Some(VideoTokens {
            tokens: Tensor::from_data(tensor(io, "video")?, device),
            class_embedding,
            padding: Some(mask("video_padding")?),
        }),
        skeleton: Some(SkeletonTokens {
            tokens: Tensor::from_data(tensor(io, "skeleton")?, device),
            padding: Some(mask("skeleton_padding")?),
            pooled: false,
        }),
    })
}

/// The fusion fixtures' inputs as InterFusion takes them.
pub(super) fn interfusion_input<B: Backend>(
    io: &Named,
    device: &B::Device,
) -> Result<InterFusionInput<B>, Error> {
    let float =
        |k: &str| -> Result<_, Error> { Ok(Tensor::<B, 3>::from_data(tensor(io, k)?, device)) };
    let mask = |k: &str| -> Result<_, Error> {
        Ok(Tensor::<B, 2>::from_data(tensor(io, k)?, device).greater_elem(0.5))
    };
    let expressions = match io.contains_key("expressions") {
        true => Some(float("expressions")?),
        false => None,
    };
    Ok(InterFusionInput {
        face: Some(Sequence::new(float("face")?).with_padding(mask("face_padding")?)),
        expressions,
        context: Some(Sequence::new(float("context")?).with_padding(mask("context_padding")?)),
    })
}
