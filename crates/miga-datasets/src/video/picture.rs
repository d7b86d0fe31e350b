//! Decoded pictures: RGB8 frames, and H.264's YUV 4:2:0 kept as decoded, converted to RGB
//! only where read (a clip's preset reads a fifth of a 720p frame's pixels).

use super::{RgbFrame, RgbSource};

use super::Frame;
use crate::stages::{Stage, timed};

/// A decoded picture.
#[derive(Debug, Clone)]
pub enum Picture {
    /// RGB8 (image files).
    Rgb(Frame),
    /// YUV 4:2:0 (H.264).
    Yuv(Yuv420),
}

impl Picture {
    /// The picture as an RGB8 frame (every pixel converted).
    pub fn into_rgb(self) -> Frame {
        match self {
            Self::Rgb(frame) => frame,
            Self::Yuv(picture) => timed(Stage::Convert, || picture.to_rgb()),
        }
    }
}

impl RgbSource for Picture {
    fn size(&self) -> [usize; 2] {
        match self {
            Self::Rgb(frame) => [frame.height() as usize, frame.width() as usize],
            Self::Yuv(picture) => [picture.height, picture.width],
        }
    }

    fn gather(&self, rows: &[usize], cols: &[usize], out: &mut Vec<u8>) {
        match self {
            Self::Rgb(frame) => {
                if let Some(view) = RgbFrame::new(frame.as_raw(), self.size()) {
                    view.gather(rows, cols, out);
                }
            }
            Self::Yuv(picture) => timed(Stage::Convert, || picture.gather(rows, cols, out)),
        }
    }
}

/// A YUV 4:2:0 picture, planes packed (luma `width` bytes a row, chroma `width / 2` rounded up).
#[derive(Debug, Clone)]
pub struct Yuv420 {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Yuv420 {
    /// Copies a `width` x `height` picture out of planes with row strides `strides` (luma,
    /// chroma); `None` when a plane is shorter than its size and stride say.
    pub(super) fn copy(
        [y, u, v]: [&[u8]; 3],
        [width, height]: [usize; 2],
        [luma_stride, chroma_stride]: [usize; 2],
    ) -> Option<Self> {
        if width == 0 || height == 0 {
            return None;
        }
        let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
        let plane = |data: &[u8], w: usize, h: usize, stride: usize| -> Option<Vec<u8>> {
            if stride < w || data.len() < stride * (h - 1) + w {
                return None;
            }
            let mut out = Vec::with_capacity(w * h);
            for row in 0..h {
                out.extend_from_slice(&data[row * stride..row * stride + w]);
            }
            Some(out)
        };
        Some(Self {
            width,
            height,
            y: plane(y, width, height, luma_stride)?,
            u: plane(u, chroma_width, chroma_height, chroma_stride)?,
            v: plane(v, chroma_width, chroma_height, chroma_stride)?,
        })
    }

    /// Every pixel as RGB8.
    pub fn to_rgb(&self) -> Frame {
        let (width, chroma_width) = (self.width, self.width.div_ceil(2));
        let mut rgb = vec![0u8; width * self.height * 3];
        for (row, out) in rgb.chunks_exact_mut(width * 3).enumerate() {
            let luma = &self.y[row * width..(row + 1) * width];
            let chroma = row / 2 * chroma_width;
            let (u, v) = (
                &self.u[chroma..chroma + chroma_width],
                &self.v[chroma..chroma + chroma_width],
            );
            // Two pixels a chroma sample: pairs, then the odd last column.
            let pairs = width / 2;
            for (i, (px, l)) in out
                .chunks_exact_mut(6)
                .zip(luma.chunks_exact(2))
                .take(pairs)
                .enumerate()
            {
                let chroma = Chroma::new(u[i], v[i]);
                px[..3].copy_from_slice(&chroma.rgb(l[0]));
                px[3..].copy_from_slice(&chroma.rgb(l[1]));
            }
            if width % 2 == 1 {
                let last = width - 1;
                let rgb = Chroma::new(u[last / 2], v[last / 2]).rgb(luma[last]);
                out[last * 3..].copy_from_slice(&rgb);
            }
        }
        Frame::from_raw(width as u32, self.height as u32, rgb).expect("buffer sized for the frame")
    }

