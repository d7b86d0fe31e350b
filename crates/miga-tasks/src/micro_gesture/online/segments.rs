//! From window scores to micro-gesture instances (docs/online.md, "Procedure"):
//!
//! 1. windows of `window` frames every `stride` frames cover the video (the last one ends at
//!    its last frame), each scored by the classifier (class probabilities);
//! 2. a frame's scores are the mean of those of the windows that cover it;
//! 3. smoothed by a centred moving average over `smooth` frames;
//! 4. a frame is labelled with its most probable micro-gesture class, or as background when the
//!    background class (non-micro-gesture, code 99) is at least as probable or the class's
//!    probability is below `threshold`;
//! 5. each maximal run of frames with one class is an instance, scored by the class's mean
//!    probability over the run; runs shorter than `min_length` frames are dropped.
//!
//! Instances never overlap, so no suppression across windows is needed after step 5.

use std::path::Path;

use miga_datasets::classes::{MicroGesture, NON_MICRO_GESTURE_CODE, NUM_CLASSES};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One micro-gesture instance of a video: a class over a frame range, inclusive at both ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The video id.
    pub video: String,
    /// The class.
    pub class: MicroGesture,
    /// First frame.
    pub start: u32,
    /// Last frame, inclusive.
    pub end: u32,
    /// Confidence (ground truth: 1).
    pub score: f32,
}

/// How windows are laid and instances found (the procedure above).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectSettings {
    /// Frames a window (the classifier samples its clip frames from them).
    pub window: usize,
    /// Frames between window starts.
    pub stride: usize,
    /// Frames of the centred moving average over frame scores (1: none).
    pub smooth: usize,
    /// A frame's class must be at least this probable to count (else background).
    pub threshold: f32,
    /// Instances shorter than this many frames are dropped.
    pub min_length: usize,
}

impl Default for DetectSettings {
    fn default() -> Self {
        Self {
            window: 32,
            stride: 8,
            smooth: 9,
            threshold: 0.3,
            min_length: 8,
        }
    }
}

impl DetectSettings {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidConfig {
                path: "detect".into(),
                reason,
            })
        };
        if self.window == 0 || self.stride == 0 || self.smooth == 0 {
            return bad("window, stride and smooth must be at least 1".into());
        }
        if self.smooth.is_multiple_of(2) {
            return bad(format!(
                "smooth {} must be odd (a moving average centred on the frame)",
                self.smooth
            ));
        }
        if self.stride > self.window {
            return bad(format!(
                "stride {} is longer than the window {}: frames between windows would have no score",
                self.stride, self.window
            ));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad(format!("threshold {} is outside [0, 1]", self.threshold));
        }
        Ok(())
    }

    /// The windows `(first, last)` (inclusive) over a video of `frames` frames: every `stride`
    /// frames, and one more ending at the last frame when the stride does not land there.
    /// A video shorter than a window is one window over all of it.
    pub fn windows(&self, frames: usize) -> Vec<(usize, usize)> {
        if frames == 0 {
            return Vec::new();
        }
        if frames <= self.window {
            return vec![(0, frames - 1)];
        }
        let mut out: Vec<(usize, usize)> = (0..=frames - self.window)
            .step_by(self.stride)
            .map(|s| (s, s + self.window - 1))
            .collect();
        if out.last().is_some_and(|&(_, e)| e + 1 < frames) {
            out.push((frames - self.window, frames - 1));
        }
        out
    }

    /// The most frames that can arrive after an instance's last frame before streaming
    /// detection gives it out (window + smooth / 2 + 1, and one more for the newest frame,
    /// which counts once a later one is there).
    pub fn latency(&self) -> usize {
        self.window + self.smooth / 2 + 2
    }
}

/// Per-frame class probabilities of a video of `frames` frames from its scored windows (step
/// 2): row `t` is the mean over the windows covering frame `t` (zeros where none does).
pub fn frame_scores(frames: usize, windows: &[((usize, usize), Vec<f32>)]) -> Vec<Vec<f32>> {
    let mut sums = vec![vec![0.0f32; NUM_CLASSES]; frames];
    let mut counts = vec![0u32; frames];
    for ((first, last), probabilities) in windows {
        for t in *first..=(*last).min(frames.saturating_sub(1)) {
            sums[t]
                .iter_mut()
                .zip(probabilities)
                .for_each(|(s, p)| *s += p);
            counts[t] += 1;
        }
    }
    for (row, &n) in sums.iter_mut().zip(&counts) {
        if n > 0 {
            row.iter_mut().for_each(|s| *s /= n as f32);
        }
    }
    sums
}

