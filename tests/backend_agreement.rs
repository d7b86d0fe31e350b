//! The same computations on Flex (the reference CPU backend) and on another compiled backend,
//! compared element by element (the scaled error of `miga::agreement`, a tolerance per check).
//! Whole models are also compared with their PyTorch reference outputs (fixtures written by
//! `scripts/`) on both.
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
use miga::agreement::{Probe, check, check_against, seed_params, seeded_tensor};
use miga::device::{DeviceSpec, probe};

/// Tolerances: scaled errors (`miga::agreement`), each at most 10x the worst error measured
/// on Flex and on wgpu over Mesa's software driver (AMD EPYC VM, 2026-12-06; the table in
/// docs/testing.md gives the measured values).
const AGCN: [(&str, f32); 3] = [
    ("kinetics", 2e-6),
    ("ntu-rgb-d", 2e-6),
    ("imigue-upper-hands", 4e-6),
];
const MVIT: f32 = 1e-5;

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

/// Both 2s-AGCN streams loaded from the reference fixtures (`scripts/agcn_reference.py`),
/// with the bone input computed by miga from the joints.
struct AgcnFixture {
    layout: &'static str,
}

impl AgcnFixture {
    fn dir(&self) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/miga-backbones/tests/fixtures/agcn")
            .join(self.layout)
    }

    fn io(&self) -> std::collections::BTreeMap<String, TensorData> {
        miga::backbones::tensor_io::read_tensors(self.dir().join("io.safetensors")).unwrap()
    }

    /// The reference's outputs, in the probe's order.
    fn expected(&self) -> Vec<TensorData> {
        let io = self.io();
        [
            "bones",
            "joint_logits",
            "joint_embedding",
            "bone_logits",
            "bone_embedding",
            "fused_logits",
        ]
        .iter()
        .map(|k| io[*k].clone())
        .collect()
    }
}

impl Probe for AgcnFixture {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        use burn::tensor::Tensor;
        use miga::backbones::agcn::{AgcnConfig, Graph, bones, fuse_scores};

        let graph = Graph::layout(self.layout).unwrap();
        let io = self.io();
        let adjacency = io["adjacency"].to_vec::<f32>().unwrap();
        assert_eq!(
            adjacency,
            graph.adjacency(),
            "{}: adjacency differs",
            self.layout
        );
        let joint =
            AgcnConfig::load::<B>(self.dir().join("joint.pt"), graph.clone(), device).unwrap();
        let bone =
            AgcnConfig::load::<B>(self.dir().join("bone.pt"), graph.clone(), device).unwrap();
        let joints = Tensor::<B, 5>::from_data(io["joints"].clone(), device);
        let bone_input = bones(joints.clone(), &graph);
        let j = joint.try_forward(joints).unwrap();
        let b = bone.try_forward(bone_input.clone()).unwrap();
        // The token map pools to the embedding.
        let pooled = j.tokens.clone().mean_dims(&[1, 2]).flatten::<2>(1, 3);
        let diff = (pooled - j.embedding.clone()).abs().max().into_scalar();
        assert!(burn::tensor::ElementConversion::elem::<f32>(diff) < 1e-5);
        vec![
            bone_input.into_data(),
            j.logits.clone().into_data(),
            j.embedding.into_data(),
            b.logits.clone().into_data(),
            b.embedding.into_data(),
            fuse_scores(j.logits, b.logits, 1.0).into_data(),
        ]
    }
}

/// A model probe compared with its PyTorch outputs, on the CPU and on the other device.
fn assert_matches_pytorch(name: &str, probe: &impl Probe, expected: &[TensorData], tolerance: f32) {
    let cpu = check_against(probe, DeviceSpec::CPU, expected).unwrap();
    eprintln!(
        "measured {name}: cpu vs PyTorch: {:e} {:?} (tolerance {tolerance:e})",
        cpu.max_error(),
        cpu.errors
    );
    assert!(cpu.max_error() <= tolerance, "{name}: {:?}", cpu.errors);
    if let Some(spec) = other_device(name) {
        let other = check_against(probe, spec, expected).unwrap();
        eprintln!(
            "measured {name}: {spec} vs PyTorch: {:e} {:?} (tolerance {tolerance:e})",
            other.max_error(),
            other.errors
        );
        assert!(other.max_error() <= tolerance, "{name}: {:?}", other.errors);
    }
}

