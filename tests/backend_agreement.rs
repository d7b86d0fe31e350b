//! The same computations on Flex (the reference CPU backend) and on another compiled backend,
//! compared element by element (the scaled error of `miga::agreement`, a tolerance per check).
//! Whole models are also compared with their PyTorch reference outputs and gradients (the
//! fixtures written by `scripts/`, run through `miga::check`, whose tolerances they use) on
//! both. Operation tolerances here are at most 10x the worst error measured on Flex and on
//! wgpu over Mesa's software driver (AMD EPYC VM, 2026-12-06; docs/testing.md).
//!
//! The other device is `wgpu` unless `MIGA_AGREEMENT_DEVICE` names another (`cuda`, `vulkan`).
//! When it is not compiled in or not usable here the comparison with it is skipped (counted;
//! see `miga::datasets::skip_test`), unless `MIGA_REQUIRE_AGREEMENT=1` or `MIGA_NO_SKIP=1`
//! (CI sets both), which turn that into a failure.

use burn::nn::LayerNormConfig;
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, conv3d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{TensorData, activation};
use miga::agreement::{Probe, check, seed_params, seeded_tensor};
use miga::device::{DeviceSpec, probe};

/// The device under test, or `None` (with a message) when it cannot run here.
fn other_device(name: &str) -> Option<DeviceSpec> {
    let device = std::env::var("MIGA_AGREEMENT_DEVICE").unwrap_or_else(|_| "wgpu".into());
    let required = std::env::var("MIGA_REQUIRE_AGREEMENT").is_ok_and(|v| v == "1");
    let spec: DeviceSpec = device.parse().expect("MIGA_AGREEMENT_DEVICE is a device");
    match probe(spec) {
        Ok(_) => Some(spec),
        Err(err) => {
            assert!(!required, "{name}: {err}");
            miga::datasets::skip_test(&format!("{name} on {spec}: {err}"));
            None
        }
    }
}

fn assert_agrees(name: &str, p: &impl Probe, tolerance: f32) {
    let Some(spec) = other_device(name) else {
        return;
    };
    let agreement = check(p, DeviceSpec::CPU, spec).unwrap_or_else(|err| panic!("{name}: {err}"));
    eprintln!(
        "measured {name}: cpu vs {spec}: {:e} (tolerance {tolerance:e})",
        agreement.max_error()
    );
    assert!(
        agreement.max_error() <= tolerance,
        "{name}: {spec} differs from cpu by {:?}",
        agreement.errors
    );
}

/// Depthwise-style grouped 3D convolution with temporal and spatial stride, as MViTv2 pools.
struct Conv3dGrouped;
impl Probe for Conv3dGrouped {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        let x = seeded_tensor::<B, 5>([2, 8, 5, 9, 9], 1, device);
        let weight = seeded_tensor::<B, 5>([8, 2, 3, 3, 3], 2, device) * 0.2;
        let bias = seeded_tensor::<B, 1>([8], 3, device);
        let options = ConvOptions::new([1, 2, 2], [1, 1, 1], [1, 1, 1], 4);
        vec![conv3d(x, weight, Some(bias), options).into_data()]
    }
}

#[test]
fn conv3d_with_groups_and_stride() {
    assert_agrees("conv3d", &Conv3dGrouped, 2e-6);
}

/// LayerNorm with MViTv2's eps and seeded (not unit) gamma and beta.
struct LayerNorm;
impl Probe for LayerNorm {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        let norm = LayerNormConfig::new(96)
            .with_epsilon(1e-6)
            .init::<B>(device);
        let norm = seed_params(norm, 4);
        let x = seeded_tensor::<B, 3>([2, 50, 96], 5, device) * 3.0 + 0.5;
        vec![norm.forward(x).into_data()]
    }
}

#[test]
fn layer_norm() {
    assert_agrees("layer_norm", &LayerNorm, 1e-6);
}

/// Attention-shaped batched matmul, with a broadcast batch dimension on one side.
struct BatchedMatmul;
impl Probe for BatchedMatmul {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        let q = seeded_tensor::<B, 4>([2, 3, 49, 32], 6, device);
        let k = seeded_tensor::<B, 4>([2, 3, 50, 32], 7, device);
        let shared = seeded_tensor::<B, 4>([1, 3, 32, 17], 8, device);
        vec![
            q.clone().matmul(k.swap_dims(2, 3)).into_data(),
            q.matmul(shared).into_data(),
        ]
    }
}

#[test]
fn batched_matmul_with_broadcasting() {
    assert_agrees("matmul", &BatchedMatmul, 1e-6);
}

/// Softmax over the last and over a middle dimension, with large logits.
struct Softmax;
impl Probe for Softmax {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        let x = seeded_tensor::<B, 3>([4, 7, 33], 9, device) * 20.0;
        vec![
            activation::softmax(x.clone(), 2).into_data(),
            activation::softmax(x, 1).into_data(),
        ]
    }
}

#[test]
fn softmax() {
    assert_agrees("softmax", &Softmax, 1e-6);
}

/// Exact (erf) GELU, as MViTv2 and Swin use it.
struct Gelu;
impl Probe for Gelu {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        let x = seeded_tensor::<B, 2>([16, 256], 10, device) * 6.0;
        vec![activation::gelu(x).into_data()]
    }
}

#[test]
fn gelu() {
    assert_agrees("gelu", &Gelu, 7e-7);
}

