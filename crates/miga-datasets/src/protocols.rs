//! Evaluation protocols: the official iMiGUE splits as built-in data, user-given splits and the
//! MiGA 2025 train / validate / test folder layout.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::read_text;
use crate::{Error, Result};

/// A data split.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data (the MiGA layout has one; the iMiGUE protocols do not).
    Validate,
    /// Test data.
    Test,
}

impl Split {
    /// The split's name as the MiGA layout writes it (`train`, `validate`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Validate => "validate",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Training subjects of the official cross-subject micro-gesture protocol (evaluation
/// protocol PDF of iMiGUE); every other subject of the 72 is a test subject.
pub const CROSS_SUBJECT_TRAIN: [u32; 37] = [
    2, 4, 5, 6, 9, 10, 12, 13, 14, 15, 17, 18, 20, 21, 22, 23, 25, 28, 29, 30, 31, 35, 36, 38, 39,
    41, 42, 43, 44, 46, 47, 48, 52, 53, 59, 61, 62,
];

/// Training videos of the official emotion protocol (51 Win, 51 Lose).
pub const EMOTION_TRAIN: [u32; 102] = [
    1, 7, 8, 11, 26, 27, 46, 47, 48, 53, 55, 57, 63, 66, 67, 74, 77, 84, 85, 86, 91, 96, 102, 103,
    104, 105, 106, 108, 109, 112, 114, 117, 124, 132, 134, 140, 148, 157, 161, 162, 163, 164, 167,
    169, 170, 172, 176, 186, 196, 216, 233, 236, 237, 239, 240, 241, 242, 243, 249, 252, 266, 290,
    297, 300, 306, 310, 314, 318, 319, 320, 324, 334, 339, 359, 360, 365, 369, 377, 381, 385, 392,
    402, 407, 410, 411, 413, 414, 415, 420, 429, 433, 435, 436, 440, 441, 445, 448, 449, 450, 451,
    452, 453,
];

/// Test videos of the official emotion protocol (50 Win, 50 Lose); the other videos are in
/// neither emotion split.
pub const EMOTION_TEST: [u32; 100] = [
    9, 10, 12, 16, 28, 35, 43, 49, 50, 51, 52, 54, 56, 60, 71, 72, 83, 89, 95, 100, 107, 110, 111,
    121, 131, 136, 144, 145, 165, 166, 168, 171, 174, 179, 185, 191, 193, 212, 220, 223, 230, 231,
    232, 234, 235, 238, 244, 246, 254, 258, 262, 263, 268, 270, 276, 280, 282, 303, 304, 311, 312,
    313, 315, 316, 317, 322, 323, 325, 327, 328, 329, 333, 337, 341, 343, 344, 363, 374, 400, 401,
    403, 404, 405, 406, 408, 416, 417, 419, 421, 428, 430, 431, 437, 438, 439, 442, 443, 444, 446,
    447,
];

/// How clips or videos are assigned to splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// The official cross-subject micro-gesture protocol (by subject; no video is unassigned).
    CrossSubject,
    /// The official emotion protocol (by video; videos in neither list are unassigned).
    Emotion,
    /// A user-given split: ids (videos) per split, from files (see [`Protocol::from_files`]).
    Videos(BTreeMap<u32, Split>),
}

impl Protocol {
    /// The split of a video (with its subject), or `None` when the protocol leaves it out.
    pub fn split(&self, video: u32, subject: u32) -> Option<Split> {
        match self {
            Self::CrossSubject => Some(if CROSS_SUBJECT_TRAIN.contains(&subject) {
                Split::Train
            } else {
                Split::Test
            }),
            Self::Emotion => {
                if EMOTION_TRAIN.contains(&video) {
                    Some(Split::Train)
                } else if EMOTION_TEST.contains(&video) {
                    Some(Split::Test)
                } else {
                    None
                }
            }
            Self::Videos(map) => map.get(&video).copied(),
        }
    }

    /// A user-given video split from files of video ids (one or more per line, separated by
    /// commas or white space; `#` starts a comment). A video listed in two splits is an error.
    pub fn from_files(files: &[(Split, &Path)]) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (split, path) in files {
            for (video, line) in read_ids(path)? {
                if let Some(other) = map.insert(video, *split)
                    && other != *split
                {
                    return Err(Error::format(
                        path,
                        format!("line {line}"),
                        format!("video {video} is already in the {other} split"),
                    ));
                }
            }
        }
        Ok(Self::Videos(map))
    }
}

/// Reads a file of ids: `(id, line)` pairs.
pub fn read_ids(path: &Path) -> Result<Vec<(u32, usize)>> {
    let text = read_text(path)?;
    let mut ids = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("");
        for token in content.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
            let id = token.trim().parse().map_err(|_| {
                Error::format(
                    path,
                    format!("line {}", number + 1),
                    format!("`{token}` is not a video id"),
                )
            })?;
            ids.push((id, number + 1));
        }
    }
    Ok(ids)
}

