//! Synthetic data in the MiGA 2025 layout: H.264 MP4 videos of a rendered seated figure, its
//! OpenPose skeleton tables, per-video label files and an official-format label CSV.
//!
//! # The generative model
//!
//! A clip of a class is a small motion of a seated figure (a hand to a place on the head or
//! body, with its own oscillation; a head or torso movement), rendered as RGB and written as
//! the OpenPose points a detector would give. Most classes differ in both modalities. Three
//! pairs of classes differ in one modality only, by construction, so that each stream has a
//! known subset it cannot tell apart and fusion a reason to win:
//!
//! - **seen only by the skeleton**: *crossing fingers* and *minaret* put the hands at the same
//!   place and differ only in the fingers' layout, which is in the 21 hand points of each hand
//!   but not drawn; *touching hat* and *scratching head* put the hand at the same place and
//!   differ only in a fast (4.5 Hz), small (0.1 of a unit, about two pixels in a 64-pixel
//!   person crop) circular scratch that a few low-resolution frames blur;
//! - **seen only in the pixels**: *rubbing hands* and *playing with objects* have the same
//!   motion; in the second the right hand holds a brightly coloured object, drawn but without
//!   any keypoint.
//!
//! Win / Lose shows in two independent, noisy cues, so that neither the face nor the body
//! settles every video: the **face** (the mouth curves up after a win, down after a loss, around
//! a per-video mood) and the **body and context** (a towel over the shoulders after 80% of
//! lost and 20% of won matches; a slumped posture with the head down after a loss, upright
//! after a win, around a per-video posture), plus more self-touching gestures
//! after a loss and slower, smaller movements. Per subject build and colours, per clip timing,
//! amplitude, detector jitter and missed points keep it from being trivial. The same
//! configuration and seed give the same bytes. docs/data.md ("Synthetic data") has the numbers.

mod figure;
mod writer;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::annotations::{FPS, Segment, write_miga_segments};
use crate::classes::{MicroGesture, NUM_CLASSES, Outcome};
use crate::io::write_atomic;
use crate::protocols::{MigaLayout, Split};
use crate::sampling::SeededRng;
use crate::skeleton::{OPENPOSE_POINTS, Skeleton, write_skeleton_xlsx};
use crate::{Error, Result};
use figure::{Fingers, Look, P, Pose, REST_LEFT, REST_RIGHT, joints, keypoints, render};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of videos (two per subject: one won match, one lost).
    pub videos: usize,
    /// Labelled clips per video.
    pub clips_per_video: usize,
    /// Frame width in pixels (even). The real videos are 1280x720; smaller is faster.
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// The iMiGUE codes (1-31, 99) of the classes to draw clips from; empty: all 32.
    pub classes: Vec<u32>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            videos: 24,
            clips_per_video: 12,
            width: 320,
            height: 180,
            classes: Vec::new(),
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Serialize)]
pub struct SynthSummary {
    /// The root folder.
    pub root: PathBuf,
    /// Video ids per split.
    pub splits: Vec<(Split, Vec<String>)>,
    /// Total labelled clips.
    pub clips: usize,
    /// Total frames.
    pub frames: usize,
}

/// The official label CSV written beside the MiGA folders.
pub const LABELS_CSV: &str = "labels.csv";

