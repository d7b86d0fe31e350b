//! Embeds skeleton sequences with a 2s-AGCN joint stream on any compiled backend and prints
//! the shapes of what the fusion modules take.
//!
//! ```sh
//! cargo run --release --example skeleton_embedding -- cpu
//! cargo run --release --features wgpu --example skeleton_embedding -- wgpu
//! ```

use burn::tensor::backend::Backend;
use miga::agreement::seeded_tensor;
use miga::backbones::agcn::{AgcnConfig, Graph};
use miga::device::{BackendTask, DeviceSpec};

struct Embed;

impl BackendTask for Embed {
    type Output = Result<(), miga::Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let graph = Graph::imigue_upper_hands();
        let v = graph.num_nodes();
        let model = AgcnConfig::new(graph, 32)
            .with_num_persons(1)
            .init::<B>(&device)?;
        // Two sequences of 64 frames, (x, y, confidence) per joint, one person.
        let joints = seeded_tensor::<B, 5>([2, 3, 64, v, 1], 0, &device);
        let out = model.try_forward(joints)?;
        println!("backend      {}", B::name(&device));
        println!("logits       {:?}", out.logits.dims());
        println!("embedding    {:?}", out.embedding.dims());
        println!("tokens       {:?}  (N, T', V, C)", out.tokens.dims());
        println!("time tokens  {:?}  (N, T', C)", out.time_tokens().dims());
        Ok(())
    }
}

fn main() -> Result<(), miga::Error> {
    let device: DeviceSpec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "cpu".into())
        .parse()?;
    device.run(Embed)?
}
