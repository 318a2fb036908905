use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The event trace of one simulation run: a running hash of every event (to
/// check that a seed replays exactly) and, when asked, the events themselves
/// (for `--trace`).
#[derive(Clone, Default)]
pub struct Trace(Arc<Mutex<TraceInner>>);

/// Sees every hashed event as it is recorded: (simulated time, source,
/// event text). Runs under the trace's lock, so it must not record.
pub type Probe = Box<dyn FnMut(Duration, &str, &str) + Send>;

#[derive(Default)]
struct TraceInner {
    hash: u64,
    events: u64,
    keep: Option<Vec<String>>,
    line: String,
    probe: Option<Probe>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Trace({:016x})", self.hash())
    }
}

impl Trace {
    /// A trace that only hashes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A trace that also keeps every event line.
    pub fn keeping_lines() -> Self {
        let t = Self::default();
        t.lock().keep = Some(Vec::new());
        t
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TraceInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one event, stamped with the simulated time.
    pub fn record(&self, source: &str, event: fmt::Arguments<'_>) {
        let t = turmoil::sim_elapsed().unwrap_or(Duration::ZERO);
        let mut inner = self.lock();
        let mut line = std::mem::take(&mut inner.line);
        line.clear();
        let _ = write!(line, "{:>12.6} {source} ", t.as_secs_f64());
        let event_at = line.len();
        let _ = write!(line, "{event}");
        if let Some(probe) = &mut inner.probe {
            probe(t, source, &line[event_at..]);
        }
        let mut h = if inner.events == 0 {
            FNV_OFFSET
        } else {
            inner.hash
        };
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        inner.hash = h;
        inner.events += 1;
        if let Some(keep) = &mut inner.keep {
            keep.push(line.clone());
        }
        inner.line = line;
    }

    /// Hands every hashed event from now on to `probe` as well (the
    /// simulation's coverage counters read the filesystem's operations this
    /// way, without a second record of them).
    pub fn set_probe(&self, probe: Probe) {
        self.lock().probe = Some(probe);
    }

    /// Keeps a line for `--trace` without hashing it: for output that only
    /// some runs capture (log lines under a subscriber), so the hash of a run
    /// does not depend on whether it was watched.
    pub fn note(&self, source: &str, event: fmt::Arguments<'_>) {
        let mut inner = self.lock();
        if inner.keep.is_none() {
            return;
        }
        let t = turmoil::sim_elapsed().unwrap_or(Duration::ZERO);
        let line = format!("{:>12.6} {source} {event}", t.as_secs_f64());
        if let Some(keep) = &mut inner.keep {
            keep.push(line);
        }
    }

    /// The hash of every event so far (FNV-1a: stable across runs and builds).
    pub fn hash(&self) -> u64 {
        let inner = self.lock();
        if inner.events == 0 {
            FNV_OFFSET
        } else {
            inner.hash
        }
    }

    pub fn events(&self) -> u64 {
        self.lock().events
    }

    /// The kept event lines (empty unless made with [`Trace::keeping_lines`]).
    pub fn lines(&self) -> Vec<String> {
        self.lock().keep.clone().unwrap_or_default()
    }
}