fn assert_matches_reference(layout: &'static str) {
    let probe = AgcnFixture { layout };
    let tolerance = AGCN.iter().find(|(l, _)| *l == layout).expect("a layout").1;
    assert_matches_pytorch(
        &format!("agcn {layout}"),
        &probe,
        &probe.expected(),
        tolerance,
    );
}

#[test]
fn agcn_kinetics_matches_the_reference() {
    assert_matches_reference("kinetics");
}

#[test]
fn agcn_ntu_matches_the_reference() {
    assert_matches_reference("ntu-rgb-d");
}

#[test]
fn agcn_imigue_matches_the_reference() {
    assert_matches_reference("imigue-upper-hands");
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

/// MViTv2 loaded from the torchvision fixtures (`scripts/mvit_reference.py`): logits, class
/// embedding and final tokens.
struct MvitFixture {
    case: &'static str,
    weights: &'static str,
}

impl MvitFixture {
    fn file(&self, name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/miga-backbones/tests/fixtures/mvit")
            .join(self.case)
            .join(name)
    }

    fn io(&self) -> std::collections::BTreeMap<String, TensorData> {
        miga::backbones::tensor_io::read_tensors(self.file("io.safetensors")).unwrap()
    }
}

impl Probe for MvitFixture {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        use burn::config::Config;
        use burn::tensor::Tensor;
        use miga::backbones::mvit::MvitConfig;

        let config = MvitConfig::load(self.file("config.json")).unwrap();
        let model = config
            .load_checkpoint::<B>(self.file(self.weights), device)
            .unwrap();
        let x = Tensor::<B, 5>::from_data(self.io()["input"].clone(), device);
        let out = model.try_forward(x).unwrap();
        vec![
            out.logits.into_data(),
            out.embedding.into_data(),
            out.tokens.into_data(),
        ]
    }
}

#[test]
fn mvit_matches_torchvision() {
    for probe in [
        MvitFixture {
            case: "tiny",
            weights: "weights.pth",
        },
        MvitFixture {
            case: "odd",
            weights: "weights.safetensors",
        },
    ] {
        let io = probe.io();
        let expected: Vec<TensorData> = ["logits", "embedding", "tokens"]
            .iter()
            .map(|k| io[*k].clone())
            .collect();
        assert_matches_pytorch(&format!("mvit {}", probe.case), &probe, &expected, MVIT);
    }
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

/// A fusion module written again in PyTorch (`scripts/fusion_reference.py`), with random
/// weights; miga loads its state_dict and must give its outputs.
struct FusionFixture {
    case: &'static str,
}

impl FusionFixture {
    fn file(&self, name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/miga-fusion/tests/fixtures")
            .join(self.case)
            .join(name)
    }

    fn io(&self) -> std::collections::BTreeMap<String, TensorData> {
        miga::backbones::tensor_io::read_tensors(self.file("io.safetensors")).unwrap()
    }

    fn outputs(&self) -> &'static [&'static str] {
        if self.case.starts_with("cmtf") {
            &["logits", "embedding", "video_logits", "skeleton_logits"]
        } else {
            &["logits", "embedding", "face_weights", "context_weights"]
        }
    }
}

/// The fusion fixtures' inputs as CMTF takes them (`scripts/fusion_reference.py`).
fn cmtf_input<B: Backend>(
    io: &std::collections::BTreeMap<String, TensorData>,
    config: &miga::fusion::CmtfConfig,
    device: &B::Device,
) -> miga::fusion::CmtfInput<B> {
    use burn::tensor::Tensor;
    use miga::fusion::{CmtfInput, SkeletonTokens, VideoTokens};
    let mask = |k: &str| Tensor::<B, 2>::from_data(io[k].clone(), device).greater_elem(0.5);
    CmtfInput {
        video: Some(VideoTokens {
            tokens: Tensor::from_data(io["video"].clone(), device),
            class_embedding: config
                .video_class_token
                .then(|| Tensor::from_data(io["video_class"].clone(), device)),
            padding: Some(mask("video_padding")),
        }),
        skeleton: Some(SkeletonTokens {
            tokens: Tensor::from_data(io["skeleton"].clone(), device),
            padding: Some(mask("skeleton_padding")),
            pooled: false,
        }),
    }
}

