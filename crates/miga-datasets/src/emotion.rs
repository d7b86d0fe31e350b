//! Emotion videos for Burn: one item per video, with context windows of RGB frames spread over
//! the whole video (for MViTv2 context embeddings), aligned face crops spread over it (for
//! SwinFace face embeddings) and the video's skeleton subsampled in time (face and body
//! keypoints), labelled Win / Lose.

use std::path::PathBuf;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::annotations::LabelTable;
use crate::classes::Outcome;
use crate::clips::{Cut, FrameTransform, SkeletonSource, SkeletonTransform, Sorted, source_path};
use crate::faces::{CROP_SIZE, align, landmarks};
use crate::protocols::{MigaLayout, Split};
use crate::sampling::{SeededRng, TemporalSampling, sample_frames};
use crate::skeleton::Skeleton;
use crate::video::{Picture, Video};
use crate::{Error, Result};

/// One video of the emotion task and where its data is.
#[derive(Debug, Clone, PartialEq)]
pub struct EmotionRecord {
    /// The video id as the data names it.
    pub id: String,
    /// Win / Lose, when known.
    pub outcome: Option<Outcome>,
    /// The video (MP4 or frame folder).
    pub rgb: Option<PathBuf>,
    /// The skeleton.
    pub skeleton: Option<SkeletonSource>,
}

impl EmotionRecord {
    /// The videos of a MiGA layout in `split`, with outcomes from an official-format label
    /// table (the MiGA folders do not carry Win / Lose; ids match by number: `0007` is video 7).
    pub fn from_miga(layout: &MigaLayout, split: Split, labels: &LabelTable) -> Vec<Self> {
        let outcomes = labels.videos();
        layout
            .videos
            .iter()
            .filter(|(_, v)| v.split == Some(split))
            .map(|(id, v)| Self {
                id: id.clone(),
                outcome: id
                    .parse::<u32>()
                    .ok()
                    .and_then(|n| outcomes.get(&n))
                    .map(|s| s.outcome),
                rgb: v.video.clone(),
                skeleton: v.skeleton.clone().map(SkeletonSource::Xlsx),
            })
            .collect()
    }
}

/// How an emotion video is sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmotionConfig {
    /// Context windows per video, spread evenly over it (0: no context stream, which needs a
    /// face stream).
    pub windows: usize,
    /// Frames per window.
    pub frames: usize,
    /// Frame step inside a window (2 at 25 fps: a 16-frame window spans 1.3 s).
    pub stride: usize,
    /// Skeleton frames per video, spread evenly over it (0: no skeleton tensor; a video then
    /// needs a skeleton only for its faces or the person crop).
    pub skeleton_frames: usize,
    /// Aligned face crops per video, spread evenly over the frames whose five face landmarks
    /// OpenPose found (0: none).
    pub faces: usize,
    /// Minimum OpenPose confidence of the face points a crop is aligned on.
    pub face_confidence: f32,
    /// RGB frames to tensor.
    pub rgb: FrameTransform,
    /// Skeleton preparation.
    pub skeleton: SkeletonTransform,
}

impl Default for EmotionConfig {
    fn default() -> Self {
        Self {
            windows: 8,
            frames: 16,
            stride: 2,
            skeleton_frames: 256,
            faces: 32,
            face_confidence: 0.3,
            rgb: FrameTransform::default(),
            skeleton: SkeletonTransform::default(),
        }
    }
}

/// The tensors of one emotion video.
#[derive(Debug, Clone)]
pub struct EmotionData {
    /// `[windows, 3, T, crop, crop]` (none with `windows = 0`).
    pub context: Option<TensorData>,
    /// `[3, skeleton_frames, V, 1]` (none with `skeleton_frames = 0`).
    pub skeleton: Option<TensorData>,
    /// `[n, 3, 112, 112]` SwinFace inputs (see [`crate::faces::FaceCrop::normalised`]), `n` at
    /// most `faces`: fewer when fewer frames have a face.
    pub faces: TensorData,
    /// The frame of each face.
    pub face_frames: Vec<usize>,
}

