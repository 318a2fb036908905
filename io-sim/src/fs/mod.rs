//! The simulated filesystem and its crash model (DESIGN section 4).
//!
//! Each simulated host owns one [`SimFs`]. It keeps, for every file, the bytes
//! a reader sees now (`current`) and the bytes that would survive a crash
//! (`durable`), and for every directory the entries a reader sees now and the
//! durable entries. What lies between the two is a list of pending operations,
//! each stamped with the order it was issued in:
//!
//! * writes and truncations of a file stay pending until that file is synced;
//! * creating, linking, renaming and removing a name stay pending until the
//!   directory holding the name is synced;
//! * a sync makes durable only what was issued *before* it began: syncs take
//!   simulated time, and an operation issued while one runs waits for the
//!   next (a group commit that acknowledges a late joiner is caught);
//! * two crash semantics, chosen per filesystem ([`Journal`]): with a
//!   journal, a rename is one atomic operation on two names and syncing
//!   either directory makes the whole of it durable; without one (ext2, or
//!   ext4 with the journal off, which is what `docs/queue.md` says the
//!   deployment runs), each name of a rename is its own update of its own
//!   directory, durable when that directory is synced and kept or lost by a
//!   crash on its own;
//! * on [`SimFs::crash`], each pending operation is independently kept or lost
//!   as the crash seed decides, a kept write may survive as any subset of its
//!   blocks (a torn write), and what was synced always survives. A name
//!   update is kept only if every earlier pending update of the same name
//!   was kept, so a name's durable history is always a prefix of its real one;
//! * faults on demand ([`FsFaults`]): a capacity (`ENOSPC`), `EIO` on write and
//!   on sync, failed file syncs that drop the data they were to write (a later
//!   sync succeeds without it: Linux's "fsyncgate"), slow syncs, and
//!   directory listings in an order the seed chooses.
//!
//! The model is inode based: hard links share one file, and an open handle
//! follows its file through renames, as on POSIX. turmoil 0.7's own
//! `unstable-fs` was the starting point, but it is path based (a hard link is a
//! copy), lists directories in hash order and loses every pending operation on
//! a crash, so this model is our own; `tests/crash_model.rs` checks it against
//! a small reference model. In debug builds every operation that changed the
//! model ends with [`model::State::check`] of its bookkeeping.
//!
//! The parts: `model` (inodes, names, the bookkeeping and its check),
//! `durability` (syncs, failed syncs and crashes), `faults` (what to inject and
//! when), `adapter` (the `Fs` and `FsFile` traits core sees).

mod adapter;
mod durability;
mod faults;
mod model;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::clock::sim_now;
use crate::trace::Trace;

pub use adapter::SimFile;
pub use faults::FsFaults;
use model::{Body, Inode, ROOT, State};

/// Whether the filesystem journals its metadata, which decides how the two
/// names of a rename reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Journal {
    /// ext4 with its journal (`data=ordered`): a rename is committed in one
    /// transaction, so syncing either directory makes both of its names
    /// durable, and a crash keeps both or neither.
    On,
    /// ext2, or ext4 with `^has_journal`: each directory is written on its
    /// own, so the removal of a rename's old name and the creation of its new
    /// one (like a link and a later unlink) become durable independently.
    #[default]
    Off,
}

/// How a crash treats pending operations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrashOptions {
    /// Probability that one pending operation is kept (made durable) by the crash.
    pub keep_probability: f64,
    /// Block size for torn writes; `None` makes each kept write whole.
    pub torn_block: Option<usize>,
}

impl Default for CrashOptions {
    fn default() -> Self {
        CrashOptions {
            keep_probability: 0.5,
            torn_block: Some(512),
        }
    }
}

/// Counters of the operations that matter for cost and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub writes: u64,
    pub crashes: u64,
    /// Operations that change the filesystem or make something durable.
    pub mutations: u64,
    /// Failed file syncs that dropped the data they were to write.
    pub dropped_syncs: u64,
}

/// A file or directory as [`SimFs::snapshot`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SnapEntry {
    File(Vec<u8>),
    Dir,
}

/// A simulated filesystem. Cloning shares it (as processes share a disk).
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFs").finish_non_exhaustive()
    }
}

/// The locked state. In debug builds, dropping a guard through which the
/// state was changed checks the model's bookkeeping, so a slip is caught at
/// the operation that made it.
pub(crate) struct Guard<'a> {
    st: MutexGuard<'a, State>,
    changed: bool,
}

impl Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.st
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.changed = true;
        &mut self.st
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !cfg!(debug_assertions) || !self.changed || std::thread::panicking() {
            return;
        }
        self.st.unchecked += 1;
        if self.st.unchecked < self.st.check_every {
            return;
        }
        self.st.unchecked = 0;
        if let Err(slip) = self.st.check() {
            panic!("simulated filesystem bookkeeping: {slip}");
        }
    }
}

