//! Micro-gesture clips for Burn: where each clip's data is ([`ClipRecord`]), how it is sampled
//! and transformed ([`ClipConfig`]), a [`Dataset`] of clips and a [`Batcher`] that stacks them
//! into the tensors the backbones take.
//!
//! RGB frames are decoded when an item is asked for (never a whole video in memory); skeletons
//! are read once per video when the dataset is built and only the clips' frames are kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::video::{Placement, RgbFrame, RgbSource, VideoPreset, Window};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::annotations::{SegmentFormat, read_segments};
use crate::cache::{ClipCache, ClipKey};
use crate::classes::MicroGesture;
use crate::protocols::{MigaLayout, Split};
use crate::sampling::{SeededRng, TemporalSampling, sample_frames};
use crate::skeleton::{
    BodyFrame, PersonSelection, Skeleton, read_openpose_folder, read_skeleton_xlsx,
};
use crate::stages::{Stage, timed};
use crate::video::{Picture, Video};
use crate::{Error, Result};

mod batch;
mod transform;

pub(crate) use batch::Sorted;
pub use batch::{ClipBatch, ClipBatcher};
pub use transform::{ClipConfig, Cut, FrameTransform, RandomCut, SkeletonTransform};

/// Where a video's skeleton is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkeletonSource {
    /// A MiGA `<ID>_openpose.xlsx` table.
    Xlsx(PathBuf),
    /// A folder of raw OpenPose JSON frames.
    OpenPose(PathBuf),
}

impl SkeletonSource {
    /// Reads the whole sequence.
    pub fn read(&self) -> Result<Skeleton> {
        match self {
            Self::Xlsx(path) => read_skeleton_xlsx(path),
            Self::OpenPose(dir) => read_openpose_folder(dir, PersonSelection::default()),
        }
    }
}

/// One labelled clip and where its data is.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipRecord {
    /// The MiGA submission id, `<video>_<clip index>` (0-based, in label-file order).
    pub id: String,
    /// The video id as the data names it.
    pub video: String,
    /// The class (`None` for unlabelled test clips).
    pub class: Option<MicroGesture>,
    /// First frame.
    pub start_frame: usize,
    /// Last frame, inclusive.
    pub end_frame: usize,
    /// The video (MP4 or frame folder), when the RGB stream is available.
    pub rgb: Option<PathBuf>,
    /// The skeleton, when available.
    pub skeleton: Option<SkeletonSource>,
}

impl ClipRecord {
    /// The clips of a MiGA layout in `split`, from each video's `<ID>_label.csv`. Videos without
    /// a label file are problems (returned, not fatal), as are label files that fail to parse.
    pub fn from_miga(layout: &MigaLayout, split: Split) -> (Vec<Self>, Vec<Error>) {
        let mut records = Vec::new();
        let mut problems = Vec::new();
        for (id, video) in layout.videos.iter().filter(|(_, v)| v.split == Some(split)) {
            let Some(labels) = &video.labels else {
                problems.push(Error::request(
                    layout.root.join(id),
                    format!("video {id} has no {id}_label.csv"),
                ));
                continue;
            };
            match read_segments(labels, SegmentFormat::MigaFrames) {
                Ok(segments) => records.extend(segments.iter().enumerate().map(|(i, s)| Self {
                    id: format!("{id}_{i}"),
                    video: id.clone(),
                    class: Some(s.class),
                    start_frame: s.start_frame as usize,
                    end_frame: s.end_frame as usize,
                    rgb: video.video.clone(),
                    skeleton: video.skeleton.clone().map(SkeletonSource::Xlsx),
                })),
                Err(e) => problems.push(e),
            }
        }
        (records, problems)
    }
}

/// Which streams a clip item carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Modalities {
    /// RGB frames only.
    Rgb,
    /// Skeleton only.
    Skeleton,
    /// Both.
    Both,
}

impl Modalities {
    fn rgb(self) -> bool {
        self != Self::Skeleton
    }
    fn skeleton(self) -> bool {
        self != Self::Rgb
    }
}

