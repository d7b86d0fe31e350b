//! The fast paths of [`super`] under autodiff on the CPU backend (`Autodiff<Flex>`, Burn's
//! training backend on the CPU): each operation is one node of the autodiff graph whose forward
//! and backward passes are the vectorised kernels of [`super::flex`], in place of the chain of
//! element-wise nodes Burn composes them from (a layer norm is eleven nodes, each with its own
//! backward pass, each a pass over the tensor on one thread).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, OpsPrep};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{DType, Tensor};
use burn_flex::{Flex, FlexTensor};

use crate::flex::{self, LayerNormSaved};
use crate::primitive::{is_f32, map_primitive, unwrap, unwrap_pair, wrap};

/// The autodiff tensor of `Autodiff<Flex>` (Burn does not name the type).
type AutodiffFlexTensor = <Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive;

/// [`super::gelu`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn gelu<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, |x| {
        unary_op(x, flex::gelu_forward, flex::gelu_backward, Keep::Input)
    })
}

/// [`super::softmax_last`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, |x| {
        unary_op(
            x,
            flex::softmax_forward,
            flex::softmax_backward,
            Keep::Output,
        )
    })
}

/// [`super::masked_softmax_last`] under `Autodiff<Flex>` (`keep` is constant: no gradient);
/// gives the tensor back on any other backend. Its backward pass is the softmax's: the output
/// is 0 at masked keys, and so is their gradient.
pub(super) fn masked_softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    keep: &[f32],
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, |x| {
        unary_op(
            x,
            |x| flex::masked_softmax_forward(x, keep),
            flex::softmax_backward,
            Keep::Output,
        )
    })
}

/// Which tensor a one-input operation keeps for its backward pass.
enum Keep {
    Input,
    Output,
}

/// A one-input operation as one graph node: `forward` computes it, `backward` maps the
/// output's gradient to the input's, given the kept tensor.
fn unary_op(
    x: AutodiffFlexTensor,
    forward: impl FnOnce(FlexTensor) -> FlexTensor,
    backward: fn(&FlexTensor, FlexTensor) -> FlexTensor,
    keep: Keep,
) -> AutodiffFlexTensor {
    let prep = Unary { backward }
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful();
    match prep {
        OpsKind::Tracked(prep) => {
            let (kept, y) = match keep {
                Keep::Input => (x.primitive.clone(), forward(x.primitive)),
                Keep::Output => {
                    let y = forward(x.primitive);
                    (y.clone(), y)
                }
            };
            prep.finish(kept, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive)),
    }
}

/// The backward pass of [`unary_op`]; its state is the kept tensor.
#[derive(Debug)]
struct Unary {
    backward: fn(&FlexTensor, FlexTensor) -> FlexTensor,
}

impl Backward<Flex, 1> for Unary {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_gradients(ops, grads, |state, grad, _| {
            [Some((self.backward)(state, grad))]
        });
    }
}

/// [`super::swap_heads`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn swap_heads<B: Backend>(x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    map_primitive(x, |x: AutodiffFlexTensor| {
        let y = flex::swap_heads_forward(x.primitive);
        SwapHeads
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateless(y)
    })
}

/// The backward pass of the head swap: the same swap of the gradient.
#[derive(Debug)]
struct SwapHeads;

impl Backward<Flex, 1> for SwapHeads {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_gradients(ops, grads, |_, grad, _| {
            [Some(flex::swap_heads_forward(grad))]
        });
    }
}

/// [`super::contiguous`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn contiguous<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, |x: AutodiffFlexTensor| {
        let y = flex::contiguous(&x.primitive);
        Identity
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateless(y)
    })
}

/// The backward pass of a copy: the gradient as it is.
#[derive(Debug)]
struct Identity;

impl Backward<Flex, 1> for Identity {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_gradients(ops, grads, |_, grad, _| [Some(grad)]);
    }
}

/// [`super::time_taps`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn time_taps<B: Backend>(
    x: Tensor<B, 4>,
    k: usize,
    stride: usize,
) -> Result<Tensor<B, 3>, Tensor<B, 4>> {
    map_primitive(x, |x: AutodiffFlexTensor| {
        let frames = x.primitive.layout().shape()[2];
        let y = flex::time_taps_forward(x.primitive, k, stride);
        TimeTaps { frames, k, stride }
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateless(y)
    })
}

