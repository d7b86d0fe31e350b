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
    parse_counted(bytes, path, selection).map(|(points, _)| points)
}

/// The selected person's points and how many people the frame shows.
fn parse_counted(
    bytes: &[u8],
    path: &Path,
    selection: PersonSelection,
) -> Result<(Vec<f32>, usize)> {
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
    let count = people.len();
    let chosen = match selection {
        PersonSelection::Index(i) => people.into_iter().nth(i),
        _ => people
            .into_iter()
            .max_by(|a, b| score(a, selection).total_cmp(&score(b, selection))),
    };
    Ok((
        chosen.unwrap_or_else(|| vec![0.0; OPENPOSE_POINTS * 3]),
        count,
    ))
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

/// What a folder of OpenPose frames held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpenPoseStats {
    /// Frame files read.
    pub files: usize,
    /// Frames of the sequence (the highest frame number + 1; frames without a file are empty).
    pub frames: usize,
    /// Frames showing at least one person.
    pub with_person: usize,
    /// Frames showing more than one person (one of them kept, by the [`PersonSelection`]).
    pub multi_person: usize,
}

/// Reads a folder of OpenPose JSON frames (`<video>_<frame:012>_keypoints.json`) into a
/// sequence of `max frame + 1` frames, in parallel; frames without a file or without people
/// are all-missing. Errors on the first unreadable or malformed frame (naming it), or when the
/// folder holds no frame at all.
pub fn read_openpose_folder(dir: impl AsRef<Path>, selection: PersonSelection) -> Result<Skeleton> {
    read_openpose_folder_counted(dir, selection).map(|(skeleton, _)| skeleton)
}

/// [`read_openpose_folder`], with what the folder held.
pub fn read_openpose_folder_counted(
    dir: impl AsRef<Path>,
    selection: PersonSelection,
) -> Result<(Skeleton, OpenPoseStats)> {
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
    let read: Vec<(usize, Vec<f32>, usize)> = files
        .par_iter()
        .map(|(frame, path)| {
            let (points, people) = parse_counted(&read_file(path)?, path, selection)?;
            Ok((*frame, points, people))
        })
        .collect::<Result<_>>()?;
    let mut skeleton = Skeleton::empty(frames, OPENPOSE_POINTS);
    let mut stats = OpenPoseStats {
        files: files.len(),
        frames,
        ..OpenPoseStats::default()
    };
    for (frame, points, people) in read {
        skeleton.frame_mut(frame).copy_from_slice(&points);
        stats.with_person += usize::from(people > 0);
        stats.multi_person += usize::from(people > 1);
    }
    Ok((skeleton, stats))
}

/// Writes a 137-point sequence as a folder of OpenPose JSON frames,
/// `<video>_<frame:012>_keypoints.json`, one person a frame (none where every point is
/// missing), each part with its x, y, confidence triples as OpenPose writes them. The folder
/// must not exist yet; it is filled under a temporary name and renamed when complete. Reading
/// it back gives the same sequence.
pub fn write_openpose_folder(
    dir: impl AsRef<Path>,
    video: &str,
    skeleton: &Skeleton,
) -> Result<()> {
    let target = dir.as_ref();
    if target.exists() {
        return Err(Error::request(
            target,
            "already exists: the OpenPose frames are written into a new folder",
        ));
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = &target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
    if skeleton.points() != OPENPOSE_POINTS {
        return Err(Error::request(
            dir,
            format!(
                "an OpenPose frame holds {OPENPOSE_POINTS} points, not {}",
                skeleton.points()
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    (0..skeleton.frames()).into_par_iter().try_for_each(|t| {
        let points = skeleton.frame(t);
        let part = |start: usize, end: usize| &points[start * 3..end * 3];
        let people = if points.iter().all(|&v| v == 0.0) {
            serde_json::json!([])
        } else {
            serde_json::json!([{
                "person_id": [-1],
                "pose_keypoints_2d": part(0, FACE),
                "face_keypoints_2d": part(FACE, LEFT_HAND),
                "hand_left_keypoints_2d": part(LEFT_HAND, RIGHT_HAND),
                "hand_right_keypoints_2d": part(RIGHT_HAND, OPENPOSE_POINTS),
                "pose_keypoints_3d": [],
                "face_keypoints_3d": [],
                "hand_left_keypoints_3d": [],
                "hand_right_keypoints_3d": [],
            }])
        };
        let frame = serde_json::json!({ "version": 1.3, "people": people });
        let path = dir.join(format!("{video}_{t:012}{SUFFIX}"));
        std::fs::write(&path, frame.to_string()).map_err(|e| Error::io(&path, e))
    })?;
    std::fs::rename(dir, target).map_err(|e| Error::io(target, e))
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
    fn folders_are_counted_written_and_read_back() {
        let dir = scratch_dir().join("v");
        std::fs::create_dir_all(&dir).unwrap();
        let two = format!("{{\"people\":[{},{}]}}", person(0.2, 5.0), person(0.9, 7.0));
        let one = format!("{{\"people\":[{}]}}", person(0.5, 3.25));
        std::fs::write(dir.join("v_000000000000_keypoints.json"), &two).unwrap();
        std::fs::write(
            dir.join("v_000000000001_keypoints.json"),
            b"{\"people\":[]}",
        )
        .unwrap();
        std::fs::write(dir.join("v_000000000003_keypoints.json"), &one).unwrap();
        let (skeleton, stats) =
            read_openpose_folder_counted(&dir, PersonSelection::default()).unwrap();
        assert_eq!(
            stats,
            OpenPoseStats {
                files: 3,
                frames: 4,
                with_person: 2,
                multi_person: 1
            }
        );
        // Written back (one person a frame, none where nothing was seen) and read again.
        let out = dir.with_file_name("out");
        write_openpose_folder(&out, "v", &skeleton).unwrap();
        let (again, stats) =
            read_openpose_folder_counted(&out, PersonSelection::default()).unwrap();
        assert_eq!(again, skeleton);
        assert_eq!(
            (stats.files, stats.with_person, stats.multi_person),
            (4, 2, 0)
        );
        let message = write_openpose_folder(&out, "v", &skeleton)
            .unwrap_err()
            .to_string();
        assert!(message.contains("already exists"), "{message}");
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
        // A stream sees a prefix, and the body frame of a prefix is not the finished video's
        // (docs/online.md, Streaming): measured on 2026-12-07, the centre 0.62, 0.53, 0.51,
        // 0.034 and 0.005 shoulder widths off after 1, 5, 10, 30 and 60 s, the scale 11-12%
        // smaller after 1 s to 10 min.
        let whole = skeleton.body_frame().unwrap();
        for seconds in [1usize, 5, 10, 30, 60, 300, 600] {
            let prefix: Vec<usize> = (0..seconds * 25).collect();
            let body = skeleton.gather(&prefix).unwrap().body_frame().unwrap();
            let shift = (body.centre[0] - whole.centre[0]).hypot(body.centre[1] - whole.centre[1]);
            let scale = body.scale / whole.scale - 1.0;
            assert!(
                (seconds > 10 || shift / whole.scale > 0.5) && (-0.13..-0.11).contains(&scale),
                "{seconds} s: centre {shift}, scale {scale}"
            );
        }
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
