//! The error of the `miga` library and command line.

use std::path::PathBuf;

/// Everything that can go wrong in `miga`, one message each, naming the file or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--device` value that is not a device.
    #[error("invalid device `{given}`: {reason}")]
    InvalidDevice {
        /// What the user wrote.
        given: String,
        /// Why it is not a device.
        reason: String,
    },
    /// The backend exists but this binary was built without it.
    #[error(
        "device `{device}` needs the `{feature}` backend, which this build of miga does not include; \
         rebuild with `cargo build --release --features {feature}`"
    )]
    BackendNotCompiled {
        /// The requested device.
        device: String,
        /// The cargo feature that compiles it in.
        feature: &'static str,
    },
    /// The backend is compiled in but the device could not be used (no adapter, no driver).
    #[error("device `{device}` is not usable here: {reason}")]
    DeviceUnavailable {
        /// The requested device.
        device: String,
        /// What the backend reported.
        reason: String,
    },
    /// The device cannot compute at the requested precision.
    #[error("device `{device}` cannot compute in {precision}: {reason}")]
    PrecisionUnsupported {
        /// The requested device.
        device: String,
        /// The requested precision.
        precision: crate::device::Precision,
        /// Why not, and what to do.
        reason: String,
    },
    /// Two backends gave different results for the same computation.
    #[error("`{other}` disagrees with `{reference}`: {reason}")]
    Disagreement {
        /// The reference device.
        reference: String,
        /// The device under test.
        other: String,
        /// Where they differ.
        reason: String,
    },
    /// Parity checks (`miga check`) that did not pass.
    #[error("{failed} of {total} checks failed: {which}")]
    ChecksFailed {
        /// How many failed.
        failed: usize,
        /// How many ran.
        total: usize,
        /// Each failed check and its device.
        which: String,
    },
    /// `miga data check` found problems (listed in its report).
    #[error("{count} problems found in {source_name} (listed above)")]
    DataProblems {
        /// How many.
        count: usize,
        /// The folder or file checked.
        source_name: String,
    },
    /// A command-line value or option that cannot be used.
    #[error("{0}")]
    InvalidArgument(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Backbone models (configs, checkpoints).
    #[error(transparent)]
    Backbone(#[from] miga_backbones::Error),
    /// Fusion modules.
    #[error(transparent)]
    Fusion(#[from] miga_fusion::Error),
    /// Data sets: annotations, skeletons, video.
    #[error(transparent)]
    Dataset(#[from] miga_datasets::Error),
    /// Tasks: extraction, training, evaluation.
    #[error(transparent)]
    Task(#[from] miga_tasks::Error),
}
