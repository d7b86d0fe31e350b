//! How an output is compared with a reference output: the one error every parity check and
//! backend-agreement check uses.

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

#[cfg(test)]
mod tests {
    use super::*;

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
