//! SwinFace's face-analysis part (Qin et al., 2023, `analysis/subnets.py`): the feature
//! attention module (FAM, eleven branches over the concatenated multi-level maps), the eleven
//! task-specific subnets and the 42 output heads, on top of the Swin backbone.
//!
//! SwinFace's released configuration is the one built here: the `all` features (stages 1-3
//! pooled to the last stage's 7x7 grid, plus the last stage), a `split` 3x3 convolution per
//! input part, CBAM channel attention, no spatial attention, max pooling.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::PadMode;

use super::config::{StageGeometry, SwinConfig};
use super::model::Swin;
use crate::kernels::nn::{BatchNorm, Dropout, DropoutConfig, Linear};
use crate::kernels::{contiguous, matmul};
use crate::layers::init_linear;

/// One output head of SwinFace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceHead {
    /// SwinFace's name for it (`task_names` in `subnets.py`).
    pub name: &'static str,
    /// The FAM branch and task-specific subnet it reads.
    pub branch: usize,
    /// Number of outputs (Age regresses one value; Expression has 7 classes in RAF-DB's order:
    /// surprise, fear, disgust, happiness, sadness, anger, neutral; the rest are two-way).
    pub classes: usize,
}

const fn head(name: &'static str, branch: usize, classes: usize) -> FaceHead {
    FaceHead {
        name,
        branch,
        classes,
    }
}

/// SwinFace's 42 heads in the order of its `output_fcs` (grouped by branch).
pub const FACE_HEADS: [FaceHead; 42] = [
    head("Gender", 0, 2),
    head("Age", 1, 1),
    head("Young", 1, 2),
    head("Expression", 2, 7),
    head("Smiling", 2, 2),
    head("Attractive", 3, 2),
    head("Blurry", 3, 2),
    head("Chubby", 3, 2),
    head("Heavy Makeup", 3, 2),
    head("Oval Face", 3, 2),
    head("Pale Skin", 3, 2),
    head("Bald", 4, 2),
    head("Bangs", 4, 2),
    head("Black Hair", 4, 2),
    head("Blond Hair", 4, 2),
    head("Brown Hair", 4, 2),
    head("Gray Hair", 4, 2),
    head("Receding Hairline", 4, 2),
    head("Straight Hair", 4, 2),
    head("Wavy Hair", 4, 2),
    head("Wearing Hat", 4, 2),
    head("Arched Eyebrows", 5, 2),
    head("Bags Under Eyes", 5, 2),
    head("Bushy Eyebrows", 5, 2),
    head("Eyeglasses", 5, 2),
    head("Narrow Eyes", 5, 2),
    head("Big Nose", 6, 2),
    head("Pointy Nose", 6, 2),
    head("High Cheekbones", 7, 2),
    head("Rosy Cheeks", 7, 2),
    head("Wearing Earrings", 7, 2),
    head("Sideburns", 7, 2),
    head("Five O'Clock Shadow", 8, 2),
    head("Big Lips", 8, 2),
    head("Mouth Slightly Open", 8, 2),
    head("Mustache", 8, 2),
    head("Wearing Lipstick", 8, 2),
    head("No Beard", 8, 2),
    head("Double Chin", 9, 2),
    head("Goatee", 9, 2),
    head("Wearing Necklace", 10, 2),
    head("Wearing Necktie", 10, 2),
];

/// Number of FAM branches and task-specific subnets.
const BRANCHES: usize = 11;

/// The face-analysis part's hyper-parameters (SwinFace's `fam_*` settings).
#[derive(Config, Debug, PartialEq)]
pub struct FaceAnalysisConfig {
    /// Output channels of the split convolution, one per input part (stages 1, 2, 3 pooled,
    /// and the last stage): SwinFace's 47, 93, 186, 186; their sum is the feature size (512).
    pub split_channels: Vec<usize>,
    /// Kernel of the split convolutions.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Reduction of CBAM's channel-attention MLP.
    #[config(default = 16)]
    pub reduction_ratio: usize,
    /// Dropout in the task-specific subnets (training only).
    #[config(default = 0.5)]
    pub dropout: f64,
}

/// SwinFace: the backbone and, optionally, the face-analysis heads.
#[derive(Config, Debug, PartialEq)]
pub struct SwinFaceConfig {
    /// The backbone ([`SwinConfig::swinface`]).
    pub backbone: SwinConfig,
    /// The face-analysis part, or none for the embedding alone.
    pub heads: Option<FaceAnalysisConfig>,
}

