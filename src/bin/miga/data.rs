//! `miga synth` and `miga data check`: generate a dataset in the MiGA layout, inspect one.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use miga::Error;
use miga::datasets::synth::{SynthConfig, synthesise};

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder (created; existing files of the same names are replaced)
    #[arg(long)]
    out: PathBuf,
    /// Seed: the same seed and options give the same bytes
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of videos (two per subject: a won and a lost match)
    #[arg(long, default_value_t = SynthConfig::default().videos)]
    videos: usize,
    /// Labelled clips per video
    #[arg(long, default_value_t = SynthConfig::default().clips_per_video)]
    clips_per_video: usize,
    /// Frame size WIDTHxHEIGHT (even numbers; the real videos are 1280x720)
    #[arg(long, default_value = "320x180")]
    size: String,
}

pub fn synth(args: SynthArgs) -> Result<(), Error> {
    let (width, height) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
        .ok_or_else(|| {
            Error::InvalidArgument(format!("--size `{}` is not WIDTHxHEIGHT", args.size))
        })?;
    let config = SynthConfig {
        seed: args.seed,
        videos: args.videos,
        clips_per_video: args.clips_per_video,
        width,
        height,
    };
    let progress = crate::progress::bar(config.videos as u64, "videos");
    let summary = synthesise(&config, &args.out, &|done, _| {
        progress.set_position(done as u64)
    })?;
    progress.finish_and_clear();
    for (split, ids) in &summary.splits {
        println!("{split:>9}: {} videos", ids.len());
    }
    println!(
        "{} clips, {} frames, in {}",
        summary.clips,
        summary.frames,
        summary.root.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Report videos, clips, classes, splits, skeleton frames and problems of a dataset
    #[command(
        after_help = "Examples:\n  miga data check data/miga2025           (a MiGA layout folder)\n  miga data check imigue/labels_20200831.csv --format json"
    )]
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// A MiGA layout folder, or an official label CSV
    path: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn data(args: DataArgs) -> Result<(), Error> {
    match args.command {
        DataCommand::Check(args) => {
            let report = miga::datasets::check::check(&args.path)?;
            match args.format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                Format::Text => print!("{}", report.to_text()),
            }
            Ok(())
        }
    }
}
