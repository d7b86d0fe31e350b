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
use miga_backbones::swin::{SwinFace, SwinFaceConfig};
use miga_fusion::{
    Cmtf, CmtfConfig, CmtfInput, InterFusion, InterFusionConfig, InterFusionInput, Sequence,
    SkeletonTokens, VideoTokens,
};
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
    /// Cross-Modal Token Fusion at its default config (32 classes) on MViTv2-S video tokens
    /// (`frames` steps of 7x7x768 plus the class embedding) and 2s-AGCN skeleton tokens
    /// (`2 x frames` steps of 55x256).
    Cmtf,
    /// InterFusion at its default config on `4 x frames` face embeddings (512) and `frames`
    /// context embeddings (768) per video.
    InterFusion,
    /// SwinFace with its 42 face-analysis heads on aligned 112x112 faces (`frames` unused);
    /// training steps train the facial-expression head.
    SwinFace,
}

impl BenchModel {
    /// Every model that can be timed today.
    pub const ALL: [BenchModel; 5] = [
        BenchModel::MvitV2S,
        BenchModel::Agcn,
        BenchModel::SwinFace,
        BenchModel::Cmtf,
        BenchModel::InterFusion,
    ];

    /// Frames per item when none are asked for: 16 per clip, 64 per skeleton sequence, 8 video
    /// token steps for cmtf (a 16-frame clip), 32 context windows for interfusion.
    pub fn default_frames(self) -> usize {
        match self {
            BenchModel::MvitV2S => 16,
            BenchModel::Agcn => 64,
            BenchModel::Cmtf => 8,
            BenchModel::InterFusion => 32,
            BenchModel::SwinFace => 1,
        }
    }
}

impl FromStr for BenchModel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "mvit_v2_s" => Ok(BenchModel::MvitV2S),
            "agcn" => Ok(BenchModel::Agcn),
            "cmtf" => Ok(BenchModel::Cmtf),
            "interfusion" => Ok(BenchModel::InterFusion),
            "swinface" => Ok(BenchModel::SwinFace),
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
            BenchModel::Cmtf => "cmtf",
            BenchModel::InterFusion => "interfusion",
            BenchModel::SwinFace => "swinface",
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
    /// The floating-point type it computed in.
    pub precision: String,
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
        BenchModel::Cmtf => CmtfConfig::new().forward_flops(
            spec.batch,
            [spec.frames, 7, 7],
            [2 * spec.frames, SKELETON_JOINTS],
        ),
        BenchModel::InterFusion => {
            InterFusionConfig::new().forward_flops(spec.batch, 4 * spec.frames, spec.frames)
        }
        BenchModel::SwinFace => SwinFaceConfig::swinface().forward_flops(spec.batch),
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
        precision: device.precision.to_string(),
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

/// Joints of the skeleton tokens fed to cmtf: the `imigue-upper-hands` layout of `agcn`.
const SKELETON_JOINTS: usize = 55;

/// A benchmarked network: its input for a batch, and its class scores.
trait Classifier<B: Backend>: Module<B> {
    /// What a forward pass takes.
    type Input: Clone;
    /// Seeded input of `spec`'s shape.
    fn input(spec: &BenchSpec, device: &B::Device) -> Self::Input;
    /// Class scores.
    fn logits(&self, x: Self::Input) -> Tensor<B, 2>;
    /// Classes of the head.
    fn classes(&self) -> usize;
}

impl<B: Backend> Classifier<B> for Agcn<B> {
    type Input = Tensor<B, 5>;
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
    type Input = Tensor<B, 5>;
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

impl<B: Backend> Classifier<B> for Cmtf<B> {
    type Input = CmtfInput<B>;
    fn input(spec: &BenchSpec, device: &B::Device) -> CmtfInput<B> {
        let (b, t) = (spec.batch, spec.frames);
        CmtfInput {
            video: Some(VideoTokens::new(
                seeded_tensor([b, t, 7, 7, 768], 1, device),
                Some(seeded_tensor([b, 768], 2, device)),
            )),
            skeleton: Some(SkeletonTokens::new(seeded_tensor(
                [b, 2 * t, SKELETON_JOINTS, 256],
                3,
                device,
            ))),
        }
    }
    fn logits(&self, x: CmtfInput<B>) -> Tensor<B, 2> {
        self.forward(x).logits
    }
    fn classes(&self) -> usize {
        self.num_classes()
    }
}

impl<B: Backend> Classifier<B> for InterFusion<B> {
    type Input = InterFusionInput<B>;
    fn input(spec: &BenchSpec, device: &B::Device) -> InterFusionInput<B> {
        let (b, n) = (spec.batch, spec.frames);
        InterFusionInput {
            face: Some(Sequence::new(seeded_tensor([b, 4 * n, 512], 1, device))),
            expressions: None,
            context: Some(Sequence::new(seeded_tensor([b, n, 768], 2, device))),
        }
    }
    fn logits(&self, x: InterFusionInput<B>) -> Tensor<B, 2> {
        self.forward(x).logits
    }
    fn classes(&self) -> usize {
        self.num_classes()
    }
}

impl<B: Backend> Classifier<B> for SwinFace<B> {
    type Input = Tensor<B, 4>;
    fn input(spec: &BenchSpec, device: &B::Device) -> Tensor<B, 4> {
        seeded_tensor([spec.batch, 3, 112, 112], 1, device)
    }
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let out = self.try_forward(x).expect("bench faces are 112x112");
        out.head("Expression")
            .cloned()
            .expect("the bench builds the heads")
    }
    fn classes(&self) -> usize {
        7
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
        // On the CPU pool's threads, as miga's own steps run (`miga_kernels::on_cpu_workers`).
        miga_kernels::on_cpu_workers::<B, _>(|| self.run_forward::<B>(device))
    }
}

impl ModelBench {
    fn run_forward<B: Backend>(self, device: B::Device) -> Timings {
        match self.0.model {
            BenchModel::MvitV2S => {
                self.forward(mvit_config(self.0.frames).init::<B>(&device)?, &device)
            }
            BenchModel::Agcn => self.forward(agcn_config().init::<B>(&device)?, &device),
            BenchModel::Cmtf => self.forward(CmtfConfig::new().init::<B>(&device)?, &device),
            BenchModel::InterFusion => {
                self.forward(InterFusionConfig::new().init::<B>(&device)?, &device)
            }
            BenchModel::SwinFace => {
                self.forward(SwinFaceConfig::swinface().init::<B>(&device)?, &device)
            }
        }
    }
}

impl AutodiffTask for ModelBench {
    type Output = Timings;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Timings {
        miga_kernels::on_cpu_workers::<B, _>(|| self.run_train::<B>(device))
    }
}

impl ModelBench {
    fn run_train<B: AutodiffBackend>(self, device: B::Device) -> Timings {
        match self.0.model {
            BenchModel::MvitV2S => {
                self.train(mvit_config(self.0.frames).init::<B>(&device)?, &device)
            }
            BenchModel::Agcn => self.train(agcn_config().init::<B>(&device)?, &device),
            BenchModel::Cmtf => self.train(CmtfConfig::new().init::<B>(&device)?, &device),
            BenchModel::InterFusion => {
                self.train(InterFusionConfig::new().init::<B>(&device)?, &device)
            }
            BenchModel::SwinFace => {
                self.train(SwinFaceConfig::swinface().init::<B>(&device)?, &device)
            }
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