/// One class's motion: hand targets, oscillation, head and torso movement.
#[derive(Clone, Copy)]
struct Motion {
    right: Option<P>,
    left: Option<P>,
    /// Oscillation of the hands: 0 none, 1 vertical, 2 horizontal, 3 circular.
    wobble: u8,
    /// Oscillation frequency (Hz) and amplitude (units).
    frequency: f32,
    amplitude: f32,
    head: Head,
    torso: Torso,
    hidden: bool,
    /// The fingers' layout (skeleton only).
    fingers: Fingers,
    /// A held object (pixels only).
    object: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Head {
    Still,
    Retract,
    Up,
    Nod,
}

#[derive(Clone, Copy, PartialEq)]
enum Torso {
    Still,
    Sway,
    Rise,
    Breathe,
    Shake,
}

const fn m(
    right: Option<P>,
    left: Option<P>,
    wobble: u8,
    frequency: f32,
    amplitude: f32,
) -> Motion {
    Motion {
        right,
        left,
        wobble,
        frequency,
        amplitude,
        head: Head::Still,
        torso: Torso::Still,
        hidden: false,
        fingers: Fingers::Open,
        object: false,
    }
}

const fn body(head: Head, torso: Torso, frequency: f32, amplitude: f32) -> Motion {
    Motion {
        right: None,
        left: None,
        wobble: 0,
        frequency,
        amplitude,
        head,
        torso,
        hidden: false,
        fingers: Fingers::Open,
        object: false,
    }
}

/// The motion of each class, in class index order (see [`MicroGesture::name`]).
const MOTIONS: [Motion; NUM_CLASSES] = [
    body(Head::Retract, Torso::Still, 0.0, 0.2), // turtle neck
    body(Head::Still, Torso::Breathe, 0.6, 0.12), // deep breath
    m(Some([0.2, -1.35]), None, 0, 0.0, 0.0),    // touching hat (scratching head less the scratch)
    m(Some([0.2, -1.35]), None, 3, 4.5, 0.1),    // scratching head
    m(Some([0.0, -1.2]), None, 2, 2.0, 0.1),     // forehead
    m(Some([-0.15, -0.95]), Some([0.15, -0.95]), 0, 0.0, 0.0), // covering face
    m(Some([-0.18, -1.05]), None, 3, 4.0, 0.05), // rubbing eyes
    m(None, Some([0.25, -0.8]), 1, 2.0, 0.08),   // facial parts
    m(None, Some([0.42, -0.95]), 0, 0.0, 0.0),   // ears
    m(Some([0.0, -0.62]), None, 2, 5.0, 0.04),   // biting nails
    m(None, Some([0.1, -0.55]), 2, 2.0, 0.08),   // jaw
    m(Some([-0.1, -0.15]), None, 1, 3.0, 0.08),  // neck
    m(None, Some([0.35, -1.3]), 3, 2.0, 0.1),    // hair
    m(Some([-0.1, 0.1]), Some([0.1, 0.1]), 1, 1.5, 0.08), // collar / tie
    m(Some([0.0, 0.15]), None, 0, 0.0, 0.0),     // suprasternal notch
    m(None, Some([0.9, -0.3]), 1, 4.0, 0.1),     // scratching back
    m(Some([0.55, 0.8]), Some([-0.55, 0.85]), 0, 0.0, 0.0), // folding arms
    m(Some([0.4, 1.0]), None, 2, 4.0, 0.12),     // dusting off clothes
    Motion {
        hidden: true,
        ..m(Some([-0.3, 1.6]), Some([0.3, 1.6]), 0, 0.0, 0.0)
    }, // arms behind body
    body(Head::Still, Torso::Sway, 0.8, 0.2),    // moving torso
    body(Head::Still, Torso::Rise, 0.0, 0.15),   // sitting straightly
    m(Some([0.85, 0.85]), None, 2, 3.0, 0.1),    // scratching arms
    m(Some([-0.1, 1.05]), Some([0.1, 1.05]), 2, 3.0, 0.08), // rubbing hands
    Motion {
        fingers: Fingers::Crossed,
        ..m(Some([-0.05, 0.25]), Some([0.05, 0.25]), 0, 0.0, 0.0)
    }, // crossing fingers
    Motion {
        fingers: Fingers::Steepled,
        ..m(Some([-0.05, 0.25]), Some([0.05, 0.25]), 0, 0.0, 0.0)
    }, // minaret
    Motion {
        object: true,
        ..m(Some([-0.1, 1.05]), Some([0.1, 1.05]), 2, 3.0, 0.08)
    }, // playing with objects (rubbing hands holding an object)
    m(Some([-0.3, 1.9]), Some([0.3, 1.9]), 0, 0.0, 0.0), // holding back arms
    body(Head::Up, Torso::Still, 0.0, 0.2),      // head up
    Motion {
        head: Head::Nod,
        ..m(None, Some([0.0, -0.6]), 0, 1.5, 0.04)
    }, // pressing lips
    m(Some([-0.75, 1.75]), Some([0.75, 1.75]), 0, 0.0, 0.0), // arms akimbo
    body(Head::Still, Torso::Shake, 3.0, 0.06),  // shaking shoulders
    m(Some([-1.3, -0.3]), None, 2, 1.5, 0.35),   // illustrative gesture
];

/// Which modality tells a class from the others (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cue {
    /// Its motion shows in the skeleton and in the pixels.
    Both,
    /// Its twin differs only in what the skeleton holds (the fingers' layout, or a scratch the
    /// few low-resolution frames blur).
    SkeletonOnly,
    /// Its twin differs only in the pixels (a held object).
    PixelsOnly,
}

