//! `miga demo`: both tasks end to end on generated data, into one folder.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use indicatif::ProgressBar;
use miga::Error;
use miga::device::{AutodiffTask, DeviceSpec};
use miga::tasks::demo::{DemoConfig, DemoSummary, SeedStudy, Stage, run_demo};

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
    /// Repeat the whole demo (new data, new random backbones, new training seeds) this many
    /// times, into OUT/seed-S, and report every row's mean and standard deviation and a paired
    /// comparison of fusion with the best single stream (OUT/seeds.md, seeds.json)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// The first seed (data, backbones and training; default: the config's data seed)
    #[arg(long)]
    seed: Option<u64>,
    /// The demo at a third of its size (80 videos), as the score test runs it
    #[arg(long)]
    small: bool,
    /// Score the validation split only (the test split is not even extracted): the mode for
    /// choosing settings
    #[arg(long)]
    validation_only: bool,
}

struct Demo {
    config: DemoConfig,
    out: PathBuf,
}

impl AutodiffTask for Demo {
    type Output = Result<DemoSummary, Error>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        self.run_on::<B>(&device)
    }
}

impl Demo {
    fn run_on<B: AutodiffBackend>(&self, device: &B::Device) -> Result<DemoSummary, Error> {
        let mut current: Option<(Stage, ProgressBar)> = None;
        let mut started = Instant::now();
        let summary = run_demo::<B>(
            &self.config,
            &self.out,
            device,
            &mut |stage, done, total| {
                if current.as_ref().is_none_or(|(s, _)| *s != stage) {
                    if let Some((previous, bar)) = current.take() {
                        bar.finish_and_clear();
                        tracing::info!("{previous}: {:.1} s", started.elapsed().as_secs_f64());
                    }
                    started = Instant::now();
                    let unit = match stage {
                        Stage::Data | Stage::Detect(_) => "videos",
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
            tracing::info!("{previous}: {:.1} s", started.elapsed().as_secs_f64());
        }
        Ok(summary?)
    }
}

pub fn run(args: DemoArgs) -> Result<(), Error> {
    let Some(mut config) =
        crate::settings::load::<DemoConfig>(args.config.as_deref(), args.print_config)?
    else {
        return Ok(());
    };
    if args.small {
        config.data.videos = DemoConfig::small().data.videos;
    }
    if args.validation_only {
        config.test = false;
    }
    let first = args.seed.unwrap_or(config.data.seed);
    if args.seeds <= 1 {
        tracing::info!(
            "miga demo: {} synthetic videos, both tasks, on {} -> {}",
            config.data.videos,
            args.device,
            args.out.display()
        );
        let config = match args.seed {
            Some(seed) => config.with_seed(seed),
            None => config,
        };
        let summary = args.device.run_autodiff(Demo {
            config,
            out: args.out.clone(),
        })??;
        println!("\n{}", summary.table());
        println!(
            "Done in {:.0} s. Everything is in {}: data/, features/, runs/ (training.svg, \
             eval-validate/ and eval-test/ per model), predictions/, summary.md, summary.json.",
            summary.seconds,
            summary.dir.display()
        );
        return Ok(());
    }
    if !config.test {
        return Err(Error::InvalidArgument(
            "--seeds compares test scores over seeds: leave out --validation-only (and \
             `test = false` in the config)"
                .into(),
        ));
    }
    let last = first.checked_add(args.seeds).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "--seed {first} with --seeds {} runs past the last seed",
            args.seeds
        ))
    })?;
    let mut runs = Vec::new();
    for seed in first..last {
        let out = args.out.join(format!("seed-{seed}"));
        tracing::info!(
            "miga demo, seed {seed} ({} of {}): {} synthetic videos, both tasks, on {} -> {}",
            seed - first + 1,
            args.seeds,
            config.data.videos,
            args.device,
            out.display()
        );
        let summary = args.device.run_autodiff(Demo {
            config: config.with_seed(seed),
            out,
        })??;
        println!("\nseed {seed}:\n{}", summary.table());
        runs.push(summary);
    }
    let study = SeedStudy::new(&runs);
    let table = study.table();
    println!("\n{table}");
    let write = |name: &str, text: &[u8]| {
        miga::datasets::io::write_atomic(&args.out.join(name), text).map_err(Error::from)
    };
    write("seeds.md", table.as_bytes())?;
    let json = serde_json::to_string_pretty(&study)
        .map_err(|e| Error::InvalidArgument(format!("seeds.json: {e}")))?;
    write("seeds.json", json.as_bytes())?;
    println!(
        "Everything is in {}: seed-S/ per seed, seeds.md, seeds.json.",
        args.out.display()
    );
    Ok(())
}
