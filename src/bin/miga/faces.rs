//! `miga faces`: aligned 112x112 face crops from a video and its OpenPose skeleton.

use std::path::PathBuf;

use clap::Args;
use miga::Error;
use miga::datasets::clips::SkeletonSource;
use miga::datasets::faces::write_faces;
use miga::datasets::video::Video;

use crate::progress;

#[derive(Args)]
pub struct FacesArgs {
    /// The video's OpenPose output: a folder of per-frame JSON files, or a MiGA
    /// `<ID>_openpose.xlsx` table (70 face keypoints per frame)
    #[arg(long)]
    skeleton: PathBuf,
    /// The video: an H.264 MP4 file or a folder of numbered frame images
    #[arg(long)]
    video: PathBuf,
    /// Output folder: `face_<frame>.png` per aligned frame and `faces.json` (skipped frames
    /// and why)
    #[arg(long)]
    out: PathBuf,
    /// Minimum OpenPose confidence of every face point used (eyes, nose tip, mouth corners)
    #[arg(long, default_value_t = 0.3)]
    min_confidence: f32,
}

pub fn run(args: FacesArgs) -> Result<(), Error> {
    let source = if args.skeleton.is_dir() {
        SkeletonSource::OpenPose(args.skeleton.clone())
    } else {
        SkeletonSource::Xlsx(args.skeleton.clone())
    };
    let skeleton = source.read()?;
    let mut video = Video::open(&args.video)?;
    let bar = progress::bar(video.info().frames as u64, "frames");
    let report = write_faces(
        &skeleton,
        &mut video,
        &args.out,
        args.min_confidence,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    println!(
        "wrote {} face crops of {} frames to {}; {} skipped (reasons in {})",
        report.written,
        report.video_frames,
        args.out.display(),
        report.skipped.len(),
        args.out.join("faces.json").display()
    );
    if report.skeleton_frames != report.video_frames {
        println!(
            "note: the skeleton has {} frames and the video {}",
            report.skeleton_frames, report.video_frames
        );
    }
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for skipped in &report.skipped {
        *reasons.entry(skipped.reason.to_string()).or_default() += 1;
    }
    // The ten most frequent reasons.
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (reason, count) in reasons.iter().take(10) {
        println!("  {count:>6} frames: {reason}");
    }
    Ok(())
}
