//! Layers whose formulation is chosen for the backend in one place, [`formulation`]: models
//! hold these modules and call `forward`, whatever the backend.
//!
//! On a CPU backend (Flex or ndarray, alone or under autodiff) a layer takes miga's CPU
//! reformulations and, on Flex, its kernels: vectorised, multi-threaded kernels over Flex's
//! buffers, one graph node each under autodiff, a `(k, 1)` convolution as one product with
//! time-shifted copies, a depthwise Conv3d as a direct kernel. On the GPU backends (wgpu,
//! Vulkan, Metal, CUDA) it takes Burn's own operations: Burn's linear, layer norm, batch norm,
//! grouped Conv3d, Conv2d (at inference) and dropout, which they run as batched kernels. `MIGA_KERNELS=generic` makes
//! the CPU backends take Burn's formulation too (see [`crate::generic_only`]), and
//! `forward_as` runs either formulation on any backend, so that each can be checked against the
//! other.
//!
//! The modules keep Burn's parameter names and module names (`Linear`'s `weight` `[in, out]` and
//! `bias`, the norms' `gamma` and `beta`), so checkpoints and PyTorch key remaps are the same
//! as with Burn's layers.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use miga_kernels::nn::{Formulation, LayerNormConfig, formulation};
//!
//! let device = Default::default();
//! let norm = LayerNormConfig::new(8).with_epsilon(1e-6).init::<Flex>(&device);
//! let y = norm.forward(Tensor::<Flex, 2>::ones([2, 8], &device));
//! assert_eq!(y.dims(), [2, 8]);
//! # if !miga_kernels::generic_only() {
//! assert_eq!(formulation::<Flex>(), Formulation::Cpu);
//! # }
//! ```

use burn::tensor::backend::Backend;

mod batch_norm;
mod depthwise_conv3d;
mod dropout;
mod layer_norm;
mod linear;
mod temporal_conv;

pub use batch_norm::BatchNorm;
pub use depthwise_conv3d::{DepthwiseConv3d, DepthwiseConv3dConfig};
pub use dropout::{Dropout, DropoutConfig};
pub use layer_norm::{LayerNorm, LayerNormConfig};
pub use linear::Linear;
pub use temporal_conv::{TemporalConv, TemporalConvConfig};

/// How a layer computes on a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Formulation {
    /// miga's CPU kernels and reformulations (Flex).
    Cpu,
    /// Burn's own operations, batched (the GPU backends, ndarray).
    Burn,
}

/// The formulation every layer takes on backend `B`: [`Formulation::Cpu`] on the CPU backends
/// (Flex and ndarray, alone or under Burn's autodiff) unless `MIGA_KERNELS=generic`,
/// [`Formulation::Burn`] on the GPU backends.
pub fn formulation<B: Backend>() -> Formulation {
    if is_cpu::<B>() && !crate::generic_only() {
        Formulation::Cpu
    } else {
        Formulation::Burn
    }
}

/// Whether `B` is one of the CPU backends this build knows, alone or under Burn's autodiff.
fn is_cpu<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    if crate::primitive::is_flex::<B>() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    {
        use burn::tensor::backend::BackendTypes;
        use burn_ndarray::{NdArray, NdArrayTensor};
        use std::any::TypeId;
        type Autodiff = burn::backend::Autodiff<NdArray>;
        let id = TypeId::of::<B::FloatTensorPrimitive>();
        if id == TypeId::of::<NdArrayTensor>()
            || id == TypeId::of::<<Autodiff as BackendTypes>::FloatTensorPrimitive>()
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
thread_local! {
    /// Tensors taken by a CPU kernel on this thread: the layers' tests check that their CPU
    /// formulation really reaches the kernels (a Burn change that made the backend check miss
    /// would otherwise only make them slow).
    static KERNEL_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a tensor taken by a CPU kernel on this thread.
#[cfg(test)]
pub(crate) fn note_cpu_kernel() {
    KERNEL_CALLS.with(|calls| calls.set(calls.get() + 1));
}

/// How many tensors CPU kernels have taken on this thread.
#[cfg(all(test, feature = "flex"))]
fn cpu_kernel_calls() -> usize {
    KERNEL_CALLS.with(|calls| calls.get())
}

/// Runs `forward` and tells whether it reached a CPU kernel on this thread.
#[cfg(all(test, feature = "flex"))]
pub(crate) fn reaches_cpu_kernels<R>(forward: impl FnOnce() -> R) -> bool {
    let before = cpu_kernel_calls();
    forward();
    cpu_kernel_calls() > before
}

/// The largest difference between `a` and `b` (same shape) scaled by `b`'s largest magnitude
/// (at least 1), printed as measured and checked against `tolerance`.
#[cfg(all(test, feature = "flex"))]
pub(crate) fn assert_close(
    what: &str,
    a: &burn::tensor::TensorData,
    b: &burn::tensor::TensorData,
    tolerance: f32,
) {
    assert_eq!(a.shape, b.shape, "{what}");
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let error = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    eprintln!("measured {what}: {error:e} (tolerance {tolerance:e})");
    assert!(error <= tolerance, "{what}: {error:e} > {tolerance:e}");
}

/// The backend the layers' tests train on.
#[cfg(all(test, feature = "flex"))]
pub(crate) type TestBackend = burn::backend::Autodiff<burn::backend::Flex>;

/// The output of `f` on `x`, and the gradients of `sum(y * y)` with respect to `x` and `weight`
/// (each run on its own graph), under autodiff on Flex.
#[cfg(all(test, feature = "flex"))]
pub(crate) fn values_and_gradients<const D: usize, const W: usize>(
    x: &burn::tensor::Tensor<TestBackend, D>,
    weight: &burn::tensor::Tensor<TestBackend, W>,
    f: &dyn Fn(burn::tensor::Tensor<TestBackend, D>) -> burn::tensor::Tensor<TestBackend, D>,
) -> [burn::tensor::TensorData; 3] {
    let x = x.clone().require_grad();
    let y = f(x.clone());
    let grads = (y.clone() * y.clone()).sum().backward();
    [
        y.into_data(),
        x.grad(&grads).unwrap().into_data(),
        weight.grad(&grads).unwrap().into_data(),
    ]
}

/// Checks that `forward` on Flex reaches the CPU kernels (unless `MIGA_KERNELS=generic`).
#[cfg(all(test, feature = "flex"))]
pub(crate) fn assert_cpu_path<R>(forward: impl FnOnce() -> R) {
    assert_eq!(
        reaches_cpu_kernels(forward),
        !crate::generic_only(),
        "the CPU formulation on Flex must reach the CPU kernels"
    );
}
