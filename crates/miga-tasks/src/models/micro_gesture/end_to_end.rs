//! The backbones and the fusion model as one network, trained from raw clips.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{ClassificationOutput, InferenceStep, Interrupter, TrainOutput, TrainStep};
use miga_datasets::clips::{ClipBatch, Modalities};

use super::{Backbones, FeatureBatch, MicroGestureModel};
use crate::training::{Metrics, TaskModel};

/// Task name of end-to-end micro-gesture runs.
pub const MICRO_GESTURE_END_TO_END: &str = "micro-gesture-end-to-end";

/// The backbones and the fusion module, trained as one model.
#[derive(Module, Debug)]
pub struct EndToEndModel<B: Backend> {
    /// MViTv2 and 2s-AGCN.
    pub backbones: Backbones<B>,
    /// The fusion module with its loss (inputs not standardised: the backbones adapt).
    pub head: MicroGestureModel<B>,
    #[module(skip)]
    video_grid: usize,
    #[module(skip)]
    stop: StopOnFailure,
}

/// Ends a run whose clips, all readable when it started, stop decoding (a file changed or
/// damaged meanwhile): the first failure is the message of burn-train's interrupter, which
/// ends the epoch unsaved, and the run's error.
#[derive(Clone)]
struct StopOnFailure(Interrupter);

impl core::fmt::Debug for StopOnFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("StopOnFailure")
    }
}

impl<B: Backend> EndToEndModel<B> {
    /// The backbones and the fusion model as one network; `video_grid` as the backbones'
    /// settings pool the video tokens. A clip that stops decoding during training stops the run
    /// through `interrupter` (burn-train's).
    pub fn new(
        backbones: Backbones<B>,
        head: MicroGestureModel<B>,
        video_grid: usize,
        interrupter: Interrupter,
    ) -> Self {
        Self {
            backbones,
            head,
            video_grid,
            stop: StopOnFailure(interrupter),
        }
    }

    /// Class scores and labels of a batch of clips, as a classification output. A batch with a
    /// clip that did not decode stops the run and gives a zero loss with no gradient.
    fn classify(&self, batch: ClipBatch<B>) -> ClassificationOutput<B> {
        let needs = self.head.streams().modalities();
        let complete = (needs == Modalities::Skeleton || batch.rgb.is_some())
            && (needs == Modalities::Rgb || batch.skeleton.is_some());
        let (Some(labels), true, true) = (batch.labels, batch.skipped.is_empty(), complete) else {
            let (id, why) = batch.skipped.first().cloned().unwrap_or_default();
            if !self.stop.0.should_stop() {
                self.stop
                    .0
                    .stop(Some(&format!("clip {id} no longer reads ({why})")));
            }
            let device = self.head.fusion.head.weight.device();
            // A leaf of its own, so that the training step's backward pass has a graph.
            return ClassificationOutput::new(
                Tensor::zeros([1], &device).require_grad(),
                Tensor::zeros([1, self.head.fusion.num_classes()], &device),
                Tensor::zeros([1], &device),
            );
        };
        let features = self
            .backbones
            .features(batch.rgb, batch.skeleton, self.video_grid)
            .expect("clip shapes follow the extraction settings");
        self.head.classify(FeatureBatch {
            video: features.video,
            class: features.class,
            skeleton: features.skeleton,
            skeleton_pooled: false,
            labels,
        })
    }
}

impl<B: AutodiffBackend> TrainStep for EndToEndModel<B> {
    type Input = ClipBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: ClipBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        // Forward and backward on one of the CPU pool's threads (one hand-off a step).
        miga_kernels::on_cpu_workers::<B, _>(|| {
            let output = self.classify(batch);
            TrainOutput::new(self, output.loss.backward(), output)
        })
    }
}

impl<B: Backend> InferenceStep for EndToEndModel<B> {
    type Input = ClipBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: ClipBatch<B>) -> ClassificationOutput<B> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.classify(batch))
    }
}

impl<B: Backend> TaskModel for EndToEndModel<B> {
    const TASK: &'static str = MICRO_GESTURE_END_TO_END;
    const METRICS: Metrics = Metrics::Classes;

    fn pytorch_names(&self) -> miga_fusion::PyTorchNames {
        self.head.pytorch_names().under("head")
    }
}
