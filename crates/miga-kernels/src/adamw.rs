//! AdamW's update of a parameter in one pass.

use super::*;

/// One AdamW update's settings (Burn's `AdamW`, without AMSGrad or cautious decay).
#[derive(Debug, Clone, Copy)]
pub struct AdamWUpdate {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
    /// Decoupled weight decay (times the learning rate).
    pub weight_decay: f32,
    /// Steps taken, this one included (bias correction).
    pub time: usize,
}

/// Burn's AdamW update of `param` from `grad` and the moments of the steps before, in one pass
/// over the four tensors on Flex (Burn's `AdamW` makes 13 tensors a parameter, each a pass):
/// `[param, moment_1, moment_2]` after the step, equal to Burn's to float rounding. On other
/// backends the inputs come back untouched, for Burn's own `AdamW`.
#[allow(clippy::type_complexity)]
#[cfg_attr(not(feature = "flex"), allow(unused_variables))]
pub fn adamw_update<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moment_1: Tensor<B, D>,
    moment_2: Tensor<B, D>,
    update: &AdamWUpdate,
) -> Result<[Tensor<B, D>; 3], [Tensor<B, D>; 4]> {
    #[cfg(feature = "flex")]
    if [&param, &grad, &moment_1, &moment_2]
        .iter()
        .all(|x| primitive::is_f32::<burn_flex::FlexTensor, B, D>(x))
        && grad.dims() == param.dims()
        && moment_1.dims() == param.dims()
        && moment_2.dims() == param.dims()
    {
        let [p, g, m, v] =
            [param, grad, moment_1, moment_2].map(primitive::unwrap::<burn_flex::FlexTensor, B, D>);
        return Ok(flex::adamw_update(p, g, m, v, update).map(primitive::wrap));
    }
    Err([param, grad, moment_1, moment_2])
}
