use std::path::PathBuf;

/// Errors of the backbones: configurations and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration that cannot build a network.
    #[error("invalid {model} configuration: {reason}")]
    InvalidConfig {
        /// The model (`mvit`, `agcn`, `swin`).
        model: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An input the model cannot take (shape, emptiness).
    #[error("invalid {model} input: {reason}")]
    InvalidInput {
        /// The model.
        model: &'static str,
        /// What is wrong, with the shapes.
        reason: String,
    },
    /// A checkpoint that cannot be loaded into the model; the reason names the keys at fault.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Missing, unexpected or mis-shaped keys, or why the file could not be read.
        reason: String,
    },
}

/// Result of the backbones crate.
pub type Result<T> = std::result::Result<T, Error>;
