//! Classification loss for the long tail: cross-entropy with label smoothing, optional
//! class-balanced weights and optional focal modulation.

use burn::config::Config;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// Configuration of [`ClassificationLoss`].
#[derive(Config, Debug)]
pub struct ClassificationLossConfig {
    /// Label smoothing `e`: the target is `(1 - e)` on the class and `e / K` spread over all.
    #[config(default = 0.1)]
    pub label_smoothing: f64,
    /// Focal loss exponent `g`: each sample's loss is scaled by `(1 - p_y)^g`; 0 is plain
    /// cross-entropy.
    #[config(default = 0.0)]
    pub focal_gamma: f64,
    /// Class-balanced weighting (Cui et al., 2019) with this `beta`: class `c` with `n_c`
    /// training samples weighs `(1 - beta) / (1 - beta^n_c)`, normalised to mean 1. Needs the
    /// class counts of the training split. `None`: every class weighs 1.
    #[config(default = "None")]
    pub class_balance_beta: Option<f64>,
}

/// The loss; see [`ClassificationLossConfig`].
#[derive(Debug, Clone)]
pub struct ClassificationLoss<B: Backend> {
    smoothing: f64,
    gamma: f64,
    class_weights: Option<Tensor<B, 1>>,
}

impl ClassificationLossConfig {
    /// Builds the loss; `class_counts` (samples per class in the training split) are needed
    /// for class-balanced weighting and ignored otherwise.
    pub fn init<B: Backend>(
        &self,
        class_counts: Option<&[usize]>,
        device: &B::Device,
    ) -> crate::Result<ClassificationLoss<B>> {
        let invalid = |reason: String| crate::Error::InvalidConfig {
            module: "loss",
            reason,
        };
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(invalid(format!(
                "label_smoothing {} is outside [0, 1)",
                self.label_smoothing
            )));
        }
        if self.focal_gamma.is_nan() || self.focal_gamma < 0.0 {
            return Err(invalid(format!(
                "focal_gamma {} is negative",
                self.focal_gamma
            )));
        }
        let class_weights = match self.class_balance_beta {
            None => None,
            Some(beta) => {
                if !(0.0..1.0).contains(&beta) {
                    return Err(invalid(format!(
                        "class_balance_beta {beta} is outside [0, 1)"
                    )));
                }
                let counts = class_counts.filter(|c| !c.is_empty()).ok_or_else(|| {
                    invalid(
                        "class-balanced weighting needs the training split's class counts".into(),
                    )
                })?;
                let raw: Vec<f64> = counts
                    .iter()
                    .map(|&n| (1.0 - beta) / (1.0 - beta.powi(n.max(1) as i32)))
                    .collect();
                let mean = raw.iter().sum::<f64>() / raw.len() as f64;
                let weights: Vec<f32> = raw.iter().map(|w| (w / mean) as f32).collect();
                Some(Tensor::from_data(
                    TensorData::new(weights, [counts.len()]),
                    device,
                ))
            }
        };
        Ok(ClassificationLoss {
            smoothing: self.label_smoothing,
            gamma: self.focal_gamma,
            class_weights,
        })
    }
}

impl<B: Backend> ClassificationLoss<B> {
    /// The class weights, when class-balanced.
    pub fn class_weights(&self) -> Option<&Tensor<B, 1>> {
        self.class_weights.as_ref()
    }

