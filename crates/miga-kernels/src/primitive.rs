//! Reaching a backend's own tensor type behind a generic `Tensor<B, D>`: the fast paths check
//! the primitive's type at run time (`TypeId`) and hand every other backend back untouched.

use std::any::{Any, TypeId};

use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{DType, Tensor, TensorPrimitive};

/// Whether `B` computes on Flex: Flex itself, or Flex under Burn's autodiff.
pub(crate) fn is_flex<B: Backend>() -> bool {
    let id = TypeId::of::<B::FloatTensorPrimitive>();
    id == TypeId::of::<burn_flex::FlexTensor>()
        || id
            == TypeId::of::<
                <burn::backend::Autodiff<burn_flex::Flex> as BackendTypes>::FloatTensorPrimitive,
            >()
}

/// Whether `x` is an f32 tensor whose backend primitive is `P`.
pub(crate) fn is_f32<P: 'static, B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    !crate::generic_only()
        && TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<P>()
        && x.dtype() == DType::F32
}

/// The primitive behind `x`, which the caller checked is a `P` (with [`is_f32`]).
pub(crate) fn unwrap<P: 'static, B: Backend, const D: usize>(x: Tensor<B, D>) -> P {
    #[cfg(test)]
    crate::nn::note_cpu_kernel();
    let TensorPrimitive::Float(primitive) = x.into_primitive() else {
        unreachable!("an f32 tensor is not quantized")
    };
    cast(primitive)
}

/// The primitives behind `a` and `b` when both are f32 `P`s; both back untouched otherwise.
#[allow(clippy::type_complexity)]
pub(crate) fn unwrap_pair<P: 'static, B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Result<(P, P), (Tensor<B, D>, Tensor<B, D>)> {
    if is_f32::<P, B, D>(&a) && is_f32::<P, B, D>(&b) {
        Ok((unwrap(a), unwrap(b)))
    } else {
        Err((a, b))
    }
}

/// A primitive `P` as `B`'s tensor (`B`'s primitive is `P`).
pub(crate) fn wrap<P: 'static, B: Backend, const D: usize>(x: P) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(x)))
}

/// `f` over the primitive of `x` when it is an f32 `P` (the result of rank `E`); `x` back
/// untouched otherwise.
pub(crate) fn map_primitive<P: 'static, B: Backend, const D: usize, const E: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(P) -> P,
) -> Result<Tensor<B, E>, Tensor<B, D>> {
    if !is_f32::<P, B, D>(&x) {
        return Err(x);
    }
    Ok(wrap(f(unwrap(x))))
}

/// `x` as `U`, which the caller checked is `T` (by `TypeId`).
fn cast<T: 'static, U: 'static>(x: T) -> U {
    *(Box::new(x) as Box<dyn Any>)
        .downcast::<U>()
        .expect("the caller checked that the types are the same")
}
