//! `miga extract --task micro-gesture`: MViTv2 video tokens and 2s-AGCN skeleton tokens of
//! every clip, written as feature shards (see [`crate::features`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;
use miga_backbones::agcn::{Agcn, AgcnConfig, Graph};
use miga_backbones::mvit::{Mvit, MvitConfig};
use miga_datasets::clips::{
    ClipBatch, ClipBatcher, ClipConfig, ClipDataset, ClipRecord, Modalities,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::features::{FeatureKind, FeatureWriter};
use crate::{Error, Result};

/// Task name of micro-gesture features.
pub const MICRO_GESTURE: &str = "micro-gesture";

/// How micro-gesture features are extracted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MicroGestureExtraction {
    /// Clip sampling and transforms (`augment` is ignored: extraction is deterministic; the
    /// skeleton keypoints are the graph's). `clip.modalities` picks the streams extracted:
    /// `both`, `rgb` (MViTv2 only: no skeleton needed) or `skeleton` (2s-AGCN only: no video
    /// needed).
    pub clip: ClipConfig,
    /// MViTv2 preset (`mvit_v2_s`, `mvit_v2_b`, `mvit_v2_xs`).
    pub mvit: String,
    /// 2s-AGCN skeleton graph (a built-in layout over the OpenPose points).
    pub graph: String,
    /// The video token grid is average-pooled to `video_grid` x `video_grid` per time step.
    pub video_grid: usize,
    /// Clips a forward pass.
    pub batch: usize,
    /// Clips a shard.
    pub shard_items: usize,
    /// Seed of the backbones' random initialisation when no weights are given.
    pub seed: u64,
}

impl MicroGestureExtraction {
    /// The skeleton graph, and the settings as extraction uses them: no augmentation, the
    /// graph's OpenPose keypoints.
    pub fn prepared(&self) -> Result<(Graph, Self)> {
        let graph = Graph::layout(&self.graph)?;
        let keypoints = graph.openpose.clone().ok_or_else(|| Error::InvalidConfig {
            path: PathBuf::from("graph"),
            reason: format!("graph `{}` has no OpenPose indices", self.graph),
        })?;
        let clip = ClipConfig {
            augment: false,
            skeleton: miga_datasets::clips::SkeletonTransform {
                keypoints,
                ..self.clip.skeleton.clone()
            },
            ..self.clip.clone()
        };
        Ok((
            graph,
            Self {
                clip,
                ..self.clone()
            },
        ))
    }
}

impl Default for MicroGestureExtraction {
    fn default() -> Self {
        Self {
            clip: ClipConfig::default(),
            mvit: "mvit_v2_s".into(),
            graph: "imigue-upper-hands".into(),
            video_grid: 1,
            batch: 4,
            shard_items: 64,
            seed: 0,
        }
    }
}

/// Backbone checkpoints; a backbone without one is randomly initialised (under the seed).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    /// torchvision MViTv2 `.pth` / safetensors.
    pub mvit: Option<PathBuf>,
    /// 2s-AGCN reference `.pt`.
    pub agcn: Option<PathBuf>,
    /// SwinFace training checkpoint (`.pt`) or safetensors.
    pub swinface: Option<PathBuf>,
}

/// How micro-gesture features were made, as their folder records it (`FeatureKind::settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDescription {
    /// The prepared settings.
    pub settings: MicroGestureExtraction,
    /// The MViTv2 checkpoint (none: random under the seed).
    pub mvit_weights: Option<PathBuf>,
    /// The 2s-AGCN checkpoint.
    pub agcn_weights: Option<PathBuf>,
}

impl FeatureDescription {
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a description back.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!("not micro-gesture feature settings: {e}"),
        })
    }
}

/// What an extraction did.
#[derive(Debug, Clone)]
pub struct ExtractSummary {
    /// Clips of this part.
    pub clips: usize,
    /// Of those, already extracted by an earlier run (skipped).
    pub resumed: usize,
    /// Extracted now.
    pub extracted: usize,
    /// Clips that could not be extracted, with why (a later run retries them).
    pub failed: Vec<(String, String)>,
}

