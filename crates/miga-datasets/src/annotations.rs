//! Annotation files: the official `labels_20200831.csv`, the per-video label files
//! (`start<TAB>end<TAB>class`, seconds) and the MiGA 2025 `<ID>_label.csv` (`class,start,end`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::classes::{MicroGesture, Outcome};
use crate::error::read_text;
use crate::{Error, Result};

/// Frame rate of every iMiGUE / MiGA video.
pub const FPS: f64 = 25.0;

/// One labelled micro-gesture clip of the official label file. Frames are inclusive at both ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Video id.
    pub video: u32,
    /// Clip number within the video (1-based, as the file writes it).
    pub label_id: u32,
    /// First frame (0-based, 25 fps).
    pub start_frame: u32,
    /// Last frame, inclusive.
    pub end_frame: u32,
    /// Start in seconds.
    pub start_time: f64,
    /// End in seconds.
    pub end_time: f64,
    /// The micro-gesture.
    pub class: MicroGesture,
    /// Subject (player) id.
    pub subject: u32,
    /// Subject gender as written (`F` / `M`).
    pub gender: String,
    /// Subject nationality as written.
    pub nationality: String,
    /// The match outcome of the video.
    pub outcome: Outcome,
}

impl Clip {
    /// Number of frames of the clip (both ends included).
    pub fn frames(&self) -> u32 {
        self.end_frame - self.start_frame + 1
    }
}

/// Per-video facts gathered from the label file.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSummary {
    /// Subject (player) id.
    pub subject: u32,
    /// Match outcome.
    pub outcome: Outcome,
    /// Number of labelled clips.
    pub clips: usize,
    /// Last labelled frame.
    pub last_frame: u32,
}

/// The official label file, `labels_20200831.csv`.
#[derive(Debug, Clone)]
pub struct LabelTable {
    /// The file it was read from.
    pub path: PathBuf,
    /// The clips, in file order.
    pub clips: Vec<Clip>,
}

const COLUMNS: [&str; 11] = [
    "video_id",
    "label_id",
    "start_time",
    "start_frame",
    "end_time",
    "end_frame",
    "class",
    "subject_id",
    "subject_gender",
    "subject_nationality",
    "win_or_lose",
];

impl LabelTable {
    /// Reads the file, failing on the first bad row (the error names its line).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let (table, mut problems) = Self::read_lenient(path)?;
        match problems.is_empty() {
            true => Ok(table),
            false => Err(problems.swap_remove(0)),
        }
    }

    /// Reads the file, keeping the good rows and returning every bad one as an error naming its
    /// line. Fails only when the file cannot be read or its header lacks a column.
    pub fn read_lenient(path: impl AsRef<Path>) -> Result<(Self, Vec<Error>)> {
        let path = path.as_ref();
        Self::parse(&read_text(path)?, path)
    }

    /// [`LabelTable::read_lenient`] on text already read; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<(Self, Vec<Error>)> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| Error::format(path, "line 1", e.to_string()))?
            .clone();
        let mut index = [0usize; COLUMNS.len()];
        for (slot, name) in index.iter_mut().zip(COLUMNS) {
            *slot = header
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    Error::format(path, "line 1", format!("no column `{name}` in the header"))
                })?;
        }
        let mut clips = Vec::new();
        let mut problems = Vec::new();
        for record in reader.records() {
            match record
                .map_err(|e| csv_error(path, e))
                .and_then(|r| parse_clip(path, &r, &index))
            {
                Ok(clip) => clips.push(clip),
                Err(e) => problems.push(e),
            }
        }
        Ok((
            Self {
                path: path.to_path_buf(),
                clips,
            },
            problems,
        ))
    }

    /// The videos, with their subject, outcome and clip count, by id.
    pub fn videos(&self) -> BTreeMap<u32, VideoSummary> {
        let mut videos = BTreeMap::new();
        for clip in &self.clips {
            let entry = videos.entry(clip.video).or_insert(VideoSummary {
                subject: clip.subject,
                outcome: clip.outcome,
                clips: 0,
                last_frame: 0,
            });
            entry.clips += 1;
            entry.last_frame = entry.last_frame.max(clip.end_frame);
        }
        videos
    }

    /// Clip counts per class, in class index order (every class listed, zeros included).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; crate::classes::NUM_CLASSES];
        for clip in &self.clips {
            counts[clip.class.index()] += 1;
        }
        counts
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let place = e
        .position()
        .map_or_else(|| "?".to_string(), |p| format!("line {}", p.line()));
    Error::format(path, place, e.to_string())
}

