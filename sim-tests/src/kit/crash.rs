//! One crash sweep for every crash-point test. A test learns how many
//! filesystem mutations its step makes when nothing fails, then the sweep
//! runs the test's trial once for every cut (crash right after mutation 0,
//! 1, ..., all of them) and every trial number: the trial freezes the
//! filesystem at the cut ([`CrashPoint::arm`]), runs the step, crashes
//! ([`CrashPoint::crash`]) and checks what is left.
//!
//! The crash outcomes (how many pending operations a crash keeps) come from
//! one table, [`OUTCOMES`], documented in `docs/simulation.md`: trial `t` at
//! cut `k` uses entry `(k + t) % 5`, so every cut sees several outcomes and
//! every outcome is seen at every few cuts, however few trials a test can
//! afford. Kept writes may be torn at 512-byte blocks. The crash's own
//! random choices are seeded by [`mix`]`(trial, cut)`.

use std::fmt;

use qmail_io_sim::{CrashOptions, SimFs};

use crate::mix;

/// The probability that a crash keeps each pending operation, tried in turn.
pub const OUTCOMES: [f64; 5] = [0.0, 0.2, 0.5, 0.8, 1.0];

/// Where and how one trial crashes.
#[derive(Debug, Clone, Copy)]
pub struct CrashPoint {
    /// The crash falls right after this many mutations of the step.
    pub cut: u64,
    /// How many mutations the whole step makes.
    pub cuts: u64,
    /// The trial at this cut (also the seed of the trial's own world).
    pub trial: u64,
}

impl CrashPoint {
    /// How the crash treats pending operations.
    pub fn options(&self) -> CrashOptions {
        CrashOptions {
            keep_probability: OUTCOMES[((self.cut + self.trial) % OUTCOMES.len() as u64) as usize],
            torn_block: Some(512),
        }
    }

    /// The seed of the crash's own choices.
    pub fn seed(&self) -> u64 {
        mix(self.trial, self.cut)
    }

    /// Whether the cut falls after the whole step (nothing was cut).
    pub fn after_all(&self) -> bool {
        self.cut >= self.cuts
    }

    /// Freezes `fs` right after the cut's mutation.
    pub fn arm(&self, fs: &SimFs) {
        fs.halt_after(self.cut);
    }

    /// The power fails: `fs` keeps or loses what was pending, as this point
    /// decides, and unfreezes.
    pub fn crash(&self, fs: &SimFs) {
        fs.resume();
        fs.crash(self.seed(), self.options());
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash after op {}/{}, trial {} (keep {})",
            self.cut,
            self.cuts,
            self.trial,
            self.options().keep_probability
        )
    }
}

/// What a trial's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Something was accepted before the crash and the check held.
    Held,
    /// The crash came before anything was accepted: only the checks that
    /// hold for unaccepted mail applied.
    NothingAccepted,
}

/// What a sweep covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Mutations the step makes.
    pub cuts: u64,
    /// Crash states checked with something accepted.
    pub held: usize,
    /// Crash states before anything was accepted.
    pub unaccepted: usize,
}

/// The mutations `step` makes on `fs`.
pub fn mutations_of<T>(fs: &SimFs, step: impl FnOnce() -> T) -> (u64, T) {
    let before = fs.stats().mutations;
    let out = step();
    (fs.stats().mutations - before, out)
}

/// Runs `trial` at every cut `0..=cuts` with `trials` trials each; stops at
/// the first violation, which it returns with the test's name and the
/// crash point.
pub fn crash_sweep(
    name: &str,
    cuts: u64,
    trials: u64,
    mut trial: impl FnMut(CrashPoint) -> Result<Checked, String>,
) -> Result<Swept, String> {
    let mut swept = Swept {
        cuts,
        ..Swept::default()
    };
    for cut in 0..=cuts {
        for t in 0..trials {
            let point = CrashPoint {
                cut,
                cuts,
                trial: t,
            };
            match trial(point) {
                Ok(Checked::Held) => swept.held += 1,
                Ok(Checked::NothingAccepted) => swept.unaccepted += 1,
                Err(e) => return Err(format!("{name}: {point}: {e}")),
            }
        }
    }
    eprintln!(
        "{name}: {cuts} operations, {} crash states checked ({} before anything was accepted)",
        swept.held + swept.unaccepted,
        swept.unaccepted
    );
    Ok(swept)
}

/// Every `(what, copies)` got at least one copy; the extra copies (the
/// duplicates a crash between a delivery and its checkpoint may cause) are
/// added to `duplicates`.
pub fn at_least_once<'a>(
    copies: impl IntoIterator<Item = (&'a str, usize)>,
    duplicates: &mut usize,
) -> Result<(), String> {
    for (what, n) in copies {
        if n == 0 {
            return Err(format!("{what} got nothing"));
        }
        *duplicates += n - 1;
    }
    Ok(())
}
