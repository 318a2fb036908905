/// The one source of randomness for core (queue ids, MX tie-breaking, unique
/// names). Seeded in the simulation, so every run is a function of its seed.
pub trait Rng: Clone + Send + Sync + 'static {
    fn next_u64(&self) -> u64;

    /// A value uniformly chosen in `0..n` (`n` must be non-zero).
    fn below(&self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        // Rejection sampling keeps the distribution uniform.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}
