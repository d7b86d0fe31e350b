//! Extracts the features of both tasks from a MiGA-layout dataset (a small synthetic one when
//! none is given) with small random backbones, and prints what was stored.
//!
//! ```sh
//! cargo run --release --example extract_embeddings                      # synthetic data
//! cargo run --release --example extract_embeddings -- miga2025/ features/ cpu
//! ```
//!
//! The features land in `OUT/{micro-gesture,emotion}/{train,validate}` (default
//! `target/miga-examples`), where `train_micro_gesture` and `train_emotion` look for them.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use miga::datasets::clips::ClipRecord;
use miga::datasets::emotion::EmotionRecord;
use miga::datasets::synth::{LABELS_CSV, SynthConfig, synthesise};
use miga::datasets::{LabelTable, MigaLayout, Split};
use miga::device::{BackendTask, DeviceSpec};
use miga::tasks::demo::DemoConfig;
use miga::tasks::emotion::extract_emotion;
use miga::tasks::features::FeatureSet;
use miga::tasks::micro_gesture::extract_micro_gesture;
use miga::tasks::models::Weights;

struct Extract {
    data: PathBuf,
    out: PathBuf,
}

impl BackendTask for Extract {
    type Output = Result<(), miga::Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        // The demo's small backbones; `MicroGestureExtraction::default()` and
        // `EmotionExtraction::default()` are the full-size ones (MViTv2-S, SwinFace).
        let settings = DemoConfig::default();
        let layout = MigaLayout::scan(&self.data)?;
        let labels = LabelTable::read(self.data.join(LABELS_CSV))?;
        for split in [Split::Train, Split::Validate] {
            let (clips, _) = ClipRecord::from_miga(&layout, split);
            let out = self.out.join("micro-gesture").join(split.to_string());
            let summary = extract_micro_gesture::<B>(
                clips,
                &settings.micro_gesture_extraction,
                &Weights::default(),
                &out,
                (0, 1),
                &device,
                &mut |_, _| {},
            )?;
            println!("{split}: {} clips -> {}", summary.clips, out.display());
            let videos = EmotionRecord::from_miga(&layout, split, &labels);
            let out = self.out.join("emotion").join(split.to_string());
            let summary = extract_emotion::<B>(
                videos,
                &settings.emotion_extraction,
                &Weights::default(),
                &out,
                (0, 1),
                &device,
                &mut |_, _| {},
            )?;
            println!("{split}: {} videos -> {}", summary.clips, out.display());
        }
        for task in ["micro-gesture", "emotion"] {
            let set = FeatureSet::read(&self.out.join(task).join("train"))?;
            let (id, tensors) = set.items.iter().next().expect("a training item");
            println!("{task} item {id}:");
            for (name, data) in tensors {
                println!("  {name:<20} {:?}", data.shape.as_slice());
            }
        }
        Ok(())
    }
}

fn main() -> Result<(), miga::Error> {
    let mut args = std::env::args().skip(1);
    let data = args.next().map(PathBuf::from);
    let out = args
        .next()
        .map_or_else(|| PathBuf::from("target/miga-examples"), PathBuf::from);
    let device: DeviceSpec = args.next().unwrap_or_else(|| "cpu".into()).parse()?;
    let data = match data {
        Some(data) => data,
        None => {
            let data = out.join("data");
            let config = SynthConfig {
                videos: 12,
                clips_per_video: 4,
                width: 256,
                height: 144,
                ..SynthConfig::default()
            };
            if !data.join("synth.toml").exists() {
                synthesise(&config, &data, &|_, _| {})?;
            }
            data
        }
    };
    device.run(Extract { data, out })?
}