/// The backbones of micro-gesture extraction (and end-to-end training): those of the streams
/// extracted.
#[derive(Module, Debug)]
pub struct Backbones<B: Backend> {
    /// The video backbone.
    pub mvit: Option<Mvit<B>>,
    /// The skeleton backbone.
    pub agcn: Option<Agcn<B>>,
}

/// The features of a batch of clips, of the streams extracted.
pub struct ClipFeatures<B: Backend> {
    /// `[B, T', k, k, C]`.
    pub video: Option<Tensor<B, 5>>,
    /// `[B, C]`.
    pub class: Option<Tensor<B, 2>>,
    /// `[B, T'', V, C_s]`.
    pub skeleton: Option<Tensor<B, 4>>,
}

impl<B: Backend> Backbones<B> {
    /// MViTv2 features of clips `[B, 3, T, H, W]` and 2s-AGCN features of skeletons
    /// `[B, 3, T, V, 1]`, each where both the input and the backbone are there.
    pub fn features(
        &self,
        rgb: Option<Tensor<B, 5>>,
        skeleton: Option<Tensor<B, 5>>,
        grid: usize,
    ) -> Result<ClipFeatures<B>> {
        miga_kernels::on_cpu_workers::<B, _>(|| {
            let video = match (&self.mvit, rgb) {
                (Some(mvit), Some(rgb)) => Some(mvit.try_forward(rgb)?),
                _ => None,
            };
            let skeleton = match (&self.agcn, skeleton) {
                (Some(agcn), Some(skeleton)) => Some(agcn.try_forward(skeleton)?.tokens),
                _ => None,
            };
            let (video, class) = match video {
                Some(v) => (Some(pool_grid(v.tokens, grid)), Some(v.embedding)),
                None => (None, None),
            };
            Ok(ClipFeatures {
                video,
                class,
                skeleton,
            })
        })
    }
}

/// `module` with its parameters drawn now. Burn initialises parameters lazily, on first use:
/// a module initialised right after seeding the backend's generator would otherwise draw
/// its values whenever it first runs, after whatever else drew meanwhile.
pub(crate) fn drawn_now<B: Backend, M: Module<B>>(module: M) -> M {
    struct Touch;
    impl<B: Backend> burn::module::ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
    module
}

/// Seeds of the randomly initialised backbones: MViTv2 draws from the settings' seed, 2s-AGCN
/// from it mixed with this, so that each backbone is the same whichever streams are extracted.
const AGCN_SEED: u64 = 0x5eed_a6c1;

/// MViTv2 preset `name` for clips of `frames` x `crop` x `crop`, from `weights.mvit` or randomly
/// initialised.
pub(crate) fn mvit<B: Backend>(
    name: &str,
    frames: usize,
    crop: usize,
    weights: &Weights,
    device: &B::Device,
) -> Result<Mvit<B>> {
    let config = MvitConfig::preset(name, 400)?
        .with_temporal_size(frames)
        .with_spatial_size([crop; 2]);
    Ok(match &weights.mvit {
        Some(path) => config.load_checkpoint(path, device)?,
        None => drawn_now(config.init(device)?),
    })
}

/// The backbones of the streams `settings` (prepared) extract, as `weights` make them; random
/// ones are initialised under the settings' seed, so the same settings give the same backbones.
pub(crate) fn backbones<B: Backend>(
    settings: &MicroGestureExtraction,
    graph: Graph,
    weights: &Weights,
    device: &B::Device,
) -> Result<Backbones<B>> {
    let clip = &settings.clip;
    let mvit = match clip.modalities != Modalities::Skeleton {
        true => {
            B::seed(device, settings.seed);
            Some(mvit(
                &settings.mvit,
                clip.frames,
                clip.rgb.crop,
                weights,
                device,
            )?)
        }
        false => None,
    };
    let agcn = match (clip.modalities != Modalities::Rgb, &weights.agcn) {
        (false, _) => None,
        (true, Some(path)) => Some(AgcnConfig::load(path, graph, device)?),
        (true, None) => {
            B::seed(device, settings.seed ^ AGCN_SEED);
            Some(drawn_now(
                AgcnConfig::new(graph, 32)
                    .with_num_persons(1)
                    .init(device)?,
            ))
        }
    };
    Ok(Backbones { mvit, agcn })
}

