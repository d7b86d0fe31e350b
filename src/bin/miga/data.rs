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
    /// Draw clips from these classes only (iMiGUE codes 1-31 and 99, comma-separated); default all
    #[arg(long, value_delimiter = ',')]
    classes: Vec<u32>,
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
        classes: args.classes.clone(),
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
    /// Measure the clip pipelines (decode + sample + transform): clips per second, RGB and skeleton
    #[command(
        after_help = "Example:\n  miga synth --out data/synth720 --videos 4 --size 1280x720\n  miga data bench data/synth720 --threads 2"
    )]
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// A MiGA layout folder (its train split is used)
    root: PathBuf,
    /// Worker threads (as a DataLoader's workers)
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Clips to load per pipeline (at most the split's)
    #[arg(long, default_value_t = 32)]
    clips: usize,
    /// RGB frames per clip
    #[arg(long, default_value_t = 16)]
    frames: usize,
    /// Skeleton frames per clip
    #[arg(long, default_value_t = 64)]
    skeleton_frames: usize,
    /// Training-time augmentation (random frames, crops, flips)
    #[arg(long)]
    augment: bool,
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

fn bench(args: BenchArgs) -> Result<(), Error> {
    use miga::datasets::clips::{ClipConfig, ClipDataset, ClipRecord, Modalities};
    use miga::datasets::{MigaLayout, Split};
    use rayon::prelude::*;
    let layout = MigaLayout::scan(&args.root)?;
    let (mut records, problems) = ClipRecord::from_miga(&layout, Split::Train);
    if let Some(problem) = problems.into_iter().next() {
        return Err(problem.into());
    }
    records.truncate(args.clips);
    if records.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: no training clips",
            args.root.display()
        )));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    println!(
        "{} clips, {} threads, {} RGB / {} skeleton frames a clip",
        records.len(),
        args.threads,
        args.frames,
        args.skeleton_frames
    );
    for modalities in [Modalities::Rgb, Modalities::Skeleton] {
        let config = ClipConfig {
            modalities,
            frames: args.frames,
            skeleton_frames: args.skeleton_frames,
            augment: args.augment,
            ..ClipConfig::default()
        };
        let start = std::time::Instant::now();
        let (dataset, _) = pool.install(|| ClipDataset::new(records.clone(), config, 0))?;
        let setup = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        let failed = pool.install(|| {
            (0..records.len())
                .into_par_iter()
                .filter(|&i| {
                    burn::data::dataset::Dataset::get(&dataset, i)
                        .is_none_or(|item| item.data.is_err())
                })
                .count()
        });
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{:>9}: {:7.2} clips/s ({:.3} s a clip a thread; {failed} failed; set-up {setup:.2} s)",
            format!("{modalities:?}").to_lowercase(),
            records.len() as f64 / seconds,
            seconds * args.threads as f64 / records.len() as f64
        );
    }
    Ok(())
}

pub fn data(args: DataArgs) -> Result<(), Error> {
    match args.command {
        DataCommand::Bench(args) => bench(args),
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