/// One emotion video ready to batch, or why it failed.
#[derive(Debug, Clone)]
pub struct EmotionItem {
    /// Video id.
    pub id: String,
    /// 1 for Win, 0 for Lose, when known.
    pub label: Option<usize>,
    /// The tensors, or the error.
    pub data: std::result::Result<EmotionData, String>,
}

/// A dataset of emotion videos.
pub struct EmotionDataset {
    records: Vec<EmotionRecord>,
    config: EmotionConfig,
    /// Each video's skeleton tensor (sampling is fixed), prepared once when the dataset is
    /// built (none with `skeleton_frames = 0`), or why it could not be.
    skeletons: Vec<std::result::Result<Option<TensorData>, String>>,
}

impl EmotionDataset {
    /// A dataset over `records`: checks the configuration and prepares every video's skeleton
    /// (in parallel); a video whose skeleton fails gives a failed item, not an error here.
    pub fn new(records: Vec<EmotionRecord>, config: EmotionConfig) -> Result<Self> {
        let bad = |reason: String| Error::request("emotion configuration", reason);
        if config.frames == 0 || config.stride == 0 {
            return Err(bad("frames and stride must be positive".into()));
        }
        if config.windows == 0 && config.faces == 0 {
            return Err(bad(
                "no stream: windows (context) and faces are both 0".into()
            ));
        }
        config.rgb.check().map_err(bad)?;
        config.skeleton.check().map_err(bad)?;
        let skeletons = records
            .par_iter()
            .map(|r| {
                (config.skeleton_frames > 0)
                    .then(|| skeleton_tensor(r, &config).map_err(|e| e.to_string()))
                    .transpose()
            })
            .collect();
        Ok(Self {
            records,
            config,
            skeletons,
        })
    }

    /// The frames of up to `faces` face crops: spread evenly over the frames (of the first
    /// `length`) of `skeleton` whose face landmarks are found.
    fn face_frames(&self, skeleton: &Skeleton, length: usize) -> Vec<usize> {
        let config = &self.config;
        let found: Vec<usize> = (0..length.min(skeleton.frames()))
            .filter(|&t| landmarks(skeleton, t, config.face_confidence).is_ok())
            .collect();
        let take = config.faces.min(found.len());
        (0..take)
            .map(|i| found[(2 * i + 1) * found.len() / (2 * take)])
            .collect()
    }

