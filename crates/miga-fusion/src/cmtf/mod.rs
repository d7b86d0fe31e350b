//! Cross-Modal Token Fusion: video tokens (MViTv2) and skeleton tokens (2s-AGCN) fused into one
//! micro-gesture prediction. The design choices are documented in docs/models/fusion.md.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use miga_kernels::nn::{Dropout, DropoutConfig, LayerNorm, Linear};

use crate::AttentionMap;
use crate::check::{check_finite, check_padding, check_some_token, check_tokens, invalid};
use crate::layers::{
    Stream, embed_steps, embedding, grid_regions, masked_mean, modality_dropout, norm_layer,
    pool_regions,
};
use crate::loss::ClassificationLoss;
use crate::names::PyTorchNames;

mod io;
mod layers;

pub use io::{CmtfInput, CmtfOutput, SkeletonTokens, VideoTokens};
pub use layers::{CmtfLayers, CrossLayers, JointLayers};

const MODULE: &str = "cmtf";

/// How the two token sets meet.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum CmtfVariant {
    /// Per-modality self-attention, bidirectional cross-attention and feed-forward per layer.
    Cross,
    /// Both token sets and a [CLS] token concatenated through a plain transformer encoder.
    Joint,
}

/// Configuration of [`Cmtf`]; every default is documented in docs/models/fusion.md.
#[derive(Config, Debug)]
pub struct CmtfConfig {
    /// Width of the video tokens (MViTv2-S: 768).
    #[config(default = 768)]
    pub video_dim: usize,
    /// Width of the skeleton tokens (2s-AGCN: 256).
    #[config(default = 256)]
    pub skeleton_dim: usize,
    /// Classes (iMiGUE: 32).
    #[config(default = 32)]
    pub num_classes: usize,
    /// Fusion width.
    #[config(default = 256)]
    pub d_model: usize,
    /// Attention heads.
    #[config(default = 8)]
    pub heads: usize,
    /// Fusion layers.
    #[config(default = 2)]
    pub layers: usize,
    /// Feed-forward hidden width.
    #[config(default = 1024)]
    pub ff_dim: usize,
    /// Dropout on residual branches and before the heads.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Cross-attention blocks or one joint encoder.
    #[config(default = "CmtfVariant::Cross")]
    pub variant: CmtfVariant,
    /// Video tokens per time step: the spatial token grid is average-pooled to
    /// `video_grid x video_grid` cells (1: one token per time step).
    #[config(default = 1)]
    pub video_grid: usize,
    /// Adds the video class embedding as one more video token (then every input must have it).
    #[config(default = true)]
    pub video_class_token: bool,
    /// Skeleton tokens per time step: each list is a body part (joint indices of the skeleton
    /// graph) averaged to one token. Empty: one token per time step, averaged over all joints.
    #[config(default = "Vec::new()")]
    pub skeleton_parts: Vec<Vec<usize>>,
    /// Scale of the shared clock: the time code is the transformer code at position
    /// `clock_scale * t` for normalised time `t` in (0, 1).
    #[config(default = 64.0)]
    pub clock_scale: f64,
    /// In training, each modality of a sample is dropped with this probability (never both:
    /// at most 0.5), so the model keeps working with one stream missing.
    #[config(default = 0.2)]
    pub modality_dropout: f64,
    /// Weight of each auxiliary per-modality loss in [`Cmtf::loss`].
    #[config(default = 0.5)]
    pub aux_loss_weight: f64,
}

