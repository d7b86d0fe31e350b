//! Online recognition scored as the MiGA track scores it: a detection is right when its class
//! is the ground truth's and their temporal IoU reaches a threshold; precision, recall and F1
//! per class and over all instances.
//!
//! Matching, per video and class: detections in order of score (highest first; ties by start
//! frame), each takes the unmatched ground-truth instance it overlaps most, if that overlap's
//! temporal IoU is at least the threshold (a true positive), and is a false positive otherwise;
//! ground truth left unmatched are false negatives. So each ground-truth instance is matched
//! by one detection at most.

use std::collections::BTreeMap;

use miga_datasets::classes::{MicroGesture, NUM_CLASSES};
use serde::Serialize;

use super::Instance;

/// Temporal IoU of two frame ranges, inclusive at both ends.
pub fn temporal_iou(a: (u32, u32), b: (u32, u32)) -> f64 {
    let length = |(s, e): (u32, u32)| f64::from(e.saturating_sub(s)) + 1.0;
    let overlap = (u64::from(a.1.min(b.1)) + 1).saturating_sub(u64::from(a.0.max(b.0)));
    let overlap = overlap as f64;
    overlap / (length(a) + length(b) - overlap)
}

/// Counts and scores of one class, or of all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Detections matched to a ground-truth instance.
    pub true_positives: usize,
    /// Detections matched to none.
    pub false_positives: usize,
    /// Ground-truth instances no detection matched.
    pub false_negatives: usize,
    /// `tp / (tp + fp)` (0 without detections).
    pub precision: f64,
    /// `tp / (tp + fn)` (0 without ground truth).
    pub recall: f64,
    /// `2 tp / (2 tp + fp + fn)` (0 when all three are 0).
    pub f1: f64,
}

impl Counts {
    fn scored(tp: usize, fp: usize, fn_: usize) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Self {
            true_positives: tp,
            false_positives: fp,
            false_negatives: fn_,
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
            f1: ratio(2 * tp, 2 * tp + fp + fn_),
        }
    }
}

/// Online recognition metrics.
#[derive(Debug, Clone, Serialize)]
pub struct OnlineEvaluation {
    /// The temporal IoU a match needs.
    pub tiou: f64,
    /// Videos with ground truth or detections.
    pub videos: usize,
    /// Over every instance (micro-averaged): the track's F1.
    pub overall: Counts,
    /// F1 averaged over the classes with ground truth.
    pub mean_class_f1: f64,
    /// Per class (iMiGUE code), those with ground truth or detections.
    pub per_class: BTreeMap<u32, Counts>,
}

impl OnlineEvaluation {
    /// Writes `online.json` into `dir` (atomically).
    pub fn write(&self, dir: &std::path::Path) -> crate::Result<()> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        miga_datasets::io::write_atomic(&dir.join("online.json"), text.as_bytes())?;
        Ok(())
    }
}