/// The fusion fixtures' inputs as InterFusion takes them.
fn interfusion_input<B: Backend>(
    io: &std::collections::BTreeMap<String, TensorData>,
    device: &B::Device,
) -> miga::fusion::InterFusionInput<B> {
    use burn::tensor::Tensor;
    use miga::fusion::{InterFusionInput, Sequence};
    let float = |k: &str| Tensor::<B, 3>::from_data(io[k].clone(), device);
    let mask = |k: &str| Tensor::<B, 2>::from_data(io[k].clone(), device).greater_elem(0.5);
    InterFusionInput {
        face: Some(Sequence::new(float("face")).with_padding(mask("face_padding"))),
        expressions: io.contains_key("expressions").then(|| float("expressions")),
        context: Some(Sequence::new(float("context")).with_padding(mask("context_padding"))),
    }
}

impl Probe for FusionFixture {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        use burn::config::Config;
        use miga::backbones::load_checkpoint;
        use miga::fusion::*;

        let io = self.io();
        let weights = self.file("weights.safetensors");
        if self.case.starts_with("cmtf") {
            let config = CmtfConfig::load(self.file("config.json")).unwrap();
            let model = config.init::<B>(device).unwrap();
            let model = load_checkpoint(model, &weights, None, &[], &[]).unwrap();
            let out = model.try_forward(cmtf_input(&io, &config, device)).unwrap();
            [
                out.logits,
                out.embedding,
                out.video_logits,
                out.skeleton_logits,
            ]
            .into_iter()
            .map(|t| t.into_data())
            .collect()
        } else {
            let config = InterFusionConfig::load(self.file("config.json")).unwrap();
            let model = config.init::<B>(device).unwrap();
            let model = load_checkpoint(model, &weights, None, &[], &[]).unwrap();
            let out = model.try_forward(interfusion_input(&io, device)).unwrap();
            vec![
                out.logits.into_data(),
                out.embedding.into_data(),
                out.face_weights.unwrap().into_data(),
                out.context_weights.unwrap().into_data(),
            ]
        }
    }
}

#[test]
fn fusion_modules_match_their_pytorch_twins() {
    for (case, tolerance) in [
        ("cmtf_cross", 2e-6),
        ("cmtf_joint", 4e-6),
        ("interfusion_full", 2e-6),
        ("interfusion_late", 2e-6),
    ] {
        let probe = FusionFixture { case };
        let io = probe.io();
        let expected: Vec<TensorData> = probe.outputs().iter().map(|k| io[*k].clone()).collect();
        assert_matches_pytorch(case, &probe, &expected, tolerance);
    }
}

/// Swin and SwinFace loaded from the reference fixtures (`scripts/swin_reference.py`): timm's
/// Swin logits and pooled features; SwinFace's embedding and every head.
struct SwinFixture {
    case: &'static str,
}

impl SwinFixture {
    fn file(&self, name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/miga-backbones/tests/fixtures/swin")
            .join(self.case)
            .join(name)
    }

    fn io(&self) -> std::collections::BTreeMap<String, TensorData> {
        miga::backbones::tensor_io::read_tensors(self.file("io.safetensors")).unwrap()
    }

    /// The outputs compared, by fixture name.
    fn names(&self) -> Vec<String> {
        match self.case {
            "swin_t" => vec!["logits".into(), "embedding".into()],
            _ => std::iter::once("embedding".to_string())
                .chain(
                    miga::backbones::swin::FACE_HEADS
                        .iter()
                        .map(|h| format!("head.{}", h.name)),
                )
                .collect(),
        }
    }
}

impl Probe for SwinFixture {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        use burn::config::Config;
        use burn::tensor::Tensor;
        use miga::backbones::swin::{SwinConfig, SwinFaceConfig};

