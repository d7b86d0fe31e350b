//! Which streams InterFusion uses and how they meet: one module type per
//! [`InterFusionVariant`], each turning the encoded streams into the output.

use burn::module::{Module, Param};
use burn::nn::LinearConfig;
use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use miga_kernels::nn::{Dropout, LayerNorm, Linear};

use super::{InterFusionConfig, InterFusionOutput, InterFusionVariant};
use crate::AttentionMap;
use crate::layers::{
    AttentionPool, CrossBlock, EncoderLayer, LayerConfig, Stream, embed_steps, embedding,
    norm_layer, run_cross_blocks,
};
use crate::names::PyTorchNames;

/// One stream: projection, intra-modal encoder, final norm and attention pooling.
#[derive(Module, Debug)]
pub struct SequenceBranch<B: Backend> {
    /// Projection to `d_model`.
    pub projection: Linear<B>,
    /// Projection of the expression probabilities (face stream with expressions).
    pub expression_projection: Option<Linear<B>>,
    /// Intra-modal encoder layers.
    pub encoder: Vec<EncoderLayer<B>>,
    /// Final norm.
    pub norm: LayerNorm<B>,
    /// Pooling over time.
    pub pool: AttentionPool<B>,
}

/// A stream with a classifier of its own (a stream of late fusion).
#[derive(Module, Debug)]
pub struct BranchClassifier<B: Backend> {
    /// The stream.
    pub branch: SequenceBranch<B>,
    /// Its classifier.
    pub head: Linear<B>,
}

/// One stream alone (the face-only and context-only variants).
#[derive(Module, Debug)]
pub struct SingleStream<B: Backend> {
    /// The stream.
    pub branch: SequenceBranch<B>,
    /// Its classifier.
    pub head: Linear<B>,
    /// Modality embeddings `[2, d_model]`: face, context (the stream's row is used).
    pub modality: Param<Tensor<B, 2>>,
}

/// The full model: both streams, cross-attention both ways, a gated combination.
#[derive(Module, Debug)]
pub struct GatedFusion<B: Backend> {
    /// The face stream.
    pub face: SequenceBranch<B>,
    /// The context stream.
    pub context: SequenceBranch<B>,
    /// Modality embeddings `[2, d_model]`: face, context.
    pub modality: Param<Tensor<B, 2>>,
    /// Inter-modal layers.
    pub inter_layers: Vec<CrossBlock<B>>,
    /// Gate over the concatenated pooled streams.
    pub gate: Linear<B>,
    /// Norm of the fused embedding.
    pub fused_norm: LayerNorm<B>,
    /// Classifier.
    pub head: Linear<B>,
}

/// Late fusion: each stream classified alone, the scores averaged.
#[derive(Module, Debug)]
pub struct LateFusion<B: Backend> {
    /// The face stream and its classifier.
    pub face: BranchClassifier<B>,
    /// The context stream and its classifier.
    pub context: BranchClassifier<B>,
    /// Modality embeddings `[2, d_model]`: face, context.
    pub modality: Param<Tensor<B, 2>>,
}

/// The streams of an [`super::InterFusion`] and how they meet, as its [`InterFusionVariant`]
/// has them. The parts are in the order the record of miga's first InterFusion had them, the
/// order in which a seeded model draws its initial values (Burn initialises a parameter when
/// the module is first mapped, in field order): a seed gives the model it always gave.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value a model, built once: boxing the full model would save nothing"
)]
pub enum InterFusionStreams<B: Backend> {
    /// Both streams, cross-attention, gated combination.
    Full(GatedFusion<B>),
    /// The face stream alone.
    FaceOnly(SingleStream<B>),
    /// The context stream alone.
    ContextOnly(SingleStream<B>),
    /// Each stream alone with its own head; the scores averaged.
    LateFusion(LateFusion<B>),
}

/// An encoded stream: tokens and padding after the intra-modal (and inter-modal) layers.
type Encoded<B> = Option<Stream<B>>;

