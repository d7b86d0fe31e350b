//! Operations with fast paths on the CPU backend, shared by miga's models, and the layers built
//! on them ([`nn`]: linear, layer and batch norm, dropout, depthwise Conv3d, temporal
//! convolution), which choose their formulation for the backend in one place
//! ([`nn::formulation`]). The operations: matrix products, exact GELU, softmax over the last
//! axis (also with a per-sample key mask), layer normalisation, layout copies (the head swap of
//! attention, any view made contiguous), the time-shifted columns of temporal convolutions, the
//! depthwise Conv3d of MViTv2's pooling and AdamW's update; and [`on_cpu_workers`], which runs a
//! step on the CPU pool's threads.
//!
//! Burn 0.21's CPU backend (Flex) runs element-wise maps one element at a time on one thread:
//! exact GELU costs about 11 ns per element there (a scalar `erf`), 13% of an MViTv2-S
//! forward pass. Under autodiff it is worse: a layer norm is eleven graph nodes, each with its
//! own backward pass, each a pass over the tensor. With the `flex` feature (on by default) these
//! functions recognise a Flex tensor and run a vectorised, multi-threaded kernel over its buffer
//! (`flex/`), and under `Autodiff<Flex>` (training on the CPU) they are one graph node each
//! whose backward pass is a kernel too (`autodiff.rs`). On every other backend (GPU, ndarray,
//! other autodiff checkpointing strategies) they call Burn's own operations. All paths agree
//! to float rounding, gradients included (tested below).
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::{Distribution, Tensor};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let x = Tensor::<B, 2>::random([4, 64], Distribution::Normal(0.0, 1.0), &device).require_grad();
//! let gamma = Tensor::<B, 1>::ones([64], &device).require_grad();
//! let beta = Tensor::<B, 1>::zeros([64], &device).require_grad();
//! let y = miga_kernels::layer_norm(x.clone(), gamma.clone(), Some(beta), 1e-5);
//! let y = miga_kernels::softmax_last(miga_kernels::gelu(y));
//! let grads = (y * x.clone()).sum().backward();
//! assert_eq!(x.grad(&grads).unwrap().dims(), [4, 64]);
//! assert_eq!(gamma.grad(&grads).unwrap().dims(), [64]);
//! ```

use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod flex;
pub mod nn;
#[cfg(feature = "flex")]
mod primitive;
pub mod random;

mod activation;
mod adamw;
mod depthwise;
mod layout;
mod matmul;
mod norm;
mod rel_pos;
mod temporal;
#[cfg(test)]
mod testing;

pub use activation::{gelu, masked_softmax_last, softmax_last};
pub use adamw::{AdamWUpdate, adamw_update};
pub use depthwise::depthwise_conv3d;
pub(crate) use depthwise::grouped_conv3d;
pub use layout::{contiguous, narrow, swap_heads};
pub use matmul::matmul;
pub(crate) use matmul::{linear, linear_on_rows};
pub(crate) use norm::{backend_layer_norm, batch_norm_by_rows};
pub use norm::{batch_norm_train, layer_norm};
pub use rel_pos::rel_pos_query;
pub(crate) use temporal::{conv2d_strided, subsample, time_taps_by_copies};
pub use temporal::{project, time_taps};

/// Runs `op` on a worker thread of rayon's global pool when `B` is Flex (alone or under
/// autodiff) and the pool has more than one thread; on the calling thread otherwise.
///
/// Flex splits each operation over rayon's pool. From a thread outside the pool every operation
/// is handed to a worker while the caller sleeps until it is done: two thread wake-ups an
/// operation, thousands a training step. From a worker, an operation forks there and the
/// caller takes its share. Wrapping a whole step (forward, backward, or an optimiser update)
/// makes that one hand-off: on 2 threads a batch-1 CMTF forward went from 5.4 to 2.8 ms and a
/// CMTF training epoch over 2,048 clips from 10.5-11.3 to 9.0-9.9 s (docs/benchmarks.md).
///
/// `op` must not wait for another thread that needs the pool (a channel, a join): it holds one
/// of the pool's threads while it runs. With a single-thread pool `op` runs where it is called,
/// so that such a wait cannot stall the pool's only thread.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let x = Tensor::<Flex, 1>::from_floats([1.0, 2.0], &device);
/// let y = miga_kernels::on_cpu_workers::<Flex, _>(|| (x.clone() * 2.0).sum().into_scalar());
/// assert_eq!(y, 6.0);
/// ```
pub fn on_cpu_workers<B: Backend, R: Send>(op: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "flex")]
    if primitive::is_flex::<B>() && !generic_only() && rayon::current_num_threads() > 1 {
        return rayon::scope(|_| op());
    }
    op()
}

/// Whether every operation takes its backend-generic formulation (the one the GPU backends
/// get), the CPU kernels off: `MIGA_KERNELS=generic` in the environment, read once.
pub fn generic_only() -> bool {
    static GENERIC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GENERIC.get_or_init(|| std::env::var("MIGA_KERNELS").is_ok_and(|v| v == "generic"))
}
