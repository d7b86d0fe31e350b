//! Trains Cross-Modal Token Fusion on extracted micro-gesture features, on any device.
//!
//! ```sh
//! cargo run --release --example extract_embeddings          # features first
//! cargo run --release --example train_micro_gesture         # then CPU training
//! cargo run --release --features cuda --example train_micro_gesture -- \
//!     --device cuda:0,cuda:1 --train features/train --valid features/validate --out runs/mg
//! ```

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use miga::device::{DeviceSpec, ManyAutodiffTask, parse_devices};
use miga::tasks::demo::DemoConfig;
use miga::tasks::features::FeatureSet;
use miga::tasks::micro_gesture::{TrainConfig, train_micro_gesture};
use miga::tasks::training::TrainSummary;

struct Train {
    train: FeatureSet,
    valid: FeatureSet,
    config: TrainConfig,
    out: PathBuf,
}

impl ManyAutodiffTask for Train {
    type Output = Result<TrainSummary, miga::Error>;

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        // `resume`: a run stopped part-way continues after its last finished epoch.
        Ok(train_micro_gesture::<B>(
            &self.train,
            &self.valid,
            &self.config,
            &self.out,
            true,
            &devices,
        )?)
    }
}

/// `--name value` from the command line, or `default`.
fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), miga::Error> {
    let root = "target/miga-examples/micro-gesture";
    // One device, or several of one backend for data-parallel training: `cuda:0,cuda:1`.
    let devices = parse_devices(&arg("--device", "cpu"))?;
    let train = FeatureSet::read(arg("--train", &format!("{root}/train")).as_ref())?;
    let valid = FeatureSet::read(arg("--valid", &format!("{root}/validate")).as_ref())?;
    // The demo's small fusion suits its small features; `TrainConfig::default()` is the
    // full-size one.
    let config = DemoConfig::default().micro_gesture_training;
    let out = PathBuf::from(arg("--out", "target/miga-examples/runs/micro-gesture"));
    let summary = DeviceSpec::run_autodiff_many(
        &devices,
        Train {
            train,
            valid,
            config,
            out: out.clone(),
        },
    )??;
    println!(
        "{} epochs on {:?}; best validation top-1 {:.1}% at epoch {}; curves in {}",
        summary.epochs,
        devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
        summary.best_accuracy * 100.0,
        summary.best_epoch,
        summary.plot.display()
    );
    Ok(())
}