/// Centred moving average over `width` frames (step 3); the ends average what they have.
fn smoothed(scores: &[Vec<f32>], width: usize) -> Vec<Vec<f32>> {
    let half = width / 2;
    (0..scores.len())
        .map(|t| {
            let (a, b) = (t.saturating_sub(half), (t + half).min(scores.len() - 1));
            let mut row = vec![0.0f32; NUM_CLASSES];
            for s in &scores[a..=b] {
                row.iter_mut().zip(s).for_each(|(r, v)| *r += v);
            }
            let n = (b - a + 1) as f32;
            row.iter_mut().for_each(|r| *r /= n);
            row
        })
        .collect()
}

/// The instances of `video` from its per-frame scores (steps 3 to 5).
pub fn instances(video: &str, scores: &[Vec<f32>], settings: &DetectSettings) -> Vec<Instance> {
    if scores.is_empty() {
        return Vec::new();
    }
    let background = MicroGesture::from_code(NON_MICRO_GESTURE_CODE).map(|c| c.index());
    let smooth = smoothed(scores, settings.smooth.max(1));
    let labels: Vec<Option<(usize, f32)>> = smooth
        .iter()
        .map(|row| {
            let (best, p) = row
                .iter()
                .enumerate()
                .filter(|(c, _)| Some(*c) != background)
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))?;
            let rest = background.map_or(0.0, |b| row[b]);
            (*p >= settings.threshold && *p > rest).then_some((best, *p))
        })
        .collect();
    let mut out = Vec::new();
    let mut t = 0;
    while t < labels.len() {
        let Some((class, _)) = labels[t] else {
            t += 1;
            continue;
        };
        let start = t;
        let mut sum = 0.0;
        while t < labels.len() && labels[t].is_some_and(|(c, _)| c == class) {
            sum += labels[t].map_or(0.0, |(_, p)| p);
            t += 1;
        }
        if t - start >= settings.min_length.max(1) {
            out.push(Instance {
                video: video.to_string(),
                class: MicroGesture::from_index(class).expect("a class index"),
                start: start as u32,
                end: (t - 1) as u32,
                score: sum / (t - start) as f32,
            });
        }
    }
    out
}

/// Instances as CSV: `video,class,start,end,score`, the class as its iMiGUE code, frames
/// inclusive.
pub fn instances_csv(instances: &[Instance]) -> String {
    let mut csv = String::from("video,class,start,end,score\n");
    for i in instances {
        csv.push_str(&format!(
            "{},{},{},{},{:.6}\n",
            i.video,
            i.class.code(),
            i.start,
            i.end,
            i.score
        ));
    }
    csv
}

