//! `miga data check`: what a dataset holds and what is wrong with it, without stopping at the
//! first problem.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::Result;
use crate::annotations::{LabelTable, SegmentFormat, read_segments};
use crate::classes::{MicroGesture, NUM_CLASSES};
use crate::protocols::{MigaLayout, Protocol, Split};
use crate::skeleton::read_skeleton_xlsx;
use crate::video::Video;

/// Clips of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassCount {
    /// iMiGUE code.
    pub code: u32,
    /// Model index.
    pub index: usize,
    /// Name.
    pub name: &'static str,
    /// Number of clips.
    pub clips: usize,
}

/// Videos and clips of one split of one protocol.
#[derive(Debug, Clone, Serialize)]
pub struct SplitCount {
    /// `cross-subject`, `emotion` or `miga`.
    pub protocol: &'static str,
    /// The split.
    pub split: Split,
    /// Videos in it.
    pub videos: usize,
    /// Clips in it.
    pub clips: usize,
}

/// Skeleton frames found for a video.
#[derive(Debug, Clone, Serialize)]
pub struct SkeletonCount {
    /// Frames in the skeleton file or folder.
    pub frames: usize,
    /// Of those, frames showing a person (counted for xlsx tables; JSON folders are not parsed).
    pub with_people: Option<usize>,
}

/// What `miga data check` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The folder or file checked.
    pub source: String,
    /// `miga-layout` or `label-csv`.
    pub kind: &'static str,
    /// Number of videos.
    pub videos: usize,
    /// Number of clips.
    pub clips: usize,
    /// Clips per class, every class listed.
    pub classes: Vec<ClassCount>,
    /// Per protocol and split.
    pub splits: Vec<SplitCount>,
    /// Skeleton frames per video (videos with a skeleton).
    pub skeleton_frames: BTreeMap<String, SkeletonCount>,
    /// What is worth knowing and is not wrong (a skeleton-only download, test videos without
    /// MP4 as MiGA 2025 distributes them).
    pub notes: Vec<String>,
    /// Every problem found, with file and place (`miga data check` exits non-zero when there is
    /// one).
    pub problems: Vec<String>,
}

fn class_counts(classes: impl Iterator<Item = MicroGesture>) -> Vec<ClassCount> {
    let mut counts = [0usize; NUM_CLASSES];
    for c in classes {
        counts[c.index()] += 1;
    }
    MicroGesture::all()
        .map(|c| ClassCount {
            code: c.code(),
            index: c.index(),
            name: c.name(),
            clips: counts[c.index()],
        })
        .collect()
}

/// Checks a MiGA layout folder or an official label CSV.
pub fn check(path: &Path) -> Result<Report> {
    if path.is_dir() {
        check_layout(path)
    } else {
        check_label_csv(path)
    }
}

fn check_label_csv(path: &Path) -> Result<Report> {
    let (table, errors) = LabelTable::read_lenient(path)?;
    let mut problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let videos = table.videos();
    let mut splits = Vec::new();
    for (name, protocol) in [
        ("cross-subject", Protocol::CrossSubject),
        ("emotion", Protocol::Emotion),
    ] {
        for split in [Split::Train, Split::Test] {
            let in_split = |video: u32, subject: u32| protocol.split(video, subject) == Some(split);
            splits.push(SplitCount {
                protocol: name,
                split,
                videos: videos
                    .iter()
                    .filter(|(id, v)| in_split(**id, v.subject))
                    .count(),
                clips: table
                    .clips
                    .iter()
                    .filter(|c| in_split(c.video, c.subject))
                    .count(),
            });
        }
    }
    // Raw OpenPose folders beside the label file, as the iMiGUE release lays them out.
    let raw = path.parent().unwrap_or(Path::new(".")).join("skeleton/raw");
    let mut skeleton_frames = BTreeMap::new();
    let mut missing = Vec::new();
    for (id, summary) in &videos {
        let dir = raw.join(id.to_string());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            missing.push(*id);
            continue;
        };
        let frames = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with("_keypoints.json"))
            .count();
        if frames == 0 {
            problems.push(format!(
                "{}: no OpenPose frames (empty skeleton)",
                dir.display()
            ));
        } else if summary.last_frame as usize >= frames {
            problems.push(format!(
                "{}: clips reach frame {}, the skeleton has {frames} frames",
                dir.display(),
                summary.last_frame
            ));
        }
        skeleton_frames.insert(
            id.to_string(),
            SkeletonCount {
                frames,
                with_people: None,
            },
        );
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{}: no skeleton folder for {} of {} videos (first: {})",
            raw.display(),
            missing.len(),
            videos.len(),
            missing
                .iter()
                .take(5)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Report {
        source: path.display().to_string(),
        kind: "label-csv",
        videos: videos.len(),
        clips: table.clips.len(),
        classes: class_counts(table.clips.iter().map(|c| c.class)),
        splits,
        skeleton_frames,
        notes: Vec::new(),
        problems,
    })
}

