//! Micro-gesture features as the fusion model reads them: per clip ([`FeatureItem`], from a
//! feature folder by [`feature_items`]) and batched ([`FeatureBatch`]).

use std::collections::BTreeMap;
use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use miga_datasets::clips::Modalities;
use miga_fusion::CmtfConfig;
use serde::{Deserialize, Serialize};

use super::{FeatureDescription, MICRO_GESTURE};
use crate::features::{FeatureSet, item_label};
use crate::standardise::channel_moments;
use crate::{Error, Result};

/// Which streams a model uses: both (fusion) or one (the single-modality baselines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Streams {
    /// Video and skeleton, fused.
    #[default]
    Both,
    /// Video only.
    Video,
    /// Skeleton only.
    Skeleton,
}

impl Streams {
    /// The clip streams a model of these streams needs.
    pub fn modalities(self) -> Modalities {
        match self {
            Self::Both => Modalities::Both,
            Self::Video => Modalities::Rgb,
            Self::Skeleton => Modalities::Skeleton,
        }
    }
}

/// One clip's features: those of the streams a model sees.
#[derive(Debug, Clone)]
pub struct FeatureItem {
    pub(crate) video: Option<TensorData>,
    pub(crate) class: Option<TensorData>,
    pub(crate) skeleton: Option<TensorData>,
    pub(crate) label: i64,
    /// Whether `skeleton` is already averaged over the fusion's body parts.
    pub(crate) skeleton_pooled: bool,
}

impl FeatureItem {
    /// An unlabelled clip from its video tokens `[T', k, k, C]`, class embedding `[C]` and
    /// skeleton tokens `[T'', V, C_s]`, those extracted.
    pub(crate) fn unlabelled(
        video: Option<TensorData>,
        class: Option<TensorData>,
        skeleton: Option<TensorData>,
    ) -> Self {
        Self {
            video,
            class,
            skeleton,
            label: -1,
            skeleton_pooled: false,
        }
    }

    /// The class index, or -1 for an unlabelled clip.
    pub fn label(&self) -> i64 {
        self.label
    }
}

/// A batch of clip features, of the streams a model sees.
#[derive(Debug, Clone)]
pub struct FeatureBatch<B: Backend> {
    /// `[B, T', k, k, C]`.
    pub video: Option<Tensor<B, 5>>,
    /// `[B, C]`.
    pub class: Option<Tensor<B, 2>>,
    /// `[B, T'', V, C_s]`, or `[B, T'', P, C_s]` averaged over the fusion's P body parts.
    pub skeleton: Option<Tensor<B, 4>>,
    /// Whether `skeleton` is averaged over the body parts already.
    pub skeleton_pooled: bool,
    /// `[B]`.
    pub labels: Tensor<B, 1, Int>,
}

/// Stacks [`FeatureItem`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeatureBatcher;

/// `parts` stacked along a new first axis; none when any item lacks its part.
fn stack<B: Backend, const D: usize, const E: usize>(
    parts: Vec<Option<&TensorData>>,
    device: &B::Device,
) -> Option<Tensor<B, E>> {
    let tensors: Option<Vec<Tensor<B, E>>> = parts
        .into_iter()
        .map(|p| Some(Tensor::<B, D>::from_data(p?.clone(), device).unsqueeze()))
        .collect();
    tensors.filter(|t| !t.is_empty()).map(|t| Tensor::cat(t, 0))
}

impl<B: Backend> Batcher<B, FeatureItem, FeatureBatch<B>> for FeatureBatcher {
    fn batch(&self, items: Vec<FeatureItem>, device: &B::Device) -> FeatureBatch<B> {
        let labels: Vec<i64> = items.iter().map(|i| i.label).collect();
        FeatureBatch {
            video: stack::<B, 4, 5>(items.iter().map(|i| i.video.as_ref()).collect(), device),
            class: stack::<B, 1, 2>(items.iter().map(|i| i.class.as_ref()).collect(), device),
            skeleton: stack::<B, 3, 4>(items.iter().map(|i| i.skeleton.as_ref()).collect(), device),
            skeleton_pooled: {
                let pooled = items.first().is_some_and(|i| i.skeleton_pooled);
                debug_assert!(items.iter().all(|i| i.skeleton_pooled == pooled));
                pooled
            },
            labels: Tensor::from_data(TensorData::new(labels.clone(), [labels.len()]), device),
        }
    }
}