/// The backward pass of the time taps: column gradients added back to their frames.
#[derive(Debug)]
struct TimeTaps {
    frames: usize,
    k: usize,
    stride: usize,
}

impl Backward<Flex, 1> for TimeTaps {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_gradients(ops, grads, |_, grad, _| {
            [Some(flex::time_taps_backward(
                grad,
                self.frames,
                self.k,
                self.stride,
            ))]
        });
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
    if !(is_f32::<AutodiffFlexTensor, B, D>(&x)
        && gamma.dtype() == DType::F32
        && beta.dtype() == DType::F32)
    {
        return Err((x, gamma, beta));
    }
    let (x, gamma, beta): (AutodiffFlexTensor, AutodiffFlexTensor, AutodiffFlexTensor) =
        (unwrap(x), unwrap(gamma), unwrap(beta));
    let prep = LayerNorm.prepare([x.node.clone(), gamma.node.clone(), beta.node.clone()]);
    let (y, saved) =
        flex::layer_norm_forward(x.primitive, gamma.primitive, Some(beta.primitive), epsilon);
    Ok(wrap(finish(prep, saved, y)))
}

/// The layer norm's backward pass, to the input, gamma and beta.
#[derive(Debug)]
struct LayerNorm;

impl Backward<Flex, 3> for LayerNorm {
    type State = LayerNormSaved;

    fn backward(self, ops: Ops<LayerNormSaved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_gradients(ops, grads, |saved, grad, _| {
            let (dx, d_gamma, d_beta) = flex::layer_norm_backward(saved, grad);
            [dx, d_gamma, d_beta].map(Some)
        });
    }
}

/// The output `y` of a graph node prepared over its parents (compute-bound: its backward pass
/// is not recomputed), with `state` for that pass where the graph tracks gradients (dropped
/// where it does not).
fn finish<O, const N: usize>(
    prep: OpsPrep<O, Flex, O::State, NoCheckpointing, N>,
    state: O::State,
    y: FlexTensor,
) -> AutodiffFlexTensor
where
    O: Backward<Flex, N>,
    O::State: Clone + Send + std::fmt::Debug + 'static,
{
    match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// A node's backward pass over its `N` parents: `gradients` maps the node's state, its output's
/// gradient and which parents take a gradient to each parent's gradient, and those are
/// registered, each added to its parent's gradient so far (in parallel: Burn's own
/// registration adds with Flex's single-threaded addition).
fn register_gradients<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    gradients: impl FnOnce(&S, FlexTensor, [bool; N]) -> [Option<FlexTensor>; N],
) {
    accumulate_gradients(ops, grads, |state, grad, so_far| {
        let want = so_far.each_ref().map(Option::is_some);
        let d = gradients(state, grad, want);
        let mut so_far = so_far.into_iter();
        d.map(|d| match (d, so_far.next().flatten()) {
            (Some(d), Some(Some(so_far))) => Some(flex::add(d, so_far)),
            (d, _) => d,
        })
    });
}

/// A node's backward pass over its `N` parents that adds to the parents' gradients itself:
/// `gradients` maps the node's state, its output's gradient and, for each parent, `None`
/// where it takes no gradient and else its gradient so far (`Some(None)`: none yet), to each
/// parent's whole gradient, which is registered in place of the one so far.
fn accumulate_gradients<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    gradients: impl FnOnce(&S, FlexTensor, [Option<Option<FlexTensor>>; N]) -> [Option<FlexTensor>; N],
) {
    let grad = grads.consume::<Flex>(&ops.node);
    let so_far = ops.parents.each_ref().map(|parent| {
        parent.as_ref().map(|parent| {
            // `Gradients` gives a gradient out only for a tensor: one with the parent's node
            // and no values stands in for it.
            let probe = AutodiffFlexTensor {
                primitive: flex::empty(),
                node: parent.clone(),
                rc: std::sync::Arc::new(parent.id),
            };
            grads.remove::<Flex>(&probe)
        })
    });
    let d = gradients(&ops.state, grad, so_far);
    for (parent, grad) in ops.parents.into_iter().zip(d) {
        if let (Some(parent), Some(grad)) = (parent, grad) {
            grads.register::<Flex>(parent.id, grad);
        }
    }
}

