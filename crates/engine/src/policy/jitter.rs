//! A small seeded random source for backoff jitter. SplitMix64: fast, good enough to spread
//! retries, and reproducible in tests when seeded. Not for anything secret.

#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Seeded from the clock and the process id, so two Lifelines never jitter in lockstep.
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self::seeded(nanos ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::Jitter;

    #[test]
    fn stays_in_bounds_and_covers_the_range() {
        let mut j = Jitter::seeded(7);
        let mut seen = [false; 11];
        for _ in 0..10_000 {
            let v = j.up_to(10);
            assert!(v <= 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Jitter::seeded(42), Jitter::seeded(42));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }
}
