//! A dataset on disk in either layout, with train / validate / test splits for both tasks:
//! what every command that takes `--data` opens.
//!
//! - **MiGA 2025**: the folder holding `imigue_skeleton_{train,validate,test}/` and
//!   `imigue_rgb_phase1/` ([`MigaLayout`]); the split is the folder.
//! - **The original iMiGUE release**: the official label CSV (`labels_20200831.csv`), with raw
//!   OpenPose JSON folders at `skeleton/raw/<video>/` beside it and, where present, the videos
//!   at `videos/<video>.mp4` ([`ImigueRelease`]). Its protocols have no validation split, so one
//!   is carved out of the training split by subject (see [`ImigueRelease::validation_subjects`]):
//!   micro-gestures follow the cross-subject protocol, emotion the emotion protocol. Videos with
//!   neither a skeleton folder nor a video file are left out (counted by
//!   [`ImigueRelease::videos_without_data`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::annotations::LabelTable;
use crate::clips::{ClipRecord, SkeletonSource};
use crate::emotion::EmotionRecord;
use crate::protocols::{MigaLayout, Protocol, Split};
use crate::sampling::SeededRng;
use crate::{Error, Result};

/// The official label file's name, looked for in a release folder.
pub const RELEASE_LABELS: &str = "labels_20200831.csv";
/// Where a release keeps its raw OpenPose folders, beside the label file.
pub const RELEASE_SKELETONS: &str = "skeleton/raw";
/// Where a release keeps its videos, beside the label file (`<video>.mp4`).
pub const RELEASE_VIDEOS: &str = "videos";

/// The validation split carved from a release's training split: this share of the training
/// subjects (rounded, at least one), drawn with [`VALIDATION_SEED`].
pub const VALIDATION_SHARE: f64 = 0.2;
/// The seed of that draw.
pub const VALIDATION_SEED: u64 = 2020;

/// The original iMiGUE release.
#[derive(Debug, Clone)]
pub struct ImigueRelease {
    /// The label table.
    pub table: LabelTable,
    /// The raw OpenPose folders' root, when present.
    pub skeletons: Option<PathBuf>,
    /// The videos' folder, when present.
    pub videos: Option<PathBuf>,
}

impl ImigueRelease {
    /// Reads the release whose label file is `labels` (its folders are looked for beside it).
    pub fn open(labels: &Path) -> Result<Self> {
        let table = LabelTable::read(labels)?;
        let root = labels.parent().unwrap_or(Path::new("."));
        let dir = |sub: &str| Some(root.join(sub)).filter(|p| p.is_dir());
        Ok(Self {
            table,
            skeletons: dir(RELEASE_SKELETONS),
            videos: dir(RELEASE_VIDEOS),
        })
    }

    fn skeleton(&self, video: u32) -> Option<PathBuf> {
        self.skeletons
            .as_ref()
            .map(|r| r.join(video.to_string()))
            .filter(|p| p.is_dir())
    }

    fn video(&self, video: u32) -> Option<PathBuf> {
        self.videos
            .as_ref()
            .map(|r| r.join(format!("{video}.mp4")))
            .filter(|p| p.is_file())
    }

    /// Videos of the label file with neither a skeleton folder nor a video file.
    pub fn videos_without_data(&self) -> Vec<u32> {
        self.table
            .videos()
            .into_keys()
            .filter(|&v| self.skeleton(v).is_none() && self.video(v).is_none())
            .collect()
    }

    /// The training subjects of `protocol` moved to the validation split: a
    /// [`VALIDATION_SHARE`] of them, drawn with [`VALIDATION_SEED`] (a seeded shuffle of the
    /// sorted subject ids).
    pub fn validation_subjects(&self, protocol: &Protocol) -> BTreeSet<u32> {
        let train: Vec<u32> = self
            .table
            .videos()
            .into_iter()
            .filter(|(video, v)| protocol.split(*video, v.subject) == Some(Split::Train))
            .map(|(_, v)| v.subject)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let count = ((train.len() as f64 * VALIDATION_SHARE).round() as usize)
            .max(1)
            .min(train.len().saturating_sub(1));
        let mut order = train;
        let mut rng = SeededRng::new(VALIDATION_SEED);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        order.into_iter().take(count).collect()
    }

