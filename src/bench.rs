//! Timing models on any compiled backend, the same way for all of them.
//!
//! Each measurement builds the model on the device, runs `warmup` untimed iterations (kernel
//! autotuning and shader compilation happen there), then times `iters` iterations one by one,
//! synchronising the device before reading the clock, and reports the median and spread.
//! The JSON schema is shared with `scripts/bench_pytorch.py` so that the two can be joined.
//!
//! ```
//! use miga::bench::{BenchMode, BenchModel, BenchSpec, run};
//! use miga::device::DeviceSpec;
//!
//! let spec = BenchSpec { model: BenchModel::Agcn, mode: BenchMode::Forward, batch: 1, frames: 8, warmup: 1, iters: 2 };
//! let result = run(&spec, DeviceSpec::CPU)?;
//! assert_eq!(result.backend, "flex");
//! assert!(result.median_ms > 0.0);
//! # Ok::<(), miga::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use miga_backbones::agcn::{Agcn, AgcnConfig, Graph};
use miga_backbones::mvit::{Mvit, MvitConfig};
use serde::Serialize;

use crate::Error;
use crate::agreement::{seed_params, seeded_tensor};
use crate::device::{AutodiffTask, BackendTask, DeviceSpec};

/// The models `miga bench` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchModel {
    /// MViTv2-S (torchvision's `mvit_v2_s`), 224x224 clips, 400 classes.
    MvitV2S,
    /// 2s-AGCN, one stream, reference widths, on the `imigue-upper-hands` layout (V = 55, M = 1).
    Agcn,
}

impl BenchModel {
    /// Every model that can be timed today.
    pub const ALL: [BenchModel; 2] = [BenchModel::MvitV2S, BenchModel::Agcn];

    /// Frames per item when none are asked for: 16 per clip, 64 per skeleton sequence.
    pub fn default_frames(self) -> usize {
        match self {
            BenchModel::MvitV2S => 16,
            BenchModel::Agcn => 64,
        }
    }
}

impl FromStr for BenchModel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "mvit_v2_s" => Ok(BenchModel::MvitV2S),
            "agcn" => Ok(BenchModel::Agcn),
            "swinface" | "cmtf" | "interfusion" => Err(Error::NotYetAvailable {
                command: "bench",
                version: crate::VERSION,
                plan: "this build benchmarks mvit_v2_s and agcn; the other models arrive with their issues",
            }),
            other => Err(Error::InvalidArgument(format!(
                "unknown model `{other}`; expected mvit_v2_s, agcn, swinface, cmtf, interfusion or all"
            ))),
        }
    }
}

impl fmt::Display for BenchModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BenchModel::MvitV2S => "mvit_v2_s",
            BenchModel::Agcn => "agcn",
        })
    }
}

/// What one iteration does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchMode {
    /// Inference: a forward pass (no autodiff).
    Forward,
    /// A training step: forward, cross-entropy, backward, SGD update.
    Train,
}

impl FromStr for BenchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "forward" => Ok(BenchMode::Forward),
            "train" => Ok(BenchMode::Train),
            other => Err(Error::InvalidArgument(format!(
                "unknown mode `{other}`; expected forward or train"
            ))),
        }
    }
}

impl fmt::Display for BenchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BenchMode::Forward => "forward",
            BenchMode::Train => "train",
        })
    }
}

/// One measurement to make.
#[derive(Clone, Debug)]
pub struct BenchSpec {
    /// The model.
    pub model: BenchModel,
    /// Forward or training step.
    pub mode: BenchMode,
    /// Items per iteration.
    pub batch: usize,
    /// Frames per item (T).
    pub frames: usize,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Timed iterations.
    pub iters: usize,
}

/// One measurement, in the JSON schema shared with `scripts/bench_pytorch.py`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// Model name.
    pub model: String,
    /// `miga` for this library.
    pub framework: String,
    /// Backend name (`flex`, `cubecl<wgpu<...>>`, ...).
    pub backend: String,
    /// The device as given on the command line.
    pub device: String,
    /// `forward` or `train`.
    pub mode: String,
    /// Items per iteration.
    pub batch: usize,
    /// Frames per item.
    pub frames: usize,
    /// CPU threads available to the backend (rayon's pool).
    pub threads: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Median time per iteration, milliseconds.
    pub median_ms: f64,
    /// Fastest iteration, milliseconds.
    pub min_ms: f64,
    /// Slowest iteration, milliseconds.
    pub max_ms: f64,
    /// Items per second at the median.
    pub items_per_s: f64,
    /// Floating-point operations per iteration (a training step counts 3x the forward).
    pub gflop_per_iter: f64,
    /// Achieved GFLOP/s at the median.
    pub gflop_per_s: f64,
    /// Peak resident memory of the whole process so far, MiB (Linux; CPU memory only).
    pub peak_rss_mib: Option<f64>,
}