/// Cross-Modal Token Fusion.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{Distribution, Tensor};
/// use miga_fusion::{CmtfConfig, CmtfInput, SkeletonTokens, VideoTokens};
///
/// let device = Default::default();
/// let config = CmtfConfig::new().with_video_dim(24).with_skeleton_dim(16).with_d_model(32).with_heads(4).with_ff_dim(64);
/// let model = config.init::<Flex>(&device)?;
/// let video = Tensor::random([2, 8, 7, 7, 24], Distribution::Default, &device);
/// let class = Tensor::random([2, 24], Distribution::Default, &device);
/// let skeleton = Tensor::random([2, 16, 55, 16], Distribution::Default, &device);
/// let out = model.try_forward(CmtfInput {
///     video: Some(VideoTokens::new(video, Some(class))),
///     skeleton: Some(SkeletonTokens::new(skeleton)),
/// })?;
/// assert_eq!(out.logits.dims(), [2, 32]);
/// # Ok::<(), miga_fusion::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct Cmtf<B: Backend> {
    /// Video token projection `video_dim -> d_model` (also applied to the class embedding).
    pub video_projection: Linear<B>,
    /// Skeleton token projection `skeleton_dim -> d_model`.
    pub skeleton_projection: Linear<B>,
    /// Modality embeddings `[2, d_model]`: video, skeleton.
    pub modality: Param<Tensor<B, 2>>,
    /// Embedding of the video class token `[d_model]` (with `video_class_token`).
    pub video_class: Option<Param<Tensor<B, 1>>>,
    /// Embeddings of the video grid cells `[video_grid^2, d_model]` (grid larger than 1).
    pub video_cells: Option<Param<Tensor<B, 2>>>,
    /// Embeddings of the body parts `[parts, d_model]` (more than one part).
    pub skeleton_parts: Option<Param<Tensor<B, 2>>>,
    /// The fusion layers, of the configured variant.
    pub layers: CmtfLayers<B>,
    /// Final norm of the video tokens.
    pub video_norm: LayerNorm<B>,
    /// Final norm of the skeleton tokens.
    pub skeleton_norm: LayerNorm<B>,
    /// Norm of the fused embedding.
    pub fused_norm: LayerNorm<B>,
    /// Fused classifier.
    pub head: Linear<B>,
    /// Auxiliary video classifier.
    pub video_head: Linear<B>,
    /// Auxiliary skeleton classifier.
    pub skeleton_head: Linear<B>,
    dropout: Dropout,
    #[module(skip)]
    settings: Settings,
}

/// The non-learned parts of the configuration the forward needs.
#[derive(Debug, Clone)]
struct Settings {
    video_dim: usize,
    skeleton_dim: usize,
    video_grid: usize,
    skeleton_parts: Vec<Vec<usize>>,
    clock_scale: f64,
    modality_dropout: f64,
    aux_loss_weight: f64,
}

impl CmtfConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |reason: String| crate::Error::InvalidConfig {
            module: MODULE,
            reason,
        };
        crate::validate_widths(MODULE, self.d_model, self.heads, self.ff_dim, self.dropout)?;
        for (name, value) in [
            ("video_dim", self.video_dim),
            ("skeleton_dim", self.skeleton_dim),
            ("num_classes", self.num_classes),
            ("video_grid", self.video_grid),
        ] {
            if value == 0 {
                return Err(invalid(format!("{name} is 0")));
            }
        }
        for (i, part) in self.skeleton_parts.iter().enumerate() {
            let mut joints = part.clone();
            joints.sort_unstable();
            joints.dedup();
            if joints.is_empty() || joints.len() != part.len() {
                return Err(invalid(format!(
                    "skeleton part {i} {part:?} is empty or names a joint twice"
                )));
            }
        }
        if !(0.0..=0.5).contains(&self.modality_dropout) {
            return Err(invalid(format!(
                "modality_dropout {} is outside [0, 0.5]",
                self.modality_dropout
            )));
        }
        if self.aux_loss_weight.is_nan()
            || self.aux_loss_weight < 0.0
            || !self.clock_scale.is_finite()
        {
            return Err(invalid(
                "aux_loss_weight must be at least 0 and clock_scale finite".into(),
            ));
        }
        Ok(())
    }

    /// Floating-point operations of one forward pass (matrix products and token pooling;
    /// norms and softmax left out) for `batch` samples of `video` `[T', H', W']` and `skeleton`
    /// `[T'', V]` tokens. The count `miga bench` and `scripts/bench_pytorch.py` report.
    pub fn forward_flops(&self, batch: usize, video: [usize; 3], skeleton: [usize; 2]) -> u64 {
        use crate::{attention_flops as att, feed_forward_flops as ff};
        let (d, f) = (self.d_model, self.ff_dim);
        let [tv, h, w] = video;
        let [ts, joints] = skeleton;
        let nv = tv * self.video_grid * self.video_grid + usize::from(self.video_class_token);
        let ns = ts * self.skeleton_parts.len().max(1);
        let pooling = (tv * h * w * self.video_dim + ts * joints * self.skeleton_dim) as u64;
        let projections = (2 * (nv * self.video_dim + ns * self.skeleton_dim) * d) as u64;
        let layer = match self.variant {
            CmtfVariant::Cross => {
                att(nv, nv, d)
                    + att(ns, ns, d)
                    + att(nv, ns, d)
                    + att(ns, nv, d)
                    + ff(nv, d, f)
                    + ff(ns, d, f)
            }
            CmtfVariant::Joint => att(1 + nv + ns, 1 + nv + ns, d) + ff(1 + nv + ns, d, f),
        };
        let heads = (2 * (self.fused_width() + 2 * d) * self.num_classes) as u64;
        batch as u64 * (pooling + projections + self.layers as u64 * layer + heads)
    }

    /// The joint lists averaged to the skeleton tokens of one time step, for a graph of
    /// `joints` joints: `skeleton_parts`, or all joints as one part when it is empty.
    pub fn skeleton_regions(&self, joints: usize) -> Vec<Vec<usize>> {
        if self.skeleton_parts.is_empty() {
            vec![(0..joints).collect()]
        } else {
            self.skeleton_parts.clone()
        }
    }

    /// Width of the fused embedding: both pooled streams side by side (cross variant), or the
    /// [CLS] token (joint variant).
    pub fn fused_width(&self) -> usize {
        match self.variant {
            CmtfVariant::Cross => 2 * self.d_model,
            CmtfVariant::Joint => self.d_model,
        }
    }

    /// Builds the module after [`CmtfConfig::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<Cmtf<B>> {
        self.validate()?;
        let d = self.d_model;
        let head = |width: usize| {
            LinearConfig::new(width, self.num_classes)
                .init(device)
                .into()
        };
        let fused = self.fused_width();
        let cells = self.video_grid * self.video_grid;
        Ok(Cmtf {
            video_projection: LinearConfig::new(self.video_dim, d).init(device).into(),
            skeleton_projection: LinearConfig::new(self.skeleton_dim, d).init(device).into(),
            modality: embedding([2, d], device),
            video_class: self.video_class_token.then(|| embedding([d], device)),
            video_cells: (cells > 1).then(|| embedding([cells, d], device)),
            skeleton_parts: (self.skeleton_parts.len() > 1)
                .then(|| embedding([self.skeleton_parts.len(), d], device)),
            layers: self.fusion_layers(device),
            video_norm: norm_layer(d, device),
            skeleton_norm: norm_layer(d, device),
            fused_norm: norm_layer(fused, device),
            head: head(fused),
            video_head: head(d),
            skeleton_head: head(d),
            dropout: DropoutConfig::new(self.dropout).init(),
            settings: Settings {
                video_dim: self.video_dim,
                skeleton_dim: self.skeleton_dim,
                video_grid: self.video_grid,
                skeleton_parts: self.skeleton_parts.clone(),
                clock_scale: self.clock_scale,
                modality_dropout: self.modality_dropout,
                aux_loss_weight: self.aux_loss_weight,
            },
        })
    }
}

