//! `miga detect`: micro-gesture online recognition in untrimmed videos, and `miga eval --task
//! online`'s scoring of detections against label files.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use clap::Args;
use miga::Error;
use miga::datasets::annotations::{SegmentFormat, read_segments};
use miga::datasets::classes::{MicroGesture, NON_MICRO_GESTURE_CODE};
use miga::datasets::clips::SkeletonSource;
use miga::datasets::io::write_atomic;
use miga::datasets::untrimmed::UntrimmedVideo;
use miga::datasets::video::Video;
use miga::datasets::{MigaLayout, Split};
use miga::device::{BackendTask, DeviceSpec};
use miga::tasks::micro_gesture::MicroGesturePipeline;
use miga::tasks::micro_gesture::online::{
    DetectSettings, Detection, Follower, Instance, detect, evaluate_online, instances_csv,
    labelled, timeline_svg,
};

/// Where the videos are: one video with its streams, or a split of a MiGA layout.
#[derive(Args)]
pub struct Videos {
    /// One video (MP4 or frame folder)
    #[arg(long, conflicts_with = "data")]
    video: Option<PathBuf>,
    /// Its OpenPose skeleton (`<ID>_openpose.xlsx` or a folder of OpenPose JSON frames)
    #[arg(long, conflicts_with = "data")]
    skeleton: Option<PathBuf>,
    /// Its labels (`<ID>_label.csv`), to score the detections and draw them on the timeline
    #[arg(long, conflicts_with = "data")]
    labels: Option<PathBuf>,
    /// A MiGA 2025 folder: every video of --split
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --data: which split
    #[arg(long, value_enum, default_value = "test")]
    split: crate::evaluate::SplitArg,
}

impl Videos {
    /// The videos, with their labelled segments where there are label files.
    fn open(&self) -> Result<Vec<UntrimmedVideo>, Error> {
        if let Some(root) = &self.data {
            let (videos, problems) =
                UntrimmedVideo::from_miga(&MigaLayout::scan(root)?, self.split.split());
            for problem in &problems {
                tracing::warn!("{problem}");
            }
            if videos.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{}: no video in the {} split",
                    root.display(),
                    self.split.split()
                )));
            }
            return Ok(videos);
        }
        let named = self
            .video
            .as_ref()
            .or(self.skeleton.as_ref())
            .ok_or_else(|| {
                Error::InvalidArgument("--video and/or --skeleton, or --data, is needed".into())
            })?;
        let (id, skeleton) = (video_id(named), self.skeleton.clone().map(skeleton_source));
        let segments = match &self.labels {
            Some(path) => read_segments(path, SegmentFormat::MigaFrames)?,
            None => Vec::new(),
        };
        Ok(vec![UntrimmedVideo::new(
            &id,
            self.video.clone(),
            skeleton,
            segments,
        )?])
    }
}

