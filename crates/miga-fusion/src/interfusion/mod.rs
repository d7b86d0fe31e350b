//! InterFusion: a video's face sequence (SwinFace) and context sequence (MViTv2) fused into one
//! per-video prediction (Win/Lose). The design choices are documented in docs/models/fusion.md.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};
use miga_kernels::nn::{Dropout, DropoutConfig};

use crate::AttentionMap;
use crate::check::{check_finite, check_padding, check_some_token, check_tokens, invalid};
use crate::layers::{Stream, modality_dropout};
use crate::names::PyTorchNames;

mod streams;

pub use streams::{
    BranchClassifier, GatedFusion, InterFusionStreams, LateFusion, SequenceBranch, SingleStream,
};

const MODULE: &str = "interfusion";

/// Which streams the module uses and how they meet; all but `Full` are ablation baselines.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum InterFusionVariant {
    /// Intra-modal encoders, cross-attention both ways, gated combination.
    Full,
    /// The face stream alone.
    FaceOnly,
    /// The context stream alone.
    ContextOnly,
    /// Each stream alone with its own head; the logits are averaged.
    LateFusion,
}

/// Configuration of [`InterFusion`]; every default is documented in docs/models/fusion.md.
#[derive(Config, Debug)]
pub struct InterFusionConfig {
    /// Width of the face embeddings (SwinFace: 512).
    #[config(default = 512)]
    pub face_dim: usize,
    /// Classes of the expression probabilities given with each face (0: none are given).
    #[config(default = 0)]
    pub expression_classes: usize,
    /// Width of the context embeddings (MViTv2-S: 768).
    #[config(default = 768)]
    pub context_dim: usize,
    /// Classes (Win/Lose: 2).
    #[config(default = 2)]
    pub num_classes: usize,
    /// Fusion width.
    #[config(default = 256)]
    pub d_model: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Intra-modal encoder layers per stream.
    #[config(default = 2)]
    pub intra_layers: usize,
    /// Inter-modal (bidirectional cross-attention) layers.
    #[config(default = 1)]
    pub inter_layers: usize,
    /// Feed-forward hidden width.
    #[config(default = 1024)]
    pub ff_dim: usize,
    /// Dropout on residual branches and before the head.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Scale of the shared clock (see `CmtfConfig::clock_scale`); larger than for clips, as
    /// a video sequence is long.
    #[config(default = 256.0)]
    pub clock_scale: f64,
    /// The full model or a baseline.
    #[config(default = "InterFusionVariant::Full")]
    pub variant: InterFusionVariant,
    /// In training, each stream of a video is dropped with this probability (never both: at
    /// most 0.5), so the model keeps working when a video has no usable face (see
    /// `CmtfConfig::modality_dropout`). Used when the variant has both streams (the full model
    /// and late fusion) and both are given.
    #[config(default = 0.0)]
    pub modality_dropout: f64,
}

/// A padded batch of sequences.
#[derive(Debug, Clone)]
pub struct Sequence<B: Backend> {
    /// Embeddings `[B, N, C]`.
    pub tokens: Tensor<B, 3>,
    /// `[B, N]`, true on padding; a sample with everything padded lacks the stream.
    pub padding: Option<Tensor<B, 2, Bool>>,
}

impl<B: Backend> Sequence<B> {
    /// A batch of sequences `[B, N, C]`, nothing padded.
    pub fn new(tokens: Tensor<B, 3>) -> Self {
        Self {
            tokens,
            padding: None,
        }
    }

    /// The same batch with `padding` `[B, N]`.
    pub fn with_padding(mut self, padding: Tensor<B, 2, Bool>) -> Self {
        self.padding = Some(padding);
        self
    }
}

