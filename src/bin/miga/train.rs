//! `miga train`: a fusion model on extracted features.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};
use miga::Error;
use miga::device::{DeviceSpec, ManyAutodiffTask, parse_devices};
use miga::tasks::emotion::{EmotionStreams, EmotionTrainConfig, train_emotion};
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
    #[arg(long, required_unless_present = "print_config")]
    features: Option<PathBuf>,
    /// Validation features (best-epoch selection and early stopping use them)
    #[arg(long, required_unless_present = "print_config")]
    valid: Option<PathBuf>,
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
    MicroGesture(TrainConfig),
    Emotion(EmotionTrainConfig),
}

struct Training {
    train: FeatureSet,
    valid: FeatureSet,
    job: Job,
    out: PathBuf,
    resume: bool,
}

impl ManyAutodiffTask for Training {
    type Output = Result<TrainSummary, Error>;

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let (train, valid, out) = (&self.train, &self.valid, &self.out);
        Ok(match &self.job {
            Job::MicroGesture(config) => {
                train_micro_gesture::<B>(train, valid, config, out, self.resume, &devices)?
            }
            Job::Emotion(config) => {
                train_emotion::<B>(train, valid, config, out, self.resume, &devices)?
            }
        })
    }
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
            Job::MicroGesture(config)
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
            Job::Emotion(config)
        }
    };
    let (Some(features), Some(valid), Some(out)) = (args.features, args.valid, args.out) else {
        return Err(Error::InvalidArgument(
            "--features, --valid and --out are needed".into(),
        ));
    };
    let train = FeatureSet::read(&features)?;
    let valid = FeatureSet::read(&valid)?;
    let devices = match &args.devices {
        Some(list) => parse_devices(list)?,
        None => vec![args.device],
    };
    let summary = DeviceSpec::run_autodiff_many(
        &devices,
        Training {
            train,
            valid,
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
