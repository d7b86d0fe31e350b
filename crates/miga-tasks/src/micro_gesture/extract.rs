//! `miga extract --task micro-gesture`: MViTv2 video tokens and 2s-AGCN skeleton tokens of
//! every clip, written as feature shards (see [`crate::features`]).

use std::collections::BTreeMap;
use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use miga_datasets::clips::{ClipBatch, ClipBatcher, ClipDataset, ClipRecord};
use rayon::prelude::*;

use crate::Result;
use crate::features::{ExtractSummary, FeatureKind, FeatureWriter, part_todo, rows};
use crate::models::Weights;
use crate::models::micro_gesture::{
    Backbones, FeatureDescription, MICRO_GESTURE, MicroGestureExtraction,
};

/// Extracts part `part = (i, n)` of `records` (every n-th clip from the i-th, in id order) into
/// `out`, resuming an earlier run of the same part and settings. `progress(done, total)` is
/// called after each batch.
pub fn extract_micro_gesture<B: Backend>(
    records: Vec<ClipRecord>,
    settings: &MicroGestureExtraction,
    weights: &Weights,
    out: &Path,
    part: (usize, usize),
    device: &B::Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExtractSummary> {
    let (graph, settings) = settings.prepared()?;
    let kind = FeatureKind {
        task: MICRO_GESTURE.into(),
        settings: FeatureDescription {
            settings: settings.clone(),
            mvit_weights: weights.mvit.clone(),
            agcn_weights: weights.agcn.clone(),
        }
        .to_json(),
    };
    let mut writer = FeatureWriter::open(out, kind, part, settings.shard_items)?;
    let (clips, todo) = part_todo(records, |r| &r.id, part, &writer);
    let resumed = clips - todo.len();
    // Clips with problems (no skeleton, beyond the end) fail with their reason when loaded.
    let (dataset, _) = ClipDataset::new(todo, settings.clip.clone(), 0)?;
    let mut failed: Vec<(String, String)> = Vec::new();
    let models = Backbones::<B>::new(&settings, graph, weights, device)?;
    let mut extracted = 0;
    let total = dataset.len();
    progress(0, total);
    for start in (0..total).step_by(settings.batch.max(1)) {
        let end = (start + settings.batch.max(1)).min(total);
        let items: Vec<_> = (start..end)
            .into_par_iter()
            .filter_map(|i| dataset.get(i))
            .collect();
        let labels: Vec<Option<usize>> = items
            .iter()
            .filter(|i| i.data.is_ok())
            .map(|i| i.label)
            .collect();
        let batch: ClipBatch<B> = ClipBatcher.batch(items, device);
        failed.extend(batch.skipped);
        if batch.ids.is_empty() {
            progress(end, total);
            continue;
        }
        let features = models.features(batch.rgb, batch.skeleton, settings.video_grid)?;
        let columns = [
            ("video_tokens", features.video.map(rows)),
            ("video_class", features.class.map(rows)),
            ("skeleton_tokens", features.skeleton.map(rows)),
        ];
        let mut columns: Vec<(&str, std::vec::IntoIter<TensorData>)> = columns
            .into_iter()
            .filter_map(|(name, rows)| Some((name, rows?.into_iter())))
            .collect();
        for (row, id) in batch.ids.iter().enumerate() {
            let label = labels[row].map_or(-1.0, |l| l as f32);
            let mut tensors =
                BTreeMap::from([("label".to_string(), TensorData::new(vec![label], [1]))]);
            for (name, rows) in &mut columns {
                if let Some(tensor) = rows.next() {
                    tensors.insert(name.to_string(), tensor);
                }
            }
            writer.push(id, tensors)?;
            extracted += 1;
        }
        progress(end, total);
    }
    writer.finish()?;
    miga_datasets::cache::close_all()?;
    Ok(ExtractSummary {
        clips,
        resumed,
        extracted,
        failed,
    })
}
#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use miga_backbones::agcn::Graph;
    use miga_datasets::clips::Modalities;
    use miga_datasets::synth::{SynthConfig, synthesise};
    use miga_datasets::{MigaLayout, Split};

    use super::*;
    use crate::features::FeatureSet;
    use crate::testing::{scratch, tiny_config, tiny_settings};

    #[test]
    fn extracts_every_clip_once_and_resumes() {
        let _rng = crate::rng_lock();
        let data = scratch("data");
        let config = SynthConfig {
            seed: 4,
            videos: 2,
            clips_per_video: 3,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &data, &|_, _| {}).unwrap();
        let (records, problems) =
            ClipRecord::from_miga(&MigaLayout::scan(&data).unwrap(), Split::Train);
        assert!(problems.is_empty());
        let settings = tiny_settings();
        let out = scratch("features");
        let device = Default::default();
        let mut calls = 0;
        let summary = extract_micro_gesture::<Flex>(
            records.clone(),
            &settings,
            &Weights::default(),
            &out,
            (0, 1),
            &device,
            &mut |_, _| calls += 1,
        )
        .unwrap();
        assert_eq!(
            (summary.clips, summary.extracted, summary.resumed),
            (6, 6, 0),
            "{:?}",
            summary.failed
        );
        assert!(calls >= 4);
        let again = extract_micro_gesture::<Flex>(
            records,
            &settings,
            &Weights::default(),
            &out,
            (0, 1),
            &device,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!((again.extracted, again.resumed), (0, 6));
        let set = FeatureSet::read(&out).unwrap();
        assert!(set.complete);
        assert_eq!(set.items.len(), 6);
        let item = &set.items["0001_0"];
        assert_eq!(item["video_tokens"].shape, [2, 1, 1, 768].into());
        assert_eq!(item["video_class"].shape, [768].into());
        let nodes = Graph::layout("imigue-upper-hands").unwrap().num_nodes();
        assert_eq!(item["skeleton_tokens"].shape, [4, nodes, 256].into());
        let other = MicroGestureExtraction {
            video_grid: 2,
            ..settings
        };
        let message = extract_micro_gesture::<Flex>(
            Vec::new(),
            &other,
            &Weights::default(),
            &out,
            (0, 1),
            &device,
            &mut |_, _| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert!(message.contains("not task"), "{message}");
    }

    /// Each modality on its own: a skeleton-only extraction needs no video and gives the
    /// skeleton tokens of a full one, a video-only one needs no skeleton; the skeleton stream
    /// trains on skeleton-only features and predicts clips that have no video, while the fused
    /// model refuses them, saying what is missing.
    #[test]
    fn extracts_and_trains_one_modality_alone() {
        use burn::backend::Autodiff;

        use crate::micro_gesture::{
            MicroGesturePipeline, Streams, TrainConfig, train_micro_gesture,
        };

        let _rng = crate::rng_lock();
        let data = scratch("alone-data");
        let config = SynthConfig {
            seed: 5,
            videos: 4,
            clips_per_video: 2,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &data, &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(&data).unwrap();
        let (records, _) = ClipRecord::from_miga(&layout, Split::Train);
        let device = Default::default();
        let extract = |modalities: Modalities, records: Vec<ClipRecord>, name: &str| {
            let out = scratch(name);
            let mut settings = tiny_settings();
            settings.clip.modalities = modalities;
            let summary = extract_micro_gesture::<Flex>(
                records,
                &settings,
                &Weights::default(),
                &out,
                (0, 1),
                &device,
                &mut |_, _| {},
            )
            .unwrap();
            assert!(summary.failed.is_empty(), "{:?}", summary.failed);
            (out.clone(), FeatureSet::read(&out).unwrap())
        };
        // The skeleton download: no videos at all.
        let skeleton_only: Vec<ClipRecord> = records
            .iter()
            .cloned()
            .map(|r| ClipRecord { rgb: None, ..r })
            .collect();
        let (skeleton_dir, skeletons) = extract(
            Modalities::Skeleton,
            skeleton_only.clone(),
            "alone-skeleton",
        );
        let (_, both) = extract(Modalities::Both, records.clone(), "alone-both");
        let video_only: Vec<ClipRecord> = records
            .iter()
            .cloned()
            .map(|r| ClipRecord {
                skeleton: None,
                ..r
            })
            .collect();
        let (_, videos) = extract(Modalities::Rgb, video_only, "alone-video");
        assert_eq!(skeletons.items.len(), records.len());
        for (id, tensors) in &skeletons.items {
            let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
            assert_eq!(names, ["label", "skeleton_tokens"]);
            assert_eq!(
                tensors["skeleton_tokens"],
                both.items[id]["skeleton_tokens"]
            );
            let names: Vec<&str> = videos.items[id].keys().map(String::as_str).collect();
            assert_eq!(names, ["label", "video_class", "video_tokens"]);
            assert_eq!(
                videos.items[id]["video_tokens"],
                both.items[id]["video_tokens"]
            );
        }
        // Training: the skeleton stream on skeleton-only features; the fused model refuses them.
        let run = scratch("alone-run");
        let skeleton_config = TrainConfig {
            streams: Streams::Skeleton,
            ..tiny_config(1)
        };
        train_micro_gesture::<Autodiff<Flex>>(
            &skeletons,
            &skeletons,
            &skeleton_config,
            &run,
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        let message = train_micro_gesture::<Autodiff<Flex>>(
            &skeletons,
            &skeletons,
            &tiny_config(1),
            &scratch("alone-fused"),
            false,
            std::slice::from_ref(&device),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            message.contains("video_tokens") && message.contains("modalities = skeleton"),
            "{message}"
        );
        // Evaluation and prediction of the skeleton run, from features and from raw clips
        // without video.
        let scores = crate::micro_gesture::TrainedRun::<Flex>::load(&run, &device)
            .unwrap()
            .scores(&skeletons, &skeleton_dir, &device)
            .unwrap();
        assert_eq!(scores.ids.len(), records.len());
        let pipeline = MicroGesturePipeline::<Flex>::from_run(&run, &device).unwrap();
        let predictions = pipeline.predict(&skeleton_only).unwrap();
        assert_eq!(predictions.len(), records.len());
        for (prediction, row) in predictions.iter().zip(&scores.scores) {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            assert_eq!(prediction.class.index(), best, "{}", prediction.id);
        }
    }

    /// The real OpenPose output of video 298 as the iMiGUE release holds it (label CSV and
    /// JSON folders) and converted to the MiGA layout: the same 56 clips with the official
    /// frame ranges, the same 2s-AGCN tokens from both (skeleton only: there is no video), and
    /// a few training steps of the skeleton stream on them.
    #[test]
    fn real_skeletons_extract_alike_from_both_layouts() {
        use burn::backend::Autodiff;
        use miga_datasets::convert::release_to_miga;
        use miga_datasets::{DataSource, PersonSelection};

        use crate::micro_gesture::{Streams, TrainConfig, train_micro_gesture};

        let Some(imigue) = crate::shared_data("imigue") else {
            return;
        };
        let _rng = crate::rng_lock();
        let DataSource::Imigue(release) = DataSource::open(&imigue).unwrap() else {
            panic!("../shared/data/imigue is the release layout");
        };
        let splits = [Split::Train, Split::Validate, Split::Test];
        let from_release: Vec<ClipRecord> = splits.iter().flat_map(|&s| release.clips(s)).collect();
        let official: Vec<_> = release
            .table
            .clips
            .iter()
            .filter(|c| c.video == 298)
            .collect();
        assert_eq!((from_release.len(), official.len()), (56, 56));
        for (record, clip) in from_release.iter().zip(&official) {
            assert_eq!(
                (record.start_frame, record.end_frame),
                (clip.start_frame as usize, clip.end_frame as usize),
                "{}",
                record.id
            );
        }
        let miga = scratch("real-miga");
        let converted =
            release_to_miga(&release, &miga, PersonSelection::default(), &mut |_, _| {}).unwrap();
        assert_eq!(converted.len(), 1);
        let stats = converted[0].skeleton.unwrap();
        assert_eq!((stats.frames, stats.with_person), (21_068, 20_893));
        assert_eq!(stats.multi_person, 10);
        let layout = DataSource::open(&miga).unwrap();
        let from_miga: Vec<ClipRecord> = splits.iter().flat_map(|&s| layout.clips(s).0).collect();
        assert_eq!(from_miga.len(), 56);
        for (a, b) in from_miga.iter().zip(&from_release) {
            assert_eq!(a.id, format!("0{}", b.id));
            assert_eq!(
                (a.start_frame, a.end_frame, a.class),
                (b.start_frame, b.end_frame, b.class)
            );
        }
        let device = Default::default();
        let mut settings = MicroGestureExtraction::default();
        settings.clip.modalities = Modalities::Skeleton;
        settings.clip.frames = 8;
        settings.clip.skeleton_frames = 32;
        settings.batch = 8;
        settings.shard_items = 64;
        let extract = |records: Vec<ClipRecord>, name: &str| {
            let out = scratch(name);
            let summary = extract_micro_gesture::<Flex>(
                records,
                &settings,
                &Weights::default(),
                &out,
                (0, 1),
                &device,
                &mut |_, _| {},
            )
            .unwrap();
            assert_eq!(
                (summary.extracted, summary.failed.len()),
                (56, 0),
                "{:?}",
                summary.failed
            );
            FeatureSet::read(&out).unwrap()
        };
        let release_features = extract(from_release, "real-release-features");
        let miga_features = extract(from_miga, "real-miga-features");
        for (id, tensors) in &release_features.items {
            let tokens = &tensors["skeleton_tokens"];
            assert_eq!(tokens.shape, [8, 55, 256].into());
            assert_eq!(
                tokens,
                &miga_features.items[&format!("0{id}")]["skeleton_tokens"]
            );
        }
        // A few training steps of the skeleton stream.
        let config = TrainConfig {
            streams: Streams::Skeleton,
            batch: 16,
            ..tiny_config(2)
        };
        let summary = train_micro_gesture::<Autodiff<Flex>>(
            &release_features,
            &release_features,
            &config,
            &scratch("real-run"),
            false,
            std::slice::from_ref(&device),
        )
        .unwrap();
        assert_eq!(summary.epochs, 2);
        assert!(summary.best_accuracy.is_finite());
    }
}
