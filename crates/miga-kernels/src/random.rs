//! miga's one seeded random stream, SplitMix64: the same seed gives the same numbers on every
//! platform and thread count. The data pipeline's draws (frames, crops, flips), the CPU dropout
//! masks, the agreement checks' weights and the parity fixtures' parameter stream all come
//! from it.

/// SplitMix64 (Steele, Lea and Flood, 2014): the state advances by the golden-ratio increment
/// and each value is the state, mixed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A stream from a seed.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 24 bits over 2^24 (exact in f32).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1): the top 24 bits over 2^23, minus one (exact in f32).
    pub fn symmetric(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 23) as f32 - 1.0
    }
}

/// FNV-1a (64 bits) of a name: a seed that follows a name on every platform.
pub fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_splitmix64() {
        // The reference values of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
        let mut stream = SplitMix64::new(1_234_567);
        let first: Vec<u64> = (0..3).map(|_| stream.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
        let mut stream = SplitMix64::new(9);
        for _ in 0..1000 {
            let (u, s) = (stream.clone().unit(), stream.symmetric());
            assert!((0.0..1.0).contains(&u) && (-1.0..1.0).contains(&s));
            assert_eq!(s, 2.0 * u - 1.0);
        }
        assert_eq!(name_seed(""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(name_seed("a"), 0xAF63_DC4C_8601_EC8C);
    }
}
