//! Micro-gesture online recognition: every micro-gesture of an untrimmed video found (class,
//! start, end) by sliding windows of a trained micro-gesture pipeline ([`detect`]), written as
//! CSV and a timeline picture, and scored by F1 at a temporal IoU ([`evaluate_online`]).
//! docs/online.md describes the procedure, its parameters and the metric.

mod detect;
mod follow;
mod metric;
mod segments;

pub use detect::{Detection, detect, labelled};
pub use follow::Follower;
pub use metric::{Counts, OnlineEvaluation, evaluate_online, temporal_iou};
pub use segments::{
    DetectSettings, Instance, frame_scores, instances, instances_csv, read_instances,
};

/// A timeline of one video as SVG: the ground truth (when given) above the detections, each
/// instance a bar of its class's colour labelled with its iMiGUE code.
pub fn timeline_svg(
    video: &str,
    frames: usize,
    truth: Option<&[Instance]>,
    detections: &[Instance],
) -> std::result::Result<String, String> {
    let lane = |instances: &[Instance]| -> Vec<crate::plot::Bar> {
        instances
            .iter()
            .map(|i| crate::plot::Bar {
                start: i.start,
                end: i.end,
                group: i.class.index(),
                label: i.class.code().to_string(),
            })
            .collect()
    };
    let mut lanes = Vec::new();
    if let Some(truth) = truth {
        lanes.push(("truth".to_string(), lane(truth)));
    }
    lanes.push(("detected".to_string(), lane(detections)));
    crate::plot::timeline(&format!("video {video} (frames)"), frames, &lanes)
}
