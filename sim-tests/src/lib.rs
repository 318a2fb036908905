//! The simulation harness: a small internet in turmoil around the MTA under
//! test, faults chosen per seed, and the never-lose-mail oracle (DESIGN
//! sections 1 and 7; docs/simulation.md).
//!
//! [`run`] is one seed: a pure function of the seed and its [`RunOptions`].
//! The `sim` binary sweeps and replays seeds; `tests/` holds the CI sweep,
//! the planted-bug test and the determinism test.

pub mod coverage;
pub mod faults;
pub mod kit;
pub mod ledger;
pub mod mta;
pub mod oracle;
pub mod remote;
pub mod sweep;
pub mod traffic;
mod world;

pub use coverage::{Coverage, Reached};
pub use faults::Faults;
pub use world::{RunOptions, RunReport, TICK, note_log, run};

/// The MTA's domain.
pub const DOMAIN: &str = "sim.test";
/// The MTA's installation root.
pub const HOME: &str = "/qmail";

/// Derives an independent seed for one purpose from the run's seed
/// (splitmix64 of the pair).
pub fn mix(seed: u64, purpose: u64) -> u64 {
    let mut z = seed
        .wrapping_add(purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
