//! Folders of frame images, the mmaction "rawframes" convention: `img_00001.jpg`, ... (any
//! name with a frame number before the extension; JPEG or PNG), sorted by that number.

use std::path::{Path, PathBuf};

use super::{Frame, VideoInfo};
use crate::{Error, Result};

/// A folder of frame images.
#[derive(Debug, Clone)]
pub struct FrameFolder {
    path: PathBuf,
    files: Vec<PathBuf>,
    info: VideoInfo,
}

/// The number at the end of a file stem (`img_00012` -> 12).
fn trailing_number(stem: &str) -> Option<u64> {
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    stem[stem.len() - digits..].parse().ok()
}

impl FrameFolder {
    /// Frame rate assumed for frame folders (iMiGUE's).
    pub const FPS: f64 = 25.0;

    /// Lists the frames of `dir` (files ending in .jpg, .jpeg or .png with a frame number) and
    /// reads the first for the size.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
                continue;
            }
            if let Some(n) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(trailing_number)
            {
                files.push((n, path));
            }
        }
        files.sort();
        let files: Vec<PathBuf> = files.into_iter().map(|(_, p)| p).collect();
        let first = files.first().ok_or_else(|| {
            Error::request(dir, "no numbered frame images (.jpg/.png) in this folder")
        })?;
        let frame = read_image(first)?;
        let info = VideoInfo {
            width: frame.width(),
            height: frame.height(),
            fps: Self::FPS,
            frames: files.len(),
        };
        Ok(Self {
            path: dir.to_path_buf(),
            files,
            info,
        })
    }

    /// Size, rate and length.
    pub fn info(&self) -> VideoInfo {
        self.info
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn read_sorted(&self, indices: &[usize]) -> Result<Vec<Frame>> {
        indices
            .iter()
            .map(|&i| {
                let frame = read_image(&self.files[i])?;
                if (frame.width(), frame.height()) != (self.info.width, self.info.height) {
                    return Err(Error::format(
                        &self.files[i],
                        "image",
                        format!(
                            "{}x{}, the folder's first frame is {}x{}",
                            frame.width(),
                            frame.height(),
                            self.info.width,
                            self.info.height
                        ),
                    ));
                }
                Ok(frame)
            })
            .collect()
    }
}

fn read_image(path: &Path) -> Result<Frame> {
    let bytes = crate::error::read_file(path)?;
    image::load_from_memory(&bytes)
        .map(|i| i.to_rgb8())
        .map_err(|e| Error::format(path, "image", e.to_string()))
}
