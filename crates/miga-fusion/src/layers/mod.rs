//! The building blocks both fusion modules are made of, public for inspection and reuse.

mod attention;
mod cross;
mod dropout;
mod encoder;
mod norm;
mod pool;
mod sublayer;
mod time;
mod tokens;

pub use attention::{MaskedAttention, MaskedAttentionConfig};
pub use cross::{CrossBlock, CrossMaps, Stream, run_cross_blocks};
pub use dropout::modality_dropout;
pub use encoder::EncoderLayer;
pub use norm::{NORM_EPSILON, norm_layer};
pub use pool::{AttentionPool, grid_regions, masked_mean, pool_regions};
pub use sublayer::{AttentionSublayer, FeedForwardSublayer, LayerConfig};
pub use time::clock_code;
pub use tokens::{embed_steps, embedding};
