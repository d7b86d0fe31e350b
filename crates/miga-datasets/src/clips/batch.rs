//! Clips stacked into the tensors the backbones take ([`ClipBatcher`]).

use super::*;

/// A batch of clips.
#[derive(Debug, Clone)]
pub struct ClipBatch<B: Backend> {
    /// Ids of the clips in the batch, in row order.
    pub ids: Vec<String>,
    /// Class indices `[B]` (when every clip is labelled).
    pub labels: Option<Tensor<B, 1, Int>>,
    /// `[B, 3, T, crop, crop]`.
    pub rgb: Option<Tensor<B, 5>>,
    /// `[B, 3, T_s, V, 1]`.
    pub skeleton: Option<Tensor<B, 5>>,
    /// Clips left out of the batch, with why (`miga train --strict` stops on the first).
    pub skipped: Vec<(String, String)>,
}

/// Stacks [`ClipItem`]s into a [`ClipBatch`], leaving failed items out (and naming them).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClipBatcher;

/// Clips of one shape stacked along a new first axis, one copy into one tensor.
fn stack<B: Backend>(parts: Vec<TensorData>, device: &B::Device) -> Option<Tensor<B, 5>> {
    let first = parts.first()?;
    let dims: [usize; 4] = first.shape.dims();
    let mut values: Vec<f32> = Vec::with_capacity(parts.len() * first.num_elements());
    for part in &parts {
        values.extend_from_slice(part.as_slice::<f32>().ok()?);
    }
    let [c, t, h, w] = dims;
    Some(Tensor::from_data(
        TensorData::new(values, [parts.len(), c, t, h, w]),
        device,
    ))
}

/// The good items of a batch (ids, labels, data) and the failed ones (id, why).
pub(crate) struct Sorted<D> {
    pub ids: Vec<String>,
    pub labels: Vec<Option<usize>>,
    pub data: Vec<D>,
    pub skipped: Vec<(String, String)>,
}

impl<D> Sorted<D> {
    /// Sorts `(id, label, data or error)` items.
    pub fn new(
        items: impl IntoIterator<Item = (String, Option<usize>, std::result::Result<D, String>)>,
    ) -> Self {
        let mut sorted = Self {
            ids: Vec::new(),
            labels: Vec::new(),
            data: Vec::new(),
            skipped: Vec::new(),
        };
        for (id, label, data) in items {
            match data {
                Ok(data) => {
                    sorted.ids.push(id);
                    sorted.labels.push(label);
                    sorted.data.push(data);
                }
                Err(reason) => sorted.skipped.push((id, reason)),
            }
        }
        sorted
    }

    /// The labels as a tensor, when every good item has one.
    pub fn label_tensor<B: Backend>(&self, device: &B::Device) -> Option<Tensor<B, 1, Int>> {
        let labels: Option<Vec<i64>> = self.labels.iter().map(|l| l.map(|l| l as i64)).collect();
        labels
            .filter(|l| !l.is_empty())
            .map(|l| Tensor::from_data(TensorData::new(l.clone(), [l.len()]), device))
    }
}

impl<B: Backend> Batcher<B, ClipItem, ClipBatch<B>> for ClipBatcher {
    fn batch(&self, items: Vec<ClipItem>, device: &B::Device) -> ClipBatch<B> {
        timed(Stage::Batch, || self.stack(items, device))
    }
}

impl ClipBatcher {
    fn stack<B: Backend>(&self, items: Vec<ClipItem>, device: &B::Device) -> ClipBatch<B> {
        let sorted = Sorted::new(items.into_iter().map(|i| (i.id, i.label, i.data)));
        let labels = sorted.label_tensor(device);
        let (rgb, skeleton): (Vec<_>, Vec<_>) =
            sorted.data.into_iter().map(|d| (d.rgb, d.skeleton)).unzip();
        ClipBatch {
            labels,
            rgb: stack(rgb.into_iter().flatten().collect(), device),
            skeleton: stack(skeleton.into_iter().flatten().collect(), device),
            ids: sorted.ids,
            skipped: sorted.skipped,
        }
    }
}
