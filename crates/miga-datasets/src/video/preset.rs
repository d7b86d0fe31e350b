//! torchvision's video classification preset (`VideoClassification`, the transforms of
//! `MViT_V2_S_Weights.KINETICS400_V1`) on decoded frames, and the resized crop of training-time
//! augmentation.
//!
//! Frames are read through [`RgbSource`]: the preset asks a frame for the pixels its bilinear
//! taps touch and nothing else, so a decoder can convert only those (a 720p frame resized to
//! 256 and cropped to 224 needs about a fifth of its pixels).

use burn::config::Config;
use burn::tensor::TensorData;

use crate::Error;

/// Resize the short side, centre-crop, scale to [0, 1] and normalise, as torchvision's
/// `VideoClassification` does it: bilinear resize without antialiasing on 8-bit frames,
/// rounded back to 8 bits (half to even), then `(x / 255 - mean) / std`.
#[derive(Config, Debug)]
pub struct VideoPreset {
    /// Length of the short side after resizing.
    #[config(default = 256)]
    pub resize: usize,
    /// Crop (H, W) taken from the centre.
    #[config(default = "[224, 224]")]
    pub crop: [usize; 2],
    /// Per-channel mean (RGB) subtracted after scaling to [0, 1].
    #[config(default = "[0.45, 0.45, 0.45]")]
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB) divided by.
    #[config(default = "[0.225, 0.225, 0.225]")]
    pub std: [f32; 3],
}

/// Where the crop of [`VideoPreset::apply_at`] is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Placement {
    /// Offset of the crop as a fraction (0..=1, vertical then horizontal) of the free margin;
    /// `None` centres it as torchvision does.
    pub offset: Option<[f32; 2]>,
    /// Mirror the crop left-right.
    pub flip: bool,
}

/// An RGB8 frame the preset reads pixels from.
pub trait RgbSource {
    /// Height and width in pixels.
    fn size(&self) -> [usize; 2];
    /// Appends the pixels at every (row, column) of `rows` x `cols` to `out`, row-major, three
    /// bytes (R, G, B) a pixel. Rows and columns are ascending and inside the frame.
    fn gather(&self, rows: &[usize], cols: &[usize], out: &mut Vec<u8>);
}

/// A frame held as RGB8 bytes, row-major.
#[derive(Debug, Clone, Copy)]
pub struct RgbFrame<'a> {
    pixels: &'a [u8],
    size: [usize; 2],
}

impl<'a> RgbFrame<'a> {
    /// `pixels` of a `height` x `width` frame (three bytes a pixel); `None` when the length
    /// differs.
    pub fn new(pixels: &'a [u8], [height, width]: [usize; 2]) -> Option<Self> {
        (pixels.len() == height * width * 3).then_some(Self {
            pixels,
            size: [height, width],
        })
    }
}

impl RgbSource for RgbFrame<'_> {
    fn size(&self) -> [usize; 2] {
        self.size
    }

    fn gather(&self, rows: &[usize], cols: &[usize], out: &mut Vec<u8>) {
        let width = self.size[1];
        for &y in rows {
            let row = &self.pixels[y * width * 3..(y + 1) * width * 3];
            for &x in cols {
                out.extend_from_slice(&row[x * 3..x * 3 + 3]);
            }
        }
    }
}

/// The rectangle `[top, left]` + `[height, width]` of a frame, read as a frame of its own.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a, S> {
    /// The whole frame.
    pub source: &'a S,
    /// Top-left corner in the frame.
    pub corner: [usize; 2],
    /// Height and width (inside the frame).
    pub size: [usize; 2],
}

