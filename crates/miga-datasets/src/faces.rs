//! Aligned face crops from OpenPose face keypoints, for SwinFace.
//!
//! iMiGUE's OpenPose output has 70 face keypoints per frame (the 68 iBUG points plus the two
//! pupils), so no face detector is needed: five landmarks (the two eye centres, the nose tip,
//! the mouth corners) are taken from them, the similarity transform to ArcFace's 112x112
//! five-point template is fitted by least squares (Umeyama's method, as scikit-image's and
//! insightface's alignment), and the frame is warped with bilinear sampling (pixels centred on
//! integer coordinates, black outside the frame, as OpenCV's `warpAffine`) into an RGB8 crop.
//! [`FaceCrop::normalised`] gives SwinFace's input: RGB, `(x / 255 - 0.5) / 0.5`, channels first.
//!
//! Frames whose landmarks are missing, low-confidence or not finite are reported with a
//! [`FaceSkip`] saying which point, never cropped at (0, 0).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Result;
use crate::skeleton::{FACE, Skeleton};
use crate::video::{Frame, Video, write_png};

/// Side of an aligned crop.
pub const CROP_SIZE: u32 = 112;

/// ArcFace's five landmarks in a 112x112 crop: the eye on the image's left (the subject's
/// right), the other eye, the nose tip, the mouth corner on the image's left, the other.
pub const ARCFACE_TEMPLATE: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// Face keypoints (0..70, OpenPose's face model) behind each landmark: the six points around
/// each eye (averaged), the nose tip, the mouth corners.
pub const LANDMARK_POINTS: [&[usize]; 5] = [
    &[36, 37, 38, 39, 40, 41],
    &[42, 43, 44, 45, 46, 47],
    &[30],
    &[48],
    &[54],
];

/// Why a frame has no crop.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FaceSkip {
    /// OpenPose did not find the point (stored as 0, 0 with confidence 0), or there is no
    /// person in the frame.
    #[error("face point {point} missing")]
    Missing {
        /// Face keypoint index (0..70).
        point: usize,
    },
    /// The point's confidence is below the threshold.
    #[error("face point {point} has confidence {confidence:.3} < {threshold}")]
    LowConfidence {
        /// Face keypoint index (0..70).
        point: usize,
        /// Its confidence.
        confidence: f32,
        /// The threshold.
        threshold: f32,
    },
    /// The point's coordinates or confidence are NaN or infinite.
    #[error("face point {point} is not finite")]
    NotFinite {
        /// Face keypoint index (0..70).
        point: usize,
    },
    /// The landmarks coincide: no transform maps them onto the template.
    #[error("the five landmarks are degenerate (coincide)")]
    Degenerate,
    /// The skeleton has no such frame (it is shorter than the video).
    #[error("the skeleton has no frame here")]
    NoSkeletonFrame,
}

/// The five landmarks of frame `t` of an OpenPose skeleton (137 points: face points from
/// [`FACE`]), in pixels, in [`ARCFACE_TEMPLATE`] order; each face point must have
/// `confidence >= threshold`.
pub fn landmarks(
    skeleton: &Skeleton,
    t: usize,
    threshold: f32,
) -> std::result::Result<[[f64; 2]; 5], FaceSkip> {
    if t >= skeleton.frames() {
        return Err(FaceSkip::NoSkeletonFrame);
    }
    let mut out = [[0.0; 2]; 5];
    for (landmark, points) in out.iter_mut().zip(LANDMARK_POINTS) {
        for &point in points {
            let [x, y, c] = skeleton.point(t, FACE + point);
            if !(x.is_finite() && y.is_finite() && c.is_finite()) {
                return Err(FaceSkip::NotFinite { point });
            }
            if c <= 0.0 && x == 0.0 && y == 0.0 {
                return Err(FaceSkip::Missing { point });
            }
            if c < threshold {
                return Err(FaceSkip::LowConfidence {
                    point,
                    confidence: c,
                    threshold,
                });
            }
            landmark[0] += f64::from(x) / points.len() as f64;
            landmark[1] += f64::from(y) / points.len() as f64;
        }
    }
    Ok(out)
}

