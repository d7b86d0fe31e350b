//! `miga train`: a fusion model on extracted features.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};
use miga::Error;
use miga::device::{AutodiffTask, DeviceSpec};
use miga::tasks::features::FeatureSet;
use miga::tasks::train::{Streams, TrainConfig, TrainSummary, train_micro_gesture};

#[derive(Clone, Copy, ValueEnum)]
enum Task {
    MicroGesture,
    Emotion,
}

#[derive(Clone, Copy, ValueEnum)]
enum StreamsArg {
    Both,
    Video,
    Skeleton,
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
    /// Override the settings' streams: both (fusion), or one for a single-modality baseline
    #[arg(long, value_enum)]
    streams: Option<StreamsArg>,
    /// Continue an interrupted run in --out after its last finished epoch
    #[arg(long)]
    resume: bool,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

struct Training {
    train: FeatureSet,
    valid: FeatureSet,
    config: TrainConfig,
    out: PathBuf,
    resume: bool,
}

impl AutodiffTask for Training {
    type Output = Result<TrainSummary, Error>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        Ok(train_micro_gesture::<B>(
            &self.train,
            &self.valid,
            &self.config,
            &self.out,
            self.resume,
            &device,
        )?)
    }
}

pub fn run(args: TrainArgs) -> Result<(), Error> {
    if let Task::Emotion = args.task {
        return Err(Error::NotYetAvailable {
            command: "train --task emotion",
            version: miga::VERSION,
            plan: "emotion training needs SwinFace face features, which arrive with the Swin backbone",
        });
    }
    let Some(mut config) =
        crate::settings::load::<TrainConfig>(args.config.as_deref(), args.print_config)?
    else {
        return Ok(());
    };
    if let Some(streams) = args.streams {
        config.streams = match streams {
            StreamsArg::Both => Streams::Both,
            StreamsArg::Video => Streams::Video,
            StreamsArg::Skeleton => Streams::Skeleton,
        };
    }
    let (Some(features), Some(valid), Some(out)) = (args.features, args.valid, args.out) else {
        return Err(Error::InvalidArgument(
            "--features, --valid and --out are needed".into(),
        ));
    };
    let train = FeatureSet::read(&features)?;
    let valid = FeatureSet::read(&valid)?;
    let summary = args.device.run_autodiff(Training {
        train,
        valid,
        config,
        out: out.clone(),
        resume: args.resume,
    })??;
    println!(
        "{} epochs; best validation accuracy {:.1}% at epoch {} -> {} ({})",
        summary.epochs,
        summary.best_accuracy * 100.0,
        summary.best_epoch,
        out.join("best.mpk").display(),
        summary.plot.display()
    );
    Ok(())
}
