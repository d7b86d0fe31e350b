//! Where a clip's loading time goes: thread-seconds summed per stage while a measurement is on
//! (`miga data bench`), nothing but one relaxed atomic load otherwise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// A stage of loading a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the container: a sample's bytes from the MP4 file, as NAL units.
    Container,
    /// Decoding H.264 (OpenH264), the picture copied out of the decoder.
    Decode,
    /// YUV to RGB, of the pixels read.
    Convert,
    /// The frame transform: person crop, resize, crop, flip, normalise (conversion included;
    /// [`Totals::resize`] takes it out).
    Transform,
    /// Stacking clips into batch tensors.
    Batch,
}

const STAGES: usize = 5;
static ON: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];
static PICTURES: AtomicU64 = AtomicU64::new(0);

/// Runs `work`, adding its time to `stage` while measuring.
pub fn timed<T>(stage: Stage, work: impl FnOnce() -> T) -> T {
    if !ON.load(Ordering::Relaxed) {
        return work();
    }
    let start = Instant::now();
    let out = work();
    NANOS[stage as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Counts a picture the decoder gave (kept or not) while measuring.
pub fn decoded_picture() {
    if ON.load(Ordering::Relaxed) {
        PICTURES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Thread-seconds spent in each stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// [`Stage::Container`].
    pub container: f64,
    /// [`Stage::Decode`].
    pub decode: f64,
    /// [`Stage::Convert`].
    pub convert: f64,
    /// The transform without the conversion it asked for.
    pub resize: f64,
    /// [`Stage::Batch`].
    pub batch: f64,
    /// Pictures decoded (those before a clip's first frame and between its frames included).
    pub pictures: u64,
}

/// Starts measuring from zero (one measurement at a time in a process).
pub fn start() {
    for n in &NANOS {
        n.store(0, Ordering::Relaxed);
    }
    PICTURES.store(0, Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
}

/// Stops measuring and gives the totals.
pub fn stop() -> Totals {
    ON.store(false, Ordering::Relaxed);
    let seconds = |stage: Stage| NANOS[stage as usize].load(Ordering::Relaxed) as f64 * 1e-9;
    let convert = seconds(Stage::Convert);
    Totals {
        container: seconds(Stage::Container),
        decode: seconds(Stage::Decode),
        convert,
        resize: (seconds(Stage::Transform) - convert).max(0.0),
        batch: seconds(Stage::Batch),
        pictures: PICTURES.load(Ordering::Relaxed),
    }
}