impl std::fmt::Display for Cue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Both => "both",
            Self::SkeletonOnly => "skeleton only",
            Self::PixelsOnly => "pixels only",
        })
    }
}

/// Which modality tells `class` from its twin, when all 32 classes (or both twins) are drawn.
pub fn cue(class: MicroGesture) -> Cue {
    let motion = MOTIONS[class.index()];
    // Twins: the same hand targets, head and torso movement; they differ only in the hands'
    // oscillation, the fingers or a held object.
    let twin = |other: &Motion| {
        other.right == motion.right
            && other.left == motion.left
            && other.head == motion.head
            && other.torso == motion.torso
            && (other.right.is_some() || other.left.is_some())
    };
    let twins = MOTIONS
        .iter()
        .enumerate()
        .filter(|&(i, other)| i != class.index() && twin(other));
    let mut cue = Cue::Both;
    for (_, other) in twins {
        cue = if other.object != motion.object {
            Cue::PixelsOnly
        } else {
            Cue::SkeletonOnly
        };
    }
    cue
}

/// Classes a lost (`Lose`) or won (`Win`) match makes more likely.
const LOSE_CLASSES: [usize; 8] = [0, 5, 6, 9, 11, 16, 26, 28];
// (No twin of the demo's pairs is favoured: that would give a blind stream a prior.)
const WIN_CLASSES: [usize; 8] = [19, 20, 30, 27, 29, 31, 13, 1];

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Per-video behaviour that the outcome sets.
#[derive(Clone, Copy)]
struct Behaviour {
    head_drop: f32,
    /// How far the neck (shoulders and head) sinks, in units: the body cue.
    slump: f32,
    speed: f32,
    energy: f32,
    /// The mouth curve: the face cue.
    mouth: f32,
    /// A towel over the shoulders: the context cue.
    towel: bool,
}

/// How often a towel is over the player's shoulders after a loss and after a win.
const TOWEL: [f32; 2] = [0.8, 0.2];

/// The body cue: mean slump after a loss and after a win, and its per-video spread (units).
const SLUMP: [f32; 3] = [0.25, 0.0, 0.1];
/// The face cue's per-video spread (the mood), around a mouth curve of -0.12 (loss) or 0.15
/// (win) head radii.
const MOOD: f32 = 0.12;

impl Behaviour {
    fn of(outcome: Outcome, rng: &mut SeededRng) -> Self {
        let noise = 0.9 + 0.2 * rng.uniform();
        // A per-video mood around the outcome's: some won matches end with a straight face.
        let mood = MOOD * rng.normal();
        // And a per-video posture, drawn independently of the mood: the face and the body are
        // two separate, noisy witnesses of the outcome.
        let posture = SLUMP[2] * rng.normal();
        let towel = rng.uniform();
        match outcome {
            Outcome::Lose => Self {
                head_drop: 0.07 * noise,
                slump: SLUMP[0] + posture,
                speed: 0.75 * noise,
                energy: 0.8 * noise,
                mouth: -0.12 * noise + mood,
                towel: towel < TOWEL[0],
            },
            Outcome::Win => Self {
                head_drop: -0.03 * noise,
                slump: SLUMP[1] + posture,
                speed: 1.1 * noise,
                energy: 1.2 * noise,
                mouth: 0.15 * noise + mood,
                towel: towel < TOWEL[1],
            },
        }
    }
}