/// The data of one clip, ready to batch.
#[derive(Debug, Clone)]
pub struct ClipData {
    /// `[3, T, crop, crop]`, normalised.
    pub rgb: Option<TensorData>,
    /// `[3, T_s, V, 1]` (channels x, y, confidence; one person), as 2s-AGCN takes it.
    pub skeleton: Option<TensorData>,
}

/// One item of a [`ClipDataset`]: the clip's id and label, and its data or why it failed.
#[derive(Debug, Clone)]
pub struct ClipItem {
    /// `<video>_<clip index>`.
    pub id: String,
    /// Class index (0..31), when labelled.
    pub label: Option<usize>,
    /// The data, or the error that stopped it (the batcher skips and reports failed items).
    pub data: std::result::Result<ClipData, String>,
}

/// A dataset of micro-gesture clips.
pub struct ClipDataset {
    records: Vec<ClipRecord>,
    skeletons: Vec<Option<Arc<Skeleton>>>,
    /// Where each clip's video puts the person (read when the RGB frames are cut to it).
    bodies: Vec<Option<BodyFrame>>,
    config: ClipConfig,
    seed: u64,
    epoch: AtomicU64,
    cache: Option<Arc<ClipCache>>,
}

impl ClipDataset {
    /// Builds the dataset: checks the configuration and reads each video's skeleton once (in
    /// parallel), keeping the frames of its clips. Problems (unreadable or empty skeletons,
    /// clips beyond the skeleton's end) are returned with the dataset; their clips fail when
    /// asked for the skeleton stream.
    pub fn new(
        records: Vec<ClipRecord>,
        config: ClipConfig,
        seed: u64,
    ) -> Result<(Self, Vec<Error>)> {
        config
            .check()
            .map_err(|reason| Error::request("clip configuration", reason))?;
        let mut skeletons = vec![None; records.len()];
        let mut bodies = vec![None; records.len()];
        let person = config.modalities.rgb() && config.rgb.crops_person();
        let mut problems = Vec::new();
        if config.modalities.skeleton() || person {
            let mut by_video: BTreeMap<&SkeletonSource, Vec<usize>> = BTreeMap::new();
            for (i, r) in records.iter().enumerate() {
                match &r.skeleton {
                    Some(source) => by_video.entry(source).or_default().push(i),
                    None => problems.push(Error::request(
                        &r.video,
                        format!("clip {} has no skeleton", r.id),
                    )),
                }
            }
            let read: Vec<_> = by_video
                .into_par_iter()
                .map(|(source, clips)| (clips, config.skeleton.prepare(source), source))
                .collect();
            for (clips, prepared, source) in read {
                let (skeleton, body) = match prepared {
                    Ok(s) => s,
                    Err(e) => {
                        problems.push(e);
                        continue;
                    }
                };
                if person && body.is_none() {
                    problems.push(Error::request(
                        source_path(source),
                        "no frame shows the neck and both shoulders, which place the person crop",
                    ));
                }
                for i in clips {
                    bodies[i] = body;
                    let r = &records[i];
                    if !config.modalities.skeleton() {
                        continue;
                    }
                    if r.end_frame >= skeleton.frames() {
                        problems.push(Error::request(
                            source_path(source),
                            format!(
                                "clip {} ends at frame {}, the skeleton has {} frames",
                                r.id,
                                r.end_frame,
                                skeleton.frames()
                            ),
                        ));
                        continue;
                    }
                    let frames: Vec<usize> = (r.start_frame..=r.end_frame).collect();
                    skeletons[i] = skeleton.gather(&frames).ok().map(Arc::new);
                }
            }
        }
        let cache = match (&config.cache, config.modalities.rgb()) {
            (Some(dir), true) => {
                let settings = serde_json::json!({
                    "frames": config.frames,
                    "skeleton_frames": config.skeleton_frames,
                    "rgb": config.rgb,
                });
                Some(ClipCache::shared(dir, &settings.to_string())?)
            }
            _ => None,
        };
        Ok((
            Self {
                records,
                skeletons,
                bodies,
                config,
                seed,
                epoch: AtomicU64::new(0),
                cache,
            },
            problems,
        ))
    }

    /// Sets the epoch, which with the seed decides the random choices of augmentation.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The records, in item order.
    pub fn records(&self) -> &[ClipRecord] {
        &self.records
    }