impl InterFusionConfig {
    /// The streams of the configured variant, built in field order.
    pub(super) fn streams<B: Backend>(&self, device: &B::Device) -> InterFusionStreams<B> {
        let d = self.d_model;
        let layer = LayerConfig::new(d, self.heads, self.ff_dim, self.dropout);
        let head = || LinearConfig::new(d, self.num_classes).init(device).into();
        let branch = |input: usize, expressions: usize| SequenceBranch {
            projection: LinearConfig::new(input, d).init(device).into(),
            expression_projection: (expressions > 0)
                .then(|| LinearConfig::new(expressions, d).init(device).into()),
            encoder: (0..self.intra_layers)
                .map(|_| layer.encoder(device))
                .collect(),
            norm: norm_layer(d, device),
            pool: AttentionPool::new(d, device),
        };
        let face = || branch(self.face_dim, self.expression_classes);
        let context = || branch(self.context_dim, 0);
        let classifier = |branch| BranchClassifier {
            branch,
            head: head(),
        };
        let single = |branch| SingleStream {
            branch,
            head: head(),
            modality: embedding([2, d], device),
        };
        match self.variant {
            InterFusionVariant::Full => InterFusionStreams::Full(GatedFusion {
                face: face(),
                context: context(),
                modality: embedding([2, d], device),
                inter_layers: (0..self.inter_layers)
                    .map(|_| layer.cross_block(false, device))
                    .collect(),
                gate: LinearConfig::new(2 * d, d).init(device).into(),
                fused_norm: norm_layer(d, device),
                head: head(),
            }),
            InterFusionVariant::FaceOnly => InterFusionStreams::FaceOnly(single(face())),
            InterFusionVariant::ContextOnly => InterFusionStreams::ContextOnly(single(context())),
            InterFusionVariant::LateFusion => InterFusionStreams::LateFusion(LateFusion {
                face: classifier(face()),
                context: classifier(context()),
                modality: embedding([2, d], device),
            }),
        }
    }
}

impl<B: Backend> InterFusionStreams<B> {
    /// The variant these streams are.
    pub fn variant(&self) -> InterFusionVariant {
        match self {
            Self::Full(_) => InterFusionVariant::Full,
            Self::FaceOnly(_) => InterFusionVariant::FaceOnly,
            Self::ContextOnly(_) => InterFusionVariant::ContextOnly,
            Self::LateFusion(_) => InterFusionVariant::LateFusion,
        }
    }

    /// The face stream, where the variant has one.
    pub fn face(&self) -> Option<&SequenceBranch<B>> {
        match self {
            Self::Full(full) => Some(&full.face),
            Self::FaceOnly(alone) => Some(&alone.branch),
            Self::ContextOnly(_) => None,
            Self::LateFusion(late) => Some(&late.face.branch),
        }
    }

    /// The context stream, where the variant has one.
    pub fn context(&self) -> Option<&SequenceBranch<B>> {
        match self {
            Self::Full(full) => Some(&full.context),
            Self::FaceOnly(_) => None,
            Self::ContextOnly(alone) => Some(&alone.branch),
            Self::LateFusion(late) => Some(&late.context.branch),
        }
    }

    /// The modality embeddings `[2, d_model]`: face, context.
    pub fn modality(&self) -> &Param<Tensor<B, 2>> {
        match self {
            Self::Full(full) => &full.modality,
            Self::FaceOnly(alone) | Self::ContextOnly(alone) => &alone.modality,
            Self::LateFusion(late) => &late.modality,
        }
    }

    /// A classifier of the model (late fusion has two, of the same width).
    pub(super) fn head(&self) -> &Linear<B> {
        match self {
            Self::Full(full) => &full.head,
            Self::FaceOnly(alone) | Self::ContextOnly(alone) => &alone.head,
            Self::LateFusion(late) => &late.face.head,
        }
    }

    /// The twin's names of these streams, placed in an `InterFusion` (see [`PyTorchNames`]):
    /// the twin has optional `face` and `context` streams, each with an optional `head`, and
    /// the modality embeddings and the full model's parts beside them.
    pub(super) fn pytorch_names(&self) -> PyTorchNames {
        let modality = ("modality", "streams.modality");
        match self {
            Self::Full(_) => PyTorchNames::new([
                ("face", "streams.face"),
                ("context", "streams.context"),
                modality,
                ("inter_layers", "streams.inter_layers"),
                ("gate", "streams.gate"),
                ("fused_norm", "streams.fused_norm"),
                ("head", "streams.head"),
            ]),
            Self::FaceOnly(_) => PyTorchNames::new([
                ("face.head", "streams.head"),
                ("face", "streams.branch"),
                modality,
            ]),
            Self::ContextOnly(_) => PyTorchNames::new([
                ("context.head", "streams.head"),
                ("context", "streams.branch"),
                modality,
            ]),
            Self::LateFusion(_) => PyTorchNames::new([
                ("face.head", "streams.face.head"),
                ("face", "streams.face.branch"),
                ("context.head", "streams.context.head"),
                ("context", "streams.context.branch"),
                modality,
            ]),
        }
    }