/// The pose at time `t` (seconds) of a clip of class `class` at `phase` (0..1) of it (or no
/// clip), with the video's behaviour and the per-frame idle drift.
fn pose(class: Option<(usize, f32, f32)>, t: f32, behaviour: Behaviour, drift: &[f32; 6]) -> Pose {
    let mut pose = Pose::rest();
    let idle = |k: usize| 0.04 * (t * (0.3 + 0.1 * k as f32) + drift[k]).sin();
    pose.right_hand = [REST_RIGHT[0] + idle(0), REST_RIGHT[1] + idle(1) * 0.5];
    pose.left_hand = [REST_LEFT[0] + idle(2), REST_LEFT[1] + idle(3) * 0.5];
    pose.head = [
        idle(4) * 0.5,
        behaviour.head_drop + 0.5 * behaviour.slump + idle(5) * 0.3,
    ];
    pose.neck[1] += behaviour.slump;
    pose.mouth = behaviour.mouth;
    pose.towel = behaviour.towel;
    let Some((class, phase, amount)) = class else {
        return pose;
    };
    let motion = MOTIONS[class];
    let envelope = smoothstep(0.0, 0.25, phase) * (1.0 - smoothstep(0.75, 1.0, phase));
    let omega = std::f32::consts::TAU * motion.frequency * behaviour.speed * t;
    let a = motion.amplitude * amount * behaviour.energy;
    let wobble = match motion.wobble {
        1 => [0.0, a * omega.sin()],
        2 => [a * omega.sin(), 0.0],
        3 => [a * omega.cos(), a * omega.sin()],
        _ => [0.0, 0.0],
    };
    let reach = |rest: P, target: Option<P>| match target {
        Some(target) => [
            rest[0] + (target[0] + wobble[0] - rest[0]) * envelope,
            rest[1] + (target[1] + wobble[1] - rest[1]) * envelope,
        ],
        None => rest,
    };
    pose.right_hand = reach(pose.right_hand, motion.right);
    pose.left_hand = reach(pose.left_hand, motion.left);
    pose.hands_hidden = motion.hidden && envelope > 0.5;
    // The fingers take their layout and the object appears once the hand is mostly there.
    if envelope > 0.5 {
        pose.fingers = motion.fingers;
        pose.object = motion.object;
    }
    let level = envelope * a;
    match motion.head {
        Head::Retract => pose.head[1] += level,
        Head::Up => pose.head[1] -= level,
        Head::Nod => pose.head[1] += 2.0 * a * omega.sin() * envelope,
        Head::Still => {}
    }
    match motion.torso {
        Torso::Sway => pose.neck[0] += level * omega.sin(),
        Torso::Rise => pose.neck[1] -= level,
        Torso::Breathe => pose.shrug += level * (0.5 - 0.5 * omega.cos()),
        Torso::Shake => pose.shrug += level * omega.sin(),
        Torso::Still => {}
    }
    pose.roll = pose.neck[0] * 0.1;
    pose
}

/// One generated video before writing.
struct VideoPlan {
    id: String,
    subject: u32,
    outcome: Outcome,
    split: Split,
    segments: Vec<Segment>,
    frames: usize,
}

/// The class indices of `config.classes` (all when empty); an unknown code is an error.
fn class_indices(config: &SynthConfig, out: &Path) -> Result<Vec<usize>> {
    if config.classes.is_empty() {
        return Ok((0..NUM_CLASSES).collect());
    }
    config
        .classes
        .iter()
        .map(|&code| {
            MicroGesture::from_code(code)
                .map(|c| c.index())
                .ok_or_else(|| {
                    Error::request(out, format!("no micro-gesture class with code {code}"))
                })
        })
        .collect()
}