impl<B: Backend> Cmtf<B> {
    /// Checks the shapes of `input` against the configuration (no data is read).
    pub fn check_input(&self, input: &CmtfInput<B>) -> crate::Result<()> {
        let s = &self.settings;
        let batch = match (&input.video, &input.skeleton) {
            (Some(v), _) => v.tokens.dims()[0],
            (None, Some(k)) => k.tokens.dims()[0],
            (None, None) => {
                return Err(invalid(
                    MODULE,
                    "video, skeleton",
                    "neither video nor skeleton tokens were given".into(),
                ));
            }
        };
        if let Some(v) = &input.video {
            let dims = v.tokens.dims();
            check_tokens(MODULE, "video tokens", dims, batch, s.video_dim)?;
            check_padding(
                MODULE,
                "video padding",
                v.padding.as_ref(),
                [batch, dims[1]],
            )?;
            if s.video_grid > dims[2].min(dims[3]) {
                return Err(invalid(
                    MODULE,
                    "video tokens",
                    format!(
                        "a {}x{} token grid cannot be pooled to {}x{} cells",
                        dims[2], dims[3], s.video_grid, s.video_grid
                    ),
                ));
            }
            match (&v.class_embedding, self.video_class.is_some()) {
                (Some(c), true) => check_tokens(
                    MODULE,
                    "video class embedding",
                    c.dims(),
                    batch,
                    s.video_dim,
                )?,
                (None, true) => {
                    return Err(invalid(
                        MODULE,
                        "video class embedding",
                        "missing; the configuration has video_class_token set".into(),
                    ));
                }
                (_, false) => {}
            }
        }
        if let Some(k) = &input.skeleton {
            let dims = k.tokens.dims();
            check_tokens(MODULE, "skeleton tokens", dims, batch, s.skeleton_dim)?;
            check_padding(
                MODULE,
                "skeleton padding",
                k.padding.as_ref(),
                [batch, dims[1]],
            )?;
            let parts = s.skeleton_parts.len().max(1);
            if k.pooled && dims[2] != parts {
                return Err(invalid(
                    MODULE,
                    "skeleton tokens",
                    format!("{} pooled tokens a step, but {parts} body parts", dims[2]),
                ));
            }
            if !k.pooled
                && let Some(j) = s.skeleton_parts.iter().flatten().find(|&&j| j >= dims[2])
            {
                return Err(invalid(
                    MODULE,
                    "skeleton tokens",
                    format!("{} joints, but skeleton_parts names joint {j}", dims[2]),
                ));
            }
        }
        Ok(())
    }

