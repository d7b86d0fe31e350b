//! The in-memory skeleton sequence: T frames x V points x (x, y, confidence), f32.

/// Number of OpenPose points per frame: body 25, face 70, left hand 21, right hand 21.
pub const OPENPOSE_POINTS: usize = 137;
/// First index of each OpenPose part among the 137 points.
pub const BODY: usize = 0;
/// First face point.
pub const FACE: usize = 25;
/// First left-hand point.
pub const LEFT_HAND: usize = 95;
/// First right-hand point.
pub const RIGHT_HAND: usize = 116;

const NECK: usize = 1;
const RIGHT_SHOULDER: usize = 2;
const LEFT_SHOULDER: usize = 5;

/// Left-right pairs of the OpenPose body-25 points.
const BODY_PAIRS: [(usize, usize); 11] = [
    (2, 5),
    (3, 6),
    (4, 7),
    (9, 12),
    (10, 13),
    (11, 14),
    (15, 16),
    (17, 18),
    (19, 22),
    (20, 23),
    (21, 24),
];
/// Left-right pairs of the 70 OpenPose face points (contour, brows, nose, eyes, mouth, pupils);
/// the points on the centre line map to themselves.
const FACE_PAIRS: [(usize, usize); 30] = [
    (0, 16),
    (1, 15),
    (2, 14),
    (3, 13),
    (4, 12),
    (5, 11),
    (6, 10),
    (7, 9),
    (17, 26),
    (18, 25),
    (19, 24),
    (20, 23),
    (21, 22),
    (31, 35),
    (32, 34),
    (36, 45),
    (37, 44),
    (38, 43),
    (39, 42),
    (40, 47),
    (41, 46),
    (48, 54),
    (49, 53),
    (50, 52),
    (59, 55),
    (58, 56),
    (60, 64),
    (61, 63),
    (67, 65),
    (68, 69),
];

/// A skeleton sequence: `frames` x `points` x 3 values (x, y, confidence), row-major.
/// A missing point is (0, 0, 0), as OpenPose writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Skeleton {
    frames: usize,
    points: usize,
    data: Vec<f32>,
}

/// Where normalised coordinates come from (see [`Skeleton::normalise`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BodyFrame {
    /// Centre: median neck position over the frames where it is seen.
    pub centre: [f32; 2],
    /// Scale: median shoulder width over the frames where both shoulders are seen.
    pub scale: f32,
}

