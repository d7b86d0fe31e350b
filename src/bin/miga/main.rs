//! The `miga` command line. Run `miga --help` for the commands.

mod bench;
mod check;
mod data;
mod demo;
mod detect;
mod evaluate;
mod export;
mod extract;
mod faces;
mod forward;
mod log;
mod progress;
mod settings;
mod train;
mod video;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use miga::Error;
use miga::device::{BackendKind, DeviceSpec, probe};

/// The tensors of a training step are large and short-lived: glibc's malloc returns them to
/// the kernel and faults fresh zeroed pages in on the next step (a third of a fusion training
/// step on Flex was page faults); mimalloc keeps and reuses them (see [`keep_freed_memory`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its index in `mi_option_e`, the same in the mimalloc 3
/// that libmimalloc-sys builds by default and in mimalloc 2 (the Rust binding does not name
/// it; libmimalloc-sys is pinned in Cargo.toml, and a test checks the option's neighbours).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed memory back to the kernel. By default it does so a
/// little while after a free, and the next tensor of that size faults fresh zeroed pages in: an MViTv2-S
/// forward pass allocates and frees tens of buffers of 40-80 MB, and page faults cost it a
/// quarter of its time (2.9 s per clip; 2.2 s with this). The process keeps its peak memory
/// until it exits.
fn keep_freed_memory() {
    // SAFETY: sets one of the allocator's integer options; valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[derive(Parser)]
#[command(
    name = "miga",
    version,
    about = "Micro-gesture recognition and behaviour-based emotion prediction (iMiGUE / MiGA) on Burn",
    long_about = "Micro-gesture recognition (RGB clips through MViTv2-S, OpenPose skeletons through \
                  2s-AGCN, fused by Cross-Modal Token Fusion) and behaviour-based emotion \
                  prediction (SwinFace faces and MViTv2-S context, fused by InterFusion) on the \
                  iMiGUE / MiGA data, on CPU, wgpu or CUDA.",
    after_help = "Start with `miga info` to see which backends this build has, then `miga demo`.\n\
                  Every command has its own --help with an example."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print warnings and errors only (progress bars stay)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: -v adds debugging detail, -vv trace events
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Show the version, the compiled backends and which devices work on this machine
    #[command(after_help = "Examples:\n  miga info\n  miga info --device wgpu --json")]
    Info(InfoArgs),
    /// Run one backbone on tensors from a safetensors file and write its outputs
    #[command(
        after_help = "Examples:\n  MViTv2-S on clips (B, 3, T, H, W), torchvision weights, with the token grid:\n  miga forward --arch mvit_v2_s --weights mvit_v2_s-ae3be167.pth --input clips.safetensors \\\n      --output out.safetensors --tokens\n  2s-AGCN, both streams fused:\n  miga forward --arch agcn --graph imigue-upper-hands --stream both \\\n      --weights joint.pt --bone-weights bone.pt --input skeletons.safetensors --output out.safetensors\n  SwinFace on aligned faces (B, 3, 112, 112), its training checkpoint, all 42 heads:\n  miga forward --arch swinface --weights checkpoint_step_79999_gpu_0.pt --input faces.safetensors \\\n      --output out.safetensors"
    )]
    Forward(forward::ForwardArgs),
    /// Run both tasks end to end on generated data: synthesise, extract, train, evaluate, predict
    #[command(
        after_help = "Examples:\n  miga demo                      (into ./miga-demo)\n  miga demo --seeds 5            (five seeds: every row's mean and spread)\n  miga demo --out runs/demo --config demo.toml\n  miga demo --validation-only    (for choosing settings: the test split is not touched)\n  miga demo --print-config > demo.toml\n\nWrites a synthetic dataset in the MiGA layout, extracts features with small randomly\ninitialised backbones, trains every single-stream baseline and the fusion model of both tasks\n(micro-gesture: video, skeleton, fusion; emotion: face, context, late fusion, InterFusion),\nscores them on the validation split and once on held-out test subjects, and prints one table\nwith per-class accuracy by stream. About 4 minutes on 2 cores."
    )]
    Demo(demo::DemoArgs),
    /// Run the backbones over a dataset and write feature shards (resumable)
    #[command(
        after_help = "Examples:\n  miga extract --task micro-gesture --data miga2025/ --split train --out features/train \\\n      --mvit-weights mvit_v2_s-ae3be167.pth --agcn-weights joint.pt\n  miga extract --task micro-gesture --data miga2025/ --out features/train --shard 1/4   (machine 2 of 4)\n  miga extract --task micro-gesture --print-config > extract.toml"
    )]
    Extract(extract::ExtractArgs),
    /// Train a fusion model (micro-gesture or emotion) on extracted features
    #[command(
        after_help = "Examples:\n  miga train --task micro-gesture --features features/train --valid features/validate --out runs/mg\n  miga train --features features/train --valid features/validate --out runs/video --streams video   (baseline)\n  miga train --features features/train --valid features/validate --out runs/mg --resume   (after a crash)\n  miga train --task emotion --features features/emotion-train --valid features/emotion-validate --out runs/emotion\n  miga train --features features/train --valid features/validate --out runs/mg --devices cuda:0,cuda:1   (data-parallel)\n  miga train --end-to-end --data miga2025/ --extract-config extract.toml --out runs/e2e --device cuda   (backbones too)\n  miga train --print-config > train.toml"
    )]
    Train(train::TrainArgs),
    /// List training runs: task, epochs, best validation score, checkpoints kept, size on disk
    #[command(after_help = "Examples:\n  miga runs runs/\n  miga runs miga-demo --json")]
    Runs(train::RunsArgs),
    /// Evaluate a trained model: metrics, confusion matrix, per-class accuracy
    #[command(
        after_help = "Examples:\n  miga eval --run runs/mg --features features/test\n  miga eval --run runs/e2e --data miga2025/ --split validate   (an end-to-end run, on raw clips)\n  writes runs/mg/eval-test/{metrics.json, confusion.csv, confusion.svg, per_class.csv}"
    )]
    Eval(evaluate::EvalArgs),
    /// Find every micro-gesture (class, start, end) in untrimmed videos with a trained run
    #[command(
        after_help = "Examples:\n  miga detect --run runs/mg --video 0001.mp4 --skeleton 0001_openpose.xlsx --out detect/0001\n  miga detect --run runs/mg --data miga2025/ --split test --out detect/test --stride 4\n  writes detect/test/{detections.csv, detect.json, timeline/<video>.svg} (and online.json, the F1 at\n  --tiou, when the videos have label files)\n\nWindows of --window frames every --stride frames are classified; each frame takes the mean of\nits windows' class probabilities, smoothed over --smooth frames; a frame whose best\nmicro-gesture is below --threshold, or not above the non-micro-gesture class (99), is\nbackground; runs of one class of at least --min-length frames are the instances\n(docs/online.md)."
    )]
    Detect(detect::DetectArgs),
    /// Export a trained run as safetensors (PyTorch's conventions) and a JSON config
    #[command(
        after_help = "Example:\n  miga export --run runs/mg --out exported/mg\n  writes exported/mg/model.safetensors and exported/mg/config.json; `miga eval --run exported/mg`\n  loads it back\n\nKeys are miga's module paths (`fusion.video_projection.weight`), the fusion module's parts\nnamed as its PyTorch twin names them (`fusion.cross_layers.0...`, scripts/fusion_reference.py);\nlinear weights are [out, in] as PyTorch stores them; norms' scale and shift are `weight` and\n`bias`."
    )]
    Export(export::ExportArgs),
    /// Write predictions: the MiGA submission file (`Id,Target`)
    #[command(
        after_help = "Example:\n  miga predict --run runs/mg --features features/test --out prediction.csv"
    )]
    Predict(evaluate::PredictArgs),
    /// Write aligned 112x112 face crops (SwinFace's input) from a video and its OpenPose skeleton
    #[command(
        after_help = "Example:\n  miga faces --skeleton 0001_openpose.xlsx --video 0001.mp4 --out faces/0001\n  writes faces/0001/face_000000.png, ... and faces/0001/faces.json (skipped frames and why)\n\nFive landmarks (eye centres, nose tip, mouth corners) from OpenPose's 70 face points are\nmapped onto ArcFace's 112x112 template by a similarity transform; frames whose points are\nmissing or below --min-confidence are skipped and reported, never cropped at (0, 0)."
    )]
    Faces(faces::FacesArgs),
    /// Inspect H.264 videos and write chosen frames as PNG
    #[command(
        after_help = "Examples:\n  miga video probe clip.mp4\n  miga video extract clip.mp4 --frames 0,10,131 --out frames/"
    )]
    Video(video::VideoArgs),
    /// Generate a synthetic dataset in the MiGA 2025 layout (H.264 videos, skeleton tables, labels)
    #[command(
        after_help = "Example:\n  miga synth --out data/synth --seed 7 --videos 24 --clips-per-video 12\n\nEach class is a distinct small motion of a rendered figure; Win/Lose changes its overall\nbehaviour. The same seed and options give the same bytes."
    )]
    Synth(data::SynthArgs),
    /// Inspect a dataset (videos, clips, classes, splits, skeletons, problems) or time its loading
    #[command(
        after_help = "Examples:\n  miga data check miga2025/\n  miga data check imigue/labels_20200831.csv --format json\n  miga data bench data/synth --threads 2"
    )]
    Data(data::DataArgs),
    /// Time the models on every compiled backend, side by side with PyTorch
    #[command(
        after_help = "Examples:\n  miga bench --model mvit_v2_s --device cpu,cuda --batch 1,8 --mode forward,train --threads 2\n  miga bench --model agcn --device cpu,wgpu --batch 8,32 --mode forward,train --json bench.json"
    )]
    Bench(bench::BenchArgs),
    /// Check the models against the committed PyTorch reference outputs and gradients
    #[command(
        after_help = "Examples:\n  miga check --device cpu,wgpu --quick      (from the repository)\n  miga check --device cuda --fixtures gpu-pack --json check.json\n  miga check --only gradients/,full/agcn --device wgpu\n  miga check --list\n\nEach check loads a model through miga's strict loaders from a fixture written by the\nreference code (scripts/), runs it on the device and reports the worst scaled error,\nmax |a - b| / max(1, max |reference|), against its tolerance. The exit code says whether all\npassed; a check that cannot run (no fixture, unusable device) fails and the others go on."
    )]
    Check(check::CheckArgs),
}

