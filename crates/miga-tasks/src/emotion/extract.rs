//! `miga extract --task emotion`: per video, SwinFace embeddings of its faces and MViTv2
//! embeddings of its context windows, written as feature shards.

use std::collections::BTreeMap;
use std::path::Path;

use burn::data::dataset::Dataset;
use burn::prelude::*;
use miga_datasets::emotion::{EmotionConfig, EmotionDataset, EmotionRecord};
use rayon::prelude::*;

use crate::Result;
use crate::features::{ExtractSummary, FeatureKind, FeatureWriter, part_todo};
use crate::models::Weights;
use crate::models::emotion::{Backbones, EMOTION, EmotionExtraction};

/// Extracts part `part = (i, n)` of the emotion videos `records` into `out`: per video
/// `context_embeddings` `[windows, C]` (MViTv2's normalised class token of each window),
/// `face_embeddings` `[faces, 512]` and, with `expressions`, `face_expressions` `[faces, 7]`
/// (absent for a video without a usable face), and `label` (1 Win, 0 Lose, -1 unknown).
/// Resumes an earlier run of the same part and settings; `progress(done, total)` is called after
/// each video.
pub fn extract_emotion<B: Backend>(
    records: Vec<EmotionRecord>,
    settings: &EmotionExtraction,
    weights: &Weights,
    out: &Path,
    part: (usize, usize),
    device: &B::Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExtractSummary> {
    let description = serde_json::json!({
        "settings": settings,
        "mvit_weights": weights.mvit,
        "swinface_weights": weights.swinface,
    });
    let kind = FeatureKind {
        task: EMOTION.into(),
        settings: description.to_string(),
    };
    let mut writer = FeatureWriter::open(out, kind, part, settings.shard_items)?;
    let (clips, todo) = part_todo(records, |r| &r.id, part, &writer);
    let resumed = clips - todo.len();
    // Only the streams extracted are decoded; the skeleton tensor is not used here.
    let dataset = EmotionDataset::new(
        todo,
        EmotionConfig {
            windows: if settings.streams.context() {
                settings.video.windows
            } else {
                0
            },
            faces: if settings.streams.face() {
                settings.video.faces
            } else {
                0
            },
            skeleton_frames: 0,
            ..settings.video.clone()
        },
    )?;
    let models = Backbones::<B>::new(settings, weights, device)?;
    let total = dataset.len();
    let mut failed = Vec::new();
    let mut extracted = 0;
    progress(0, total);
    // Two videos decode in parallel while the backbones run on one at a time.
    for start in (0..total).step_by(2) {
        let items: Vec<_> = (start..(start + 2).min(total))
            .into_par_iter()
            .filter_map(|i| dataset.get(i))
            .collect();
        for item in items {
            let data = match item.data {
                Ok(data) => data,
                Err(reason) => {
                    failed.push((item.id, reason));
                    continue;
                }
            };
            let mut tensors = BTreeMap::from([(
                "label".to_string(),
                TensorData::new(vec![item.label.map_or(-1.0, |l| l as f32)], [1]),
            )]);
            if let (Some(mvit), Some(windows)) = (&models.mvit, data.context) {
                let context = Tensor::<B, 5>::from_data(windows, device);
                tensors.insert(
                    "context_embeddings".to_string(),
                    miga_kernels::on_cpu_workers::<B, _>(|| mvit.try_forward(context))?
                        .embedding
                        .into_data(),
                );
            }
            let faces = data.face_frames.len();
            if let Some(swinface) = models.swinface.as_ref().filter(|_| faces > 0) {
                let crops = Tensor::<B, 4>::from_data(data.faces, device);
                let (mut embeddings, mut expressions) = (Vec::new(), Vec::new());
                for first in (0..faces).step_by(settings.face_batch.max(1)) {
                    let n = settings.face_batch.max(1).min(faces - first);
                    let crops = crops.clone().narrow(0, first, n);
                    let out = miga_kernels::on_cpu_workers::<B, _>(|| swinface.try_forward(crops))?;
                    expressions.extend(out.expression_probabilities());
                    embeddings.push(out.embedding);
                }
                tensors.insert(
                    "face_embeddings".into(),
                    Tensor::cat(embeddings, 0).into_data(),
                );
                if !expressions.is_empty() {
                    tensors.insert(
                        "face_expressions".into(),
                        Tensor::cat(expressions, 0).into_data(),
                    );
                }
            }
            writer.push(&item.id, tensors)?;
            extracted += 1;
        }
        progress((start + 2).min(total), total);
    }
    writer.finish()?;
    Ok(ExtractSummary {
        clips,
        resumed,
        extracted,
        failed,
    })
}
