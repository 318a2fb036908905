//! The faults the filesystem injects, all drawn from its own seeded
//! generators.

use std::io;
use std::time::Duration;

use rand::Rng as _;
use rand::seq::SliceRandom as _;

use super::model::{EIO, State, os_err};

/// Faults the filesystem injects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsFaults {
    /// Total bytes of file data the disk holds; a write beyond it fails with `ENOSPC`.
    pub capacity: Option<u64>,
    /// Probability that a write fails with `EIO` (nothing is written).
    pub write_error_rate: f64,
    /// Probability that a file or directory sync fails with `EIO` (nothing
    /// becomes durable).
    pub sync_error_rate: f64,
    /// Probability that a failed file sync also drops the data it was to
    /// write: Linux marks the dirty pages clean after a writeback error, so
    /// the data never reaches the disk and the next fsync succeeds without
    /// it ("fsyncgate", PostgreSQL 2018). Otherwise the data stays pending.
    pub failed_sync_drops: f64,
    /// Range of extra (simulated) time a sync takes.
    pub slow_sync: Option<(Duration, Duration)>,
}

impl State {
    /// Whether this sync fails (a queued failure or the error rate).
    pub(super) fn check_sync_fault(&mut self) -> io::Result<()> {
        if self.failing_syncs > 0 {
            self.failing_syncs -= 1;
            return Err(os_err(EIO));
        }
        let rate = self.faults.sync_error_rate;
        if rate > 0.0 && self.rng.random_bool(rate.min(1.0)) {
            return Err(os_err(EIO));
        }
        Ok(())
    }

    /// Whether a failed file sync drops its data.
    pub(super) fn failed_sync_drops(&mut self) -> bool {
        let p = self.faults.failed_sync_drops;
        p > 0.0 && self.rng.random_bool(p.min(1.0))
    }

    /// Whether this write fails with `EIO`.
    pub(super) fn write_fails(&mut self) -> bool {
        let rate = self.faults.write_error_rate;
        rate > 0.0 && self.rng.random_bool(rate.min(1.0))
    }

    pub(super) fn sync_delay(&mut self) -> Option<Duration> {
        let (lo, hi) = self.faults.slow_sync?;
        if hi <= lo {
            return Some(lo);
        }
        let span = (hi - lo).as_nanos() as u64;
        Some(lo + Duration::from_nanos(self.rng.random_range(0..=span)))
    }

    /// Puts a directory listing in the order this filesystem chooses: real
    /// ones list in hash or on-disk order, never promised sorted.
    pub(super) fn listing_order<T>(&mut self, entries: &mut [T]) {
        entries.shuffle(&mut self.order_rng);
    }
}