    /// Mean loss of `logits` `[B, K]` against `targets` `[B]` (class indices), weighted per
    /// sample by the class weight and by `sample_weights` `[B]` when given (0 leaves a sample
    /// out: an auxiliary head on a missing modality). A batch whose weights are all 0 has loss 0.
    pub fn forward(
        &self,
        logits: Tensor<B, 2>,
        targets: Tensor<B, 1, Int>,
        sample_weights: Option<Tensor<B, 1>>,
    ) -> Tensor<B, 1> {
        let [b, _] = logits.dims();
        let log_p = log_softmax(logits, 1);
        let log_p_target = log_p
            .clone()
            .gather(1, targets.clone().reshape([b, 1]))
            .reshape([b]);
        let mut loss = log_p_target.clone() * -(1.0 - self.smoothing)
            - log_p.mean_dim(1).reshape([b]) * self.smoothing;
        if self.gamma > 0.0 {
            loss = loss
                * (-log_p_target.exp() + 1.0)
                    .clamp_min(0.0)
                    .powf_scalar(self.gamma);
        }
        let mut weight = match &self.class_weights {
            Some(w) => w.clone().select(0, targets),
            None => Tensor::ones([b], &loss.device()),
        };
        if let Some(s) = sample_weights {
            weight = weight * s;
        }
        (loss * weight.clone()).sum() / weight.sum().clamp_min(1e-12)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::nn::loss::CrossEntropyLossConfig;

    use super::*;

    type B = Flex;

    fn batch() -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
        let device = Default::default();
        (
            Tensor::from_data(
                [[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]],
                &device,
            ),
            Tensor::from_data([0, 1, 2], &device),
        )
    }

    fn close(a: Tensor<B, 1>, b: Tensor<B, 1>) {
        let (a, b): (f32, f32) = (a.into_scalar(), b.into_scalar());
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    #[test]
    fn matches_burn_cross_entropy_with_smoothing() {
        let device = Default::default();
        let (logits, targets) = batch();
        let ours = ClassificationLossConfig::new()
            .init::<B>(None, &device)
            .unwrap()
            .forward(logits.clone(), targets.clone(), None);
        let burn = CrossEntropyLossConfig::new()
            .with_smoothing(Some(0.1))
            .init(&device)
            .forward(logits, targets);
        close(ours, burn);
    }

    #[test]
    fn zero_sample_weights_leave_samples_out() {
        let device = Default::default();
        let (logits, targets) = batch();
        let loss = ClassificationLossConfig::new()
            .with_label_smoothing(0.0)
            .init::<B>(None, &device)
            .unwrap();
        let only_first = loss.forward(
            logits.clone(),
            targets.clone(),
            Some(Tensor::from_data([1.0, 0.0, 0.0], &device)),
        );
        close(
            only_first,
            loss.forward(
                logits.narrow(0, 0, 1),
                targets.clone().narrow(0, 0, 1),
                None,
            ),
        );
        let none = loss.forward(batch().0, targets, Some(Tensor::zeros([3], &device)));
        close(none, Tensor::zeros([1], &device));
    }

    #[test]
    fn focal_and_class_balance_reweight() {
        let device = Default::default();
        let (logits, targets) = batch();
        let plain = ClassificationLossConfig::new().with_label_smoothing(0.0);
        let ce: f32 = plain
            .init::<B>(None, &device)
            .unwrap()
            .forward(logits.clone(), targets.clone(), None)
            .into_scalar();
        let focal: f32 = plain
            .clone()
            .with_focal_gamma(2.0)
            .init::<B>(None, &device)
            .unwrap()
            .forward(logits.clone(), targets.clone(), None)
            .into_scalar();
        assert!(focal < ce, "focal {focal} vs {ce}");
        let balanced = plain
            .with_class_balance_beta(Some(0.99))
            .init::<B>(Some(&[1000, 10, 1]), &device)
            .unwrap();
        let w: Vec<f32> = balanced
            .class_weights()
            .unwrap()
            .clone()
            .into_data()
            .to_vec()
            .unwrap();
        assert!(w[0] < w[1] && w[1] < w[2], "{w:?}");
        assert!(((w.iter().sum::<f32>() / 3.0) - 1.0).abs() < 1e-5);
        assert!(
            ClassificationLossConfig::new()
                .with_class_balance_beta(Some(0.9))
                .init::<B>(None, &device)
                .is_err()
        );
    }
}