/// The layout shuffles of 2s-AGCN's `data_bn` and person pooling: permute, reshape and means
/// over a middle dimension.
struct PermuteReshapeMean;
impl Probe for PermuteReshapeMean {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        let (n, c, t, v, m) = (2, 3, 6, 5, 2);
        let x = seeded_tensor::<B, 5>([n, c, t, v, m], 11, device);
        let flat = x
            .clone()
            .permute([0, 4, 3, 1, 2])
            .reshape([n, m * v * c, t]);
        let back = flat
            .clone()
            .reshape([n, m, v, c, t])
            .permute([0, 1, 3, 4, 2])
            .reshape([n * m, c, t, v]);
        let pooled = back.clone().reshape([n, m, c, t, v]).mean_dim(1);
        vec![flat.into_data(), back.into_data(), pooled.into_data()]
    }
}

#[test]
fn permute_reshape_and_mean() {
    assert_agrees("permute_reshape_mean", &PermuteReshapeMean, 0.0);
}

/// A 1x1 convolution over a batch (2s-AGCN's `down`, 8 to 16 channels): with autotuning,
/// cubecl 0.10 may pick its `conv_im2col_1x1` kernel, which gets this shape wrong.
struct Conv1x1;
impl Probe for Conv1x1 {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        let x = seeded_tensor::<B, 4>([4, 8, 20, 18], 12, device);
        let weight = seeded_tensor::<B, 4>([16, 8, 1, 1], 13, device);
        let bias = seeded_tensor::<B, 1>([16], 14, device);
        let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        vec![conv2d(x, weight, Some(bias), options).into_data()]
    }
}

#[test]
fn conv2d_1x1_over_a_batch() {
    assert_agrees("conv2d_1x1", &Conv1x1, 1e-6);
}

/// MViT's pooling: a strided depthwise 3D convolution (attention pooling) and the separable
/// max pooling of the skip connection, padded, on mostly negative values (padding must act as
/// -infinity).
struct MvitPooling;
impl Probe for MvitPooling {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        use burn::tensor::module::{max_pool1d, max_pool2d};
        let x = seeded_tensor::<B, 5>([4, 8, 3, 9, 13], 15, device);
        let weight = seeded_tensor::<B, 5>([8, 1, 3, 3, 3], 16, device);
        let options = burn::tensor::ops::ConvOptions::new([2, 2, 2], [1, 1, 1], [1, 1, 1], 8);
        let pooled = conv3d(x.clone(), weight, None, options);
        let negative = x.reshape([4, 8 * 3, 9, 13]) - 2.0;
        let spatial = max_pool2d(negative, [3, 3], [2, 2], [1, 1], [1, 1], false);
        let temporal = max_pool1d(
            spatial
                .clone()
                .reshape([4, 8, 3, 35])
                .swap_dims(2, 3)
                .reshape([4, 280, 3]),
            3,
            2,
            1,
            1,
            false,
        );
        vec![
            pooled.into_data(),
            spatial.into_data(),
            temporal.into_data(),
        ]
    }
}

#[test]
fn mvit_pooling() {
    assert_agrees("mvit_pooling", &MvitPooling, 1e-6);
}

/// A parity check of `miga::check` (a committed reference fixture) on Flex and on the other
/// device, within the check's own tolerance.
fn assert_check(name: &str) {
    let check = miga::check::find(name).unwrap();
    let fixtures = miga::check::Fixtures::in_repository();
    let mut devices = vec![DeviceSpec::CPU];
    devices.extend(other_device(name));
    for device in devices {
        let outcome = miga::check::run(check, &fixtures, device);
        for (what, error) in &outcome.errors {
            if *error > check.tolerance {
                eprintln!("  {name} on {device}: {what}: {error:e}");
            }
        }
        eprintln!("measured {outcome}");
        assert!(outcome.passed, "{outcome}");
    }
}

fn assert_checks(prefix: &str) {
    let names: Vec<&str> = miga::check::CHECKS
        .iter()
        .filter(|c| c.name.starts_with(prefix))
        .map(|c| c.name)
        .collect();
    assert!(!names.is_empty(), "no check starts with {prefix}");
    for name in names {
        assert_check(name);
    }
}

#[test]
fn agcn_matches_the_reference_on_its_three_layouts() {
    assert_checks("forward/agcn/");
}

#[test]
fn mvit_matches_torchvision() {
    assert_checks("forward/mvit/");
}

#[test]
fn fusion_modules_match_their_pytorch_twins() {
    assert_checks("forward/cmtf");
    assert_checks("forward/interfusion");
}

#[test]
fn swin_and_swinface_match_their_references() {
    assert_checks("forward/swin/");
}

#[test]
fn full_size_mvit_v2_s_matches_torchvision() {
    assert_check("full/mvit_v2_s");
}

#[test]
fn full_size_swin_t_matches_timm() {
    assert_check("full/swin_t");
}

#[test]
fn full_size_swinface_matches_its_reference_code() {
    assert_check("full/swinface");
}

#[test]
fn full_width_agcn_matches_the_reference_on_kinetics_and_imigue() {
    assert_checks("full/agcn_");
}

#[test]
fn backbone_gradients_match_pytorch() {
    for name in ["mvit", "agcn", "swin_t", "swinface"] {
        assert_check(&format!("gradients/{name}"));
    }
}

#[test]
fn fusion_gradients_match_pytorch() {
    assert_checks("gradients/cmtf");
    assert_checks("gradients/interfusion");
}

/// Every check runs in one of the tests above.
#[test]
fn every_check_is_tested() {
    let tested = [
        "forward/agcn/",
        "forward/mvit/",
        "forward/cmtf",
        "forward/interfusion",
        "forward/swin/",
        "full/",
        "gradients/",
    ];
    for check in miga::check::CHECKS {
        assert!(
            tested.iter().any(|p| check.name.starts_with(p)),
            "{} is in no test",
            check.name
        );
    }
}