/// What one video of a layout holds.
struct VideoCheck {
    classes: Vec<MicroGesture>,
    skeleton: Option<SkeletonCount>,
    problems: Vec<String>,
}

fn check_video(id: &str, video: &crate::protocols::MigaVideo, root: &Path) -> VideoCheck {
    let mut problems = Vec::new();
    let segments = match &video.labels {
        Some(path) => read_segments(path, SegmentFormat::MigaFrames).unwrap_or_else(|e| {
            problems.push(e.to_string());
            Vec::new()
        }),
        None => {
            problems.push(format!(
                "{}: video {id} has no {id}_label.csv",
                root.display()
            ));
            Vec::new()
        }
    };
    let last = segments.iter().map(|s| s.end_frame as usize).max();
    let skeleton = video
        .skeleton
        .as_ref()
        .and_then(|path| match read_skeleton_xlsx(path) {
            Ok(s) => {
                let count = SkeletonCount {
                    frames: s.frames(),
                    with_people: Some(s.frames_with_people()),
                };
                if count.with_people == Some(0) {
                    problems.push(format!(
                        "{}: empty skeleton (no frame shows a person)",
                        path.display()
                    ));
                }
                if let Some(last) = last.filter(|&l| l >= s.frames()) {
                    problems.push(format!(
                        "{}: clips reach frame {last}, the skeleton has {} frames",
                        path.display(),
                        s.frames()
                    ));
                }
                Some(count)
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        });
    if video.skeleton.is_none() {
        problems.push(format!(
            "{}: video {id} has no {id}_openpose.xlsx",
            root.display()
        ));
    }
    if let Some(path) = &video.video {
        match Video::open(path) {
            Ok(v) => {
                if let Some(last) = last.filter(|&l| l >= v.info().frames) {
                    problems.push(format!(
                        "{}: clips reach frame {last}, the video has {} frames",
                        path.display(),
                        v.info().frames
                    ));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    VideoCheck {
        classes: segments.iter().map(|s| s.class).collect(),
        skeleton,
        problems,
    }
}

fn check_layout(root: &Path) -> Result<Report> {
    let layout = MigaLayout::scan(root)?;
    let checks: Vec<(&String, VideoCheck)> = layout
        .videos
        .par_iter()
        .map(|(id, video)| (id, check_video(id, video, root)))
        .collect();
    let mut problems = Vec::new();
    let mut skeleton_frames = BTreeMap::new();
    let mut splits = Vec::new();
    for split in [Split::Train, Split::Validate, Split::Test] {
        let ids = layout.ids(split);
        let clips = checks
            .iter()
            .filter(|(id, _)| ids.contains(id.as_str()))
            .map(|(_, c)| c.classes.len())
            .sum();
        splits.push(SplitCount {
            protocol: "miga",
            split,
            videos: ids.len(),
            clips,
        });
    }
    let (notes, missing) = rgb_coverage(&layout, root);
    problems.extend(missing);
    for (id, check) in &checks {
        problems.extend(check.problems.iter().cloned());
        if let Some(count) = &check.skeleton {
            skeleton_frames.insert((*id).clone(), count.clone());
        }
    }
    Ok(Report {
        source: root.display().to_string(),
        kind: "miga-layout",
        videos: layout.videos.len(),
        clips: checks.iter().map(|(_, c)| c.classes.len()).sum(),
        classes: class_counts(checks.iter().flat_map(|(_, c)| c.classes.iter().copied())),
        splits,
        skeleton_frames,
        notes,
        problems,
    })
}

/// Which videos have an MP4: none (a skeleton-only download) and test videos without one (MiGA
/// 2025's RGB covers train and validation) are notes; train or validation videos without one
/// while others have theirs is a problem (an incomplete download), naming the first few.
fn rgb_coverage(layout: &MigaLayout, root: &Path) -> (Vec<String>, Vec<String>) {
    let (mut notes, mut problems) = (Vec::new(), Vec::new());
    let total = layout.videos.len();
    let without: Vec<&String> = layout
        .videos
        .iter()
        .filter(|(_, v)| v.video.is_none())
        .map(|(id, _)| id)
        .collect();
    if without.is_empty() {
        return (notes, problems);
    }
    if without.len() == total {
        notes.push(format!(
            "{}: no video has an MP4: a skeleton-only download (the RGB stream is unavailable; \
             train and extract with the skeleton stream)",
            root.display()
        ));
        return (notes, problems);
    }
    let test = layout.ids(Split::Test);
    let (in_test, elsewhere): (Vec<&String>, Vec<&String>) =
        without.iter().partition(|id| test.contains(id.as_str()));
    if !in_test.is_empty() {
        notes.push(format!(
            "{}: {} test videos have no MP4 (MiGA 2025 distributes RGB for train and validation \
             only)",
            root.display(),
            in_test.len()
        ));
    }
    if !elsewhere.is_empty() {
        let first: Vec<&str> = elsewhere.iter().take(5).map(|id| id.as_str()).collect();
        problems.push(format!(
            "{}: {} of {total} train and validation videos have no MP4 while others have theirs \
             (first: {}): an incomplete RGB download",
            root.display(),
            elsewhere.len(),
            first.join(", ")
        ));
    }
    (notes, problems)
}

impl Report {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} ({}): {} videos, {} clips",
            self.source, self.kind, self.videos, self.clips
        );
        let _ = writeln!(s, "\nclasses (code, index, name: clips):");
        for c in &self.classes {
            let _ = writeln!(
                s,
                "  {:>3} {:>3} {:<55} {:>6}",
                c.code, c.index, c.name, c.clips
            );
        }
        let _ = writeln!(s, "\nsplits:");
        for p in &self.splits {
            let _ = writeln!(
                s,
                "  {:<14} {:<9} {:>5} videos {:>7} clips",
                p.protocol,
                p.split.name(),
                p.videos,
                p.clips
            );
        }
        let _ = writeln!(s, "\nskeletons: {} videos", self.skeleton_frames.len());
        for (id, count) in self.skeleton_frames.iter().take(20) {
            let people = count
                .with_people
                .map(|n| format!(", {n} with a person"))
                .unwrap_or_default();
            let _ = writeln!(s, "  {id:>6}: {} frames{people}", count.frames);
        }
        if self.skeleton_frames.len() > 20 {
            let _ = writeln!(
                s,
                "  ... ({} more; --format json lists all)",
                self.skeleton_frames.len() - 20
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\nnotes:");
            for n in &self.notes {
                let _ = writeln!(s, "  {n}");
            }
        }
        let _ = writeln!(s, "\nproblems: {}", self.problems.len());
        for p in &self.problems {
            let _ = writeln!(s, "  {p}");
        }
        s
    }
}
