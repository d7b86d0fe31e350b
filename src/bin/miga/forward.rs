//! `miga forward`: run one backbone on tensors from a file and write its outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use clap::{Args, ValueEnum};
use miga::backbones::agcn::{Agcn, AgcnConfig, Graph, bones, fuse_scores};
use miga::backbones::catalogue::{Backbone, Checkpoint};
use miga::backbones::mvit::MvitConfig;
use miga::backbones::swin::{FACE_HEADS, SwinConfig, SwinFaceConfig};
use miga::datasets::tensors::{read_tensors, take_tensor, write_tensors};
use miga::device::{BackendTask, DeviceSpec, Precision};
use miga::{Error, backbones};

#[derive(Args)]
pub struct ForwardArgs {
    /// The backbone
    #[arg(long, value_enum)]
    arch: Arch,
    /// The network as a JSON file (`MvitConfig`, `SwinFaceConfig` or `SwinConfig`), instead
    /// of the preset `--arch` names (MViT's and Swin's class counts, SwinFace's heads are
    /// still read from the checkpoint)
    #[arg(long)]
    config: Option<PathBuf>,
    /// MViT: also write the final token grid `tokens` (B, T', H', W', C)
    #[arg(long)]
    tokens: bool,
    /// 2s-AGCN: skeleton layout, a built-in name (ntu-rgb-d, kinetics, openpose-body25,
    /// imigue-upper-hands, imigue-full) or a graph TOML file
    #[arg(long, required_if_eq("arch", "agcn"))]
    graph: Option<String>,
    /// Which 2s-AGCN stream to run; `both` adds the fused scores joint + alpha * bone
    #[arg(long, value_enum, default_value = "joint")]
    stream: Stream,
    /// Checkpoint: torchvision's MViT state_dict (.pth or .safetensors), the 2s-AGCN
    /// stream's .pt state_dict (the joint stream for `--stream both`), SwinFace's training
    /// checkpoint (.pt) or a Swin state_dict (timm or Microsoft layout)
    #[arg(long)]
    weights: PathBuf,
    /// Checkpoint of the bone stream, for `--stream both`
    #[arg(long)]
    bone_weights: Option<PathBuf>,
    /// Weight of the bone scores in the fused scores
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// safetensors file with the input: clips (B, 3, T, H, W) named `clips`, joint data
    /// (N, C, T, V, M) named `joints`, or normalised images (B, 3, H, W) named `images`; or
    /// the file's only tensor
    #[arg(long)]
    input: PathBuf,
    /// safetensors file to write: `logits` and `embedding` (and `tokens` on request; each
    /// stream's for `--stream both`); for SwinFace `embedding` and one tensor per head, named
    /// after it (`Expression`, `Age`, ...)
    #[arg(long)]
    output: PathBuf,
    /// Device: cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N]
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Floating-point precision on the GPU backends: f32, f16 or bf16 (f16 and bf16: every
    /// weight, activation and gradient in half precision; docs/backends.md)
    #[arg(long, default_value = "f32")]
    precision: Precision,
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    /// MViTv2-S video backbone (torchvision's mvit_v2_s); the clip size is the input's
    #[value(name = "mvit_v2_s")]
    MvitV2S,
    /// MViTv2-B video backbone (the paper's B layout)
    #[value(name = "mvit_v2_b")]
    MvitV2B,
    /// 2s-AGCN skeleton backbone
    Agcn,
    /// SwinFace on aligned 112x112 faces (B, 3, 112, 112): the 512-d embedding and, when the
    /// checkpoint has them, its 42 face-analysis heads
    Swinface,
    /// timm's swin_tiny_patch4_window7_224 on 224x224 images: logits and pooled features
    #[value(name = "swin_t")]
    SwinT,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stream {
    Joint,
    Bone,
    Both,
}

pub fn run(args: ForwardArgs) -> Result<(), Error> {
    let outputs = match args.arch {
        Arch::Agcn => agcn(&args)?,
        Arch::MvitV2S => mvit(&args, "mvit_v2_s")?,
        Arch::MvitV2B => mvit(&args, "mvit_v2_b")?,
        Arch::Swinface | Arch::SwinT => swin(&args)?,
    };
    // Written as f32 whatever the precision computed in.
    let outputs = outputs
        .into_iter()
        .map(|(name, data)| (name, data.convert::<f32>()))
        .collect();
    write_tensors(&args.output, &outputs)?;
    let summary: Vec<String> = outputs
        .iter()
        .map(|(name, data)| format!("{name} {:?}", data.shape.to_vec()))
        .collect();
    println!("wrote {}: {}", args.output.display(), summary.join(", "));
    Ok(())
}

fn agcn(args: &ForwardArgs) -> Result<BTreeMap<String, TensorData>, Error> {
    let graph = args.graph.as_deref().unwrap_or_default();
    let graph = if Path::new(graph).is_file() {
        Graph::from_toml_file(graph)?
    } else {
        Graph::layout(graph)?
    };
    let bone_weights = match (args.stream, &args.bone_weights) {
        (Stream::Both, None) => {
            return Err(backbones::Error::InvalidInput {
                model: "agcn",
                reason: "--stream both needs --bone-weights with the bone stream's checkpoint"
                    .into(),
            }
            .into());
        }
        (_, weights) => weights.clone(),
    };
    let joints = read_input(&args.input, "joints", 5, "2s-AGCN takes (N, C, T, V, M)")?;
    let task = AgcnForward {
        graph,
        stream: args.stream,
        weights: args.weights.clone(),
        bone_weights,
        alpha: args.alpha,
        joints,
    };
    args.device.with_precision(args.precision).run(task)?
}

fn mvit(args: &ForwardArgs, preset: &str) -> Result<BTreeMap<String, TensorData>, Error> {
    let clips = read_input(&args.input, "clips", 5, "MViT takes clips (B, 3, T, H, W)")?;
    let config = match &args.config {
        Some(path) => load_config(path, "mvit")?,
        None => {
            let [_, _, t, h, w] = clips.shape.dims::<5>();
            let classes = Checkpoint::head_classes(&args.weights, Backbone::Mvit, preset, 400)?;
            MvitConfig::preset(preset, classes)?
                .with_temporal_size(t)
                .with_spatial_size([h, w])
        }
    };
    let task = MvitForward {
        config,
        weights: args.weights.clone(),
        clips,
        tokens: args.tokens,
    };
    args.device.with_precision(args.precision).run(task)?
}

fn swin(args: &ForwardArgs) -> Result<BTreeMap<String, TensorData>, Error> {
    let images = read_input(
        &args.input,
        "images",
        4,
        "Swin takes normalised images (B, 3, H, W)",
    )?;
    let config = match (&args.config, args.arch) {
        (Some(path), Arch::Swinface) => SwinNet::Face(load_config(path, "swin")?),
        (Some(path), _) => SwinNet::Plain(load_config(path, "swin")?),
        (None, Arch::Swinface) => {
            Checkpoint::head_classes(&args.weights, Backbone::Swin, "swinface", 0)?;
            SwinNet::Face(SwinFaceConfig::swinface())
        }
        (None, _) => SwinNet::Plain(SwinConfig::swin_t(Checkpoint::head_classes(
            &args.weights,
            Backbone::Swin,
            "swin_t",
            1000,
        )?)),
    };
    let task = SwinForward {
        config,
        weights: args.weights.clone(),
        images,
    };
    args.device.with_precision(args.precision).run(task)?
}

/// A network configuration from a `--config` JSON file, its errors naming the file.
fn load_config<C: Config>(path: &Path, model: &'static str) -> Result<C, backbones::Error> {
    C::load(path).map_err(|e| backbones::Error::InvalidConfig {
        model,
        reason: format!("{}: {e}", path.display()),
    })
}

/// The input tensor of a file: named `name`, or the file's only tensor; of `rank` and finite,
/// with the file and the first bad element named otherwise (`expected` says what it should be).
fn read_input(path: &Path, name: &str, rank: usize, expected: &str) -> Result<TensorData, Error> {
    let mut tensors = read_tensors(path)?;
    let name = if tensors.len() == 1 {
        tensors.keys().next().cloned().unwrap_or_default()
    } else {
        name.to_string()
    };
    let data = take_tensor(&mut tensors, &name, path)?;
    let invalid = |reason: String| miga::datasets::Error::TensorFile {
        path: path.to_path_buf(),
        reason,
    };
    if data.shape.len() != rank {
        return Err(invalid(format!(
            "`{name}` has shape {:?}; {expected}",
            data.shape.to_vec()
        ))
        .into());
    }
    let values = data
        .to_vec::<f32>()
        .map_err(|e| invalid(format!("`{name}`: {e:?}")))?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!("`{name}` has {} at flat index {i}", values[i])).into());
    }
    Ok(data)
}