impl SimFs {
    /// An empty filesystem (just `/`) without a journal, whose fault
    /// decisions and listing orders follow `seed`.
    pub fn new(seed: u64) -> Self {
        SimFs {
            state: Arc::new(Mutex::new(State::new(seed))),
        }
    }

    fn lock(&self) -> Guard<'_> {
        // A panic while holding the lock already fails the test; keep going
        // so the panic, not a poisoned lock, is what gets reported.
        Guard {
            st: self.state.lock().unwrap_or_else(|p| p.into_inner()),
            changed: false,
        }
    }

    /// In debug builds the model checks its own bookkeeping (every name
    /// points at an inode, link counts, used bytes, pending stamps in order)
    /// after every `n`-th change; 1, the default, checks after each, so a
    /// slip is caught at the operation that made it. The check walks every
    /// inode, so after each change it was most of a sweep seed's cost in the
    /// test profile; a slip stays in the state, so a larger `n` still catches
    /// it, a little later (and [`SimFs::check_bookkeeping`] at the end).
    pub fn check_bookkeeping_every(&self, n: u64) {
        let mut st = self.lock();
        st.check_every = n.max(1);
        st.unchecked = 0;
    }

    /// Checks the model's bookkeeping now, in any build.
    pub fn check_bookkeeping(&self) -> Result<(), String> {
        self.lock().check()
    }

    /// Chooses the crash semantics of name operations from now on.
    pub fn set_journal(&self, journal: Journal) {
        self.lock().journal = journal;
    }

    pub fn journal(&self) -> Journal {
        self.lock().journal
    }

    /// Sets the faults to inject from now on.
    pub fn set_faults(&self, faults: FsFaults) {
        self.lock().faults = faults;
    }

    /// Makes the next `n` syncs (of files or directories) fail with `EIO`.
    pub fn fail_next_syncs(&self, n: u32) {
        self.lock().failing_syncs = n;
    }

    /// Lets `n` more mutating operations through, then fails every operation
    /// with `EIO` until [`SimFs::resume`]: the state is frozen exactly as it was
    /// after the n-th operation, so a [`SimFs::crash`] then is a crash at that
    /// point. Crash tests walk `n` over every operation of a procedure.
    pub fn halt_after(&self, n: u64) {
        self.lock().halt_in = Some(n);
    }

    /// Undoes [`SimFs::halt_after`].
    pub fn resume(&self) {
        self.lock().halt_in = None;
    }

    /// Records every operation into `trace` from now on.
    pub fn set_trace(&self, trace: Trace) {
        self.lock().trace = Some(trace);
    }

    pub fn stats(&self) -> FsStats {
        self.lock().stats
    }

    /// Bytes of file data currently stored.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used
    }

    /// Number of namespace operations not yet durable.
    pub fn pending_name_ops(&self) -> usize {
        self.lock().pending.len()
    }

    /// Checks the model's bookkeeping now (debug builds also do it after
    /// every operation); the error names the first slip found.
    pub fn check(&self) -> Result<(), String> {
        self.lock().check()
    }

    /// Simulates a power loss: every pending operation is kept or lost as
    /// `seed` decides (see the module documentation), all open handles die,
    /// and what remains is exactly the durable state.
    pub fn crash(&self, seed: u64, opts: CrashOptions) {
        let mut st = self.lock();
        let mut rng = StdRng::seed_from_u64(seed);
        st.crash(&mut rng, opts);
        st.record(format_args!("crash seed={seed}"));
    }

    /// Every file and directory reachable now, by path, with file contents.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, SnapEntry> {
        let st = self.lock();
        let mut out = BTreeMap::new();
        st.walk(ROOT, PathBuf::from("/"), &mut out);
        out
    }

    /// Makes `uid` the owner of `path` (test setup; ownership is not part
    /// of the crash model).
    pub fn set_owner(&self, path: &Path, uid: u32) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.resolve(path)?;
        st.owners.insert(ino, uid);
        Ok(())
    }

    /// Makes creating a file in the directory `dir` fail with `EACCES`, as
    /// it does for a process without write permission there (test setup;
    /// permissions are not otherwise modelled). Existing files stay writable.
    pub fn deny_creation_in(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.resolve(dir)?;
        st.no_creation.insert(ino);
        Ok(())
    }

    /// Plants a file and makes it and its name durable at once (test setup).
    pub fn install_file(&self, path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        if let Some(parent) = path.parent() {
            st.mkdir_all_durable(parent)?;
        }
        let (dir, name) = st.resolve_parent(path)?;
        let ino = st.alloc(Inode {
            mode,
            mtime: sim_now(),
            nlink: 1,
            open: 0,
            body: Body::File {
                current: content.to_vec(),
                durable: content.to_vec(),
                pending: Vec::new(),
                drops: 0,
            },
        });
        st.used += content.len() as u64;
        if let Some(old) = st.dir_lookup(dir, &name) {
            st.unref(old);
        }
        let eff = [(dir, name, Some(ino))];
        st.apply_effects_now(&eff);
        st.apply_durable(&eff);
        Ok(())
    }
}
