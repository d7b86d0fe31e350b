//! The 2s-AGCN network (`Model` in the reference's `model/agcn.py`), one stream.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::Graph;
use super::unit::{TcnGcnUnit, TcnGcnUnitConfig, batch_norm_scaled};
use crate::Error;
use crate::kernels::nn::{BatchNorm, Linear};

/// Configuration of one 2s-AGCN stream.
#[derive(Config, Debug)]
pub struct AgcnConfig {
    /// The skeleton graph (V nodes).
    pub graph: Graph,
    /// Number of classes of the `fc` head.
    pub num_classes: usize,
    /// Persons per sample (M).
    #[config(default = 2)]
    pub num_persons: usize,
    /// Channels per joint (C): x, y, confidence for OpenPose.
    #[config(default = 3)]
    pub in_channels: usize,
    /// `(out_channels, temporal stride)` of each TCN-GCN unit; the reference's ten by default.
    #[config(
        default = "vec![(64, 1), (64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1)]"
    )]
    pub units: Vec<(usize, usize)>,
    /// Temporal kernel size of `unit_tcn`.
    #[config(default = 9)]
    pub temporal_kernel: usize,
    /// Embedding reduction of the graph attention.
    #[config(default = 4)]
    pub coff_embedding: usize,
}

/// One 2s-AGCN stream: `data_bn`, the TCN-GCN units (`l1`..`l10`), pooling and `fc`.
#[derive(Module, Debug)]
pub struct Agcn<B: Backend> {
    /// Batch norm over persons x joints x channels, in the reference's (M, V, C) order.
    pub data_bn: BatchNorm<B>,
    /// The TCN-GCN units; `layers.0` is the reference's `l1`.
    pub layers: Vec<TcnGcnUnit<B>>,
    /// Classifier.
    pub fc: Linear<B>,
    num_persons: usize,
    in_channels: usize,
    num_nodes: usize,
}

/// What one stream computes for a batch.
#[derive(Debug, Clone)]
pub struct AgcnOutput<B: Backend> {
    /// Class scores `[N, classes]`.
    pub logits: Tensor<B, 2>,
    /// Pooled features `[N, C_out]` (256 for the reference): the mean over time, joints and
    /// persons, the input of `fc`.
    pub embedding: Tensor<B, 2>,
    /// Token map `[N, T', V, C_out]` before pooling, averaged over persons.
    pub tokens: Tensor<B, 4>,
}

impl<B: Backend> AgcnOutput<B> {
    /// One token per time step `[N, T', C_out]`: the token map averaged over joints.
    pub fn time_tokens(&self) -> Tensor<B, 3> {
        self.tokens.clone().mean_dim(2).squeeze_dim(2)
    }
}

impl AgcnConfig {
    /// Builds the stream with the reference's initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<Agcn<B>> {
        self.graph.validate()?;
        let invalid = |reason: String| Error::InvalidConfig {
            model: "agcn",
            reason,
        };
        if self.units.is_empty() || self.num_classes == 0 || self.num_persons == 0 {
            return Err(invalid(
                "units, num_classes and num_persons must be non-zero".into(),
            ));
        }
        if let Some((c, _)) = self
            .units
            .iter()
            .find(|(c, _)| c % self.coff_embedding != 0)
        {
            return Err(invalid(format!(
                "{c} output channels are not divisible by coff_embedding {}",
                self.coff_embedding
            )));
        }
        let v = self.graph.num_nodes();
        let adjacency = self.graph.adjacency();
        let mut in_channels = self.in_channels;
        let layers = self
            .units
            .iter()
            .enumerate()
            .map(|(i, &(out, stride))| {
                let unit = TcnGcnUnitConfig::new(in_channels, out)
                    .with_stride(stride)
                    .with_residual(i > 0)
                    .with_temporal_kernel(self.temporal_kernel)
                    .with_coff_embedding(self.coff_embedding)
                    .init(&adjacency, v, device);
                in_channels = out;
                unit
            })
            .collect();
        let std = (2.0 / self.num_classes as f64).sqrt();
        Ok(Agcn {
            data_bn: batch_norm_scaled(self.num_persons * v * self.in_channels, 1.0, device),
            layers,
            fc: LinearConfig::new(in_channels, self.num_classes)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
                .into(),
            num_persons: self.num_persons,
            in_channels: self.in_channels,
            num_nodes: v,
        })
    }
}

