//! `miga synth` and `miga data check / bench / convert`: generate a dataset in the MiGA layout,
//! inspect one, time its loading, convert between layouts.

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
    /// Convert between the layouts: the iMiGUE release to a MiGA 2025 folder, an OpenPose JSON
    /// folder to a MiGA skeleton table, and a table back to JSON frames
    #[command(
        after_help = "Examples:\n  miga data convert imigue/labels_20200831.csv miga-layout/    (the release, as a MiGA folder)\n  miga data convert imigue/skeleton/raw/298 0298_openpose.xlsx\n  miga data convert 0298_openpose.xlsx openpose/298 --video 298\n\nThe person kept in frames where OpenPose saw several is --person's choice (the largest\nsummed body confidence by default: the player facing the camera); such frames are counted."
    )]
    Convert(ConvertArgs),
}

#[derive(Args)]
struct ConvertArgs {
    /// From: an official label CSV (or the folder holding labels_20200831.csv), an OpenPose
    /// JSON folder, or a MiGA `<ID>_openpose.xlsx`
    from: PathBuf,
    /// To: a MiGA 2025 folder (from the release), an `.xlsx` (from a JSON folder) or a new
    /// folder of JSON frames (from a table)
    to: PathBuf,
    /// Which person a frame with several keeps: most-confident, largest, or an index
    #[arg(long, default_value = "most-confident")]
    person: String,
    /// The video name in the JSON file names (`<video>_<frame:012>_keypoints.json`); default
    /// the table's id
    #[arg(long)]
    video: Option<String>,
}

fn convert(args: ConvertArgs) -> Result<(), Error> {
    use miga::datasets::convert::release_to_miga;
    use miga::datasets::skeleton::{
        read_openpose_folder_counted, read_skeleton_xlsx, write_openpose_folder,
        write_skeleton_xlsx,
    };
    use miga::datasets::{DataSource, PersonSelection};
    let person = match args.person.as_str() {
        "most-confident" => PersonSelection::MostConfident,
        "largest" => PersonSelection::Largest,
        n => PersonSelection::Index(n.parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "--person `{n}` is not most-confident, largest or an index"
            ))
        })?),
    };
    let is_table = |p: &std::path::Path| p.extension().is_some_and(|e| e == "xlsx");
    let json_folder = args.from.is_dir()
        && std::fs::read_dir(&args.from).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with("_keypoints.json"))
            })
        });
    if json_folder {
        if !is_table(&args.to) {
            return Err(Error::InvalidArgument(format!(
                "{}: an OpenPose folder converts to an .xlsx table",
                args.to.display()
            )));
        }
        let (skeleton, stats) = read_openpose_folder_counted(&args.from, person)?;
        write_skeleton_xlsx(&args.to, &skeleton)?;
        println!(
            "{} frames ({} files; {} with a person, {} with several: one kept by --person {}) -> {}",
            stats.frames,
            stats.files,
            stats.with_person,
            stats.multi_person,
            args.person,
            args.to.display()
        );
        return Ok(());
    }
    if is_table(&args.from) {
        let video = match &args.video {
            Some(video) => video.clone(),
            None => args
                .from
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix("_openpose.xlsx"))
                .unwrap_or("video")
                .to_string(),
        };
        let skeleton = read_skeleton_xlsx(&args.from)?;
        write_openpose_folder(&args.to, &video, &skeleton)?;
        println!(
            "{} frames ({} with a person) -> {}/{video}_<frame>_keypoints.json",
            skeleton.frames(),
            skeleton.frames_with_people(),
            args.to.display()
        );
        return Ok(());
    }
    let DataSource::Imigue(release) = DataSource::open(&args.from)? else {
        return Err(Error::InvalidArgument(format!(
            "{} is a MiGA folder already; convert the release (its label CSV), an OpenPose \
             folder or a table",
            args.from.display()
        )));
    };
    let bar = crate::progress::bar(0, "videos");
    let videos = release_to_miga(&release, &args.to, person, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let skeletons: Vec<_> = videos.iter().filter_map(|v| v.skeleton).collect();
    println!(
        "{} videos ({} already there, {} with a video file), {} clips; {} skeleton frames, {} \
         with several people (one kept by --person {}) -> {}",
        videos.len(),
        videos.iter().filter(|v| v.resumed).count(),
        videos.iter().filter(|v| v.video).count(),
        videos.iter().map(|v| v.clips).sum::<usize>(),
        skeletons.iter().map(|s| s.frames).sum::<usize>(),
        skeletons.iter().map(|s| s.multi_person).sum::<usize>(),
        args.person,
        args.to.display()
    );
    let without = release.videos_without_data().len();
    if without > 0 {
        tracing::info!(
            "note: {without} videos of the label file have neither a skeleton folder nor a video \
             and were left out"
        );
    }
    Ok(())
}

