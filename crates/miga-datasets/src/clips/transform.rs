//! How a clip is sampled and transformed: frames (crop, resize, flip, person crop), the
//! skeleton (keypoints, normalisation, flip), and the settings that hold both ([`ClipConfig`]).

use super::*;

/// How RGB frames become a clip tensor: optionally cut out the person, then resize the short
/// side, crop, normalise (torchvision's video preset; see [`VideoPreset`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrameTransform {
    /// Short side after resizing.
    pub resize: usize,
    /// Crop size (square).
    pub crop: usize,
    /// Per-channel mean (after scaling to [0, 1]).
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
    /// Person crop: first cut a square this many shoulder widths on a side, centred on the
    /// neck, out of every frame (where the video's skeleton puts the person: its
    /// [`BodyFrame`]), and treat that square as the frame. The square is moved inside the frame
    /// (and shrunk to the frame's short side when larger). 0 keeps the whole frame, as
    /// torchvision's preset does. A seated upper body with both hands is about 2 wide.
    pub person_box: f32,
}

impl Default for FrameTransform {
    fn default() -> Self {
        Self {
            resize: 256,
            crop: 224,
            mean: [0.45; 3],
            std: [0.225; 3],
            person_box: 0.0,
        }
    }
}

impl FrameTransform {
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if !(self.person_box >= 0.0 && self.person_box.is_finite()) {
            return Err(format!(
                "person_box {} must be 0 (whole frame) or a positive number of shoulder widths",
                self.person_box
            ));
        }
        match self.crop <= self.resize && self.crop > 0 {
            true => Ok(()),
            false => Err(format!(
                "crop {} must be positive and at most the resized short side {}",
                self.crop, self.resize
            )),
        }
    }

    /// Whether frames are cut to the person first (and so need the video's [`BodyFrame`]).
    pub fn crops_person(&self) -> bool {
        self.person_box > 0.0
    }

    /// The person square `[top, left, side]` in pixels of a `h` x `w` frame.
    fn person_square(&self, body: &BodyFrame, h: usize, w: usize) -> [usize; 3] {
        let side = ((self.person_box * body.scale).round() as usize).clamp(1, h.min(w));
        let start = |centre: f32, size: usize| {
            (centre - side as f32 / 2.0)
                .round()
                .clamp(0.0, (size - side) as f32) as usize
        };
        [start(body.centre[1], h), start(body.centre[0], w), side]
    }

    /// Decodes `frames` (absolute indices) of a video and transforms them to `[3, T, crop, crop]`,
    /// cut as `cut` says; `body` places the person crop (needed when
    /// [`FrameTransform::crops_person`]).
    pub fn load(
        &self,
        path: &std::path::Path,
        frames: &[usize],
        cut: Cut,
        body: Option<&BodyFrame>,
    ) -> Result<TensorData> {
        self.apply(&Video::open(path)?.pictures(frames)?, path, cut, body)
    }

    /// Transforms decoded pictures (of the video at `path`, named in errors) to
    /// `[3, T, crop, crop]`, reading only the pixels the resize uses; `body` places the person
    /// crop (needed when [`FrameTransform::crops_person`]).
    pub fn apply(
        &self,
        decoded: &[Picture],
        path: &std::path::Path,
        cut: Cut,
        body: Option<&BodyFrame>,
    ) -> Result<TensorData> {
        timed(Stage::Transform, || {
            let (corner, size) = self.frame_window(decoded, path, body)?;
            self.cut_window(decoded, corner, size, cut)
                .map_err(|e| Error::request(path, e.to_string()))
        })
    }

    /// The pictures cut to the person (when [`FrameTransform::crops_person`]) and resized to
    /// the short side `resize`, not cropped: `[T, H, W, 3]` bytes and `[T, H, W]`, what a clip
    /// cache stores ([`crate::cache`]).
    pub fn resized(
        &self,
        decoded: &[Picture],
        path: &std::path::Path,
        body: Option<&BodyFrame>,
    ) -> Result<crate::cache::CachedFrames> {
        let (corner, size) = self.frame_window(decoded, path, body)?;
        timed(Stage::Transform, || {
            self.preset().resize(&windows(decoded, corner, size))
        })
        .map_err(|e| Error::request(path, e.to_string()))
    }

    fn preset(&self) -> VideoPreset {
        VideoPreset::new()
            .with_resize(self.resize)
            .with_crop([self.crop; 2])
            .with_mean(self.mean)
            .with_std(self.std)
    }

    /// The part of the frames the preset sees `(corner, size)`: the person's square, or the
    /// whole frame.
    fn frame_window(
        &self,
        decoded: &[Picture],
        path: &std::path::Path,
        body: Option<&BodyFrame>,
    ) -> Result<([usize; 2], [usize; 2])> {
        let [h, w] = decoded
            .first()
            .ok_or_else(|| Error::request(path, "no frames to transform"))?
            .size();
        match (self.crops_person(), body) {
            (false, _) => Ok(([0, 0], [h, w])),
            (true, None) => Err(Error::request(
                path,
                "the person crop needs the neck and shoulders from the video's skeleton, and \
                 none were seen",
            )),
            (true, Some(body)) => {
                let [top, left, side] = self.person_square(body, h, w);
                Ok(([top, left], [side, side]))
            }
        }
    }

    /// The preset on the `corner` + `size` window of each frame, cut as `cut` says.
    pub(super) fn cut_window<S: RgbSource>(
        &self,
        decoded: &[S],
        corner: [usize; 2],
        size: [usize; 2],
        cut: Cut,
    ) -> Result<TensorData> {
        let preset = self.preset();
        match cut {
            Cut::Centre => preset.transform(&windows(decoded, corner, size), Placement::default()),
            Cut::Random(draw) => {
                let ([top, left], region) = draw.region(size);
                let corner = [corner[0] + top, corner[1] + left];
                preset.stretch(&windows(decoded, corner, region), draw.flip)
            }
        }
    }
}