    /// Runs the fusion after checking shapes, finite values and that every sample has at
    /// least one valid token (reads the inputs back from the device).
    pub fn try_forward(&self, input: CmtfInput<B>) -> crate::Result<CmtfOutput<B>> {
        self.check_input(&input)?;
        if let Some(v) = &input.video {
            check_finite(MODULE, "video tokens", &v.tokens)?;
            if let Some(c) = &v.class_embedding {
                check_finite(MODULE, "video class embedding", c)?;
            }
        }
        if let Some(k) = &input.skeleton {
            check_finite(MODULE, "skeleton tokens", &k.tokens)?;
        }
        check_some_token(
            MODULE,
            &[
                input.video.as_ref().map(|v| v.padding.as_ref()),
                input.skeleton.as_ref().map(|k| k.padding.as_ref()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        )?;
        Ok(self.run(input, false).0)
    }

    /// Runs the fusion. Panics on shapes [`Cmtf::check_input`] refuses. A sample with no
    /// valid token at all gets finite scores that carry no information
    /// ([`Cmtf::try_forward`] refuses it).
    pub fn forward(&self, input: CmtfInput<B>) -> CmtfOutput<B> {
        if let Err(e) = self.check_input(&input) {
            panic!("{e}");
        }
        self.run(input, false).0
    }

    /// [`Cmtf::forward`] that also returns every attention map, layer by layer.
    ///
    /// Cross variant: `video self`, `skeleton self`, `video->skeleton`, `skeleton->video`;
    /// joint variant: `joint self` over `[CLS, video tokens, skeleton tokens]`. Video tokens are
    /// `[class token,] time-major grid cells`, skeleton tokens time-major parts.
    pub fn forward_with_attention(
        &self,
        input: CmtfInput<B>,
    ) -> crate::Result<(CmtfOutput<B>, Vec<AttentionMap<B>>)> {
        self.check_input(&input)?;
        Ok(self.run(input, true))
    }

    /// Fused loss plus `aux_loss_weight` times each auxiliary loss over the samples that have
    /// that modality; `targets` `[B]` are class indices.
    pub fn loss(
        &self,
        output: &CmtfOutput<B>,
        targets: Tensor<B, 1, Int>,
        loss: &ClassificationLoss<B>,
    ) -> Tensor<B, 1> {
        let fused = loss.forward(output.logits.clone(), targets.clone(), None);
        let w = self.settings.aux_loss_weight;
        if w == 0.0 {
            return fused;
        }
        let aux = |logits: &Tensor<B, 2>, present: &Tensor<B, 1, Bool>| {
            loss.forward(
                logits.clone(),
                targets.clone(),
                Some(present.clone().float()),
            )
        };
        fused
            + (aux(&output.video_logits, &output.video_present)
                + aux(&output.skeleton_logits, &output.skeleton_present))
                * w
    }

    /// Classes of the heads.
    pub fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// The names of this module's parameters in its PyTorch twin and in exports: the layers
    /// are `cross_layers`, or `cls` and `joint_layers` (see [`PyTorchNames`]).
    pub fn pytorch_names(&self) -> PyTorchNames {
        match self.layers {
            CmtfLayers::Cross(_) => PyTorchNames::new([("cross_layers", "layers.blocks")]),
            CmtfLayers::Joint(_) => {
                PyTorchNames::new([("cls", "layers.cls"), ("joint_layers", "layers.blocks")])
            }
        }
    }

    /// Pools tokens `[B, T, N, C]` over `regions` of the N per-step tokens (empty: one mean
    /// over all; `None`: the tokens are the regions already), projects them and adds the
    /// `modality` embedding, the regions' own embeddings and the clock.
    fn region_stream(
        &self,
        tokens: Tensor<B, 4>,
        regions: Option<&[Vec<usize>]>,
        projection: &Linear<B>,
        region_embedding: &Option<Param<Tensor<B, 2>>>,
        modality: usize,
        padding: Tensor<B, 2, Bool>,
    ) -> Stream<B> {
        let [b, t, n, c] = tokens.dims();
        let flat = tokens.reshape([b * t, n, c]);
        let pooled = match regions {
            None => flat,
            Some([]) => flat.mean_dim(1),
            Some(regions) => pool_regions(flat, regions),
        };
        let r = pooled.dims()[1];
        let modality = self.modality.val().narrow(0, modality, 1);
        let embedding = match region_embedding {
            Some(e) => e.val() + modality,
            None => modality,
        };
        embed_steps(
            projection,
            pooled.reshape([b, t, r, c]),
            padding,
            embedding,
            self.settings.clock_scale,
        )
    }

    /// The video stream: grid cells per step, then the class token first.
    fn video_stream(&self, v: VideoTokens<B>, padding: Tensor<B, 2, Bool>) -> Stream<B> {
        let [b, t, h, w, c] = v.tokens.dims();
        let k = self.settings.video_grid;
        // A k x k grid is its own pooling.
        let cells = if (h, w) == (k, k) {
            None
        } else if k == 1 {
            Some(Vec::new())
        } else {
            Some(grid_regions(h, w, k))
        };
        let stream = self.region_stream(
            v.tokens.reshape([b, t, h * w, c]),
            cells.as_deref(),
            &self.video_projection,
            &self.video_cells,
            0,
            padding.clone(),
        );
        match (v.class_embedding, &self.video_class) {
            (Some(class), Some(e)) => {
                let d = e.dims()[0];
                let token = self.video_projection.forward(class)
                    + e.val().reshape([1, d])
                    + self.modality.val().narrow(0, 0, 1);
                Stream {
                    tokens: Tensor::cat(vec![token.reshape([b, 1, d]), stream.tokens], 1),
                    padding: Tensor::cat(vec![padding.all_dim(1), stream.padding], 1),
                }
            }
            _ => stream,
        }
    }

    fn run(&self, input: CmtfInput<B>, weights: bool) -> (CmtfOutput<B>, Vec<AttentionMap<B>>) {
        let device = self.head.weight.device();
        let d = self.modality.dims()[1];
        let b = input
            .video
            .as_ref()
            .map(|v| v.tokens.dims()[0])
            .or(input.skeleton.as_ref().map(|k| k.tokens.dims()[0]))
            .expect("checked: one modality is given");
        // Time-step paddings, then modality dropout on them.
        let step_padding =
            |padding, dims: &[usize]| Stream::padding_or_none(padding, [b, dims[1]], &device);
        let (video, skeleton) = (input.video, input.skeleton);
        let pv = video
            .as_ref()
            .map(|v| step_padding(v.padding.clone(), &v.tokens.dims()));
        let ps = skeleton
            .as_ref()
            .map(|k| step_padding(k.padding.clone(), &k.tokens.dims()));
        let (pv, ps) = match (pv, ps) {
            (Some(a), Some(c)) => {
                let (a, c) = modality_dropout(a, c, self.settings.modality_dropout);
                (Some(a), Some(c))
            }
            other => other,
        };
        let v = match (video, pv) {
            (Some(video), Some(p)) => self.video_stream(video, p),
            _ => Stream::absent(b, d, &device),
        };
        let s = match (skeleton, ps) {
            (Some(skeleton), Some(p)) => self.region_stream(
                skeleton.tokens,
                (!skeleton.pooled).then_some(&self.settings.skeleton_parts[..]),
                &self.skeleton_projection,
                &self.skeleton_parts,
                1,
                p,
            ),
            _ => Stream::absent(b, d, &device),
        };
        let mut maps = Vec::new();
        let (v, s, fused) = self.layers.forward(v, s, weights, &mut maps);
        let (zv, video_present) = masked_mean(self.video_norm.forward(v.tokens), v.padding);
        let (zs, skeleton_present) = masked_mean(self.skeleton_norm.forward(s.tokens), s.padding);
        let fused = fused.unwrap_or_else(|| {
            let (av, as_) = (
                video_present.clone().float().reshape([b, 1]),
                skeleton_present.clone().float().reshape([b, 1]),
            );
            Tensor::cat(vec![zv.clone() * av, zs.clone() * as_], 1)
        });
        let embedding = self.fused_norm.forward(fused);
        let head = |h: &Linear<B>, x: Tensor<B, 2>| h.forward(self.dropout.forward(x));
        (
            CmtfOutput {
                logits: head(&self.head, embedding.clone()),
                embedding,
                video_logits: head(&self.video_head, zv),
                skeleton_logits: head(&self.skeleton_head, zs),
                video_present,
                skeleton_present,
            },
            maps,
        )
    }
}
#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::{Distribution, TensorData};

    use super::*;
    use crate::ClassificationLossConfig;
    use crate::testing::{all_finite, assert_every_param_learns, max_diff, tail_padding};

    type B = Flex;
    type A = Autodiff<Flex>;

    const VIDEO: [usize; 5] = [3, 4, 3, 3, 12];
    const SKELETON: [usize; 4] = [3, 6, 5, 10];

    fn config(variant: CmtfVariant) -> CmtfConfig {
        CmtfConfig::new()
            .with_video_dim(12)
            .with_skeleton_dim(10)
            .with_num_classes(5)
            .with_d_model(16)
            .with_heads(2)
            .with_ff_dim(32)
            .with_variant(variant)
    }

    /// The configurations worth running every test on: both variants, with and without grids
    /// and parts.
    fn configs() -> Vec<CmtfConfig> {
        vec![
            config(CmtfVariant::Cross),
            config(CmtfVariant::Joint),
            config(CmtfVariant::Cross)
                .with_video_grid(2)
                .with_skeleton_parts(vec![vec![0, 1], vec![2, 3, 4]]),
            config(CmtfVariant::Joint)
                .with_video_grid(2)
                .with_video_class_token(false)
                .with_skeleton_parts(vec![vec![4]]),
        ]
    }

    fn input<Bk: Backend>(device: &Bk::Device) -> CmtfInput<Bk> {
        let x = |shape: &[usize], seed: u64| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            TensorData::new(data, shape.to_vec())
        };
        CmtfInput {
            video: Some(VideoTokens::new(
                Tensor::from_data(x(&VIDEO, 1), device),
                Some(Tensor::from_data(x(&[3, 12], 2), device)),
            )),
            skeleton: Some(SkeletonTokens::new(Tensor::from_data(
                x(&SKELETON, 3),
                device,
            ))),
        }
    }