    fn gather(&self, rows: &[usize], cols: &[usize], out: &mut Vec<u8>) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked above.
            return unsafe { self.gather_avx2(rows, cols, out) };
        }
        self.gather_rows(rows, cols, out);
    }

    /// [`Yuv420::gather_rows`] compiled for AVX2 (the same integer arithmetic, eight pixels an
    /// instruction where the compiler vectorises it).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn gather_avx2(&self, rows: &[usize], cols: &[usize], out: &mut Vec<u8>) {
        self.gather_rows(rows, cols, out);
    }

    #[inline(always)]
    fn gather_rows(&self, rows: &[usize], cols: &[usize], out: &mut Vec<u8>) {
        if rows.is_empty() || cols.is_empty() {
            return;
        }
        let chroma_width = self.width.div_ceil(2);
        let start = out.len();
        out.resize(start + rows.len() * cols.len() * 3, 0);
        let lines = out[start..].chunks_exact_mut(cols.len() * 3);
        let columns: Vec<(u32, u32)> = cols.iter().map(|&c| (c as u32, c as u32 / 2)).collect();
        for (&row, line) in rows.iter().zip(lines) {
            let luma = &self.y[row * self.width..(row + 1) * self.width];
            let chroma = row / 2 * chroma_width;
            let (u, v) = (
                &self.u[chroma..chroma + chroma_width],
                &self.v[chroma..chroma + chroma_width],
            );
            // Eight pixels at a time: loads and stores one by one, the arithmetic on arrays
            // (which the compiler vectorises).
            for (block, pixels) in columns.chunks(LANES).zip(line.chunks_mut(LANES * 3)) {
                let (mut y8, mut u8, mut v8) = ([16i32; LANES], [128i32; LANES], [128i32; LANES]);
                for (k, &(col, half)) in block.iter().enumerate() {
                    let (col, half) = (col as usize, half as usize);
                    (y8[k], u8[k], v8[k]) =
                        (i32::from(luma[col]), i32::from(u[half]), i32::from(v[half]));
                }
                let mut rgb = [[0u8; 3]; LANES];
                for k in 0..LANES {
                    rgb[k] = Chroma::new(u8[k] as u8, v8[k] as u8).rgb(y8[k] as u8);
                }
                for (pixel, rgb) in pixels.chunks_exact_mut(3).zip(&rgb) {
                    pixel.copy_from_slice(rgb);
                }
            }
        }
    }
}

/// Pixels converted together.
const LANES: usize = 8;

/// BT.601 limited-range YUV to RGB, the conversion ffmpeg applies to untagged yuv420p video, in
/// fixed point with 16 fractional bits; rounded coefficients:
/// 255/219, 1.596027, 0.391762, 0.812968, 2.017232.
const ONE: i32 = 1 << 16;
const LUMA: i32 = 76_309;
const RED_V: i32 = 104_597;
const GREEN_U: i32 = 25_675;
const GREEN_V: i32 = 53_279;
const BLUE_U: i32 = 132_201;

/// A chroma sample's terms, shared by the pixels it covers.
#[derive(Debug, Clone, Copy)]
struct Chroma {
    red: i32,
    green: i32,
    blue: i32,
}

impl Chroma {
    fn new(u: u8, v: u8) -> Self {
        let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
        Self {
            red: RED_V * v + ONE / 2,
            green: -GREEN_U * u - GREEN_V * v + ONE / 2,
            blue: BLUE_U * u + ONE / 2,
        }
    }

    fn rgb(self, luma: u8) -> [u8; 3] {
        let l = LUMA * (i32::from(luma) - 16);
        let clamp = |value: i32| (value >> 16).clamp(0, 255) as u8;
        [
            clamp(l + self.red),
            clamp(l + self.green),
            clamp(l + self.blue),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coefficients_are_bt601_rounded() {
        let coef = |c: f64| (c * f64::from(ONE)).round() as i32;
        assert_eq!(
            [LUMA, RED_V, GREEN_U, GREEN_V, BLUE_U],
            [
                coef(255.0 / 219.0),
                coef(1.596_027),
                coef(0.391_762),
                coef(0.812_968),
                coef(2.017_232)
            ]
        );
    }

    #[test]
    fn gathered_pixels_are_the_converted_frames() {
        // A 5x3 picture (odd width and height) in padded planes.
        let (width, height) = (5, 3);
        let y: Vec<u8> = (0..8 * height).map(|i| (i * 37 % 256) as u8).collect();
        let u: Vec<u8> = (0..4 * 2).map(|i| (60 + i * 23) as u8).collect();
        let v: Vec<u8> = (0..4 * 2).map(|i| (200 - i * 19) as u8).collect();
        let picture = Yuv420::copy([&y, &u, &v], [width, height], [8, 4]).unwrap();
        let rgb = picture.to_rgb();
        // Each pixel as the formula says (a saturated one included).
        for (x, yy) in [(0, 0), (3, 1), (4, 2)] {
            let (l, c) = (y[yy * 8 + x], yy / 2 * 4 + x / 2);
            let want = Chroma::new(u[c], v[c]).rgb(l);
            assert_eq!(rgb.get_pixel(x as u32, yy as u32).0, want);
        }
        let rows = [0, 2];
        let cols = [1, 2, 4];
        let (mut yuv, mut direct) = (Vec::new(), Vec::new());
        Picture::Yuv(picture.clone()).gather(&rows, &cols, &mut yuv);
        Picture::Rgb(rgb).gather(&rows, &cols, &mut direct);
        assert_eq!(yuv, direct);
        // Planes shorter than their size says are refused.
        assert!(Yuv420::copy([&y[..20], &u, &v], [width, height], [8, 4]).is_none());
    }
}