    /// The configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    fn load(&self, index: usize) -> Result<ClipData> {
        let record = &self.records[index];
        let config = &self.config;
        // A clip's draws follow from the seed, the epoch and its id: the same in any dataset.
        let mut rng = SeededRng::for_item(
            self.seed,
            self.epoch.load(Ordering::Relaxed),
            miga_kernels::random::name_seed(&record.id),
        );
        let sampling = if config.augment && self.cache.is_none() {
            TemporalSampling::Random
        } else {
            TemporalSampling::Uniform
        };
        let skeleton_indices = sample_frames(
            0,
            record.end_frame - record.start_frame,
            config.skeleton_frames,
            sampling,
            &mut rng,
        );
        let step = config.skeleton_frames / config.frames;
        let rgb_indices: Vec<usize> = skeleton_indices
            .iter()
            .skip(step / 2)
            .step_by(step)
            .copied()
            .collect();
        let cut = match config.augment {
            true => Cut::Random(RandomCut::draw(
                &mut rng,
                config.crop_area,
                config.crop_aspect,
                config.flip_probability,
            )),
            false => Cut::Centre,
        };
        let flip = matches!(cut, Cut::Random(RandomCut { flip: true, .. }));
        let rgb = match (config.modalities.rgb(), &record.rgb) {
            (false, _) => None,
            (true, None) => {
                return Err(Error::request(
                    &record.video,
                    format!("clip {} has no video", record.id),
                ));
            }
            (true, Some(path)) => {
                let absolute: Vec<usize> =
                    rgb_indices.iter().map(|i| record.start_frame + i).collect();
                let body = self.bodies[index].as_ref();
                Some(match &self.cache {
                    None => config.rgb.load(path, &absolute, cut, body)?,
                    Some(cache) => self.cached(cache, record, &absolute, cut, body)?,
                })
            }
        };
        let skeleton = match config.modalities.skeleton() {
            false => None,
            true => {
                let whole = self.skeletons[index].as_ref().ok_or_else(|| {
                    Error::request(
                        &record.video,
                        format!("clip {} has no usable skeleton", record.id),
                    )
                })?;
                Some(
                    config
                        .skeleton
                        .tensor(whole, &skeleton_indices, flip)
                        .map_err(|e| Error::request(&record.video, e))?,
                )
            }
        };
        Ok(ClipData { rgb, skeleton })
    }
}

impl ClipDataset {
    /// The clip's RGB tensor from the cache's frames, decoded and stored first when absent.
    fn cached(
        &self,
        cache: &ClipCache,
        record: &ClipRecord,
        frames: &[usize],
        cut: Cut,
        body: Option<&BodyFrame>,
    ) -> Result<TensorData> {
        let path = record.rgb.as_deref().unwrap_or(std::path::Path::new(""));
        let key = ClipKey {
            id: &record.id,
            video: path,
            frames: [record.start_frame, record.end_frame],
        };
        let (stored, fresh) = match cache.get(key)? {
            Some(stored) => (stored, false),
            None => {
                let pictures = Video::open(path)?.pictures(frames)?;
                (self.config.rgb.resized(&pictures, path, body)?, true)
            }
        };
        let (bytes, [t, h, w]) = &stored;
        let frames: Vec<RgbFrame<'_>> = bytes
            .chunks_exact(h * w * 3)
            .take(*t)
            .filter_map(|frame| RgbFrame::new(frame, [*h, *w]))
            .collect();
        // Already cut to the person and resized: the transform crops, reading the bytes in place.
        let clip = timed(Stage::Transform, || {
            self.config.rgb.cut_window(&frames, [0, 0], [*h, *w], cut)
        })
        .map_err(|e| Error::request(path, e.to_string()))?;
        if fresh {
            cache.put(key, stored)?;
        }
        Ok(clip)
    }
}

pub(crate) fn source_path(source: &SkeletonSource) -> &std::path::Path {
    match source {
        SkeletonSource::Xlsx(p) | SkeletonSource::OpenPose(p) => p,
    }
}

impl Dataset<ClipItem> for ClipDataset {
    fn get(&self, index: usize) -> Option<ClipItem> {
        let record = self.records.get(index)?;
        Some(ClipItem {
            id: record.id.clone(),
            label: record.class.map(MicroGesture::index),
            data: self.load(index).map_err(|e| e.to_string()),
        })
    }