fn plan(config: &SynthConfig, classes: &[usize]) -> Vec<VideoPlan> {
    let subjects = config.videos.div_ceil(2);
    // Cross-subject: the last fifth of the subjects (at least one) for test, the fifth before
    // for validation, when there are three subjects or more.
    let held_out = if subjects >= 3 {
        ((subjects as f32 * 0.2).round() as usize).max(1)
    } else {
        0
    };
    let split_of = |subject: usize| {
        if subject + held_out >= subjects && held_out > 0 {
            Split::Test
        } else if subject + 2 * held_out >= subjects && held_out > 0 {
            Split::Validate
        } else {
            Split::Train
        }
    };
    (0..config.videos)
        .map(|v| {
            let mut rng = SeededRng::for_item(config.seed, 0, v as u64);
            let outcome = if v % 2 == 0 {
                Outcome::Win
            } else {
                Outcome::Lose
            };
            let favoured: Vec<usize> = if outcome == Outcome::Win {
                &WIN_CLASSES
            } else {
                &LOSE_CLASSES
            }
            .iter()
            .copied()
            .filter(|c| classes.contains(c))
            .collect();
            let mut t = 5 + rng.below(10);
            let segments = (0..config.clips_per_video)
                .map(|_| {
                    let index = if rng.uniform() < 0.4 && !favoured.is_empty() {
                        favoured[rng.below(favoured.len())]
                    } else {
                        classes[rng.below(classes.len())]
                    };
                    let length = 16 + rng.below(48);
                    let segment = Segment {
                        class: MicroGesture::from_index(index).expect("index below NUM_CLASSES"),
                        start_frame: t as u32,
                        end_frame: (t + length - 1) as u32,
                    };
                    t += length + 6 + rng.below(14);
                    segment
                })
                .collect();
            VideoPlan {
                id: format!("{:04}", v + 1),
                subject: (v / 2 + 1) as u32,
                outcome,
                split: split_of(v / 2),
                segments,
                frames: t + 5,
            }
        })
        .collect()
}

/// Renders one video: RGB frames (encoded on the fly) and skeleton.
fn generate(config: &SynthConfig, video: &VideoPlan, out: &Path) -> Result<()> {
    let mut rng = SeededRng::for_item(config.seed, 1, video.subject as u64);
    let look = Look::random(&mut rng, config.width, config.height);
    let mut rng = SeededRng::for_item(config.seed, 2, video.id.parse::<u64>().unwrap_or(0));
    let behaviour = Behaviour::of(video.outcome, &mut rng);
    let drift: [f32; 6] = std::array::from_fn(|_| rng.uniform() * std::f32::consts::TAU);
    let amounts: Vec<f32> = video
        .segments
        .iter()
        .map(|_| 0.8 + 0.4 * rng.uniform())
        .collect();
    let (skeleton_dir, rgb_dir) = layout_dirs(out, video.split, &video.id);
    let mut encoder = writer::Mp4Encoder::new(config.width, config.height)?;
    let mut skeleton = Skeleton::empty(video.frames, OPENPOSE_POINTS);
    let mut rgb = vec![0u8; (config.width * config.height * 3) as usize];
    for f in 0..video.frames {
        let clip = video
            .segments
            .iter()
            .zip(&amounts)
            .find_map(|(s, &amount)| {
                let (a, b) = (s.start_frame as usize, s.end_frame as usize);
                (a..=b).contains(&f).then(|| {
                    (
                        s.class.index(),
                        (f - a) as f32 / (b - a).max(1) as f32,
                        amount,
                    )
                })
            });
        let pose = pose(clip, f as f32 / FPS as f32, behaviour, &drift);
        let j = joints(&pose, &look);
        skeleton
            .frame_mut(f)
            .copy_from_slice(&keypoints(&j, &pose, &look, &mut rng));
        render(&j, &look, config.width, config.height, &mut rgb);
        encoder.push(&rgb)?;
    }
    let mp4 = rgb_dir.join(format!("{}.mp4", video.id));
    write_atomic(
        &mp4,
        &encoder
            .finish()
            .map_err(|e| Error::format(&mp4, "MP4", e))?,
    )?;
    write_skeleton_xlsx(
        skeleton_dir.join(format!("{}_openpose.xlsx", video.id)),
        &skeleton,
    )?;
    write_miga_segments(
        skeleton_dir.join(format!("{}_label.csv", video.id)),
        &video.segments,
    )
}