    /// The split of a video (by its subject) under `protocol` with the carved validation split.
    fn split_of(
        &self,
        protocol: &Protocol,
        carved: &BTreeSet<u32>,
        video: u32,
        subject: u32,
    ) -> Option<Split> {
        match protocol.split(video, subject)? {
            Split::Train if carved.contains(&subject) => Some(Split::Validate),
            split => Some(split),
        }
    }

    /// The micro-gesture clips of `split` (cross-subject protocol), of the videos with data.
    pub fn clips(&self, split: Split) -> Vec<ClipRecord> {
        let protocol = Protocol::CrossSubject;
        let carved = self.validation_subjects(&protocol);
        let mut index_in_video: BTreeMap<u32, usize> = BTreeMap::new();
        let mut records = Vec::new();
        for clip in &self.table.clips {
            let n = index_in_video.entry(clip.video).or_default();
            let i = *n;
            *n += 1;
            if self.split_of(&protocol, &carved, clip.video, clip.subject) != Some(split) {
                continue;
            }
            let (rgb, skeleton) = (self.video(clip.video), self.skeleton(clip.video));
            if rgb.is_none() && skeleton.is_none() {
                continue;
            }
            records.push(ClipRecord {
                id: format!("{}_{i}", clip.video),
                video: clip.video.to_string(),
                class: Some(clip.class),
                start_frame: clip.start_frame as usize,
                end_frame: clip.end_frame as usize,
                rgb,
                skeleton: skeleton.map(SkeletonSource::OpenPose),
            });
        }
        records
    }

    /// The emotion videos of `split` (emotion protocol), of the videos with data.
    pub fn emotion(&self, split: Split) -> Vec<EmotionRecord> {
        let protocol = Protocol::Emotion;
        let carved = self.validation_subjects(&protocol);
        self.table
            .videos()
            .into_iter()
            .filter(|(video, v)| {
                self.split_of(&protocol, &carved, *video, v.subject) == Some(split)
            })
            .filter_map(|(video, v)| {
                let (rgb, skeleton) = (self.video(video), self.skeleton(video));
                (rgb.is_some() || skeleton.is_some()).then(|| EmotionRecord {
                    id: video.to_string(),
                    outcome: Some(v.outcome),
                    rgb,
                    skeleton: skeleton.map(SkeletonSource::OpenPose),
                })
            })
            .collect()
    }
}

/// A dataset in either layout.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// The MiGA 2025 download.
    Miga(MigaLayout),
    /// The original iMiGUE release.
    Imigue(ImigueRelease),
}