/// The items of part `(i, n)` (every n-th in id order from the i-th): how many there are, and
/// those `writer` does not have yet.
pub(crate) fn part_todo<R>(
    mut records: Vec<R>,
    id: impl Fn(&R) -> &String,
    part: (usize, usize),
    writer: &FeatureWriter,
) -> (usize, Vec<R>) {
    records.sort_by(|a, b| id(a).cmp(id(b)));
    let mine: Vec<R> = records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % part.1 == part.0)
        .map(|(_, r)| r)
        .collect();
    let count = mine.len();
    let todo = mine
        .into_iter()
        .filter(|r| !writer.is_done(id(r)))
        .collect();
    (count, todo)
}

/// The rows (along the first axis) of a batch tensor, read back from the device at once.
pub(crate) fn rows<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<TensorData> {
    let dims = tensor.dims();
    let data = tensor.into_data().convert::<f32>();
    let values = data.as_slice::<f32>().unwrap_or_default();
    let size = (values.len() / dims[0].max(1)).max(1);
    values
        .chunks(size)
        .map(|row| TensorData::new(row.to_vec(), dims[1..].to_vec()))
        .collect()
}

/// Average-pools `[B, T, H, W, C]` tokens over space to `[B, T, k, k, C]`.
fn pool_grid<B: Backend>(tokens: Tensor<B, 5>, k: usize) -> Tensor<B, 5> {
    let [b, t, h, w, c] = tokens.dims();
    let planes = tokens.permute([0, 1, 4, 2, 3]).reshape([b * t, c, h, w]);
    adaptive_avg_pool2d(planes, [k, k])
        .reshape([b, t, c, k, k])
        .permute([0, 1, 3, 4, 2])
}

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
    let models = backbones::<B>(&settings, graph, weights, device)?;
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
pub(crate) mod tests {
    use burn::backend::Flex;
    use miga_datasets::clips::{FrameTransform, Modalities};
    use miga_datasets::synth::{SynthConfig, synthesise};
    use miga_datasets::{MigaLayout, Split};

    use super::*;
    use crate::features::FeatureSet;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("miga-extract-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Settings small enough for tests: 4 frames of 64x64, mvit_v2_xs, 16 skeleton frames.
    pub(crate) fn tiny_settings() -> MicroGestureExtraction {
        MicroGestureExtraction {
            clip: ClipConfig {
                frames: 4,
                skeleton_frames: 16,
                rgb: FrameTransform {
                    resize: 64,
                    crop: 64,
                    ..FrameTransform::default()
                },
                ..ClipConfig::default()
            },
            mvit: "mvit_v2_xs".into(),
            batch: 2,
            shard_items: 2,
            ..MicroGestureExtraction::default()
        }
    }

    /// Train and validation features of a small synthetic dataset (6 videos of 3 clips).
    pub(crate) fn tiny_features(name: &str) -> (PathBuf, PathBuf) {
        let data = scratch(&format!("{name}-data"));
        let config = SynthConfig {
            seed: 4,
            videos: 6,
            clips_per_video: 3,
            width: 128,
            height: 72,
            classes: Vec::new(),
        };
        synthesise(&config, &data, &|_, _| {}).unwrap();
        let layout = MigaLayout::scan(&data).unwrap();
        let out: Vec<PathBuf> = [Split::Train, Split::Validate]
            .into_iter()
            .map(|split| {
                let (records, _) = ClipRecord::from_miga(&layout, split);
                let out = scratch(&format!("{name}-{split}"));
                extract_micro_gesture::<Flex>(
                    records,
                    &tiny_settings(),
                    &Weights::default(),
                    &out,
                    (0, 1),
                    &Default::default(),
                    &mut |_, _| {},
                )
                .unwrap();
                out
            })
            .collect();
        (out[0].clone(), out[1].clone())
    }

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

        use crate::pipeline::MicroGesturePipeline;
        use crate::train::tests::tiny_config;
        use crate::train::{Streams, TrainConfig, train_micro_gesture};

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
        let scores = crate::evaluate::TrainedRun::<Flex>::load(&run, &device)
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

        use crate::train::tests::tiny_config;
        use crate::train::{Streams, TrainConfig, train_micro_gesture};

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
