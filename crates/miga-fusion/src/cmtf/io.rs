//! What Cross-Modal Token Fusion takes (video and skeleton tokens with their padding) and
//! what it gives (fused and per-modality scores, the embedding).

use super::*;

/// Video tokens of a batch.
#[derive(Debug, Clone)]
pub struct VideoTokens<B: Backend> {
    /// MViTv2's final token grid `[B, T', H', W', C]`.
    pub tokens: Tensor<B, 5>,
    /// MViTv2's normalised class embedding `[B, C]` (needed when the config's
    /// `video_class_token` is set).
    pub class_embedding: Option<Tensor<B, 2>>,
    /// `[B, T']`, true on padded time steps; a sample with every step padded has no video.
    pub padding: Option<Tensor<B, 2, Bool>>,
}

/// Skeleton tokens of a batch.
#[derive(Debug, Clone)]
pub struct SkeletonTokens<B: Backend> {
    /// 2s-AGCN's token map `[B, T'', V, C]`, or with `pooled` the map already averaged over
    /// the configuration's body parts, `[B, T'', P, C]` ([`CmtfConfig::skeleton_regions`]).
    pub tokens: Tensor<B, 4>,
    /// `[B, T'']`, true on padded time steps; a sample with every step padded has no skeleton.
    pub padding: Option<Tensor<B, 2, Bool>>,
    /// Whether `tokens` are already averaged per body part (a training loop can average each
    /// item once when it loads it instead of every batch; the result is the same).
    pub pooled: bool,
}

/// The inputs of [`Cmtf`]: either modality may be absent for the whole batch (`None`) or for
/// some samples (all their time steps padded; see [`VideoTokens::with_missing`]).
#[derive(Debug, Clone)]
pub struct CmtfInput<B: Backend> {
    /// Video tokens.
    pub video: Option<VideoTokens<B>>,
    /// Skeleton tokens.
    pub skeleton: Option<SkeletonTokens<B>>,
}

/// Marks every step of the samples in `missing` `[B]` as padded.
fn with_missing<B: Backend>(
    padding: Option<Tensor<B, 2, Bool>>,
    missing: Tensor<B, 1, Bool>,
    [b, t]: [usize; 2],
) -> Tensor<B, 2, Bool> {
    let missing = missing.reshape([b, 1]).expand([b, t]);
    match padding {
        Some(p) => p.bool_or(missing),
        None => missing,
    }
}

impl<B: Backend> VideoTokens<B> {
    /// Tokens `[B, T', H', W', C]` and the class embedding `[B, C]`, nothing padded.
    pub fn new(tokens: Tensor<B, 5>, class_embedding: Option<Tensor<B, 2>>) -> Self {
        Self {
            tokens,
            class_embedding,
            padding: None,
        }
    }

    /// The same tokens with the samples flagged in `missing` `[B]` treated as having no video.
    pub fn with_missing(mut self, missing: Tensor<B, 1, Bool>) -> Self {
        let [b, t, ..] = self.tokens.dims();
        self.padding = Some(with_missing(self.padding, missing, [b, t]));
        self
    }
}

impl<B: Backend> SkeletonTokens<B> {
    /// Tokens `[B, T'', V, C]`, nothing padded.
    pub fn new(tokens: Tensor<B, 4>) -> Self {
        Self {
            tokens,
            padding: None,
            pooled: false,
        }
    }

    /// Tokens already averaged over each of the configuration's body parts, `[B, T'', P, C]`
    /// (P regions of [`CmtfConfig::skeleton_regions`]), nothing padded.
    pub fn pooled(tokens: Tensor<B, 4>) -> Self {
        Self {
            pooled: true,
            ..Self::new(tokens)
        }
    }

    /// The same tokens with the samples flagged in `missing` `[B]` treated as having no
    /// skeleton.
    pub fn with_missing(mut self, missing: Tensor<B, 1, Bool>) -> Self {
        let [b, t, ..] = self.tokens.dims();
        self.padding = Some(with_missing(self.padding, missing, [b, t]));
        self
    }
}

/// What [`Cmtf`] computes for a batch.
#[derive(Debug, Clone)]
pub struct CmtfOutput<B: Backend> {
    /// Fused class scores `[B, classes]`.
    pub logits: Tensor<B, 2>,
    /// Fused embedding `[B, CmtfConfig::fused_width]` (cross variant: the pooled video and
    /// skeleton streams side by side, zeros for an absent one; joint: the [CLS] token), normed:
    /// the input of the fused head.
    pub embedding: Tensor<B, 2>,
    /// Auxiliary video-only scores `[B, classes]` (meaningless where the video is absent).
    pub video_logits: Tensor<B, 2>,
    /// Auxiliary skeleton-only scores `[B, classes]`.
    pub skeleton_logits: Tensor<B, 2>,
    /// `[B]`: the sample had video tokens (after modality dropout).
    pub video_present: Tensor<B, 1, Bool>,
    /// `[B]`: the sample had skeleton tokens (after modality dropout).
    pub skeleton_present: Tensor<B, 1, Bool>,
}