/// [`super::narrow`] under `Autodiff<Flex>`; gives the tensor back on any other backend.
pub(super) fn narrow<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    axis: usize,
    start: usize,
    len: usize,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_primitive(x, |x: AutodiffFlexTensor| {
        let shape = x.primitive.layout().shape().clone();
        let y = x.primitive.narrow(axis, start, len);
        Narrow { shape, axis, start }
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateless(y)
    })
}

/// The backward pass of a slice: the gradient added to the slice of the input's gradient.
#[derive(Debug)]
struct Narrow {
    shape: burn::tensor::Shape,
    axis: usize,
    start: usize,
}

impl Backward<Flex, 1> for Narrow {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        accumulate_gradients(ops, grads, |_, grad, [so_far]| {
            [so_far.map(|so_far| {
                flex::narrow_backward(so_far, &grad, &self.shape, self.axis, self.start)
            })]
        });
    }
}

/// [`super::matmul`] under `Autodiff<Flex>`; gives the operands back on any other backend.
#[allow(clippy::type_complexity)]
pub(super) fn matmul<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    let (lhs, rhs): (AutodiffFlexTensor, AutodiffFlexTensor) = unwrap_pair(lhs, rhs)?;
    let y = flex::matmul_forward(&lhs.primitive, &rhs.primitive);
    let prep = Matmul.prepare([lhs.node.clone(), rhs.node.clone()]);
    // Both operands are kept: each one's gradient needs the other.
    Ok(wrap(finish(prep, (lhs.primitive, rhs.primitive), y)))
}

/// The matrix product's backward pass, to both operands.
#[derive(Debug)]
struct Matmul;

impl Backward<Flex, 2> for Matmul {
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<(FlexTensor, FlexTensor), 2>,
        grads: &mut Gradients,
        _: &mut Checkpointer,
    ) {
        register_gradients(ops, grads, |(lhs, rhs), grad, want| {
            flex::matmul_backward(lhs, rhs, &grad, want)
        });
    }
}

/// [`super::linear`] under `Autodiff<Flex>`; gives the input back on any other backend.
pub(super) fn linear<B: Backend, const D: usize>(
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !(is_f32::<AutodiffFlexTensor, B, D>(&x) && weight.dtype() == DType::F32) {
        return Err(x);
    }
    let (x, weight): (AutodiffFlexTensor, AutodiffFlexTensor) = (unwrap(x), unwrap(weight.clone()));
    let bias: Option<AutodiffFlexTensor> = bias.map(|b| unwrap(b.clone()));
    let y = flex::linear_forward(
        &x.primitive,
        &weight.primitive,
        bias.as_ref().map(|b| &b.primitive),
    );
    // One node over the input, the weight and the bias if any.
    let (node, state) = (LinearLayer, (x.primitive, weight.primitive));
    let y = match bias {
        Some(bias) => finish(node.prepare([x.node, weight.node, bias.node]), state, y),
        None => finish(node.prepare([x.node, weight.node]), state, y),
    };
    Ok(wrap(y))
}

/// The linear layer's backward pass, to the input, the weight and the bias if any.
#[derive(Debug)]
struct LinearLayer;

impl<const N: usize> Backward<Flex, N> for LinearLayer {
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<(FlexTensor, FlexTensor), N>,
        grads: &mut Gradients,
        _: &mut Checkpointer,
    ) {
        register_gradients(ops, grads, |(x, weight), grad, want| {
            // Input, weight and (with N = 3) bias.
            let wanted = std::array::from_fn(|i| want.get(i).copied().unwrap_or(false));
            let mut d = flex::linear_backward(x, weight, &grad, wanted).into_iter();
            std::array::from_fn(|_| d.next().flatten())
        });
    }
}