/// The labelled and unlabelled items of a micro-gesture feature set, in id order, with the
/// tensors `streams` needs (a feature set without them is an error saying which are missing
/// and how the set was extracted). With `fusion`, each item's skeleton tokens are averaged over
/// the fusion's body parts as they are read (what the fusion module would do with every batch):
/// P part tokens a step are kept instead of V joint tokens (1 or 3 instead of 55 for
/// `imigue-upper-hands`).
pub fn feature_items(
    set: &FeatureSet,
    path: &Path,
    fusion: Option<&CmtfConfig>,
    streams: Streams,
) -> Result<Vec<(String, FeatureItem)>> {
    if set.kind.task != MICRO_GESTURE {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!("features for task `{}`, not {MICRO_GESTURE}", set.kind.task),
        });
    }
    let (video, skeleton) = (streams != Streams::Skeleton, streams != Streams::Video);
    let needed: Vec<&str> = [
        (video, "video_tokens"),
        (video, "video_class"),
        (skeleton, "skeleton_tokens"),
    ]
    .into_iter()
    .filter_map(|(needed, name)| needed.then_some(name))
    .collect();
    if let Some((id, tensors)) = set.items.iter().next()
        && let Some(missing) = needed.iter().find(|n| !tensors.contains_key(**n))
    {
        let extracted = FeatureDescription::from_json(&set.kind.settings, path)
            .map(|d| format!("{:?}", d.settings.clip.modalities).to_lowercase())
            .unwrap_or_else(|_| "other settings".into());
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!(
                "the {} streams need `{missing}`, which item {id} does not have: these features \
                 were extracted with modalities = {extracted}; extract the missing stream, or \
                 train a single-stream model on them (--streams video or --streams skeleton)",
                match streams {
                    Streams::Both => "fused",
                    Streams::Video => "video",
                    Streams::Skeleton => "skeleton",
                }
            ),
        });
    }
    let mut items = Vec::new();
    for (id, tensors) in &set.items {
        let tensor = |name: &str| {
            tensors.get(name).ok_or_else(|| Error::Mismatch {
                path: path.to_path_buf(),
                reason: format!("item {id} has no `{name}`"),
            })
        };
        let get = |wanted: bool, name: &str| -> Result<Option<TensorData>> {
            wanted.then(|| tensor(name).cloned()).transpose()
        };
        let label = item_label(tensors).ok_or_else(|| Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!("item {id} has no `label`"),
        })?;
        let skeleton_tokens = match (skeleton, fusion) {
            (false, _) => None,
            (true, Some(fusion)) => Some(
                average_parts(tensor("skeleton_tokens")?, fusion).map_err(|reason| {
                    Error::Mismatch {
                        path: path.to_path_buf(),
                        reason: format!("item {id}: skeleton_tokens {reason}"),
                    }
                })?,
            ),
            (true, None) => get(true, "skeleton_tokens")?,
        };
        items.push((
            id.clone(),
            FeatureItem {
                video: get(video, "video_tokens")?,
                class: get(video, "video_class")?,
                skeleton: skeleton_tokens,
                label,
                skeleton_pooled: fusion.is_some(),
            },
        ));
    }
    Ok(items)
}

/// Skeleton tokens `[T, V, C]` averaged over the body parts of `fusion`
/// ([`CmtfConfig::skeleton_regions`]): `[T, P, C]`.
fn average_parts(
    tokens: &TensorData,
    fusion: &CmtfConfig,
) -> std::result::Result<TensorData, String> {
    let &[t, v, c] = tokens.shape.as_slice() else {
        return Err(format!("have shape {:?}, not [T, V, C]", tokens.shape));
    };
    if v == 0 || c == 0 {
        return Err(format!(
            "have shape {:?}: no joints or no channels",
            tokens.shape
        ));
    }
    let regions = fusion.skeleton_regions(v);
    if let Some(j) = regions.iter().flatten().find(|&&j| j >= v) {
        return Err(format!(
            "have {v} joints, but skeleton_parts names joint {j}"
        ));
    }
    let values = tokens.as_slice::<f32>().map_err(|e| format!("{e:?}"))?;
    let mut out = vec![0.0f32; t * regions.len() * c];
    for (step, rows) in values.chunks_exact(v * c).enumerate() {
        for (r, region) in regions.iter().enumerate() {
            let sum = &mut out[(step * regions.len() + r) * c..][..c];
            for &j in region {
                sum.iter_mut()
                    .zip(&rows[j * c..(j + 1) * c])
                    .for_each(|(s, &x)| *s += x);
            }
            let scale = 1.0 / region.len().max(1) as f32;
            sum.iter_mut().for_each(|s| *s *= scale);
        }
    }
    Ok(TensorData::new(out, [t, regions.len(), c]))
}

