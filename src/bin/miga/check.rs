//! `miga check`: the parity checks against the committed reference fixtures on chosen devices.

use std::path::PathBuf;

use clap::Args;
use miga::Error;
use miga::check::{CHECKS, Check, Fixtures, Outcome, run as run_check};
use miga::device::{DeviceSpec, Precision};

#[derive(Args)]
pub struct CheckArgs {
    /// Devices, comma-separated: cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N]
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    device: Vec<DeviceSpec>,
    /// Floating-point precision on the GPU backends: f32, f16 or bf16 (f16 and bf16: every
    /// weight, activation and gradient in half precision; docs/backends.md)
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// The folder holding crates/miga-backbones/tests/fixtures and
    /// crates/miga-fusion/tests/fixtures: the repository, or a GPU pack
    #[arg(long, default_value = ".")]
    fixtures: PathBuf,
    /// Skip the full-size networks (each up to a minute on a CPU)
    #[arg(long)]
    quick: bool,
    /// Only the checks whose names start with one of these, comma-separated (`forward/agcn`,
    /// `gradients/`, `full/mvit_v2_s`); `--list` names them all
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// List the checks and their tolerances, run nothing
    #[arg(long)]
    list: bool,
    /// Write every outcome (each compared quantity's error included) as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> Result<(), Error> {
    let checks: Vec<&Check> = CHECKS
        .iter()
        .filter(|c| !args.quick || c.quick())
        .filter(|c| {
            args.only.is_empty() || args.only.iter().any(|p| c.name.starts_with(p.as_str()))
        })
        .collect();
    if checks.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no check starts with {:?}; `miga check --list` names them",
            args.only
        )));
    }
    if args.list {
        for check in &checks {
            println!("{:<34} tolerance {:e}", check.name, check.tolerance);
        }
        return Ok(());
    }
    let fixtures = Fixtures::at(&args.fixtures)?;
    println!(
        "{:<34} {:<8} {:<4} {:>10} {:>10} {:>7} {:>6}  worst at",
        "check", "device", "prec", "error", "tolerance", "seconds", "top-1"
    );
    let mut outcomes: Vec<Outcome> = Vec::new();
    for &device in &args.device {
        for check in &checks {
            let outcome = run_check(check, &fixtures, device.with_precision(args.precision));
            print_row(&outcome);
            outcomes.push(outcome);
            // Written after every check, so that a run cut short keeps what it measured.
            if let Some(path) = &args.json {
                write_json(path, &outcomes)?;
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    println!(
        "{} checks: {} passed, {failed} failed",
        outcomes.len(),
        outcomes.len() - failed
    );
    match failed {
        0 => Ok(()),
        _ => Err(Error::ChecksFailed {
            failed,
            total: outcomes.len(),
            which: outcomes
                .iter()
                .filter(|o| !o.passed)
                .map(|o| format!("{} on {}", o.check, o.device))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn print_row(o: &Outcome) {
    let verdict = if o.passed { "ok" } else { "FAILED" };
    match o.error {
        Some(error) => println!(
            "{:<34} {:<8} {:<4} {:>10.2e} {:>10.0e} {:>7.1} {:>6}  {} {verdict}",
            o.check,
            o.device,
            o.precision,
            error,
            o.tolerance,
            o.seconds,
            o.top1
                .map(|t| format!("{:.0}%", 100.0 * t))
                .unwrap_or_else(|| "-".into()),
            o.worst.as_deref().unwrap_or("-")
        ),
        None => println!(
            "{:<34} {:<8} {:<4} {:>10} {:>10.0e} {:>7.1} {:>6}  {verdict}: {}",
            o.check,
            o.device,
            o.precision,
            "-",
            o.tolerance,
            o.seconds,
            "-",
            o.failure.as_deref().unwrap_or("no result")
        ),
    }
}

fn write_json(path: &PathBuf, outcomes: &[Outcome]) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(outcomes).unwrap_or_default();
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })
}