        let x = Tensor::<B, 4>::from_data(self.io()["input"].clone(), device);
        if self.case == "swin_t" {
            let model = SwinConfig::load(self.file("config.json"))
                .unwrap()
                .load_checkpoint::<B>(self.file("weights.safetensors"), device)
                .unwrap();
            let out = model.try_forward(x).unwrap();
            return vec![out.logits.unwrap().into_data(), out.embedding.into_data()];
        }
        let model = SwinFaceConfig::load(self.file("config.json"))
            .unwrap()
            .load_checkpoint::<B>(self.file("weights.pt"), device)
            .unwrap();
        let out = model.try_forward(x).unwrap();
        std::iter::once(out.embedding)
            .chain(out.heads.unwrap())
            .map(|t| t.into_data())
            .collect()
    }
}

#[test]
fn swin_and_swinface_match_their_references() {
    for (case, tolerance) in [("swin_t", 2e-6), ("swinface", 1e-5)] {
        let probe = SwinFixture { case };
        let io = probe.io();
        let expected: Vec<TensorData> = probe.names().iter().map(|k| io[k].clone()).collect();
        assert_matches_pytorch(case, &probe, &expected, tolerance);
    }
}

/// A full-size network whose every parameter and BatchNorm statistic comes from the parameter
/// stream (`miga::backbones::parity`), as `scripts/full_parity.py` filled the reference's: the
/// committed fixture is the reference outputs (a strided sample of large ones) and the names
/// and shapes of the filled tensors. The weights are rebuilt here, written under the
/// reference's names, and loaded through miga's strict loaders.
struct FullSize {
    case: &'static str,
}

impl FullSize {
    fn file(&self, extension: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/miga-backbones/tests/fixtures/full")
            .join(format!("{}.{extension}", self.case))
    }