#[derive(Args)]
struct InfoArgs {
    /// Probe only this device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N]);
    /// without it every compiled backend is probed
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    log::init(cli.quiet, cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Info(args) => info(args),
        Command::Forward(args) => forward::run(args),
        Command::Faces(args) => faces::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Extract(args) => extract::run(args),
        Command::Train(args) => train::run(args),
        Command::Runs(args) => train::runs(args),
        Command::Eval(args) => evaluate::eval(args),
        Command::Detect(args) => detect::run(args),
        Command::Predict(args) => evaluate::predict(args),
        Command::Export(args) => export::run(args),
        Command::Video(args) => video::run(args),
        Command::Synth(args) => data::synth(args),
        Command::Data(args) => data::data(args),
        Command::Bench(args) => bench::run(args),
        Command::Check(args) => check::run(args),
    }
}

fn info(args: InfoArgs) -> Result<(), Error> {
    let specs: Vec<DeviceSpec> = match args.device {
        Some(spec) => vec![spec],
        None => BackendKind::ALL
            .into_iter()
            .filter(|kind| kind.is_compiled())
            .map(DeviceSpec::new)
            .collect(),
    };
    let probes: Vec<(DeviceSpec, Result<_, Error>)> =
        specs.into_iter().map(|spec| (spec, probe(spec))).collect();
    if args.json {
        let backends: Vec<_> = BackendKind::ALL
            .into_iter()
            .map(|kind| {
                serde_json::json!({
                    "device": kind.device_name(),
                    "feature": kind.feature(),
                    "compiled": kind.is_compiled(),
                })
            })
            .collect();
        let devices: Vec<_> = probes
            .iter()
            .map(|(spec, result)| match result {
                Ok(report) => serde_json::json!({
                    "device": spec.to_string(),
                    "usable": true,
                    "backend": report.backend,
                    "adapter": report.adapter,
                }),
                Err(err) => serde_json::json!({
                    "device": spec.to_string(),
                    "usable": false,
                    "error": err.to_string(),
                }),
            })
            .collect();
        let out = serde_json::json!({
            "version": miga::VERSION,
            "burn": "0.21.0",
            "h264_decoder": miga::datasets::video::DECODER,
            "backends": backends,
            "devices": devices,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!("miga {} (burn 0.21.0)", miga::VERSION);
        println!("H.264 decoder: {}", miga::datasets::video::DECODER);
        println!("\nbackends:");
        for kind in BackendKind::ALL {
            let state = if kind.is_compiled() {
                "compiled".to_string()
            } else {
                format!("not compiled (cargo feature `{}`)", kind.feature())
            };
            println!("  {:<8} {state}", kind.device_name());
        }
        println!("\ndevices:");
        for (spec, result) in &probes {
            match result {
                Ok(report) => println!(
                    "  {:<8} usable   {}{}",
                    spec.to_string(),
                    report.backend,
                    report
                        .adapter
                        .as_ref()
                        .map(|a| format!(" on {a}"))
                        .unwrap_or_default()
                ),
                Err(err) => println!("  {:<8} unusable {err}", spec.to_string()),
            }
        }
    }
    // Asking for one device is asking whether it works: say so with the exit code.
    match (args.device, probes.into_iter().next()) {
        (Some(_), Some((_, Err(err)))) => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MI_OPTION_PURGE_DELAY` names the purge delay (a positive number of milliseconds by
    /// default) between the eager commit delay (1) and the NUMA node count (0).
    #[test]
    fn purge_delay_option_index() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads allocator options.
        let [before, option, after] = [-1, 0, 1]
            .map(|d| unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY + d) });
        assert_eq!((before, after), (1, 0));
        assert!(option > 0, "purge delay {option}");
    }
}
