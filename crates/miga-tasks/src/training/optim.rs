//! The optimiser of every run: Burn's AdamW with a fused CPU update, its steps on the CPU
//! pool's threads.

use burn::module::AutodiffModule;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, GradientsParams, MultiGradientsParams,
    Optimizer, SimpleOptimizer,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Burn's AdamW (its default betas and epsilon) with each parameter's update as one pass on
/// the CPU ([`miga_kernels::adamw_update`]; Burn's makes 13 tensors a parameter). Its state is
/// Burn's `AdamWState`, so checkpoints are the same records; the first step (which creates the
/// moments) and other backends run Burn's own `AdamW`.
#[derive(Clone)]
pub(super) struct FusedAdamW {
    burn: AdamW,
    update: miga_kernels::AdamWUpdate,
}

impl FusedAdamW {
    pub(super) fn new(weight_decay: f32) -> Self {
        let (beta_1, beta_2, epsilon) = (0.9, 0.999, 1e-5);
        Self {
            burn: AdamWConfig::new()
                .with_beta_1(beta_1)
                .with_beta_2(beta_2)
                .with_epsilon(epsilon)
                .with_weight_decay(weight_decay)
                .build(),
            update: miga_kernels::AdamWUpdate {
                lr: 0.0,
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
                time: 0,
            },
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let Some(AdamWState {
            momentum:
                AdaptiveMomentumState {
                    time,
                    moment_1,
                    moment_2,
                    max_moment_2: None,
                },
        }) = state
        else {
            return self.burn.step(lr, tensor, grad, state);
        };
        let update = miga_kernels::AdamWUpdate {
            lr,
            time: time + 1,
            ..self.update
        };
        let state = |time, moment_1, moment_2| {
            Some(AdamWState::new(AdaptiveMomentumState::new(
                time, moment_1, moment_2,
            )))
        };
        match miga_kernels::adamw_update(tensor, grad, moment_1, moment_2, &update) {
            Ok([param, moment_1, moment_2]) => (param, state(update.time, moment_1, moment_2)),
            Err([tensor, grad, moment_1, moment_2]) => {
                self.burn
                    .step(lr, tensor, grad, state(time, moment_1, moment_2))
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

/// An optimiser whose updates run on the CPU pool's threads ([`miga_kernels::on_cpu_workers`]):
/// an AdamW update is a few operations per parameter tensor, each otherwise handed to the pool
/// from the training thread.
#[derive(Clone)]
pub(super) struct OnCpuWorkers<O>(pub(super) O);

impl<M, B, O> Optimizer<M, B> for OnCpuWorkers<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        let inner = &mut self.0;
        miga_kernels::on_cpu_workers::<B, _>(move || inner.step(lr, module, grads))
    }

    fn step_multi(&mut self, lr: f64, module: M, grads: MultiGradientsParams) -> M {
        let inner = &mut self.0;
        miga_kernels::on_cpu_workers::<B, _>(move || inner.step_multi(lr, module, grads))
    }

    fn to_record(&self) -> Self::Record {
        self.0.to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self(self.0.load_record(record))
    }
}
#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::optim::adaptor::OptimizerAdaptor;

    use super::*;

    /// The fused AdamW follows Burn's over several steps (the first one is Burn's own).
    #[test]
    fn fused_adamw_matches_burns() {
        type B = Autodiff<Flex>;
        type Model = burn::nn::Linear<B>;
        let device = Default::default();
        let _rng = crate::rng_lock();
        B::seed(&device, 3);
        // Parameters are initialised on first use: use them once so that every clone starts
        // from the same values.
        let start = burn::nn::LinearConfig::new(300, 7).init::<B>(&device);
        let initial = start.weight.val().into_data();
        let _ = start.bias.as_ref().map(|b| b.val());
        let x = Tensor::<B, 2>::random([5, 300], burn::tensor::Distribution::Default, &device);
        let train = |optimizer: &mut dyn FnMut(Model, GradientsParams) -> Model| {
            let mut model = start.clone();
            for step in 0..4 {
                let loss = (model.forward(x.clone()) * (step as f64 + 1.0))
                    .powi_scalar(2)
                    .sum();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer(model, grads);
            }
            model.weight.val().into_data()
        };
        let mut fused = OptimizerAdaptor::<_, Model, B>::from(FusedAdamW::new(0.05));
        let mut burn = AdamWConfig::new()
            .with_weight_decay(0.05)
            .init::<B, Model>();
        let ours = train(&mut |m, g| fused.step(1e-2, m, g));
        let theirs = train(&mut |m, g| burn.step(1e-2, m, g));
        assert_ne!(ours, initial);
        ours.assert_approx_eq::<f32>(&theirs, burn::tensor::Tolerance::absolute(1e-6));
    }
}
