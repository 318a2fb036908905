//! The simulation test kit: what the crash-point tests share, so that each
//! test is its setup, its step and its check.
//!
//! - [`crash`]: one crash sweep (every cut point, every crash outcome of
//!   one documented table, one seed mixing);
//! - [`host`]: one world with the MTA host (queue and scheduler under
//!   turmoil, with the test's delivery agents) that crashes and restarts;
//! - [`inject`]: one way to put a message into a queue.

pub mod crash;
pub mod host;
pub mod inject;

use qmail_core::env::Identity;
use qmail_io_sim::{SimEnv, SimFs};

/// A current-thread runtime with tokio's real-time clock (the simulated
/// filesystem takes no time outside turmoil).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A process identity for a test host.
pub fn identity(pid: u32, uid: u32, hostname: &str) -> Identity {
    Identity {
        pid,
        uid,
        gid: uid,
        hostname: hostname.into(),
    }
}

/// An environment on `fs` with randomness seeded by `seed`.
pub fn env_on(fs: &SimFs, seed: u64, identity: &Identity) -> SimEnv {
    SimEnv::new(fs.clone(), seed, identity.clone())
}
