//! `miga export`: a trained run as safetensors and JSON that other tools open.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use clap::Args;
use miga::Error;
use miga::device::{BackendTask, DeviceSpec};
use miga::tasks::export::{ExportConfig, export_run};

#[derive(Args)]
pub struct ExportArgs {
    /// The run folder (written by `miga train`)
    #[arg(long)]
    run: PathBuf,
    /// The folder to write `model.safetensors` and `config.json` into
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<(), Error> {
    struct Export(ExportArgs);
    impl BackendTask for Export {
        type Output = Result<ExportConfig, miga::tasks::Error>;
        fn run<B: Backend>(self, device: B::Device) -> Self::Output {
            export_run::<B>(&self.0.run, &self.0.out, &device)
        }
    }
    let out = args.out.clone();
    let config = DeviceSpec::CPU.run(Export(args))??;
    let values: usize = config
        .tensors
        .iter()
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum();
    println!(
        "exported a {} run: {} tensors ({values} values) to {}",
        config.task,
        config.tensors.len(),
        out.join("model.safetensors").display()
    );
    Ok(())
}