/// The `corner` + `size` window of each frame.
fn windows<S: RgbSource>(
    decoded: &[S],
    corner: [usize; 2],
    size: [usize; 2],
) -> Vec<Window<'_, S>> {
    decoded
        .iter()
        .map(|source| Window {
            source,
            corner,
            size,
        })
        .collect()
}

/// How a clip's frames are cut to the crop.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Cut {
    /// torchvision's evaluation preset: short side resized, centre crop.
    #[default]
    Centre,
    /// Training-time augmentation: a random region resized to the crop, maybe mirrored.
    Random(RandomCut),
}

/// The draws of a random resized crop (as torchvision's `RandomResizedCrop`, with one draw
/// clamped to the frame instead of ten tries) and a flip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomCut {
    /// Fraction of the frame's area the region covers.
    pub area: f32,
    /// Width over height of the region.
    pub aspect: f32,
    /// Where the region sits in the free margin (0..=1, vertical then horizontal).
    pub at: [f32; 2],
    /// Mirror left-right.
    pub flip: bool,
}

impl RandomCut {
    /// Draws a cut: area uniform in `area`, aspect log-uniform in `aspect`, place uniform, a flip
    /// with probability `flip`.
    pub fn draw(rng: &mut SeededRng, area: [f32; 2], aspect: [f32; 2], flip: f32) -> Self {
        let area = area[0] + (area[1] - area[0]) * rng.uniform();
        let (low, high) = (aspect[0].ln(), aspect[1].ln());
        let aspect = (low + (high - low) * rng.uniform()).exp();
        let at = [rng.uniform(), rng.uniform()];
        let flip = rng.uniform() < flip;
        Self {
            area,
            aspect,
            at,
            flip,
        }
    }

    /// The region `([top, left], [height, width])` of a `[h, w]` frame: `area` of its pixels
    /// at width/height `aspect`, each side clamped to the frame.
    pub fn region(&self, [h, w]: [usize; 2]) -> ([usize; 2], [usize; 2]) {
        let target = (h * w) as f32 * self.area;
        let side = |value: f32, limit: usize| (value.round() as usize).clamp(1, limit);
        let (rw, rh) = (
            side((target * self.aspect).sqrt(), w),
            side((target / self.aspect).sqrt(), h),
        );
        let place = |at: f32, free: usize| (at.clamp(0.0, 1.0) * free as f32).round() as usize;
        (
            [place(self.at[0], h - rh), place(self.at[1], w - rw)],
            [rh, rw],
        )
    }
}

/// How a video's skeleton is prepared: interpolation, normalisation, the points kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SkeletonTransform {
    /// OpenPose indices (of the 137) of the points to keep, e.g. a skeleton graph's `openpose`
    /// list; empty keeps all 137.
    pub keypoints: Vec<usize>,
    /// Normalise coordinates to the body (centre neck, scale shoulder width).
    pub normalise: bool,
    /// Fill missing points by interpolation in time.
    pub interpolate: bool,
}

impl Default for SkeletonTransform {
    fn default() -> Self {
        Self {
            keypoints: Vec::new(),
            normalise: true,
            interpolate: true,
        }
    }
}

