//! Video: H.264 MP4 files (demuxed and decoded in-process, no system packages) and folders of
//! frame images (the mmaction "rawframes" convention), behind one [`Video`] type with random
//! access to frames.

mod decoder;
mod folder;
mod h264;
mod picture;
mod preset;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use folder::FrameFolder;
pub use h264::Mp4Video;
pub use picture::{Picture, Yuv420};
pub use preset::{Placement, RgbFrame, RgbSource, VideoPreset, Window};

use crate::{Error, Result};

/// An RGB8 frame.
pub type Frame = image::RgbImage;

/// The H.264 decoder this build has: OpenH264 compiled from source, with its x86 assembly when
/// the build found nasm, else its C code only (several times slower; install nasm and
/// rebuild).
pub const DECODER: &str = if env!("MIGA_OPENH264_ASSEMBLY").as_bytes()[0] == b'1' {
    "OpenH264 with x86 assembly (nasm found at build time)"
} else {
    "OpenH264, C code only (no nasm at build time: install nasm and rebuild for its assembly)"
};

/// What a video holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second (from the container; 25 assumed for frame folders).
    pub fps: f64,
    /// Number of frames.
    pub frames: usize,
}

/// A video file or frame folder.
#[derive(Debug)]
pub enum Video {
    /// An H.264 MP4 file.
    Mp4(Box<Mp4Video>),
    /// A folder of frame images.
    Folder(FrameFolder),
}

impl Video {
    /// Opens an MP4 file, or a folder of frame images.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            FrameFolder::open(path).map(Self::Folder)
        } else {
            Mp4Video::open(path).map(|v| Self::Mp4(Box::new(v)))
        }
    }

    /// Size, rate and length.
    pub fn info(&self) -> VideoInfo {
        match self {
            Self::Mp4(v) => v.info(),
            Self::Folder(v) => v.info(),
        }
    }

    /// The file or folder.
    pub fn path(&self) -> &Path {
        match self {
            Self::Mp4(v) => v.path(),
            Self::Folder(v) => v.path(),
        }
    }

    /// The frames at `indices` (0-based, display order) as RGB8, in the order asked; an index may
    /// repeat. An index beyond the last frame is an error naming it.
    pub fn frames(&mut self, indices: &[usize]) -> Result<Vec<Frame>> {
        Ok(self
            .pictures(indices)?
            .into_iter()
            .map(Picture::into_rgb)
            .collect())
    }

    /// The pictures at `indices` as decoded (YUV for H.264: converted where read), in the order
    /// asked; an index may repeat. An index beyond the last frame is an error naming it.
    pub fn pictures(&mut self, indices: &[usize]) -> Result<Vec<Picture>> {
        let count = self.info().frames;
        if let Some(&bad) = indices.iter().find(|&&i| i >= count) {
            return Err(Error::request(
                self.path(),
                format!("frame {bad} asked for, the video has {count}"),
            ));
        }
        let mut unique: Vec<usize> = indices.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let decoded: Vec<Picture> = match self {
            Self::Mp4(v) => v.decode_sorted(&unique)?,
            Self::Folder(v) => v
                .read_sorted(&unique)?
                .into_iter()
                .map(Picture::Rgb)
                .collect(),
        };
        // A stream whose pictures change size (a new SPS mid-stream) is refused here: a clip's
        // frames are read as one size.
        use crate::video::RgbSource;
        let size = decoded.first().map(RgbSource::size);
        if let Some((frame, picture)) = unique
            .iter()
            .zip(&decoded)
            .find(|(_, p)| Some(p.size()) != size)
        {
            let ([h, w], [h0, w0]) = (picture.size(), size.unwrap_or_default());
            return Err(Error::format(
                self.path(),
                format!("frame {frame}"),
                format!("a {w}x{h} picture after a {w0}x{h0} one: the size changes mid-stream"),
            ));
        }
        if unique == indices {
            return Ok(decoded); // already in order, each once: no copies
        }
        Ok(indices
            .iter()
            .map(|i| decoded[unique.binary_search(i).unwrap_or_default()].clone())
            .collect())
    }
}