#[derive(Args)]
struct BenchArgs {
    /// The data: a MiGA 2025 folder or the iMiGUE release (its train split is used)
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
    /// Training-time augmentation (random frames, resized crops, flips)
    #[arg(long)]
    augment: bool,
    /// Clips a batch (batch assembly is timed as its own stage)
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Where batches are assembled: cpu, ndarray, wgpu, cuda (what the build has)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also time ffmpeg (from PATH) decoding the same videos on one thread, for comparison
    #[arg(long)]
    ffmpeg: bool,
    /// A clip cache folder: RGB clips are read from it (stored first when absent; run twice to
    /// time reading)
    #[arg(long)]
    cache: Option<PathBuf>,
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
    use miga::datasets::{DataSource, Split};
    let (mut records, problems) = DataSource::open(&args.root)?.clips(Split::Train);
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
    if args.threads == 0 || args.batch == 0 {
        return Err(Error::InvalidArgument(
            "--threads and --batch must be at least 1".into(),
        ));
    }
    let device = miga::device::parse_devices(&args.device)?;
    let [device] = device[..] else {
        return Err(Error::InvalidArgument(format!(
            "--device `{}`: one device",
            args.device
        )));
    };
    let ffmpeg = args.ffmpeg;
    let videos: std::collections::BTreeSet<PathBuf> =
        records.iter().filter_map(|r| r.rgb.clone()).collect();
    device.run(DataBench { args, records })??;
    if ffmpeg {
        ffmpeg_rate(&videos)?;
    }
    Ok(())
}

/// The clip pipelines timed on one backend (batches are assembled on its device).
struct DataBench {
    args: BenchArgs,
    records: Vec<miga::datasets::clips::ClipRecord>,
}

impl miga::device::BackendTask for DataBench {
    type Output = Result<(), Error>;

    fn run<B: burn::prelude::Backend>(self, device: B::Device) -> Self::Output {
        use burn::data::dataloader::batcher::Batcher;
        use burn::data::dataset::Dataset;
        use miga::datasets::clips::{ClipBatch, ClipBatcher, ClipConfig, ClipDataset, Modalities};
        use miga::datasets::stages;
        use rayon::prelude::*;
        let (args, records) = (self.args, self.records);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        println!(
            "{} clips in batches of {}, {} threads, {} RGB / {} skeleton frames a clip{}",
            records.len(),
            args.batch,
            args.threads,
            args.frames,
            args.skeleton_frames,
            if args.augment { ", augmented" } else { "" }
        );
        for modalities in [Modalities::Rgb, Modalities::Skeleton] {
            let config = ClipConfig {
                modalities,
                frames: args.frames,
                skeleton_frames: args.skeleton_frames,
                augment: args.augment,
                cache: args.cache.clone(),
                ..ClipConfig::default()
            };
            let start = std::time::Instant::now();
            let (dataset, _) = pool.install(|| ClipDataset::new(records.clone(), config, 0))?;
            let setup = start.elapsed().as_secs_f64();
            stages::start();
            let start = std::time::Instant::now();
            let indices: Vec<usize> = (0..records.len()).collect();
            let failed: usize = pool.install(|| {
                indices
                    .par_chunks(args.batch)
                    .map(|chunk| {
                        let items = chunk.iter().filter_map(|&i| dataset.get(i)).collect();
                        let batch: ClipBatch<B> = ClipBatcher.batch(items, &device);
                        batch.skipped.len()
                    })
                    .sum()
            });
            miga::datasets::cache::close_all()?;
            let seconds = start.elapsed().as_secs_f64();
            let totals = stages::stop();
            let busy = seconds * args.threads as f64;
            let share = |part: f64| 100.0 * part / busy;
            let known = totals.container + totals.decode + totals.convert + totals.resize;
            println!(
                "{:>9}: {:8.2} clips/s, {:.2} a thread ({:.3} s a clip a thread; {failed} failed; \
                 set-up {setup:.2} s)",
                format!("{modalities:?}").to_lowercase(),
                records.len() as f64 / seconds,
                records.len() as f64 / busy,
                busy / records.len() as f64,
            );
            println!(
                "           container {:.0}%, decode {:.0}%, convert {:.0}%, resize/crop {:.0}%, \
                 batch {:.0}%, rest {:.0}% (sampling, skeleton, waiting)",
                share(totals.container),
                share(totals.decode),
                share(totals.convert),
                share(totals.resize),
                share(totals.batch),
                share((busy - known - totals.batch).max(0.0)),
            );
            if totals.pictures > 0 {
                println!(
                    "           {:.1} pictures decoded a clip, {:.0} pictures/s a thread in decode",
                    totals.pictures as f64 / records.len() as f64,
                    totals.pictures as f64 / totals.decode.max(1e-9),
                );
            }
        }
        Ok(())
    }
}

/// ffmpeg's single-thread decode rate of `videos` (every frame, output discarded).
fn ffmpeg_rate(videos: &std::collections::BTreeSet<PathBuf>) -> Result<(), Error> {
    let mut frames = 0;
    let start = std::time::Instant::now();
    for video in videos {
        frames += miga::datasets::video::Video::open(video)?.info().frames;
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-threads", "1", "-i"])
            .arg(video)
            .args(["-f", "null", "-"])
            .status()
            .map_err(|e| Error::InvalidArgument(format!("--ffmpeg: cannot run ffmpeg: {e}")))?;
        if !status.success() {
            return Err(Error::InvalidArgument(format!(
                "--ffmpeg: ffmpeg failed on {}",
                video.display()
            )));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "   ffmpeg: {:8.0} frames/s on one thread ({frames} frames of {} videos in {seconds:.2} s, \
         whole files)",
        frames as f64 / seconds,
        videos.len()
    );
    Ok(())
}

pub fn data(args: DataArgs) -> Result<(), Error> {
    match args.command {
        DataCommand::Bench(args) => bench(args),
        DataCommand::Convert(args) => convert(args),
        DataCommand::Check(args) => {
            let report = miga::datasets::check::check(&args.path)?;
            match args.format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                Format::Text => print!("{}", report.to_text()),
            }
            match report.problems.len() {
                0 => Ok(()),
                count => Err(Error::DataProblems {
                    count,
                    source_name: report.source,
                }),
            }
        }
    }
}
