//! Input checks shared by the fusion modules: shapes (cheap, from dims) and values (read back
//! from the device, in `try_forward` only).

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use crate::{Error, Result};

/// Builds the error for `input` of `module`.
pub(crate) fn invalid(module: &'static str, input: &'static str, reason: String) -> Error {
    Error::InvalidInput {
        module,
        input,
        reason,
    }
}

/// Checks that a token tensor has `batch` samples, at least one token per axis and `width`
/// features in its last axis.
pub(crate) fn check_tokens<const D: usize>(
    module: &'static str,
    input: &'static str,
    dims: [usize; D],
    batch: usize,
    width: usize,
) -> Result<()> {
    if dims.contains(&0) {
        return Err(invalid(module, input, format!("shape {dims:?} is empty")));
    }
    if dims[0] != batch {
        return Err(invalid(
            module,
            input,
            format!(
                "batch of {} samples; the other inputs have {batch}",
                dims[0]
            ),
        ));
    }
    if dims[D - 1] != width {
        return Err(invalid(
            module,
            input,
            format!(
                "shape {dims:?} has {} features; the configuration expects {width}",
                dims[D - 1]
            ),
        ));
    }
    Ok(())
}

/// Checks a padding mask's shape against its tokens' `[batch, steps]`.
pub(crate) fn check_padding(
    module: &'static str,
    input: &'static str,
    padding: Option<&Tensor<impl Backend, 2, Bool>>,
    expected: [usize; 2],
) -> Result<()> {
    match padding.map(|p| p.dims()) {
        Some(dims) if dims != expected => Err(invalid(
            module,
            input,
            format!("padding mask of shape {dims:?}; the tokens need {expected:?}"),
        )),
        _ => Ok(()),
    }
}

/// Errors when `x` holds a NaN or an infinity (reads the tensor back).
pub(crate) fn check_finite<B: Backend, const D: usize>(
    module: &'static str,
    input: &'static str,
    x: &Tensor<B, D>,
) -> Result<()> {
    let bad = x.clone().is_nan().bool_or(x.clone().is_inf()).any();
    if flags(bad)[0] {
        return Err(invalid(
            module,
            input,
            "holds NaN or infinite values".into(),
        ));
    }
    Ok(())
}

/// Errors naming the samples that have no valid token in any of the given streams, from each
/// stream's padding (`None`: nothing padded, so every sample has a token; reads them back).
pub(crate) fn check_some_token<B: Backend>(
    module: &'static str,
    paddings: &[Option<&Tensor<B, 2, Bool>>],
) -> Result<()> {
    let Some(any) = paddings
        .iter()
        .map(|p| p.map(|p| p.clone().bool_not().any_dim(1)))
        .reduce(|a, b| Some(a?.bool_or(b?)))
        .flatten()
    else {
        return Ok(());
    };
    let empty: Vec<usize> = flags(any)
        .iter()
        .enumerate()
        .filter(|(_, p)| !**p)
        .map(|(i, _)| i)
        .collect();
    if empty.is_empty() {
        Ok(())
    } else {
        Err(invalid(
            module,
            "padding",
            format!("samples {empty:?} have every token of every stream masked"),
        ))
    }
}

/// A boolean tensor's values, whatever type the backend stores booleans in.
fn flags<B: Backend, const D: usize>(x: Tensor<B, D, Bool>) -> Vec<bool> {
    x.int().into_data().iter::<i64>().map(|v| v != 0).collect()
}
