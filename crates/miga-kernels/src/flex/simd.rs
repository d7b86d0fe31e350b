//! Vectorised row kernels (softmax, GELU, layer norm rows, AdamW) and the scalar math they
//! are built from (exp, erf), with reductions in lanes the compiler vectorises.

/// Lanes of the accumulators in the reductions below: wide enough for AVX-512, and written as
/// independent lanes so that the compiler vectorises them (a float reduction in one
/// accumulator has a fixed order and stays scalar).
pub(crate) const LANES: usize = 16;

vectorised! {
    /// One row's softmax in place: max, exponentials and their sum, scaling.
    pub(crate) fn softmax_row(row: &mut [f32]) {
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (m, &v) in max.iter_mut().zip(chunk) {
                *m = m.max(v);
            }
        }
        let mut max = max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for &v in chunks.remainder() {
            max = max.max(v);
        }
        let sum = map_sum(row, |v| exp_f32(v - max), |e| e);
        let scale = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= scale;
        }
    }
}

vectorised! {
    /// AdamW on a slice, each step as Burn's AdamW rounds it: `c` is `[beta_1, beta_2,
    /// 1 - beta_1, 1 - beta_2, bias correction 1, bias correction 2, epsilon, 1 - lr * decay,
    /// lr]`.
    pub(crate) fn adamw_slice(
        param: &mut [f32],
        grad: &[f32],
        moment_1: &mut [f32],
        moment_2: &mut [f32],
        c: [f32; 9],
    ) {
        let [b1, b2, f1, f2, c1, c2, eps, keep, lr] = c;
        for (((p, &g), m), v) in param
            .iter_mut()
            .zip(grad)
            .zip(moment_1.iter_mut())
            .zip(moment_2.iter_mut())
        {
            *m = *m * b1 + g * f1;
            *v = *v * b2 + (g * g) * f2;
            let delta = (*m / c1) / ((*v / c2).sqrt() + eps);
            *p = *p * keep - delta * lr;
        }
    }
}

/// `exp(x)` by Cephes' range reduction and degree-6 polynomial (relative error about 1e-7),
/// flushed to 0 below `EXP_FLUSH`; branch-free so that loops over it vectorise.
///
/// The flush keeps subnormal numbers, which CPUs handle on a slow path, out of the arithmetic
/// that follows (a softmax scales these values by up to 1/row length). e^-70 is 4e-31, below
/// anything a probability or an erf tail contributes in f32.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let flush = x < EXP_FLUSH;
    let x = x.clamp(EXP_FLUSH, 88.3);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from n's bits: adding 1.5 * 2^23 puts the integer n in the low mantissa bits (a
    // float-to-int conversion would not vectorise: Rust's `as` saturates).
    let n = (n + 12_582_912.0).to_bits() as i32 - 0x4B40_0000;
    let e = y * f32::from_bits(((n + 127) as u32) << 23);
    if flush { 0.0 } else { e }
}

/// Below this, [`exp_f32`] is 0.
pub(crate) const EXP_FLUSH: f32 = -70.0;

/// erf(x / sqrt 2) and exp(-x^2 / 2) through Abramowitz & Stegun 7.1.26 (absolute error
/// under 1.5e-7, the formula PyTorch's vectorised CPU `erf` uses).
#[inline(always)]
pub(crate) fn erf_and_gauss(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let gauss = exp_f32(-a * a);
    ((1.0 - poly * gauss).copysign(z), gauss)
}

/// GELU of one value: `0.5 x (1 + erf(x / sqrt 2))`.
#[inline(always)]
pub(crate) fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_and_gauss(x).0)
}

/// GELU's derivative at `x`: `Phi(x) + x phi(x)`.
#[inline(always)]
pub(crate) fn gelu_grad_f32(x: f32) -> f32 {
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let (erf, gauss) = erf_and_gauss(x);
    0.5 * (1.0 + erf) + x * gauss * FRAC_1_SQRT_2PI
}

vectorised! {
    /// GELU in place.
    pub(crate) fn gelu_slice(x: &mut [f32]) {
        for v in x {
            *v = gelu_f32(*v);
        }
    }
}

vectorised! {
    /// The gradient through GELU in place of `grad`, at `x`.
    pub(crate) fn gelu_grad_slice(x: &[f32], grad: &mut [f32]) {
        for (g, &x) in grad.iter_mut().zip(x) {
            *g *= gelu_grad_f32(x);
        }
    }
}

