//! The full-size networks: every parameter and BatchNorm statistic comes from the parameter
//! stream ([`miga_backbones::parity`]), as `scripts/full_parity.py` filled the reference's. The
//! committed fixture is the reference outputs (a strided sample of large ones, named
//! `output@every`) and the names and shapes of the filled tensors; the weights are rebuilt
//! here, written under the reference's names and loaded through miga's strict loaders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use miga_backbones::agcn::{AgcnConfig, Graph};
use miga_backbones::mvit::MvitConfig;
use miga_backbones::parity::{stream_tensor, stream_uniform};
use miga_backbones::swin::{FACE_HEADS, SwinConfig, SwinFaceConfig};

use super::{Fixtures, read, record};
use crate::Error;
use crate::device::{BackendTask, DeviceSpec};

type Named = BTreeMap<String, TensorData>;

/// Our outputs (sampled as the fixture is) and the reference's.
pub(super) fn outputs(
    fixtures: &Fixtures,
    case: &str,
    device: DeviceSpec,
) -> Result<(Named, Named), Error> {
    let dir = fixtures.backbones().join("full");
    let expected = read(&dir.join(format!("{case}.safetensors")))?;
    let record = record(&dir.join(format!("{case}.json")))?;
    let weights = Weights::write(case, &record)?;
    let mut ours = device.run(FullSize {
        case,
        record: &record,
        weights: &weights.0,
    })??;
    // In the fixture's order, sampled where the fixture is.
    let ours = expected
        .keys()
        .map(|name| {
            let base = name.split('@').next().unwrap_or(name);
            let data = ours.remove(base).ok_or_else(|| {
                Error::InvalidArgument(format!("{case}: the model gave no output `{base}`"))
            })?;
            Ok((name.clone(), as_committed(name, data)?))
        })
        .collect::<Result<Named, Error>>()?;
    Ok((ours, expected))
}

/// The stream's weights under the reference's names, in a safetensors file removed on drop.
struct Weights(PathBuf);

impl Weights {
    fn write(case: &str, record: &serde_json::Value) -> Result<Self, Error> {
        let filled = record["filled"]
            .as_array()
            .ok_or_else(|| malformed(case, "filled"))?;
        let tensors = filled
            .iter()
            .map(|entry| {
                let key = entry[0].as_str().ok_or_else(|| malformed(case, "filled"))?;
                let shape = dims(&entry[1]).ok_or_else(|| malformed(case, key))?;
                Ok((key.to_string(), stream_tensor(key, &shape)))
            })
            .collect::<Result<Named, Error>>()?;
        let path = std::env::temp_dir().join(format!(
            "miga-full-{case}-{}-{:?}.safetensors",
            std::process::id(),
            std::thread::current().id()
        ));
        let weights = Weights(path);
        miga_datasets::tensors::write_tensors(&weights.0, &tensors)?;
        Ok(weights)
    }
}

impl Drop for Weights {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn dims(value: &serde_json::Value) -> Option<Vec<usize>> {
    value
        .as_array()?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect()
}

fn malformed(case: &str, field: &str) -> Error {
    Error::InvalidArgument(format!("full/{case}.json: `{field}` is malformed"))
}

/// An output as the fixture keeps it: whole, or every `every`-th element when named `@every`.
fn as_committed(name: &str, data: TensorData) -> Result<TensorData, Error> {
    let Some((_, every)) = name.split_once('@') else {
        return Ok(data);
    };
    let every: usize = every
        .parse()
        .ok()
        .filter(|&e| e > 0)
        .ok_or_else(|| Error::InvalidArgument(format!("output `{name}`: no sampling step")))?;
    let values: Vec<f32> = data
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| Error::InvalidArgument(format!("output `{name}`: {e:?}")))?
        .into_iter()
        .step_by(every)
        .collect();
    let n = values.len();
    Ok(TensorData::new(values, [n]))
}

struct FullSize<'a> {
    case: &'a str,
    record: &'a serde_json::Value,
    weights: &'a Path,
}

impl FullSize<'_> {
    /// The input the reference saw: the stream's `input` values in the recorded shape.
    fn input<B: Backend, const D: usize>(&self, device: &B::Device) -> Result<Tensor<B, D>, Error> {
        let shape =
            dims(&self.record["input"]["shape"]).ok_or_else(|| malformed(self.case, "input"))?;
        let values = stream_uniform("input", shape.iter().product());
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }
}

impl BackendTask for FullSize<'_> {
    type Output = Result<Named, Error>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Named, Error> {
        let device = &device;
        let mut out = Named::new();
        match self.case {
            "mvit_v2_s" => {
                let model =
                    MvitConfig::mvit_v2_s(400).load_checkpoint::<B>(self.weights, device)?;
                let o = model.try_forward(self.input::<B, 5>(device)?)?;
                out.insert("logits".into(), o.logits.into_data());
                out.insert("embedding".into(), o.embedding.into_data());
                out.insert("tokens".into(), o.tokens.into_data());
            }
            "swin_t" => {
                let model = SwinConfig::swin_t(1000).load_checkpoint::<B>(self.weights, device)?;
                let o = model.try_forward(self.input::<B, 4>(device)?)?;
                if let Some(logits) = o.logits {
                    out.insert("logits".into(), logits.into_data());
                }
                out.insert("embedding".into(), o.embedding.into_data());
            }
            "swinface" => {
                let model =
                    SwinFaceConfig::swinface().load_checkpoint::<B>(self.weights, device)?;
                let o = model.try_forward(self.input::<B, 4>(device)?)?;
                for (head, value) in FACE_HEADS.iter().zip(o.heads.into_iter().flatten()) {
                    out.insert(format!("head.{}", head.name), value.into_data());
                }
                out.insert("embedding".into(), o.embedding.into_data());
            }
            case => {
                let field = |name: &str| {
                    self.record[name]
                        .as_u64()
                        .map(|v| v as usize)
                        .ok_or_else(|| malformed(case, name))
                };
                let layout = self.record["graph"]
                    .as_str()
                    .ok_or_else(|| malformed(case, "graph"))?;
                let model = AgcnConfig::new(Graph::layout(layout)?, field("classes")?)
                    .with_num_persons(field("persons")?)
                    .init::<B>(device)?
                    .load_pytorch(self.weights)?;
                let o = model.try_forward(self.input::<B, 5>(device)?)?;
                out.insert("logits".into(), o.logits.into_data());
                out.insert("embedding".into(), o.embedding.into_data());
            }
        }
        Ok(out)
    }
}
