//! `miga forward`: run one backbone on tensors from a file and write its outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use clap::{Args, ValueEnum};
use miga::backbones::agcn::{Agcn, AgcnConfig, Graph, bones, fuse_scores};
use miga::backbones::tensor_io::{read_tensors, take_tensor, write_tensors};
use miga::device::{BackendTask, DeviceSpec};
use miga::{Error, backbones};

#[derive(Args)]
pub struct ForwardArgs {
    /// The backbone
    #[arg(long, value_enum)]
    arch: Arch,
    /// Skeleton layout: a built-in name (ntu-rgb-d, kinetics, openpose-body25,
    /// imigue-upper-hands, imigue-full) or a graph TOML file
    #[arg(long)]
    graph: String,
    /// Which 2s-AGCN stream to run; `both` adds the fused scores joint + alpha * bone
    #[arg(long, value_enum, default_value = "joint")]
    stream: Stream,
    /// Checkpoint of the stream (the joint stream for `both`): the reference's .pt state_dict
    #[arg(long)]
    weights: PathBuf,
    /// Checkpoint of the bone stream, for `--stream both`
    #[arg(long)]
    bone_weights: Option<PathBuf>,
    /// Weight of the bone scores in the fused scores
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// safetensors file with the joint data (N, C, T, V, M): the tensor `joints`, or its only tensor
    #[arg(long)]
    input: PathBuf,
    /// safetensors file to write: `logits` and `embedding` (and each stream's, for `both`)
    #[arg(long)]
    output: PathBuf,
    /// Device: cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N]
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    /// 2s-AGCN skeleton backbone
    Agcn,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stream {
    Joint,
    Bone,
    Both,
}

pub fn run(args: ForwardArgs) -> Result<(), Error> {
    let Arch::Agcn = args.arch;
    let graph = if Path::new(&args.graph).is_file() {
        Graph::from_toml_file(&args.graph)?
    } else {
        Graph::layout(&args.graph)?
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
    let joints = read_joints(&args.input)?;
    let task = AgcnForward {
        graph,
        stream: args.stream,
        weights: args.weights,
        bone_weights,
        alpha: args.alpha,
        joints,
    };
    let outputs = args.device.run(task)??;
    write_tensors(&args.output, &outputs)?;
    let summary: Vec<String> = outputs
        .iter()
        .map(|(name, data)| format!("{name} {:?}", data.shape.to_vec()))
        .collect();
    println!("wrote {}: {}", args.output.display(), summary.join(", "));
    Ok(())
}

/// The joint tensor of an input file: named `joints`, or the file's only tensor; rank 5 and
/// finite, with the file and the first bad element named otherwise.
fn read_joints(path: &Path) -> Result<TensorData, Error> {
    let mut tensors = read_tensors(path)?;
    let name = if tensors.len() == 1 {
        tensors.keys().next().cloned().unwrap_or_default()
    } else {
        "joints".to_string()
    };
    let data = take_tensor(&mut tensors, &name, path)?;
    let invalid = |reason: String| backbones::Error::TensorFile {
        path: path.to_path_buf(),
        reason,
    };
    if data.shape.len() != 5 {
        return Err(invalid(format!(
            "`{name}` has shape {:?}; 2s-AGCN takes (N, C, T, V, M)",
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
