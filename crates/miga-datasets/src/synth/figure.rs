//! The synthetic figure: a seated person behind a table, posed from a few parameters, with
//! its 137 OpenPose points and a simple rendering.
//!
//! Two things are seen by one modality only, on purpose: the fingers' layout is in the hand
//! keypoints but not drawn (a hand is a blob of skin in the pixels), and a held object is
//! drawn but has no keypoint.

use crate::sampling::SeededRng;
use crate::skeleton::{FACE, LEFT_HAND, OPENPOSE_POINTS, RIGHT_HAND};

/// A 2-D point in figure units (x right, y down, origin at the neck; 1 unit is about half a
/// shoulder width).
pub type P = [f32; 2];

/// Where the hands, head and torso are at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Right hand (the person's right: image left).
    pub right_hand: P,
    /// Left hand.
    pub left_hand: P,
    /// Head offset from its rest position.
    pub head: P,
    /// Head roll (radians, positive tilts towards the image right).
    pub roll: f32,
    /// Neck offset (torso sway and rise).
    pub neck: P,
    /// Shoulder lift.
    pub shrug: f32,
    /// Hands hidden behind the body (OpenPose misses them).
    pub hands_hidden: bool,
    /// Mouth curve in head radii: positive lowers the middle of the mouth below its corners (a
    /// smile), negative raises it (a frown).
    pub mouth: f32,
    /// How the fingers lie (hand keypoints only: the rendering draws no fingers).
    pub fingers: Fingers,
    /// An object held in the right hand (drawn only: OpenPose has no point for it).
    pub object: bool,
    /// A towel over the shoulders (drawn only).
    pub towel: bool,
}

/// The fingers' layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fingers {
    /// Spread along the forearm.
    Open,
    /// Pointing across the body, each hand's fingers between the other's.
    Crossed,
    /// Pointing up, the tips of both hands together (a steeple).
    Steepled,
}

/// The held object's colour: saturated, outside every colour a [`Look`] draws.
pub const OBJECT: [u8; 3] = [250, 40, 230];
/// The towel's colour: near white, brighter than every colour a [`Look`] draws.
pub const TOWEL: [u8; 3] = [245, 245, 238];

/// Rest positions of the hands (on the table).
pub const REST_RIGHT: P = [-0.45, 1.5];
/// See [`REST_RIGHT`].
pub const REST_LEFT: P = [0.45, 1.5];

impl Pose {
    /// The rest pose.
    pub fn rest() -> Self {
        Self {
            right_hand: REST_RIGHT,
            left_hand: REST_LEFT,
            head: [0.0; 2],
            roll: 0.0,
            neck: [0.0; 2],
            shrug: 0.0,
            hands_hidden: false,
            mouth: 0.0,
            fingers: Fingers::Open,
            object: false,
            towel: false,
        }
    }
}

/// Per-video look and build of the figure.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    /// Pixels per figure unit.
    pub unit: f32,
    /// Neck position in pixels.
    pub origin: P,
    /// Shoulder half-width in units.
    pub shoulders: f32,
    /// Neck to head centre, in units (varies between subjects as much as a lost match lowers
    /// the head, so that head height alone does not give the outcome away).
    pub neck_length: f32,
    /// Colours (RGB).
    pub skin: [u8; 3],
    /// Shirt colour.
    pub shirt: [u8; 3],
    /// Background colours, top and bottom.
    pub background: [[u8; 3]; 2],
    /// Table colour.
    pub table: [u8; 3],
}

impl Look {
    /// A random look for a `width` x `height` frame.
    pub fn random(rng: &mut SeededRng, width: u32, height: u32) -> Self {
        let h = height as f32;
        let (unit, ox, oy, shoulders, shade) = (
            rng.uniform(),
            rng.uniform(),
            rng.uniform(),
            rng.uniform(),
            rng.uniform(),
        );
        let colour = |rng: &mut SeededRng, lo: f32, hi: f32| -> [u8; 3] {
            std::array::from_fn(|_| (lo + (hi - lo) * rng.uniform()) as u8)
        };
        let skin_base = [225.0f32, 180.0, 150.0];
        let shade = 0.55 + 0.45 * shade;
        Self {
            unit: h * (0.16 + 0.03 * unit),
            origin: [width as f32 * (0.45 + 0.1 * ox), h * (0.40 + 0.05 * oy)],
            shoulders: 0.95 + 0.15 * shoulders,
            neck_length: 0.95 + (0.07 * rng.normal()).clamp(-0.15, 0.15),
            skin: skin_base.map(|c| (c * shade) as u8),
            shirt: colour(rng, 20.0, 200.0),
            background: [colour(rng, 60.0, 200.0), colour(rng, 30.0, 140.0)],
            table: colour(rng, 80.0, 160.0),
        }
    }
}

