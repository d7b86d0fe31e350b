/// Errors of the fusion modules.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration that cannot build a fusion module.
    #[error("invalid {module} configuration: {reason}")]
    InvalidConfig {
        /// The module (`cmtf`, `interfusion`).
        module: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Input tokens of the wrong shape or with no valid position.
    #[error("invalid {module} input `{input}`: {reason}")]
    InvalidInput {
        /// The module.
        module: &'static str,
        /// Which input.
        input: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Result of the fusion crate.
pub type Result<T> = std::result::Result<T, Error>;