    /// Context windows (none with `windows = 0`) and face crops, decoded in one pass over the
    /// video.
    #[allow(clippy::type_complexity)]
    fn frames(
        &self,
        record: &EmotionRecord,
    ) -> Result<(Option<TensorData>, TensorData, Vec<usize>)> {
        let config = &self.config;
        let path = record.rgb.as_ref().ok_or_else(|| {
            Error::request(&record.id, format!("video {} has no video", record.id))
        })?;
        let mut video = Video::open(path)?;
        let length = video.info().frames;
        // The raw skeleton is read here, once, for the faces (not kept for every video: real
        // ones are long).
        let person = config.windows > 0 && config.rgb.crops_person();
        let skeleton = match &record.skeleton {
            Some(source) if config.faces > 0 || person => Some(source.read()?),
            None if config.faces > 0 || person => {
                return Err(Error::request(
                    &record.id,
                    format!(
                        "video {} has no skeleton, which places its {}",
                        record.id,
                        if config.faces > 0 {
                            "face crops"
                        } else {
                            "person crop"
                        }
                    ),
                ));
            }
            _ => None,
        };
        let body = skeleton
            .as_ref()
            .filter(|_| person)
            .and_then(Skeleton::body_frame);
        let face_frames = skeleton
            .as_ref()
            .map_or_else(Vec::new, |s| self.face_frames(s, length));
        let span = (config.frames - 1) * config.stride + 1;
        let starts = match config.windows {
            0 => Vec::new(),
            windows => sample_frames(
                0,
                length.saturating_sub(span),
                windows,
                TemporalSampling::Uniform,
                &mut SeededRng::new(0),
            ),
        };
        let frames: Vec<usize> = starts
            .iter()
            .flat_map(|&start| {
                (0..config.frames).map(move |i| (start + i * config.stride).min(length - 1))
            })
            .collect();
        let context_frames = frames.len();
        let frames: Vec<usize> = frames.into_iter().chain(face_frames.clone()).collect();
        let mut decoded = video.pictures(&frames)?;
        let faces: Vec<_> = decoded
            .split_off(context_frames)
            .into_iter()
            .map(Picture::into_rgb)
            .collect();
        let context = decoded;
        let mut values = Vec::new();
        let mut dims = vec![config.windows];
        for window in context.chunks(config.frames) {
            let clip = config.rgb.apply(window, path, Cut::Centre, body.as_ref())?;
            if dims.len() == 1 {
                dims.extend(clip.shape.iter());
            }
            values.extend(
                clip.to_vec::<f32>()
                    .map_err(|e| Error::request(path, format!("{e:?}")))?,
            );
        }
        let mut crops = Vec::new();
        for (frame, &t) in faces.iter().zip(&face_frames) {
            let skeleton = skeleton.as_ref().expect("faces were found on it");
            let crop = align(frame, skeleton, t, config.face_confidence)
                .map_err(|e| Error::request(path, format!("frame {t}: {e}")))?;
            crops.extend(crop.normalised());
        }
        let size = CROP_SIZE as usize;
        Ok((
            (config.windows > 0).then(|| TensorData::new(values, dims)),
            TensorData::new(crops, [face_frames.len(), 3, size, size]),
            face_frames,
        ))
    }
}

/// A video's whole skeleton, prepared and sampled uniformly to `skeleton_frames`.
fn skeleton_tensor(record: &EmotionRecord, config: &EmotionConfig) -> Result<TensorData> {
    let source = record.skeleton.as_ref().ok_or_else(|| {
        Error::request(&record.id, format!("video {} has no skeleton", record.id))
    })?;
    let (skeleton, _) = config.skeleton.prepare(source)?;
    let frames = sample_frames(
        0,
        skeleton.frames() - 1,
        config.skeleton_frames,
        TemporalSampling::Uniform,
        &mut SeededRng::new(0),
    );
    config
        .skeleton
        .tensor(&skeleton, &frames, false)
        .map_err(|e| Error::request(source_path(source), e))
}

impl Dataset<EmotionItem> for EmotionDataset {
    fn get(&self, index: usize) -> Option<EmotionItem> {
        let record = self.records.get(index)?;
        Some(EmotionItem {
            id: record.id.clone(),
            label: record.outcome.map(Outcome::index),
            data: self.skeletons[index].clone().and_then(|skeleton| {
                let (context, faces, face_frames) =
                    self.frames(record).map_err(|e| e.to_string())?;
                Ok(EmotionData {
                    context,
                    skeleton,
                    faces,
                    face_frames,
                })
            }),
        })
    }

    fn len(&self) -> usize {
        self.records.len()
    }
}

/// A batch of emotion videos.
#[derive(Debug, Clone)]
pub struct EmotionBatch<B: Backend> {
    /// Video ids, in row order.
    pub ids: Vec<String>,
    /// `[B]`: 1 Win, 0 Lose (when every video is labelled).
    pub labels: Option<Tensor<B, 1, Int>>,
    /// `[B * windows, 3, T, crop, crop]`: every window of every video, video-major, as MViTv2
    /// takes clips.
    pub context: Option<Tensor<B, 5>>,
    /// `[B, 3, skeleton_frames, V, 1]`.
    pub skeleton: Option<Tensor<B, 5>>,
    /// `[sum of face_counts, 3, 112, 112]`: every video's face crops, video-major (none when
    /// no video has one).
    pub faces: Option<Tensor<B, 4>>,
    /// Face crops of each video, in row order.
    pub face_counts: Vec<usize>,
    /// Videos left out, with why.
    pub skipped: Vec<(String, String)>,
}