/// How far the mouth line at `x` (head radii from the middle) is below its corners (at
/// +-0.3) for a mouth curve `curve`.
fn mouth_curve(curve: f32, x: f32) -> f32 {
    curve * (1.0 - (x / 0.3).powi(2)).max(0.0)
}

fn add(a: P, b: P) -> P {
    [a[0] + b[0], a[1] + b[1]]
}

fn rotate(p: P, angle: f32) -> P {
    let (s, c) = angle.sin_cos();
    [p[0] * c - p[1] * s, p[0] * s + p[1] * c]
}

/// The elbow of a two-segment arm from `shoulder` to `hand` (upper arm 1.0, forearm 0.95),
/// bent outwards (`side` -1 for the right arm, +1 for the left).
fn elbow(shoulder: P, hand: P, side: f32) -> P {
    let d = [hand[0] - shoulder[0], hand[1] - shoulder[1]];
    let length = (d[0] * d[0] + d[1] * d[1]).sqrt().max(1e-3);
    let reach = length.min(1.9);
    let along = (reach * reach + 1.0 - 0.9025) / (2.0 * reach);
    let out = (1.0 - along * along).max(0.0).sqrt();
    let (ux, uy) = (d[0] / length, d[1] / length);
    // The perpendicular pointing away from the body's midline.
    let (mut px, mut py) = (-uy, ux);
    if px * side < 0.0 {
        px = -px;
        py = -py;
    }
    [
        shoulder[0] + ux * along + px * out,
        shoulder[1] + uy * along + py * out,
    ]
}

/// The figure's joints in units, for a pose.
pub struct Joints {
    /// Body-25 points (`None`: not visible).
    pub body: [Option<P>; 25],
    /// Head centre, radius and roll.
    pub head: (P, f32, f32),
    /// Elbows and wrists, right then left.
    pub arms: [(P, P, P); 2],
    /// Forearm directions, for the hands' fingers.
    pub hand_direction: [P; 2],
    /// Mouth curve (see [`Pose::mouth`]).
    pub mouth: f32,
    /// See [`Pose::fingers`].
    pub fingers: Fingers,
    /// See [`Pose::object`].
    pub object: bool,
    /// See [`Pose::towel`].
    pub towel: bool,
}

/// Positions the skeleton for a pose.
pub fn joints(pose: &Pose, look: &Look) -> Joints {
    let neck = pose.neck;
    let s = look.shoulders * 0.7;
    let right_shoulder = add(neck, [-s, 0.05 - pose.shrug]);
    let left_shoulder = add(neck, [s, 0.05 - pose.shrug]);
    let head_centre = add(add(neck, [0.0, -look.neck_length]), pose.head);
    let arms = [
        (right_shoulder, pose.right_hand, -1.0),
        (left_shoulder, pose.left_hand, 1.0),
    ]
    .map(|(sh, hand, side)| (sh, elbow(sh, hand, side), hand));
    let hand_direction = arms.map(|(_, e, h)| {
        let d = [h[0] - e[0], h[1] - e[1]];
        let n = (d[0] * d[0] + d[1] * d[1]).sqrt().max(1e-3);
        [d[0] / n, d[1] / n]
    });
    let face = |p: P| Some(add(head_centre, rotate(p, pose.roll)));
    let mut body = [None; 25];
    body[0] = face([0.0, 0.05]);
    body[1] = Some(neck);
    body[2] = Some(right_shoulder);
    body[3] = Some(arms[0].1);
    body[5] = Some(left_shoulder);
    body[6] = Some(arms[1].1);
    if !pose.hands_hidden {
        body[4] = Some(arms[0].2);
        body[7] = Some(arms[1].2);
    }
    let hip = add([0.0, 2.0], [pose.neck[0] * 0.3, 0.0]);
    body[8] = Some(hip);
    body[9] = Some(add(hip, [-0.4, 0.0]));
    body[12] = Some(add(hip, [0.4, 0.0]));
    body[15] = face([-0.17, -0.1]);
    body[16] = face([0.17, -0.1]);
    body[17] = face([-0.4, 0.0]);
    body[18] = face([0.4, 0.0]);
    Joints {
        body,
        head: (head_centre, 0.42, pose.roll),
        arms: arms.map(|(a, b, c)| (a, b, c)),
        hand_direction,
        mouth: pose.mouth,
        fingers: pose.fingers,
        object: pose.object,
        towel: pose.towel,
    }
}

