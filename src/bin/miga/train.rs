//! `miga train`: a fusion model on extracted features.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};
use miga::Error;
use miga::datasets::clips::ClipRecord;
use miga::datasets::{DataSource, Split};
use miga::device::{DeviceSpec, ManyAutodiffTask, Precision, parse_devices};
use miga::tasks::emotion::{EmotionStreams, EmotionTrainConfig, train_emotion};
use miga::tasks::features::FeatureSet;
use miga::tasks::micro_gesture::{
    MicroGestureExtraction, Streams, TrainConfig, train_end_to_end, train_micro_gesture,
};
use miga::tasks::models::Weights;
use miga::tasks::runs::{RunStatus, folder_bytes, human_bytes};
use miga::tasks::training::TrainSummary;

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
    /// With --end-to-end: the data (a MiGA 2025 folder, or the iMiGUE release: its label CSV or
    /// the folder holding it); its train split trains, its validate split validates
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --end-to-end: the backbone and clip settings (as `miga extract --config`)
    #[arg(long)]
    extract_config: Option<PathBuf>,
    /// With --end-to-end: a clip cache folder; clips are decoded once, stored as 8-bit frames,
    /// and read from it in later epochs (frames then sampled uniformly; crops and flips stay
    /// random)
    #[arg(long, requires = "end_to_end")]
    clip_cache: Option<PathBuf>,
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
    /// Floating-point precision on the GPU backends: f32, f16 or bf16 (f16 and bf16: every
    /// weight, activation and gradient in half precision; docs/backends.md)
    #[arg(long, default_value = "f32")]
    precision: Precision,

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
                    tracing::info!(
                        "note: {left_out} clips without a label or a stream the model sees were left out"
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
    tracing::info!(
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
                let mut extraction = crate::settings::load::<MicroGestureExtraction>(
                    args.extract_config.as_deref(),
                    false,
                )?
                .unwrap_or_default();
                extraction.clip.cache = args.clip_cache.clone();
                let Some(data) = &args.data else {
                    return Err(Error::InvalidArgument("--end-to-end needs --data".into()));
                };
                let source = DataSource::open(data)?;
                let (train, _) = source.clips(Split::Train);
                let (valid, _) = source.clips(Split::Validate);
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
    let devices: Vec<DeviceSpec> = match &args.devices {
        Some(list) => parse_devices(list)?,
        None => vec![args.device],
    }
    .into_iter()
    .map(|d| d.with_precision(args.precision))
    .collect();
    let summary = DeviceSpec::run_autodiff_many(
        &devices,
        Training {
            job,
            out: out.clone(),
            resume: args.resume,
        },
    )??;
    println!(
        "{} epochs on {}; best validation accuracy {:.1}% at epoch {} -> {} ({}); the run folder holds {}",
        summary.epochs,
        devices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        summary.best_accuracy * 100.0,
        summary.best_epoch,
        out.join("best.mpk").display(),
        summary.plot.display(),
        human_bytes(folder_bytes(&out))
    );
    Ok(())
}

#[derive(Args)]
pub struct RunsArgs {
    /// Run folders, or folders to look for runs in (three levels down)
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

/// `miga runs`: the runs under the given folders, with size, epochs and best score.
pub fn runs(args: RunsArgs) -> Result<(), Error> {
    let runs: Vec<RunStatus> = args.paths.iter().flat_map(|p| RunStatus::find(p)).collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return Ok(());
    }
    if runs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no run folder (one with run.json) in {}",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    println!("| run | task | epochs | best | checkpoints | size |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for run in &runs {
        let epochs = match run.planned_epochs {
            Some(planned) => format!("{}/{planned}", run.epochs),
            None => run.epochs.to_string(),
        };
        let best = run.best.map_or("-".to_string(), |b| {
            format!("{:.1}% (epoch {})", b.accuracy * 100.0, b.epoch)
        });
        let checkpoints = run
            .checkpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {} | {} | {epochs} | {best} | {} | {} |",
            run.path.display(),
            run.task,
            if checkpoints.is_empty() {
                "-".into()
            } else {
                checkpoints
            },
            human_bytes(run.bytes)
        );
    }
    Ok(())
}
