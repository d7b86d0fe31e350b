//! Cross-Modal Token Fusion on micro-gesture features, with its input standardisation and loss:
//! the model trained on extracted features.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use miga_fusion::{
    ClassificationLossConfig, Cmtf, CmtfConfig, CmtfInput, SkeletonTokens, VideoTokens,
};

use super::{FeatureBatch, FeatureItem, MICRO_GESTURE, Streams};
use crate::standardise::Standardise;
use crate::training::{Metrics, TaskModel};
use crate::{Error, Result};

/// Training settings of the micro-gesture fusion model (`miga train --print-config` shows the
/// defaults).
pub type TrainConfig = crate::training::TrainConfig<CmtfConfig, Streams>;

impl Default for TrainConfig {
    fn default() -> Self {
        crate::training::TrainConfig::new(Streams::Both, CmtfConfig::new())
    }
}

/// Cross-Modal Token Fusion with its loss, as burn-train trains it.
#[derive(Module, Debug)]
pub struct MicroGestureModel<B: Backend> {
    /// The fusion module.
    pub fusion: Cmtf<B>,
    /// Standardisation of the video tokens and class embedding (training statistics).
    pub video_norm: Standardise<B>,
    /// Standardisation of the skeleton tokens.
    pub skeleton_norm: Standardise<B>,
    #[module(skip)]
    loss: ClassificationLossConfig,
    #[module(skip)]
    streams: Streams,
    /// Whether scored features are centred per video first ([`TrainConfig::transductive_centring`]).
    #[module(skip)]
    pub transductive_centring: bool,
}

impl<B: Backend> MicroGestureModel<B> {
    /// A new model.
    pub fn new(config: &TrainConfig, device: &B::Device) -> Result<Self> {
        let fusion = config
            .fusion
            .init(device)
            .map_err(|e| Error::InvalidConfig {
                path: "fusion".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            fusion,
            video_norm: Standardise::identity(config.fusion.video_dim, device),
            skeleton_norm: Standardise::identity(config.fusion.skeleton_dim, device),
            loss: config.loss.clone(),
            streams: config.streams,
            transductive_centring: config.transductive_centring,
        })
    }

    /// The model with its inputs standardised by the statistics of the training set: the
    /// video tokens and class embeddings of `items`, and `skeleton`, the skeleton tokens of the
    /// same items before any averaging over body parts.
    pub fn standardised<'a>(
        self,
        items: &[FeatureItem],
        skeleton: impl IntoIterator<Item = &'a TensorData>,
        device: &B::Device,
    ) -> Self {
        let video = Standardise::fit(
            items
                .iter()
                .flat_map(|i| [i.video.as_ref(), i.class.as_ref()])
                .flatten(),
            self.video_norm.mean.dims()[0],
            device,
        );
        let skeleton = Standardise::fit(skeleton, self.skeleton_norm.mean.dims()[0], device);
        Self {
            video_norm: video,
            skeleton_norm: skeleton,
            ..self
        }
    }

    /// The streams the model sees.
    pub fn streams(&self) -> Streams {
        self.streams
    }

    /// Class scores `[B, 32]` of a batch.
    pub fn logits(&self, batch: &FeatureBatch<B>) -> Tensor<B, 2> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.fusion.forward(self.input(batch)).logits)
    }

    fn input(&self, batch: &FeatureBatch<B>) -> CmtfInput<B> {
        let video = match (self.streams, &batch.video) {
            (Streams::Skeleton, _) | (_, None) => None,
            (_, Some(video)) => Some(VideoTokens::new(
                self.video_norm.forward(video.clone()),
                batch
                    .class
                    .as_ref()
                    .map(|class| self.video_norm.forward(class.clone())),
            )),
        };
        let wanted = self.streams != Streams::Video;
        let skeleton = batch.skeleton.as_ref().filter(|_| wanted).map(|skeleton| {
            let tokens = self.skeleton_norm.forward(skeleton.clone());
            if batch.skeleton_pooled {
                SkeletonTokens::pooled(tokens)
            } else {
                SkeletonTokens::new(tokens)
            }
        });
        CmtfInput { video, skeleton }
    }

    /// The classification output (loss, scores, labels) of a batch.
    pub(crate) fn classify(&self, batch: FeatureBatch<B>) -> ClassificationOutput<B> {
        let output = self.fusion.forward(self.input(&batch));
        let loss = self
            .loss
            .init::<B>(None, &batch.labels.device())
            .expect("validated when the model was built");
        let value = self.fusion.loss(&output, batch.labels.clone(), &loss);
        ClassificationOutput::new(value, output.logits, batch.labels)
    }
}

impl<B: AutodiffBackend> TrainStep for MicroGestureModel<B> {
    type Input = FeatureBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: FeatureBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        // Forward and backward on one of the CPU pool's threads (one hand-off a step).
        miga_kernels::on_cpu_workers::<B, _>(|| {
            let output = self.classify(batch);
            TrainOutput::new(self, output.loss.backward(), output)
        })
    }
}

impl<B: Backend> InferenceStep for MicroGestureModel<B> {
    type Input = FeatureBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: FeatureBatch<B>) -> ClassificationOutput<B> {
        miga_kernels::on_cpu_workers::<B, _>(|| self.classify(batch))
    }
}

impl<B: Backend> TaskModel for MicroGestureModel<B> {
    const TASK: &'static str = MICRO_GESTURE;
    const METRICS: Metrics = Metrics::Classes;

    fn pytorch_names(&self) -> miga_fusion::PyTorchNames {
        self.fusion.pytorch_names().under("fusion")
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::data::dataloader::batcher::Batcher;

    use super::*;
    use crate::features::FeatureSet;
    use crate::models::micro_gesture::{FeatureBatcher, feature_items};
    use crate::testing::{tiny_config, tiny_features};

    #[test]
    fn a_standardised_model_scores_pooled_and_unpooled_items_alike() {
        // Extraction and initialisation draw from the backend's (global) generator.
        let _rng = crate::rng_lock();
        let (train_dir, _) = tiny_features("pooled");
        let set = FeatureSet::read(&train_dir).unwrap();
        let device = Default::default();
        let config = TrainConfig {
            fusion: tiny_config(1)
                .fusion
                .with_skeleton_parts(vec![vec![0, 1, 2], vec![3, 4]]),
            ..tiny_config(1)
        };
        let items = |fusion: Option<&CmtfConfig>| -> Vec<FeatureItem> {
            feature_items(&set, &train_dir, fusion, Streams::Both)
                .unwrap()
                .into_iter()
                .map(|(_, i)| i)
                .collect()
        };
        let (full, pooled) = (items(None), items(Some(&config.fusion)));
        let model = MicroGestureModel::<Flex>::new(&config, &device)
            .unwrap()
            .standardised(
                &full,
                full.iter().filter_map(|i| i.skeleton.as_ref()),
                &device,
            );
        let scores = |items: Vec<FeatureItem>| model.logits(&FeatureBatcher.batch(items, &device));
        let diff: f32 = (scores(full) - scores(pooled)).abs().max().into_scalar();
        assert!(diff < 1e-4, "{diff}");
    }
}
