//! Multi-head attention with key-padding masks that returns its attention weights on request.

use burn::config::Config;
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};
use miga_kernels::nn::Linear;
use miga_kernels::{masked_softmax_last, matmul, softmax_last, swap_heads};

/// Configuration of [`MaskedAttention`].
#[derive(Config, Debug)]
pub struct MaskedAttentionConfig {
    /// Token width.
    pub d_model: usize,
    /// Attention heads; `d_model` must be a multiple of it.
    pub heads: usize,
}

/// Scaled dot-product multi-head attention (queries from one sequence, keys and values from
/// another or the same) with a key-padding mask.
///
/// A query whose keys are all padding gets a zero output (the output projection's bias
/// included): that is how a missing modality leaves the other one unchanged in
/// cross-attention.
#[derive(Module, Debug)]
pub struct MaskedAttention<B: Backend> {
    /// Query projection.
    pub query: Linear<B>,
    /// Key projection.
    pub key: Linear<B>,
    /// Value projection.
    pub value: Linear<B>,
    /// Output projection.
    pub output: Linear<B>,
    heads: usize,
}

impl MaskedAttentionConfig {
    /// Builds the attention; panics if `d_model` is not a multiple of `heads` (the fusion
    /// configs check this first and return an error).
    pub fn init<B: Backend>(&self, device: &B::Device) -> MaskedAttention<B> {
        assert!(
            self.heads > 0 && self.d_model.is_multiple_of(self.heads),
            "d_model {} is not a multiple of {} heads",
            self.d_model,
            self.heads
        );
        let layer = || {
            LinearConfig::new(self.d_model, self.d_model)
                .init(device)
                .into()
        };
        MaskedAttention {
            query: layer(),
            key: layer(),
            value: layer(),
            output: layer(),
            heads: self.heads,
        }
    }
}

impl<B: Backend> MaskedAttention<B> {
    /// Attends from `query` `[B, Nq, D]` to `context` `[B, Nk, D]`; `padding` `[B, Nk]` is true
    /// on keys to ignore. Returns the output `[B, Nq, D]` and, when `weights` is set, the
    /// attention weights `[B, heads, Nq, Nk]` (rows sum to 1, or to 0 with no valid key).
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        context: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
        weights: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let [b, nq, d] = query.dims();
        let nk = context.dims()[1];
        let (h, dh) = (self.heads, d / self.heads);
        let split = |x: Tensor<B, 3>, n: usize| swap_heads(x.reshape([b, n, h, dh]));
        let q = split(self.query.forward(query), nq);
        let k = split(self.key.forward(context.clone()), nk);
        let v = split(self.value.forward(context), nk);
        let scores = matmul(q, k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt());
        let (probs, any_key) = match padding {
            Some(padding) => {
                let any_key = padding
                    .clone()
                    .bool_not()
                    .any_dim(1)
                    .float()
                    .reshape([b, 1, 1]);
                (
                    masked_softmax_last(scores, padding.bool_not().float()),
                    Some(any_key),
                )
            }
            None => (softmax_last(scores), None),
        };
        let out = swap_heads(matmul(probs.clone(), v)).reshape([b, nq, d]);
        let out = self.output.forward(out);
        let out = match any_key {
            Some(any_key) => out * any_key,
            None => out,
        };
        (out, weights.then_some(probs))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, TensorData};

    use super::*;

    type B = Flex;

    #[test]
    fn padded_keys_get_no_weight_and_all_padded_rows_are_zero() {
        let device = Default::default();
        let attention = MaskedAttentionConfig::new(8, 2).init::<B>(&device);
        let q = Tensor::<B, 3>::random([2, 3, 8], Distribution::Default, &device);
        let kv = Tensor::<B, 3>::random([2, 4, 8], Distribution::Default, &device);
        let padding = Tensor::<B, 2, Bool>::from_data(
            TensorData::from([[false, false, true, true], [true, true, true, true]]),
            &device,
        );
        let (out, w) = attention.forward(q, kv, Some(padding), true);
        let w = w.unwrap();
        let first: Vec<f32> = w
            .clone()
            .narrow(0, 0, 1)
            .sum_dim(3)
            .into_data()
            .to_vec()
            .unwrap();
        assert!(first.iter().all(|s| (s - 1.0).abs() < 1e-5), "{first:?}");
        let padded: f32 = w.narrow(0, 0, 1).narrow(3, 2, 2).abs().sum().into_scalar();
        assert_eq!(padded, 0.0);
        // The second sample has no valid key: its output is zero.
        let none: f32 = out.narrow(0, 1, 1).abs().max().into_scalar();
        assert_eq!(none, 0.0);
    }
}
