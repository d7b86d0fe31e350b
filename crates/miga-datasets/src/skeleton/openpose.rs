//! Raw OpenPose output: one `<video>_<frame:012>_keypoints.json` per frame, with every person
//! seen in it.

use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;

use super::sequence::{FACE, LEFT_HAND, OPENPOSE_POINTS, RIGHT_HAND, Skeleton};
use crate::error::read_file;
use crate::{Error, Result};

const SUFFIX: &str = "_keypoints.json";

/// Which person of a frame the sequence follows when OpenPose saw several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PersonSelection {
    /// The person with the largest summed body-point confidence (the player facing the camera
    /// in a press conference; the default).
    #[default]
    MostConfident,
    /// The person whose seen body points span the largest box.
    Largest,
    /// The n-th person as OpenPose lists them (missing when the frame has fewer).
    Index(usize),
}

#[derive(Deserialize)]
struct FrameJson {
    #[serde(default)]
    people: Vec<PersonJson>,
}

#[derive(Deserialize)]
struct PersonJson {
    #[serde(default)]
    pose_keypoints_2d: Vec<f32>,
    #[serde(default)]
    face_keypoints_2d: Vec<f32>,
    #[serde(default)]
    hand_left_keypoints_2d: Vec<f32>,
    #[serde(default)]
    hand_right_keypoints_2d: Vec<f32>,
}

impl PersonJson {
    /// The 137 points, parts left empty by OpenPose (face or hands off) as missing.
    fn points(&self) -> std::result::Result<Vec<f32>, String> {
        let mut out = vec![0.0; OPENPOSE_POINTS * 3];
        let parts = [
            ("pose_keypoints_2d", &self.pose_keypoints_2d, 0, FACE),
            (
                "face_keypoints_2d",
                &self.face_keypoints_2d,
                FACE,
                LEFT_HAND,
            ),
            (
                "hand_left_keypoints_2d",
                &self.hand_left_keypoints_2d,
                LEFT_HAND,
                RIGHT_HAND,
            ),
            (
                "hand_right_keypoints_2d",
                &self.hand_right_keypoints_2d,
                RIGHT_HAND,
                OPENPOSE_POINTS,
            ),
        ];
        for (name, values, start, end) in parts {
            let expected = (end - start) * 3;
            if values.is_empty() {
                continue;
            }
            if values.len() != expected {
                return Err(format!(
                    "{name} has {} values, expected {expected}",
                    values.len()
                ));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(format!("{name} holds a non-finite value"));
            }
            out[start * 3..end * 3].copy_from_slice(values);
        }
        Ok(out)
    }
}

fn score(points: &[f32], selection: PersonSelection) -> f32 {
    let body = points[..FACE * 3].chunks(3).filter(|p| p[2] > 0.0);
    match selection {
        PersonSelection::Largest => {
            let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
            for p in body {
                lo = [lo[0].min(p[0]), lo[1].min(p[1])];
                hi = [hi[0].max(p[0]), hi[1].max(p[1])];
            }
            ((hi[0] - lo[0]) * (hi[1] - lo[1])).max(0.0)
        }
        _ => body.map(|p| p[2]).sum(),
    }
}

/// Reads one OpenPose JSON frame and returns the selected person's 137 points (x, y,
/// confidence; 411 values), all zeros when the frame shows no one.
pub fn read_openpose_frame(path: impl AsRef<Path>, selection: PersonSelection) -> Result<Vec<f32>> {
    let path = path.as_ref();
    parse_openpose_frame(&read_file(path)?, path, selection)
}

/// [`read_openpose_frame`] on bytes already read; `path` names them in errors.
pub fn parse_openpose_frame(
    bytes: &[u8],
    path: &Path,
    selection: PersonSelection,
) -> Result<Vec<f32>> {
    let frame: FrameJson = serde_json::from_slice(bytes).map_err(|e| {
        Error::format(
            path,
            format!("line {}, column {}", e.line(), e.column()),
            e.to_string(),
        )
    })?;
    let mut people = Vec::with_capacity(frame.people.len());
    for (i, person) in frame.people.iter().enumerate() {
        people.push(
            person
                .points()
                .map_err(|reason| Error::format(path, format!("person {i}"), reason))?,
        );
    }
    let chosen = match selection {
        PersonSelection::Index(i) => people.into_iter().nth(i),
        _ => people
            .into_iter()
            .max_by(|a, b| score(a, selection).total_cmp(&score(b, selection))),
    };
    Ok(chosen.unwrap_or_else(|| vec![0.0; OPENPOSE_POINTS * 3]))
}

/// The frame number of a `<video>_<frame>_keypoints.json` name, `None` for other files.
fn frame_number(name: &str) -> Option<std::result::Result<usize, String>> {
    let stem = name.strip_suffix(SUFFIX)?;
    let digits = stem.rsplit_once('_').map_or(stem, |(_, d)| d);
    Some(
        digits
            .parse()
            .map_err(|_| format!("`{digits}` is not a frame number")),
    )
}

