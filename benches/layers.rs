//! Layer-level timings on Flex (CPU), for a fast inner loop when optimising: the hot layers of
//! each model at their real sizes. `cargo bench --bench layers` (add `-- mvit` to filter);
//! whole models are timed by `miga bench`.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use divan::Bencher;
use miga::backbones::agcn::{AgcnConfig, Graph};
use miga::backbones::kernels;
use miga::backbones::mvit::MvitConfig;
use miga::backbones::swin::SwinConfig;
use miga::fusion::layers::MaskedAttentionConfig;

type B = Flex;

fn main() {
    divan::main();
}

fn random<A: Backend, const D: usize>(shape: [usize; D]) -> Tensor<A, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

/// MViTv2-S block 0 attention at 16x224x224 (8x56x56 tokens and the class token, 96 channels):
/// q/k/v pooling (stride 1x8x8 on k, v), decomposed relative position bias, attention.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn mvit_multiscale_attention(bencher: Bencher) {
    let mvit = MvitConfig::mvit_v2_s(400)
        .init::<B>(&Default::default())
        .unwrap();
    let x = random([1, 1 + 8 * 56 * 56, 96]);
    bencher.bench_local(|| mvit.blocks[0].attn.forward(x.clone(), [8, 56, 56]));
}

/// MViTv2-S block 0's decomposed relative-position terms (`kernels::rel_pos_query`): one head's
/// queries on the 8x56x56 grid (96 channels) against the keys' 8x7x7 grid, forward on Flex.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn mvit_rel_pos(bencher: Bencher) {
    let (q, tables) = rel_pos_inputs::<B>();
    bencher.bench_local(|| kernels::rel_pos_query(q.clone(), 0.1, tables.clone()));
}

/// The same terms in a training step: forward and backward under autodiff (the queries' and
/// the tables' gradients).
#[divan::bench(sample_count = 10, sample_size = 1)]
fn mvit_rel_pos_train(bencher: Bencher) {
    let (q, tables) = rel_pos_inputs::<Autodiff<B>>();
    let (q, tables) = (q.require_grad(), tables.map(Tensor::require_grad));
    bencher.bench_local(|| {
        kernels::rel_pos_query(q.clone(), 0.1, tables.clone())
            .sum()
            .backward()
    });
}

/// Queries `[1, 1 + 8*56*56, 96]` and the time, row and column tables of block 0.
fn rel_pos_inputs<A: Backend>() -> (Tensor<A, 3>, [Tensor<A, 3>; 3]) {
    let tables = [random([8, 8, 96]), random([56, 7, 96]), random([56, 7, 96])];
    (random([1, 1 + 8 * 56 * 56, 96]), tables)
}

/// The depthwise Conv3d of a pooling (96 channels, kernel 3, stride 1x8x8) on an 8x56x56 map,
/// as MViTv2 runs it (`kernels::depthwise_conv3d`).
#[divan::bench(sample_count = 5, sample_size = 1)]
fn depthwise_conv3d(bencher: Bencher) {
    let weight = random::<B, 5>([96, 1, 3, 3, 3]);
    let x = random([1, 96, 8, 56, 56]);
    bencher
        .bench_local(|| kernels::depthwise_conv3d(x.clone(), weight.clone(), [1, 8, 8], [1, 1, 1]));
}

/// 2s-AGCN unit 2 (64 to 64 channels: adaptive graph convolution, 9x1 temporal convolution) on
/// 8 sequences of 64 frames over the 55 points of `imigue-upper-hands`.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn agcn_graph_convolution_unit(bencher: Bencher) {
    let graph = Graph::imigue_upper_hands();
    let v = graph.num_nodes();
    let agcn = AgcnConfig::new(graph, 32)
        .with_num_persons(1)
        .init::<B>(&Default::default())
        .unwrap();
    let x = random([8, 64, 64, v]);
    bencher.bench_local(|| agcn.layers[1].forward(x.clone()));
}

/// SwinFace stage 1 window attention: 64 windows of 7x7 tokens, 96 channels, 3 heads, with the
/// relative position bias (one 112x112 face).
#[divan::bench(sample_count = 10, sample_size = 1)]
fn swin_window_attention(bencher: Bencher) {
    let swin = SwinConfig::swinface()
        .init::<B>(&Default::default())
        .unwrap();
    let x = random([64, 49, 96]);
    bencher.bench_local(|| swin.layers[0].blocks[0].attn.forward(x.clone()));
}

/// Fusion cross-attention (d_model 256, 8 heads): 32 clips, 17 video tokens querying 33
/// skeleton tokens.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn fusion_cross_attention(bencher: Bencher) {
    let attention = MaskedAttentionConfig::new(256, 8).init::<B>(&Default::default());
    let (query, context) = (random([32, 17, 256]), random([32, 33, 256]));
    bencher.bench_local(|| attention.forward(query.clone(), context.clone(), None, false));
}