impl<S: RgbSource> RgbSource for Window<'_, S> {
    fn size(&self) -> [usize; 2] {
        self.size
    }

    fn gather(&self, rows: &[usize], cols: &[usize], out: &mut Vec<u8>) {
        debug_assert!(
            (0..2).all(|a| self.corner[a] + self.size[a] <= self.source.size()[a]),
            "a window beyond its frame"
        );
        let shift = |indices: &[usize], by: usize| indices.iter().map(|i| i + by).collect();
        let (rows, cols): (Vec<usize>, Vec<usize>) =
            (shift(rows, self.corner[0]), shift(cols, self.corner[1]));
        self.source.gather(&rows, &cols, out);
    }
}

/// One output position of a bilinear resize along an axis: the two source indices and their
/// weights.
type Tap = (usize, usize, f32, f32);

/// For each output position along one axis of a bilinear resize: the two source indices and
/// their weights, as PyTorch computes them in f32 (align_corners=false).
fn taps(input: usize, output: usize) -> Vec<Tap> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// The source indices `taps` read (ascending, once each), and the taps re-indexed into them.
fn compact(taps: &[Tap]) -> (Vec<usize>, Vec<Tap>) {
    let mut used: Vec<usize> = taps.iter().flat_map(|&(a, b, _, _)| [a, b]).collect();
    used.sort_unstable();
    used.dedup();
    let at = |i: usize| used.binary_search(&i).unwrap_or_default();
    let local = taps
        .iter()
        .map(|&(a, b, wa, wb)| (at(a), at(b), wa, wb))
        .collect();
    (used, local)
}

/// `v` rounded to the nearest integer, ties to even, for `|v| < 2^22` (the 8-bit values here):
/// adding and removing 1.5 x 2^23 leaves no fractional bits, and IEEE addition rounds to even.
/// (`f32::round_ties_even` is a libm call on x86-64 without SSE4.1.)
fn round_ties_even(v: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (v + SHIFT) - SHIFT
}

impl VideoPreset {
    /// The size (H, W) a `h` x `w` frame is resized to: short side to `resize`, the long side
    /// scaled and rounded down, as torchvision.
    pub fn resized_size(&self, h: usize, w: usize) -> [usize; 2] {
        let (short, long) = if w <= h { (w, h) } else { (h, w) };
        let new_long = self.resize * long / short;
        if w <= h {
            [new_long, self.resize]
        } else {
            [self.resize, new_long]
        }
    }

    /// Preprocesses RGB frames `(T, H, W, 3)` (8 bits, row-major, as decoders give them) into a
    /// clip `[3, T, crop H, crop W]`; stack clips along a new first axis for a batch.
    pub fn apply(&self, frames: &[u8], dims: [usize; 3]) -> crate::Result<TensorData> {
        self.apply_at(frames, dims, Placement::default())
    }

    /// [`VideoPreset::apply`] with the crop placed where `placement` says (for training-time
    /// random crops) and optionally mirrored left-right.
    pub fn apply_at(
        &self,
        frames: &[u8],
        [t, h, w]: [usize; 3],
        placement: Placement,
    ) -> crate::Result<TensorData> {
        if t * h * w == 0 {
            return Err(invalid(format!("no frames to preprocess ({t}x{h}x{w})")));
        }
        if frames.len() != t * h * w * 3 {
            return Err(invalid(format!(
                "{} bytes are not {t} frames of {h}x{w} RGB ({} bytes)",
                frames.len(),
                t * h * w * 3
            )));
        }
        let views: Vec<RgbFrame<'_>> = frames
            .chunks_exact(h * w * 3)
            .filter_map(|f| RgbFrame::new(f, [h, w]))
            .collect();
        self.transform(&views, placement)
    }