impl AgcnConfig {
    /// Floating-point operations of one forward pass on `batch` samples of `frames` frames,
    /// counting a multiply-add as two: the convolutions, the attention products and `fc`
    /// (normalisation, softmax, additions and pooling are left out, under 1% here).
    pub fn forward_flops(&self, batch: usize, frames: usize) -> u64 {
        let v = self.graph.num_nodes() as u64;
        let subsets = 3;
        let mut t = frames as u64;
        let mut c_in = self.in_channels as u64;
        let mut per_sequence = 0u64;
        for (i, &(c_out, stride)) in self.units.iter().enumerate() {
            let (c_out, stride) = (c_out as u64, stride as u64);
            let inter = c_out / self.coff_embedding as u64;
            let t_out = t.div_ceil(stride);
            // conv_a and conv_b, the V x V attention, x @ A, conv_d; per partition.
            let gcn = 2 * (2 * c_in * inter * t * v)
                + 2 * v * inter * t * v
                + 2 * c_in * t * v * v
                + 2 * c_in * c_out * t * v;
            let mut flops = subsets * gcn;
            if c_in != c_out {
                flops += 2 * c_in * c_out * t * v; // down
            }
            flops += 2 * c_out * c_out * self.temporal_kernel as u64 * t_out * v; // tcn
            if i > 0 && (c_in != c_out || stride != 1) {
                flops += 2 * c_in * c_out * t_out * v; // projected residual
            }
            per_sequence += flops;
            t = t_out;
            c_in = c_out;
        }
        let persons = self.num_persons as u64;
        batch as u64 * (persons * per_sequence + 2 * c_in * self.num_classes as u64)
    }
}

impl<B: Backend> Agcn<B> {
    /// Checks an input's shape `[N, C, T, V, M]` against the stream; the message names the
    /// dimension at fault.
    pub fn check_input(&self, dims: [usize; 5]) -> crate::Result<()> {
        let [n, c, t, v, m] = dims;
        let expected = [
            ("channels (C)", c, self.in_channels),
            ("joints (V)", v, self.num_nodes),
            ("persons (M)", m, self.num_persons),
        ];
        for (what, got, want) in expected {
            if got != want {
                return Err(Error::InvalidInput {
                    model: "agcn",
                    reason: format!("input {dims:?} has {got} {what}, the model takes {want}"),
                });
            }
        }
        if n == 0 || t == 0 {
            return Err(Error::InvalidInput {
                model: "agcn",
                reason: format!("input {dims:?} is empty (N = 0 or T = 0)"),
            });
        }
        Ok(())
    }

    /// Runs the stream on skeletons `[N, C, T, V, M]`, after [`Agcn::check_input`].
    pub fn try_forward(&self, x: Tensor<B, 5>) -> crate::Result<AgcnOutput<B>> {
        self.check_input(x.dims())?;
        Ok(self.forward(x))
    }

    /// Runs the stream on skeletons `[N, C, T, V, M]`. Panics on a shape the model does not
    /// take; [`Agcn::try_forward`] returns an error instead.
    pub fn forward(&self, x: Tensor<B, 5>) -> AgcnOutput<B> {
        let [n, c, t, v, m] = x.dims();
        // Reference order: (N, M, V, C, T) for data_bn, then (N*M, C, T, V).
        let x = x.permute([0, 4, 3, 1, 2]).reshape([n, m * v * c, t]);
        let x = self.data_bn.forward(x);
        let mut x = x
            .reshape([n, m, v, c, t])
            .permute([0, 1, 3, 4, 2])
            .reshape([n * m, c, t, v]);
        for layer in &self.layers {
            x = layer.forward(x);
        }
        let [_, c_out, t_out, _] = x.dims();
        // Mean over persons, then joints and time; the reference's mean(3).mean(1) is the same.
        // The persons are added slice by slice: on Burn 0.21's cubecl backends a reduction
        // (`mean_dim`), a reshape and then a permutation get a wrong gradient, and a permutation
        // before the reduction a wrong value for one person (both found by the agreement
        // tests); slices, a reshape and a permutation are right everywhere.
        let persons = x.reshape([n, m, c_out, t_out, v]);
        let sum = (1..m).fold(persons.clone().narrow(1, 0, 1), |sum, i| {
            sum + persons.clone().narrow(1, i, 1)
        });
        let tokens = (sum / m as f64)
            .reshape([n, c_out, t_out, v])
            .permute([0, 2, 3, 1]);
        let embedding = tokens.clone().mean_dims(&[1, 2]).reshape([n, c_out]);
        AgcnOutput {
            logits: self.fc.forward(embedding.clone()),
            embedding,
            tokens,
        }
    }

    /// Number of classes of the head.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.dims()[1]
    }
}

