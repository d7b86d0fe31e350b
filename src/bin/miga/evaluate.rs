//! `miga eval` and `miga predict`: a trained run on extracted features.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use clap::Args;
use miga::Error;
use miga::datasets::io::write_atomic;
use miga::device::{BackendTask, DeviceSpec};
use miga::tasks::emotion::{EMOTION, EmotionRun, emotion_csv, evaluate_emotion};
use miga::tasks::evaluate::{Scores, TrainedRun, evaluate, submission_csv};
use miga::tasks::features::FeatureSet;
use miga::tasks::train::read_run_info;

#[derive(Args)]
pub struct EvalArgs {
    /// Run folder written by `miga train`
    #[arg(long)]
    run: PathBuf,
    /// Features to evaluate on (labelled; from `miga extract` with the run's settings)
    #[arg(long)]
    features: PathBuf,
    /// Output folder [default: RUN/eval-<features folder name>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(Args)]
pub struct PredictArgs {
    /// Run folder written by `miga train`
    #[arg(long)]
    run: PathBuf,
    /// Features of the clips to predict (labels, if any, are ignored)
    #[arg(long)]
    features: PathBuf,
    /// The file to write: micro-gestures, the MiGA submission (`Id,Target`); emotion, one row
    /// a video (`Id,Target,P_win`, Target 1 for Win)
    #[arg(long, default_value = "prediction.csv")]
    out: PathBuf,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

struct Scoring {
    run: PathBuf,
    features: PathBuf,
    emotion: bool,
}

impl BackendTask for Scoring {
    type Output = Result<Scores, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let set = FeatureSet::read(&self.features)?;
        Ok(if self.emotion {
            EmotionRun::<B>::load(&self.run, &device)?.scores(&set, &self.features, &device)?
        } else {
            TrainedRun::<B>::load(&self.run, &device)?.scores(&set, &self.features, &device)?
        })
    }
}

/// Scores of the run's model on the features, and whether it is an emotion run.
fn scores(run: &Path, features: &Path, device: DeviceSpec) -> Result<(Scores, bool), Error> {
    let emotion = read_run_info(run)?.task == EMOTION;
    let scores = device.run(Scoring {
        run: run.to_path_buf(),
        features: features.to_path_buf(),
        emotion,
    })??;
    Ok((scores, emotion))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    Ok(write_atomic(path, text.as_bytes())?)
}

pub fn eval(args: EvalArgs) -> Result<(), Error> {
    let (Scores { labels, scores, .. }, emotion) = scores(&args.run, &args.features, args.device)?;
    let name = args
        .features
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = args
        .out
        .unwrap_or_else(|| args.run.join(format!("eval-{name}")));
    let none = || {
        Err(Error::InvalidArgument(format!(
            "{}: nothing labelled to evaluate",
            args.features.display()
        )))
    };
    if emotion {
        let evaluation = evaluate_emotion(&labels, &scores);
        if evaluation.videos == 0 {
            return none();
        }
        evaluation.write(&out)?;
        println!(
            "{} videos: accuracy {:.1}%, F1 (Win) {:.3}, AUROC {:.3} -> {}",
            evaluation.videos,
            evaluation.accuracy * 100.0,
            evaluation.f1,
            evaluation.auroc,
            out.display()
        );
        return Ok(());
    }
    let evaluation = evaluate(&labels, &scores);
    if evaluation.clips == 0 {
        return none();
    }
    evaluation.write(&out)?;
    println!(
        "{} clips: top-1 {:.1}%, top-5 {:.1}%, mean class accuracy {:.1}% -> {}",
        evaluation.clips,
        evaluation.top1 * 100.0,
        evaluation.top5 * 100.0,
        evaluation.mean_class_accuracy * 100.0,
        out.display()
    );
    Ok(())
}

pub fn predict(args: PredictArgs) -> Result<(), Error> {
    let (Scores { ids, scores, .. }, emotion) = scores(&args.run, &args.features, args.device)?;
    let (text, unit) = if emotion {
        (emotion_csv(&ids, &scores), "videos")
    } else {
        (submission_csv(&ids, &scores), "clips")
    };
    write(&args.out, &text)?;
    println!("{} {unit} -> {}", ids.len(), args.out.display());
    Ok(())
}