/// The least-squares similarity transform (rotation, uniform scale, translation; no reflection)
/// taking `from` onto `to`, as a 2x3 matrix `[[a, -b, tx], [b, a, ty]]`; `None` when `from`
/// has no spread. In 2D this is Umeyama's solution in closed form.
pub fn similarity(from: &[[f64; 2]], to: &[[f64; 2]]) -> Option<[[f64; 3]; 2]> {
    let n = from.len().min(to.len()) as f64;
    let mean = |p: &[[f64; 2]]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| (x + q[0], y + q[1]));
        [sx / n, sy / n]
    };
    let (mf, mt) = (mean(from), mean(to));
    let (mut dot, mut cross, mut spread) = (0.0, 0.0, 0.0);
    for (p, q) in from.iter().zip(to) {
        let (px, py) = (p[0] - mf[0], p[1] - mf[1]);
        let (qx, qy) = (q[0] - mt[0], q[1] - mt[1]);
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        spread += px * px + py * py;
    }
    if spread <= 1e-12 * n {
        return None;
    }
    let (a, b) = (dot / spread, cross / spread);
    Some([
        [a, -b, mt[0] - a * mf[0] + b * mf[1]],
        [b, a, mt[1] - b * mf[0] - a * mf[1]],
    ])
}

/// An aligned RGB8 face crop.
#[derive(Debug, Clone)]
pub struct FaceCrop {
    /// The crop, [`CROP_SIZE`] square.
    pub image: Frame,
    /// The transform from frame pixels to crop pixels.
    pub transform: [[f64; 3]; 2],
}

impl FaceCrop {
    /// SwinFace's input for this crop: `[3, 112, 112]` row-major, RGB, `(x / 255 - 0.5) / 0.5`.
    pub fn normalised(&self) -> Vec<f32> {
        let (w, h) = self.image.dimensions();
        let mut out = vec![0.0; (3 * w * h) as usize];
        let plane = (w * h) as usize;
        for (i, pixel) in self.image.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (f32::from(pixel[c]) / 255.0 - 0.5) / 0.5;
            }
        }
        out
    }
}

/// Warps `frame` by `transform` (frame pixels to output pixels) into a `size x size` RGB8
/// image: each output pixel samples the frame bilinearly at the inverse-mapped point, pixels
/// outside the frame being black; values are rounded to the nearest integer.
pub fn warp(frame: &Frame, transform: &[[f64; 3]; 2], size: u32) -> Frame {
    let [[a, b, tx], [c, d, ty]] = *transform;
    let det = a * d - b * c;
    // Inverse of the linear part, applied to (x - tx, y - ty).
    let (ia, ib, ic, id) = (d / det, -b / det, -c / det, a / det);
    let (fw, fh) = (frame.width() as i64, frame.height() as i64);
    let texel = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= fw || y >= fh {
            [0.0; 3]
        } else {
            frame.get_pixel(x as u32, y as u32).0.map(f64::from)
        }
    };
    Frame::from_fn(size, size, |u, v| {
        let (u, v) = (f64::from(u) - tx, f64::from(v) - ty);
        let (x, y) = (ia * u + ib * v, ic * u + id * v);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let corners = [
            (texel(x0, y0), (1.0 - fx) * (1.0 - fy)),
            (texel(x0 + 1, y0), fx * (1.0 - fy)),
            (texel(x0, y0 + 1), (1.0 - fx) * fy),
            (texel(x0 + 1, y0 + 1), fx * fy),
        ];
        let mut rgb = [0.0; 3];
        for (value, weight) in corners {
            for ch in 0..3 {
                rgb[ch] += value[ch] * weight;
            }
        }
        image::Rgb(rgb.map(|v| v.round().clamp(0.0, 255.0) as u8))
    })
}

/// The aligned crop of frame `t`, or why there is none.
pub fn align(
    frame: &Frame,
    skeleton: &Skeleton,
    t: usize,
    threshold: f32,
) -> std::result::Result<FaceCrop, FaceSkip> {
    let points = landmarks(skeleton, t, threshold)?;
    let transform = similarity(&points, &ARCFACE_TEMPLATE).ok_or(FaceSkip::Degenerate)?;
    Ok(FaceCrop {
        image: warp(frame, &transform, CROP_SIZE),
        transform,
    })
}