impl SwinFaceConfig {
    /// Floating-point operations of a forward pass over `batch` faces, counted as
    /// [`SwinConfig::forward_flops`] does, heads included (split convolutions, channel gates,
    /// subnets, output layers).
    pub fn forward_flops(&self, batch: usize) -> u64 {
        let backbone = self.backbone.forward_flops(batch);
        let (Some(heads), Ok(stages)) = (&self.heads, self.backbone.stages()) else {
            return backbone;
        };
        let grid = stages[stages.len() - 1].resolution.pow(2);
        let parts = input_parts(&stages);
        let k2 = heads.kernel_size.pow(2);
        let dim: usize = heads.split_channels.iter().sum();
        let hidden = dim / heads.reduction_ratio.max(1);
        let conv: usize = parts
            .iter()
            .zip(&heads.split_channels)
            .map(|(c_in, c_out)| 2 * grid * c_in * c_out * k2)
            .sum();
        let gate = 2 * 2 * (2 * dim * hidden);
        let subnet = 2 * 2 * dim * dim;
        let outputs: usize = FACE_HEADS.iter().map(|h| 2 * dim * h.classes).sum();
        backbone + (batch * (BRANCHES * (conv + gate + subnet) + outputs)) as u64
    }

    /// SwinFace as released: backbone and heads.
    pub fn swinface() -> Self {
        SwinFaceConfig::new(SwinConfig::swinface())
            .with_heads(Some(FaceAnalysisConfig::new(vec![47, 93, 186, 186])))
    }

    /// The backbone preset `name` ([`SwinConfig::preset`]) with SwinFace's heads when `heads`
    /// (they are defined for the `swinface` backbone only).
    pub fn preset(name: &str, heads: bool) -> crate::Result<Self> {
        match (name, heads) {
            ("swinface", true) => Ok(Self::swinface()),
            (name, false) => Ok(Self::new(SwinConfig::preset(name, 0)?)),
            (name, true) => Err(crate::Error::InvalidConfig {
                model: "swinface",
                reason: format!(
                    "the face-analysis heads are defined for the `swinface` backbone, not `{name}`"
                ),
            }),
        }
    }

    /// Builds the network (random initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<SwinFace<B>> {
        let backbone = self.backbone.init(device)?;
        let heads = match &self.heads {
            Some(config) => Some(config.init(&self.backbone, device)?),
            None => None,
        };
        Ok(SwinFace { backbone, heads })
    }
}

/// One FAM branch: split convolution, channel attention, ReLU, global max pool, BatchNorm1d.
#[derive(Module, Debug)]
pub struct FeatureAttentionNet<B: Backend> {
    /// One convolution per input part (SwinFace's `conv.convs`).
    pub convs: Vec<Conv2d<B>>,
    /// Channel attention, first layer (SwinFace's `channel_attention.mlp.1`).
    pub gate_fc1: Linear<B>,
    /// Channel attention, second layer (`channel_attention.mlp.3`).
    pub gate_fc2: Linear<B>,
    /// The norm of the pooled features (eps 2e-5).
    pub norm: BatchNorm<B>,
}

/// One task-specific subnet: Linear, ReLU, Dropout, Linear, ReLU, Dropout.
#[derive(Module, Debug)]
pub struct TaskSpecificSubnet<B: Backend> {
    /// `feature.0`.
    pub fc1: Linear<B>,
    /// `feature.3`.
    pub fc2: Linear<B>,
    dropout: Dropout,
}

/// The feature attention module: eleven branches (SwinFace's `fam`).
#[derive(Module, Debug)]
pub struct FeatureAttentionModule<B: Backend> {
    /// The branches.
    pub nets: Vec<FeatureAttentionNet<B>>,
}

/// The eleven task-specific subnets (SwinFace's `tss`).
#[derive(Module, Debug)]
pub struct TaskSpecificSubnets<B: Backend> {
    /// The subnets.
    pub nets: Vec<TaskSpecificSubnet<B>>,
}

/// The 42 output heads (SwinFace's `om`), in [`FACE_HEADS`] order.
#[derive(Module, Debug)]
pub struct OutputModule<B: Backend> {
    /// One linear layer per head.
    pub output_fcs: Vec<Linear<B>>,
}

/// SwinFace's face-analysis part, its three checkpoint sections.
#[derive(Module, Debug)]
pub struct FaceAnalysis<B: Backend> {
    /// `state_dict_fam`.
    pub fam: FeatureAttentionModule<B>,
    /// `state_dict_tss`.
    pub tss: TaskSpecificSubnets<B>,
    /// `state_dict_om`.
    pub om: OutputModule<B>,
}

/// SwinFace.
#[derive(Module, Debug)]
pub struct SwinFace<B: Backend> {
    /// The Swin backbone with the face embedding.
    pub backbone: Swin<B>,
    /// The face-analysis heads, when built.
    pub heads: Option<FaceAnalysis<B>>,
}

