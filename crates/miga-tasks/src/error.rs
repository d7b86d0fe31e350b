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
    /// A folder or file that is not what the command expects (a features folder from another
    /// task or configuration, a run folder that is not a run).
    #[error("{}: {reason}", path.display())]
    Mismatch {
        /// The folder or file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// Backbones.
    #[error(transparent)]
    Backbone(#[from] miga_backbones::Error),
    /// Data.
    #[error(transparent)]
    Data(#[from] miga_datasets::Error),
}

/// Result of the tasks crate.
pub type Result<T> = std::result::Result<T, Error>;
