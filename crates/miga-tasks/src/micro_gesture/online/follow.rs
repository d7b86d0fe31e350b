//! Streaming detection (`miga detect --follow`): windows are scored as frames arrive, and an
//! instance is given out once no window scored later can change it, so that the instances
//! given out over a stream are those of the batch procedure on the windows' scores. (The
//! scores themselves can differ from batch detection's: a window's skeleton is normalised to
//! the frames there when it is scored; docs/online.md, Streaming.)
//!
//! A frame's smoothed scores are final once every window that will ever cover it has been
//! scored and so have its `smooth / 2` neighbours: windows start every `stride` frames, and the
//! last window of the finished video starts at its length minus `window`, at or after the
//! frames available now minus `window`. An instance is final when the frame after it is final
//! too. The latency, from an instance's last frame to its release, is therefore at most
//! window + smooth / 2 + 1 frames ([`DetectSettings::latency`] adds one for the newest frame,
//! which `miga detect --follow` counts once a later one is there), plus the time to score the
//! windows and the polling interval.

use super::{DetectSettings, Instance, frame_scores, instances};

/// The state of one video being followed.
#[derive(Debug, Clone)]
pub struct Follower {
    video: String,
    settings: DetectSettings,
    scored: Vec<((usize, usize), Vec<f32>)>,
    /// The start of the next window on the stride grid.
    next_start: usize,
    /// Instances given out so far end before this frame.
    released: u32,
}

impl Follower {
    /// Follows `video` with `settings` (checked by the caller).
    pub fn new(video: &str, settings: DetectSettings) -> Self {
        Self {
            video: video.to_string(),
            settings,
            scored: Vec::new(),
            next_start: 0,
            released: 0,
        }
    }

    /// The windows (inclusive frame ranges) to score now that `available` frames are there.
    pub fn due(&self, available: usize) -> Vec<(usize, usize)> {
        let w = self.settings.window;
        (self.next_start..)
            .step_by(self.settings.stride)
            .take_while(|s| s + w <= available)
            .map(|s| (s, s + w - 1))
            .collect()
    }

    /// Adds the class probabilities of a window given by [`Follower::due`] (or, at the end,
    /// by [`Follower::finish`]).
    pub fn add(&mut self, window: (usize, usize), probabilities: Vec<f32>) {
        if window.0 == self.next_start {
            self.next_start += self.settings.stride;
        }
        self.scored.push((window, probabilities));
    }

    /// The instances that became final with `available` frames there, each given out once.
    pub fn release(&mut self, available: usize) -> Vec<Instance> {
        let final_frames = self
            .next_start
            .min(available.saturating_sub(self.settings.window));
        // Smoothed scores are final `smooth / 2` frames earlier; an instance needs the frame
        // after it to be final.
        let settled = final_frames.saturating_sub(self.settings.smooth / 2);
        self.take(available, |end| (end as usize) + 1 < settled)
    }

    /// The windows still to score once the video has ended at `frames` frames: those of the
    /// batch layout not scored yet.
    pub fn finish(&self, frames: usize) -> Vec<(usize, usize)> {
        self.settings
            .windows(frames)
            .into_iter()
            .filter(|w| !self.scored.iter().any(|(s, _)| s == w))
            .collect()
    }

    /// Every instance not given out yet, once the windows of [`Follower::finish`] are added.
    pub fn release_all(&mut self, frames: usize) -> Vec<Instance> {
        self.take(frames, |_| true)
    }

    fn take(&mut self, frames: usize, settled: impl Fn(u32) -> bool) -> Vec<Instance> {
        let scores = frame_scores(frames, &self.scored);
        let out: Vec<Instance> = instances(&self.video, &scores, &self.settings)
            .into_iter()
            .filter(|i| i.start >= self.released && settled(i.end))
            .collect();
        if let Some(last) = out.last() {
            self.released = last.end + 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use miga_datasets::classes::NUM_CLASSES;

    use super::*;

    /// Window scores of a made-up video: class 3 over frames 20-59, class 7 over 90-129.
    fn probabilities((a, b): (usize, usize)) -> Vec<f32> {
        let mut row = vec![0.01f32; NUM_CLASSES];
        let inside = |from: usize, to: usize| (a..=b).filter(|t| (from..=to).contains(t)).count();
        let n = (b - a + 1) as f32;
        row[3] += inside(20, 59) as f32 / n;
        row[7] += inside(90, 129) as f32 / n;
        row[31] += 1.0 - (inside(20, 59) + inside(90, 129)) as f32 / n;
        row
    }

    #[test]
    fn a_followed_video_gives_the_batch_instances_each_once_and_in_time() {
        let settings = DetectSettings {
            window: 16,
            stride: 4,
            smooth: 5,
            threshold: 0.3,
            min_length: 4,
        };
        let frames = 150;
        let batch: Vec<((usize, usize), Vec<f32>)> = settings
            .windows(frames)
            .into_iter()
            .map(|w| (w, probabilities(w)))
            .collect();
        let expected = instances("v", &frame_scores(frames, &batch), &settings);
        assert_eq!(expected.len(), 2);
        let mut follower = Follower::new("v", settings.clone());
        let mut given = Vec::new();
        // Frames arrive 7 at a time.
        for available in (7..=frames).step_by(7).chain([frames]) {
            for window in follower.due(available) {
                follower.add(window, probabilities(window));
            }
            for instance in follower.release(available) {
                // Given out within the latency of its end (plus the 7 frames of a delivery).
                assert!(available <= instance.end as usize + 1 + settings.latency() + 7);
                given.push((available, instance));
            }
        }
        // Both given out while frames were still arriving, the first long before the end.
        assert_eq!(given.len(), 2);
        assert!(given[0].0 < 100, "{}", given[0].0);
        let mut given: Vec<Instance> = given.into_iter().map(|(_, i)| i).collect();
        for window in follower.finish(frames) {
            follower.add(window, probabilities(window));
        }
        given.extend(follower.release_all(frames));
        assert_eq!(given, expected);
        // Nothing is given twice.
        assert!(follower.release_all(frames).is_empty());
    }
}
