//! The shared clock: a sinusoidal code of each token's normalised time in its sequence.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

/// Sinusoidal code `[B, N, d]` of normalised time for tokens `[B, N]` with `padding`.
///
/// The k-th valid token of a sequence with `n` valid tokens sits at `t = (k + 0.5) / n`, the
/// centre of its share of the clip, so tokens from two streams with different lengths but the
/// same instant get the same code. The code is `sin(scale * t * w_i), cos(scale * t * w_i)`
/// with `w_i = 10000^(-2i/d)`: the standard transformer code at "position" `scale * t`.
/// Padded tokens get a code too (it is masked everywhere it could matter). `d` is even.
pub fn clock_code<B: Backend>(padding: Tensor<B, 2, Bool>, d: usize, scale: f64) -> Tensor<B, 3> {
    let [b, n] = padding.dims();
    let device = padding.device();
    let valid = padding.bool_not().float();
    let length = valid.clone().sum_dim(1).clamp_min(1.0);
    let t = (valid.cumsum(1) - 0.5).clamp_min(0.0) / length;
    let half = d / 2;
    let frequencies = (Tensor::<B, 1, Int>::arange(0..half as i64, &device).float()
        * (-2.0 * (10000f64).ln() / d as f64))
        .exp()
        * scale;
    let angles = t.reshape([b, n, 1]) * frequencies.reshape([1, 1, half]);
    Tensor::cat(vec![angles.clone().sin(), angles.cos()], 2)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    type B = Flex;

    #[test]
    fn same_instant_same_code_across_lengths() {
        let device = Default::default();
        // 2 tokens versus 4 tokens (the last one padded: 3 valid) versus 6 tokens.
        let two = clock_code::<B>(Tensor::from_data([[false, false]], &device), 8, 64.0);
        let six = clock_code::<B>(Tensor::from_data([[false; 6]], &device), 8, 64.0);
        let padded = clock_code::<B>(
            Tensor::from_data([[false, false, false, true]], &device),
            8,
            64.0,
        );
        // t = 0.25 is token 0 of 2 and the middle of tokens 1 (t=0.25) of 6.
        let a = two.narrow(1, 0, 1);
        let b = six.clone().narrow(1, 1, 1);
        assert!((a - b).abs().max().into_scalar() < 1e-5);
        // t = 0.5 is token 1 of 3 valid ones and the boundary of tokens 2/3 of 6.
        let mid = padded.narrow(1, 1, 1);
        let t05 = clock_code::<B>(Tensor::from_data([[false]], &device), 8, 64.0);
        assert!((mid - t05).abs().max().into_scalar() < 1e-5);
        assert_eq!(six.dims(), [1, 6, 8]);
    }
}
