//! `miga bench`: time models on compiled backends, print a table, write JSON.

use std::path::PathBuf;

use clap::Args;
use miga::Error;
use miga::bench::{BenchMode, BenchModel, BenchResult, BenchSpec, run as run_bench};
use miga::device::{DeviceSpec, Precision};

#[derive(Args)]
pub struct BenchArgs {
    /// Models, comma-separated, or `all`: mvit_v2_s, agcn, swinface, cmtf, interfusion
    #[arg(long, default_value = "all")]
    model: String,
    /// Devices, comma-separated: cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N]
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    device: Vec<DeviceSpec>,
    /// Floating-point precision on the GPU backends: f32, f16 or bf16 (f16 and bf16: every
    /// weight, activation and gradient in half precision; docs/backends.md)
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Batch sizes, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "8")]
    batch: Vec<usize>,
    /// What an iteration is: forward, train (forward, loss, backward, SGD step), or both
    #[arg(long, value_delimiter = ',', default_value = "forward")]
    mode: Vec<String>,
    /// Frames per item [default: 16 per clip for mvit_v2_s, 64 per skeleton for agcn, 8 video
    /// token steps (16-frame clip) for cmtf, 32 context windows (and 128 faces) for interfusion]
    #[arg(long)]
    frames: Option<usize>,
    /// Untimed iterations first (autotuning and shader compilation happen there)
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed iterations; the median is reported
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// CPU threads for the CPU backends (default: all cores)
    #[arg(long)]
    threads: Option<usize>,
    /// Write the results as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<(), Error> {
    if let Some(threads) = args.threads {
        if threads == 0 {
            return Err(Error::InvalidArgument(
                "--threads must be at least 1".into(),
            ));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .map_err(|e| Error::InvalidArgument(format!("--threads: {e}")))?;
    }
    let models: Vec<BenchModel> = if args.model == "all" {
        BenchModel::ALL.to_vec()
    } else {
        args.model
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?
    };
    let modes: Vec<BenchMode> = args
        .mode
        .iter()
        .map(|m| m.parse())
        .collect::<Result<_, _>>()?;
    let mut results: Vec<BenchResult> = Vec::new();
    println!(
        "{:<10} {:<10} {:<28} {:<4} {:<8} {:>5} {:>11} {:>17} {:>9} {:>9}",
        "model",
        "device",
        "backend",
        "prec",
        "mode",
        "batch",
        "median ms",
        "min..max ms",
        "items/s",
        "GFLOP/s"
    );
    for &model in &models {
        for &device in &args.device {
            for &mode in &modes {
                for &batch in &args.batch {
                    let spec = BenchSpec {
                        model,
                        mode,
                        batch,
                        frames: args.frames.unwrap_or(model.default_frames()),
                        warmup: args.warmup,
                        iters: args.iters,
                    };
                    let r = run_bench(&spec, device.with_precision(args.precision))?;
                    println!(
                        "{:<10} {:<10} {:<28} {:<4} {:<8} {:>5} {:>11.1} {:>17} {:>9.1} {:>9.1}",
                        r.model,
                        r.device,
                        r.backend,
                        r.precision,
                        r.mode,
                        r.batch,
                        r.median_ms,
                        format!("{:.1}..{:.1}", r.min_ms, r.max_ms),
                        r.items_per_s,
                        r.gflop_per_s
                    );
                    results.push(r);
                }
            }
        }
    }
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&results).unwrap_or_default();
        std::fs::write(&path, text).map_err(|source| Error::Io { path, source })?;
    }
    Ok(())
}