    fn len(&self) -> usize {
        self.records.len()
    }
}
#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::data::dataloader::DataLoaderBuilder;

    use super::*;
    use crate::synth::tests::small;

    fn config() -> ClipConfig {
        ClipConfig {
            frames: 4,
            skeleton_frames: 8,
            rgb: FrameTransform {
                resize: 64,
                crop: 56,
                ..FrameTransform::default()
            },
            ..ClipConfig::default()
        }
    }

    fn train_records() -> Vec<ClipRecord> {
        let layout = MigaLayout::scan(small(1)).unwrap();
        let (records, problems) = ClipRecord::from_miga(&layout, Split::Train);
        assert!(problems.is_empty(), "{problems:?}");
        records
    }

    #[test]
    fn items_have_the_backbones_shapes_and_repeat_under_a_seed() {
        let records = train_records();
        assert_eq!(records.len(), 6);
        assert_eq!(records[1].id, "0001_1");
        // The OpenPose points of 2s-AGCN's `imigue-upper-hands` graph: body, then both hands.
        let keypoints: Vec<usize> = [0..9, 15..19, 95..137].into_iter().flatten().collect();
        let augmented = ClipConfig {
            augment: true,
            skeleton: SkeletonTransform {
                keypoints: keypoints.clone(),
                ..SkeletonTransform::default()
            },
            ..config()
        };
        let (dataset, problems) = ClipDataset::new(records.clone(), augmented, 9).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let item = dataset.get(2).unwrap();
        let data = item.data.unwrap();
        assert_eq!(data.rgb.as_ref().unwrap().shape, [3, 4, 56, 56].into());
        assert_eq!(
            data.skeleton.as_ref().unwrap().shape,
            [3, 8, keypoints.len(), 1].into()
        );
        let again = dataset.get(2).unwrap().data.unwrap();
        assert_eq!(again.rgb, data.rgb);
        dataset.set_epoch(1);
        assert_ne!(
            dataset.get(2).unwrap().data.unwrap().rgb,
            data.rgb,
            "a new epoch draws new crops"
        );
        // A clip's draws follow its id, not its place: alone in a dataset, the same clip.
        let (alone, _) =
            ClipDataset::new(vec![records[2].clone()], dataset.config.clone(), 9).unwrap();
        alone.set_epoch(1);
        dataset.set_epoch(1);
        assert_eq!(
            alone.get(0).unwrap().data.unwrap().rgb,
            dataset.get(2).unwrap().data.unwrap().rgb
        );
        let (plain, _) = ClipDataset::new(records, config(), 9).unwrap();
        assert_eq!(
            plain.get(2).unwrap().data.unwrap().skeleton.unwrap().shape,
            [3, 8, 137, 1].into()
        );
    }

    #[test]
    fn a_flipped_clip_mirrors_pixels_and_skeleton_alike() {
        use crate::skeleton::write_openpose_folder;
        // Four 96x64 frames: a red square on the person's left wrist, a green one on the right
        // wrist; the neck at the frame's centre line (pixel 47.5), shoulders 24 apart.
        const NECK: usize = 1;
        const RIGHT_SHOULDER: usize = 2;
        const RIGHT_WRIST: usize = 4;
        const LEFT_SHOULDER: usize = 5;
        const LEFT_WRIST: usize = 7;
        let (w, h, t) = (96u32, 64u32, 4);
        let (left_wrist, right_wrist) = ([70.0, 40.0], [20.0, 44.0]);
        let dir = crate::testing::scratch_dir();
        let frames = dir.join("frames");
        std::fs::create_dir_all(&frames).unwrap();
        let square = |at: [f32; 2], x: u32, y: u32| {
            (x as f32 - at[0]).abs() <= 2.0 && (y as f32 - at[1]).abs() <= 2.0
        };
        let frame = crate::video::Frame::from_fn(w, h, |x, y| {
            match (square(left_wrist, x, y), square(right_wrist, x, y)) {
                (true, _) => image::Rgb([255, 0, 0]),
                (_, true) => image::Rgb([0, 255, 0]),
                _ => image::Rgb([0, 0, 0]),
            }
        });
        for i in 0..t {
            crate::video::write_png(&frames.join(format!("img_{:05}.png", i + 1)), &frame).unwrap();
        }
        let mut skeleton = Skeleton::empty(t, crate::skeleton::OPENPOSE_POINTS);
        for i in 0..t {
            let f = skeleton.frame_mut(i);
            for (v, [x, y]) in [
                (NECK, [47.5, 20.0]),
                (RIGHT_SHOULDER, [35.5, 20.0]),
                (LEFT_SHOULDER, [59.5, 20.0]),
                (LEFT_WRIST, left_wrist),
                (RIGHT_WRIST, right_wrist),
            ] {
                f[v * 3..v * 3 + 3].copy_from_slice(&[x, y, 1.0]);
            }
        }
        let poses = dir.join("poses");
        write_openpose_folder(&poses, "clip", &skeleton).unwrap();
        let record = ClipRecord {
            id: "clip_0".into(),
            video: "clip".into(),
            class: None,
            start_frame: 0,
            end_frame: t - 1,
            rgb: Some(frames),
            skeleton: Some(SkeletonSource::OpenPose(poses)),
        };
        let crop = 32;
        // Whole-frame region (its area and aspect), so that only the flip moves pixels.
        let load = |flip_probability: f32| {
            let config = ClipConfig {
                frames: t,
                skeleton_frames: t,
                rgb: FrameTransform {
                    resize: crop,
                    crop,
                    mean: [0.0; 3],
                    std: [1.0; 3],
                    person_box: 0.0,
                },
                augment: true,
                flip_probability,
                crop_area: [1.0, 1.0],
                crop_aspect: [1.5, 1.5],
                ..ClipConfig::default()
            };
            let (dataset, problems) = ClipDataset::new(vec![record.clone()], config, 3).unwrap();
            assert!(problems.is_empty(), "{problems:?}");
            dataset.get(0).unwrap().data.unwrap()
        };
        for flip in [false, true] {
            let data = load(if flip { 1.0 } else { 0.0 });
            let rgb = data.rgb.unwrap().to_vec::<f32>().unwrap();
            let points = data.skeleton.unwrap().to_vec::<f32>().unwrap();
            let plane = crop * crop;
            // Where a colour is in the first frame (output pixels, centroid).
            let centroid = |channel: usize| {
                let (mut sum, mut weight) = ([0.0f32; 2], 0.0);
                for i in 0..plane {
                    let value = rgb[channel * t * plane + i];
                    sum[0] += value * (i % crop) as f32;
                    sum[1] += value * (i / crop) as f32;
                    weight += value;
                }
                [sum[0] / weight, sum[1] / weight]
            };
            // Where the skeleton puts a point in the first frame, in the same output pixels
            // (normalised by the neck and shoulder width: back to frame pixels, then scaled).
            let scale = 24.0;
            let at = |v: usize| {
                let [x, y] = [points[v], points[t * 137 + v]];
                let pixel = |n: f32, centre: f32, size: u32| {
                    ((n * scale + centre) + 0.5) * crop as f32 / size as f32 - 0.5
                };
                [pixel(x, 47.5, w), pixel(y, 20.0, h)]
            };
            // The red square is the left wrist; in a mirrored video the person's hands swap
            // sides, and OpenPose would call it the right wrist.
            let (red_is, green_is) = match flip {
                false => (LEFT_WRIST, RIGHT_WRIST),
                true => (RIGHT_WRIST, LEFT_WRIST),
            };
            // Within half an output pixel: the worst measured is 0.17 (a 5-pixel square's
            // centroid on the resized grid against its centre point); with the skeleton left
            // unmirrored, the wrist found is 1.7-2.0 pixels off.
            for (channel, point) in [(0, red_is), (1, green_is)] {
                let (seen, placed) = (centroid(channel), at(point));
                assert!(
                    (seen[0] - placed[0]).abs() < 0.5 && (seen[1] - placed[1]).abs() < 0.5,
                    "flip {flip}: colour {channel} at {seen:?}, skeleton point {point} at \
                     {placed:?}"
                );
            }
        }
    }

    #[test]
    fn decoded_pictures_read_in_place_equal_converted_frames() {
        // The YUV pictures, converted only where the resize reads, give the clip that whole
        // RGB frames give: centre and random cuts, with and without the person crop.
        let record = &train_records()[1];
        let path = record.rgb.as_ref().unwrap();
        let frames = [3, 9, 10, 30];
        let mut video = Video::open(path).unwrap();
        let pictures = video.pictures(&frames).unwrap();
        assert!(matches!(pictures[0], Picture::Yuv(_)));
        let rgb: Vec<Picture> = video
            .frames(&frames)
            .unwrap()
            .into_iter()
            .map(Picture::Rgb)
            .collect();
        let body = BodyFrame {
            centre: [60.0, 40.0],
            scale: 30.0,
        };
        let random = Cut::Random(RandomCut {
            area: 0.4,
            aspect: 0.8,
            at: [0.3, 0.9],
            flip: true,
        });
        for person_box in [0.0, 1.5] {
            let transform = FrameTransform {
                resize: 40,
                crop: 32,
                person_box,
                ..FrameTransform::default()
            };
            for cut in [Cut::Centre, random] {
                let clip = |pictures: &[Picture]| {
                    transform.apply(pictures, path, cut, Some(&body)).unwrap()
                };
                assert_eq!(clip(&pictures), clip(&rgb), "{person_box} {cut:?}");
            }
        }
    }

    #[test]
    fn a_clip_cache_gives_the_decoded_clips() {
        let records = train_records();
        for person_box in [0.0, 2.0] {
            let plain = ClipConfig {
                rgb: FrameTransform {
                    person_box,
                    ..config().rgb
                },
                ..config()
            };
            let dir = crate::testing::scratch_dir().join("cache");
            let cached = ClipConfig {
                cache: Some(dir.clone()),
                ..plain.clone()
            };
            let rgb = |config: &ClipConfig| {
                let (dataset, _) = ClipDataset::new(records.clone(), config.clone(), 0).unwrap();
                (0..dataset.len())
                    .map(|i| dataset.get(i).unwrap().data.unwrap().rgb.unwrap())
                    .collect::<Vec<_>>()
            };
            let want = rgb(&plain);
            // Decoded and stored, then read from memory, then from the shard on disk.
            assert_eq!(rgb(&cached), want);
            assert_eq!(rgb(&cached), want);
            ClipCache::shared(&dir, "").err().unwrap();
            let (dataset, _) = ClipDataset::new(records.clone(), cached.clone(), 0).unwrap();
            dataset.cache.as_ref().unwrap().flush().unwrap();
            assert!(dir.join("shard-000000.bin").exists());
            assert_eq!(rgb(&cached), want);
            // Augmented from the cache: random crops and flips of the stored frames.
            let augmented = ClipConfig {
                augment: true,
                ..cached
            };
            let (dataset, _) = ClipDataset::new(records.clone(), augmented, 0).unwrap();
            let clip = dataset.get(0).unwrap().data.unwrap().rgb.unwrap();
            assert_eq!(clip.shape, want[0].shape);
            assert_ne!(clip, want[0]);
        }
    }

    #[test]
    fn skeleton_flips_need_normalised_coordinates() {
        let config = ClipConfig {
            augment: true,
            skeleton: SkeletonTransform {
                normalise: false,
                ..SkeletonTransform::default()
            },
            ..config()
        };
        let error = ClipDataset::new(train_records(), config.clone(), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("normalise"), "{error}");
        let no_flips = ClipConfig {
            flip_probability: 0.0,
            ..config
        };
        assert!(ClipDataset::new(train_records(), no_flips, 0).is_ok());
    }

    #[test]
    fn the_dataloader_batches_and_skips_bad_clips() {
        let mut records = train_records();
        records[3].end_frame = 100_000; // beyond the video's end
        records[4].rgb = None;
        let (dataset, problems) = ClipDataset::new(records, config(), 0).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].to_string().contains("0001_0")
                || problems[0].to_string().contains("ends at frame 100000"),
            "{}",
            problems[0]
        );
        let loader = DataLoaderBuilder::<Flex, _, _>::new(ClipBatcher)
            .batch_size(3)
            .num_workers(2)
            .build(dataset);
        let mut seen = 0;
        let mut skipped = Vec::new();
        for batch in loader.iter() {
            let rows = batch.ids.len();
            seen += rows;
            skipped.extend(batch.skipped);
            assert_eq!(batch.rgb.unwrap().dims(), [rows, 3, 4, 56, 56]);
            assert_eq!(batch.skeleton.unwrap().dims(), [rows, 3, 8, 137, 1]);
            assert_eq!(batch.labels.unwrap().dims(), [rows]);
        }
        assert_eq!(seen, 4);
        let reasons: Vec<String> = skipped
            .iter()
            .map(|(id, why)| format!("{id}: {why}"))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("no video")),
            "{reasons:?}"
        );
    }

    #[test]
    fn person_crops_cut_the_square_around_the_neck_inside_the_frame() {
        // An 8x6 frame whose red channel is 10 x column and green channel 10 x row.
        let frame = Picture::Rgb(crate::video::Frame::from_fn(8, 6, |x, y| {
            image::Rgb([x as u8 * 10, y as u8 * 10, 0])
        }));
        let transform = |person_box: f32| FrameTransform {
            resize: 3,
            crop: 3,
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
            person_box,
        };
        let path = std::path::Path::new("clip.mp4");
        let cut = |person_box: f32, centre: [f32; 2]| {
            let body = BodyFrame { centre, scale: 2.0 };
            let out = transform(person_box)
                .apply(std::slice::from_ref(&frame), path, Cut::Centre, Some(&body))
                .unwrap();
            let v = out
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.round() as u32)
                .collect::<Vec<_>>();
            // The top-left pixel's column and row.
            (out.shape.clone(), [v[0] / 10, v[9] / 10])
        };
        assert_eq!(cut(1.5, [5.0, 3.0]), ([3, 1, 3, 3].into(), [4, 2]));
        // Moved inside the frame at its corners.
        assert_eq!(cut(1.5, [0.0, 0.0]).1, [0, 0]);
        assert_eq!(cut(1.5, [8.0, 6.0]).1, [5, 3]);
        // No body: an error naming the file, not the whole frame.
        let error = transform(1.5)
            .apply(std::slice::from_ref(&frame), path, Cut::Centre, None)
            .unwrap_err();
        assert!(error.to_string().contains("clip.mp4"), "{error}");
    }

    #[test]
    fn rgb_only_clips_read_the_skeleton_for_the_person_crop() {
        let person = ClipConfig {
            modalities: Modalities::Rgb,
            rgb: FrameTransform {
                resize: 32,
                crop: 32,
                person_box: 2.0,
                ..FrameTransform::default()
            },
            ..config()
        };
        let (dataset, problems) = ClipDataset::new(train_records(), person.clone(), 0).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let data = dataset.get(0).unwrap().data.unwrap();
        assert_eq!(data.rgb.unwrap().shape, [3, 4, 32, 32].into());
        assert!(data.skeleton.is_none());
        let mut records = train_records();
        records[0].skeleton = None;
        let (dataset, problems) = ClipDataset::new(records, person, 0).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(dataset.get(0).unwrap().data.is_err());
        assert!(dataset.get(1).unwrap().data.is_ok());
    }

    #[test]
    fn bad_configurations_are_refused() {
        for bad in [
            ClipConfig {
                skeleton_frames: 6,
                ..config()
            },
            ClipConfig {
                skeleton: SkeletonTransform {
                    keypoints: vec![137],
                    ..SkeletonTransform::default()
                },
                ..config()
            },
            ClipConfig {
                rgb: FrameTransform {
                    crop: 100,
                    resize: 64,
                    ..FrameTransform::default()
                },
                ..config()
            },
            ClipConfig {
                rgb: FrameTransform {
                    person_box: f32::NAN,
                    ..FrameTransform::default()
                },
                ..config()
            },
            ClipConfig {
                crop_area: [0.5, 0.25],
                ..config()
            },
            ClipConfig {
                crop_aspect: [0.0, 1.0],
                ..config()
            },
            ClipConfig {
                flip_probability: 1.5,
                ..config()
            },
        ] {
            assert!(ClipDataset::new(Vec::new(), bad, 0).is_err());
        }
    }
}
