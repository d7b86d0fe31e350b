//! `miga extract`: backbone features of a dataset, in resumable shards.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use miga::Error;
use miga::datasets::clips::{ClipRecord, Modalities};
use miga::datasets::emotion::EmotionRecord;
use miga::datasets::synth::LABELS_CSV;
use miga::datasets::untrimmed::{UntrimmedVideo, background_clips};
use miga::datasets::{DataSource, LabelTable, Split};
use miga::device::{BackendTask, DeviceSpec, Precision};
use miga::tasks::emotion::{EmotionExtractStreams, EmotionExtraction, extract_emotion};
use miga::tasks::features::ExtractSummary;
use miga::tasks::micro_gesture::{MicroGestureExtraction, extract_micro_gesture};
use miga::tasks::models::Weights;

#[derive(Clone, Copy, ValueEnum)]
enum Task {
    MicroGesture,
    Emotion,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Validate,
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModalitiesArg {
    Both,
    Rgb,
    Skeleton,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmotionStreamsArg {
    Both,
    Face,
    Context,
}

#[derive(Args)]
pub struct ExtractArgs {
    /// Which task's features
    #[arg(long, value_enum, default_value = "micro-gesture")]
    task: Task,
    /// The data: a MiGA 2025 folder, or the iMiGUE release (its label CSV, or the folder holding
    /// labels_20200831.csv and skeleton/raw/); see `miga data check`
    #[arg(long, required_unless_present = "print_config")]
    data: Option<PathBuf>,
    /// Micro-gestures: the streams to extract (overrides the settings' `clip.modalities`):
    /// `skeleton` needs no video, `rgb` no skeleton
    #[arg(long, value_enum)]
    modalities: Option<ModalitiesArg>,
    /// Emotion: the streams to extract (overrides the settings' `streams`): `face` skips the
    /// context windows, `context` the faces (and needs no skeleton)
    #[arg(long, value_enum)]
    emotion_streams: Option<EmotionStreamsArg>,
    /// Which split of it
    #[arg(long, value_enum, default_value = "train")]
    split: SplitArg,
    /// Output folder; an interrupted run continues where it stopped
    #[arg(long, required_unless_present = "print_config")]
    out: Option<PathBuf>,
    /// Extraction settings (TOML; `--print-config` shows the defaults)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the default settings as TOML and exit
    #[arg(long)]
    print_config: bool,
    /// torchvision MViTv2 checkpoint (.pth or safetensors); without it the backbone is random
    #[arg(long)]
    mvit_weights: Option<PathBuf>,
    /// 2s-AGCN reference checkpoint (.pt); without it the backbone is random
    #[arg(long)]
    agcn_weights: Option<PathBuf>,
    /// SwinFace training checkpoint (.pt) or safetensors (emotion); without it the backbone is
    /// random
    #[arg(long)]
    swinface_weights: Option<PathBuf>,
    /// Official-format label CSV with each video's Win/Lose (emotion) [default: DATA/labels.csv]
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Extract part I of N (every N-th clip from the I-th), so that N machines share the work
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Floating-point precision on the GPU backends: f32, f16 or bf16 (f16 and bf16: every
    /// weight, activation and gradient in half precision; docs/backends.md)
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Micro-gestures: a clip cache folder; clips are read from it, or decoded and stored (the
    /// features are the same either way)
    #[arg(long)]
    clip_cache: Option<PathBuf>,
    /// Micro-gestures, for online recognition (`miga detect`): also extract about this many
    /// background clips a labelled clip, drawn from the stretches of each video no label covers
    /// and labelled non-micro-gesture (99), so that a model learns "no micro-gesture" (MiGA
    /// 2025 folders)
    #[arg(long, default_value_t = 0.0)]
    background: f64,
    /// Frames of each background clip (as `miga detect --window`)
    #[arg(long, default_value_t = 32)]
    background_length: usize,
}

enum Job {
    MicroGesture(Vec<ClipRecord>, MicroGestureExtraction),
    Emotion(Vec<EmotionRecord>, EmotionExtraction),
}

struct Extraction {
    job: Job,
    weights: Weights,
    out: PathBuf,
    part: (usize, usize),
}

impl BackendTask for Extraction {
    type Output = Result<ExtractSummary, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let unit = match &self.job {
            Job::MicroGesture(..) => "clips",
            Job::Emotion(..) => "videos",
        };
        let bar = crate::progress::bar(0, unit);
        let mut progress = |done: usize, total: usize| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        };
        let (weights, out, part) = (&self.weights, &self.out, self.part);
        let summary = match self.job {
            Job::MicroGesture(records, settings) => extract_micro_gesture::<B>(
                records,
                &settings,
                weights,
                out,
                part,
                &device,
                &mut progress,
            )?,
            Job::Emotion(records, settings) => extract_emotion::<B>(
                records,
                &settings,
                weights,
                out,
                part,
                &device,
                &mut progress,
            )?,
        };
        bar.finish_and_clear();
        Ok(summary)
    }
}

/// A clear error when no clip has a stream the settings extract (a skeleton-only download
/// with `modalities = "both"`, say), rather than one failure a clip.
fn check_streams(
    records: &[ClipRecord],
    modalities: Modalities,
    data: &std::path::Path,
) -> Result<(), Error> {
    let lacks = |name: &str, other: &str| {
        Err(Error::InvalidArgument(format!(
            "no clip of {} has {name}, and these settings extract it (modalities = {:?}): pass \
             --modalities {other} to extract the other stream alone",
            data.display(),
            format!("{modalities:?}").to_lowercase()
        )))
    };
    if records.is_empty() {
        return Ok(());
    }
    if modalities != Modalities::Skeleton && records.iter().all(|r| r.rgb.is_none()) {
        return lacks("a video", "skeleton");
    }
    if modalities != Modalities::Rgb && records.iter().all(|r| r.skeleton.is_none()) {
        return lacks("a skeleton", "rgb");
    }
    Ok(())
}

fn parse_part(text: &str) -> Result<(usize, usize), Error> {
    let bad = || Error::InvalidArgument(format!("--shard `{text}` is not I/N with I < N"));
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i < n { Ok((i, n)) } else { Err(bad()) }
}

pub fn run(args: ExtractArgs) -> Result<(), Error> {
    let config = args.config.as_deref();
    let job = match args.task {
        Task::MicroGesture => {
            crate::settings::load::<MicroGestureExtraction>(config, args.print_config)?
                .map(|s| Job::MicroGesture(Vec::new(), s))
        }
        Task::Emotion => crate::settings::load::<EmotionExtraction>(config, args.print_config)?
            .map(|s| Job::Emotion(Vec::new(), s)),
    };
    let Some(job) = job else {
        return Ok(());
    };
    let part = parse_part(&args.shard)?;
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Validate => Split::Validate,
        SplitArg::Test => Split::Test,
    };
    let (Some(data), Some(out)) = (args.data, args.out) else {
        return Err(Error::InvalidArgument("--data and --out are needed".into()));
    };
    let source = DataSource::open(&data)?;
    let (job, unit) = match job {
        Job::MicroGesture(_, mut settings) => {
            settings.clip.cache = args.clip_cache.clone();
            if let Some(modalities) = args.modalities {
                settings.clip.modalities = match modalities {
                    ModalitiesArg::Both => Modalities::Both,
                    ModalitiesArg::Rgb => Modalities::Rgb,
                    ModalitiesArg::Skeleton => Modalities::Skeleton,
                };
            }
            let (mut records, problems) = source.clips(split);
            for problem in &problems {
                tracing::warn!("{problem}");
            }
            if args.background > 0.0 {
                let DataSource::Miga(layout) = &source else {
                    return Err(Error::InvalidArgument(
                        "--background needs a MiGA 2025 folder (whole videos with label files)"
                            .into(),
                    ));
                };
                let (videos, problems) = UntrimmedVideo::from_miga(layout, split);
                for problem in &problems {
                    tracing::warn!("{problem}");
                }
                let background = background_clips(
                    &videos,
                    args.background,
                    args.background_length,
                    settings.seed,
                );
                tracing::info!("{} background clips added", background.len());
                records.extend(background);
            }
            check_streams(&records, settings.clip.modalities, &data)?;
            let (video, skeleton) = (
                settings.clip.modalities != Modalities::Skeleton,
                settings.clip.modalities != Modalities::Rgb,
            );
            if (video && args.mvit_weights.is_none()) || (skeleton && args.agcn_weights.is_none()) {
                tracing::info!(
                    "note: a backbone without --mvit-weights / --agcn-weights is randomly initialised (seed {})",
                    settings.seed
                );
            }
            (Job::MicroGesture(records, settings), "clips")
        }
        Job::Emotion(_, mut settings) => {
            if let Some(streams) = args.emotion_streams {
                settings.streams = match streams {
                    EmotionStreamsArg::Both => EmotionExtractStreams::Both,
                    EmotionStreamsArg::Face => EmotionExtractStreams::Face,
                    EmotionStreamsArg::Context => EmotionExtractStreams::Context,
                };
            }
            let records = match (&source, args.labels) {
                (DataSource::Imigue(_), _) => source.emotion(split, None),
                (DataSource::Miga(_), labels) => {
                    let labels = labels.unwrap_or_else(|| data.join(LABELS_CSV));
                    let table = LabelTable::read(&labels)?;
                    let records = source.emotion(split, Some(&table));
                    let unknown = records.iter().filter(|r| r.outcome.is_none()).count();
                    if unknown > 0 {
                        tracing::info!(
                            "note: {unknown} videos have no Win/Lose in {} (extracted unlabelled)",
                            labels.display()
                        );
                    }
                    records
                }
            };
            if args.mvit_weights.is_none() || args.swinface_weights.is_none() {
                tracing::info!(
                    "note: a backbone without --mvit-weights / --swinface-weights is randomly initialised (seed {})",
                    settings.seed
                );
            }
            (Job::Emotion(records, settings), "videos")
        }
    };
    let weights = Weights {
        mvit: args.mvit_weights,
        agcn: args.agcn_weights,
        swinface: args.swinface_weights,
    };
    let summary = args
        .device
        .with_precision(args.precision)
        .run(Extraction {
            job,
            weights,
            out: out.clone(),
            part,
        })??;
    println!(
        "{} {unit} in part {}/{}: {} extracted, {} already there, {} failed -> {}",
        summary.clips,
        part.0,
        part.1,
        summary.extracted,
        summary.resumed,
        summary.failed.len(),
        out.display()
    );
    for (id, why) in &summary.failed {
        tracing::warn!("failed: {id}: {why}");
    }
    Ok(())
}