/// Runs `spec` on `device`.
pub fn run(spec: &BenchSpec, device: DeviceSpec) -> Result<BenchResult, Error> {
    if spec.batch == 0 || spec.frames == 0 || spec.iters == 0 {
        return Err(Error::InvalidArgument(
            "batch, frames and iters must be at least 1".into(),
        ));
    }
    let (backend, times) = match spec.mode {
        BenchMode::Forward => device.run(ModelBench(spec.clone()))??,
        BenchMode::Train => device.run_autodiff(ModelBench(spec.clone()))??,
    };
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ms = sorted[sorted.len() / 2];
    let forward = match spec.model {
        BenchModel::MvitV2S => mvit_config(spec.frames).forward_flops(spec.batch),
        BenchModel::Agcn => agcn_config().forward_flops(spec.batch, spec.frames),
    } as f64;
    let flops = match spec.mode {
        BenchMode::Forward => forward,
        BenchMode::Train => 3.0 * forward,
    };
    Ok(BenchResult {
        model: spec.model.to_string(),
        framework: "miga".into(),
        backend,
        device: device.to_string(),
        mode: spec.mode.to_string(),
        batch: spec.batch,
        frames: spec.frames,
        threads: rayon::current_num_threads(),
        iters: spec.iters,
        median_ms,
        min_ms: sorted[0],
        max_ms: sorted[sorted.len() - 1],
        items_per_s: spec.batch as f64 / (median_ms / 1e3),
        gflop_per_iter: flops / 1e9,
        gflop_per_s: flops / 1e9 / (median_ms / 1e3),
        peak_rss_mib: peak_rss_mib(),
    })
}

fn agcn_config() -> AgcnConfig {
    AgcnConfig::new(Graph::imigue_upper_hands(), 32).with_num_persons(1)
}

fn mvit_config(frames: usize) -> MvitConfig {
    MvitConfig::mvit_v2_s(400).with_temporal_size(frames)
}

/// Backend name and milliseconds per timed iteration.
type Timings = Result<(String, Vec<f64>), Error>;

/// A benchmarked network: its input for a batch, and its class scores.
trait Classifier<B: Backend>: Module<B> {
    /// Seeded input of `spec`'s shape.
    fn input(spec: &BenchSpec, device: &B::Device) -> Tensor<B, 5>;
    /// Class scores.
    fn logits(&self, x: Tensor<B, 5>) -> Tensor<B, 2>;
    /// Classes of the head.
    fn classes(&self) -> usize;
}

impl<B: Backend> Classifier<B> for Agcn<B> {
    fn input(spec: &BenchSpec, device: &B::Device) -> Tensor<B, 5> {
        let v = agcn_config().graph.num_nodes();
        seeded_tensor([spec.batch, 3, spec.frames, v, 1], 1, device)
    }
    fn logits(&self, x: Tensor<B, 5>) -> Tensor<B, 2> {
        self.forward(x).logits
    }
    fn classes(&self) -> usize {
        self.num_classes()
    }
}

impl<B: Backend> Classifier<B> for Mvit<B> {
    fn input(spec: &BenchSpec, device: &B::Device) -> Tensor<B, 5> {
        seeded_tensor([spec.batch, 3, spec.frames, 224, 224], 1, device)
    }
    fn logits(&self, x: Tensor<B, 5>) -> Tensor<B, 2> {
        self.forward(x).logits
    }
    fn classes(&self) -> usize {
        self.num_classes()
    }
}

/// Times `spec` on one backend, for whichever model it names.
struct ModelBench(BenchSpec);

impl ModelBench {
    fn time(
        &self,
        device_sync: impl Fn() -> Result<(), Error>,
        mut step: impl FnMut(),
    ) -> Result<Vec<f64>, Error> {
        for _ in 0..self.0.warmup {
            step();
        }
        device_sync()?;
        let mut times = Vec::with_capacity(self.0.iters);
        for _ in 0..self.0.iters {
            let start = Instant::now();
            step();
            device_sync()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(times)
    }

    fn forward<B: Backend, M: Classifier<B>>(&self, model: M, device: &B::Device) -> Timings {
        let model = seed_params(model, 7);
        let x = M::input(&self.0, device);
        let times = self.time(
            || sync::<B>(device),
            || {
                // Reading the scores back makes lazy (fusing) backends run the whole graph.
                let _ = model.logits(x.clone()).into_data();
            },
        )?;
        Ok((B::name(device), times))
    }

    fn train<B: AutodiffBackend, M: Classifier<B> + AutodiffModule<B>>(
        &self,
        model: M,
        device: &B::Device,
    ) -> Timings {
        let classes = model.classes() as i64;
        let mut model = Some(seed_params(model, 7));
        let mut optimizer = SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_nesterov(true)
                    .with_dampening(0.0),
            ))
            .init::<B, M>();
        let loss_fn = CrossEntropyLossConfig::new().init(device);
        let x = M::input(&self.0, device);
        let labels: Vec<i64> = (0..self.0.batch as i64).map(|i| i % classes).collect();
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [self.0.batch]), device);
        let times = self.time(
            || sync::<B>(device),
            || {
                let m = model.take().expect("the model is put back after each step");
                let loss = loss_fn.forward(m.logits(x.clone()), y.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                model = Some(optimizer.step(0.01, m, grads));
            },
        )?;
        Ok((B::name(device), times))
    }
}

fn sync<B: Backend>(device: &B::Device) -> Result<(), Error> {
    B::sync(device).map_err(|e| Error::DeviceUnavailable {
        device: B::name(device),
        reason: e.to_string(),
    })
}

impl BackendTask for ModelBench {
    type Output = Timings;
    fn run<B: Backend>(self, device: B::Device) -> Timings {
        match self.0.model {
            BenchModel::MvitV2S => {
                self.forward(mvit_config(self.0.frames).init::<B>(&device)?, &device)
            }
            BenchModel::Agcn => self.forward(agcn_config().init::<B>(&device)?, &device),
        }
    }
}

impl AutodiffTask for ModelBench {
    type Output = Timings;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Timings {
        match self.0.model {
            BenchModel::MvitV2S => {
                self.train(mvit_config(self.0.frames).init::<B>(&device)?, &device)
            }
            BenchModel::Agcn => self.train(agcn_config().init::<B>(&device)?, &device),
        }
    }
}

/// Peak resident set size of this process (VmHWM), on Linux.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