    fn record(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.file("json")).unwrap()).unwrap()
    }

    /// The reference outputs, by name (sorted).
    fn expected(&self) -> std::collections::BTreeMap<String, TensorData> {
        miga::backbones::tensor_io::read_tensors(self.file("safetensors")).unwrap()
    }

    /// The stream's weights under the reference's names, as a safetensors file.
    fn weights(&self) -> std::path::PathBuf {
        use miga::backbones::parity::stream_tensor;
        let path = std::env::temp_dir().join(format!(
            "miga-full-{}-{}.safetensors",
            self.case,
            std::process::id()
        ));
        let tensors: std::collections::BTreeMap<String, TensorData> = self.record()["filled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                let key = entry[0].as_str().unwrap();
                let shape: Vec<usize> = entry[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                (key.to_string(), stream_tensor(key, &shape))
            })
            .collect();
        miga::backbones::tensor_io::write_tensors(&path, &tensors).unwrap();
        path
    }

    fn input<B: Backend, const D: usize>(&self, device: &B::Device) -> burn::tensor::Tensor<B, D> {
        let shape: Vec<usize> = self.record()["input"]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let values = miga::backbones::parity::stream_uniform("input", shape.iter().product());
        burn::tensor::Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// An output as the fixture keeps it: whole, or every `every`-th element when named `@every`.
fn as_committed(name: &str, data: TensorData) -> TensorData {
    match name.split_once('@') {
        None => data,
        Some((_, every)) => {
            let every: usize = every.parse().unwrap();
            let values: Vec<f32> = data
                .to_vec::<f32>()
                .unwrap()
                .into_iter()
                .step_by(every)
                .collect();
            let n = values.len();
            TensorData::new(values, [n])
        }
    }
}

impl Probe for FullSize {
    fn run<B: Backend>(&self, device: &B::Device) -> Vec<TensorData> {
        use miga::backbones::agcn::{AgcnConfig, Graph};
        use miga::backbones::mvit::MvitConfig;
        use miga::backbones::swin::{SwinConfig, SwinFaceConfig};

        let weights = self.weights();
        let mut out: std::collections::BTreeMap<String, TensorData> = Default::default();
        match self.case {
            "mvit_v2_s" => {
                let model = MvitConfig::mvit_v2_s(400)
                    .load_checkpoint::<B>(&weights, device)
                    .unwrap();
                let o = model.try_forward(self.input::<B, 5>(device)).unwrap();
                out.insert("logits".into(), o.logits.into_data());
                out.insert("embedding".into(), o.embedding.into_data());
                out.insert("tokens".into(), o.tokens.into_data());
            }
            "swin_t" => {
                let model = SwinConfig::swin_t(1000)
                    .load_checkpoint::<B>(&weights, device)
                    .unwrap();
                let o = model.try_forward(self.input::<B, 4>(device)).unwrap();
                out.insert("logits".into(), o.logits.unwrap().into_data());
                out.insert("embedding".into(), o.embedding.into_data());
            }
            "swinface" => {
                let model = SwinFaceConfig::swinface()
                    .load_checkpoint::<B>(&weights, device)
                    .unwrap();
                let o = model.try_forward(self.input::<B, 4>(device)).unwrap();
                for (head, value) in miga::backbones::swin::FACE_HEADS
                    .iter()
                    .zip(o.heads.unwrap())
                {
                    out.insert(format!("head.{}", head.name), value.into_data());
                }
                out.insert("embedding".into(), o.embedding.into_data());
            }
            _ => {
                let record = self.record();
                let graph = Graph::layout(record["graph"].as_str().unwrap()).unwrap();
                let classes = record["classes"].as_u64().unwrap() as usize;
                let persons = record["persons"].as_u64().unwrap() as usize;
                let model = AgcnConfig::new(graph, classes)
                    .with_num_persons(persons)
                    .init::<B>(device)
                    .unwrap()
                    .load_pytorch(&weights)
                    .unwrap();
                let o = model.try_forward(self.input::<B, 5>(device)).unwrap();
                out.insert("logits".into(), o.logits.into_data());
                out.insert("embedding".into(), o.embedding.into_data());
            }
        }
        let _ = std::fs::remove_file(&weights);
        // In the fixture's order (sorted names), sampled where the fixture is.
        self.expected()
            .keys()
            .map(|name| {
                let base = name.split('@').next().unwrap();
                let data = out
                    .remove(base)
                    .unwrap_or_else(|| panic!("{}: no output {base}", self.case));
                as_committed(name, data)
            })
            .collect()
    }
}

fn assert_full_size(case: &'static str, tolerance: f32) {
    let probe = FullSize { case };
    let expected: Vec<TensorData> = probe.expected().into_values().collect();
    assert_matches_pytorch(&format!("full {case}"), &probe, &expected, tolerance);
}

#[test]
fn full_size_mvit_v2_s_matches_torchvision() {
    assert_full_size("mvit_v2_s", 4e-5);
}

#[test]
fn full_size_swin_t_matches_timm() {
    assert_full_size("swin_t", 8e-6);
}

#[test]
fn full_size_swinface_matches_its_reference_code() {
    assert_full_size("swinface", 2e-5);
}

#[test]
fn full_width_agcn_matches_the_reference_on_kinetics_and_imigue() {
    assert_full_size("agcn_kinetics", 1e-5);
    assert_full_size("agcn_imigue_upper_hands", 1e-5);
}

/// One training step against PyTorch autograd (`scripts/gradient_parity.py`): the loss
/// `sum over outputs o of sum(o * W_o)` (`W_o` the parameter stream of `loss.<name>`) and every
/// parameter's gradient, on a narrow fixture's weights and inputs, dropout and drop path at 0.
/// The reference gradients are stored as a checkpoint (every parameter replaced by its
/// gradient) and loaded by the same loader into the same network, so that each of miga's
/// parameters meets its own reference gradient, whatever the names and layouts.
struct GradientCase {
    case: &'static str,
}

/// Each float parameter's gradient in visit order; `None` for a tensor that is not trained
/// (BatchNorm running statistics).
struct GradientsOf<'a, B: burn::tensor::backend::AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<Option<Option<TensorData>>>,
    /// The module path being visited, and each parameter's.
    path: Vec<String>,
    names: Vec<String>,
}

impl<B: burn::tensor::backend::AutodiffBackend> burn::module::ModuleVisitor<B>
    for GradientsOf<'_, B>
{
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<B, D>>,
    ) {
        let tensor = param.val();
        self.names.push(self.path.join("."));
        self.out.push(
            tensor
                .is_require_grad()
                .then(|| tensor.grad(self.grads).map(|g| g.into_data())),
        );
    }
}

/// Each float parameter's value in visit order.
struct ValuesOf(Vec<TensorData>);

impl<B: Backend> burn::module::ModuleVisitor<B> for ValuesOf {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<B, D>>,
    ) {
        self.0.push(param.val().into_data());
    }
}

