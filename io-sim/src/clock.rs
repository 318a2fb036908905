use std::time::{Duration, SystemTime};

use qmail_core::env::Clock;

/// Where simulated wall-clock time starts: 2026-11-25 00:00:00 UTC.
pub const SIM_EPOCH_SECS: u64 = 1_795_564_800;

/// The fixed start of simulated wall-clock time.
pub fn sim_epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(SIM_EPOCH_SECS)
}

/// Simulated wall-clock time: the simulation's epoch plus simulated time
/// elapsed, so it keeps running across a host's crash and restart. Outside a
/// simulation (unit tests of the filesystem) it stands still at the epoch.
pub fn sim_now() -> SystemTime {
    match turmoil::since_epoch() {
        Some(d) => SystemTime::UNIX_EPOCH + d,
        None => sim_epoch(),
    }
}

/// The simulation's clock, possibly set ahead of simulated time (a test
/// standing for a host that comes back later than the crash).
#[derive(Debug, Clone, Copy, Default)]
pub struct SimClock {
    ahead: Duration,
}

impl SimClock {
    /// A clock reading `ahead` later than simulated time.
    pub fn ahead(ahead: Duration) -> Self {
        SimClock { ahead }
    }
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        sim_now() + self.ahead
    }
}