/// The files of one video in the MiGA 2025 layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigaVideo {
    /// The split it was found in (the skeleton folder's, or the RGB folder's).
    pub split: Option<Split>,
    /// `<ID>_openpose.xlsx`, when present.
    pub skeleton: Option<PathBuf>,
    /// `<ID>_label.csv`, when present (absent for test videos).
    pub labels: Option<PathBuf>,
    /// `<ID>.mp4`, when present.
    pub video: Option<PathBuf>,
}

/// The MiGA 2025 folder layout: `imigue_skeleton_{train,validate,test}/<ID>/<ID>_openpose.xlsx`
/// and `<ID>_label.csv`, and `imigue_rgb_phase1/{train_data,validation_data,test_data}/<ID>/<ID>.mp4`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigaLayout {
    /// The root folder.
    pub root: PathBuf,
    /// The videos found, by id (as written in the folder name).
    pub videos: BTreeMap<String, MigaVideo>,
}

impl MigaLayout {
    /// Skeleton folders and the split each holds.
    pub const SKELETON_FOLDERS: [(&'static str, Split); 3] = [
        ("imigue_skeleton_train", Split::Train),
        ("imigue_skeleton_validate", Split::Validate),
        ("imigue_skeleton_test", Split::Test),
    ];
    /// RGB folders (under `imigue_rgb_phase1`) and the split each holds.
    pub const RGB_FOLDERS: [(&'static str, Split); 3] = [
        ("train_data", Split::Train),
        ("validation_data", Split::Validate),
        ("test_data", Split::Test),
    ];
    /// The RGB root folder.
    pub const RGB_ROOT: &'static str = "imigue_rgb_phase1";

    /// Scans `root` for the layout. A root with none of the folders is an error; a video folder
    /// without its files is kept, with the files it lacks as `None` (see `miga data check`).
    pub fn scan(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let mut layout = Self {
            root: root.to_path_buf(),
            videos: BTreeMap::new(),
        };
        let mut found = false;
        for (folder, split) in Self::SKELETON_FOLDERS {
            for (id, dir) in subfolders(&root.join(folder))? {
                found = true;
                let video = layout.videos.entry(id.clone()).or_default();
                video.split = Some(split);
                video.skeleton = existing(dir.join(format!("{id}_openpose.xlsx")));
                video.labels = existing(dir.join(format!("{id}_label.csv")));
            }
        }
        for (folder, split) in Self::RGB_FOLDERS {
            for (id, dir) in subfolders(&root.join(Self::RGB_ROOT).join(folder))? {
                found = true;
                let video = layout.videos.entry(id.clone()).or_default();
                video.split.get_or_insert(split);
                video.video = existing(dir.join(format!("{id}.mp4")));
            }
        }
        if !found {
            return Err(Error::request(
                root,
                "no MiGA layout here: expected imigue_skeleton_{train,validate,test}/ or imigue_rgb_phase1/",
            ));
        }
        Ok(layout)
    }

    /// Ids of the videos in `split`.
    pub fn ids(&self, split: Split) -> BTreeSet<&str> {
        self.videos
            .iter()
            .filter(|(_, v)| v.split == Some(split))
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

fn existing(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.path().is_dir() {
            folders.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    folders.sort();
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{scratch_dir, scratch_file};

    #[test]
    fn official_lists_are_disjoint_and_complete() {
        assert!(CROSS_SUBJECT_TRAIN.windows(2).all(|w| w[0] < w[1]));
        assert!(EMOTION_TRAIN.iter().all(|v| !EMOTION_TEST.contains(v)));
        let p = Protocol::CrossSubject;
        assert_eq!(
            (1..=72)
                .filter(|&s| p.split(0, s) == Some(Split::Train))
                .count(),
            37
        );
        assert_eq!(Protocol::Emotion.split(298, 0), None);
        assert_eq!(Protocol::Emotion.split(9, 0), Some(Split::Test));
    }

    #[test]
    fn user_splits_from_files() {
        let train = scratch_file("train.txt", b"1, 2 3\n# comment\n4\n");
        let test = scratch_file("test.txt", b"5\n");
        let p = Protocol::from_files(&[(Split::Train, &train), (Split::Test, &test)]).unwrap();
        assert_eq!(p.split(3, 0), Some(Split::Train));
        assert_eq!(p.split(5, 0), Some(Split::Test));
        assert_eq!(p.split(6, 0), None);
        let clash = scratch_file("clash.txt", b"7\n2\n");
        let message = Protocol::from_files(&[(Split::Train, &train), (Split::Test, &clash)])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("line 2") && message.contains("video 2"),
            "{message}"
        );
        let bad = scratch_file("bad.txt", b"1\nx\n");
        assert!(read_ids(&bad).unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn miga_layout_scan() {
        let root = scratch_dir();
        let dir = root.join("imigue_skeleton_train/0001");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0001_openpose.xlsx"), b"").unwrap();
        std::fs::write(dir.join("0001_label.csv"), b"").unwrap();
        std::fs::create_dir_all(root.join("imigue_rgb_phase1/validation_data/0002")).unwrap();
        let layout = MigaLayout::scan(&root).unwrap();
        assert_eq!(
            layout.ids(Split::Train).into_iter().collect::<Vec<_>>(),
            ["0001"]
        );
        assert!(layout.videos["0001"].labels.is_some());
        assert_eq!(layout.videos["0002"].split, Some(Split::Validate));
        assert_eq!(layout.videos["0002"].video, None);
        assert!(MigaLayout::scan(scratch_dir()).is_err());
    }
}

#[cfg(test)]
mod real_data {
    use std::collections::BTreeSet;

    use super::*;
    use crate::annotations::{LabelTable, SegmentFormat, read_segments};
    use crate::classes::Outcome;
    use crate::testing::shared;

    /// The numbers the issue and the dataset's README give, from the real label file.
    #[test]
    fn real_label_file_and_protocols() {
        let Some(dir) = shared("imigue") else { return };
        let table = LabelTable::read(dir.join("labels_20200831.csv")).unwrap();
        assert_eq!(table.clips.len(), 18_498);
        let videos = table.videos();
        assert_eq!(videos.len(), 359);
        assert_eq!(
            table
                .clips
                .iter()
                .map(|c| c.subject)
                .collect::<BTreeSet<_>>()
                .len(),
            72
        );
        assert!(table.class_counts().iter().all(|&n| n > 0));
        assert_eq!(table.class_counts()[31], 5_715);
        let train = table
            .clips
            .iter()
            .filter(|c| Protocol::CrossSubject.split(c.video, c.subject) == Some(Split::Train))
            .count();
        assert_eq!((train, table.clips.len() - train), (13_935, 4_563));
        for (split, win, lose) in [(Split::Train, 51, 51), (Split::Test, 50, 50)] {
            let count = |outcome| {
                videos
                    .iter()
                    .filter(|(id, v)| {
                        Protocol::Emotion.split(**id, v.subject) == Some(split)
                            && v.outcome == outcome
                    })
                    .count()
            };
            assert_eq!(
                (count(Outcome::Win), count(Outcome::Lose)),
                (win, lose),
                "{split}"
            );
        }
        let lengths: Vec<u32> = table.clips.iter().map(|c| c.frames()).collect();
        assert_eq!(lengths.iter().min(), Some(&6));
        assert_eq!(lengths.iter().max(), Some(&3_693));
    }

    /// The built-in lists equal the transcription shared beside the repository.
    #[test]
    fn built_in_lists_equal_the_transcription() {
        let Some(dir) = shared("imigue") else { return };
        let text = std::fs::read_to_string(dir.join("protocols.toml")).unwrap();
        let value: toml::Table = toml::from_str(&text).unwrap();
        let list = |v: &toml::Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_integer().unwrap() as u32)
                .collect()
        };
        assert_eq!(
            list(&value["micro_gesture"]["cross_subject"]["train_subjects"]),
            CROSS_SUBJECT_TRAIN
        );
        assert_eq!(list(&value["emotion"]["train_videos"]), EMOTION_TRAIN);
        assert_eq!(list(&value["emotion"]["test_videos"]), EMOTION_TEST);
    }

    /// Every per-video label file parses. They are the raw annotation: their segments differ
    /// from the curated label CSV in about 1 video of 3, 8 files (295 among them) have no CSV row, and
    /// the file of video 341 has a row with class 0, reported as such.
    #[test]
    fn real_per_video_files_parse() {
        let Some(dir) = shared("imigue") else { return };
        let videos = LabelTable::read(dir.join("labels_20200831.csv"))
            .unwrap()
            .videos();
        let (mut files, mut in_csv) = (0, 0);
        for entry in std::fs::read_dir(dir.join("labels-per-video")).unwrap() {
            let path = entry.unwrap().path();
            let video: u32 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let read = read_segments(&path, SegmentFormat::ImigueSeconds);
            if video == 341 {
                // The real file's first line is `0<TAB>1.2048<TAB>0`: class code 0 does not exist.
                let message = read.unwrap_err().to_string();
                assert!(
                    message.contains("341.txt:line 1")
                        && message.contains("unknown class code `0`"),
                    "{message}"
                );
                files += 1;
                continue;
            }
            let segments = read.unwrap();
            assert!(!segments.is_empty(), "{}", path.display());
            files += 1;
            in_csv += usize::from(videos.contains_key(&video));
        }
        assert_eq!((files, in_csv), (358, 350));
    }
}