/// The inputs of [`InterFusion`].
#[derive(Debug, Clone)]
pub struct InterFusionInput<B: Backend> {
    /// Face embeddings `[B, Nf, face_dim]` (needed unless the variant is `ContextOnly`).
    pub face: Option<Sequence<B>>,
    /// Expression probabilities `[B, Nf, expression_classes]`, one row per face (needed when
    /// the config's `expression_classes` is not 0).
    pub expressions: Option<Tensor<B, 3>>,
    /// Context embeddings `[B, Nc, context_dim]` (needed unless the variant is `FaceOnly`).
    pub context: Option<Sequence<B>>,
}

/// What [`InterFusion`] computes for a batch of videos.
#[derive(Debug, Clone)]
pub struct InterFusionOutput<B: Backend> {
    /// Class scores `[B, classes]`.
    pub logits: Tensor<B, 2>,
    /// Video embedding `[B, d_model]`, the input of the head (late fusion: the mean of the
    /// per-stream embeddings).
    pub embedding: Tensor<B, 2>,
    /// Attention-pooling weights over the faces `[B, Nf]` (variants with a face stream).
    pub face_weights: Option<Tensor<B, 2>>,
    /// Attention-pooling weights over the context windows `[B, Nc]`.
    pub context_weights: Option<Tensor<B, 2>>,
    /// The gate `[B, d_model]`: the share of the face stream in each embedding feature (full
    /// variant).
    pub gate: Option<Tensor<B, 2>>,
}

/// InterFusion.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{Distribution, Tensor};
/// use miga_fusion::{InterFusionConfig, InterFusionInput, Sequence};
///
/// let device = Default::default();
/// let config = InterFusionConfig::new().with_face_dim(16).with_context_dim(24).with_d_model(32).with_ff_dim(64);
/// let model = config.init::<Flex>(&device)?;
/// let faces = Tensor::random([2, 40, 16], Distribution::Default, &device);
/// let context = Tensor::random([2, 10, 24], Distribution::Default, &device);
/// let out = model.try_forward(InterFusionInput {
///     face: Some(Sequence::new(faces)),
///     expressions: None,
///     context: Some(Sequence::new(context)),
/// })?;
/// assert_eq!(out.logits.dims(), [2, 2]);
/// # Ok::<(), miga_fusion::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct InterFusion<B: Backend> {
    /// The streams and how they meet, of the configured variant.
    pub streams: InterFusionStreams<B>,
    dropout: Dropout,
    #[module(skip)]
    settings: Settings,
}

#[derive(Debug, Clone)]
struct Settings {
    face_dim: usize,
    expression_classes: usize,
    context_dim: usize,
    clock_scale: f64,
    modality_dropout: f64,
}

