//! Whole (untrimmed) videos, for online recognition: where a video's streams are, how long it
//! is, its labelled segments, the clips of windows over it, and background clips drawn from
//! the stretches no segment covers (labelled non-micro-gesture, code 99, so that a classifier
//! learns "no micro-gesture").

use std::path::PathBuf;

use crate::annotations::{Segment, SegmentFormat, read_segments};
use crate::classes::{MicroGesture, NON_MICRO_GESTURE_CODE};
use crate::clips::{ClipRecord, SkeletonSource};
use crate::protocols::{MigaLayout, Split};
use crate::sampling::SeededRng;
use crate::video::Video;
use crate::{Error, Result};

/// A whole video and its labelled segments.
#[derive(Debug, Clone, PartialEq)]
pub struct UntrimmedVideo {
    /// The video id.
    pub id: String,
    /// Frames (of the video, or of the skeleton where there is no video).
    pub frames: usize,
    /// The video (MP4 or frame folder).
    pub rgb: Option<PathBuf>,
    /// The skeleton.
    pub skeleton: Option<SkeletonSource>,
    /// Labelled segments (none for an unlabelled video), in file order.
    pub segments: Vec<Segment>,
}

impl UntrimmedVideo {
    /// A video from its streams: its length is the video's, or the skeleton's without a video;
    /// neither is an error naming the id.
    pub fn new(
        id: &str,
        rgb: Option<PathBuf>,
        skeleton: Option<SkeletonSource>,
        segments: Vec<Segment>,
    ) -> Result<Self> {
        let frames = match (&rgb, &skeleton) {
            (Some(path), _) => Video::open(path)?.info().frames,
            (None, Some(skeleton)) => skeleton.read()?.frames(),
            (None, None) => {
                return Err(Error::request(
                    id,
                    "neither a video nor a skeleton to detect in",
                ));
            }
        };
        Ok(Self {
            id: id.to_string(),
            frames,
            rgb,
            skeleton,
            segments,
        })
    }

    /// The videos of a MiGA layout in `split`, with their `<ID>_label.csv` segments where there
    /// is one; videos that cannot be opened are problems (returned, not fatal).
    pub fn from_miga(layout: &MigaLayout, split: Split) -> (Vec<Self>, Vec<Error>) {
        let mut videos = Vec::new();
        let mut problems = Vec::new();
        for (id, video) in layout.videos.iter().filter(|(_, v)| v.split == Some(split)) {
            let segments = match &video.labels {
                Some(path) => match read_segments(path, SegmentFormat::MigaFrames) {
                    Ok(segments) => segments,
                    Err(e) => {
                        problems.push(e);
                        continue;
                    }
                },
                None => Vec::new(),
            };
            let skeleton = video.skeleton.clone().map(SkeletonSource::Xlsx);
            match Self::new(id, video.video.clone(), skeleton, segments) {
                Ok(v) => videos.push(v),
                Err(e) => problems.push(e),
            }
        }
        (videos, problems)
    }

    /// The unlabelled clip of frames `first..=last`, id `<video>@<first>`.
    pub fn window(&self, first: usize, last: usize) -> ClipRecord {
        ClipRecord {
            id: format!("{}@{first}", self.id),
            video: self.id.clone(),
            class: None,
            start_frame: first,
            end_frame: last,
            rgb: self.rgb.clone(),
            skeleton: self.skeleton.clone(),
        }
    }

    /// The maximal frame ranges (inclusive) that no labelled segment covers.
    pub fn unlabelled(&self) -> Vec<(usize, usize)> {
        let mut covered = vec![false; self.frames];
        for s in &self.segments {
            let end = (s.end_frame as usize).min(self.frames.saturating_sub(1));
            for c in covered
                .iter_mut()
                .take(end + 1)
                .skip(s.start_frame as usize)
            {
                *c = true;
            }
        }
        let mut out = Vec::new();
        let mut t = 0;
        while t < self.frames {
            if covered[t] {
                t += 1;
                continue;
            }
            let start = t;
            while t < self.frames && !covered[t] {
                t += 1;
            }
            out.push((start, t - 1));
        }
        out
    }
}

/// Background clips for training: `ratio` of them a labelled segment of each video (rounded),
/// each `length` frames inside a stretch no segment covers (drawn with replacement; none in a
/// video without a stretch that long), labelled non-micro-gesture (code 99), ids
/// `<video>_bg<k>`. The same seed draws the same clips.
pub fn background_clips(
    videos: &[UntrimmedVideo],
    ratio: f64,
    length: usize,
    seed: u64,
) -> Vec<ClipRecord> {
    let class = MicroGesture::from_code(NON_MICRO_GESTURE_CODE);
    let length = length.max(1);
    let mut out = Vec::new();
    for (v, video) in videos.iter().enumerate() {
        let wanted = (video.segments.len() as f64 * ratio.max(0.0)).round() as usize;
        let room: Vec<(usize, usize)> = video
            .unlabelled()
            .into_iter()
            .filter(|(a, b)| b + 1 - a >= length)
            .collect();
        if room.is_empty() {
            continue;
        }
        let mut rng = SeededRng::for_item(seed, 0, v as u64);
        for k in 0..wanted {
            let (a, b) = room[rng.below(room.len())];
            let first = a + rng.below(b + 2 - a - length);
            out.push(ClipRecord {
                id: format!("{}_bg{k}", video.id),
                class,
                ..video.window(first, first + length - 1)
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(frames: usize, segments: &[(u32, u32)]) -> UntrimmedVideo {
        UntrimmedVideo {
            id: "7".into(),
            frames,
            rgb: None,
            skeleton: None,
            segments: segments
                .iter()
                .map(|&(start_frame, end_frame)| Segment {
                    class: MicroGesture::from_code(3).unwrap(),
                    start_frame,
                    end_frame,
                })
                .collect(),
        }
    }

    #[test]
    fn background_clips_lie_where_no_segment_is() {
        let v = video(100, &[(10, 29), (25, 39), (70, 99)]);
        assert_eq!(v.unlabelled(), vec![(0, 9), (40, 69)]);
        let clips = background_clips(std::slice::from_ref(&v), 2.0, 16, 5);
        assert_eq!(clips.len(), 6);
        for c in &clips {
            assert_eq!(c.class.map(|c| c.code()), Some(99));
            assert_eq!(c.end_frame - c.start_frame + 1, 16);
            assert!(c.start_frame >= 40 && c.end_frame <= 69, "{c:?}");
        }
        assert_eq!(
            clips,
            background_clips(std::slice::from_ref(&v), 2.0, 16, 5)
        );
        assert_ne!(
            clips,
            background_clips(std::slice::from_ref(&v), 2.0, 16, 6)
        );
        // No stretch long enough: none.
        assert!(background_clips(&[v], 1.0, 40, 5).is_empty());
        let err = UntrimmedVideo::new("8", None, None, Vec::new()).unwrap_err();
        assert!(err.to_string().contains('8'), "{err}");
    }
}