/// What SwinFace computes for a batch of aligned faces.
#[derive(Debug, Clone)]
pub struct SwinFaceOutput<B: Backend> {
    /// The face embedding `[B, 512]` (SwinFace's `Recognition` output; not L2-normalised).
    pub embedding: Tensor<B, 2>,
    /// Every head's raw output `[B, classes]`, in [`FACE_HEADS`] order, when the heads are built.
    pub heads: Option<Vec<Tensor<B, 2>>>,
}

impl<B: Backend> SwinFaceOutput<B> {
    /// The output of the head named `name` (a [`FACE_HEADS`] name).
    pub fn head(&self, name: &str) -> Option<&Tensor<B, 2>> {
        let i = FACE_HEADS.iter().position(|h| h.name == name)?;
        self.heads.as_ref().map(|heads| &heads[i])
    }

    /// Facial-expression probabilities `[B, 7]` (softmax of the `Expression` head), when the
    /// heads are built.
    pub fn expression_probabilities(&self) -> Option<Tensor<B, 2>> {
        self.head("Expression").map(|t| softmax(t.clone(), 1))
    }
}

impl FaceAnalysisConfig {
    /// Builds the heads for the maps of `backbone`.
    pub fn init<B: Backend>(
        &self,
        backbone: &SwinConfig,
        device: &B::Device,
    ) -> crate::Result<FaceAnalysis<B>> {
        let stages = backbone.stages()?;
        let invalid = |reason: String| crate::Error::InvalidConfig {
            model: "swinface",
            reason,
        };
        if stages.len() < 2 {
            return Err(invalid(
                "the heads need a backbone of two stages or more".into(),
            ));
        }
        let parts = input_parts(&stages);
        if parts.len() != self.split_channels.len() {
            return Err(invalid(format!(
                "{} split channels for {} input parts {parts:?}",
                self.split_channels.len(),
                parts.len()
            )));
        }
        let dim: usize = self.split_channels.iter().sum();
        let hidden = dim / self.reduction_ratio.max(1);
        if hidden == 0 || self.kernel_size.is_multiple_of(2) {
            return Err(invalid(format!(
                "feature size {dim} with reduction {} and kernel {}: need a non-empty gate and an odd kernel",
                self.reduction_ratio, self.kernel_size
            )));
        }
        let k = self.kernel_size;
        let nets = (0..BRANCHES)
            .map(|_| FeatureAttentionNet {
                convs: parts
                    .iter()
                    .zip(&self.split_channels)
                    .map(|(&c_in, &c_out)| {
                        Conv2dConfig::new([c_in, c_out], [k, k])
                            .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                            .with_bias(false)
                            .init(device)
                    })
                    .collect(),
                gate_fc1: init_linear(dim, hidden, true, device),
                gate_fc2: init_linear(hidden, dim, true, device),
                norm: BatchNormConfig::new(dim)
                    .with_epsilon(2e-5)
                    .init(device)
                    .into(),
            })
            .collect();
        let fam = FeatureAttentionModule { nets };
        let nets = (0..BRANCHES)
            .map(|_| TaskSpecificSubnet {
                fc1: init_linear(dim, dim, true, device),
                fc2: init_linear(dim, dim, true, device),
                dropout: DropoutConfig::new(self.dropout).init(),
            })
            .collect();
        let tss = TaskSpecificSubnets { nets };
        let om = OutputModule {
            output_fcs: FACE_HEADS
                .iter()
                .map(|h| init_linear(dim, h.classes, true, device))
                .collect(),
        };
        Ok(FaceAnalysis { fam, tss, om })
    }
}

impl<B: Backend> FeatureAttentionNet<B> {
    /// Multi-level maps, unfolded by [`unfold_same`] (`[B, sum(parts) * k * k, h * w]`), to
    /// pooled features `[B, F]`.
    pub fn forward(&self, columns: Tensor<B, 3>) -> Tensor<B, 2> {
        // Each convolution reads the next run of input channels, as many as its weight takes:
        // a product of its weight `[c_out, c_in * k * k]` with those rows of the columns.
        let mut start = 0;
        let maps = self
            .convs
            .iter()
            .map(|conv| {
                let [c_out, c_in, kh, kw] = conv.weight.dims();
                let rows = c_in * kh * kw;
                let part = columns.clone().narrow(1, start, rows);
                start += rows;
                let weight = conv.weight.val().reshape([1, c_out, rows]);
                matmul(weight, part)
            })
            .collect();
        let flat = Tensor::cat(maps, 1); // [B, F, h * w]
        let [b, f, _] = flat.dims();
        // CBAM channel gate: one MLP on the average- and on the max-pooled features, summed.
        let gate =
            |pooled: Tensor<B, 2>| self.gate_fc2.forward(relu(self.gate_fc1.forward(pooled)));
        let avg = gate(flat.clone().mean_dim(2).reshape([b, f]));
        let max = gate(flat.clone().max_dim(2).reshape([b, f]));
        let scale = sigmoid(avg + max).reshape([b, f, 1]);
        let pooled = relu(flat * scale).max_dim(2).reshape([b, f]);
        self.norm.forward(pooled)
    }
}

