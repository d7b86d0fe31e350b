//! `miga eval` and `miga predict`: a trained run on extracted features.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use miga::Error;
use miga::datasets::clips::ClipRecord;
use miga::datasets::io::write_atomic;
use miga::datasets::{DataSource, Split};
use miga::device::{BackendTask, DeviceSpec};
use miga::tasks::emotion::{EMOTION, EmotionRun, emotion_csv, evaluate_emotion};
use miga::tasks::features::FeatureSet;
use miga::tasks::micro_gesture::{MicroGesturePipeline, TrainedRun, evaluate, submission_csv};
use miga::tasks::run_info::read_run_info;
use miga::tasks::training::Scores;

#[derive(Args)]
pub struct EvalArgs {
    /// What is evaluated: a trained run (`clips`: micro-gesture or emotion, after the run), or
    /// detections from `miga detect` against label files (`online`)
    #[arg(long, value_enum, default_value = "clips")]
    task: EvalTask,
    /// Run folder written by `miga train`
    #[arg(long, required_unless_present = "detections")]
    run: Option<PathBuf>,
    /// Features to evaluate on (labelled; from `miga extract` with the run's settings)
    #[arg(long, required_unless_present_any = ["data", "detections"])]
    features: Option<PathBuf>,
    /// With --task online: the detections (`video,class,start,end,score`); scored against the
    /// label files of --data's --split, or --labels; writes online.json beside them
    #[arg(long, conflicts_with_all = ["run", "features"])]
    detections: Option<PathBuf>,
    /// With --task online and one video: its label file (`<ID>_label.csv`)
    #[arg(long, requires = "detections", conflicts_with = "data")]
    labels: Option<PathBuf>,
    /// With --task online: the temporal IoU a detection needs to count
    #[arg(long, default_value_t = 0.5)]
    tiou: f64,
    /// With --task online: also count the non-micro-gesture class (code 99)
    #[arg(long)]
    count_99: bool,
    /// For an end-to-end run: the data whose raw clips to evaluate on (a MiGA 2025 folder or
    /// the iMiGUE release)
    #[arg(long, conflicts_with = "features")]
    data: Option<PathBuf>,
    /// With --data: which split
    #[arg(long, value_enum, default_value = "validate")]
    split: SplitArg,
    /// Output folder [default: RUN/eval-<features folder name>; with --task online, beside the
    /// detections]
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
    #[arg(long, required_unless_present = "data")]
    features: Option<PathBuf>,
    /// For an end-to-end run: the data whose raw clips to predict (a MiGA 2025 folder or the
    /// iMiGUE release)
    #[arg(long, conflicts_with = "features")]
    data: Option<PathBuf>,
    /// With --data: which split
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    /// The file to write: micro-gestures, the MiGA submission (`Id,Target`); emotion, one row
    /// a video (`Id,Target,P_win`, Target 1 for Win)
    #[arg(long, default_value = "prediction.csv")]
    out: PathBuf,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EvalTask {
    /// A trained run on clips (micro-gesture) or videos (emotion).
    Clips,
    /// Online recognition: detections against label files.
    Online,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SplitArg {
    Train,
    Validate,
    Test,
}

impl SplitArg {
    pub(crate) fn split(self) -> Split {
        match self {
            Self::Train => Split::Train,
            Self::Validate => Split::Validate,
            Self::Test => Split::Test,
        }
    }
}

/// What a run is scored on: extracted features, or raw clips (end-to-end runs).
enum Input {
    Features(PathBuf),
    Clips(Vec<ClipRecord>),
}

impl Input {
    fn new(
        features: Option<PathBuf>,
        data: Option<PathBuf>,
        split: SplitArg,
    ) -> Result<Self, Error> {
        match (features, data) {
            (Some(features), _) => Ok(Self::Features(features)),
            (None, Some(data)) => {
                let (clips, problems) = DataSource::open(&data)?.clips(split.split());
                for problem in &problems {
                    tracing::warn!("{problem}");
                }
                Ok(Self::Clips(clips))
            }
            (None, None) => Err(Error::InvalidArgument(
                "--features or --data is needed".into(),
            )),
        }
    }
}

struct Scoring {
    run: PathBuf,
    input: Input,
    emotion: bool,
}

impl BackendTask for Scoring {
    type Output = Result<Scores, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let features = match self.input {
            Input::Features(path) => path,
            Input::Clips(clips) => {
                let predictions =
                    MicroGesturePipeline::<B>::from_run(&self.run, &device)?.predict(&clips)?;
                return Ok(Scores {
                    ids: predictions.iter().map(|p| p.id.clone()).collect(),
                    labels: clips
                        .iter()
                        .map(|c| c.class.map_or(-1, |c| c.index() as i64))
                        .collect(),
                    scores: predictions.into_iter().map(|p| p.probabilities).collect(),
                });
            }
        };
        let set = FeatureSet::read(&features)?;
        Ok(if self.emotion {
            EmotionRun::<B>::load(&self.run, &device)?.scores(&set, &features, &device)?
        } else {
            TrainedRun::<B>::load(&self.run, &device)?.scores(&set, &features, &device)?
        })
    }
}

/// Scores of the run's model on the input, and whether it is an emotion run.
fn scores(run: &Path, input: Input, device: DeviceSpec) -> Result<(Scores, bool), Error> {
    let emotion = read_run_info(run)?.task == EMOTION;
    let scores = device.run(Scoring {
        run: run.to_path_buf(),
        input,
        emotion,
    })??;
    Ok((scores, emotion))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    Ok(write_atomic(path, text.as_bytes())?)
}

pub fn eval(args: EvalArgs) -> Result<(), Error> {
    if args.task == EvalTask::Online || args.detections.is_some() {
        let detections = args
            .detections
            .ok_or_else(|| Error::InvalidArgument("--task online needs --detections".into()))?;
        return crate::detect::eval(crate::detect::OnlineEval {
            detections,
            data: args.data,
            labels: args.labels,
            split: args.split.split(),
            tiou: args.tiou,
            count_99: args.count_99,
            out: args.out,
        });
    }
    let run = args
        .run
        .ok_or_else(|| Error::InvalidArgument("--run is needed".into()))?;
    let name = match &args.features {
        Some(features) => features
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        None => args.split.split().to_string(),
    };
    let what = args
        .features
        .clone()
        .or(args.data.clone())
        .unwrap_or_default();
    let input = Input::new(args.features, args.data, args.split)?;
    let (Scores { labels, scores, .. }, emotion) = scores(&run, input, args.device)?;
    let out = args.out.unwrap_or_else(|| run.join(format!("eval-{name}")));
    let none = || {
        Err(Error::InvalidArgument(format!(
            "{}: nothing labelled to evaluate",
            what.display()
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
    let input = Input::new(args.features, args.data, args.split)?;
    let (Scores { ids, scores, .. }, emotion) = scores(&args.run, input, args.device)?;
    let (text, unit) = if emotion {
        (emotion_csv(&ids, &scores), "videos")
    } else {
        (submission_csv(&ids, &scores), "clips")
    };
    write(&args.out, &text)?;
    println!("{} {unit} -> {}", ids.len(), args.out.display());
    Ok(())
}
