//! Coverage that proves itself: how often a run reached the states the
//! guarantee is most at risk in (a crash inside a commit, a failed sync that
//! is retried, a full disk during DATA, a partition inside a session). A
//! sweep reports the counts, and CI's sweep fails if one of them is never
//! reached ("sometimes" assertions): a change that makes the world stop
//! reaching a state would otherwise only weaken the proof, silently.
//!
//! The counts come from what the run already records: the filesystem's
//! operations in the trace (seen through a [`qmail_io_sim::Probe`]), whose
//! paths tell the MTA's phases apart (`queue/tmp`, `queue/todo`,
//! `queue/mess`, `queue/local`, `queue/remote`, `queue/bounce`, maildirs),
//! the MTA's start and ready lines, the clients' session lines, and the
//! driver's crashes and partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A state a sweep must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// A crash while an injection's temporary file was open (before its
    /// rename into `todo/`).
    CrashInInjection,
    /// A crash after a rename into `todo/` and before the `todo/` sync that
    /// covers it (the group-commit window).
    CrashInGroupSync,
    /// A crash within 0.5 s of an intake operation (`todo/` to `mess/`, the
    /// recipient files).
    CrashInIntake,
    /// A crash within 0.5 s of a delivery's operation (a maildir file, a
    /// recipient's done mark).
    CrashMidDelivery,
    /// A crash within 0.5 s of an operation on a bounce record.
    CrashInBounce,
    /// A crash while the queue's recovery ran (the MTA started and the
    /// scheduler was not ready yet).
    CrashInRecovery,
    /// A sync that failed, then a later successful sync of the same file or
    /// directory (the step retried).
    SyncRetried,
    /// A write into `queue/tmp/` refused with ENOSPC (a full disk during
    /// DATA or during a bounce's injection).
    DiskFullInData,
    /// A client cut off from the MTA while its SMTP session was open.
    PartitionInSession,
}

/// How long after an operation a crash still counts as falling inside it.
const WINDOW: Duration = Duration::from_millis(500);

impl Reached {
    pub const ALL: [Reached; 9] = [
        Reached::CrashInInjection,
        Reached::CrashInGroupSync,
        Reached::CrashInIntake,
        Reached::CrashMidDelivery,
        Reached::CrashInBounce,
        Reached::CrashInRecovery,
        Reached::SyncRetried,
        Reached::DiskFullInData,
        Reached::PartitionInSession,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reached::CrashInInjection => "crash-in-injection",
            Reached::CrashInGroupSync => "crash-in-group-sync",
            Reached::CrashInIntake => "crash-in-intake",
            Reached::CrashMidDelivery => "crash-mid-delivery",
            Reached::CrashInBounce => "crash-in-bounce",
            Reached::CrashInRecovery => "crash-in-recovery",
            Reached::SyncRetried => "failed-sync-retried",
            Reached::DiskFullInData => "disk-full-in-data",
            Reached::PartitionInSession => "partition-in-session",
        }
    }
}

/// How many times each state was reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    counts: [u64; Reached::ALL.len()],
}

impl Coverage {
    pub fn count(&self, r: Reached) -> u64 {
        self.counts[r as usize]
    }

    fn hit(&mut self, r: Reached) {
        self.counts[r as usize] += 1;
    }

    /// Adds another run's counts.
    pub fn add(&mut self, other: &Coverage) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    /// The states never reached.
    pub fn missing(&self) -> Vec<Reached> {
        Reached::ALL
            .into_iter()
            .filter(|r| self.count(*r) == 0)
            .collect()
    }
}

impl fmt::Display for Coverage {
    /// One line: `name=count` for every state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Reached::ALL
            .iter()
            .map(|r| format!("{}={}", r.name(), self.count(*r)))
            .collect();
        f.write_str(&parts.join(" "))
    }
}

/// The phases told apart by the paths an operation touches.
#[derive(Clone, Copy)]
enum Phase {
    Intake,
    Delivery,
    Bounce,
}

/// What one run's tracker knows between crashes.
#[derive(Default)]
struct State {
    coverage: Coverage,
    /// Inode number to the path it was last opened under.
    paths: BTreeMap<u64, String>,
    /// Injection temporaries not yet renamed or removed.
    injecting: BTreeSet<String>,
    /// A rename into `todo/` that no successful `todo/` sync has covered.
    todo_unsynced: bool,
    /// When each phase last touched the disk.
    last: [Option<Duration>; 3],
    /// Files and directories whose last sync failed.
    failed_syncs: BTreeSet<String>,
    /// The MTA started and its scheduler is not ready yet.
    recovering: bool,
    /// Clients whose SMTP session is open.
    in_session: BTreeSet<String>,
}

/// Counts one run's coverage; cloning shares it.
#[derive(Clone, Default)]
pub struct Tracker(Arc<Mutex<State>>);