/// The 137 OpenPose points (x, y, confidence) in pixels, with detector-like jitter and
/// confidences; points not visible are (0, 0, 0).
pub fn keypoints(j: &Joints, pose: &Pose, look: &Look, rng: &mut SeededRng) -> Vec<f32> {
    let mut out = vec![0.0; OPENPOSE_POINTS * 3];
    let mut put = |index: usize, p: P, rng: &mut SeededRng| {
        if rng.uniform() < 0.01 {
            return; // an occasional missed detection
        }
        let jitter = 0.015 * look.unit;
        out[index * 3] = look.origin[0] + p[0] * look.unit + jitter * rng.normal();
        out[index * 3 + 1] = look.origin[1] + p[1] * look.unit + jitter * rng.normal();
        out[index * 3 + 2] = 0.55 + 0.4 * rng.uniform();
    };
    for (i, p) in j.body.iter().enumerate() {
        if let Some(p) = p {
            put(i, *p, rng);
        }
    }
    let (centre, radius, roll) = j.head;
    let face = |p: P| add(centre, rotate([p[0] * radius, p[1] * radius], roll));
    for i in 0..70 {
        let p = match i {
            0..=16 => {
                let a = std::f32::consts::PI * (i as f32 / 16.0);
                [-a.cos() * 0.95, a.sin() * 1.1 - 0.1]
            }
            17..=26 => [
                -0.55 + 0.11 * (i - 17) as f32 + if i > 21 { 0.1 } else { 0.0 },
                -0.45,
            ],
            27..=30 => [0.0, -0.3 + 0.12 * (i - 27) as f32],
            31..=35 => [-0.16 + 0.08 * (i - 31) as f32, 0.18],
            36..=47 => {
                let (cx, k) = if i < 42 {
                    (-0.35, i - 36)
                } else {
                    (0.35, i - 42)
                };
                let a = std::f32::consts::TAU * k as f32 / 6.0;
                [cx + 0.12 * a.cos(), -0.22 + 0.05 * a.sin()]
            }
            48..=67 => {
                let k = (i - 48) as f32;
                let a = std::f32::consts::TAU * k / if i < 60 { 12.0 } else { 8.0 };
                let r = if i < 60 { 0.3 } else { 0.2 };
                // From the corner on the image's left (48, 60), as OpenPose numbers them; the
                // curve moves the middle, not the corners.
                let x = -r * a.cos();
                [x, 0.5 + r * 0.3 * a.sin() + mouth_curve(j.mouth, x)]
            }
            68 => [-0.35, -0.22],
            _ => [0.35, -0.22],
        };
        put(FACE + i, face(p), rng);
    }
    if !pose.hands_hidden {
        for (side, start) in [(0, RIGHT_HAND), (1, LEFT_HAND)] {
            let wrist = j.arms[side].2;
            // Towards the body's midline: +x for the right hand (image left), -x for the left.
            let inwards = if side == 0 { 1.0 } else { -1.0 };
            let (d, fan) = match j.fingers {
                Fingers::Open => (j.hand_direction[side], 0.25),
                Fingers::Crossed => ([inwards, 0.15], 0.12),
                Fingers::Steepled => (rotate([0.0, -1.0], -0.35 * inwards), 0.08),
            };
            put(start, wrist, rng);
            for finger in 0..5 {
                let spread = (finger as f32 - 2.0) * fan;
                let dir = rotate(d, spread);
                for joint in 0..4 {
                    let reach = 0.12 + 0.07 * joint as f32;
                    put(
                        start + 1 + finger * 4 + joint,
                        add(wrist, [dir[0] * reach, dir[1] * reach]),
                        rng,
                    );
                }
            }
        }
    }
    out
}

/// An RGB8 buffer to draw on, in figure units.
struct Canvas<'a> {
    out: &'a mut [u8],
    width: usize,
    height: usize,
    origin: P,
    unit: f32,
}