    #[test]
    fn output_shapes() {
        let device = Default::default();
        for config in configs() {
            let model = config.init::<B>(&device).unwrap();
            let (out, maps) = model.forward_with_attention(input(&device)).unwrap();
            assert_eq!(out.logits.dims(), [3, 5]);
            assert_eq!(out.embedding.dims(), [3, config.fused_width()]);
            assert_eq!(out.video_logits.dims(), [3, 5]);
            assert_eq!(out.skeleton_logits.dims(), [3, 5]);
            let per_layer = if config.variant == CmtfVariant::Cross {
                4
            } else {
                1
            };
            assert_eq!(maps.len(), 2 * per_layer);
            let k = config.video_grid * config.video_grid;
            let nv = 4 * k + usize::from(config.video_class_token);
            let ns = 6 * config.skeleton_parts.len().max(1);
            let expected = match config.variant {
                CmtfVariant::Cross => [3, 2, nv, ns],
                CmtfVariant::Joint => [3, 2, 1 + nv + ns, 1 + nv + ns],
            };
            let map = maps
                .iter()
                .find(|m| m.name != "video self" && m.name != "skeleton self");
            assert_eq!(map.unwrap().weights.dims(), expected, "{config}");
        }
    }

    #[test]
    fn tokens_pooled_beforehand_give_the_same_answer() {
        let device = Default::default();
        for config in configs() {
            let model = config.init::<B>(&device).unwrap();
            let full = input::<B>(&device);
            let mut pooled = full.clone();
            // Video to its k x k grid, skeleton to its parts, averaged here.
            let k = config.video_grid;
            let v = pooled.video.as_mut().unwrap();
            let [b, t, h, w, c] = VIDEO;
            let cells = if k == 1 {
                vec![(0..h * w).collect()]
            } else {
                grid_regions(h, w, k)
            };
            v.tokens = pool_regions(v.tokens.clone().reshape([b * t, h * w, c]), &cells)
                .reshape([b, t, k, k, c]);
            let s = pooled.skeleton.take().unwrap();
            let [b, t, n, c] = SKELETON;
            let regions = config.skeleton_regions(n);
            let tokens = pool_regions(s.tokens.reshape([b * t, n, c]), &regions);
            pooled.skeleton = Some(SkeletonTokens::pooled(tokens.reshape([
                b,
                t,
                regions.len(),
                c,
            ])));
            let (a, p) = (model.forward(full), model.try_forward(pooled).unwrap());
            assert!(max_diff(a.logits, p.logits) < 1e-5, "{config}");
            assert!(
                max_diff(a.skeleton_logits, p.skeleton_logits) < 1e-5,
                "{config}"
            );
        }
        // Pooled tokens that are not one a part are refused.
        let model = configs()[2].init::<B>(&device).unwrap();
        let mut wrong = input::<B>(&device);
        let tokens = wrong.skeleton.take().unwrap().tokens;
        wrong.skeleton = Some(SkeletonTokens::pooled(tokens));
        let message = model.try_forward(wrong).unwrap_err().to_string();
        assert!(message.contains("2 body parts"), "{message}");
    }