impl InterFusionConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> crate::Result<()> {
        crate::validate_widths(MODULE, self.d_model, self.heads, self.ff_dim, self.dropout)?;
        for (name, value) in [
            ("face_dim", self.face_dim),
            ("context_dim", self.context_dim),
            ("num_classes", self.num_classes),
        ] {
            if value == 0 {
                return Err(crate::Error::InvalidConfig {
                    module: MODULE,
                    reason: format!("{name} is 0"),
                });
            }
        }
        if !self.clock_scale.is_finite() {
            return Err(crate::Error::InvalidConfig {
                module: MODULE,
                reason: "clock_scale is not finite".into(),
            });
        }
        if !(0.0..=0.5).contains(&self.modality_dropout) {
            return Err(crate::Error::InvalidConfig {
                module: MODULE,
                reason: format!(
                    "modality_dropout {} is outside [0, 0.5]",
                    self.modality_dropout
                ),
            });
        }
        Ok(())
    }

    /// Floating-point operations of one forward pass (matrix products; norms and softmax left
    /// out) for `batch` videos of `faces` face and `windows` context embeddings. The count
    /// `miga bench` and `scripts/bench_pytorch.py` report.
    pub fn forward_flops(&self, batch: usize, faces: usize, windows: usize) -> u64 {
        use crate::{attention_flops as att, feed_forward_flops as ff};
        let (d, f, k) = (self.d_model, self.ff_dim, self.num_classes);
        let stream = |n: usize, width: usize| {
            (2 * n * width * d) as u64
                + self.intra_layers as u64 * (att(n, n, d) + ff(n, d, f))
                + (2 * n * d) as u64
        };
        let face = stream(faces, self.face_dim + self.expression_classes);
        let context = stream(windows, self.context_dim);
        let head = (2 * d * k) as u64;
        let total = match self.variant {
            InterFusionVariant::Full => {
                let inter = att(faces, windows, d)
                    + att(windows, faces, d)
                    + ff(faces, d, f)
                    + ff(windows, d, f);
                face + context + self.inter_layers as u64 * inter + (4 * d * d) as u64 + head
            }
            InterFusionVariant::FaceOnly => face + head,
            InterFusionVariant::ContextOnly => context + head,
            InterFusionVariant::LateFusion => face + context + 2 * head,
        };
        batch as u64 * total
    }

    /// Builds the module after [`InterFusionConfig::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<InterFusion<B>> {
        self.validate()?;
        Ok(InterFusion {
            streams: self.streams(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            settings: Settings {
                face_dim: self.face_dim,
                expression_classes: self.expression_classes,
                context_dim: self.context_dim,
                clock_scale: self.clock_scale,
                modality_dropout: self.modality_dropout,
            },
        })
    }
}