    /// The output from the encoded `face` and `context` streams (`None` where the variant has
    /// no such stream or the input lacks it), adding the inter-modal attention maps (when
    /// `weights`) to `maps`.
    pub(super) fn combine(
        &self,
        face: Encoded<B>,
        context: Encoded<B>,
        dropout: &Dropout,
        weights: bool,
        maps: &mut Vec<AttentionMap<B>>,
    ) -> InterFusionOutput<B> {
        let head = |h: &Linear<B>, z: Tensor<B, 2>| h.forward(dropout.forward(z));
        match self {
            Self::Full(full) => {
                let (f, c) = both(face, context);
                full.combine(f, c, &head, weights, maps)
            }
            Self::LateFusion(late) => {
                let (f, c) = both(face, context);
                let (af, ac) = (present(&f), present(&c));
                let (zf, wf) = late.face.branch.pool(f);
                let lf = head(&late.face.head, zf.clone());
                let (zc, wc) = late.context.branch.pool(c);
                let lc = head(&late.context.head, zc.clone());
                let n = (af.clone() + ac.clone()).clamp_min(1.0);
                InterFusionOutput {
                    logits: (lf * af.clone() + lc * ac.clone()) / n.clone(),
                    embedding: (zf * af + zc * ac) / n,
                    face_weights: Some(wf),
                    context_weights: Some(wc),
                    gate: None,
                }
            }
            Self::FaceOnly(alone) => {
                let (z, w) = alone.branch.pool(face.expect("checked: the face is given"));
                InterFusionOutput {
                    logits: head(&alone.head, z.clone()),
                    embedding: z,
                    face_weights: Some(w),
                    context_weights: None,
                    gate: None,
                }
            }
            Self::ContextOnly(alone) => {
                let (z, w) = alone
                    .branch
                    .pool(context.expect("checked: the context is given"));
                InterFusionOutput {
                    logits: head(&alone.head, z.clone()),
                    embedding: z,
                    face_weights: None,
                    context_weights: Some(w),
                    gate: None,
                }
            }
        }
    }
}

/// Both streams of a two-stream variant: one the batch lacks is a padded stand-in.
fn both<B: Backend>(face: Encoded<B>, context: Encoded<B>) -> (Stream<B>, Stream<B>) {
    let some = face
        .as_ref()
        .or(context.as_ref())
        .expect("checked: one stream");
    let [b, _, d] = some.tokens.dims();
    let device = some.tokens.device();
    (
        face.unwrap_or_else(|| Stream::absent(b, d, &device)),
        context.unwrap_or_else(|| Stream::absent(b, d, &device)),
    )
}

/// `[B, 1]`: 1 where the sample has at least one token of the stream.
fn present<B: Backend>(s: &Stream<B>) -> Tensor<B, 2> {
    s.padding.clone().bool_not().any_dim(1).float()
}

impl<B: Backend> GatedFusion<B> {
    fn combine(
        &self,
        f: Stream<B>,
        c: Stream<B>,
        head: &impl Fn(&Linear<B>, Tensor<B, 2>) -> Tensor<B, 2>,
        weights: bool,
        maps: &mut Vec<AttentionMap<B>>,
    ) -> InterFusionOutput<B> {
        let names = [
            "face self",
            "context self",
            "face->context",
            "context->face",
        ];
        let (f, c) = run_cross_blocks(&self.inter_layers, f, c, weights, names, maps);
        let (af, ac) = (present(&f), present(&c));
        let (zf, wf) = self.face.pool(f);
        let (zc, wc) = self.context.pool(c);
        // A missing stream hands the whole embedding to the other one.
        let g = sigmoid(
            self.gate
                .forward(Tensor::cat(vec![zf.clone(), zc.clone()], 1)),
        );
        let g = g * (af.clone() * ac.clone()) + af * (-ac + 1.0);
        let fused = zf * g.clone() + zc * (-g.clone() + 1.0);
        let embedding = self.fused_norm.forward(fused);
        InterFusionOutput {
            logits: head(&self.head, embedding.clone()),
            embedding,
            face_weights: Some(wf),
            context_weights: Some(wc),
            gate: Some(g),
        }
    }
}

impl<B: Backend> SequenceBranch<B> {
    /// Embeds `sequence` `[B, N, C]` (plus its `expressions`) with the `modality` embedding
    /// `[1, D]` and the clock, and runs the intra-modal encoder; the attention weights per
    /// layer when asked for.
    pub(super) fn encode(
        &self,
        sequence: super::Sequence<B>,
        expressions: Option<Tensor<B, 3>>,
        modality: Tensor<B, 2>,
        clock_scale: f64,
        weights: bool,
    ) -> (Stream<B>, Vec<Tensor<B, 4>>) {
        let [b, n, c] = sequence.tokens.dims();
        let padding = Stream::padding_or_none(sequence.padding, [b, n], &sequence.tokens.device());
        let mut stream = embed_steps(
            &self.projection,
            sequence.tokens.reshape([b, n, 1, c]),
            padding,
            modality,
            clock_scale,
        );
        if let (Some(p), Some(e)) = (&self.expression_projection, expressions) {
            stream.tokens = stream.tokens + p.forward(e);
        }
        let mut maps = Vec::new();
        for encoder in &self.encoder {
            let (tokens, w) = encoder.forward(stream.tokens, Some(stream.padding.clone()), weights);
            stream.tokens = tokens;
            maps.extend(w);
        }
        (stream, maps)
    }

    /// Pooled embedding `[B, D]` and pooling weights `[B, N]`.
    fn pool(&self, s: Stream<B>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        self.pool.forward(self.norm.forward(s.tokens), s.padding)
    }
}