    #[test]
    fn padded_tokens_do_not_matter() {
        let device = Default::default();
        for config in configs() {
            let model = config.init::<B>(&device).unwrap();
            let padded = |mut input: CmtfInput<B>, noise: f64| {
                // Noise on the padded steps only.
                let v = input.video.as_mut().unwrap();
                let pad = tail_padding::<B>(&[2, 0, 1], 4, &device);
                v.padding = Some(pad.clone());
                let pad = pad.reshape([3, 4, 1, 1, 1]).expand(VIDEO);
                v.tokens = v.tokens.clone()
                    + Tensor::random(VIDEO, Distribution::Normal(0.0, noise), &device)
                        .mask_fill(pad.bool_not(), 0.0);
                let s = input.skeleton.as_mut().unwrap();
                let pad = tail_padding::<B>(&[0, 3, 5], 6, &device);
                s.padding = Some(pad.clone());
                let pad = pad.reshape([3, 6, 1, 1]).expand(SKELETON);
                s.tokens = s.tokens.clone()
                    + Tensor::random(SKELETON, Distribution::Normal(0.0, noise), &device)
                        .mask_fill(pad.bool_not(), 0.0);
                model.forward(input)
            };
            let a = padded(input(&device), 0.0);
            let b = padded(input(&device), 100.0);
            assert!(max_diff(a.logits.clone(), b.logits) < 1e-5, "{config}");
            assert!(max_diff(a.video_logits, b.video_logits) < 1e-5, "{config}");
            let unpadded = model.forward(input(&device));
            assert!(
                max_diff(a.logits, unpadded.logits) > 1e-4,
                "padding changes nothing"
            );
        }
    }