/// The bone stream's input from joint data `[N, C, T, V, M]`, as the reference's bone
/// generator: at each joint of a bone pair `(joint, parent)`, `x[joint] - x[parent]` over all
/// channels (confidence included); joints in no pair keep their joint value.
pub fn bones<B: Backend>(joints: Tensor<B, 5>, graph: &Graph) -> Tensor<B, 5> {
    let v = graph.num_nodes();
    let mut parent: Vec<i64> = (0..v as i64).collect();
    let mut mask = vec![0.0f32; v];
    for &(joint, of) in &graph.bones {
        parent[joint] = of as i64;
        mask[joint] = 1.0;
    }
    let device = joints.device();
    let parent = Tensor::<B, 1, Int>::from_data(TensorData::new(parent, [v]), &device);
    let mask = Tensor::<B, 5>::from_data(TensorData::new(mask, [1, 1, 1, v, 1]), &device);
    joints.clone() - joints.select(3, parent) * mask
}

/// The reference ensemble of the two streams: `joint + alpha * bone` class scores.
pub fn fuse_scores<B: Backend>(
    joint: Tensor<B, 2>,
    bone: Tensor<B, 2>,
    alpha: f64,
) -> Tensor<B, 2> {
    joint + bone * alpha
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::{Distribution, ElementConversion};

    use super::*;

    fn small(graph: Graph) -> AgcnConfig {
        AgcnConfig::new(graph, 3)
            .with_num_persons(1)
            .with_units(vec![(8, 1), (16, 2)])
    }

    #[test]
    fn training_lowers_the_loss_and_updates_running_statistics() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        B::seed(&device, 3);
        let mut model = small(Graph::kinetics()).init::<B>(&device).unwrap();
        let x = Tensor::<B, 5>::random([6, 3, 8, 18, 1], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<B, 1, Int>::from_data(
            TensorData::new(vec![0i64, 1, 2, 0, 1, 2], [6]),
            &device,
        );
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut optimizer = AdamConfig::new().init::<B, Agcn<B>>();
        let mut losses = Vec::new();
        for _ in 0..15 {
            let loss = loss_fn.forward(model.forward(x.clone()).logits, y.clone());
            losses.push(loss.clone().into_scalar().elem::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-2, model, grads);
        }
        assert!(
            losses[14] < 0.5 * losses[0],
            "loss did not fall: {losses:?}"
        );
        let mean = model
            .data_bn
            .running_mean
            .value()
            .abs()
            .sum()
            .into_scalar()
            .elem::<f32>();
        assert!(
            mean > 0.0,
            "running statistics were not updated in training"
        );

        // Inference (no autodiff) uses the running statistics: a single sample's output does
        // not depend on the rest of the batch.
        let inference = model.valid();
        let x = x.inner();
        let alone = inference.forward(x.clone().narrow(0, 0, 1)).logits;
        let batched = inference.forward(x).logits.narrow(0, 0, 1);
        let diff = (alone - batched).abs().max().into_scalar().elem::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn bad_inputs_are_errors_that_name_the_dimension() {
        let device = Default::default();
        let model = small(Graph::kinetics()).init::<Flex>(&device).unwrap();
        let joints = |dims| model.check_input(dims).unwrap_err().to_string();
        assert!(joints([1, 3, 8, 25, 1]).contains("25 joints (V)"));
        assert!(joints([1, 2, 8, 18, 1]).contains("channels (C)"));
        assert!(joints([1, 3, 8, 18, 2]).contains("persons (M)"));
        assert!(joints([1, 3, 0, 18, 1]).contains("T = 0"));
        let bad = AgcnConfig::new(Graph::kinetics(), 3).with_units(vec![(10, 1)]);
        assert!(
            bad.init::<Flex>(&device)
                .unwrap_err()
                .to_string()
                .contains("coff_embedding")
        );
    }

    #[test]
    fn bones_subtract_the_parent_and_zero_the_root() {
        let device = Default::default();
        let graph = Graph::kinetics();
        // Joint v holds the value v in every channel.
        let values: Vec<f32> = (0..3 * 18).map(|i| (i % 18) as f32).collect();
        let joints =
            Tensor::<Flex, 5>::from_data(TensorData::new(values, [1, 3, 1, 18, 1]), &device);
        let b = bones(joints, &graph).into_data().to_vec::<f32>().unwrap();
        for &(joint, parent) in &graph.bones {
            assert_eq!(b[joint], joint as f32 - parent as f32);
        }
        assert_eq!(b[0], 0.0);
    }

    #[test]
    fn flops_follow_the_shapes() {
        let config = AgcnConfig::new(Graph::kinetics(), 60);
        // Twice the batch is twice the work; more frames is more work.
        assert_eq!(config.forward_flops(2, 64), 2 * config.forward_flops(1, 64));
        assert!(config.forward_flops(1, 128) > config.forward_flops(1, 64));
    }
}
