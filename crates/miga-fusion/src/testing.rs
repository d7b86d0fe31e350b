//! Test helpers shared by the fusion modules' tests.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, ElementConversion, Tensor, TensorData};

/// Panics naming every float parameter of `model` without a non-zero gradient in `grads`.
pub fn assert_every_param_learns<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: &B::Gradients,
) {
    struct Visitor<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        missing: Vec<String>,
        count: usize,
        path: Vec<String>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Visitor<'_, B> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.count += 1;
            let learns = param
                .val()
                .grad(self.grads)
                .map(|g| g.abs().sum().into_scalar().elem::<f32>() > 0.0)
                .unwrap_or(false);
            if !learns {
                self.missing
                    .push(format!("{} {:?}", self.path.join("."), param.dims()));
            }
        }
    }
    let mut visitor = Visitor::<B> {
        grads,
        missing: Vec::new(),
        count: 0,
        path: Vec::new(),
    };
    model.visit(&mut visitor);
    assert!(visitor.count > 0);
    assert!(
        visitor.missing.is_empty(),
        "no gradient reaches {:?}",
        visitor.missing
    );
}

/// Largest absolute difference of two tensors.
pub fn max_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    (a - b).abs().max().into_scalar().elem()
}

/// A `[rows, cols]` padding mask with the last `padded[r]` steps of row `r` padded.
pub fn tail_padding<B: Backend>(
    padded: &[usize],
    cols: usize,
    device: &B::Device,
) -> Tensor<B, 2, Bool> {
    let flags: Vec<bool> = padded
        .iter()
        .flat_map(|&p| (0..cols).map(move |c| c >= cols - p))
        .collect();
    Tensor::from_data(TensorData::new(flags, [padded.len(), cols]), device)
}

/// Every float of `x` is finite.
pub fn all_finite<B: Backend, const D: usize>(x: Tensor<B, D>) -> bool {
    x.into_data()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite())
}
