//! `miga video`: probe an H.264 MP4 (or frame folder) and write chosen frames as PNG.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use miga::Error;
use miga::datasets::video::{Video, write_pngs};

#[derive(Args)]
pub struct VideoArgs {
    #[command(subcommand)]
    command: VideoCommand,
}

#[derive(Subcommand)]
enum VideoCommand {
    /// Print width, height, fps and frame count as JSON
    #[command(
        after_help = "Example:\n  miga video probe 0001.mp4\n  {\"width\":1280,\"height\":720,\"fps\":25.0,\"frames\":13201}"
    )]
    Probe {
        /// An MP4 file (H.264) or a folder of numbered frame images
        file: PathBuf,
    },
    /// Decode chosen frames (0-based, display order) and write them as RGB8 PNG files
    #[command(
        after_help = "Example:\n  miga video extract 0001.mp4 --frames 0,10,131 --out frames/\n  writes frames/frame_000000.png, frames/frame_000010.png, frames/frame_000131.png"
    )]
    Extract {
        /// An MP4 file (H.264) or a folder of numbered frame images
        file: PathBuf,
        /// Frame indices, comma-separated; ranges as START..END (END excluded) work too
        #[arg(long, value_delimiter = ',', required = true)]
        frames: Vec<String>,
        /// Output folder (created if needed)
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_frames(items: &[String]) -> Result<Vec<usize>, Error> {
    let bad = |item: &str| {
        Error::InvalidArgument(format!(
            "`{item}` is not a frame index or a START..END range"
        ))
    };
    let mut frames = Vec::new();
    for item in items {
        match item.split_once("..") {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad(item))?,
                    b.trim().parse().map_err(|_| bad(item))?,
                );
                frames.extend(a..b);
            }
            None => frames.push(item.trim().parse().map_err(|_| bad(item))?),
        }
    }
    Ok(frames)
}

pub fn run(args: VideoArgs) -> Result<(), Error> {
    match args.command {
        VideoCommand::Probe { file } => {
            let video = Video::open(&file)?;
            println!(
                "{}",
                serde_json::to_string(&video.info()).unwrap_or_default()
            );
        }
        VideoCommand::Extract { file, frames, out } => {
            let indices = parse_frames(&frames)?;
            let mut video = Video::open(&file)?;
            let decoded = video.frames(&indices)?;
            for path in write_pngs(&out, &indices, &decoded)? {
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}