/// Reads a file written by [`instances_csv`]; errors name the file and line.
pub fn read_instances(path: &Path) -> Result<Vec<Instance>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let bad = |reason: &str| {
            Error::from(miga_datasets::Error::format(
                path,
                format!("line {}", number + 1),
                reason,
            ))
        };
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [video, class, start, end, score] = fields[..] else {
            return Err(bad("expected video,class,start,end,score"));
        };
        if number == 0 && class.parse::<f64>().is_err() {
            continue; // the header
        }
        let class = class
            .parse::<f64>()
            .ok()
            .filter(|c| c.fract() == 0.0 && *c >= 0.0)
            .and_then(|c| MicroGesture::from_code(c as u32))
            .ok_or_else(|| bad("the class is not an iMiGUE code (1..31, 99)"))?;
        let frame = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| bad("a frame is not a whole number"))
        };
        let (start, end) = (frame(start)?, frame(end)?);
        if end < start {
            return Err(bad("the end frame is before the start"));
        }
        let score = score
            .parse::<f32>()
            .ok()
            .filter(|s| s.is_finite())
            .ok_or_else(|| bad("the score is not a number"))?;
        out.push(Instance {
            video: video.to_string(),
            class,
            start,
            end,
            score,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(index: usize, p: f32) -> Vec<f32> {
        let mut row = vec![(1.0 - p) / (NUM_CLASSES - 1) as f32; NUM_CLASSES];
        row[index] = p;
        row
    }

    #[test]
    fn windows_cover_every_frame_once_laid() {
        let s = DetectSettings {
            window: 10,
            stride: 4,
            ..DetectSettings::default()
        };
        assert_eq!(s.windows(0), vec![]);
        assert_eq!(s.windows(7), vec![(0, 6)]);
        assert_eq!(s.windows(18), vec![(0, 9), (4, 13), (8, 17)]);
        assert_eq!(s.windows(20), vec![(0, 9), (4, 13), (8, 17), (10, 19)]);
        let scores = frame_scores(
            20,
            &[((0, 9), one_hot(0, 1.0)), ((10, 19), one_hot(1, 1.0))],
        );
        assert_eq!((scores[9][0], scores[10][1]), (1.0, 1.0));
        let averaged = frame_scores(3, &[((0, 1), one_hot(0, 1.0)), ((1, 2), one_hot(0, 0.5))]);
        assert_eq!(averaged[1][0], 0.75);
    }

    #[test]
    fn runs_of_one_class_are_instances_and_background_is_skipped() {
        let background = MicroGesture::from_code(99).unwrap().index();
        // 0..9 class 3 (p 0.9), 10..14 background, 15..17 class 5 (too short), 18..29 class 5
        // at p 0.2 (under the threshold), 30..39 class 7.
        let mut frames = Vec::new();
        frames.extend((0..10).map(|_| one_hot(3, 0.9)));
        frames.extend((10..15).map(|_| one_hot(background, 0.9)));
        frames.extend((15..18).map(|_| one_hot(5, 0.9)));
        frames.extend((18..30).map(|_| one_hot(5, 0.2)));
        frames.extend((30..40).map(|_| one_hot(7, 0.6)));
        let settings = DetectSettings {
            smooth: 1,
            threshold: 0.3,
            min_length: 4,
            ..DetectSettings::default()
        };
        let found = instances("v", &frames, &settings);
        let spans: Vec<(u32, u32, u32)> = found
            .iter()
            .map(|i| (i.class.code(), i.start, i.end))
            .collect();
        let code = |index: usize| MicroGesture::from_index(index).unwrap().code();
        assert_eq!(spans, vec![(code(3), 0, 9), (code(7), 30, 39)]);
        assert!((found[0].score - 0.9).abs() < 1e-6);
        // Through CSV and back.
        let dir = std::env::temp_dir().join(format!("miga-online-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("detections.csv");
        std::fs::write(&path, instances_csv(&found)).unwrap();
        let back = read_instances(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            (back[1].class, back[1].start, back[1].end),
            (found[1].class, 30, 39)
        );
        std::fs::write(&path, "video,class,start,end,score\nv,12,9,3,0.5\n").unwrap();
        let err = read_instances(&path).unwrap_err().to_string();
        assert!(
            err.contains("detections.csv") && err.contains("line 2"),
            "{err}"
        );
        std::fs::write(&path, "v,3.5,0,3,0.5\n").unwrap();
        let err = read_instances(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("iMiGUE code"),
            "{err}"
        );
        // Without a header: every line is an instance.
        std::fs::write(&path, "v,12,0,3,0.5\n").unwrap();
        assert_eq!(read_instances(&path).unwrap().len(), 1);
        let even = DetectSettings {
            smooth: 4,
            ..DetectSettings::default()
        };
        assert!(even.validate().is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn smoothing_removes_a_flicker() {
        let mut frames: Vec<Vec<f32>> = (0..21).map(|_| one_hot(2, 0.8)).collect();
        frames[10] = one_hot(4, 0.9);
        let raw = DetectSettings {
            smooth: 1,
            min_length: 1,
            ..DetectSettings::default()
        };
        assert_eq!(instances("v", &frames, &raw).len(), 3);
        let smooth = DetectSettings { smooth: 5, ..raw };
        let found = instances("v", &frames, &smooth);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].start, found[0].end), (0, 20));
    }
}
