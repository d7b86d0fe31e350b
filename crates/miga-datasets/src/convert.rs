//! Moving between the two layouts: the iMiGUE release (label CSV, raw OpenPose JSON folders,
//! videos) written as a MiGA 2025 folder, and a skeleton between an OpenPose JSON folder and a
//! MiGA `<ID>_openpose.xlsx` table (see `miga data convert`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::annotations::{Segment, write_miga_segments};
use crate::protocols::{MigaLayout, Protocol, Split};
use crate::skeleton::{
    OpenPoseStats, PersonSelection, read_openpose_folder_counted, write_skeleton_xlsx,
};
use crate::source::ImigueRelease;
use crate::synth::LABELS_CSV;
use crate::{Error, Result};

/// One video of a conversion.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertedVideo {
    /// The video id as the MiGA layout writes it (four digits: `0298`).
    pub id: String,
    /// Its split in the MiGA layout.
    pub split: Split,
    /// Labelled clips written to `<ID>_label.csv`.
    pub clips: usize,
    /// The OpenPose folder's counts (frames, with a person, with several), when it had one.
    pub skeleton: Option<OpenPoseStats>,
    /// Whether the video file was linked (or copied) in.
    pub video: bool,
    /// Whether an earlier run had converted it already (left as it was).
    pub resumed: bool,
}

/// Writes the release as a MiGA 2025 folder at `out`: per video with data,
/// `imigue_skeleton_<split>/<ID>/<ID>_openpose.xlsx` (the person `selection` picks in each
/// frame) and `<ID>_label.csv` (its clips in label-file order, so clip indices match), its video
/// as `imigue_rgb_phase1/<split folder>/<ID>/<ID>.mp4` (a hard link, or a copy), and the label
/// file as `labels.csv` (Win / Lose for the emotion task). The split is the micro-gesture one
/// ([`ImigueRelease::clips`]: cross-subject, validation carved by subject); test videos keep their
/// label files. Resumable: a video whose table is already there is left as it is.
/// `progress(done, total)` follows the videos.
pub fn release_to_miga(
    release: &ImigueRelease,
    out: &Path,
    selection: PersonSelection,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ConvertedVideo>> {
    let protocol = Protocol::CrossSubject;
    let carved = release.validation_subjects(&protocol);
    let videos = release.table.videos();
    let without: std::collections::BTreeSet<u32> =
        release.videos_without_data().into_iter().collect();
    let todo: Vec<(u32, u32)> = videos
        .iter()
        .filter(|(video, _)| !without.contains(video))
        .map(|(&video, v)| (video, v.subject))
        .collect();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let labels =
        std::fs::read(&release.table.path).map_err(|e| Error::io(&release.table.path, e))?;
    crate::io::write_atomic(&out.join(LABELS_CSV), &labels)?;
    let mut converted = Vec::new();
    progress(0, todo.len());
    for (done, &(video, subject)) in todo.iter().enumerate() {
        let split = match protocol.split(video, subject) {
            Some(Split::Train) if carved.contains(&subject) => Split::Validate,
            Some(split) => split,
            None => continue,
        };
        let id = format!("{video:04}");
        let folder = |kind: usize| -> PathBuf {
            match kind {
                0 => out.join(skeleton_folder(split)).join(&id),
                _ => out
                    .join(MigaLayout::RGB_ROOT)
                    .join(rgb_folder(split))
                    .join(&id),
            }
        };
        let segments: Vec<Segment> = release
            .table
            .clips
            .iter()
            .filter(|c| c.video == video)
            .map(|c| Segment {
                class: c.class,
                start_frame: c.start_frame,
                end_frame: c.end_frame,
            })
            .collect();
        let dir = folder(0);
        let table = dir.join(format!("{id}_openpose.xlsx"));
        let resumed = table.is_file();
        let mut skeleton = None;
        if let Some(source) = release
            .skeletons
            .as_ref()
            .map(|r| r.join(video.to_string()))
            .filter(|p| p.is_dir())
            && !resumed
        {
            let (sequence, stats) = read_openpose_folder_counted(&source, selection)?;
            write_miga_segments(dir.join(format!("{id}_label.csv")), &segments)?;
            write_skeleton_xlsx(&table, &sequence)?;
            skeleton = Some(stats);
        } else if !resumed {
            write_miga_segments(dir.join(format!("{id}_label.csv")), &segments)?;
        }
        let mut linked = false;
        if let Some(mp4) = release
            .videos
            .as_ref()
            .map(|r| r.join(format!("{video}.mp4")))
            .filter(|p| p.is_file())
        {
            let target = folder(1).join(format!("{id}.mp4"));
            if !target.exists() {
                std::fs::create_dir_all(folder(1)).map_err(|e| Error::io(folder(1), e))?;
                let partial = target.with_extension("mp4.partial");
                let _ = std::fs::remove_file(&partial);
                std::fs::hard_link(&mp4, &partial)
                    .or_else(|_| std::fs::copy(&mp4, &partial).map(|_| ()))
                    .and_then(|()| std::fs::rename(&partial, &target))
                    .map_err(|e| Error::io(&target, e))?;
            }
            linked = true;
        }
        converted.push(ConvertedVideo {
            id,
            split,
            clips: segments.len(),
            skeleton,
            video: linked,
            resumed,
        });
        progress(done + 1, todo.len());
    }
    Ok(converted)
}

fn skeleton_folder(split: Split) -> &'static str {
    MigaLayout::SKELETON_FOLDERS
        .iter()
        .find(|(_, s)| *s == split)
        .map_or("imigue_skeleton_train", |(f, _)| f)
}

fn rgb_folder(split: Split) -> &'static str {
    MigaLayout::RGB_FOLDERS
        .iter()
        .find(|(_, s)| *s == split)
        .map_or("train_data", |(f, _)| f)
}
