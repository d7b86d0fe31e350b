//! `miga demo`: both tasks end to end on generated data, into one folder.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use indicatif::ProgressBar;
use miga::Error;
use miga::device::{AutodiffTask, DeviceSpec};
use miga::tasks::demo::{DemoConfig, DemoSummary, Stage, run_demo};

#[derive(Args)]
pub struct DemoArgs {
    /// The folder for everything: data/, features/, runs/, predictions/, summary.md; a demo
    /// stopped part-way continues there, keeping what it finished
    #[arg(long, default_value = "miga-demo")]
    out: PathBuf,
    /// Demo settings (TOML over the defaults: data size, backbones, training; see
    /// `--print-config`)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the default settings as TOML and exit
    #[arg(long)]
    print_config: bool,
    /// Device (cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

struct Demo {
    config: DemoConfig,
    out: PathBuf,
}

impl AutodiffTask for Demo {
    type Output = Result<DemoSummary, Error>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let mut current: Option<(Stage, ProgressBar)> = None;
        let mut started = Instant::now();
        let summary = run_demo::<B>(
            &self.config,
            &self.out,
            &device,
            &mut |stage, done, total| {
                if current.as_ref().is_none_or(|(s, _)| *s != stage) {
                    if let Some((previous, bar)) = current.take() {
                        bar.finish_and_clear();
                        eprintln!("{previous}: {:.1} s", started.elapsed().as_secs_f64());
                    }
                    started = Instant::now();
                    let unit = match stage {
                        Stage::Data => "videos",
                        Stage::Extract(..) => "items",
                        Stage::Train(..) => "runs",
                    };
                    current = Some((stage, crate::progress::bar(total as u64, unit)));
                }
                if let Some((_, bar)) = &current {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                }
            },
        );
        if let Some((previous, bar)) = current {
            bar.finish_and_clear();
            eprintln!("{previous}: {:.1} s", started.elapsed().as_secs_f64());
        }
        Ok(summary?)
    }
}

pub fn run(args: DemoArgs) -> Result<(), Error> {
    let Some(config) =
        crate::settings::load::<DemoConfig>(args.config.as_deref(), args.print_config)?
    else {
        return Ok(());
    };
    eprintln!(
        "miga demo: {} synthetic videos, both tasks, on {} -> {}",
        config.data.videos,
        args.device,
        args.out.display()
    );
    let summary = args.device.run_autodiff(Demo {
        config,
        out: args.out.clone(),
    })??;
    println!("\n{}", summary.table());
    println!(
        "Done in {:.0} s. Everything is in {}: data/, features/, runs/ (training.svg and \
         eval-test/ per model), predictions/, summary.md.",
        summary.seconds,
        summary.dir.display()
    );
    Ok(())
}