impl Canvas<'_> {
    fn set(&mut self, x: usize, y: usize, colour: [u8; 3]) {
        let i = (y * self.width + x) * 3;
        self.out[i..i + 3].copy_from_slice(&colour);
    }

    fn px(&self, p: P) -> P {
        [
            self.origin[0] + p[0] * self.unit,
            self.origin[1] + p[1] * self.unit,
        ]
    }

    /// A filled capsule (a thick segment with round ends); a disc when `a == b`.
    fn capsule(&mut self, a: P, b: P, radius: f32, colour: [u8; 3]) {
        let (a, b, r) = (self.px(a), self.px(b), radius * self.unit);
        let x0 = (a[0].min(b[0]) - r).floor().max(0.0) as usize;
        let x1 = ((a[0].max(b[0]) + r).ceil().max(0.0) as usize).min(self.width);
        let y0 = (a[1].min(b[1]) - r).floor().max(0.0) as usize;
        let y1 = ((a[1].max(b[1]) + r).ceil().max(0.0) as usize).min(self.height);
        let d = [b[0] - a[0], b[1] - a[1]];
        let len2 = (d[0] * d[0] + d[1] * d[1]).max(1e-6);
        for y in y0..y1 {
            for x in x0..x1 {
                let p = [x as f32 + 0.5 - a[0], y as f32 + 0.5 - a[1]];
                let s = ((p[0] * d[0] + p[1] * d[1]) / len2).clamp(0.0, 1.0);
                let q = [p[0] - s * d[0], p[1] - s * d[1]];
                if q[0] * q[0] + q[1] * q[1] <= r * r {
                    self.set(x, y, colour);
                }
            }
        }
    }

    /// Fills rows `from..` with a colour blended from `top` to `bottom`.
    fn rows(&mut self, from: usize, top: [u8; 3], bottom: [u8; 3]) {
        for y in from.min(self.height)..self.height {
            let t = y as f32 / self.height as f32;
            let c: [u8; 3] = std::array::from_fn(|k| {
                (f32::from(top[k]) * (1.0 - t) + f32::from(bottom[k]) * t) as u8
            });
            for x in 0..self.width {
                self.set(x, y, c);
            }
        }
    }
}

/// Renders the figure into an RGB8 buffer (`width` x `height`).
pub fn render(j: &Joints, look: &Look, width: u32, height: u32, out: &mut [u8]) {
    let mut canvas = Canvas {
        out,
        width: width as usize,
        height: height as usize,
        origin: look.origin,
        unit: look.unit,
    };
    canvas.rows(0, look.background[0], look.background[1]);
    let neck = j.body[1].unwrap_or([0.0; 2]);
    let hip = j.body[8].unwrap_or([0.0, 2.0]);
    let (rs, ls) = (j.arms[0].0, j.arms[1].0);
    // Torso: shoulders to hips, then the neck and head.
    for k in 0..=6 {
        let f = k as f32 / 6.0;
        let top = [rs[0] + (ls[0] - rs[0]) * f, rs[1] + (ls[1] - rs[1]) * f];
        let bottom = [hip[0] - 0.5 + f, hip[1]];
        canvas.capsule(top, bottom, 0.22, look.shirt);
    }
    if j.towel {
        canvas.capsule(rs, neck, 0.2, TOWEL);
        canvas.capsule(neck, ls, 0.2, TOWEL);
        canvas.capsule(rs, [rs[0] + 0.1, rs[1] + 0.9], 0.17, TOWEL);
        canvas.capsule(ls, [ls[0] - 0.1, ls[1] + 0.9], 0.17, TOWEL);
    }
    canvas.capsule(neck, [neck[0], neck[1] - 0.3], 0.16, look.skin);
    let (centre, radius, roll) = j.head;
    canvas.capsule(centre, centre, radius, look.skin);
    let at = |dx: f32, dy: f32| add(centre, rotate([dx * radius, dy * radius], roll));
    canvas.capsule(at(-0.35, -0.2), at(-0.35, -0.2), 0.05, [30, 30, 30]);
    canvas.capsule(at(0.35, -0.2), at(0.35, -0.2), 0.05, [30, 30, 30]);
    let lips = [-0.3, 0.0, 0.3].map(|x| at(x, 0.5 + mouth_curve(j.mouth, x)));
    canvas.capsule(lips[0], lips[1], 0.035, [120, 40, 40]);
    canvas.capsule(lips[1], lips[2], 0.035, [120, 40, 40]);
    // The table, then the arms and hands over it.
    let table_top = (look.origin[1] + 1.6 * look.unit).max(0.0) as usize;
    canvas.rows(table_top, look.table, look.table);
    for (side, &(shoulder, elbow, hand)) in j.arms.iter().enumerate() {
        if j.body[4 + 3 * side].is_none() {
            continue; // hidden behind the body
        }
        canvas.capsule(shoulder, elbow, 0.16, look.shirt);
        canvas.capsule(elbow, hand, 0.13, look.shirt);
        let d = j.hand_direction[side];
        canvas.capsule(hand, add(hand, [d[0] * 0.15, d[1] * 0.15]), 0.14, look.skin);
    }
    if j.object && j.body[4].is_some() {
        let hand = j.arms[0].2;
        canvas.capsule(
            add(hand, [0.15, -0.15]),
            add(hand, [0.15, -0.15]),
            0.36,
            OBJECT,
        );
    }
}