struct AgcnForward {
    graph: Graph,
    stream: Stream,
    weights: PathBuf,
    bone_weights: Option<PathBuf>,
    alpha: f64,
    joints: TensorData,
}

impl BackendTask for AgcnForward {
    type Output = Result<BTreeMap<String, TensorData>, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let load = |path: &Path| -> Result<Agcn<B>, Error> {
            Ok(AgcnConfig::load::<B>(path, self.graph.clone(), &device)?)
        };
        let joints = Tensor::<B, 5>::from_data(self.joints, &device);
        let mut out = BTreeMap::new();
        let mut put = |name: &str, t: Tensor<B, 2>| out.insert(name.to_string(), t.into_data());
        match self.stream {
            Stream::Joint => {
                let y = load(&self.weights)?.try_forward(joints)?;
                put("logits", y.logits);
                put("embedding", y.embedding);
            }
            Stream::Bone => {
                let y = load(&self.weights)?.try_forward(bones(joints, &self.graph))?;
                put("logits", y.logits);
                put("embedding", y.embedding);
            }
            Stream::Both => {
                let bone_path = self.bone_weights.as_deref().unwrap_or(&self.weights);
                let j = load(&self.weights)?.try_forward(joints.clone())?;
                let b = load(bone_path)?.try_forward(bones(joints, &self.graph))?;
                put(
                    "logits",
                    fuse_scores(j.logits.clone(), b.logits.clone(), self.alpha),
                );
                put("joint_logits", j.logits);
                put("joint_embedding", j.embedding);
                put("bone_logits", b.logits);
                put("bone_embedding", b.embedding);
            }
        }
        Ok(out)
    }
}