impl SkeletonTransform {
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        match self
            .keypoints
            .iter()
            .find(|&&v| v >= crate::skeleton::OPENPOSE_POINTS)
        {
            Some(v) => Err(format!(
                "keypoint {v} is not one of the 137 OpenPose points"
            )),
            None => Ok(()),
        }
    }

    /// Reads a video's skeleton and applies the per-video steps (interpolation, normalisation);
    /// also gives the [`BodyFrame`] in pixels (`None` when the neck and shoulders are never
    /// seen, which is an error when normalising).
    pub fn prepare(&self, source: &SkeletonSource) -> Result<(Skeleton, Option<BodyFrame>)> {
        let path = source_path(source);
        let mut skeleton = source.read()?;
        if skeleton.frames_with_people() == 0 {
            return Err(Error::request(
                path,
                "the skeleton is empty: no frame shows a person",
            ));
        }
        if self.interpolate {
            skeleton.interpolate_missing();
        }
        let body = match self.normalise {
            true => Some(skeleton.normalise().map_err(|e| Error::request(path, e))?),
            false => skeleton.body_frame(),
        };
        Ok((skeleton, body))
    }

    /// `[3, T, V, 1]` (x, y, confidence; one person, as 2s-AGCN takes it) from frames of a
    /// prepared sequence, mirrored first when `mirror`.
    pub fn tensor(
        &self,
        skeleton: &Skeleton,
        frames: &[usize],
        mirror: bool,
    ) -> std::result::Result<TensorData, String> {
        let mut clip = skeleton.gather(frames)?;
        if mirror {
            clip.mirror(0.0)?;
        }
        if !self.keypoints.is_empty() {
            clip = clip.subset(&self.keypoints)?;
        }
        let (t, v) = (clip.frames(), clip.points());
        let mut out = vec![0.0f32; 3 * t * v];
        for (i, p) in clip.data().chunks(3).enumerate() {
            for c in 0..3 {
                out[c * t * v + i] = p[c];
            }
        }
        Ok(TensorData::new(out, [3, t, v, 1]))
    }
}

/// How clips are sampled and transformed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipConfig {
    /// Streams to load.
    pub modalities: Modalities,
    /// RGB frames per clip (T).
    pub frames: usize,
    /// Skeleton frames per clip; a multiple of `frames`, so that the RGB frames are a subset of
    /// the skeleton frames (every k-th, from the middle of each group).
    pub skeleton_frames: usize,
    /// RGB frames to tensor.
    pub rgb: FrameTransform,
    /// Skeleton preparation.
    pub skeleton: SkeletonTransform,
    /// Training-time randomness: random frames within segments (RGB and skeleton alike), a
    /// random resized crop (`crop_area`, `crop_aspect`; RGB only: skeleton coordinates are
    /// body-normalised), left-right flips (`flip_probability`) of RGB and skeleton together.
    pub augment: bool,
    /// Probability of a left-right flip when augmenting.
    pub flip_probability: f32,
    /// Range of the fraction of the frame (or person square) the random crop covers.
    pub crop_area: [f32; 2],
    /// Range of the random crop's width over height (drawn log-uniform).
    pub crop_aspect: [f32; 2],
    /// A clip cache folder ([`crate::cache`]): RGB frames are read from it, and decoded and
    /// stored when absent. With a cache, frames are sampled uniformly even when augmenting
    /// (crops and flips stay random). Where the cache is, not how clips look: not saved with
    /// the settings.
    #[serde(skip)]
    pub cache: Option<PathBuf>,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            modalities: Modalities::Both,
            frames: 16,
            skeleton_frames: 64,
            rgb: FrameTransform::default(),
            skeleton: SkeletonTransform::default(),
            augment: false,
            flip_probability: 0.5,
            crop_area: [0.25, 1.0],
            crop_aspect: [0.75, 4.0 / 3.0],
            cache: None,
        }
    }
}

impl ClipConfig {
    pub(super) fn check(&self) -> std::result::Result<(), String> {
        if self.frames == 0
            || self.skeleton_frames == 0
            || !self.skeleton_frames.is_multiple_of(self.frames)
        {
            return Err(format!(
                "skeleton_frames ({}) must be a positive multiple of frames ({})",
                self.skeleton_frames, self.frames
            ));
        }
        self.rgb.check()?;
        self.skeleton.check()?;
        let [a0, a1] = self.crop_area;
        let [r0, r1] = self.crop_aspect;
        let area_ok = 0.0 < a0 && a0 <= a1 && a1 <= 1.0;
        let aspect_ok = 0.0 < r0 && r0 <= r1 && r1.is_finite();
        if !(area_ok && aspect_ok) {
            return Err(format!(
                "crop_area {:?} must rise within (0, 1] and crop_aspect {:?} be positive and \
                 rising",
                self.crop_area, self.crop_aspect
            ));
        }
        if !(0.0..=1.0).contains(&self.flip_probability) {
            return Err(format!(
                "flip_probability {} is not a probability",
                self.flip_probability
            ));
        }
        let flips = self.augment && self.flip_probability > 0.0;
        if flips && self.modalities.skeleton() && !self.skeleton.normalise {
            return Err(
                "flip augmentation mirrors the skeleton about the neck, which needs \
                 normalised coordinates: set skeleton.normalise = true or flip_probability = 0"
                    .into(),
            );
        }
        Ok(())
    }
}
