//! Faults, chosen per seed (swarm testing): each seed enables a random
//! subset, then draws a timeline of fault events for the enabled kinds.
//!
//! Adding a fault kind: a flag in [`Faults`] (drawn in [`Faults::choose`] and
//! named in [`Faults::names`]), the events it causes in [`timeline`], and
//! their effect in `world.rs` (`World::apply`).

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::mix;

/// When the fault phase ends: every fault is healed from then on and the
/// queue is left to drain.
pub const FAULT_END_MS: u64 = 120_000;

/// The fault kinds one seed enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Crashes (and restarts) of the MTA host under the filesystem crash
    /// model; 0 disables them.
    pub crashes: u32,
    /// Some crashes fall at a random filesystem operation (the filesystem
    /// freezes right after it) instead of at a random moment.
    pub crash_at_op: bool,
    /// Partitions between clients and the MTA, repaired later (sessions cut
    /// mid-command or mid-DATA).
    pub partitions: bool,
    /// Windows of high network latency.
    pub latency: bool,
    /// Windows of message loss (a lost segment stalls a session until a
    /// timeout).
    pub loss: bool,
    /// A window in which the MTA's disk is full.
    pub disk_full: bool,
    /// A window of failing fsyncs and writes.
    pub io_errors: bool,
    /// Slow fsyncs (so a crash can fall between the steps of a commit).
    pub slow_sync: bool,
    /// Deliveries that defer for a while: the `slow` program, the
    /// `defer.example` remote, and remote deliveries failing at random
    /// during the fault phase.
    pub deferrals: bool,
    /// A short queue lifetime, so long deferrals end in bounces.
    pub short_lifetime: bool,
    /// The MTA's filesystem journals its metadata (a rename lands whole);
    /// otherwise each name of a rename lands on its own, as on ext2.
    pub journal: bool,
    /// Failed file syncs (under `io_errors`) drop the data they were to
    /// write half the time, and the next sync succeeds without it.
    pub fsyncgate: bool,
}

impl Faults {
    /// The subset seed `seed` enables. Crashes are on for most seeds.
    pub fn choose(seed: u64) -> Faults {
        let mut rng = StdRng::seed_from_u64(mix(seed, 0xfa17));
        let crashes = if rng.random_bool(0.85) {
            rng.random_range(1..=4)
        } else {
            0
        };
        Faults {
            crashes,
            crash_at_op: rng.random_bool(0.5),
            partitions: rng.random_bool(0.5),
            latency: rng.random_bool(0.5),
            loss: rng.random_bool(0.3),
            disk_full: rng.random_bool(0.3),
            io_errors: rng.random_bool(0.3),
            slow_sync: rng.random_bool(0.6),
            deferrals: rng.random_bool(0.6),
            short_lifetime: rng.random_bool(0.2),
            // Drawn last, so the draws above keep their values per seed.
            journal: rng.random_bool(0.5),
            fsyncgate: rng.random_bool(0.5),
        }
    }

    /// The names of the enabled kinds.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.crashes > 0 {
            v.push(format!(
                "crashes={}{}",
                self.crashes,
                if self.crash_at_op { "(at-op)" } else { "" }
            ));
        }
        for (on, name) in [
            (self.partitions, "partitions"),
            (self.latency, "latency"),
            (self.loss, "loss"),
            (self.disk_full, "disk-full"),
            (self.io_errors, "io-errors"),
            (self.slow_sync, "slow-sync"),
            (self.deferrals, "deferrals"),
            (self.short_lifetime, "short-lifetime"),
            (self.journal, "journal"),
            (self.io_errors && self.fsyncgate, "fsyncgate"),
        ] {
            if on {
                v.push(name.to_string());
            }
        }
        v
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(" "))
        }
    }
}

/// One fault event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Crash the MTA now; restart it after `downtime_ms`.
    Crash {
        keep_probability: f64,
        torn: bool,
        downtime_ms: u64,
    },
    /// Freeze the MTA's filesystem after `ops` more operations, then crash.
    CrashAtOp {
        ops: u64,
        keep_probability: f64,
        torn: bool,
        downtime_ms: u64,
    },
    /// Restart the crashed MTA.
    Restart,
    Partition(usize),
    Repair(usize),
    Latency(u64),
    LatencyOff,
    Loss(f64),
    LossOff,
    /// The disk holds only this many more bytes.
    DiskFull(u64),
    DiskOk,
    IoErrors(f64),
    IoErrorsOff,
    /// Every fault heals; the drain begins.
    End,
}

/// The timeline of fault events (milliseconds of simulated time) for
/// `faults`, with `clients` client hosts.
pub fn timeline(seed: u64, faults: &Faults, clients: usize) -> Vec<(u64, Event)> {
    let mut rng = StdRng::seed_from_u64(mix(seed, 0x71e));
    let mut ev = Vec::new();
    let window = |rng: &mut StdRng, max_len: u64| {
        let start = rng.random_range(1_000..FAULT_END_MS - 2_000);
        let end = (start + rng.random_range(500..max_len)).min(FAULT_END_MS - 1);
        (start, end)
    };
    for _ in 0..faults.crashes {
        let at = rng.random_range(2_000..FAULT_END_MS - 5_000);
        let keep_probability = [0.0, 0.2, 0.5, 0.8, 1.0][rng.random_range(0..5)];
        let torn = rng.random_bool(0.5);
        let downtime_ms = rng.random_range(200..15_000);
        let e = if faults.crash_at_op && rng.random_bool(0.7) {
            Event::CrashAtOp {
                ops: rng.random_range(1..400),
                keep_probability,
                torn,
                downtime_ms,
            }
        } else {
            Event::Crash {
                keep_probability,
                torn,
                downtime_ms,
            }
        };
        ev.push((at, e));
    }
    if faults.partitions {
        for c in 0..clients {
            for _ in 0..rng.random_range(1..=3) {
                let (a, b) = window(&mut rng, 25_000);
                ev.push((a, Event::Partition(c)));
                ev.push((b, Event::Repair(c)));
            }
        }
    }
    if faults.latency {
        for _ in 0..rng.random_range(1..=3) {
            let (a, b) = window(&mut rng, 30_000);
            ev.push((a, Event::Latency(rng.random_range(50..1_500))));
            ev.push((b, Event::LatencyOff));
        }
    }
    if faults.loss {
        for _ in 0..rng.random_range(1..=2) {
            let (a, b) = window(&mut rng, 20_000);
            ev.push((a, Event::Loss(rng.random_range(0.001..0.02))));
            ev.push((b, Event::LossOff));
        }
    }
    if faults.disk_full {
        let (a, b) = window(&mut rng, 40_000);
        ev.push((a, Event::DiskFull(rng.random_range(0..64 * 1024))));
        ev.push((b, Event::DiskOk));
    }
    if faults.io_errors {
        let (a, b) = window(&mut rng, 40_000);
        ev.push((a, Event::IoErrors(rng.random_range(0.01..0.15))));
        ev.push((b, Event::IoErrorsOff));
    }
    ev.push((FAULT_END_MS, Event::End));
    // Stable: events at the same moment keep their drawing order.
    ev.sort_by_key(|(t, _)| *t);
    ev
}
