use std::path::PathBuf;

/// Errors of the tasks: configurations, runs, checkpoints, outputs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A task or training configuration that cannot be used.
    #[error("invalid configuration {}: {reason}", path.display())]
    InvalidConfig {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong, with the field.
        reason: String,
    },
    /// A run folder, feature shard or checkpoint could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result of the tasks crate.
pub type Result<T> = std::result::Result<T, Error>;