/// [`super::batch_norm_train`] under `Autodiff<Flex>`: the output, and the batch means and
/// variances; gives the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(super) fn batch_norm_train<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> Result<(Tensor<B, D>, Vec<f32>, Vec<f32>), (Tensor<B, D>, Tensor<B, 1>, Tensor<B, 1>)> {
    if !(is_f32::<AutodiffFlexTensor, B, D>(&x)
        && gamma.dtype() == DType::F32
        && beta.dtype() == DType::F32)
    {
        return Err((x, gamma, beta));
    }
    let (x, gamma, beta): (AutodiffFlexTensor, AutodiffFlexTensor, AutodiffFlexTensor) =
        (unwrap(x), unwrap(gamma), unwrap(beta));
    let (y, mean, var, saved) =
        flex::batch_norm_forward(&x.primitive, &gamma.primitive, &beta.primitive, epsilon);
    let prep = BatchNorm.prepare([x.node, gamma.node, beta.node]);
    Ok((wrap(finish(prep, saved, y)), mean, var))
}

/// The batch norm's backward pass, to the input, gamma and beta.
#[derive(Debug)]
struct BatchNorm;

impl Backward<Flex, 3> for BatchNorm {
    type State = flex::BatchNormSaved;

    fn backward(
        self,
        ops: Ops<flex::BatchNormSaved, 3>,
        grads: &mut Gradients,
        _: &mut Checkpointer,
    ) {
        register_gradients(ops, grads, |saved, grad, _| {
            flex::batch_norm_backward(saved, &grad).map(Some)
        });
    }
}

/// [`super::depthwise_conv3d`] under `Autodiff<Flex>`; gives the inputs back on any other
/// backend.
#[allow(clippy::type_complexity)]
pub(super) fn depthwise_conv3d<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Result<Tensor<B, 5>, (Tensor<B, 5>, Tensor<B, 5>)> {
    let (x, weight): (AutodiffFlexTensor, AutodiffFlexTensor) = unwrap_pair(x, weight)?;
    let (y, saved) = flex::depthwise_forward(&x.primitive, &weight.primitive, stride, padding);
    let prep = Depthwise.prepare([x.node, weight.node]);
    Ok(wrap(finish(prep, saved, y)))
}

/// The depthwise convolution's backward pass, to the input and the weight.
#[derive(Debug)]
struct Depthwise;

impl Backward<Flex, 2> for Depthwise {
    type State = flex::DepthwiseSaved;

    fn backward(
        self,
        ops: Ops<flex::DepthwiseSaved, 2>,
        grads: &mut Gradients,
        _: &mut Checkpointer,
    ) {
        register_gradients(ops, grads, |saved, grad, _| {
            flex::depthwise_backward(saved, &grad).map(Some)
        });
    }
}

/// [`super::rel_pos_query`] under `Autodiff<Flex>`; gives the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(super) fn rel_pos_query<B: Backend>(
    q: Tensor<B, 3>,
    scale: f64,
    tables: [Tensor<B, 3>; 3],
) -> Result<Tensor<B, 3>, (Tensor<B, 3>, [Tensor<B, 3>; 3])> {
    if !(is_f32::<AutodiffFlexTensor, B, 3>(&q)
        && tables.iter().all(|t| is_f32::<AutodiffFlexTensor, B, 3>(t)))
    {
        return Err((q, tables));
    }
    let q: AutodiffFlexTensor = unwrap(q);
    let [t, h, w]: [AutodiffFlexTensor; 3] = tables.map(unwrap);
    let (y, saved) = flex::rel_pos_forward(
        &q.primitive,
        [&t.primitive, &h.primitive, &w.primitive],
        scale as f32,
    );
    let prep = RelPos.prepare([q.node, t.node, h.node, w.node]);
    Ok(wrap(finish(prep, saved, y)))
}

/// The relative-position columns' backward pass, to the queries and the three tables.
#[derive(Debug)]
struct RelPos;

impl Backward<Flex, 4> for RelPos {
    type State = flex::RelPosSaved;

    fn backward(self, ops: Ops<flex::RelPosSaved, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_gradients(ops, grads, |saved, grad, _| {
            flex::rel_pos_backward(saved, &grad).map(Some)
        });
    }
}