/// Reads a folder of OpenPose JSON frames (`<video>_<frame:012>_keypoints.json`) into a
/// sequence of `max frame + 1` frames, in parallel; frames without a file or without people
/// are all-missing. Errors on the first unreadable or malformed frame (naming it), or when the
/// folder holds no frame at all.
pub fn read_openpose_folder(dir: impl AsRef<Path>, selection: PersonSelection) -> Result<Skeleton> {
    let dir = dir.as_ref();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(frame) = frame_number(&name) {
            let frame = frame.map_err(|reason| Error::format(entry.path(), "file name", reason))?;
            files.push((frame, entry.path()));
        }
    }
    let frames = files.iter().map(|(f, _)| f + 1).max().ok_or_else(|| {
        Error::request(
            dir,
            format!("no OpenPose frame files (`<video>_<frame>{SUFFIX}`) in this folder"),
        )
    })?;
    if frames > files.len() * 16 + 1024 {
        return Err(Error::request(
            dir,
            format!(
                "frame numbers reach {frames} but only {} files exist",
                files.len()
            ),
        ));
    }
    let read: Vec<(usize, Vec<f32>)> = files
        .par_iter()
        .map(|(frame, path)| read_openpose_frame(path, selection).map(|points| (*frame, points)))
        .collect::<Result<_>>()?;
    let mut skeleton = Skeleton::empty(frames, OPENPOSE_POINTS);
    for (frame, points) in read {
        skeleton.frame_mut(frame).copy_from_slice(&points);
    }
    Ok(skeleton)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{scratch_dir, scratch_file, shared};

    fn person(confidence: f32, x: f32) -> String {
        let body: Vec<String> = (0..25).map(|_| format!("{x},{x},{confidence}")).collect();
        format!(
            "{{\"pose_keypoints_2d\":[{}],\"face_keypoints_2d\":[]}}",
            body.join(",")
        )
    }

    #[test]
    fn selects_people_and_reads_empty_frames() {
        let two = format!(
            "{{\"version\":1.3,\"people\":[{},{}]}}",
            person(0.2, 5.0),
            person(0.9, 7.0)
        );
        let path = scratch_file("v_000000000000_keypoints.json", two.as_bytes());
        assert_eq!(
            read_openpose_frame(&path, PersonSelection::MostConfident).unwrap()[0],
            7.0
        );
        assert_eq!(
            read_openpose_frame(&path, PersonSelection::Index(0)).unwrap()[0],
            5.0
        );
        assert!(
            read_openpose_frame(&path, PersonSelection::Index(2))
                .unwrap()
                .iter()
                .all(|&v| v == 0.0)
        );
        let nobody = scratch_file(
            "v_000000000001_keypoints.json",
            b"{\"version\":1.3,\"people\":[]}",
        );
        assert!(
            read_openpose_frame(&nobody, PersonSelection::default())
                .unwrap()
                .iter()
                .all(|&v| v == 0.0)
        );
    }

    #[test]
    fn malformed_frames_are_named() {
        let dir = scratch_dir();
        std::fs::write(
            dir.join("v_000000000000_keypoints.json"),
            b"{\"people\":[]}",
        )
        .unwrap();
        std::fs::write(
            dir.join("v_000000000002_keypoints.json"),
            b"{\"people\":[{\"pose_keypoints_2d\":[1,2]}]}",
        )
        .unwrap();
        let message = read_openpose_folder(&dir, PersonSelection::default())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("000000000002")
                && message.contains("person 0")
                && message.contains("75"),
            "{message}"
        );
        std::fs::write(
            dir.join("v_000000000002_keypoints.json"),
            b"{\"people\":[{\"pose_keypoints_2d\":[1,2",
        )
        .unwrap();
        let message = read_openpose_folder(&dir, PersonSelection::default())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("000000000002") && message.contains("line 1"),
            "{message}"
        );
        std::fs::write(
            dir.join("v_000000000002_keypoints.json"),
            b"{\"people\":[]}",
        )
        .unwrap();
        assert_eq!(
            read_openpose_folder(&dir, PersonSelection::default())
                .unwrap()
                .frames(),
            3
        );
        assert!(read_openpose_folder(scratch_dir(), PersonSelection::default()).is_err());
    }

    /// All 21,068 frames of the real video 298 parse.
    #[test]
    fn real_video_298_parses() {
        let Some(dir) = shared("imigue/skeleton/raw/298") else {
            return;
        };
        let start = std::time::Instant::now();
        let skeleton = read_openpose_folder(&dir, PersonSelection::default()).unwrap();
        eprintln!(
            "video 298: {} frames in {:.2?}",
            skeleton.frames(),
            start.elapsed()
        );
        assert_eq!(skeleton.frames(), 21_068);
        assert!(
            skeleton.frames_with_people() > 20_000,
            "{}",
            skeleton.frames_with_people()
        );
        assert!(skeleton.clone().normalise().is_ok());
        // Its 56 labelled clips cut from the sequence with the right frame counts.
        let table = crate::LabelTable::read(dir.join("../../../labels_20200831.csv")).unwrap();
        let clips: Vec<_> = table.clips.iter().filter(|c| c.video == 298).collect();
        assert_eq!(clips.len(), 56);
        for clip in clips {
            let frames: Vec<usize> =
                (clip.start_frame as usize..=clip.end_frame as usize).collect();
            let cut = skeleton.gather(&frames).unwrap();
            assert_eq!(
                cut.frames(),
                clip.frames() as usize,
                "clip {}",
                clip.label_id
            );
            assert!(cut.frames_with_people() > 0, "clip {}", clip.label_id);
        }
    }
}
