//! Named f32 tensors in safetensors files: model inputs and outputs on the command line, and
//! reference fixtures in tests.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::TensorData;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{Error, Result};

fn file_error(path: &Path, reason: impl ToString) -> Error {
    Error::TensorFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads every tensor of a safetensors file as f32 data (f16, bf16 and f64 are converted).
pub fn read_tensors(path: impl AsRef<Path>) -> Result<BTreeMap<String, TensorData>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| file_error(path, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(file_error(
                    path,
                    format!("tensor `{name}` is {other:?}; miga reads floating-point tensors"),
                ));
            }
        };
        out.insert(name, TensorData::new(values, view.shape().to_vec()));
    }
    Ok(out)
}

/// Takes the tensor `name` out of a map read by [`read_tensors`], with an error naming the
/// file and the tensors it does have when it is absent.
pub fn take_tensor(
    tensors: &mut BTreeMap<String, TensorData>,
    name: &str,
    path: impl AsRef<Path>,
) -> Result<TensorData> {
    tensors.remove(name).ok_or_else(|| {
        let have: Vec<&str> = tensors.keys().map(|k| k.as_str()).collect();
        file_error(
            path.as_ref(),
            format!("no tensor `{name}` (it has: {})", have.join(", ")),
        )
    })
}

/// Writes f32 tensors to a safetensors file atomically (a temporary file renamed into place).
pub fn write_tensors(path: impl AsRef<Path>, tensors: &BTreeMap<String, TensorData>) -> Result<()> {
    let path = path.as_ref();
    let mut views = Vec::with_capacity(tensors.len());
    let buffers: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, data)| {
            let values = data
                .clone()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| file_error(path, format!("tensor `{name}`: {e:?}")))?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok((name.clone(), bytes, data.shape.to_vec()))
        })
        .collect::<Result<_>>()?;
    for (name, bytes, shape) in &buffers {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| file_error(path, format!("tensor `{name}`: {e}")))?;
        views.push((name.as_str(), view));
    }
    let bytes = safetensors::serialize(views, None).map_err(|e| file_error(path, e))?;
    crate::io::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_named_errors() {
        let dir = std::env::temp_dir().join(format!("miga-tensor-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "x".to_string(),
            TensorData::new(vec![1.0f32, -2.5, 3.0, 4.0], [2, 2]),
        );
        write_tensors(&path, &tensors).unwrap();
        let mut back = read_tensors(&path).unwrap();
        assert_eq!(back["x"], tensors["x"]);
        let err = take_tensor(&mut back, "y", &path).unwrap_err().to_string();
        assert!(
            err.contains("t.safetensors") && err.contains("`y`") && err.contains("x"),
            "{err}"
        );

        std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{").unwrap();
        let err = read_tensors(&path).unwrap_err().to_string();
        assert!(err.contains("t.safetensors"), "{err}");
    }
}
