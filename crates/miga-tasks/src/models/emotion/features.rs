//! Emotion features as InterFusion reads them: per video ([`EmotionFeatures`], from a feature
//! folder by [`emotion_items`]) and batched, padded to the longest sequence.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use miga_fusion::{InterFusionVariant, Sequence};
use serde::{Deserialize, Serialize};

use super::{EMOTION, EmotionExtractStreams};
use crate::features::{FeatureSet, item_label};
use crate::{Error, Result};

/// Which streams an emotion model sees: both (InterFusion), one (the baselines), or both
/// through late fusion (the mean of two single-stream models' logits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmotionStreams {
    /// Faces and context, InterFusion.
    #[default]
    Both,
    /// Faces only.
    Face,
    /// Context only.
    Context,
    /// Faces and context, late fusion.
    Late,
}

impl EmotionStreams {
    /// The InterFusion variant that sees these streams.
    pub fn variant(self) -> InterFusionVariant {
        match self {
            Self::Both => InterFusionVariant::Full,
            Self::Face => InterFusionVariant::FaceOnly,
            Self::Context => InterFusionVariant::ContextOnly,
            Self::Late => InterFusionVariant::LateFusion,
        }
    }
}

/// One video's emotion features.
#[derive(Debug, Clone)]
pub struct EmotionFeatures {
    /// `[faces, face_dim]`, none without a usable face.
    pub(crate) face: Option<TensorData>,
    /// `[faces, 7]`, when extracted.
    pub(crate) expressions: Option<TensorData>,
    /// `[windows, context_dim]`, when the model sees the context.
    pub(crate) context: Option<TensorData>,
    pub(crate) label: i64,
}

impl EmotionFeatures {
    /// 1 Win, 0 Lose, -1 unknown.
    pub fn label(&self) -> i64 {
        self.label
    }
}

/// The emotion feature items of a set, in id order, with the streams `streams` sees: a set
/// extracted without one of them is an error saying so (a video without a usable face has no
/// face tensors either way: the model masks its face stream).
pub fn emotion_items(
    set: &FeatureSet,
    path: &Path,
    streams: EmotionStreams,
) -> Result<Vec<(String, EmotionFeatures)>> {
    if set.kind.task != EMOTION {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!("features for task `{}`, not {EMOTION}", set.kind.task),
        });
    }
    let extracted = serde_json::from_str::<serde_json::Value>(&set.kind.settings)
        .ok()
        .and_then(|d| serde_json::from_value(d["settings"]["streams"].clone()).ok())
        .unwrap_or_default();
    let (face, context) = (
        streams != EmotionStreams::Context,
        streams != EmotionStreams::Face,
    );
    let missing = match extracted {
        EmotionExtractStreams::Context if face => Some("face"),
        EmotionExtractStreams::Face if context => Some("context"),
        _ => None,
    };
    if let Some(missing) = missing {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!(
                "these features were extracted without the {missing} stream, which the model's \
                 streams ({streams:?}) need; extract it, or train --streams {} on them",
                if missing == "face" { "context" } else { "face" }
            ),
        });
    }
    set.items
        .iter()
        .map(|(id, tensors)| {
            let context = match context {
                true => Some(tensors.get("context_embeddings").cloned().ok_or_else(|| {
                    Error::Mismatch {
                        path: path.to_path_buf(),
                        reason: format!("item {id} has no `context_embeddings`"),
                    }
                })?),
                false => None,
            };
            let label = item_label(tensors).unwrap_or(-1);
            Ok((
                id.clone(),
                EmotionFeatures {
                    face: tensors.get("face_embeddings").cloned().filter(|_| face),
                    expressions: tensors.get("face_expressions").cloned().filter(|_| face),
                    context,
                    label,
                },
            ))
        })
        .collect()
}

/// A batch of videos' emotion features, padded to the longest sequence of the batch.
#[derive(Debug, Clone)]
pub struct EmotionFeatureBatch<B: Backend> {
    /// Face embeddings (none when no video of the batch has a face).
    pub face: Option<Sequence<B>>,
    /// Expression probabilities, one row per face (when extracted).
    pub expressions: Option<Tensor<B, 3>>,
    /// Context embeddings (none when the model does not see them).
    pub context: Option<Sequence<B>>,
    /// `[B]`: 1 Win, 0 Lose.
    pub labels: Tensor<B, 1, Int>,
}

/// Stacks [`EmotionFeatures`], padding sequences.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmotionFeatureBatcher;

/// `[B, N, C]` from per-item `[n_i, C]` rows (`None`: none), zero-padded, with the padding mask.
fn pad<B: Backend>(
    rows: &[Option<&TensorData>],
    device: &B::Device,
) -> Option<(Tensor<B, 3>, Tensor<B, 2, Bool>)> {
    let width = rows.iter().flatten().next()?.shape[1];
    let longest = rows.iter().flatten().map(|r| r.shape[0]).max()?.max(1);
    let mut values = vec![0.0f32; rows.len() * longest * width];
    let mut padding = vec![true; rows.len() * longest];
    for (i, row) in rows.iter().enumerate() {
        let Some(data) = row else { continue };
        let n = data.shape[0];
        let v = data.to_vec::<f32>().unwrap_or_default();
        let at = i * longest * width;
        values[at..at + v.len()].copy_from_slice(&v);
        padding[i * longest..i * longest + n].fill(false);
    }
    Some((
        Tensor::from_data(
            TensorData::new(values, [rows.len(), longest, width]),
            device,
        ),
        Tensor::from_data(TensorData::new(padding, [rows.len(), longest]), device),
    ))
}

impl<B: Backend> Batcher<B, EmotionFeatures, EmotionFeatureBatch<B>> for EmotionFeatureBatcher {
    fn batch(&self, items: Vec<EmotionFeatures>, device: &B::Device) -> EmotionFeatureBatch<B> {
        let faces: Vec<_> = items.iter().map(|i| i.face.as_ref()).collect();
        let expressions: Vec<_> = items.iter().map(|i| i.expressions.as_ref()).collect();
        let contexts: Vec<_> = items.iter().map(|i| i.context.as_ref()).collect();
        let labels: Vec<i64> = items.iter().map(|i| i.label).collect();
        EmotionFeatureBatch {
            face: pad(&faces, device).map(|(t, p)| Sequence::new(t).with_padding(p)),
            expressions: pad(&expressions, device).map(|(t, _)| t),
            context: pad(&contexts, device).map(|(t, p)| Sequence::new(t).with_padding(p)),
            labels: Tensor::from_data(TensorData::new(labels.clone(), [labels.len()]), device),
        }
    }
}
