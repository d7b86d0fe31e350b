//! Temporal sampling of clips and a small seeded random number generator, so that every random
//! choice of the data pipeline (frames, crops, flips) is the same under the same seed.

use miga_kernels::random::SplitMix64;

/// A seeded random number generator: miga's one stream ([`SplitMix64`]), with the draws the
/// data pipeline needs. The same seed gives the same numbers on every platform.
#[derive(Debug, Clone)]
pub struct SeededRng(SplitMix64);

impl SeededRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    /// A generator for one draw of a data pipeline: mixes the run seed, the epoch and the item.
    pub fn for_item(seed: u64, epoch: u64, item: u64) -> Self {
        let mixed = SplitMix64::new(seed ^ 0x9e37_79b9_7f4a_7c15).next_u64()
            ^ epoch.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        Self::new(mixed ^ item.wrapping_mul(0x94d0_49bb_1331_11eb))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform number in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0.unit()
    }

    /// A uniform integer in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// A normal sample (mean 0, standard deviation 1), Box-Muller.
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// How `T` frames are chosen from a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemporalSampling {
    /// The centre of each of `T` equal segments (evaluation).
    #[default]
    Uniform,
    /// A random frame in each of `T` equal segments (training, TSN-style).
    Random,
}

/// `frames` frame indices from the clip `start..=end`, in time order: the clip is cut into
/// `frames` equal segments and one frame is taken from each (its centre, or a random frame);
/// clips shorter than `frames` repeat frames. The same indices serve RGB and skeleton.
pub fn sample_frames(
    start: usize,
    end: usize,
    frames: usize,
    sampling: TemporalSampling,
    rng: &mut SeededRng,
) -> Vec<usize> {
    let length = (end.max(start) - start + 1) as f64;
    let segment = length / frames.max(1) as f64;
    (0..frames)
        .map(|i| {
            let within = match sampling {
                TemporalSampling::Uniform => 0.5,
                TemporalSampling::Random => f64::from(rng.uniform()),
            };
            let offset = ((i as f64 + within) * segment).floor() as usize;
            start + offset.min(length as usize - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_sampling_covers_the_clip() {
        let mut rng = SeededRng::new(0);
        assert_eq!(
            sample_frames(100, 139, 4, TemporalSampling::Uniform, &mut rng),
            [105, 115, 125, 135]
        );
        // A 6-frame clip (the shortest in iMiGUE) sampled to 16 frames repeats frames.
        let short = sample_frames(0, 5, 16, TemporalSampling::Uniform, &mut rng);
        assert_eq!(short.len(), 16);
        assert!(short.windows(2).all(|w| w[0] <= w[1]) && short[0] == 0 && short[15] == 5);
    }

    #[test]
    fn random_sampling_stays_in_segments_and_repeats_under_a_seed() {
        let draw = |seed| {
            sample_frames(
                0,
                3692,
                16,
                TemporalSampling::Random,
                &mut SeededRng::for_item(seed, 1, 7),
            )
        };
        let a = draw(3);
        assert_eq!(a, draw(3));
        assert_ne!(a, draw(4));
        for (i, &f) in a.iter().enumerate() {
            let segment = 3693.0 / 16.0;
            assert!(
                (f as f64) >= (i as f64 * segment).floor()
                    && (f as f64) < ((i + 1) as f64 * segment),
                "{i}: {f}"
            );
        }
        let mut rng = SeededRng::new(1);
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