fn field<T: FromStr>(
    path: &Path,
    record: &csv::StringRecord,
    index: usize,
    name: &str,
) -> Result<T> {
    let line = record.position().map_or(0, |p| p.line());
    let text = record.get(index).unwrap_or("");
    text.parse().map_err(|_| {
        Error::format(
            path,
            format!("line {line}, column {name}"),
            format!("cannot read `{text}`"),
        )
    })
}

fn parse_clip(
    path: &Path,
    record: &csv::StringRecord,
    index: &[usize; COLUMNS.len()],
) -> Result<Clip> {
    let line = record.position().map_or(0, |p| p.line());
    let place = |column: &str| format!("line {line}, column {column}");
    let code: u32 = field(path, record, index[6], "class")?;
    let class = MicroGesture::from_code(code)
        .ok_or_else(|| Error::format(path, place("class"), format!("unknown class code {code}")))?;
    let outcome_text = record.get(index[10]).unwrap_or("");
    let outcome = Outcome::parse(outcome_text).ok_or_else(|| {
        Error::format(
            path,
            place("win_or_lose"),
            format!("`{outcome_text}` is neither Win nor Lose"),
        )
    })?;
    let clip = Clip {
        video: field(path, record, index[0], "video_id")?,
        label_id: field(path, record, index[1], "label_id")?,
        start_time: field(path, record, index[2], "start_time")?,
        start_frame: field(path, record, index[3], "start_frame")?,
        end_time: field(path, record, index[4], "end_time")?,
        end_frame: field(path, record, index[5], "end_frame")?,
        class,
        subject: field(path, record, index[7], "subject_id")?,
        gender: record.get(index[8]).unwrap_or("").to_string(),
        nationality: record.get(index[9]).unwrap_or("").to_string(),
        outcome,
    };
    if clip.end_frame < clip.start_frame
        || clip.end_time.partial_cmp(&clip.start_time) == Some(std::cmp::Ordering::Less)
        || clip.end_time.is_nan()
    {
        return Err(Error::format(
            path,
            format!("line {line}"),
            format!(
                "clip ends before it starts (frames {}..{}, seconds {}..{})",
                clip.start_frame, clip.end_frame, clip.start_time, clip.end_time
            ),
        ));
    }
    Ok(clip)
}

/// A labelled segment of a per-video label file, in frames (inclusive at both ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The micro-gesture.
    pub class: MicroGesture,
    /// First frame.
    pub start_frame: u32,
    /// Last frame, inclusive.
    pub end_frame: u32,
}

/// How a per-video label file writes its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFormat {
    /// The iMiGUE per-video files: `start<TAB>end<TAB>class`, times in seconds, iMiGUE codes.
    ImigueSeconds,
    /// The MiGA 2025 `<ID>_label.csv`: `class,start,end`, frames at 25 fps, iMiGUE codes
    /// (an optional header row is skipped).
    MigaFrames,
}

/// Reads a per-video label file (see [`SegmentFormat`]), failing on the first bad line.
pub fn read_segments(path: impl AsRef<Path>, format: SegmentFormat) -> Result<Vec<Segment>> {
    let path = path.as_ref();
    parse_segments(&read_text(path)?, path, format)
}

/// [`read_segments`] on text already read; `path` names it in errors.
pub fn parse_segments(text: &str, path: &Path, format: SegmentFormat) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        let place = || format!("line {}", number + 1);
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = match format {
            SegmentFormat::ImigueSeconds => {
                line.split(['\t', ' ']).filter(|s| !s.is_empty()).collect()
            }
            SegmentFormat::MigaFrames => line.split(',').map(str::trim).collect(),
        };
        // Some real files write class codes as `4.0`.
        if parts.len() != 3 {
            return Err(Error::format(
                path,
                place(),
                format!("expected 3 fields, found {}", parts.len()),
            ));
        }
        let (class_text, start_text, end_text) = match format {
            SegmentFormat::ImigueSeconds => (parts[2], parts[0], parts[1]),
            SegmentFormat::MigaFrames => (parts[0], parts[1], parts[2]),
        };
        if number == 0 && format == SegmentFormat::MigaFrames && class_text.parse::<f64>().is_err()
        {
            continue; // header row
        }
        let number_of = |text: &str, what: &str| -> Result<f64> {
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    Error::format(
                        path,
                        place(),
                        format!("{what} `{text}` is not a non-negative number"),
                    )
                })
        };
        let code = class_text
            .parse::<f64>()
            .ok()
            .filter(|c| c.fract() == 0.0 && *c >= 0.0 && *c <= f64::from(u32::MAX))
            .and_then(|c| MicroGesture::from_code(c as u32))
            .ok_or_else(|| {
                Error::format(path, place(), format!("unknown class code `{class_text}`"))
            })?;
        let (start, end) = (number_of(start_text, "start")?, number_of(end_text, "end")?);
        if end < start {
            return Err(Error::format(
                path,
                place(),
                format!("segment ends ({end}) before it starts ({start})"),
            ));
        }
        let to_frame = |v: f64| match format {
            SegmentFormat::ImigueSeconds => (v * FPS).floor() as u32,
            SegmentFormat::MigaFrames => v.round() as u32,
        };
        segments.push(Segment {
            class: code,
            start_frame: to_frame(start),
            end_frame: to_frame(end),
        });
    }
    Ok(segments)
}