impl Skeleton {
    /// A sequence from its values (`frames * points * 3` of them); errors on a wrong length or a
    /// non-finite value.
    pub fn new(frames: usize, points: usize, data: Vec<f32>) -> std::result::Result<Self, String> {
        if data.len() != frames * points * 3 {
            return Err(format!(
                "{} values for {frames} frames x {points} points x 3",
                data.len()
            ));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "non-finite value at frame {}, point {}",
                i / (points * 3),
                i / 3 % points
            ));
        }
        Ok(Self {
            frames,
            points,
            data,
        })
    }

    /// An all-missing sequence.
    pub fn empty(frames: usize, points: usize) -> Self {
        Self {
            frames,
            points,
            data: vec![0.0; frames * points * 3],
        }
    }

    /// Number of frames (T).
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Number of points per frame (V).
    pub fn points(&self) -> usize {
        self.points
    }

    /// All values, T x V x 3.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values of frame `t` (V x 3).
    pub fn frame(&self, t: usize) -> &[f32] {
        &self.data[t * self.points * 3..(t + 1) * self.points * 3]
    }

    /// The values of frame `t`, mutable.
    pub fn frame_mut(&mut self, t: usize) -> &mut [f32] {
        let n = self.points * 3;
        &mut self.data[t * n..(t + 1) * n]
    }

    /// `(x, y, confidence)` of point `v` in frame `t`.
    pub fn point(&self, t: usize, v: usize) -> [f32; 3] {
        let i = (t * self.points + v) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Number of frames with at least one seen point.
    pub fn frames_with_people(&self) -> usize {
        (0..self.frames)
            .filter(|&t| self.frame(t).chunks(3).any(|p| p[2] > 0.0))
            .count()
    }

    /// The frames at `indices` (in that order; an index may repeat), as a new sequence.
    pub fn gather(&self, indices: &[usize]) -> std::result::Result<Self, String> {
        let mut data = Vec::with_capacity(indices.len() * self.points * 3);
        for &t in indices {
            if t >= self.frames {
                return Err(format!(
                    "frame {t} is beyond the sequence's {} frames",
                    self.frames
                ));
            }
            data.extend_from_slice(self.frame(t));
        }
        Ok(Self {
            frames: indices.len(),
            points: self.points,
            data,
        })
    }

    /// The points at `indices` (e.g. a skeleton graph's OpenPose indices), as a new sequence.
    pub fn subset(&self, indices: &[usize]) -> std::result::Result<Self, String> {
        if let Some(&bad) = indices.iter().find(|&&v| v >= self.points) {
            return Err(format!(
                "point {bad} is beyond the sequence's {} points",
                self.points
            ));
        }
        let mut data = Vec::with_capacity(self.frames * indices.len() * 3);
        for t in 0..self.frames {
            for &v in indices {
                data.extend_from_slice(&self.point(t, v));
            }
        }
        Ok(Self {
            frames: self.frames,
            points: indices.len(),
            data,
        })
    }

    /// The body frame of an OpenPose sequence (137 or body-25 points first), or `None` when the
    /// neck or the shoulders are never seen.
    pub fn body_frame(&self) -> Option<BodyFrame> {
        if self.points <= LEFT_SHOULDER {
            return None;
        }
        let seen = |t: usize, v: usize| Some(self.point(t, v)).filter(|p| p[2] > 0.0);
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        let mut widths = Vec::new();
        for t in 0..self.frames {
            if let Some(p) = seen(t, NECK) {
                xs.push(p[0]);
                ys.push(p[1]);
            }
            if let (Some(r), Some(l)) = (seen(t, RIGHT_SHOULDER), seen(t, LEFT_SHOULDER)) {
                widths.push(((r[0] - l[0]).powi(2) + (r[1] - l[1]).powi(2)).sqrt());
            }
        }
        let scale = median(&mut widths)?;
        (scale > 0.0).then_some(BodyFrame {
            centre: [median(&mut xs)?, median(&mut ys)?],
            scale,
        })
    }

    /// Normalises coordinates to the body: `(p - centre) / scale` with the sequence's
    /// [`BodyFrame`] (one for the whole sequence, so that body motion is kept), which makes them
    /// independent of image size. Missing points stay (0, 0, 0). Errors when there is no body
    /// frame (no neck or shoulders seen).
    pub fn normalise(&mut self) -> std::result::Result<BodyFrame, String> {
        let body = self
            .body_frame()
            .ok_or("no frame shows the neck and both shoulders")?;
        for p in self.data.chunks_mut(3).filter(|p| p[2] > 0.0) {
            p[0] = (p[0] - body.centre[0]) / body.scale;
            p[1] = (p[1] - body.centre[1]) / body.scale;
        }
        Ok(body)
    }

    /// Fills missing points by linear interpolation in time between the nearest frames where
    /// the point is seen (held constant before the first and after the last). Filled points
    /// keep confidence 0, so a model still knows they were not observed. Points never seen stay
    /// (0, 0, 0).
    pub fn interpolate_missing(&mut self) {
        let (frames, points) = (self.frames, self.points);
        for v in 0..points {
            let seen: Vec<usize> = (0..frames).filter(|&t| self.point(t, v)[2] > 0.0).collect();
            if seen.is_empty() {
                continue;
            }
            for t in 0..frames {
                if self.point(t, v)[2] > 0.0 {
                    continue;
                }
                let after = seen.partition_point(|&s| s < t);
                let (a, b) = match (
                    after.checked_sub(1).map(|i| seen[i]),
                    seen.get(after).copied(),
                ) {
                    (Some(a), Some(b)) => (a, b),
                    (Some(a), None) => (a, a),
                    (None, Some(b)) => (b, b),
                    (None, None) => unreachable!("seen is not empty"),
                };
                let w = if a == b {
                    0.0
                } else {
                    (t - a) as f32 / (b - a) as f32
                };
                let (pa, pb) = (self.point(a, v), self.point(b, v));
                let i = (t * points + v) * 3;
                self.data[i] = pa[0] + w * (pb[0] - pa[0]);
                self.data[i + 1] = pa[1] + w * (pb[1] - pa[1]);
            }
        }
    }

    /// Mirrors the sequence left-right about the vertical line `x = axis` (0 for normalised
    /// coordinates, half the image width for pixels) and swaps left and right points (body,
    /// face and hands), as a horizontally flipped video would show. Needs the 137 OpenPose
    /// points.
    pub fn mirror(&mut self, axis: f32) -> std::result::Result<(), String> {
        if self.points != OPENPOSE_POINTS {
            return Err(format!(
                "mirroring needs the {OPENPOSE_POINTS} OpenPose points, not {}",
                self.points
            ));
        }
        let permutation = mirror_permutation();
        for t in 0..self.frames {
            let frame = self.frame(t).to_vec();
            let out = self.frame_mut(t);
            for (v, &src) in permutation.iter().enumerate() {
                let p = &frame[src * 3..src * 3 + 3];
                let x = if p[2] > 0.0 { 2.0 * axis - p[0] } else { p[0] };
                out[v * 3..v * 3 + 3].copy_from_slice(&[x, p[1], p[2]]);
            }
        }
        Ok(())
    }
}

