//! Parity with the reference code: how an output is compared with a reference output (the
//! one error every parity and backend-agreement check uses), and the parameter stream that
//! fills a network's weights identically here and in `scripts/full_parity.py`, so that the
//! full-size checks need no committed weights.

use burn::tensor::TensorData;

/// `max |actual - expected| / max(1, max |expected|)`: an absolute error for outputs of order
/// 1 or less, a relative one for larger outputs. Differing shapes, and a NaN or an infinity on
/// either side, are errors naming the element.
pub fn scaled_error(actual: &TensorData, expected: &TensorData) -> Result<f32, String> {
    if actual.shape != expected.shape {
        return Err(format!(
            "shape {:?} against the reference's {:?}",
            actual.shape, expected.shape
        ));
    }
    let values = |d: &TensorData| {
        d.clone()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))
    };
    let (a, e) = (values(actual)?, values(expected)?);
    let mut worst = 0.0f32;
    let mut size = 1.0f32;
    for (j, (x, y)) in a.iter().zip(&e).enumerate() {
        if !x.is_finite() || !y.is_finite() {
            return Err(format!(
                "element {j}: {x} against the reference's {y} (not finite)"
            ));
        }
        worst = worst.max((x - y).abs());
        size = size.max(y.abs());
    }
    Ok(worst / size)
}

/// The stream's uniform values of `key`: the (i+1)-th draw of SplitMix64 seeded with
/// FNV-1a-64(key), its top 24 bits `k`, as `k / 2^23 - 1` (exact in f32, in [-1, 1)).
pub fn stream_uniform(key: &str, n: usize) -> Vec<f32> {
    let mut stream = miga_kernels::random::SplitMix64::new(miga_kernels::random::name_seed(key));
    (0..n).map(|_| stream.symmetric()).collect()
}

/// The stream's values of the tensor named `key` (its name in the reference's state_dict)
/// of `shape`, by the rules of `scripts/full_parity.py`: BatchNorm running variances
/// `1 + 0.5 u`, running means `0.1 u`, 1-D weights `1 + 0.1 u`, other 1-D tensors `0.1 u`,
/// relative-position tables `0.5 u`, every other tensor `u sqrt(3 / fan_in)` (fan_in: the
/// product of all but the first dimension), in f32 with the scale rounded once.
pub fn stream_tensor(key: &str, shape: &[usize]) -> TensorData {
    let u = stream_uniform(key, shape.iter().product());
    let map = |a: f32, b: f32| -> Vec<f32> { u.iter().map(|&u| a * u + b).collect() };
    let values = if key.ends_with("running_var") {
        map(0.5, 1.0)
    } else if key.ends_with("running_mean") {
        map(0.1, 0.0)
    } else if shape.len() == 1 && key.ends_with("weight") {
        map(0.1, 1.0)
    } else if shape.len() == 1 {
        map(0.1, 0.0)
    } else if key.contains("relative_position_bias_table") || key.contains("rel_pos_") {
        map(0.5, 0.0)
    } else {
        let fan_in: usize = shape[1..].iter().product();
        let scale = (3.0 / fan_in.max(1) as f64).sqrt() as f32;
        u.iter().map(|&u| u * scale).collect()
    };
    TensorData::new(values, shape.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values the Python stream gives (`scripts/full_parity.py`: `uniform("input", 3)`,
    /// `value("fc.weight", (2, 3))[0]`), so that both sides are held to one definition.
    #[test]
    fn the_stream_is_the_scripts() {
        assert_eq!(
            stream_uniform("input", 3),
            [-0.80436337, 0.30472076, -0.5927515]
        );
        let weight = stream_tensor("fc.weight", &[2, 3]).to_vec::<f32>().unwrap();
        assert_eq!(weight[..3], [-0.030708432, 0.74453926, 0.48704994]);
    }

    #[test]
    fn scaled_above_one_absolute_below_and_never_finite_on_nan() {
        let reference = TensorData::new(vec![1.0f32, 2.0, 4.0], [3]);
        let near = TensorData::new(vec![1.0f32, 2.5, 4.0], [3]);
        assert_eq!(scaled_error(&near, &reference), Ok(0.5 / 4.0));
        let small = TensorData::new(vec![0.1f32, -0.2], [2]);
        let off = TensorData::new(vec![0.1f32, -0.25], [2]);
        assert!((scaled_error(&off, &small).unwrap() - 0.05).abs() < 1e-7);
        let nan = TensorData::new(vec![1.0f32, f32::NAN, 4.0], [3]);
        assert!(scaled_error(&nan, &nan).unwrap_err().contains("not finite"));
        let shape = TensorData::new(vec![1.0f32, 2.0, 4.0], [3, 1]);
        assert!(
            scaled_error(&shape, &reference)
                .unwrap_err()
                .contains("shape")
        );
    }
}