/// Writes segments as a MiGA 2025 `<ID>_label.csv` (`class,start,end`, frames, iMiGUE codes).
pub fn write_miga_segments(path: impl AsRef<Path>, segments: &[Segment]) -> Result<()> {
    let mut text = String::new();
    for s in segments {
        text.push_str(&format!(
            "{},{},{}\n",
            s.class.code(),
            s.start_frame,
            s.end_frame
        ));
    }
    crate::io::write_atomic(path.as_ref(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scratch_file;

    const HEADER: &str = "video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id,subject_gender,subject_nationality,win_or_lose\n";

    #[test]
    fn reads_rows_and_reports_bad_ones_by_line() {
        let text = format!(
            "{HEADER}371,1,6.8553,171,9.8553,246,20,1,F,United States,Win\n\
             371,2,9.8954,247,12.7597,318,42,1,F,United States,Win\n\
             371,3,12.0,300,11.0,275,99,1,F,United States,Win\n\
             372,1,1.0,25,2.0,50,99,2,M,Spain,Lose\n"
        );
        let path = scratch_file("labels.csv", text.as_bytes());
        let (table, problems) = LabelTable::read_lenient(&path).unwrap();
        assert_eq!(table.clips.len(), 2);
        assert_eq!(table.clips[0].class.code(), 20);
        assert_eq!(table.clips[0].frames(), 76);
        assert_eq!(table.clips[1].class.index(), 31);
        assert_eq!(table.clips[1].outcome, Outcome::Lose);
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("line 3, column class") && messages[0].contains("42"),
            "{}",
            messages[0]
        );
        assert!(
            messages[1].contains("line 4") && messages[1].contains("ends before"),
            "{}",
            messages[1]
        );
        let strict = LabelTable::read(&path).unwrap_err().to_string();
        assert!(strict.contains("line 3"), "{strict}");
        assert_eq!(table.videos()[&372].outcome, Outcome::Lose);
    }

    #[test]
    fn missing_column_is_named() {
        let path = scratch_file("short.csv", b"video_id,label_id\n1,1\n");
        let message = LabelTable::read(&path).unwrap_err().to_string();
        assert!(message.contains("start_time"), "{message}");
    }

    #[test]
    fn segment_files_in_both_formats() {
        let imigue = scratch_file("1.txt", b"6.7499\t10.2819\t4\n25.3411\t26.3513\t99\n");
        let segments = read_segments(&imigue, SegmentFormat::ImigueSeconds).unwrap();
        assert_eq!(
            segments[0],
            Segment {
                class: MicroGesture::from_code(4).unwrap(),
                start_frame: 168,
                end_frame: 257
            }
        );
        assert_eq!(segments[1].class.index(), 31);
        let miga = scratch_file("1_label.csv", b"class,start,end\n4,168,257\n");
        assert_eq!(
            read_segments(&miga, SegmentFormat::MigaFrames).unwrap(),
            segments[..1]
        );
        let out = scratch_file("out_label.csv", b"");
        write_miga_segments(&out, &segments).unwrap();
        assert_eq!(
            read_segments(&out, SegmentFormat::MigaFrames).unwrap(),
            segments
        );
        for (bad, expected) in [
            (&b"4,20,10\n"[..], "before it starts"),
            (b"77,1,2\n", "unknown class"),
            (b"4,1\n", "3 fields"),
        ] {
            let path = scratch_file("bad_label.csv", bad);
            let message = read_segments(&path, SegmentFormat::MigaFrames)
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("line 1") && message.contains(expected),
                "{message}"
            );
        }
    }
}