vectorised! {
    /// One row of the softmax's backward pass, in place of `grad`.
    pub(crate) fn softmax_grad_row(y: &[f32], grad: &mut [f32]) {
        let dot = dot(y, grad);
        for (g, &y) in grad.iter_mut().zip(y) {
            *g = y * (*g - dot);
        }
    }
}

vectorised! {
    /// Normalises one row in place to zero mean and unit variance; returns 1 / sqrt(var + eps).
    pub(crate) fn normalise_row(x: &mut [f32], epsilon: f32) -> f32 {
        let n = x.len() as f32;
        let mean = sum(x) / n;
        let var = map_sum(x, |v| v - mean, |d| d * d);
        let rstd = 1.0 / (var / n + epsilon).sqrt();
        for v in x.iter_mut() {
            *v *= rstd;
        }
        rstd
    }
}

vectorised! {
    /// `y = x * gamma + beta` over one row.
    pub(crate) fn scale_shift_row(x: &[f32], gamma: &[f32], beta: Option<&[f32]>, y: &mut [f32]) {
        match beta {
            Some(beta) => {
                for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                    *y = x * g + b;
                }
            }
            None => {
                for ((y, &x), &g) in y.iter_mut().zip(x).zip(gamma) {
                    *y = x * g;
                }
            }
        }
    }
}

vectorised! {
    /// One row of the layer norm's backward pass: adds `grad * x` and `grad` to gamma's and
    /// beta's sums, then writes the input's gradient over `grad`:
    /// `rstd * (dx - mean(dx) - x * mean(dx * x))` with `dx = grad * gamma`, `x` normalised.
    pub(crate) fn layer_norm_grad_row(
        x: &[f32],
        gamma: &[f32],
        rstd: f32,
        grad: &mut [f32],
        d_gamma: &mut [f32],
        d_beta: &mut [f32],
    ) {
        let n = x.len() as f32;
        let mut sum_dx = [0.0f32; LANES];
        let mut sum_dx_x = [0.0f32; LANES];
        for (i, ((g, &x), &gm)) in grad.iter_mut().zip(x).zip(gamma).enumerate() {
            d_gamma[i] += *g * x;
            d_beta[i] += *g;
            *g *= gm;
            sum_dx[i % LANES] += *g;
            sum_dx_x[i % LANES] += *g * x;
        }
        let mean_dx = sum_dx.iter().sum::<f32>() / n;
        let mean_dx_x = sum_dx_x.iter().sum::<f32>() / n;
        for (g, &x) in grad.iter_mut().zip(x) {
            *g = rstd * (*g - mean_dx - x * mean_dx_x);
        }
    }
}

/// The sum of `x`, in [`LANES`] independent accumulators.
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Replaces each value of `x` by `f(value)` and returns the sum of `term` over the new values,
/// in [`LANES`] independent accumulators.
#[inline(always)]
pub(crate) fn map_sum(x: &mut [f32], f: impl Fn(f32) -> f32, term: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *v = f(*v);
            *a += term(*v);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = f(*v);
        sum += term(*v);
    }
    sum
}

/// The dot product of `a` and `b`, in [`LANES`] independent accumulators.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// The sum of `term(a_i, b_i)` in [`LANES`] independent accumulators (which vectorise).
#[inline(always)]
pub(crate) fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += term(x, y);
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| term(x, y))
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_the_exact_definition() {
        let values: Vec<f32> = (-4000..4000).map(|i| i as f32 * 2.5e-3).collect();
        let mut fast = values.clone();
        gelu_slice(&mut fast);
        for (x, y) in values.iter().zip(&fast) {
            let exact = 0.5 * (*x as f64) * (1.0 + libm_erf(*x as f64 / 2f64.sqrt()));
            // erf's error (1.5e-7) scaled by 0.5 |x|, plus f32 rounding.
            let bound = 1e-7 + 0.75e-7 * x.abs() as f64 + 1e-7 * exact.abs();
            assert!(
                (*y as f64 - exact).abs() < bound,
                "gelu({x}) = {y}, exact {exact}"
            );
        }
        let mut edge = [-200.0, 200.0, 0.0, f32::NAN];
        gelu_slice(&mut edge);
        assert_eq!(&edge[..3], &[-0.0, 200.0, 0.0]);
        assert!(edge[3].is_nan());
    }

    /// erf in f64 by its Taylor series (|x| < 3) or continued fraction, for the reference.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut sum = x;
            let mut term = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc by Lentz's continued fraction.
            let a = x.abs();
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            let erfc = (-a * a).exp() / (f * std::f64::consts::PI.sqrt());
            (1.0 - erfc).copysign(x)
        }
    }
}
