//! `miga eval` and `miga predict`: a trained run on extracted features.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use clap::Args;
use miga::Error;
use miga::datasets::io::write_atomic;
use miga::device::{BackendTask, DeviceSpec};
use miga::tasks::evaluate::{Scores, TrainedRun, evaluate, submission_csv};
use miga::tasks::features::FeatureSet;

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
    /// The submission file to write (`Id,Target`)
    #[arg(long, default_value = "prediction.csv")]
    out: PathBuf,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

struct Scoring {
    run: PathBuf,
    features: PathBuf,
}

impl BackendTask for Scoring {
    type Output = Result<Scores, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let run = TrainedRun::<B>::load(&self.run, &device)?;
        let set = FeatureSet::read(&self.features)?;
        Ok(run.scores(&set, &self.features, &device)?)
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    Ok(write_atomic(path, text.as_bytes())?)
}

pub fn eval(args: EvalArgs) -> Result<(), Error> {
    let Scores { labels, scores, .. } = args.device.run(Scoring {
        run: args.run.clone(),
        features: args.features.clone(),
    })??;
    let evaluation = evaluate(&labels, &scores);
    if evaluation.clips == 0 {
        return Err(Error::InvalidArgument(format!(
            "{}: no labelled clips to evaluate",
            args.features.display()
        )));
    }
    let name = args
        .features
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = args
        .out
        .unwrap_or_else(|| args.run.join(format!("eval-{name}")));
    write(
        &out.join("metrics.json"),
        &serde_json::to_string_pretty(&evaluation).unwrap_or_default(),
    )?;
    write(&out.join("confusion.csv"), &evaluation.confusion_csv())?;
    write(&out.join("confusion.svg"), &evaluation.confusion_svg())?;
    let mut per_class = String::from("code,name,clips,accuracy\n");
    for c in &evaluation.per_class {
        let accuracy = c.accuracy.map(|a| format!("{a:.4}")).unwrap_or_default();
        per_class.push_str(&format!(
            "{},\"{}\",{},{accuracy}\n",
            c.code, c.name, c.clips
        ));
    }
    write(&out.join("per_class.csv"), &per_class)?;
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
    let Scores { ids, scores, .. } = args.device.run(Scoring {
        run: args.run,
        features: args.features,
    })??;
    write(&args.out, &submission_csv(&ids, &scores))?;
    println!("{} clips -> {}", ids.len(), args.out.display());
    Ok(())
}