/// What one step gave: the loss, and for each trained parameter (its visit index) the scaled
/// error of its gradient against PyTorch's.
struct StepErrors {
    loss: (f64, f64),
    gradients: Vec<(String, f32)>,
}

impl GradientCase {
    fn dir(&self) -> std::path::PathBuf {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        match self.case {
            "mvit" => root.join("crates/miga-backbones/tests/fixtures/mvit/tiny"),
            "agcn" => root.join("crates/miga-backbones/tests/fixtures/agcn/kinetics"),
            "swin_t" | "swinface" => root
                .join("crates/miga-backbones/tests/fixtures/swin")
                .join(self.case),
            case => root.join("crates/miga-fusion/tests/fixtures").join(case),
        }
    }

    fn io(&self) -> std::collections::BTreeMap<String, TensorData> {
        miga::backbones::tensor_io::read_tensors(self.dir().join("io.safetensors")).unwrap()
    }

    fn record(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir().join("grads.json")).unwrap())
            .unwrap()
    }
}

/// `sum over outputs of sum(o * W_o)`, outputs by name.
fn stream_loss<B: Backend>(
    outputs: Vec<(String, burn::tensor::Tensor<B, 1>)>,
    device: &B::Device,
) -> burn::tensor::Tensor<B, 1> {
    outputs
        .into_iter()
        .map(|(name, o)| {
            let n = o.dims()[0];
            let w = miga::backbones::parity::stream_uniform(&format!("loss.{name}"), n);
            (o * burn::tensor::Tensor::<B, 1>::from_data(TensorData::new(w, [n]), device)).sum()
        })
        .reduce(|a, b| a + b)
        .unwrap()
}