/// Writes frames as PNG files `frame_<index:06>.png` in `dir`; returns their paths.
pub fn write_pngs(dir: &Path, indices: &[usize], frames: &[Frame]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for (index, frame) in indices.iter().zip(frames) {
        let path = dir.join(format!("frame_{index:06}.png"));
        write_png(&path, frame)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Writes one RGB8 image as a PNG file, atomically.
pub fn write_png(path: &Path, frame: &Frame) -> Result<()> {
    let mut bytes = Vec::new();
    frame
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::format(path, "PNG", e.to_string()))?;
    crate::io::write_atomic(path, &bytes)
}

/// Peak signal-to-noise ratio of two RGB8 frames of the same size, in dB (infinite when equal).
pub fn psnr(a: &Frame, b: &Frame) -> f64 {
    let squared: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = squared / a.as_raw().len().max(1) as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64.powi(2) / mse).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{scratch_dir, scratch_file, shared};

    /// Name, size, frames, rate, and the worst frame's PSNR against ffmpeg's decode as
    /// measured (docs/data.md; ffmpeg 9.0 and Debian's 5.1 give the same, 2026-12-06), which the
    /// test holds to within 0.1 dB.
    const VIDEOS: [(&str, u32, u32, usize, f64, f64); 3] = [
        ("bigbuckbunny.mp4", 1280, 720, 132, 25.0, 46.2),
        ("bikes.mp4", 640, 272, 250, 25.0, 44.5),
        (
            "carphone_pristine.mp4",
            176,
            144,
            120,
            30000.0 / 1001.0,
            45.8,
        ),
    ];

    /// ffmpeg's RGB24 decode of every frame: the binary `MIGA_FFMPEG` names, else `ffmpeg` on
    /// the `PATH`; where there is none the comparison is skipped (counted: see
    /// [`crate::skip_test`]).
    fn ffmpeg_frames(path: &Path, width: u32, height: u32) -> Option<Vec<Frame>> {
        let ffmpeg = std::env::var_os("MIGA_FFMPEG").unwrap_or_else(|| "ffmpeg".into());
        let found = std::process::Command::new(&ffmpeg)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            crate::skip_test(&format!(
                "no ffmpeg ({}): the decode is not compared with ffmpeg's",
                ffmpeg.to_string_lossy()
            ));
            return None;
        }
        let out = std::process::Command::new(ffmpeg)
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .expect("MIGA_FFMPEG runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let size = (width * height * 3) as usize;
        Some(
            out.stdout
                .chunks(size)
                .map(|c| Frame::from_raw(width, height, c.to_vec()).unwrap())
                .collect(),
        )
    }

    /// The three real MP4s decode: size, rate and length from the container, every frame in
    /// sequence, random access equal to sequential decoding, and every frame at least as close
    /// to ffmpeg's decode as measured.
    #[test]
    fn real_videos_decode() {
        let Some(dir) = shared("video") else { return };
        for (name, width, height, frames, fps, psnr_floor) in VIDEOS {
            let path = dir.join(name);
            let mut video = Video::open(&path).unwrap();
            let info = video.info();
            assert_eq!(
                (info.width, info.height, info.frames),
                (width, height, frames),
                "{name}"
            );
            assert!((info.fps - fps).abs() < 1e-3, "{name}: {}", info.fps);
            let all: Vec<usize> = (0..frames).collect();
            let start = std::time::Instant::now();
            let decoded = video.frames(&all).unwrap();
            eprintln!("{name}: {frames} frames in {:.2?}", start.elapsed());
            let picks = [frames - 1, 10, 0, frames / 2, 10];
            for (&i, frame) in picks.iter().zip(video.frames(&picks).unwrap()) {
                assert!(
                    frame == decoded[i],
                    "{name}: random access to frame {i} differs"
                );
            }
            if let Some(reference) = ffmpeg_frames(&path, width, height) {
                assert_eq!(reference.len(), frames, "{name}");
                let worst = decoded
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| psnr(a, b))
                    .fold(f64::INFINITY, f64::min);
                eprintln!("{name}: worst PSNR against ffmpeg {worst:.1} dB");
                assert!(worst >= psnr_floor - 0.1, "{name}: {worst} dB");
            }
        }
    }

    #[test]
    fn corrupt_and_truncated_files_are_errors() {
        let Some(dir) = shared("video") else { return };
        let bytes = std::fs::read(dir.join("carphone_pristine.mp4")).unwrap();
        for cut in [0, 8, 100, bytes.len() / 2, bytes.len() - 1000] {
            let path = scratch_file("cut.mp4", &bytes[..cut]);
            match Video::open(&path) {
                Err(e) => assert!(e.to_string().contains("cut.mp4"), "{e}"),
                Ok(mut video) => {
                    let last = video.info().frames - 1;
                    let message = video.frames(&[last]).unwrap_err().to_string();
                    assert!(message.contains("cut.mp4"), "{message}");
                }
            }
        }
        let mut video = Video::open(dir.join("carphone_pristine.mp4")).unwrap();
        assert!(
            video
                .frames(&[120])
                .unwrap_err()
                .to_string()
                .contains("frame 120")
        );
    }

    #[test]
    fn frame_folders() {
        let dir = scratch_dir();
        let frames: Vec<Frame> = (0..3)
            .map(|i| Frame::from_pixel(4, 2, image::Rgb([i * 50, 0, 0])))
            .collect();
        let paths = write_pngs(&dir, &[0, 1, 2], &frames).unwrap();
        assert!(paths[2].ends_with("frame_000002.png"));
        let mut video = Video::open(&dir).unwrap();
        assert_eq!(video.info().frames, 3);
        assert_eq!(
            video.frames(&[2, 0]).unwrap(),
            [frames[2].clone(), frames[0].clone()]
        );
        std::fs::write(dir.join("frame_000003.png"), b"not a png").unwrap();
        let mut video = Video::open(&dir).unwrap();
        assert!(
            video
                .frames(&[3])
                .unwrap_err()
                .to_string()
                .contains("frame_000003.png")
        );
        assert!(Video::open(scratch_dir()).is_err());
    }
}