#[derive(Args)]
pub struct DetectArgs {
    /// A micro-gesture run (on features or end to end) from `miga train`
    #[arg(long)]
    run: PathBuf,
    #[command(flatten)]
    videos: Videos,
    /// Output folder: detections.csv, detect.json, timeline/<video>.svg (and online.json when
    /// labels are given)
    #[arg(long)]
    out: PathBuf,
    /// Frames a window
    #[arg(long, default_value_t = DetectSettings::default().window)]
    window: usize,
    /// Frames between window starts
    #[arg(long, default_value_t = DetectSettings::default().stride)]
    stride: usize,
    /// Frames of the moving average over per-frame scores (1: none)
    #[arg(long, default_value_t = DetectSettings::default().smooth)]
    smooth: usize,
    /// Least probability of a frame's class (else the frame is background)
    #[arg(long, default_value_t = DetectSettings::default().threshold)]
    threshold: f32,
    /// Instances shorter than this many frames are dropped
    #[arg(long, default_value_t = DetectSettings::default().min_length)]
    min_length: usize,
    /// With labels: the temporal IoU a detection needs to count
    #[arg(long, default_value_t = 0.5)]
    tiou: f64,
    /// Follow a growing video: --video a frame folder and --skeleton a folder of OpenPose JSON
    /// frames (or a finished table) being written; instances are printed (and appended to
    /// detections.csv, the only file written) as soon as they are final, within
    /// window + smooth/2 + 2 frames of their end; the video is taken as finished after --idle
    /// seconds without a new frame
    #[arg(long, requires = "video", conflicts_with_all = ["data", "labels"])]
    follow: bool,
    /// With --follow: seconds between looks at the folders
    #[arg(long, default_value_t = 0.5)]
    poll: f64,
    /// With --follow: seconds without a new frame after which the video is finished
    #[arg(long, default_value_t = 10.0)]
    idle: f64,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

/// `miga eval --task online`: detections scored against label files.
pub struct OnlineEval {
    /// The detections file.
    pub detections: PathBuf,
    /// A MiGA 2025 folder whose --split label files are the truth.
    pub data: Option<PathBuf>,
    /// Or one video's label file.
    pub labels: Option<PathBuf>,
    /// The split of `data`.
    pub split: Split,
    /// The temporal IoU a match needs.
    pub tiou: f64,
    /// Whether code 99 counts as a class.
    pub count_99: bool,
    /// Where online.json goes [default: beside the detections].
    pub out: Option<PathBuf>,
}

struct Detecting {
    run: PathBuf,
    videos: Vec<UntrimmedVideo>,
    settings: DetectSettings,
}

impl BackendTask for Detecting {
    type Output = Result<Vec<Detection>, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let pipeline = MicroGesturePipeline::<B>::from_run(&self.run, &device)?;
        let mut out = Vec::new();
        for video in &self.videos {
            let found = detect(&pipeline, video, &self.settings)?;
            tracing::info!(
                "{}: {} instances in {} frames ({:.0} frames/s)",
                video.id,
                found.instances.len(),
                found.frames,
                found.frames_per_second()
            );
            out.push(found);
        }
        Ok(out)
    }
}

fn ignored(count_99: bool) -> Vec<MicroGesture> {
    match count_99 {
        true => Vec::new(),
        false => MicroGesture::from_code(NON_MICRO_GESTURE_CODE)
            .into_iter()
            .collect(),
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Checks a temporal IoU threshold: in (0, 1].
fn check_tiou(tiou: f64) -> Result<(), Error> {
    if tiou > 0.0 && tiou <= 1.0 {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "--tiou {tiou} must be above 0 and at most 1"
    )))
}

fn report(
    truth: &[Instance],
    detections: &[Instance],
    tiou: f64,
    count_99: bool,
    out: &Path,
) -> Result<(), Error> {
    let evaluation = evaluate_online(truth, detections, tiou, &ignored(count_99));
    evaluation.write(out)?;
    println!(
        "{} videos, tIoU {}: precision {:.3}, recall {:.3}, F1 {:.3} (mean class F1 {:.3}) -> {}",
        evaluation.videos,
        tiou,
        evaluation.overall.precision,
        evaluation.overall.recall,
        evaluation.overall.f1,
        evaluation.mean_class_f1,
        out.join("online.json").display()
    );
    Ok(())
}

/// The segments of `labels` as instances of video `id`.
fn segments_of(id: &str, labels: &Path) -> Result<Vec<Instance>, Error> {
    Ok(labelled(
        id,
        &read_segments(labels, SegmentFormat::MigaFrames)?,
    ))
}

/// A skeleton given on the command line: a folder of OpenPose JSON frames, or a table.
fn skeleton_source(path: PathBuf) -> SkeletonSource {
    match path.is_dir() {
        true => SkeletonSource::OpenPose(path),
        false => SkeletonSource::Xlsx(path),
    }
}

/// A video's id from one of its files (`0001.mp4`, `0001_openpose.xlsx`, `0001_label.csv`).
fn video_id(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    ["_openpose", "_label"]
        .iter()
        .find_map(|suffix| stem.strip_suffix(suffix))
        .unwrap_or(&stem)
        .to_string()
}

