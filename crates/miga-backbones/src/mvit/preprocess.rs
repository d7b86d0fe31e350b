//! torchvision's video classification preset (`VideoClassification`, the transforms of
//! `MViT_V2_S_Weights.KINETICS400_V1`) on decoded frames.

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

/// For each output position along one axis of a bilinear resize: the two source indices and
/// their weights, as PyTorch computes them in f32 (align_corners=false).
fn taps(input: usize, output: usize) -> Vec<(usize, usize, f32, f32)> {
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
        let invalid = |reason: String| Error::InvalidInput {
            model: "mvit",
            reason,
        };
        if t == 0 || h == 0 || w == 0 {
            return Err(invalid(format!("no frames to preprocess ({t}x{h}x{w})")));
        }
        if frames.len() != t * h * w * 3 {
            return Err(invalid(format!(
                "{} bytes are not {t} frames of {h}x{w} RGB ({} bytes)",
                frames.len(),
                t * h * w * 3
            )));
        }
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
        let mut cols = taps(w, rw)[left..left + cw].to_vec();
        if placement.flip {
            cols.reverse();
        }
        let mut out = vec![0.0f32; 3 * t * ch * cw];
        for f in 0..t {
            let frame = &frames[f * h * w * 3..(f + 1) * h * w * 3];
            let px = |y: usize, x: usize, c: usize| frame[(y * w + x) * 3 + c] as f32;
            for (oy, &(y0, y1, wy0, wy1)) in rows.iter().enumerate() {
                for (ox, &(x0, x1, wx0, wx1)) in cols.iter().enumerate() {
                    for c in 0..3 {
                        let top_row = px(y0, x0, c) * wx0 + px(y0, x1, c) * wx1;
                        let bottom_row = px(y1, x0, c) * wx0 + px(y1, x1, c) * wx1;
                        let value = (top_row * wy0 + bottom_row * wy1).round_ties_even();
                        out[((c * t + f) * ch + oy) * cw + ox] =
                            (value / 255.0 - self.mean[c]) / self.std[c];
                    }
                }
            }
        }
        Ok(TensorData::new(out, [3, t, ch, cw]))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::tensor_io::read_tensors;

    #[test]
    fn matches_torchvisions_preset() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mvit/preprocess.safetensors");
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