fn layout_dirs(root: &Path, split: Split, id: &str) -> (PathBuf, PathBuf) {
    let skeleton = MigaLayout::SKELETON_FOLDERS
        .iter()
        .find(|(_, s)| *s == split)
        .map(|(f, _)| *f)
        .unwrap_or_default();
    let rgb = MigaLayout::RGB_FOLDERS
        .iter()
        .find(|(_, s)| *s == split)
        .map(|(f, _)| *f)
        .unwrap_or_default();
    (
        root.join(skeleton).join(id),
        root.join(MigaLayout::RGB_ROOT).join(rgb).join(id),
    )
}

/// Writes a synthetic dataset under `out` (see the module documentation), videos in parallel;
/// `progress` is called after each video with (done, total).
pub fn synthesise(
    config: &SynthConfig,
    out: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SynthSummary> {
    let _lock = crate::lock::FolderLock::folder(out, None, "synthetic data")?;
    if config.videos == 0 || config.clips_per_video == 0 {
        return Err(Error::request(
            out,
            "at least one video with one clip is needed",
        ));
    }
    if !config.width.is_multiple_of(2)
        || !config.height.is_multiple_of(2)
        || config.width < 64
        || config.height < 64
    {
        return Err(Error::request(
            out,
            format!(
                "frame size {}x{} must be even and at least 64x64",
                config.width, config.height
            ),
        ));
    }
    let videos = plan(config, &class_indices(config, out)?);
    let done = std::sync::atomic::AtomicUsize::new(0);
    videos.par_iter().try_for_each(|video| {
        generate(config, video, out)?;
        progress(
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            videos.len(),
        );
        Ok::<(), Error>(())
    })?;
    let mut csv = String::from(
        "video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id,subject_gender,subject_nationality,win_or_lose\n",
    );
    for video in &videos {
        for (i, s) in video.segments.iter().enumerate() {
            csv.push_str(&format!(
                "{},{},{:.4},{},{:.4},{},{},{},{},Synthland,{}\n",
                video.id.parse::<u32>().unwrap_or(0),
                i + 1,
                f64::from(s.start_frame) / FPS,
                s.start_frame,
                f64::from(s.end_frame) / FPS,
                s.end_frame,
                s.class.code(),
                video.subject,
                if video.subject % 2 == 0 { "F" } else { "M" },
                video.outcome
            ));
        }
    }
    write_atomic(&out.join(LABELS_CSV), csv.as_bytes())?;
    let config_text = toml::to_string(config).map_err(|e| Error::request(out, e.to_string()))?;
    write_atomic(&out.join("synth.toml"), config_text.as_bytes())?;
    let splits = [Split::Train, Split::Validate, Split::Test]
        .into_iter()
        .map(|split| {
            (
                split,
                videos
                    .iter()
                    .filter(|v| v.split == split)
                    .map(|v| v.id.clone())
                    .collect(),
            )
        })
        .collect();
    Ok(SynthSummary {
        root: out.to_path_buf(),
        splits,
        clips: videos.iter().map(|v| v.segments.len()).sum(),
        frames: videos.iter().map(|v| v.frames).sum(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::scratch_dir;

    /// A small dataset for tests: 6 videos (3 subjects: train, validate, test) of 3 clips.
    pub(crate) fn small(seed: u64) -> PathBuf {
        let out = scratch_dir();
        let config = SynthConfig {
            seed,
            videos: 6,
            clips_per_video: 3,
            width: 160,
            height: 90,
            classes: Vec::new(),
        };
        synthesise(&config, &out, &|_, _| {}).unwrap();
        out
    }

    fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push((
                        path.strip_prefix(root).unwrap().to_path_buf(),
                        std::fs::read(&path).unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    /// Twins differ in the modality their cue names and in no other: the same keypoints for
    /// the pixels-only pair, the same pixels for the finger pair.
    #[test]
    fn twin_classes_differ_in_one_modality_only() {
        let class = |code| MicroGesture::from_code(code).unwrap();
        let cues: Vec<(u32, Cue)> = (1..=31)
            .chain([99])
            .map(|code| (code, cue(class(code))))
            .filter(|(_, cue)| *cue != Cue::Both)
            .collect();
        use Cue::{PixelsOnly, SkeletonOnly};
        assert_eq!(
            cues,
            [
                (3, SkeletonOnly),
                (4, SkeletonOnly),
                (23, PixelsOnly),
                (24, SkeletonOnly),
                (25, SkeletonOnly),
                (26, PixelsOnly)
            ]
        );
        let mut rng = SeededRng::new(3);
        let look = Look::random(&mut rng, 160, 90);
        let behaviour = Behaviour::of(Outcome::Win, &mut rng);
        let sample = |code: u32| {
            let pose = pose(
                Some((class(code).index(), 0.5, 1.0)),
                1.0,
                behaviour,
                &[0.0; 6],
            );
            let j = joints(&pose, &look);
            let points = keypoints(&j, &pose, &look, &mut SeededRng::new(7));
            let mut rgb = vec![0u8; 160 * 90 * 3];
            render(&j, &look, 160, 90, &mut rgb);
            (points, rgb)
        };
        let (rubbing, object) = (sample(23), sample(26));
        assert_eq!(rubbing.0, object.0, "the object has no keypoint");
        assert_ne!(rubbing.1, object.1, "the object is drawn");
        let (crossed, steepled) = (sample(24), sample(25));
        assert_ne!(crossed.0, steepled.0, "the fingers are in the hand points");
        assert_eq!(crossed.1, steepled.1, "the fingers are not drawn");
    }

    #[test]
    fn same_seed_same_bytes_and_the_layout_reads_back() {
        let (a, b, c) = (small(5), small(5), small(6));
        let (fa, fb) = (files(&a), files(&b));
        assert_eq!(fa.len(), 6 * 3 + 2);
        let differ: Vec<_> = fa
            .iter()
            .zip(&fb)
            .filter(|(x, y)| x != y)
            .map(|(x, _)| &x.0)
            .collect();
        assert!(
            differ.is_empty(),
            "the same seed gave different files: {differ:?}"
        );
        assert!(fa != files(&c), "another seed gave the same files");
        let layout = MigaLayout::scan(&a).unwrap();
        assert_eq!(layout.ids(Split::Test).len(), 2);
        let table = crate::LabelTable::read(a.join(LABELS_CSV)).unwrap();
        assert_eq!(table.clips.len(), 18);
        assert_eq!(table.videos().len(), 6);
        let video = &layout.videos["0003"];
        let skeleton =
            crate::skeleton::read_skeleton_xlsx(video.skeleton.as_ref().unwrap()).unwrap();
        let info = crate::video::Video::open(video.video.as_ref().unwrap())
            .unwrap()
            .info();
        assert_eq!((info.width, info.height, info.fps), (160, 90, 25.0));
        assert_eq!(skeleton.frames(), info.frames);
        assert!(skeleton.frames_with_people() == skeleton.frames());
        let report = crate::check::check(&a).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.videos, report.clips), (6, 18));
    }
}