pub fn run(args: DetectArgs) -> Result<(), Error> {
    let settings = DetectSettings {
        window: args.window,
        stride: args.stride,
        smooth: args.smooth,
        threshold: args.threshold,
        min_length: args.min_length,
    };
    settings.validate()?;
    check_tiou(args.tiou)?;
    if args.follow {
        return follow(args, settings);
    }
    let videos = args.videos.open()?;
    let detections = args.device.run(Detecting {
        run: args.run.clone(),
        videos: videos.clone(),
        settings: settings.clone(),
    })??;
    let found: Vec<Instance> = detections
        .iter()
        .flat_map(|d| d.instances.clone())
        .collect();
    write(&args.out.join("detections.csv"), &instances_csv(&found))?;
    let has_labels = videos.iter().any(|v| !v.segments.is_empty());
    for (video, detection) in videos.iter().zip(&detections) {
        let known = labelled(&video.id, &video.segments);
        let svg = timeline_svg(
            &video.id,
            video.frames,
            has_labels.then_some(known.as_slice()),
            &detection.instances,
        )
        .map_err(|reason| Error::InvalidArgument(format!("timeline of {}: {reason}", video.id)))?;
        write(
            &args.out.join("timeline").join(format!("{}.svg", video.id)),
            &svg,
        )?;
    }
    let (frames, seconds): (usize, f64) = detections
        .iter()
        .fold((0, 0.0), |(f, s), d| (f + d.frames, s + d.seconds));
    let summary = serde_json::json!({
        "run": args.run,
        "settings": settings,
        "videos": detections.len(),
        "frames": frames,
        "windows": detections.iter().map(|d| d.windows).sum::<usize>(),
        "seconds": seconds,
        "frames_per_second": frames as f64 / seconds.max(1e-9),
        "device": args.device.to_string(),
    });
    write(
        &args.out.join("detect.json"),
        &serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    println!(
        "{} instances in {} videos ({} frames, {:.0} frames/s) -> {}",
        found.len(),
        detections.len(),
        frames,
        frames as f64 / seconds.max(1e-9),
        args.out.join("detections.csv").display()
    );
    if has_labels {
        let known: Vec<Instance> = videos
            .iter()
            .flat_map(|v| labelled(&v.id, &v.segments))
            .collect();
        report(&known, &found, args.tiou, false, &args.out)?;
    }
    Ok(())
}

pub fn eval(args: OnlineEval) -> Result<(), Error> {
    check_tiou(args.tiou)?;
    let found = miga::tasks::micro_gesture::online::read_instances(&args.detections)?;
    let known: Vec<Instance> = match (&args.data, &args.labels) {
        (Some(root), _) => {
            let layout = MigaLayout::scan(root)?;
            let mut known = Vec::new();
            for (id, video) in layout
                .videos
                .iter()
                .filter(|(_, v)| v.split == Some(args.split))
            {
                let Some(labels) = &video.labels else {
                    continue;
                };
                known.extend(segments_of(id, labels)?);
            }
            known
        }
        (None, Some(labels)) => segments_of(&video_id(labels), labels)?,
        (None, None) => {
            return Err(Error::InvalidArgument(
                "--task online needs the truth: --data (with --split) or --labels".into(),
            ));
        }
    };
    if known.is_empty() {
        return Err(Error::InvalidArgument(
            "no labelled segments to score against (give --labels, or --data with label files)"
                .into(),
        ));
    }
    let out = args.out.clone().unwrap_or_else(|| {
        args.detections
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    });
    report(&known, &found, args.tiou, args.count_99, &out)
}

/// Frames of a growing stream that are whole in both streams: the video folder's frames, and
/// the skeleton's where there is one (an OpenPose folder's JSON files; `table_frames`, the rows
/// of a finished table, read once).
fn available(
    video: &Path,
    skeleton: Option<&SkeletonSource>,
    table_frames: Option<usize>,
) -> Result<usize, Error> {
    let frames = Video::open(video)?.info().frames;
    let skeleton = match (skeleton, table_frames) {
        (Some(SkeletonSource::OpenPose(dir)), _) => std::fs::read_dir(dir)
            .map_err(|e| miga::datasets::Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with("_keypoints.json"))
            .count(),
        (_, Some(rows)) => rows,
        (_, None) => usize::MAX,
    };
    Ok(frames.min(skeleton))
}

struct Following {
    args: DetectArgs,
    settings: DetectSettings,
}

impl BackendTask for Following {
    type Output = Result<usize, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        use std::io::Write;
        let Following { args, settings } = self;
        let video = args
            .videos
            .video
            .clone()
            .expect("--follow requires --video");
        let skeleton = args.videos.skeleton.clone().map(skeleton_source);
        let stem = video_id(&video);
        let pipeline = MicroGesturePipeline::<B>::from_run(&args.run, &device)?;
        let mut follower = Follower::new(&stem, settings.clone());
        let csv = args.out.join("detections.csv");
        std::fs::create_dir_all(&args.out).map_err(|e| miga::datasets::Error::io(&args.out, e))?;
        let mut file = std::fs::File::create(&csv)
            .and_then(|mut f| f.write_all(b"video,class,start,end,score\n").map(|()| f))
            .map_err(|e| miga::datasets::Error::io(&csv, e))?;
        let mut emit = |instances: Vec<Instance>| -> Result<usize, Error> {
            let text = instances_csv(&instances);
            let rows = text.split_once('\n').map_or("", |(_, rows)| rows);
            print!("{rows}");
            file.write_all(rows.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|e| miga::datasets::Error::io(&csv, e))?;
            Ok(instances.len())
        };
        let table_frames = match &skeleton {
            Some(table @ SkeletonSource::Xlsx(_)) => Some(table.read()?.frames()),
            _ => None,
        };
        let mut file_rows = 0;
        let (mut seen, mut last_growth) = (0usize, std::time::Instant::now());
        let score = |windows: Vec<(usize, usize)>, frames: usize| -> Result<Vec<Vec<f32>>, Error> {
            let stream = UntrimmedVideo {
                id: stem.clone(),
                frames,
                rgb: Some(video.clone()),
                skeleton: skeleton.clone(),
                segments: Vec::new(),
            };
            let clips: Vec<_> = windows.iter().map(|&(a, b)| stream.window(a, b)).collect();
            Ok(pipeline
                .predict(&clips)?
                .into_iter()
                .map(|p| p.probabilities)
                .collect())
        };
        loop {
            // The newest frame may still be being written: it counts once a later one is there
            // (or the stream has ended); a folder that does not read yet is tried again.
            let frames = available(&video, skeleton.as_ref(), table_frames)
                .map_or(seen, |n| n.saturating_sub(1));
            if frames > seen {
                (seen, last_growth) = (frames, std::time::Instant::now());
                let due = follower.due(frames);
                for (window, p) in due.clone().into_iter().zip(score(due, frames)?) {
                    follower.add(window, p);
                }
                file_rows += emit(follower.release(frames))?;
            } else if last_growth.elapsed().as_secs_f64() >= args.idle {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs_f64(args.poll.max(0.01)));
        }
        // The stream has ended: every frame counts, and the video's length is what batch
        // detection takes (its frames), so that the windows are the same.
        seen = Video::open(&video)?.info().frames;
        let rest = follower.finish(seen);
        for (window, p) in rest.clone().into_iter().zip(score(rest, seen)?) {
            follower.add(window, p);
        }
        file_rows += emit(follower.release_all(seen))?;
        Ok(file_rows)
    }
}

fn follow(args: DetectArgs, settings: DetectSettings) -> Result<(), Error> {
    tracing::info!(
        "following {}: instances are given out within {} frames of their end",
        args.videos
            .video
            .as_deref()
            .unwrap_or(Path::new(""))
            .display(),
        settings.latency()
    );
    let device = args.device;
    let out = args.out.join("detections.csv");
    let count = device.run(Following { args, settings })??;
    tracing::info!("{count} instances -> {}", out.display());
    Ok(())
}