    #[test]
    fn a_missing_modality_gives_the_single_stream_answer() {
        let device = Default::default();
        for config in configs() {
            let model = config.init::<B>(&device).unwrap();
            let mut masked = input::<B>(&device);
            let missing = Tensor::from_data([false, true, false], &device);
            masked.video = masked.video.map(|v| v.with_missing(missing));
            let masked = model.try_forward(masked).unwrap();
            assert!(all_finite(masked.logits.clone()));
            assert_eq!(
                masked.video_present.into_data().to_vec::<bool>().unwrap(),
                vec![true, false, true]
            );
            let skeleton_only = model
                .try_forward(CmtfInput {
                    video: None,
                    ..input(&device)
                })
                .unwrap();
            assert!(all_finite(skeleton_only.logits.clone()));
            let diff = max_diff(
                masked.logits.narrow(0, 1, 1),
                skeleton_only.logits.narrow(0, 1, 1),
            );
            assert!(diff < 1e-5, "{config}: {diff}");
            let video_only = model
                .try_forward(CmtfInput {
                    skeleton: None,
                    ..input(&device)
                })
                .unwrap();
            assert!(all_finite(video_only.logits));
        }
    }

    #[test]
    fn permuting_the_batch_permutes_the_outputs() {
        let device = Default::default();
        let order = Tensor::<B, 1, Int>::from_data([2, 0, 1], &device);
        for config in configs() {
            let model = config.init::<B>(&device).unwrap();
            let base = model.forward(input(&device));
            let mut permuted = input::<B>(&device);
            let v = permuted.video.as_mut().unwrap();
            v.tokens = v.tokens.clone().select(0, order.clone());
            v.class_embedding = v
                .class_embedding
                .clone()
                .map(|c| c.select(0, order.clone()));
            let s = permuted.skeleton.as_mut().unwrap();
            s.tokens = s.tokens.clone().select(0, order.clone());
            let out = model.forward(permuted);
            assert!(max_diff(base.logits.select(0, order.clone()), out.logits) < 1e-5);
        }
    }

    #[test]
    fn gradients_reach_every_parameter() {
        let device = Default::default();
        for config in configs() {
            // No modality dropout: every auxiliary head must see its modality.
            let model = config
                .with_modality_dropout(0.0)
                .init::<A>(&device)
                .unwrap();
            let loss_fn = ClassificationLossConfig::new().init(None, &device).unwrap();
            let out = model.forward(input(&device));
            let targets = Tensor::from_data([0, 3, 4], &device);
            let grads = model.loss(&out, targets, &loss_fn).backward();
            assert_every_param_learns(&model, &grads);
        }
    }

