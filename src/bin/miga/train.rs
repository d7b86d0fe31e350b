//! `miga train`: a fusion model on extracted features.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};
use miga::Error;
use miga::datasets::clips::ClipRecord;
use miga::datasets::{MigaLayout, Split};
use miga::device::{DeviceSpec, ManyAutodiffTask, parse_devices};
use miga::tasks::emotion::{EmotionStreams, EmotionTrainConfig, train_emotion};
use miga::tasks::end_to_end::train_end_to_end;
use miga::tasks::extract::{MicroGestureExtraction, Weights};
use miga::tasks::features::FeatureSet;
use miga::tasks::train::{Streams, TrainConfig, TrainSummary, train_micro_gesture};

#[derive(Clone, Copy, ValueEnum)]
enum Task {
    MicroGesture,
    Emotion,
}

#[derive(Clone, Copy, ValueEnum)]
enum StreamsArg {
    /// Both streams, fused (either task)
    Both,
    /// Micro-gesture baseline: video only
    Video,
    /// Micro-gesture baseline: skeleton only
    Skeleton,
    /// Emotion baseline: faces only
    Face,
    /// Emotion baseline: context only
    Context,
    /// Emotion baseline: faces and context, late fusion (mean of the two streams' logits)
    Late,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Which task
    #[arg(long, value_enum, default_value = "micro-gesture")]
    task: Task,
    /// Training features (a folder written by `miga extract`)
    #[arg(long, required_unless_present_any = ["print_config", "end_to_end"])]
    features: Option<PathBuf>,
    /// Validation features (best-epoch selection and early stopping use them)
    #[arg(long, required_unless_present_any = ["print_config", "end_to_end"])]
    valid: Option<PathBuf>,
    /// Micro-gestures: fine-tune MViTv2, 2s-AGCN and the fusion together from raw clips of
    /// --data (train split; validate split for validation) instead of training on features
    #[arg(long, requires = "data", conflicts_with_all = ["features", "valid"])]
    end_to_end: bool,
    /// With --end-to-end: a MiGA 2025 layout folder
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --end-to-end: the backbone and clip settings (as `miga extract --config`)
    #[arg(long)]
    extract_config: Option<PathBuf>,
    /// With --end-to-end: torchvision MViTv2 checkpoint to start from
    #[arg(long)]
    mvit_weights: Option<PathBuf>,
    /// With --end-to-end: 2s-AGCN reference checkpoint to start from
    #[arg(long)]
    agcn_weights: Option<PathBuf>,
    /// Run folder: checkpoints, metrics, best.mpk, training.svg
    #[arg(long, required_unless_present = "print_config")]
    out: Option<PathBuf>,
    /// Training settings (TOML; `--print-config` shows the defaults)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the default settings as TOML and exit
    #[arg(long)]
    print_config: bool,
    /// Override the settings' streams: both (fusion), or a single-modality baseline
    #[arg(long, value_enum)]
    streams: Option<StreamsArg>,
    /// Continue an interrupted run in --out after its last finished epoch
    #[arg(long)]
    resume: bool,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu", conflicts_with = "devices")]
    device: DeviceSpec,
    /// Data-parallel training on several devices of one backend, e.g. `cuda:0,cuda:1` (the
    /// first holds the optimiser; each batch is split between them)
    #[arg(long)]
    devices: Option<String>,
}

enum Job {
    MicroGesture(TrainConfig, FeatureSet, FeatureSet),
    Emotion(EmotionTrainConfig, FeatureSet, FeatureSet),
    EndToEnd {
        config: TrainConfig,
        extraction: MicroGestureExtraction,
        weights: Weights,
        train: Vec<ClipRecord>,
        valid: Vec<ClipRecord>,
    },
}

struct Training {
    job: Job,
    out: PathBuf,
    resume: bool,
}

