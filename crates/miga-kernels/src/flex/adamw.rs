//! AdamW's update of one parameter tensor and its moments, in one pass.

use super::*;

/// [`crate::adamw_update`] on Flex: `[param, moment_1, moment_2]` after one step, in place
/// where the buffers are not shared, in parallel chunks.
pub(crate) fn adamw_update(
    param: FlexTensor,
    grad: FlexTensor,
    moment_1: FlexTensor,
    moment_2: FlexTensor,
    update: &crate::AdamWUpdate,
) -> [FlexTensor; 3] {
    // The constants as Burn's AdamW forms them (scalars in the tensors' f32).
    let (b1, b2, eps) = (update.beta_1, update.beta_2, update.epsilon);
    let (f1, f2) = (1.0 - b1, 1.0 - b2);
    let time = update.time as i32;
    let (c1, c2) = (1.0 - b1.powi(time), 1.0 - b2.powi(time));
    // Without decay `keep` is 1 and the product exact, as Burn's copy of the parameter.
    let keep = (1.0 - update.lr * f64::from(update.weight_decay)) as f32;
    let lr = update.lr as f32;
    let grad = grad.to_contiguous();
    let (mut param, mut m, mut v) = (
        into_owned(param),
        into_owned(moment_1),
        into_owned(moment_2),
    );
    param
        .storage_mut::<f32>()
        .par_chunks_mut(CHUNK)
        .zip(grad.storage::<f32>().par_chunks(CHUNK))
        .zip(m.storage_mut::<f32>().par_chunks_mut(CHUNK))
        .zip(v.storage_mut::<f32>().par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            adamw_slice(p, g, m, v, [b1, b2, f1, f2, c1, c2, eps, keep, lr])
        });
    [param, m, v]
}