impl miga::device::AutodiffTask for GradientCase {
    type Output = StepErrors;

    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> StepErrors {
        use burn::config::Config;
        use burn::module::Module;
        use burn::tensor::Tensor;
        use miga::backbones::agcn::{AgcnConfig, Graph};
        use miga::backbones::load_checkpoint;
        use miga::backbones::mvit::MvitConfig;
        use miga::backbones::swin::{SwinConfig, SwinFaceConfig};
        use miga::fusion::*;

        let device = &device;
        let dir = self.dir();
        let io = self.io();
        let grads_file = dir.join("grads.safetensors");
        let input = |name: &str| io[name].clone();
        // The forward pass of each case: its outputs (flattened, by name), and the parameters
        // and reference gradients in visit order.
        macro_rules! step {
            ($model:expr, $reference:expr, $outputs:expr) => {{
                let model = $model;
                let outputs: Vec<(String, Tensor<B, 1>)> = $outputs(&model);
                let mut names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
                names.sort_unstable();
                let record = self.record();
                let theirs: Vec<&str> = record["outputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap())
                    .collect();
                assert_eq!(names, theirs, "{}: the outputs in the loss", self.case);
                let loss = stream_loss(outputs, device);
                let value = f64::from(loss.clone().into_scalar().elem::<f32>());
                let grads = loss.backward();
                let mut visitor = GradientsOf::<B> {
                    grads: &grads,
                    out: Vec::new(),
                    path: Vec::new(),
                    names: Vec::new(),
                };
                model.visit(&mut visitor);
                let mut reference = ValuesOf(Vec::new());
                $reference.visit(&mut reference);
                let ours: Vec<_> = visitor.names.into_iter().zip(visitor.out).collect();
                (value, ours, reference.0)
            }};
        }
        use burn::tensor::ElementConversion;
        let (loss, ours, theirs) = match self.case {
            "mvit" => {
                let mut config = MvitConfig::load(dir.join("config.json")).unwrap();
                config.dropout = 0.0;
                config.attention_dropout = 0.0;
                config.stochastic_depth_prob = 0.0;
                step!(
                    config
                        .load_checkpoint::<B>(dir.join("weights.pth"), device)
                        .unwrap(),
                    config
                        .load_checkpoint::<B::InnerBackend>(&grads_file, device)
                        .unwrap(),
                    |m: &miga::backbones::mvit::Mvit<B>| {
                        let o = m
                            .try_forward(Tensor::from_data(input("input"), device))
                            .unwrap();
                        vec![("logits".to_string(), o.logits.flatten(0, 1))]
                    }
                )
            }
            "agcn" => {
                let config =
                    AgcnConfig::from_checkpoint(dir.join("joint.pt"), Graph::kinetics()).unwrap();
                step!(
                    config
                        .init::<B>(device)
                        .unwrap()
                        .load_pytorch(dir.join("joint.pt"))
                        .unwrap(),
                    config
                        .init::<B::InnerBackend>(device)
                        .unwrap()
                        .load_pytorch(&grads_file)
                        .unwrap(),
                    |m: &miga::backbones::agcn::Agcn<B>| {
                        let o = m
                            .try_forward(Tensor::from_data(input("joints"), device))
                            .unwrap();
                        vec![("logits".to_string(), o.logits.flatten(0, 1))]
                    }
                )
            }
            "swin_t" => {
                let mut config = SwinConfig::load(dir.join("config.json")).unwrap();
                config.dropout = 0.0;
                config.attention_dropout = 0.0;
                config.drop_path_rate = 0.0;
                step!(
                    config
                        .load_checkpoint::<B>(dir.join("weights.safetensors"), device)
                        .unwrap(),
                    config
                        .load_checkpoint::<B::InnerBackend>(&grads_file, device)
                        .unwrap(),
                    |m: &miga::backbones::swin::Swin<B>| {
                        let o = m
                            .try_forward(Tensor::from_data(input("input"), device))
                            .unwrap();
                        vec![("logits".to_string(), o.logits.unwrap().flatten(0, 1))]
                    }
                )
            }
            "swinface" => {
                let mut config = SwinFaceConfig::load(dir.join("config.json")).unwrap();
                config.backbone.dropout = 0.0;
                config.backbone.attention_dropout = 0.0;
                config.backbone.drop_path_rate = 0.0;
                if let Some(heads) = config.heads.as_mut() {
                    heads.dropout = 0.0;
                }
                step!(
                    config
                        .load_checkpoint::<B>(dir.join("weights.pt"), device)
                        .unwrap(),
                    config
                        .load_checkpoint::<B::InnerBackend>(&grads_file, device)
                        .unwrap(),
                    |m: &miga::backbones::swin::SwinFace<B>| {
                        // Four faces from the stream (scripts/gradient_parity.py says why).
                        let faces =
                            miga::backbones::parity::stream_uniform("input", 4 * 3 * 112 * 112);
                        let x = TensorData::new(faces, [4, 3, 112, 112]);
                        let o = m.try_forward(Tensor::from_data(x, device)).unwrap();
                        let mut outputs =
                            vec![("embedding".to_string(), o.embedding.flatten(0, 1))];
                        for (head, value) in miga::backbones::swin::FACE_HEADS
                            .iter()
                            .zip(o.heads.unwrap())
                        {
                            outputs.push((format!("head.{}", head.name), value.flatten(0, 1)));
                        }
                        outputs
                    }
                )
            }
            case if case.starts_with("cmtf") => {
                let mut config = CmtfConfig::load(dir.join("config.json")).unwrap();
                config.dropout = 0.0;
                config.modality_dropout = 0.0;
                let weights = dir.join("weights.safetensors");
                step!(
                    load_checkpoint(config.init::<B>(device).unwrap(), &weights, None, &[], &[])
                        .unwrap(),
                    load_checkpoint(
                        config.init::<B::InnerBackend>(device).unwrap(),
                        &grads_file,
                        None,
                        &[],
                        &[]
                    )
                    .unwrap(),
                    |m: &Cmtf<B>| {
                        let o = m.try_forward(cmtf_input(&io, &config, device)).unwrap();
                        vec![
                            ("embedding".to_string(), o.embedding.flatten(0, 1)),
                            ("logits".to_string(), o.logits.flatten(0, 1)),
                            (
                                "skeleton_logits".to_string(),
                                o.skeleton_logits.flatten(0, 1),
                            ),
                            ("video_logits".to_string(), o.video_logits.flatten(0, 1)),
                        ]
                    }
                )
            }
            _ => {
                let mut config = InterFusionConfig::load(dir.join("config.json")).unwrap();
                config.dropout = 0.0;
                config.modality_dropout = 0.0;
                let weights = dir.join("weights.safetensors");
                step!(
                    load_checkpoint(config.init::<B>(device).unwrap(), &weights, None, &[], &[])
                        .unwrap(),
                    load_checkpoint(
                        config.init::<B::InnerBackend>(device).unwrap(),
                        &grads_file,
                        None,
                        &[],
                        &[]
                    )
                    .unwrap(),
                    |m: &InterFusion<B>| {
                        let o = m.try_forward(interfusion_input(&io, device)).unwrap();
                        let mut outputs = vec![
                            ("embedding".to_string(), o.embedding.flatten(0, 1)),
                            ("logits".to_string(), o.logits.flatten(0, 1)),
                        ];
                        if let Some(w) = o.face_weights {
                            outputs.push(("face_weights".to_string(), w.flatten(0, 1)));
                        }
                        if let Some(w) = o.context_weights {
                            outputs.push(("context_weights".to_string(), w.flatten(0, 1)));
                        }
                        if let Some(g) = o.gate {
                            outputs.push(("gate".to_string(), g.flatten(0, 1)));
                        }
                        outputs
                    }
                )
            }
        };
        assert_eq!(ours.len(), theirs.len(), "{}: parameter counts", self.case);
        let gradients = ours
            .into_iter()
            .zip(theirs)
            .enumerate()
            .filter_map(|(i, ((name, ours), theirs))| {
                let ours =
                    ours?.unwrap_or_else(|| TensorData::zeros::<f32, _>(theirs.shape.clone()));
                let error = miga::backbones::parity::scaled_error(&ours, &theirs)
                    .unwrap_or_else(|e| panic!("{}: parameter {i} ({name}): {e}", self.case));
                Some((format!("{i} {name}"), error))
            })
            .collect();
        StepErrors {
            loss: (loss, self.record()["loss"].as_f64().unwrap()),
            gradients,
        }
    }
}

/// The loss and every gradient of one step within `tolerance` (scaled errors) of PyTorch's,
/// on Flex and on the second device.
fn assert_gradients_match(case: &'static str, tolerance: f32) {
    let mut devices = vec![DeviceSpec::CPU];
    devices.extend(other_device(&format!("gradients {case}")));
    for spec in devices {
        let step = spec.run_autodiff(GradientCase { case }).unwrap();
        let (ours, theirs) = step.loss;
        let loss = ((ours - theirs).abs() / theirs.abs().max(1.0)) as f32;
        let (worst_index, worst) =
            step.gradients
                .iter()
                .cloned()
                .fold(
                    (String::new(), 0.0f32),
                    |a, b| if b.1 > a.1 { b } else { a },
                );
        for (name, error) in &step.gradients {
            if *error > tolerance {
                eprintln!("  {case} on {spec}: {name}: {error:e}");
            }
        }
        eprintln!(
            "measured gradients {case}: {spec} vs PyTorch: loss {loss:e}, worst of {} gradients {worst:e} (parameter {worst_index}) (tolerance {tolerance:e})",
            step.gradients.len()
        );
        assert!(
            loss <= tolerance,
            "{case} on {spec}: loss {ours} against {theirs}"
        );
        assert!(
            worst <= tolerance,
            "{case} on {spec}: parameter {worst_index}: {worst:e}"
        );
    }
}

/// Tolerances: at most 10x the worst scaled error measured (loss and gradients, Flex and wgpu
/// on the software driver, 2026-12-06; docs/testing.md gives them). SwinFace's are the largest:
/// its BatchNorm1d layers see a batch of four faces.
#[test]
fn backbone_gradients_match_pytorch() {
    for (case, tolerance) in [
        ("mvit", 7e-5),
        ("agcn", 7e-6),
        ("swin_t", 1e-5),
        ("swinface", 4e-4),
    ] {
        assert_gradients_match(case, tolerance);
    }
}

#[test]
fn fusion_gradients_match_pytorch() {
    for (case, tolerance) in [
        ("cmtf_cross", 4e-6),
        ("cmtf_joint", 1e-5),
        ("interfusion_full", 6e-6),
        ("interfusion_late", 6e-6),
    ] {
        assert_gradients_match(case, tolerance);
    }
}
