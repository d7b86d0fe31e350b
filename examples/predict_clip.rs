//! Predicts micro-gestures of raw clips (video + OpenPose skeleton) with a trained run: the
//! backbones its features came from, then its fusion model.
//!
//! ```sh
//! cargo run --release --example extract_embeddings
//! cargo run --release --example train_micro_gesture
//! cargo run --release --example predict_clip -- target/miga-examples/runs/micro-gesture \
//!     target/miga-examples/data validate cpu
//! ```

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use miga::datasets::clips::ClipRecord;
use miga::datasets::{MigaLayout, Split};
use miga::device::{BackendTask, DeviceSpec};
use miga::tasks::micro_gesture::MicroGesturePipeline;

struct Predict {
    run: PathBuf,
    clips: Vec<ClipRecord>,
}

impl BackendTask for Predict {
    type Output = Result<(), miga::Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let pipeline = MicroGesturePipeline::<B>::from_run(&self.run, &device)?;
        for (clip, prediction) in self.clips.iter().zip(pipeline.predict(&self.clips)?) {
            let truth = clip.class.map_or("?", |c| c.name());
            println!(
                "{:<10} {:>5.1}%  {:<40} (labelled: {truth})",
                prediction.id,
                prediction.probability * 100.0,
                prediction.class.name(),
            );
        }
        Ok(())
    }
}

fn main() -> Result<(), miga::Error> {
    let mut args = std::env::args().skip(1);
    let run = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/miga-examples/runs/micro-gesture".into()),
    );
    let data = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/miga-examples/data".into()),
    );
    let split = match args.next().as_deref() {
        Some("train") => Split::Train,
        Some("test") => Split::Test,
        _ => Split::Validate,
    };
    let device: DeviceSpec = args.next().unwrap_or_else(|| "cpu".into()).parse()?;
    let (mut clips, _) = ClipRecord::from_miga(&MigaLayout::scan(&data)?, split);
    clips.truncate(8);
    device.run(Predict { run, clips })?
}
