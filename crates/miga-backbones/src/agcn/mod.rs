//! 2s-AGCN, the two-stream adaptive graph convolutional network of Shi et al. (CVPR 2019), as
//! lshiwjx/2s-AGCN `model/agcn.py` defines it: a joint stream and a bone stream, each a stack
//! of adaptive graph convolutions over a skeleton [`Graph`], fused by adding class scores.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use miga_backbones::agcn::{AgcnConfig, Graph, bones};
//!
//! let device = Default::default();
//! let graph = Graph::kinetics();
//! let config = AgcnConfig::new(graph.clone(), 32).with_units(vec![(16, 1), (32, 2)]);
//! let model = config.init::<Flex>(&device)?;
//! let joints = Tensor::<Flex, 5>::zeros([1, 3, 20, 18, 2], &device); // N, C, T, V, M
//! let out = model.try_forward(bones(joints, &graph))?;
//! assert_eq!(out.logits.dims(), [1, 32]);
//! assert_eq!(out.tokens.dims(), [1, 10, 18, 32]); // N, T', V, C
//! # Ok::<(), miga_backbones::Error>(())
//! ```

mod graph;
mod import;
mod model;
mod unit;

pub use graph::{Graph, OPENPOSE_POINTS};
pub use model::{Agcn, AgcnConfig, AgcnOutput, bones, fuse_scores};
pub use unit::{
    ConvBn, TcnGcnUnit, TcnGcnUnitConfig, UnitGcn, UnitGcnConfig, UnitTcn, UnitTcnConfig,
};