    /// The preset on frames of one size read through [`RgbSource`]: short side resized, crop
    /// placed as `placement` says, to `[3, T, crop H, crop W]`.
    pub fn transform<S: RgbSource>(
        &self,
        frames: &[S],
        placement: Placement,
    ) -> crate::Result<TensorData> {
        let [h, w] = frames_size(frames)?;
        let [rh, rw] = self.resized_size(h, w);
        let [ch, cw] = self.crop;
        if rh < ch || rw < cw {
            return Err(invalid(format!(
                "a {h}x{w} frame resized to {rh}x{rw} is smaller than the {ch}x{cw} crop"
            )));
        }
        // Python's round() in torchvision's center_crop: half to even.
        let centre = |free: usize| (free as f64 / 2.0).round_ties_even() as usize;
        let (top, left) = match placement.offset {
            None => (centre(rh - ch), centre(rw - cw)),
            Some([fy, fx]) => (
                (fy.clamp(0.0, 1.0) * (rh - ch) as f32).round() as usize,
                (fx.clamp(0.0, 1.0) * (rw - cw) as f32).round() as usize,
            ),
        };
        let rows = &taps(h, rh)[top..top + ch];
        let cols = &taps(w, rw)[left..left + cw];
        Ok(self.resample(frames, rows, cols, placement.flip))
    }

    /// Every frame resized (bilinear, as [`VideoPreset::transform`]) to exactly the crop size,
    /// optionally mirrored, to `[3, T, crop H, crop W]`: the second half of a random resized
    /// crop, whose first half is the [`Window`] the frames are.
    pub fn stretch<S: RgbSource>(&self, frames: &[S], flip: bool) -> crate::Result<TensorData> {
        let [h, w] = frames_size(frames)?;
        let [ch, cw] = self.crop;
        Ok(self.resample(frames, &taps(h, ch), &taps(w, cw), flip))
    }

    /// Every frame with its short side resized (bilinear, rounded to 8 bits, as
    /// [`VideoPreset::transform`]) and not cropped: `[T, H, W, 3]` bytes and `[T, H, W]`. The
    /// preset on these frames gives what it gives on the originals (resizing a frame already of
    /// the size reads each pixel with weight one), so they can be stored and cropped later.
    pub fn resize<S: RgbSource>(&self, frames: &[S]) -> crate::Result<(Vec<u8>, [usize; 3])> {
        let [h, w] = frames_size(frames)?;
        let [rh, rw] = self.resized_size(h, w);
        let t = frames.len();
        let mut out = vec![0u8; t * rh * rw * 3];
        let (rows, cols) = (taps(h, rh), taps(w, rw));
        resample(frames, &rows, &cols, false, |f, oy, c, values| {
            let start = (f * rh + oy) * rw * 3 + c;
            for (o, v) in out[start..].iter_mut().step_by(3).zip(values) {
                *o = *v as u8;
            }
        });
        Ok((out, [t, rh, rw]))
    }

    /// Bilinear resampling at `rows` x `cols` (mirrored when `flip`), rounded to 8 bits and
    /// normalised, to `[3, T, rows, cols]`.
    fn resample<S: RgbSource>(
        &self,
        frames: &[S],
        rows: &[Tap],
        cols: &[Tap],
        flip: bool,
    ) -> TensorData {
        let (t, ch, cw) = (frames.len(), rows.len(), cols.len());
        let mut out = vec![0.0f32; 3 * t * ch * cw];
        resample(frames, rows, cols, flip, |f, oy, c, values| {
            let start = (c * t + f) * ch * cw + oy * cw;
            let (mean, std) = (self.mean[c], self.std[c]);
            for (o, v) in out[start..start + cw].iter_mut().zip(values) {
                *o = (v / 255.0 - mean) / std;
            }
        });
        TensorData::new(out, [3, t, ch, cw])
    }
}

