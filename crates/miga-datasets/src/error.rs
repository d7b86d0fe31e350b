use std::path::{Path, PathBuf};

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
    /// A request that the data cannot satisfy (a clip beyond the video's end, a frame that does
    /// not exist, an empty skeleton where one is needed).
    #[error("{}: {reason}", path.display())]
    Request {
        /// The file or folder asked for.
        path: PathBuf,
        /// What cannot be done.
        reason: String,
    },
    /// A tensor file (safetensors) that cannot be read or written.
    #[error("tensor file {}: {reason}", path.display())]
    TensorFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Frames a video preset cannot take (none, empty, of different sizes).
    #[error("invalid frames: {reason}")]
    InvalidFrames {
        /// What is wrong, with the sizes.
        reason: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A format error at `place` in `path`.
    pub fn format(
        path: impl AsRef<Path>,
        place: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Format {
            path: path.as_ref().to_path_buf(),
            place: place.into(),
            reason: reason.into(),
        }
    }

    /// A request on `path` that cannot be satisfied.
    pub fn request(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Self::Request {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Result of the datasets crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads a whole text file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::format(
            path,
            format!("byte {}", e.utf8_error().valid_up_to()),
            "not UTF-8 text",
        )
    })
}

/// Runs a third-party parser on untrusted bytes, turning a panic inside it (fuzzing found an
/// arithmetic overflow in calamine's cell references) into a format error at `place` in `path`.
pub(crate) fn guarded<T>(path: &Path, place: &str, parse: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown failure".into());
            Err(Error::format(
                path,
                place,
                format!("the reader failed on this input ({message})"),
            ))
        }
    }
}