    #[test]
    fn modality_dropout_only_in_training_and_never_both() {
        let device = Default::default();
        let model = config(CmtfVariant::Cross)
            .with_modality_dropout(0.5)
            .init::<A>(&device)
            .unwrap();
        let out = model.forward(input(&device));
        let (v, s): (Vec<bool>, Vec<bool>) = (
            out.video_present.into_data().to_vec().unwrap(),
            out.skeleton_present.into_data().to_vec().unwrap(),
        );
        // At p = 0.5 every sample loses exactly one stream.
        assert!(v.iter().zip(&s).all(|(a, b)| a != b), "{v:?} {s:?}");
        let inference = model.valid().forward(input(&device));
        assert!(inference.video_present.all().into_scalar());
        assert!(inference.skeleton_present.all().into_scalar());
    }

    #[test]
    fn learns_a_toy_problem() {
        let device = Default::default();
        let classes = 4;
        let n = 16;
        let mut model = config(CmtfVariant::Cross)
            .with_num_classes(classes)
            .with_dropout(0.0)
            .with_modality_dropout(0.0)
            .init::<A>(&device)
            .unwrap();
        // Class c moves video feature c and skeleton feature c; the rest is noise.
        let labels: Vec<i64> = (0..n as i64).map(|i| i % classes as i64).collect();
        let onehot = |width: usize| {
            let mut data = vec![0.0f32; n * width];
            for (i, &c) in labels.iter().enumerate() {
                data[i * width + c as usize] = 2.0;
            }
            Tensor::<A, 2>::from_data(TensorData::new(data, [n, width]), &device)
        };
        let video =
            Tensor::<A, 5>::random([n, 4, 3, 3, 12], Distribution::Normal(0.0, 1.0), &device)
                + onehot(12).reshape([n, 1, 1, 1, 12]);
        let skeleton =
            Tensor::<A, 4>::random([n, 6, 5, 10], Distribution::Normal(0.0, 1.0), &device)
                + onehot(10).reshape([n, 1, 1, 10]);
        let input = CmtfInput {
            video: Some(VideoTokens::new(
                video.clone(),
                Some(video.mean_dim(1).mean_dim(2).mean_dim(3).reshape([n, 12])),
            )),
            skeleton: Some(SkeletonTokens::new(skeleton)),
        };
        let targets = Tensor::<A, 1, Int>::from_data(TensorData::new(labels, [n]), &device);
        let loss_fn = ClassificationLossConfig::new()
            .with_label_smoothing(0.0)
            .init(None, &device)
            .unwrap();
        let mut optim = AdamConfig::new().init();
        let mut last = f32::MAX;
        for _ in 0..200 {
            let out = model.forward(input.clone());
            let loss = model.loss(&out, targets.clone(), &loss_fn);
            last = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        assert!(last < 0.05, "loss after 200 steps: {last}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let device = Default::default();
        let model = config(CmtfVariant::Cross).init::<B>(&device).unwrap();
        let message = |input: CmtfInput<B>| model.try_forward(input).unwrap_err().to_string();
        let mut wrong_batch = input(&device);
        wrong_batch.skeleton = Some(SkeletonTokens::new(Tensor::zeros([2, 6, 5, 10], &device)));
        assert!(message(wrong_batch).contains("batch of 2 samples"));
        let mut wrong_width = input(&device);
        wrong_width.skeleton = Some(SkeletonTokens::new(Tensor::zeros([3, 6, 5, 11], &device)));
        assert!(message(wrong_width).contains("has 11 features"));
        let mut no_class = input(&device);
        no_class.video.as_mut().unwrap().class_embedding = None;
        assert!(message(no_class).contains("video_class_token"));
        let mut nan = input(&device);
        let s = nan.skeleton.as_mut().unwrap();
        s.tokens = s
            .tokens
            .clone()
            .slice_fill([1..2, 2..3, 0..1, 0..1], f32::NAN);
        assert!(message(nan).contains("NaN"));
        let mut all_masked = input(&device);
        let gone = Tensor::<B, 1, Bool>::from_data([false, true, false], &device);
        all_masked.video = all_masked.video.map(|v| v.with_missing(gone.clone()));
        all_masked.skeleton = all_masked.skeleton.map(|s| s.with_missing(gone));
        assert!(message(all_masked).contains("samples [1]"));
        assert!(
            message(CmtfInput {
                video: None,
                skeleton: None
            })
            .contains("neither")
        );
        let parts = config(CmtfVariant::Cross)
            .with_skeleton_parts(vec![vec![0, 9]])
            .init::<B>(&device)
            .unwrap();
        assert!(
            parts
                .try_forward(input(&device))
                .unwrap_err()
                .to_string()
                .contains("joint 9")
        );
        assert!(
            config(CmtfVariant::Cross)
                .with_heads(3)
                .init::<B>(&device)
                .is_err()
        );
    }
}
