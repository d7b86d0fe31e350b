//! InterFusion on emotion features, with its input standardisation and loss.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use miga_fusion::{
    ClassificationLossConfig, InterFusion, InterFusionConfig, InterFusionInput, InterFusionVariant,
    Sequence,
};

use super::{EMOTION, EmotionFeatureBatch, EmotionFeatures, EmotionStreams};
use crate::standardise::Standardise;
use crate::training::{Metrics, TaskModel, TrainConfig};
use crate::{Error, Result};

/// Emotion training settings (`miga train --task emotion --print-config` shows the defaults;
/// the fusion variant follows `streams`).
pub type EmotionTrainConfig = TrainConfig<InterFusionConfig, EmotionStreams>;

impl Default for EmotionTrainConfig {
    fn default() -> Self {
        // Fewer, smaller batches (one item is a whole video) for longer, at half the rate.
        Self {
            epochs: 40,
            batch: 8,
            learning_rate: 5e-4,
            ..TrainConfig::new(EmotionStreams::Both, InterFusionConfig::new())
        }
    }
}

/// InterFusion with its loss, as burn-train trains it.
#[derive(Module, Debug)]
pub struct EmotionModel<B: Backend> {
    /// The fusion module.
    pub fusion: InterFusion<B>,
    /// Standardisation of the face embeddings (training statistics).
    pub face_norm: Standardise<B>,
    /// Standardisation of the context embeddings.
    pub context_norm: Standardise<B>,
    #[module(skip)]
    loss: ClassificationLossConfig,
    #[module(skip)]
    expressions: bool,
}

impl<B: Backend> EmotionModel<B> {
    /// A new model; `fusion.variant` must be left `Full` (`streams` chooses it).
    pub fn new(config: &EmotionTrainConfig, device: &B::Device) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidConfig {
            path: "fusion".into(),
            reason,
        };
        if config.fusion.variant != InterFusionVariant::Full {
            return Err(invalid(
                "set `streams` (both, face, context, late), not fusion.variant".into(),
            ));
        }
        let fusion = config
            .fusion
            .clone()
            .with_variant(config.streams.variant())
            .init(device)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            fusion,
            face_norm: Standardise::identity(config.fusion.face_dim, device),
            context_norm: Standardise::identity(config.fusion.context_dim, device),
            loss: config.loss.clone(),
            expressions: config.fusion.expression_classes > 0,
        })
    }

    /// The model with its inputs standardised by the statistics of `items` (the training set).
    pub fn standardised(self, items: &[EmotionFeatures], device: &B::Device) -> Self {
        Self {
            face_norm: Standardise::fit(
                items.iter().filter_map(|i| i.face.as_ref()),
                self.face_norm.mean.dims()[0],
                device,
            ),
            context_norm: Standardise::fit(
                items.iter().filter_map(|i| i.context.as_ref()),
                self.context_norm.mean.dims()[0],
                device,
            ),
            ..self
        }
    }

    /// Win/Lose scores `[B, 2]` of a batch.
    pub fn logits(&self, batch: &EmotionFeatureBatch<B>) -> Tensor<B, 2> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.fusion.forward(self.input(batch)).logits)
    }

    fn input(&self, batch: &EmotionFeatureBatch<B>) -> InterFusionInput<B> {
        let standardise = |sequence: &Sequence<B>, norm: &Standardise<B>| Sequence {
            tokens: norm.forward(sequence.tokens.clone()),
            padding: sequence.padding.clone(),
        };
        InterFusionInput {
            face: batch.face.as_ref().map(|f| standardise(f, &self.face_norm)),
            expressions: batch.expressions.clone().filter(|_| self.expressions),
            context: batch
                .context
                .as_ref()
                .map(|c| standardise(c, &self.context_norm)),
        }
    }

    fn classify(&self, batch: EmotionFeatureBatch<B>) -> ClassificationOutput<B> {
        let logits = self.logits(&batch);
        let loss = self
            .loss
            .init::<B>(None, &batch.labels.device())
            .expect("validated when the model was built");
        let value = loss.forward(logits.clone(), batch.labels.clone(), None);
        ClassificationOutput::new(value, logits, batch.labels)
    }
}

impl<B: AutodiffBackend> TrainStep for EmotionModel<B> {
    type Input = EmotionFeatureBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: EmotionFeatureBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        // Forward and backward on one of the CPU pool's threads (one hand-off a step).
        miga_kernels::on_cpu_workers::<B, _>(|| {
            let output = self.classify(batch);
            TrainOutput::new(self, output.loss.backward(), output)
        })
    }
}

impl<B: Backend> InferenceStep for EmotionModel<B> {
    type Input = EmotionFeatureBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: EmotionFeatureBatch<B>) -> ClassificationOutput<B> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.classify(batch))
    }
}

impl<B: Backend> TaskModel for EmotionModel<B> {
    const TASK: &'static str = EMOTION;
    const METRICS: Metrics = Metrics::Binary;

    fn pytorch_names(&self) -> miga_fusion::PyTorchNames {
        self.fusion.pytorch_names().under("fusion")
    }
}
