//! The fast paths of [`super`] under autodiff on the CPU backend (`Autodiff<Flex>`, Burn's
//! training backend on the CPU): each operation is one node of the autodiff graph whose forward
//! and backward passes are the vectorised kernels of [`super::flex`], in place of the chain of
//! element-wise nodes Burn composes them from (a layer norm is about ten nodes forward and
//! twenty backward, each a pass over the tensor on one thread).

use std::any::TypeId;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};

use super::flex::{self, LayerNormSaved, cast};

/// The autodiff tensor of `Autodiff<Flex>` (Burn does not name the type).
type AutodiffFlexTensor = <Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive;

/// Whether `x` is an f32 tensor of `Autodiff<Flex>`.
fn is_autodiff_flex_f32<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<AutodiffFlexTensor>()
        && x.dtype() == DType::F32
}

/// The autodiff tensor behind `x` (checked with [`is_autodiff_flex_f32`]).
fn into_autodiff<B: Backend, const D: usize>(x: Tensor<B, D>) -> AutodiffFlexTensor {
    let TensorPrimitive::Float(primitive) = x.into_primitive() else {
        unreachable!("an f32 tensor is not quantized")
    };
    cast(primitive)
}

/// An autodiff tensor as `B`'s (`B` is `Autodiff<Flex>`).
fn from_autodiff<B: Backend, const D: usize>(x: AutodiffFlexTensor) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(x)))
}

/// [`super::gelu`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn gelu<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !is_autodiff_flex_f32(&x) {
        return Err(x);
    }
    let x = into_autodiff(x);
    let y = match Gelu
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = flex::gelu_forward(x.primitive.clone());
            prep.finish(x.primitive, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(flex::gelu_forward(x.primitive)),
    };
    Ok(from_autodiff(y))
}

/// GELU's backward pass; keeps the input.
#[derive(Debug)]
struct Gelu;

impl Backward<Flex, 1> for Gelu {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Ops {
            parents,
            node,
            state: x,
        } = ops;
        unary::<Flex, _>(parents, node, grads, |grad| flex::gelu_backward(&x, grad));
    }
}

/// [`super::softmax_last`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !is_autodiff_flex_f32(&x) {
        return Err(x);
    }
    let x = into_autodiff(x);
    let y = match Softmax
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = flex::softmax_forward(x.primitive);
            prep.finish(y.clone(), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(flex::softmax_forward(x.primitive)),
    };
    Ok(from_autodiff(y))
}

/// The softmax's backward pass; keeps the output.
#[derive(Debug)]
struct Softmax;

impl Backward<Flex, 1> for Softmax {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Ops {
            parents,
            node,
            state: y,
        } = ops;
        unary::<Flex, _>(parents, node, grads, |grad| {
            flex::softmax_backward(&y, grad)
        });
    }
}

/// [`super::swap_heads`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn swap_heads<B: Backend>(x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    if !is_autodiff_flex_f32(&x) {
        return Err(x);
    }
    let x = into_autodiff(x);
    let y = flex::swap_heads_forward(x.primitive);
    let y = SwapHeads
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateless(y);
    Ok(from_autodiff(y))
}

/// The backward pass of the head swap: the same swap of the gradient.
#[derive(Debug)]
struct SwapHeads;

impl Backward<Flex, 1> for SwapHeads {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<Flex, _>(ops.parents, ops.node, grads, flex::swap_heads_forward);
    }
}

/// [`super::layer_norm`] under `Autodiff<Flex>`; gives the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(super) fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, 1>, Tensor<B, 1>)> {
    if !(is_autodiff_flex_f32(&x) && gamma.dtype() == DType::F32 && beta.dtype() == DType::F32) {
        return Err((x, gamma, beta));
    }
    let (x, gamma, beta) = (into_autodiff(x), into_autodiff(gamma), into_autodiff(beta));
    let prep = LayerNorm
        .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
        .compute_bound()
        .stateful();
    let (y, saved) =
        flex::layer_norm_forward(x.primitive, gamma.primitive, Some(beta.primitive), epsilon);
    let y = match prep {
        OpsKind::Tracked(prep) => prep.finish(saved, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Ok(from_autodiff(y))
}

/// The layer norm's backward pass, to the input, gamma and beta.
#[derive(Debug)]
struct LayerNorm;

impl Backward<Flex, 3> for LayerNorm {
    type State = LayerNormSaved;

    fn backward(self, ops: Ops<LayerNormSaved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (dx, d_gamma, d_beta) = flex::layer_norm_backward(&ops.state, grad);
        for (parent, grad) in ops.parents.into_iter().zip([dx, d_gamma, d_beta]) {
            if let Some(parent) = parent {
                grads.register::<Flex>(parent.id, grad);
            }
        }
    }
}