/// Scores `detections` against `truth` at temporal IoU `tiou` (see the module documentation; a
/// match needs some overlap whatever `tiou` is).
/// Instances of the classes in `ignored` (usually the non-micro-gesture class, code 99, which
/// marks "no micro-gesture") are left out on both sides.
pub fn evaluate_online(
    truth: &[Instance],
    detections: &[Instance],
    tiou: f64,
    ignored: &[MicroGesture],
) -> OnlineEvaluation {
    type Key = (String, MicroGesture);
    let mut groups: BTreeMap<Key, (Vec<&Instance>, Vec<&Instance>)> = BTreeMap::new();
    for (instances, side) in [(truth, 0), (detections, 1)] {
        for instance in instances.iter().filter(|i| !ignored.contains(&i.class)) {
            let group = groups
                .entry((instance.video.clone(), instance.class))
                .or_default();
            if side == 0 {
                group.0.push(instance);
            } else {
                group.1.push(instance);
            }
        }
    }
    let mut counts = [(0usize, 0usize, 0usize); NUM_CLASSES];
    let mut videos = std::collections::BTreeSet::new();
    for ((video, class), (truth, mut found)) in groups {
        videos.insert(video);
        found.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.start.cmp(&b.start)));
        let mut matched = vec![false; truth.len()];
        let count = &mut counts[class.index()];
        for detection in found {
            let best = truth
                .iter()
                .enumerate()
                .filter(|(k, _)| !matched[*k])
                .map(|(k, t)| {
                    let overlap = temporal_iou((detection.start, detection.end), (t.start, t.end));
                    (k, overlap)
                })
                .filter(|&(_, overlap)| overlap > 0.0 && overlap >= tiou)
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
            match best {
                Some((k, _)) => {
                    matched[k] = true;
                    count.0 += 1;
                }
                None => count.1 += 1,
            }
        }
        count.2 += matched.iter().filter(|m| !**m).count();
    }
    let per_class: BTreeMap<u32, Counts> = MicroGesture::all()
        .zip(counts)
        .filter(|(_, (tp, fp, fn_))| tp + fp + fn_ > 0)
        .map(|(class, (tp, fp, fn_))| (class.code(), Counts::scored(tp, fp, fn_)))
        .collect();
    let total = counts
        .iter()
        .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    let with_truth: Vec<f64> = per_class
        .values()
        .filter(|c| c.true_positives + c.false_negatives > 0)
        .map(|c| c.f1)
        .collect();
    OnlineEvaluation {
        tiou,
        videos: videos.len(),
        overall: Counts::scored(total.0, total.1, total.2),
        mean_class_f1: if with_truth.is_empty() {
            0.0
        } else {
            with_truth.iter().sum::<f64>() / with_truth.len() as f64
        },
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use miga_datasets::annotations::{SegmentFormat, read_segments};

    use super::*;
    use crate::micro_gesture::online::labelled;

    fn instance(video: &str, code: u32, start: u32, end: u32, score: f32) -> Instance {
        Instance {
            video: video.into(),
            class: MicroGesture::from_code(code).unwrap(),
            start,
            end,
            score,
        }
    }

    #[test]
    fn temporal_iou_of_inclusive_frame_ranges() {
        assert_eq!(temporal_iou((0, 9), (0, 9)), 1.0);
        assert_eq!(temporal_iou((0, 9), (5, 14)), 5.0 / 15.0);
        assert_eq!(temporal_iou((0, 9), (10, 19)), 0.0);
        assert_eq!(temporal_iou((0, 9), (0, 4)), 0.5);
        assert_eq!(
            temporal_iou((u32::MAX - 1, u32::MAX), (u32::MAX, u32::MAX)),
            0.5
        );
    }

    #[test]
    fn one_detection_a_ground_truth_instance_best_score_first() {
        let truth = [instance("v", 1, 0, 9, 1.0), instance("v", 1, 20, 29, 1.0)];
        let found = [
            // Both overlap the first instance; the higher score takes it, the other is a false
            // positive even though it would have matched on its own.
            instance("v", 1, 1, 10, 0.4),
            instance("v", 1, 0, 9, 0.9),
            // Right place, wrong class: a false positive (and the instance a false negative).
            instance("v", 2, 20, 29, 0.8),
            // The 99 class is left out.
            instance("v", 99, 40, 49, 0.7),
        ];
        let e = evaluate_online(&truth, &found, 0.5, &[MicroGesture::from_code(99).unwrap()]);
        assert_eq!(
            (
                e.overall.true_positives,
                e.overall.false_positives,
                e.overall.false_negatives
            ),
            (1, 2, 1)
        );
        assert_eq!(e.overall.f1, 2.0 / (2.0 + 2.0 + 1.0));
        assert_eq!(e.per_class[&1].f1, 2.0 / 4.0);
        assert_eq!(e.per_class[&2].f1, 0.0);
        assert_eq!(e.mean_class_f1, 0.5);
        assert!(!e.per_class.contains_key(&99));
    }

    /// The real iMiGUE per-video annotations (`labels-per-video`), as instances.
    fn real_truth() -> Option<Vec<Instance>> {
        let dir = crate::shared_data("imigue/labels-per-video")?;
        let mut truth = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        let mut unreadable = Vec::new();
        for path in names {
            let video = path.file_stem().unwrap().to_string_lossy().into_owned();
            let Ok(segments) = read_segments(&path, SegmentFormat::ImigueSeconds) else {
                unreadable.push(video);
                continue;
            };
            truth.extend(labelled(&video, &segments));
        }
        // One real file is refused: 341.txt's first line has class code 0.
        assert_eq!(unreadable, ["341"]);
        Some(truth)
    }

    #[test]
    fn the_real_annotations_scored_against_changed_copies() {
        let Some(truth) = real_truth() else { return };
        let background = [MicroGesture::from_code(99).unwrap()];
        let counted: Vec<&Instance> = truth.iter().filter(|i| i.class.code() != 99).collect();
        let n = counted.len();
        assert!(n > 12_000, "{n} micro-gesture instances");
        let f1 = |found: &[Instance], tiou: f64| {
            evaluate_online(&truth, found, tiou, &background).overall
        };
        // Against itself: every instance found.
        let same = f1(&truth, 0.5);
        assert_eq!((same.true_positives, same.f1), (n, 1.0));

        // Where two instances of one class overlap in a video, a changed copy may match the
        // other one; the counts below are for the instances that overlap none of their class.
        let alone = |i: &Instance| {
            !counted.iter().any(|o| {
                !std::ptr::eq(*o, i)
                    && o.video == i.video
                    && o.class == i.class
                    && temporal_iou((o.start, o.end), (i.start, i.end)) > 0.0
            })
        };
        let lonely: Vec<Instance> = counted
            .iter()
            .filter(|i| alone(i))
            .map(|i| (*i).clone())
            .collect();
        assert!(lonely.len() as f64 > 0.95 * n as f64);
        let score = |found: &[Instance], tiou: f64| {
            let e = evaluate_online(&lonely, found, tiou, &background).overall;
            (e.true_positives, e.false_positives, e.false_negatives)
        };

        // Shifted 8 frames later: an instance of L frames keeps tIoU (L - 8) / (L + 8), at
        // least 0.5 when L >= 24.
        let shifted: Vec<Instance> = lonely
            .iter()
            .map(|i| Instance {
                start: i.start + 8,
                end: i.end + 8,
                ..i.clone()
            })
            .collect();
        let long = lonely.iter().filter(|i| i.end - i.start + 1 >= 24).count();
        assert_eq!(
            score(&shifted, 0.5),
            (long, lonely.len() - long, lonely.len() - long)
        );

        // Shortened to the first half (rounded down, at least a frame): tIoU = half / L, at least
        // 1/3, so all match at 0.3, and at 0.5 those of even length (and single frames).
        let halved: Vec<Instance> = lonely
            .iter()
            .map(|i| {
                let length = i.end - i.start + 1;
                let half = (length / 2).max(1);
                Instance {
                    end: i.start + half - 1,
                    ..i.clone()
                }
            })
            .collect();
        assert_eq!(score(&halved, 0.3), (lonely.len(), 0, 0));
        let even = lonely
            .iter()
            .filter(|i| {
                let l = i.end - i.start + 1;
                l % 2 == 0 || l == 1
            })
            .count();
        assert_eq!(
            score(&halved, 0.5),
            (even, lonely.len() - even, lonely.len() - even)
        );

        // Every fifth relabelled to a class its video does not have; every fourth of the rest
        // dropped: F1 = 2 tp / (2 tp + fp + fn) with the counts made here.
        let mut changed = Vec::new();
        let (mut relabelled, mut dropped) = (0, 0);
        for (k, i) in lonely.iter().enumerate() {
            if k % 5 == 0 {
                let present: Vec<MicroGesture> = lonely
                    .iter()
                    .filter(|o| o.video == i.video)
                    .map(|o| o.class)
                    .collect();
                let other = MicroGesture::all()
                    .find(|c| c.code() != 99 && !present.contains(c))
                    .unwrap();
                changed.push(Instance {
                    class: other,
                    ..i.clone()
                });
                relabelled += 1;
            } else if k % 4 == 0 {
                dropped += 1;
            } else {
                changed.push(i.clone());
            }
        }
        let tp = lonely.len() - relabelled - dropped;
        let (fp, fn_) = (relabelled, relabelled + dropped);
        assert_eq!(score(&changed, 0.5), (tp, fp, fn_));
        let e = evaluate_online(&lonely, &changed, 0.5, &background);
        assert_eq!(e.overall.f1, (2 * tp) as f64 / (2 * tp + fp + fn_) as f64);
        // A fifth relabelled, a fifth dropped: about 2/3.
        assert!((e.overall.f1 - 2.0 / 3.0).abs() < 0.02, "{}", e.overall.f1);
    }
}