/// The left-right permutation of the 137 OpenPose points.
pub fn mirror_permutation() -> [usize; OPENPOSE_POINTS] {
    let mut permutation = std::array::from_fn(|v| v);
    let pairs = BODY_PAIRS
        .iter()
        .map(|&(a, b)| (BODY + a, BODY + b))
        .chain(FACE_PAIRS.iter().map(|&(a, b)| (FACE + a, FACE + b)));
    for (a, b) in pairs.chain((0..21).map(|i| (LEFT_HAND + i, RIGHT_HAND + i))) {
        permutation[a] = b;
        permutation[b] = a;
    }
    permutation
}

fn median(values: &mut [f32]) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    Some(values[values.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_point(values: &[[f32; 3]]) -> Skeleton {
        Skeleton::new(values.len(), 1, values.iter().flatten().copied().collect()).unwrap()
    }

    #[test]
    fn interpolation_fills_gaps_and_holds_ends() {
        let mut s = one_point(&[
            [0.0; 3],
            [2.0, 4.0, 1.0],
            [0.0; 3],
            [0.0; 3],
            [8.0, 10.0, 0.5],
            [0.0; 3],
        ]);
        s.interpolate_missing();
        let xs: Vec<f32> = (0..6).map(|t| s.point(t, 0)[0]).collect();
        assert_eq!(xs, [2.0, 2.0, 4.0, 6.0, 8.0, 8.0]);
        assert_eq!(s.point(2, 0)[2], 0.0, "filled points keep confidence 0");
    }

    #[test]
    fn mirror_is_an_involution_that_swaps_hands() {
        let permutation = mirror_permutation();
        assert!((0..OPENPOSE_POINTS).all(|v| permutation[permutation[v]] == v));
        assert_eq!(permutation[LEFT_HAND + 3], RIGHT_HAND + 3);
        assert_eq!(permutation[FACE + 36], FACE + 45);
        let data: Vec<f32> = (0..OPENPOSE_POINTS)
            .flat_map(|v| [v as f32 + 1.0, 2.0, 1.0])
            .collect();
        let mut s = Skeleton::new(1, OPENPOSE_POINTS, data.clone()).unwrap();
        s.mirror(0.0).unwrap();
        assert_eq!(
            s.point(0, LEFT_HAND),
            [-(RIGHT_HAND as f32 + 1.0), 2.0, 1.0]
        );
        s.mirror(0.0).unwrap();
        assert_eq!(s.data(), &data[..]);
    }

    #[test]
    fn normalisation_uses_neck_and_shoulders() {
        let mut data = vec![0.0; OPENPOSE_POINTS * 3];
        for (v, p) in [
            (NECK, [100.0, 50.0]),
            (RIGHT_SHOULDER, [80.0, 50.0]),
            (LEFT_SHOULDER, [120.0, 50.0]),
        ] {
            data[v * 3..v * 3 + 3].copy_from_slice(&[p[0], p[1], 1.0]);
        }
        let mut s = Skeleton::new(1, OPENPOSE_POINTS, data).unwrap();
        let body = s.normalise().unwrap();
        assert_eq!(
            body,
            BodyFrame {
                centre: [100.0, 50.0],
                scale: 40.0
            }
        );
        assert_eq!(s.point(0, LEFT_SHOULDER), [0.5, 0.0, 1.0]);
        assert_eq!(s.point(0, 0), [0.0; 3]);
        assert!(Skeleton::empty(3, OPENPOSE_POINTS).normalise().is_err());
    }

    #[test]
    fn subsets_and_gathers_check_their_indices() {
        let s = Skeleton::empty(4, OPENPOSE_POINTS);
        assert_eq!(s.subset(&[0, 1, 136]).unwrap().points(), 3);
        assert!(s.subset(&[137]).is_err());
        assert_eq!(s.gather(&[3, 3, 0]).unwrap().frames(), 3);
        assert!(s.gather(&[4]).is_err());
        assert!(
            Skeleton::new(1, 1, vec![f32::NAN, 0.0, 0.0])
                .unwrap_err()
                .contains("frame 0, point 0")
        );
    }
}
