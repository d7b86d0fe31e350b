//! One training step against PyTorch autograd (`scripts/gradient_parity.py`): the loss
//! `sum over outputs o of sum(o * W_o)` (`W_o` the parameter stream of `loss.<name>`) and every
//! parameter's gradient, on a narrow fixture's weights and inputs, dropout and drop path at 0.
//! The reference gradients are stored as a checkpoint (every parameter replaced by its
//! gradient) and loaded by the same loader into the same network, so that each of miga's
//! parameters meets its own reference gradient, whatever the names and layouts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use miga_backbones::agcn::{AgcnConfig, Graph};
use miga_backbones::load_checkpoint;
use miga_backbones::mvit::MvitConfig;
use miga_backbones::parity::{scaled_error, stream_uniform};
use miga_backbones::swin::{FACE_HEADS, SwinConfig, SwinFaceConfig};
use miga_fusion::{CmtfConfig, InterFusionConfig};

use super::forward::{cmtf_input, dir, interfusion_input};
use super::{Fixtures, Subject, config, read, record, tensor};
use crate::Error;
use crate::device::{AutodiffTask, DeviceSpec};

/// The loss's and each trained parameter's scaled error (parameters named `index path`).
pub(super) fn errors(
    fixtures: &Fixtures,
    case: &'static str,
    device: DeviceSpec,
) -> Result<Vec<(String, f32)>, Error> {
    let dir = dir(fixtures, Subject::Gradients(case));
    let io = read(&dir.join("io.safetensors"))?;
    let record = record(&dir.join("grads.json"))?;
    let theirs_loss = record["loss"]
        .as_f64()
        .ok_or_else(|| Error::InvalidArgument(format!("{case}: grads.json has no loss")))?;
    let outputs: Vec<String> = record["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let step = device.run_autodiff(Step {
        case,
        dir,
        io: &io,
        outputs: &outputs,
    })??;
    let loss = ((step.loss - theirs_loss).abs() / theirs_loss.abs().max(1.0)) as f32;
    let mut errors = vec![("loss".to_string(), loss)];
    if step.ours.len() != step.theirs.len() {
        return Err(Error::InvalidArgument(format!(
            "{case}: {} parameters against {} reference gradients",
            step.ours.len(),
            step.theirs.len()
        )));
    }
    for (i, ((name, ours), theirs)) in step.ours.into_iter().zip(step.theirs).enumerate() {
        // A tensor that is not trained (BatchNorm's running statistics) is not compared; a
        // trained one that no gradient reached has a zero gradient.
        let Some(ours) = ours else { continue };
        let ours = ours.unwrap_or_else(|| TensorData::zeros::<f32, _>(theirs.shape.clone()));
        let error = scaled_error(&ours, &theirs).map_err(|reason| Error::Disagreement {
            reference: "PyTorch autograd".into(),
            other: "miga".into(),
            reason: format!("{case}: parameter {i} ({name}): {reason}"),
        })?;
        errors.push((format!("{i} {name}"), error));
    }
    Ok(errors)
}

/// What one step gave: the loss, each float parameter's gradient in visit order (`None` for a
/// tensor that is not trained, `Some(None)` for a trained one no gradient reached), and the
/// reference gradients in the same order.
struct StepResult {
    loss: f64,
    ours: Vec<(String, Option<Option<TensorData>>)>,
    theirs: Vec<TensorData>,
}

struct Step<'a> {
    case: &'static str,
    dir: PathBuf,
    io: &'a BTreeMap<String, TensorData>,
    outputs: &'a [String],
}

type Outputs<B> = Vec<(String, Tensor<B, 1>)>;