impl<B: Backend> InterFusion<B> {
    /// Checks the shapes of `input` against the configuration (no data is read).
    pub fn check_input(&self, input: &InterFusionInput<B>) -> crate::Result<()> {
        let s = &self.settings;
        let needed = |given: bool, used: bool, name: &'static str| -> crate::Result<()> {
            if used && !given {
                Err(invalid(
                    MODULE,
                    name,
                    "missing; the configured variant uses it".into(),
                ))
            } else {
                Ok(())
            }
        };
        let variant = self.streams.variant();
        needed(
            input.face.is_some(),
            variant == InterFusionVariant::FaceOnly,
            "face",
        )?;
        needed(
            input.context.is_some(),
            variant == InterFusionVariant::ContextOnly,
            "context",
        )?;
        let face = input
            .face
            .as_ref()
            .filter(|_| self.streams.face().is_some());
        let context = input
            .context
            .as_ref()
            .filter(|_| self.streams.context().is_some());
        let batch = match (face, context) {
            (Some(f), _) => f.tokens.dims()[0],
            (None, Some(c)) => c.tokens.dims()[0],
            (None, None) => {
                return Err(invalid(
                    MODULE,
                    "face, context",
                    "neither face nor context embeddings were given".into(),
                ));
            }
        };
        if let Some(f) = face {
            let dims = f.tokens.dims();
            check_tokens(MODULE, "face", dims, batch, s.face_dim)?;
            check_padding(MODULE, "face padding", f.padding.as_ref(), [batch, dims[1]])?;
            match (&input.expressions, s.expression_classes) {
                (None, 0) => {}
                (Some(e), k) if k > 0 => {
                    check_tokens(MODULE, "expressions", e.dims(), batch, k)?;
                    if e.dims()[1] != dims[1] {
                        return Err(invalid(
                            MODULE,
                            "expressions",
                            format!("{} rows for {} faces", e.dims()[1], dims[1]),
                        ));
                    }
                }
                (given, k) => {
                    return Err(invalid(
                        MODULE,
                        "expressions",
                        format!(
                            "{} given, but expression_classes is {k}",
                            if given.is_some() { "some" } else { "none" }
                        ),
                    ));
                }
            }
        }
        if let Some(c) = context {
            let dims = c.tokens.dims();
            check_tokens(MODULE, "context", dims, batch, s.context_dim)?;
            check_padding(
                MODULE,
                "context padding",
                c.padding.as_ref(),
                [batch, dims[1]],
            )?;
        }
        Ok(())
    }

    /// Runs the module after checking shapes, finite values and that every video has at least
    /// one valid face or context token (reads the inputs back from the device).
    pub fn try_forward(&self, input: InterFusionInput<B>) -> crate::Result<InterFusionOutput<B>> {
        self.check_input(&input)?;
        let mut paddings = Vec::new();
        for (name, sequence, used) in [
            ("face", &input.face, self.streams.face().is_some()),
            ("context", &input.context, self.streams.context().is_some()),
        ] {
            if let Some(s) = sequence.as_ref().filter(|_| used) {
                check_finite(MODULE, name, &s.tokens)?;
                paddings.push(s.padding.as_ref());
            }
        }
        if let Some(e) = input
            .expressions
            .as_ref()
            .filter(|_| self.streams.face().is_some())
        {
            check_finite(MODULE, "expressions", e)?;
        }
        check_some_token(MODULE, &paddings)?;
        Ok(self.run(input, false).0)
    }

    /// Runs the module. Panics on shapes [`InterFusion::check_input`] refuses.
    pub fn forward(&self, input: InterFusionInput<B>) -> InterFusionOutput<B> {
        if let Err(e) = self.check_input(&input) {
            panic!("{e}");
        }
        self.run(input, false).0
    }

    /// [`InterFusion::forward`] that also returns every attention map: `face self` and
    /// `context self` per intra layer, `face->context` and `context->face` per inter layer.
    pub fn forward_with_attention(
        &self,
        input: InterFusionInput<B>,
    ) -> crate::Result<(InterFusionOutput<B>, Vec<AttentionMap<B>>)> {
        self.check_input(&input)?;
        Ok(self.run(input, true))
    }

    /// Classes of the head(s).
    pub fn num_classes(&self) -> usize {
        self.streams.head().weight.dims()[1]
    }

    /// The names of this module's parameters in its PyTorch twin and in exports: optional
    /// `face` and `context` streams, each with an optional `head`, and the full model's
    /// `inter_layers`, `gate`, `fused_norm` and `head` beside them (see [`PyTorchNames`]).
    pub fn pytorch_names(&self) -> PyTorchNames {
        self.streams.pytorch_names()
    }

    fn run(
        &self,
        input: InterFusionInput<B>,
        weights: bool,
    ) -> (InterFusionOutput<B>, Vec<AttentionMap<B>>) {
        let (face, context) = match (input.face, input.context) {
            (Some(face), Some(context))
                if self.settings.modality_dropout > 0.0
                    && B::ad_enabled(&face.tokens.device())
                    && matches!(
                        self.streams,
                        InterFusionStreams::Full(_) | InterFusionStreams::LateFusion(_)
                    ) =>
            {
                let padding = |s: &Sequence<B>| {
                    let [b, n, _] = s.tokens.dims();
                    Stream::padding_or_none(s.padding.clone(), [b, n], &s.tokens.device())
                };
                let (pf, pc) = modality_dropout(
                    padding(&face),
                    padding(&context),
                    self.settings.modality_dropout,
                );
                (
                    Some(Sequence {
                        padding: Some(pf),
                        ..face
                    }),
                    Some(Sequence {
                        padding: Some(pc),
                        ..context
                    }),
                )
            }
            streams => streams,
        };
        let mut maps = Vec::new();
        let mut encode = |branch: Option<&SequenceBranch<B>>,
                          sequence: Option<Sequence<B>>,
                          expressions: Option<Tensor<B, 3>>,
                          modality: usize,
                          name: &'static str| {
            let (stream, layers) = branch?.encode(
                sequence?,
                expressions,
                self.streams.modality().val().narrow(0, modality, 1),
                self.settings.clock_scale,
                weights,
            );
            maps.extend(
                layers
                    .into_iter()
                    .enumerate()
                    .map(|(layer, weights)| AttentionMap {
                        layer,
                        name,
                        weights,
                    }),
            );
            Some(stream)
        };
        let face = encode(self.streams.face(), face, input.expressions, 0, "face self");
        let context = encode(self.streams.context(), context, None, 1, "context self");
        let output = self
            .streams
            .combine(face, context, &self.dropout, weights, &mut maps);
        (output, maps)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::{Distribution, Int, TensorData};

    use super::*;
    use crate::ClassificationLossConfig;
    use crate::testing::{all_finite, assert_every_param_learns, max_diff, tail_padding};

    type B = Flex;
    type A = Autodiff<Flex>;

    const FACE: [usize; 3] = [3, 9, 12];
    const EXPRESSIONS: [usize; 3] = [3, 9, 7];
    const CONTEXT: [usize; 3] = [3, 4, 10];

    fn config(variant: InterFusionVariant) -> InterFusionConfig {
        InterFusionConfig::new()
            .with_face_dim(12)
            .with_context_dim(10)
            .with_d_model(16)
            .with_heads(2)
            .with_ff_dim(32)
            .with_variant(variant)
    }

    #[test]
    fn modality_dropout_only_in_training_and_never_both() {
        let device = Default::default();
        let config = config(InterFusionVariant::Full).with_modality_dropout(0.5);
        let model = config.init::<A>(&device).unwrap();
        // At p = 0.5 every video loses exactly one stream: the gate hands the whole embedding
        // to the other (1: face only, 0: context only).
        let gate: Vec<f32> = model
            .forward(input(&config, &device))
            .gate
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        for row in gate.chunks(config.d_model) {
            assert!(row.iter().all(|&g| g == row[0]) && (row[0] == 0.0 || row[0] == 1.0));
        }
        let inference = burn::module::AutodiffModule::valid(&model)
            .forward(input(&config, &device))
            .gate
            .unwrap();
        let inference: Vec<f32> = inference.into_data().to_vec().unwrap();
        assert!(inference.iter().all(|&g| g > 0.0 && g < 1.0));
        let bad = InterFusionConfig::new()
            .with_modality_dropout(0.6)
            .validate();
        assert!(bad.unwrap_err().to_string().contains("modality_dropout"));
    }

    fn configs() -> Vec<InterFusionConfig> {
        use InterFusionVariant::*;
        vec![
            config(Full),
            config(Full).with_expression_classes(7).with_inter_layers(2),
            config(FaceOnly),
            config(ContextOnly),
            config(LateFusion),
        ]
    }

    fn input<Bk: Backend>(config: &InterFusionConfig, device: &Bk::Device) -> InterFusionInput<Bk> {
        let x = |shape: [usize; 3], seed: u64| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            Tensor::from_data(TensorData::new(data, shape), device)
        };
        InterFusionInput {
            face: Some(Sequence::new(x(FACE, 1))),
            expressions: (config.expression_classes > 0).then(|| x(EXPRESSIONS, 2)),
            context: Some(Sequence::new(x(CONTEXT, 3))),
        }
    }

    #[test]
    fn output_shapes() {
        let device = Default::default();
        for config in configs() {
            let model = config.init::<B>(&device).unwrap();
            let (out, maps) = model
                .forward_with_attention(input(&config, &device))
                .unwrap();
            assert_eq!(out.logits.dims(), [3, 2]);
            assert_eq!(out.embedding.dims(), [3, 16]);
            let streams = match config.variant {
                InterFusionVariant::Full | InterFusionVariant::LateFusion => 2,
                _ => 1,
            };
            let inter = if config.variant == InterFusionVariant::Full {
                2 * config.inter_layers
            } else {
                0
            };
            assert_eq!(
                maps.len(),
                streams * config.intra_layers + inter,
                "{config}"
            );
            if let Some(m) = maps.iter().find(|m| m.name == "face->context") {
                assert_eq!(m.weights.dims(), [3, 2, 9, 4]);
            }
            if let Some(w) = out.face_weights {
                assert_eq!(w.dims(), [3, 9]);
            }
            assert_eq!(
                out.gate.is_some(),
                config.variant == InterFusionVariant::Full
            );
        }
    }

    #[test]
    fn padded_tokens_do_not_matter() {
        let device = Default::default();
        for config in configs() {
            let model = config.init::<B>(&device).unwrap();
            let padded = |noise: f64| {
                let mut input = input::<B>(&config, &device);
                let face = input.face.take().unwrap();
                let pad = tail_padding::<B>(&[3, 0, 8], 9, &device);
                let noise_face = Tensor::random(FACE, Distribution::Normal(0.0, noise), &device)
                    .mask_fill(pad.clone().reshape([3, 9, 1]).expand(FACE).bool_not(), 0.0);
                input.face = Some(Sequence::new(face.tokens + noise_face).with_padding(pad));
                let context = input.context.take().unwrap();
                let pad = tail_padding::<B>(&[0, 2, 1], 4, &device);
                let noise_context =
                    Tensor::random(CONTEXT, Distribution::Normal(0.0, noise), &device).mask_fill(
                        pad.clone().reshape([3, 4, 1]).expand(CONTEXT).bool_not(),
                        0.0,
                    );
                input.context =
                    Some(Sequence::new(context.tokens + noise_context).with_padding(pad));
                model.try_forward(input).unwrap()
            };
            let (a, b) = (padded(0.0), padded(100.0));
            assert!(max_diff(a.logits, b.logits) < 1e-5, "{config}");
            if let (Some(wa), Some(wb)) = (a.face_weights, b.face_weights) {
                assert!(max_diff(wa.clone(), wb) < 1e-6);
                let on_padding: f32 = wa.narrow(0, 2, 1).narrow(1, 1, 8).sum().into_scalar();
                assert_eq!(on_padding, 0.0);
            }
        }
    }

    #[test]
    fn a_missing_stream_gives_finite_output() {
        let device = Default::default();
        for variant in [InterFusionVariant::Full, InterFusionVariant::LateFusion] {
            let config = config(variant);
            let model = config.init::<B>(&device).unwrap();
            let mut masked = input::<B>(&config, &device);
            masked.context = masked
                .context
                .map(|c| c.with_padding(tail_padding(&[0, 4, 0], 4, &device)));
            let masked = model.try_forward(masked).unwrap();
            assert!(all_finite(masked.logits.clone()));
            let face_only = model
                .try_forward(InterFusionInput {
                    context: None,
                    ..input(&config, &device)
                })
                .unwrap();
            let diff = max_diff(
                masked.logits.narrow(0, 1, 1),
                face_only.logits.narrow(0, 1, 1),
            );
            assert!(diff < 1e-5, "{config}: {diff}");
            if let Some(gate) = face_only.gate {
                // No context: the face stream is the whole embedding.
                assert!(max_diff(gate, Tensor::ones([3, 16], &device)) == 0.0);
            }
        }
    }

    #[test]
    fn permuting_the_batch_permutes_the_outputs() {
        let device = Default::default();
        let order = Tensor::<B, 1, Int>::from_data([1, 2, 0], &device);
        for config in configs() {
            let model = config.init::<B>(&device).unwrap();
            let base = model.forward(input(&config, &device));
            let permute = |s: Option<Sequence<B>>| {
                s.map(|s| Sequence::new(s.tokens.select(0, order.clone())))
            };
            let x = input::<B>(&config, &device);
            let out = model.forward(InterFusionInput {
                face: permute(x.face),
                expressions: x.expressions.map(|e| e.select(0, order.clone())),
                context: permute(x.context),
            });
            assert!(max_diff(base.logits.select(0, order.clone()), out.logits) < 1e-5);
        }
    }

    #[test]
    fn gradients_reach_every_parameter() {
        let device = Default::default();
        for config in configs() {
            let model = config.init::<A>(&device).unwrap();
            let loss_fn = ClassificationLossConfig::new().init(None, &device).unwrap();
            let out = model.forward(input(&config, &device));
            let loss = loss_fn.forward(out.logits, Tensor::from_data([0, 1, 1], &device), None);
            assert_every_param_learns(&model, &loss.backward());
        }
    }

    #[test]
    fn learns_a_toy_problem() {
        let device = Default::default();
        let n = 16;
        let config = config(InterFusionVariant::Full).with_dropout(0.0);
        let mut model = config.init::<A>(&device).unwrap();
        // Winners' faces and contexts drift one way, losers' the other, under noise; sequence
        // lengths vary.
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
        let sign: Vec<f32> = labels.iter().map(|&l| 2.0 * l as f32 - 1.0).collect();
        let sign = Tensor::<A, 1>::from_data(TensorData::new(sign, [n]), &device);
        let face = Tensor::<A, 3>::random([n, 9, 12], Distribution::Normal(0.0, 1.0), &device)
            + sign.clone().reshape([n, 1, 1]) * 0.7;
        let context = Tensor::<A, 3>::random([n, 4, 10], Distribution::Normal(0.0, 1.0), &device)
            - sign.reshape([n, 1, 1]) * 0.7;
        let lengths: Vec<usize> = (0..n).map(|i| i % 5).collect();
        let input = InterFusionInput {
            face: Some(Sequence::new(face).with_padding(tail_padding(&lengths, 9, &device))),
            expressions: None,
            context: Some(Sequence::new(context)),
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
            let loss = loss_fn.forward(out.logits, targets.clone(), None);
            last = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        assert!(last < 0.05, "loss after 200 steps: {last}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let device = Default::default();
        let config = config(InterFusionVariant::Full);
        let model = config.init::<B>(&device).unwrap();
        let message =
            |input: InterFusionInput<B>| model.try_forward(input).unwrap_err().to_string();
        let mut wrong_batch = input(&config, &device);
        wrong_batch.context = Some(Sequence::new(Tensor::zeros([4, 4, 10], &device)));
        assert!(message(wrong_batch).contains("batch of 4"));
        let mut wrong_width = input(&config, &device);
        wrong_width.face = Some(Sequence::new(Tensor::zeros([3, 9, 13], &device)));
        assert!(message(wrong_width).contains("13 features"));
        let mut unexpected = input(&config, &device);
        unexpected.expressions = Some(Tensor::zeros(EXPRESSIONS, &device));
        assert!(message(unexpected).contains("expression_classes is 0"));
        let mut nan = input(&config, &device);
        nan.face = Some(Sequence::new(Tensor::full(FACE, f32::NAN, &device)));
        assert!(message(nan).contains("NaN"));
        let mut empty = input(&config, &device);
        empty.face = empty
            .face
            .map(|f| f.with_padding(tail_padding(&[0, 0, 9], 9, &device)));
        empty.context = empty
            .context
            .map(|c| c.with_padding(tail_padding(&[0, 0, 4], 4, &device)));
        assert!(message(empty).contains("samples [2]"));
        let mut bad_padding = input(&config, &device);
        bad_padding.context = bad_padding
            .context
            .map(|c| c.with_padding(tail_padding(&[0, 0], 4, &device)));
        assert!(message(bad_padding).contains("padding mask of shape [2, 4]"));
        let face_only = super::InterFusionConfig::new()
            .with_variant(InterFusionVariant::FaceOnly)
            .init::<B>(&device)
            .unwrap();
        let err = face_only
            .try_forward(InterFusionInput {
                face: None,
                expressions: None,
                context: Some(Sequence::new(Tensor::zeros([1, 2, 768], &device))),
            })
            .unwrap_err();
        assert!(err.to_string().contains("`face`"), "{err}");
    }
}