/// Subtracts from each item's video tokens and class embedding their per-channel means over
/// the items of the same video (see [`TrainConfig::transductive_centring`]).
pub fn centre_video_features(items: &mut [(String, FeatureItem)]) {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (id, _)) in items.iter().enumerate() {
        let video = id.rsplit_once('_').map_or(id.as_str(), |(video, _)| video);
        groups.entry(video.to_string()).or_default().push(i);
    }
    type Field = fn(&mut FeatureItem) -> &mut Option<TensorData>;
    let fields: [Field; 2] = [|i| &mut i.video, |i| &mut i.class];
    for members in groups.values() {
        for field in fields {
            let Some(tensors): Option<Vec<TensorData>> = members
                .iter()
                .map(|&m| field(&mut items[m].1).clone())
                .collect()
            else {
                continue;
            };
            let width = tensors[0].shape.iter().last().copied().unwrap_or(1).max(1);
            let (mean, _) = channel_moments(&tensors, width);
            for (&m, tensor) in members.iter().zip(tensors) {
                let mut values = tensor.to_vec::<f32>().unwrap_or_default();
                for row in values.chunks_exact_mut(width) {
                    row.iter_mut().zip(&mean).for_each(|(x, &m)| *x -= m as f32);
                }
                *field(&mut items[m].1) = Some(TensorData::new(values, tensor.shape));
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeleton_tokens_are_averaged_per_body_part() {
        // Two steps of three joints, two channels.
        let tokens = TensorData::new((0..12).map(|v| v as f32).collect(), [2, 3, 2]);
        let parts = CmtfConfig::new().with_skeleton_parts(vec![vec![0, 1], vec![2]]);
        let pooled = average_parts(&tokens, &parts).unwrap();
        assert_eq!(pooled.shape, [2, 2, 2].into());
        let expected = [1.0f32, 2.0, 4.0, 5.0, 7.0, 8.0, 10.0, 11.0];
        assert_eq!(pooled.to_vec::<f32>().unwrap(), expected);
        let all = average_parts(&tokens, &CmtfConfig::new()).unwrap();
        assert_eq!(all.to_vec::<f32>().unwrap(), [2.0f32, 3.0, 8.0, 9.0]);
        let far = CmtfConfig::new().with_skeleton_parts(vec![vec![3]]);
        assert!(
            average_parts(&tokens, &far)
                .unwrap_err()
                .contains("joint 3")
        );
        let flat = TensorData::new(vec![0.0f32; 4], [4]);
        assert!(
            average_parts(&flat, &parts)
                .unwrap_err()
                .contains("[T, V, C]")
        );
        let empty = TensorData::new(Vec::<f32>::new(), [2, 0, 2]);
        assert!(
            average_parts(&empty, &parts)
                .unwrap_err()
                .contains("no joints")
        );
    }

    #[test]
    fn video_features_are_centred_per_video() {
        let item = |video: [f32; 4], class: [f32; 2]| FeatureItem {
            video: Some(TensorData::new(video.to_vec(), [2, 1, 1, 2])),
            class: Some(TensorData::new(class.to_vec(), [2])),
            skeleton: Some(TensorData::new(vec![7.0f32; 2], [1, 1, 2])),
            label: 0,
            skeleton_pooled: false,
        };
        let mut items = vec![
            ("0001_0".to_string(), item([1.0, 2.0, 3.0, 4.0], [1.0, 0.0])),
            ("0001_1".to_string(), item([5.0, 6.0, 7.0, 8.0], [3.0, 2.0])),
            ("0002_0".to_string(), item([1.0, 1.0, 2.0, 2.0], [4.0, 4.0])),
        ];
        centre_video_features(&mut items);
        let values = |t: &Option<TensorData>| t.as_ref().unwrap().to_vec::<f32>().unwrap();
        // Video 0001: token mean (4, 5), class mean (2, 1).
        assert_eq!(values(&items[0].1.video), [-3.0, -3.0, -1.0, -1.0]);
        assert_eq!(values(&items[1].1.video), [1.0, 1.0, 3.0, 3.0]);
        assert_eq!(values(&items[1].1.class), [1.0, 1.0]);
        assert_eq!(
            items[1].1.video.as_ref().unwrap().shape,
            [2, 1, 1, 2].into()
        );
        // A video of one clip keeps only its change over time; skeletons are left alone.
        assert_eq!(values(&items[2].1.video), [-0.5, -0.5, 0.5, 0.5]);
        assert_eq!(values(&items[2].1.class), [0.0, 0.0]);
        assert_eq!(values(&items[2].1.skeleton), [7.0, 7.0]);
    }
}
