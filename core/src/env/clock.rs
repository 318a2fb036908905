use std::time::SystemTime;

/// Wall-clock time. Headers, queue ids and the retry schedule use it; sleeps and
/// timeouts use `tokio::time` instead (turmoil drives that in the simulation).
pub trait Clock: Clone + Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Seconds since the Unix epoch (clamped at 0 for clocks set before 1970).
    fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}