/// What [`write_faces`] did.
#[derive(Debug, Clone, Serialize)]
pub struct FacesReport {
    /// The video.
    pub video: PathBuf,
    /// Frames in the video.
    pub video_frames: usize,
    /// Frames in the skeleton.
    pub skeleton_frames: usize,
    /// Crops written (`face_<frame:06>.png`).
    pub written: usize,
    /// Frames without a crop, and why.
    pub skipped: Vec<SkippedFrame>,
}

/// A frame without a crop.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedFrame {
    /// Frame index.
    pub frame: usize,
    /// Why.
    #[serde(flatten)]
    pub reason: FaceSkip,
}

/// Frames decoded per batch by [`write_faces`].
const CHUNK: usize = 64;

/// Writes the aligned crop of every frame of `video` as `out/face_<frame:06>.png` and the
/// report as `out/faces.json`; `progress` is called with the frames done so far. Frames are
/// decoded in chunks, so memory stays flat on long videos.
pub fn write_faces(
    skeleton: &Skeleton,
    video: &mut Video,
    out: &Path,
    threshold: f32,
    mut progress: impl FnMut(usize),
) -> Result<FacesReport> {
    let _lock = crate::lock::FolderLock::folder(out, None, "face crops")?;
    let total = video.info().frames;
    let mut report = FacesReport {
        video: video.path().to_path_buf(),
        video_frames: total,
        skeleton_frames: skeleton.frames(),
        written: 0,
        skipped: Vec::new(),
    };
    for start in (0..total).step_by(CHUNK) {
        let indices: Vec<usize> = (start..(start + CHUNK).min(total)).collect();
        let frames = video.frames(&indices)?;
        for (&t, frame) in indices.iter().zip(&frames) {
            match align(frame, skeleton, t, threshold) {
                Ok(crop) => {
                    write_png(&out.join(format!("face_{t:06}.png")), &crop.image)?;
                    report.written += 1;
                }
                Err(reason) => report.skipped.push(SkippedFrame { frame: t, reason }),
            }
        }
        progress(indices[indices.len() - 1] + 1);
    }
    let path = out.join("faces.json");
    let json = serde_json::to_vec_pretty(&report).expect("the report serialises");
    crate::io::write_atomic(&path, &json)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::tensor::TensorData;

    use super::*;
    use crate::skeleton::OPENPOSE_POINTS;

    fn fixture() -> BTreeMap<String, TensorData> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces/align.safetensors");
        crate::tensors::read_tensors(path).unwrap()
    }

    fn values(data: &TensorData) -> Vec<f32> {
        data.to_vec::<f32>().unwrap()
    }

    fn points(landmarks: &[f32], i: usize) -> Vec<[f64; 2]> {
        (0..5)
            .map(|k| {
                let at = (i * 5 + k) * 2;
                [f64::from(landmarks[at]), f64::from(landmarks[at + 1])]
            })
            .collect()
    }

    #[test]
    fn similarity_matches_scikit_image() {
        let io = fixture();
        let landmarks = values(&io["landmarks"]);
        let expected = values(&io["transforms"]);
        let cases = io["landmarks"].shape[0];
        let mut worst = 0.0f64;
        for i in 0..cases {
            let m = similarity(&points(&landmarks, i), &ARCFACE_TEMPLATE).unwrap();
            for (k, v) in m.iter().flatten().enumerate() {
                worst = worst.max((v - f64::from(expected[i * 6 + k])).abs());
            }
        }
        eprintln!("similarity vs scikit-image: max abs error {worst:e}");
        assert!(worst <= 1e-3);
        assert!(similarity(&[[1.0, 1.0]; 5], &ARCFACE_TEMPLATE).is_none());
    }

    #[test]
    fn warp_matches_scikit_image_up_to_rounding() {
        let io = fixture();
        let [h, w, _] = io["image"].shape.dims::<3>();
        let pixels: Vec<u8> = values(&io["image"]).iter().map(|&v| v as u8).collect();
        let frame = Frame::from_raw(w as u32, h as u32, pixels).unwrap();
        let landmarks = values(&io["landmarks"]);
        let crops = values(&io["crops"]);
        let mut worst = 0.0f32;
        for i in 0..io["crops"].shape[0] {
            let m = similarity(&points(&landmarks, i), &ARCFACE_TEMPLATE).unwrap();
            let crop = warp(&frame, &m, CROP_SIZE);
            let expected = &crops[i * 112 * 112 * 3..(i + 1) * 112 * 112 * 3];
            for (got, want) in crop.as_raw().iter().zip(expected) {
                worst = worst.max((f32::from(*got) - want).abs());
            }
        }
        eprintln!("warp vs scikit-image: max abs error {worst} (crops rounded to u8)");
        assert!(worst <= 0.5 + 1e-3);
    }

    /// A one-frame skeleton whose face points are the fixture's first landmark set (each eye's
    /// six points around its centre).
    fn skeleton_with_face(confidence: f32) -> (Skeleton, Vec<[f64; 2]>) {
        let landmarks = values(&fixture()["landmarks"]);
        let five = points(&landmarks, 0);
        let mut skeleton = Skeleton::empty(1, OPENPOSE_POINTS);
        let frame = skeleton.frame_mut(0);
        for (k, face_points) in LANDMARK_POINTS.iter().enumerate() {
            for (j, &p) in face_points.iter().enumerate() {
                let offset = if face_points.len() > 1 {
                    let a = std::f64::consts::TAU * j as f64 / 6.0;
                    [2.0 * a.cos(), 2.0 * a.sin()]
                } else {
                    [0.0, 0.0]
                };
                let at = (FACE + p) * 3;
                frame[at] = (five[k][0] + offset[0]) as f32;
                frame[at + 1] = (five[k][1] + offset[1]) as f32;
                frame[at + 2] = confidence;
            }
        }
        (skeleton, five)
    }

    #[test]
    fn landmarks_come_from_the_openpose_face_points() {
        let (skeleton, five) = skeleton_with_face(0.9);
        let got = landmarks(&skeleton, 0, 0.3).unwrap();
        for (g, w) in got.iter().zip(&five) {
            assert!((g[0] - w[0]).abs() < 1e-4 && (g[1] - w[1]).abs() < 1e-4);
        }
        assert_eq!(landmarks(&skeleton, 1, 0.3), Err(FaceSkip::NoSkeletonFrame));
        let low = landmarks(&skeleton_with_face(0.2).0, 0, 0.3).unwrap_err();
        assert!(
            matches!(low, FaceSkip::LowConfidence { point: 36, .. }),
            "{low}"
        );

        let (mut skeleton, _) = skeleton_with_face(0.9);
        let at = (FACE + 30) * 3;
        skeleton.frame_mut(0)[at..at + 3].copy_from_slice(&[0.0, 0.0, 0.0]);
        assert_eq!(
            landmarks(&skeleton, 0, 0.3),
            Err(FaceSkip::Missing { point: 30 })
        );
        skeleton.frame_mut(0)[at] = f32::NAN;
        assert_eq!(
            landmarks(&skeleton, 0, 0.3),
            Err(FaceSkip::NotFinite { point: 30 })
        );
        let empty = Skeleton::empty(1, OPENPOSE_POINTS);
        assert_eq!(
            landmarks(&empty, 0, 0.3),
            Err(FaceSkip::Missing { point: 36 })
        );
    }

    #[test]
    fn crops_normalise_as_swinface_does() {
        let (skeleton, _) = skeleton_with_face(0.9);
        let frame = Frame::from_fn(96, 72, |x, _| image::Rgb([255, 0, (x % 2 * 255) as u8]));
        let crop = align(&frame, &skeleton, 0, 0.3).unwrap();
        let x = crop.normalised();
        assert_eq!(x.len(), 3 * 112 * 112);
        // Inside the frame: red is 1, green -1 (channels first, RGB order).
        let centre = 56 * 112 + 56;
        assert_eq!((x[centre], x[112 * 112 + centre]), (1.0, -1.0));
        assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