fn queue_part(path: &str) -> Option<&str> {
    let (_, rest) = path.split_once("/queue/")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// The phase a namespace operation on `path` belongs to.
fn phase_of_name(path: &str) -> Option<Phase> {
    match queue_part(path) {
        Some("mess" | "local" | "remote") => Some(Phase::Intake),
        Some("bounce") => Some(Phase::Bounce),
        Some(_) => None,
        None if path.contains("/Maildir") => Some(Phase::Delivery),
        None => None,
    }
}

/// The phase a data operation (write, file sync) on `path` belongs to: a
/// recipient file's data changes only for done marks, during deliveries.
fn phase_of_data(path: &str) -> Option<Phase> {
    match queue_part(path) {
        Some("local" | "remote") => Some(Phase::Delivery),
        _ => phase_of_name(path),
    }
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counts so far.
    pub fn coverage(&self) -> Coverage {
        self.lock().coverage
    }

    /// A probe for the run's trace.
    pub fn probe(&self) -> qmail_io_sim::Probe {
        let this = self.clone();
        Box::new(move |t, source, event| this.event(t, source, event))
    }

    fn event(&self, t: Duration, source: &str, event: &str) {
        let mut st = self.lock();
        match source {
            "fs" => st.fs_event(t, event),
            "mta" => {
                if event.starts_with("start incarnation") {
                    st.recovering = true;
                } else if event.starts_with("ready") || event.starts_with("exited") {
                    st.recovering = false;
                }
            }
            client if client.starts_with("client") => {
                if event.starts_with("session ") && event.ends_with(" start") {
                    st.in_session.insert(client.to_string());
                } else {
                    st.in_session.remove(client);
                }
            }
            _ => {}
        }
    }

    /// The MTA host crashes at simulated time `t`.
    pub fn crash(&self, t: Duration) {
        let mut st = self.lock();
        if !st.injecting.is_empty() {
            st.coverage.hit(Reached::CrashInInjection);
        }
        if st.todo_unsynced {
            st.coverage.hit(Reached::CrashInGroupSync);
        }
        for (phase, r) in [
            (Phase::Intake, Reached::CrashInIntake),
            (Phase::Delivery, Reached::CrashMidDelivery),
            (Phase::Bounce, Reached::CrashInBounce),
        ] {
            if st.last[phase as usize].is_some_and(|at| t.saturating_sub(at) <= WINDOW) {
                st.coverage.hit(r);
            }
        }
        if st.recovering {
            st.coverage.hit(Reached::CrashInRecovery);
        }
        // What the crash left is durable or gone; nothing is in flight on
        // the MTA (the clients' sessions end on their own).
        let (coverage, in_session) = (st.coverage, std::mem::take(&mut st.in_session));
        *st = State {
            coverage,
            in_session,
            ..State::default()
        };
    }

    /// `client` is cut off from the MTA.
    pub fn partition(&self, client: &str) {
        let mut st = self.lock();
        if st.in_session.contains(client) {
            st.coverage.hit(Reached::PartitionInSession);
        }
    }
}

impl State {
    fn touch(&mut self, t: Duration, phase: Option<Phase>) {
        if let Some(p) = phase {
            self.last[p as usize] = Some(t);
        }
    }

    fn sync_result(&mut self, target: String, ok: bool) {
        if !ok {
            self.failed_syncs.insert(target);
        } else if self.failed_syncs.remove(&target) {
            self.coverage.hit(Reached::SyncRetried);
        }
    }

    /// One filesystem operation, as `io-sim`'s filesystem records it.
    fn fs_event(&mut self, t: Duration, event: &str) {
        let mut words = event.split(' ');
        let op = words.next().unwrap_or("");
        let ino_path = |st: &State, w: Option<&str>| {
            w.and_then(|w| w.strip_prefix("ino="))
                .and_then(|n| n.parse::<u64>().ok())
                .and_then(|n| st.paths.get(&n).cloned())
        };
        match op {
            "open" => {
                let (Some(path), Some(ino)) = (words.next(), words.next()) else {
                    return;
                };
                if let Some(n) = ino.strip_prefix("ino=").and_then(|n| n.parse().ok()) {
                    self.paths.insert(n, path.to_string());
                }
                if queue_part(path) == Some("tmp") {
                    self.injecting.insert(path.to_string());
                }
                self.touch(t, phase_of_name(path));
            }
            "write" | "set_len" => {
                let Some(path) = ino_path(self, words.next()) else {
                    return;
                };
                if event.ends_with("ENOSPC") && queue_part(&path) == Some("tmp") {
                    self.coverage.hit(Reached::DiskFullInData);
                }
                self.touch(t, phase_of_data(&path));
            }
            "fsync" => {
                let ok = event.ends_with("Ok(())");
                match words.next() {
                    Some("dir") => {
                        let Some(path) = words.next() else { return };
                        if ok && queue_part(path) == Some("todo") {
                            self.todo_unsynced = false;
                        }
                        self.touch(t, phase_of_name(path));
                        self.sync_result(format!("dir {path}"), ok);
                    }
                    w => {
                        let Some(path) = ino_path(self, w) else {
                            return;
                        };
                        self.touch(t, phase_of_data(&path));
                        self.sync_result(path, ok);
                    }
                }
            }
            "link" | "rename" => {
                let (Some(from), Some(to)) = (words.next(), words.next()) else {
                    return;
                };
                self.injecting.remove(from);
                if queue_part(to) == Some("todo") {
                    self.todo_unsynced = true;
                }
                self.touch(t, phase_of_name(from).or(phase_of_name(to)));
            }
            "unlink" => {
                let Some(path) = words.next() else { return };
                self.injecting.remove(path);
                // Removing a message's files ends its deliveries.
                let phase = match queue_part(path) {
                    Some("mess" | "local" | "remote") => Some(Phase::Delivery),
                    _ => phase_of_name(path),
                };
                self.touch(t, phase);
            }
            "mkdir" | "rmdir" => {
                let Some(path) = words.next() else { return };
                self.touch(t, phase_of_name(path));
            }
            _ => {}
        }
    }
}