impl DataSource {
    /// Opens `path`: an official label CSV, a folder holding `labels_20200831.csv` (the
    /// release), or a MiGA 2025 folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_file() {
            return Ok(Self::Imigue(ImigueRelease::open(path)?));
        }
        let labels = path.join(RELEASE_LABELS);
        if labels.is_file() && MigaLayout::scan(path).is_err() {
            return Ok(Self::Imigue(ImigueRelease::open(&labels)?));
        }
        MigaLayout::scan(path).map(Self::Miga).map_err(|_| {
            Error::request(
                path,
                "neither a MiGA 2025 folder (imigue_skeleton_{train,validate,test}/, \
                 imigue_rgb_phase1/) nor the iMiGUE release (labels_20200831.csv, or the path of \
                 an official label CSV, with skeleton/raw/<video>/ beside it)",
            )
        })
    }

    /// The micro-gesture clips of `split`, and the problems met (videos without a label file).
    pub fn clips(&self, split: Split) -> (Vec<ClipRecord>, Vec<Error>) {
        match self {
            Self::Miga(layout) => ClipRecord::from_miga(layout, split),
            Self::Imigue(release) => (release.clips(split), Vec::new()),
        }
    }

    /// The emotion videos of `split`. The MiGA folders carry no Win / Lose: `labels` (an
    /// official label table) gives it; the release has its own.
    pub fn emotion(&self, split: Split, labels: Option<&LabelTable>) -> Vec<EmotionRecord> {
        match (self, labels) {
            (Self::Miga(layout), Some(labels)) => EmotionRecord::from_miga(layout, split, labels),
            (Self::Miga(layout), None) => {
                let empty = LabelTable {
                    path: PathBuf::new(),
                    clips: Vec::new(),
                };
                EmotionRecord::from_miga(layout, split, &empty)
            }
            (Self::Imigue(release), _) => release.emotion(split),
        }
    }

    /// The layout's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Miga(_) => "MiGA 2025 layout",
            Self::Imigue(_) => "iMiGUE release",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{scratch_dir, shared};

    /// A release whose label file is the real one and where every video has a (empty)
    /// skeleton folder: the splits over all 18,498 clips.
    fn release_with_every_video() -> Option<(ImigueRelease, PathBuf)> {
        let labels = shared("imigue/labels_20200831.csv")?;
        let root = scratch_dir();
        std::fs::copy(&labels, root.join(RELEASE_LABELS)).unwrap();
        let table = LabelTable::read(&labels).unwrap();
        for video in table.videos().keys() {
            std::fs::create_dir_all(root.join(RELEASE_SKELETONS).join(video.to_string())).unwrap();
        }
        let DataSource::Imigue(release) = DataSource::open(&root).unwrap() else {
            panic!("a release folder opens as the release");
        };
        Some((release, root))
    }

    #[test]
    fn the_release_splits_by_the_official_protocols_with_a_carved_validation_split() {
        let Some((release, _root)) = release_with_every_video() else {
            return;
        };
        let count = |split| release.clips(split).len();
        let (train, validate, test) = (
            count(Split::Train),
            count(Split::Validate),
            count(Split::Test),
        );
        // Cross-subject: 13,935 training clips (now split by subject) and 4,563 test clips.
        assert_eq!((train + validate, test), (13_935, 4_563));
        let carved = release.validation_subjects(&Protocol::CrossSubject);
        assert_eq!(carved.len(), 7, "a fifth of the 37 training subjects");
        assert!(
            carved
                .iter()
                .all(|s| crate::protocols::CROSS_SUBJECT_TRAIN.contains(s))
        );
        assert_eq!(carved, release.validation_subjects(&Protocol::CrossSubject));
        assert!(validate > 0 && train > validate);
        // No subject is in two splits.
        let subjects = |split| -> BTreeSet<u32> {
            let videos = release.table.videos();
            release
                .clips(split)
                .iter()
                .map(|c| videos[&c.video.parse::<u32>().unwrap()].subject)
                .collect()
        };
        assert!(subjects(Split::Train).is_disjoint(&subjects(Split::Validate)));
        assert!(subjects(Split::Train).is_disjoint(&subjects(Split::Test)));
        // Clip ids count each video's rows from 0, in label-file order (as MiGA's do).
        let first = &release.clips(Split::Train)[0];
        assert!(first.id.ends_with("_0"), "{}", first.id);
        // Emotion: the protocol's 102 training videos (some carved out) and 100 test videos.
        let emotion = |split| release.emotion(split).len();
        assert_eq!(
            (
                emotion(Split::Train) + emotion(Split::Validate),
                emotion(Split::Test)
            ),
            (102, 100)
        );
        assert!(emotion(Split::Validate) > 0);
        assert!(
            release
                .emotion(Split::Test)
                .iter()
                .all(|r| r.outcome.is_some())
        );
    }

    #[test]
    fn videos_without_data_are_left_out() {
        let Some(labels) = shared("imigue/labels_20200831.csv") else {
            return;
        };
        // The shared folder is a release with one video's skeleton (298, subject 22).
        let DataSource::Imigue(release) = DataSource::open(labels.parent().unwrap()).unwrap()
        else {
            panic!("the shared folder is the release layout");
        };
        assert_eq!(release.videos_without_data().len(), 358);
        let clips: Vec<ClipRecord> = [Split::Train, Split::Validate, Split::Test]
            .into_iter()
            .flat_map(|s| release.clips(s))
            .collect();
        assert_eq!(clips.len(), 56);
        assert!(clips.iter().all(|c| c.video == "298" && c.rgb.is_none()));
        // The same through the CSV's own path.
        assert!(matches!(
            DataSource::open(&labels).unwrap(),
            DataSource::Imigue(_)
        ));
        // Neither layout: a clear error.
        let empty = scratch_dir();
        let message = DataSource::open(&empty).unwrap_err().to_string();
        assert!(message.contains("neither a MiGA 2025 folder"), "{message}");
    }
}
