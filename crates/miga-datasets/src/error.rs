use std::path::PathBuf;

/// Errors of the data layer; each names the file and, where there is one, the place in it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is not what the format says.
    #[error("{}:{place}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in it (`line 12`, `frame 40`, `row 3, column class`).
        place: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result of the datasets crate.
pub type Result<T> = std::result::Result<T, Error>;