/// Bilinear resampling of each frame at `rows` x `cols` (mirrored when `flip`), rounded to 8
/// bits; each frame is asked only for the pixels the taps read. Every output row of every
/// channel goes to `emit(frame, row, channel, values)`.
fn resample<S: RgbSource>(
    frames: &[S],
    rows: &[Tap],
    cols: &[Tap],
    flip: bool,
    mut emit: impl FnMut(usize, usize, usize, &[f32]),
) {
    let (ys, rows) = compact(rows);
    let (xs, mut cols) = compact(cols);
    if flip {
        cols.reverse();
    }
    let stride = xs.len() * 3;
    let mut pixels = Vec::with_capacity(ys.len() * stride);
    let mut values = vec![0.0f32; cols.len()];
    for (f, frame) in frames.iter().enumerate() {
        pixels.clear();
        frame.gather(&ys, &xs, &mut pixels);
        for (oy, &(y0, y1, wy0, wy1)) in rows.iter().enumerate() {
            let upper = &pixels[y0 * stride..(y0 + 1) * stride];
            let lower = &pixels[y1 * stride..(y1 + 1) * stride];
            for c in 0..3 {
                for (o, &(x0, x1, wx0, wx1)) in values.iter_mut().zip(&cols) {
                    let px = |row: &[u8], x: usize| f32::from(row[x * 3 + c]);
                    let top_row = px(upper, x0) * wx0 + px(upper, x1) * wx1;
                    let bottom_row = px(lower, x0) * wx0 + px(lower, x1) * wx1;
                    *o = round_ties_even(top_row * wy0 + bottom_row * wy1);
                }
                emit(f, oy, c, &values);
            }
        }
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidFrames { reason }
}

/// The size all `frames` share; an error when there are none, one is empty or sizes differ.
fn frames_size<S: RgbSource>(frames: &[S]) -> crate::Result<[usize; 2]> {
    let first = frames
        .first()
        .map(RgbSource::size)
        .ok_or_else(|| invalid("no frames to preprocess".into()))?;
    if first.contains(&0) {
        return Err(invalid(format!(
            "an empty frame ({}x{})",
            first[0], first[1]
        )));
    }
    match frames.iter().find(|f| f.size() != first) {
        Some(other) => Err(invalid(format!(
            "frames of {}x{} and {}x{} in one clip",
            first[0],
            first[1],
            other.size()[0],
            other.size()[1]
        ))),
        None => Ok(first),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::tensors::read_tensors;

    #[test]
    fn matches_torchvisions_preset() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../miga-backbones/tests/fixtures/mvit/preprocess.safetensors");
        let mut tensors = read_tensors(&path).unwrap();
        let frames = tensors.remove("frames").unwrap();
        let [t, h, w, _] = frames.shape.dims::<4>();
        let frames: Vec<u8> = frames
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v as u8)
            .collect();
        let expected = tensors.remove("clip").unwrap();
        let preset = VideoPreset::new().with_resize(32).with_crop([28, 28]);
        let clip = preset.apply(&frames, [t, h, w]).unwrap();
        assert_eq!(clip.shape, expected.shape);
        let (got, want) = (
            clip.to_vec::<f32>().unwrap(),
            expected.to_vec::<f32>().unwrap(),
        );
        // One 8-bit step after normalisation; f32 rounding can flip an exact .5 tie.
        let step = 1.0 / 255.0 / 0.225;
        let off: Vec<f32> = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .filter(|d| *d > 1e-5)
            .collect();
        assert!(off.iter().all(|d| *d <= step * 1.01), "{off:?}");
        assert!(
            off.len() * 1000 <= got.len(),
            "{} of {} differ",
            off.len(),
            got.len()
        );
    }

    #[test]
    fn placed_and_flipped_crops() {
        let preset = VideoPreset::new()
            .with_resize(4)
            .with_crop([2, 2])
            .with_mean([0.0; 3])
            .with_std([1.0 / 255.0; 3]);
        // One 4x4 frame whose red channel is the column index x 10.
        let frames: Vec<u8> = (0..16).flat_map(|i| [(i % 4) as u8 * 10, 0, 0]).collect();
        let red = |p: Placement| -> Vec<f32> {
            let out = preset
                .apply_at(&frames, [1, 4, 4], p)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            out[..2].iter().map(|v| v.round()).collect()
        };
        assert_eq!(red(Placement::default()), [10.0, 20.0]);
        assert_eq!(
            red(Placement {
                offset: Some([0.0, 0.0]),
                flip: false
            }),
            [0.0, 10.0]
        );
        assert_eq!(
            red(Placement {
                offset: Some([1.0, 1.0]),
                flip: true
            }),
            [30.0, 20.0]
        );
    }

    #[test]
    fn the_rounding_shortcut_is_rounding_half_to_even() {
        // Every quarter from -300 to 300 (ties included) and values between.
        for i in -1200..=1200 {
            for v in [i as f32 / 4.0, i as f32 / 4.0 + 0.013] {
                assert_eq!(round_ties_even(v), v.round_ties_even(), "{v}");
            }
        }
    }

    #[test]
    fn windows_and_stretches_read_only_their_pixels() {
        let preset = VideoPreset::new()
            .with_resize(4)
            .with_crop([2, 2])
            .with_mean([0.0; 3])
            .with_std([1.0 / 255.0; 3]);
        // A 6x8 frame whose red channel is 10 x column and green channel 10 x row.
        let (h, w) = (6, 8);
        let frame: Vec<u8> = (0..h * w)
            .flat_map(|i| [(i % w) as u8 * 10, (i / w) as u8 * 10, 0])
            .collect();
        let whole = RgbFrame::new(&frame, [h, w]).unwrap();
        // The window [1, 2] + 4x4 through the preset is the preset on those bytes.
        let cut: Vec<u8> = (1..5)
            .flat_map(|y| frame[(y * w + 2) * 3..(y * w + 6) * 3].to_vec())
            .collect();
        let window = Window {
            source: &whole,
            corner: [1, 2],
            size: [4, 4],
        };
        let flip = Placement {
            offset: None,
            flip: true,
        };
        assert_eq!(
            preset.transform(&[window], flip).unwrap(),
            preset.apply_at(&cut, [1, 4, 4], flip).unwrap()
        );
        // Stretched: the 4x4 window to the 2x2 crop, every pixel the mean of a 2x2 block.
        let red_green = |data: TensorData| {
            let v: Vec<f32> = data.to_vec::<f32>().unwrap();
            let v: Vec<f32> = v.iter().map(|x| x.round()).collect();
            (v[..4].to_vec(), v[4..8].to_vec())
        };
        assert_eq!(
            red_green(preset.stretch(&[window], false).unwrap()),
            (vec![25.0, 45.0, 25.0, 45.0], vec![15.0, 15.0, 35.0, 35.0])
        );
        assert_eq!(
            red_green(preset.stretch(&[window], true).unwrap()).0,
            vec![45.0, 25.0, 45.0, 25.0]
        );
        // Resized and stored as bytes, then through the preset: the same clip.
        let centre = Placement::default();
        let (bytes, [t, rh, rw]) = preset.resize(&[whole]).unwrap();
        assert_eq!([t, rh, rw], [1, 4, 5]);
        assert_eq!(
            preset.apply_at(&bytes, [t, rh, rw], centre).unwrap(),
            preset.transform(&[whole], centre).unwrap()
        );
        // Frames of two sizes in one clip are refused.
        let small = RgbFrame::new(&frame[..4 * 4 * 3], [4, 4]).unwrap();
        let error = preset.transform(&[whole, small], flip).unwrap_err();
        assert!(error.to_string().contains("6x8 and 4x4"), "{error}");
    }

    #[test]
    fn sizes_and_bad_frames() {
        let preset = VideoPreset::new();
        assert_eq!(preset.resized_size(720, 1280), [256, 455]);
        assert_eq!(preset.resized_size(1280, 720), [455, 256]);
        let err = |frames: &[u8], dims| preset.apply(frames, dims).unwrap_err().to_string();
        assert!(err(&[0; 10], [1, 2, 2]).contains("10 bytes"));
        assert!(err(&[], [0, 2, 2]).contains("no frames"));
        let small = VideoPreset::new().with_resize(100);
        assert!(
            small
                .apply(&[0; 3 * 200 * 300], [1, 200, 300])
                .unwrap_err()
                .to_string()
                .contains("smaller than")
        );
    }
}