impl ManyAutodiffTask for Training {
    type Output = Result<TrainSummary, Error>;

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let (out, resume) = (&self.out, self.resume);
        Ok(match self.job {
            Job::MicroGesture(config, train, valid) => {
                train_micro_gesture::<B>(&train, &valid, &config, out, resume, &devices)?
            }
            Job::Emotion(config, train, valid) => {
                train_emotion::<B>(&train, &valid, &config, out, resume, &devices)?
            }
            Job::EndToEnd {
                config,
                extraction,
                weights,
                train,
                valid,
            } => {
                let (summary, left_out) = train_end_to_end::<B>(
                    train,
                    valid,
                    &extraction,
                    &weights,
                    &config,
                    out,
                    resume,
                    &devices,
                )?;
                if left_out > 0 {
                    eprintln!(
                        "note: {left_out} clips without a label, video or skeleton were left out"
                    );
                }
                summary
            }
        })
    }
}

/// The features folder `path` (required).
fn features_of(path: &Option<PathBuf>) -> Result<FeatureSet, Error> {
    let path = path
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("--features and --valid are needed".into()))?;
    let started = std::time::Instant::now();
    let set = FeatureSet::read(path)?;
    eprintln!(
        "read {} items of {} in {:.1} s",
        set.items.len(),
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(set)
}

pub fn run(args: TrainArgs) -> Result<(), Error> {
    let file = args.config.as_deref();
    let wrong = |task: &str| {
        Err(Error::InvalidArgument(format!(
            "--streams {} is not a stream of the {task} task",
            args.streams
                .and_then(|s| s.to_possible_value())
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        )))
    };
    let job = match args.task {
        Task::MicroGesture => {
            let Some(mut config) = crate::settings::load::<TrainConfig>(file, args.print_config)?
            else {
                return Ok(());
            };
            config.streams = match args.streams {
                None => config.streams,
                Some(StreamsArg::Both) => Streams::Both,
                Some(StreamsArg::Video) => Streams::Video,
                Some(StreamsArg::Skeleton) => Streams::Skeleton,
                Some(_) => return wrong("micro-gesture"),
            };
            if args.end_to_end {
                let extraction = crate::settings::load::<MicroGestureExtraction>(
                    args.extract_config.as_deref(),
                    false,
                )?
                .unwrap_or_default();
                let Some(data) = &args.data else {
                    return Err(Error::InvalidArgument("--end-to-end needs --data".into()));
                };
                let layout = MigaLayout::scan(data)?;
                let (train, _) = ClipRecord::from_miga(&layout, Split::Train);
                let (valid, _) = ClipRecord::from_miga(&layout, Split::Validate);
                Job::EndToEnd {
                    config,
                    extraction,
                    weights: Weights {
                        mvit: args.mvit_weights.clone(),
                        agcn: args.agcn_weights.clone(),
                        swinface: None,
                    },
                    train,
                    valid,
                }
            } else {
                Job::MicroGesture(
                    config,
                    features_of(&args.features)?,
                    features_of(&args.valid)?,
                )
            }
        }
        Task::Emotion => {
            let Some(mut config) =
                crate::settings::load::<EmotionTrainConfig>(file, args.print_config)?
            else {
                return Ok(());
            };
            config.streams = match args.streams {
                None => config.streams,
                Some(StreamsArg::Both) => EmotionStreams::Both,
                Some(StreamsArg::Face) => EmotionStreams::Face,
                Some(StreamsArg::Context) => EmotionStreams::Context,
                Some(StreamsArg::Late) => EmotionStreams::Late,
                Some(_) => return wrong("emotion"),
            };
            if args.end_to_end {
                return Err(Error::InvalidArgument(
                    "--end-to-end is for the micro-gesture task".into(),
                ));
            }
            Job::Emotion(
                config,
                features_of(&args.features)?,
                features_of(&args.valid)?,
            )
        }
    };
    let Some(out) = args.out else {
        return Err(Error::InvalidArgument("--out is needed".into()));
    };
    let devices = match &args.devices {
        Some(list) => parse_devices(list)?,
        None => vec![args.device],
    };
    let summary = DeviceSpec::run_autodiff_many(
        &devices,
        Training {
            job,
            out: out.clone(),
            resume: args.resume,
        },
    )??;
    println!(
        "{} epochs on {}; best validation accuracy {:.1}% at epoch {} -> {} ({})",
        summary.epochs,
        devices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        summary.best_accuracy * 100.0,
        summary.best_epoch,
        out.join("best.mpk").display(),
        summary.plot.display()
    );
    Ok(())
}