struct MvitForward {
    config: MvitConfig,
    weights: PathBuf,
    clips: TensorData,
    tokens: bool,
}

impl BackendTask for MvitForward {
    type Output = Result<BTreeMap<String, TensorData>, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let model = self.config.load_checkpoint::<B>(&self.weights, &device)?;
        let y = model.try_forward(Tensor::<B, 5>::from_data(self.clips, &device))?;
        let mut out = BTreeMap::new();
        out.insert("logits".to_string(), y.logits.into_data());
        out.insert("embedding".to_string(), y.embedding.into_data());
        if self.tokens {
            out.insert("tokens".to_string(), y.tokens.into_data());
        }
        Ok(out)
    }
}

enum SwinNet {
    Face(SwinFaceConfig),
    Plain(SwinConfig),
}

struct SwinForward {
    config: SwinNet,
    weights: PathBuf,
    images: TensorData,
}

impl BackendTask for SwinForward {
    type Output = Result<BTreeMap<String, TensorData>, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let images = Tensor::<B, 4>::from_data(self.images, &device);
        let mut out = BTreeMap::new();
        match self.config {
            SwinNet::Face(base) => {
                let config = SwinFaceConfig::from_checkpoint(&self.weights, base)?;
                if config.heads.is_none() {
                    tracing::info!(
                        "note: {} has no face-analysis heads; writing the embedding alone",
                        self.weights.display()
                    );
                }
                let y = config
                    .load_checkpoint::<B>(&self.weights, &device)?
                    .try_forward(images)?;
                out.insert("embedding".to_string(), y.embedding.into_data());
                for (head, value) in FACE_HEADS.iter().zip(y.heads.unwrap_or_default()) {
                    out.insert(head.name.to_string(), value.into_data());
                }
            }
            SwinNet::Plain(config) => {
                let y = config
                    .load_checkpoint::<B>(&self.weights, &device)?
                    .try_forward(images)?;
                if let Some(logits) = y.logits {
                    out.insert("logits".to_string(), logits.into_data());
                }
                out.insert("embedding".to_string(), y.embedding.into_data());
            }
        }
        Ok(out)
    }
}