impl AutodiffTask for Step<'_> {
    type Output = Result<StepResult, Error>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<StepResult, Error> {
        let device = &device;
        let dir = &self.dir;
        let grads = dir.join("grads.safetensors");
        let io = self.io;
        let input = |name: &str| tensor(io, name);
        let flat = |name: &str, t: Tensor<B, 2>| (name.to_string(), t.flatten(0, 1));
        match self.case {
            "mvit" => {
                let mut config: MvitConfig = config(&dir.join("config.json"))?;
                config.dropout = 0.0;
                config.attention_dropout = 0.0;
                config.stochastic_depth_prob = 0.0;
                let model = config.load_checkpoint::<B>(dir.join("weights.pth"), device)?;
                let reference = config.load_checkpoint::<B::InnerBackend>(&grads, device)?;
                self.step(model, reference, device, |m| {
                    let o = m.try_forward(Tensor::from_data(input("input")?, device))?;
                    Ok(vec![flat("logits", o.logits)])
                })
            }
            "agcn" => {
                let config = AgcnConfig::from_checkpoint(dir.join("joint.pt"), Graph::kinetics())?;
                let model = config
                    .init::<B>(device)?
                    .load_pytorch(dir.join("joint.pt"))?;
                let reference = config
                    .init::<B::InnerBackend>(device)?
                    .load_pytorch(&grads)?;
                self.step(model, reference, device, |m| {
                    let o = m.try_forward(Tensor::from_data(input("joints")?, device))?;
                    Ok(vec![flat("logits", o.logits)])
                })
            }
            "swin_t" => {
                let mut config: SwinConfig = config(&dir.join("config.json"))?;
                config.dropout = 0.0;
                config.attention_dropout = 0.0;
                config.drop_path_rate = 0.0;
                let model = config.load_checkpoint::<B>(dir.join("weights.safetensors"), device)?;
                let reference = config.load_checkpoint::<B::InnerBackend>(&grads, device)?;
                self.step(model, reference, device, |m| {
                    let o = m.try_forward(Tensor::from_data(input("input")?, device))?;
                    let logits = o.logits.ok_or_else(|| missing("logits"))?;
                    Ok(vec![flat("logits", logits)])
                })
            }
            "swinface" => {
                let mut config: SwinFaceConfig = config(&dir.join("config.json"))?;
                config.backbone.dropout = 0.0;
                config.backbone.attention_dropout = 0.0;
                config.backbone.drop_path_rate = 0.0;
                if let Some(heads) = config.heads.as_mut() {
                    heads.dropout = 0.0;
                }
                let model = config.load_checkpoint::<B>(dir.join("weights.pt"), device)?;
                let reference = config.load_checkpoint::<B::InnerBackend>(&grads, device)?;
                self.step(model, reference, device, |m| {
                    // Four faces from the stream (scripts/gradient_parity.py says why).
                    let faces = stream_uniform("input", 4 * 3 * 112 * 112);
                    let x = TensorData::new(faces, [4, 3, 112, 112]);
                    let o = m.try_forward(Tensor::from_data(x, device))?;
                    let heads = o.heads.ok_or_else(|| missing("the face heads"))?;
                    let mut outputs = vec![flat("embedding", o.embedding)];
                    for (head, value) in FACE_HEADS.iter().zip(heads) {
                        outputs.push(flat(&format!("head.{}", head.name), value));
                    }
                    Ok(outputs)
                })
            }
            case if case.starts_with("cmtf") => {
                let mut config: CmtfConfig = config(&dir.join("config.json"))?;
                config.dropout = 0.0;
                config.modality_dropout = 0.0;
                let weights = dir.join("weights.safetensors");
                let model = config.init::<B>(device)?;
                let names = model.pytorch_names().to_miga();
                let model = load_checkpoint(model, &weights, None, &names, &[])?;
                let reference = config.init::<B::InnerBackend>(device)?;
                let reference = load_checkpoint(reference, &grads, None, &names, &[])?;
                self.step(model, reference, device, |m| {
                    let o = m.try_forward(cmtf_input(io, &config, device)?)?;
                    Ok(vec![
                        flat("embedding", o.embedding),
                        flat("logits", o.logits),
                        flat("skeleton_logits", o.skeleton_logits),
                        flat("video_logits", o.video_logits),
                    ])
                })
            }
            _ => {
                let mut config: InterFusionConfig = config(&dir.join("config.json"))?;
                config.dropout = 0.0;
                config.modality_dropout = 0.0;
                let weights = dir.join("weights.safetensors");
                let model = config.init::<B>(device)?;
                let names = model.pytorch_names().to_miga();
                let model = load_checkpoint(model, &weights, None, &names, &[])?;
                let reference = config.init::<B::InnerBackend>(device)?;
                let reference = load_checkpoint(reference, &grads, None, &names, &[])?;
                self.step(model, reference, device, |m| {
                    let o = m.try_forward(interfusion_input(io, device)?)?;
                    let mut outputs =
                        vec![flat("embedding", o.embedding), flat("logits", o.logits)];
                    outputs.extend(o.face_weights.map(|w| flat("face_weights", w)));
                    outputs.extend(o.context_weights.map(|w| flat("context_weights", w)));
                    outputs.extend(o.gate.map(|g| flat("gate", g)));
                    Ok(outputs)
                })
            }
        }
    }
}