/// The columns of a stride-1 `k x k` convolution padded by `k / 2` with zeros (im2col):
/// `[B, C, H, W]` to `[B, C * k * k, H * W]`, row `c * k * k + i * k + j` holding channel `c`
/// shifted by kernel tap `(i, j)`, the order of a `[c_out, C, k, k]` weight's flattening. The
/// branches of the heads share one such unfolding of their input.
fn unfold_same<B: Backend>(x: Tensor<B, 4>, k: usize) -> Tensor<B, 3> {
    let [b, c, h, w] = x.dims();
    let p = k / 2;
    let padded = x.pad([(p, p), (p, p)], PadMode::Constant(0.0));
    let taps = (0..k * k)
        .map(|t| {
            let (i, j) = (t / k, t % k);
            let tap = padded.clone().slice([0..b, 0..c, i..i + h, j..j + w]);
            contiguous(tap).reshape([b, c, 1, h * w])
        })
        .collect();
    Tensor::cat(taps, 2).reshape([b, c * k * k, h * w])
}

impl<B: Backend> TaskSpecificSubnet<B> {
    /// `[B, F]` to `[B, F]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = self.dropout.forward(relu(self.fc1.forward(x)));
        self.dropout.forward(relu(self.fc2.forward(x)))
    }
}

impl<B: Backend> FaceAnalysis<B> {
    /// The backbone's stage maps to every head's output, in [`FACE_HEADS`] order.
    pub fn forward(&self, stages: &[Tensor<B, 4>]) -> Vec<Tensor<B, 2>> {
        let k = self.fam.nets[0].convs[0].weight.dims()[2];
        let columns = unfold_same(multi_level_features(stages), k);
        let features: Vec<Tensor<B, 2>> = self
            .fam
            .nets
            .iter()
            .zip(&self.tss.nets)
            .map(|(fam, tss)| tss.forward(fam.forward(columns.clone())))
            .collect();
        FACE_HEADS
            .iter()
            .zip(&self.om.output_fcs)
            .map(|(h, fc)| fc.forward(features[h.branch].clone()))
            .collect()
    }
}

/// Channels of the heads' input parts: every stage's merged output but the last (the
/// channels of the next stage), then the last stage.
fn input_parts(stages: &[StageGeometry]) -> Vec<usize> {
    let mut parts: Vec<usize> = stages[1..].iter().map(|s| s.dim).collect();
    parts.push(stages[stages.len() - 1].dim);
    parts
}

/// SwinFace's `all` features: every stage's map but the last average-pooled to the last
/// stage's grid (its "local features"), then the last stage's map (its "global features"),
/// concatenated over channels: `[B, 2112, 7, 7]` for SwinFace.
pub fn multi_level_features<B: Backend>(stages: &[Tensor<B, 4>]) -> Tensor<B, 4> {
    let [_, _, fh, fw] = stages[stages.len() - 1].dims();
    // The stage maps are channel-last buffers seen channel-first: copied once in runs (Flex's
    // pooling and concatenation would each copy them element by element).
    let maps = stages
        .iter()
        .map(|map| {
            let [_, _, h, w] = map.dims();
            let kernel = [h / fh, w / fw];
            let map = contiguous(map.clone());
            if kernel == [1, 1] {
                map
            } else {
                avg_pool2d(map, kernel, kernel, [0, 0], true, false)
            }
        })
        .collect();
    Tensor::cat(maps, 1)
}

impl<B: Backend> SwinFace<B> {
    /// Aligned faces `[B, 3, 112, 112]`, normalised as SwinFace expects (RGB,
    /// `(x / 255 - 0.5) / 0.5`), to the embedding and, when built, every head's output.
    pub fn try_forward(&self, faces: Tensor<B, 4>) -> crate::Result<SwinFaceOutput<B>> {
        let out = self.backbone.try_forward(faces)?;
        let heads = self.heads.as_ref().map(|heads| heads.forward(&out.stages));
        Ok(SwinFaceOutput {
            embedding: out.embedding,
            heads,
        })
    }
}