/// Stacks [`EmotionItem`]s into an [`EmotionBatch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EmotionBatcher;

impl<B: Backend> Batcher<B, EmotionItem, EmotionBatch<B>> for EmotionBatcher {
    fn batch(&self, items: Vec<EmotionItem>, device: &B::Device) -> EmotionBatch<B> {
        let sorted = Sorted::new(items.into_iter().map(|i| (i.id, i.label, i.data)));
        let labels = sorted.label_tensor(device);
        let face_counts: Vec<usize> = sorted.data.iter().map(|d| d.face_frames.len()).collect();
        let mut context = Vec::new();
        let mut skeleton = Vec::new();
        let mut faces = Vec::new();
        for data in sorted.data {
            if let Some(windows) = data.context {
                context.push(Tensor::<B, 5>::from_data(windows, device));
            }
            if let Some(sequence) = data.skeleton {
                skeleton.push(Tensor::<B, 4>::from_data(sequence, device).unsqueeze::<5>());
            }
            if !data.face_frames.is_empty() {
                faces.push(Tensor::<B, 4>::from_data(data.faces, device));
            }
        }
        EmotionBatch {
            labels,
            context: (!context.is_empty()).then(|| Tensor::cat(context, 0)),
            skeleton: (!skeleton.is_empty()).then(|| Tensor::cat(skeleton, 0)),
            faces: (!faces.is_empty()).then(|| Tensor::cat(faces, 0)),
            face_counts,
            ids: sorted.ids,
            skipped: sorted.skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::synth::tests::small;

    #[test]
    fn emotion_items_and_batches() {
        let root = small(2);
        let layout = MigaLayout::scan(&root).unwrap();
        let labels = LabelTable::read(root.join(crate::synth::LABELS_CSV)).unwrap();
        let records = EmotionRecord::from_miga(&layout, Split::Train, &labels);
        assert_eq!(
            records.iter().map(|r| r.outcome).collect::<Vec<_>>(),
            [Some(Outcome::Win), Some(Outcome::Lose)]
        );
        let config = EmotionConfig {
            windows: 3,
            frames: 4,
            skeleton_frames: 32,
            faces: 5,
            rgb: FrameTransform {
                resize: 64,
                crop: 56,
                ..FrameTransform::default()
            },
            ..EmotionConfig::default()
        };
        let dataset = EmotionDataset::new(records, config).unwrap();
        let items: Vec<EmotionItem> = (0..2).map(|i| dataset.get(i).unwrap()).collect();
        let data = items[0].data.as_ref().unwrap();
        let frames = &data.face_frames;
        assert_eq!(frames.len(), 5);
        assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
        let batch: EmotionBatch<Flex> = EmotionBatcher.batch(items, &Default::default());
        assert_eq!(batch.context.unwrap().dims(), [6, 3, 4, 56, 56]);
        assert_eq!(batch.face_counts, [5, 5]);
        assert_eq!(batch.faces.unwrap().dims(), [10, 3, 112, 112]);
        assert_eq!(batch.skeleton.unwrap().dims(), [2, 3, 32, 137, 1]);
        assert_eq!(
            batch
                .labels
                .unwrap()
                .into_data()
                .iter::<i64>()
                .collect::<Vec<_>>(),
            [1, 0]
        );
        assert!(
            EmotionDataset::new(
                Vec::new(),
                EmotionConfig {
                    windows: 0,
                    faces: 0,
                    ..EmotionConfig::default()
                }
            )
            .is_err()
        );
    }
}