impl Step<'_> {
    /// The loss over `forward`'s outputs (which must be the reference's, by name), its value,
    /// and the gradients of `model`'s parameters beside `reference`'s values (the reference
    /// gradients, loaded as a checkpoint of the same network).
    fn step<B: AutodiffBackend, M: Module<B>, R: Module<B::InnerBackend>>(
        &self,
        model: M,
        reference: R,
        device: &B::Device,
        forward: impl FnOnce(&M) -> Result<Outputs<B>, Error>,
    ) -> Result<StepResult, Error> {
        let outputs = forward(&model)?;
        let mut names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let theirs: Vec<&str> = self.outputs.iter().map(String::as_str).collect();
        if names != theirs {
            return Err(Error::InvalidArgument(format!(
                "{}: the loss sums {names:?}, the reference's {theirs:?}",
                self.case
            )));
        }
        let loss = stream_loss(outputs, device);
        let value = f64::from(loss.clone().into_scalar().elem::<f32>());
        let grads = loss.backward();
        let mut ours = GradientsOf::<B> {
            grads: &grads,
            out: Vec::new(),
            path: Vec::new(),
        };
        model.visit(&mut ours);
        let mut theirs = ValuesOf(Vec::new());
        reference.visit(&mut theirs);
        Ok(StepResult {
            loss: value,
            ours: ours.out,
            theirs: theirs.0,
        })
    }
}

fn missing(what: &str) -> Error {
    Error::InvalidArgument(format!("the model gave no {what}"))
}

/// `sum over outputs of sum(o * W_o)`, `W_o` the stream of `loss.<name>`.
fn stream_loss<B: Backend>(outputs: Outputs<B>, device: &B::Device) -> Tensor<B, 1> {
    outputs
        .into_iter()
        .map(|(name, o)| {
            let n = o.dims()[0];
            let w = stream_uniform(&format!("loss.{name}"), n);
            (o * Tensor::<B, 1>::from_data(TensorData::new(w, [n]), device)).sum()
        })
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Tensor::zeros([1], device))
}

/// Each float parameter's gradient in visit order, with its module path (as burn-store and
/// the exports spell it: an enum module's variant adds no segment).
struct GradientsOf<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<(String, Option<Option<TensorData>>)>,
    path: Vec<String>,
}

fn is_variant(container: &str) -> bool {
    container.starts_with("Enum:")
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradientsOf<'_, B> {
    fn enter_module(&mut self, name: &str, container: &str) {
        if !is_variant(container) {
            self.path.push(name.to_string());
        }
    }
    fn exit_module(&mut self, _: &str, container: &str) {
        if !is_variant(container) {
            self.path.pop();
        }
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        let grad = tensor
            .is_require_grad()
            .then(|| tensor.grad(self.grads).map(|g| g.into_data()));
        self.out.push((self.path.join("."), grad));
    }
}

/// Each float parameter's value in visit order.
struct ValuesOf(Vec<TensorData>);

impl<B: Backend> ModuleVisitor<B> for ValuesOf {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().into_data());
    }
}
