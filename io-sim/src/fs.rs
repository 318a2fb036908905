//! The simulated filesystem and its crash model (DESIGN section 4).
//!
//! Each simulated host owns one [`SimFs`]. It keeps, for every file, the bytes
//! a reader sees now (`current`) and the bytes that would survive a crash
//! (`durable`), and for every directory the entries a reader sees now and the
//! durable entries. What lies between the two is a list of pending operations:
//!
//! * writes and truncations of a file stay pending until that file is synced;
//! * creating, linking, renaming and removing a name stay pending until the
//!   directory holding the name is synced. A rename is one atomic operation on
//!   two names; syncing either directory makes the whole of it durable;
//! * on [`SimFs::crash`], each pending operation is independently kept or lost
//!   as the crash seed decides, a kept write may survive only as a prefix of
//!   whole blocks (a torn write), and what was synced always survives. A name
//!   operation is kept only if every earlier pending operation on the same name
//!   was kept, so a name's durable history is always a prefix of its real one
//!   (this is what makes a rename atomic across a crash);
//! * faults on demand: a capacity (`ENOSPC`), `EIO` on write and on sync (after
//!   a failed sync the data stays pending, so it must not be acknowledged) and
//!   slow syncs.
//!
//! The model is inode based: hard links share one file, and an open handle
//! follows its file through renames, as on POSIX. turmoil 0.7's own
//! `unstable-fs` was the starting point, but it is path based (a hard link is a
//! copy), lists directories in hash order and loses every pending operation on
//! a crash, so this model is our own; `tests/crash_model.rs` checks it against
//! a small reference model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use qmail_core::env::{DirEntry, FileKind, Fs, FsFile, Metadata, OpenOptions};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

use crate::clock::sim_now;
use crate::trace::Trace;

const ENOENT: i32 = 2;
const EIO: i32 = 5;
const EBADF: i32 = 9;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;
const ENOTEMPTY: i32 = 39;

fn os_err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

type Ino = u64;
const ROOT: Ino = 1;

/// Faults the filesystem injects. All decisions are drawn from the
/// filesystem's own seeded generator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsFaults {
    /// Total bytes of file data the disk holds; a write beyond it fails with `ENOSPC`.
    pub capacity: Option<u64>,
    /// Probability that a write fails with `EIO` (nothing is written).
    pub write_error_rate: f64,
    /// Probability that a file or directory sync fails with `EIO` (nothing
    /// becomes durable).
    pub sync_error_rate: f64,
    /// Range of extra (simulated) time a sync takes.
    pub slow_sync: Option<(Duration, Duration)>,
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
}

#[derive(Debug, Clone)]
enum DataOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug)]
enum Body {
    File {
        current: Vec<u8>,
        durable: Vec<u8>,
        pending: Vec<DataOp>,
    },
    Dir {
        current: BTreeMap<String, Ino>,
        durable: BTreeMap<String, Ino>,
    },
}

#[derive(Debug)]
struct Inode {
    mode: u32,
    mtime: SystemTime,
    nlink: u64,
    /// Open handles; a file with no name and no handle no longer uses space.
    open: u32,
    body: Body,
}

impl Inode {
    fn kind(&self) -> FileKind {
        match self.body {
            Body::File { .. } => FileKind::File,
            Body::Dir { .. } => FileKind::Dir,
        }
    }
}

/// One pending change to the namespace: name assignments applied atomically.
#[derive(Debug, Clone)]
struct NsOp {
    /// (directory, name, new target or removal)
    effects: Vec<(Ino, String, Option<Ino>)>,
}

impl NsOp {
    fn touches_dir(&self, dir: Ino) -> bool {
        self.effects.iter().any(|(d, _, _)| *d == dir)
    }
    fn keys(&self) -> impl Iterator<Item = (Ino, &str)> {
        self.effects.iter().map(|(d, n, _)| (*d, n.as_str()))
    }
}

struct State {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    pending: Vec<NsOp>,
    /// Bumped by every crash; handles from an earlier generation are dead.
    generation: u64,
    faults: FsFaults,
    failing_syncs: u32,
    rng: StdRng,
    /// After this many more mutations every operation fails (see [`SimFs::halt_after`]).
    halt_in: Option<u64>,
    used: u64,
    stats: FsStats,
    trace: Option<Trace>,
    /// Files locked (`FsFile::try_lock`) by a live handle.
    locks: BTreeSet<Ino>,
    /// Owners set by [`SimFs::set_owner`] (everything else belongs to uid 0).
    owners: BTreeMap<Ino, u32>,
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

/// A file or directory as [`SimFs::snapshot`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SnapEntry {
    File(Vec<u8>),
    Dir,
}

impl SimFs {
    /// An empty filesystem (just `/`) whose fault decisions follow `seed`.
    pub fn new(seed: u64) -> Self {
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT,
            Inode {
                mode: 0o755,
                mtime: SystemTime::UNIX_EPOCH,
                nlink: 2,
                open: 0,
                body: Body::Dir {
                    current: BTreeMap::new(),
                    durable: BTreeMap::new(),
                },
            },
        );
        SimFs {
            state: Arc::new(Mutex::new(State {
                inodes,
                next_ino: ROOT + 1,
                pending: Vec::new(),
                generation: 0,
                faults: FsFaults::default(),
                failing_syncs: 0,
                rng: StdRng::seed_from_u64(seed),
                halt_in: None,
                used: 0,
                stats: FsStats::default(),
                trace: None,
                locks: BTreeSet::new(),
                owners: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock already fails the test; keep going
        // so the panic, not a poisoned lock, is what gets reported.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Plants a file and makes it and its name durable at once (test setup).
    pub fn install_file(&self, path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        if let Some(parent) = path.parent() {
            st.mkdir_all_durable(parent)?;
        }
        let (dir, name) = st.resolve_parent(path)?;
        let now = sim_now();
        let ino = st.alloc(Inode {
            mode,
            mtime: now,
            nlink: 1,
            open: 0,
            body: Body::File {
                current: content.to_vec(),
                durable: content.to_vec(),
                pending: Vec::new(),
            },
        });
        st.used += content.len() as u64;
        if let Some(old) = st.dir_lookup(dir, &name) {
            st.unref(old);
        }
        st.apply_effects_now(&[(dir, name.clone(), Some(ino))]);
        st.apply_durable(&[(dir, name, Some(ino))]);
        Ok(())
    }
}

impl State {
    fn record(&mut self, event: fmt::Arguments<'_>) {
        if let Some(t) = &self.trace {
            t.record("fs", event);
        }
    }

    /// Counts one mutating operation, or refuses it when halted.
    fn mutation(&mut self) -> io::Result<()> {
        match &mut self.halt_in {
            Some(0) => return Err(io::Error::other("simulated power loss")),
            Some(n) => *n -= 1,
            None => {}
        }
        self.stats.mutations += 1;
        Ok(())
    }

    fn alloc(&mut self, inode: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, inode);
        ino
    }

    fn inode(&self, ino: Ino) -> io::Result<&Inode> {
        self.inodes.get(&ino).ok_or_else(|| os_err(ENOENT))
    }

    fn inode_mut(&mut self, ino: Ino) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(|| os_err(ENOENT))
    }

    fn dir_lookup(&self, dir: Ino, name: &str) -> Option<Ino> {
        match &self.inodes.get(&dir)?.body {
            Body::Dir { current, .. } => current.get(name).copied(),
            Body::File { .. } => None,
        }
    }

    fn components(path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut absolute = false;
        for c in path.components() {
            match c {
                Component::RootDir => absolute = true,
                Component::CurDir => {}
                Component::Normal(n) => {
                    out.push(n.to_str().ok_or_else(|| os_err(EINVAL))?.to_string())
                }
                Component::ParentDir | Component::Prefix(_) => return Err(os_err(EINVAL)),
            }
        }
        if !absolute {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("simulated paths are absolute: {}", path.display()),
            ));
        }
        Ok(out)
    }

    fn resolve(&self, path: &Path) -> io::Result<Ino> {
        let mut ino = ROOT;
        for name in Self::components(path)? {
            match &self.inode(ino)?.body {
                Body::Dir { current, .. } => {
                    ino = *current.get(&name).ok_or_else(|| os_err(ENOENT))?;
                }
                Body::File { .. } => return Err(os_err(ENOTDIR)),
            }
        }
        Ok(ino)
    }

    /// The directory holding `path` and the last component's name.
    fn resolve_parent(&self, path: &Path) -> io::Result<(Ino, String)> {
        let mut comps = Self::components(path)?;
        let name = comps.pop().ok_or_else(|| os_err(EINVAL))?;
        let mut ino = ROOT;
        for c in comps {
            match &self.inode(ino)?.body {
                Body::Dir { current, .. } => {
                    ino = *current.get(&c).ok_or_else(|| os_err(ENOENT))?;
                }
                Body::File { .. } => return Err(os_err(ENOTDIR)),
            }
        }
        match self.inode(ino)?.body {
            Body::Dir { .. } => Ok((ino, name)),
            Body::File { .. } => Err(os_err(ENOTDIR)),
        }
    }

    fn apply_effects_now(&mut self, effects: &[(Ino, String, Option<Ino>)]) {
        for (dir, name, target) in effects {
            if let Some(Inode {
                body: Body::Dir { current, .. },
                ..
            }) = self.inodes.get_mut(dir)
            {
                match target {
                    Some(t) => current.insert(name.clone(), *t),
                    None => current.remove(name),
                };
            }
        }
    }

    fn apply_durable(&mut self, effects: &[(Ino, String, Option<Ino>)]) {
        for (dir, name, target) in effects {
            if let Some(Inode {
                body: Body::Dir { durable, .. },
                ..
            }) = self.inodes.get_mut(dir)
            {
                match target {
                    Some(t) => durable.insert(name.clone(), *t),
                    None => durable.remove(name),
                };
            }
        }
    }

    /// Changes the namespace now and remembers the change as pending.
    fn change_names(&mut self, effects: Vec<(Ino, String, Option<Ino>)>) {
        let now = sim_now();
        for (dir, _, _) in &effects {
            if let Some(d) = self.inodes.get_mut(dir) {
                d.mtime = now;
            }
        }
        self.apply_effects_now(&effects);
        self.pending.push(NsOp { effects });
    }

    /// Drops one name's reference to an inode.
    fn unref(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.nlink = i.nlink.saturating_sub(1);
        }
        self.release_if_unused(ino);
    }

    /// A file with no name and no open handle frees its space. The inode stays:
    /// a crash may still bring back a name that was not durably removed.
    fn release_if_unused(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get_mut(&ino)
            && i.nlink == 0
            && i.open == 0
            && let Body::File { current, .. } = &mut i.body
        {
            self.used -= current.len() as u64;
            current.clear();
        }
    }

    fn check_sync_fault(&mut self) -> io::Result<()> {
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

    fn sync_delay(&mut self) -> Option<Duration> {
        let (lo, hi) = self.faults.slow_sync?;
        if hi <= lo {
            return Some(lo);
        }
        let span = (hi - lo).as_nanos() as u64;
        Some(lo + Duration::from_nanos(self.rng.random_range(0..=span)))
    }

    /// Makes durable every pending name operation on `dir`, with every earlier
    /// pending operation on the same names (they must land first).
    fn commit_dir(&mut self, dir: Ino) {
        let mut needed: BTreeSet<(Ino, String)> = BTreeSet::new();
        let mut commit = vec![false; self.pending.len()];
        for (i, op) in self.pending.iter().enumerate().rev() {
            let depends = op.keys().any(|(d, n)| needed.contains(&(d, n.to_string())));
            if op.touches_dir(dir) || depends {
                commit[i] = true;
                for (d, n) in op.keys() {
                    needed.insert((d, n.to_string()));
                }
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for (op, c) in pending.into_iter().zip(commit) {
            if c {
                self.apply_durable(&op.effects);
            } else {
                self.pending.push(op);
            }
        }
    }

    fn crash(&mut self, rng: &mut StdRng, opts: CrashOptions) {
        // Every handle dies, and its locks with it.
        self.locks.clear();
        let keep_p = opts.keep_probability.clamp(0.0, 1.0);
        // Names: keep each operation with probability keep_p, unless an earlier
        // operation on one of its names was lost.
        let mut lost: BTreeSet<(Ino, String)> = BTreeSet::new();
        for op in std::mem::take(&mut self.pending) {
            let blocked = op.keys().any(|(d, n)| lost.contains(&(d, n.to_string())));
            if !blocked && rng.random_bool(keep_p) {
                self.apply_durable(&op.effects);
            } else {
                for (d, n) in op.keys() {
                    lost.insert((d, n.to_string()));
                }
            }
        }
        // Data: each pending operation independently kept, torn or lost.
        for inode in self.inodes.values_mut() {
            if let Body::File {
                durable, pending, ..
            } = &mut inode.body
            {
                for op in pending.drain(..) {
                    match op {
                        DataOp::SetLen(len) => {
                            if rng.random_bool(keep_p) {
                                durable.resize(len as usize, 0);
                            }
                        }
                        DataOp::Write { offset, data } => {
                            let keep = if rng.random_bool(keep_p) {
                                data.len()
                            } else if let Some(block) = opts.torn_block {
                                // Lost, or torn: only some whole blocks from
                                // the start reached the disk.
                                let blocks = data.len().div_ceil(block);
                                (rng.random_range(0..blocks) * block).min(data.len())
                            } else {
                                0
                            };
                            if keep > 0 {
                                let start = offset as usize;
                                let end = start + keep;
                                if durable.len() < end {
                                    durable.resize(end, 0);
                                }
                                durable[start..end].copy_from_slice(&data[..keep]);
                            }
                        }
                    }
                }
            }
        }
        // What is left is the durable image, minus what no durable name reaches.
        let mut reachable = BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if !reachable.insert(ino) {
                continue;
            }
            if let Some(Inode {
                body: Body::Dir { durable, .. },
                ..
            }) = self.inodes.get(&ino)
            {
                stack.extend(durable.values().copied());
            }
        }
        self.inodes.retain(|ino, _| reachable.contains(ino));
        let mut links: BTreeMap<Ino, u64> = BTreeMap::new();
        for inode in self.inodes.values() {
            if let Body::Dir { durable, .. } = &inode.body {
                for t in durable.values() {
                    *links.entry(*t).or_default() += 1;
                }
            }
        }
        let mut used = 0;
        for (ino, inode) in self.inodes.iter_mut() {
            match &mut inode.body {
                Body::File {
                    current, durable, ..
                } => {
                    *current = durable.clone();
                    used += current.len() as u64;
                    inode.nlink = links.get(ino).copied().unwrap_or(0);
                    inode.open = 0;
                }
                Body::Dir { current, durable } => {
                    *current = durable.clone();
                    inode.nlink = 2;
                }
            }
        }
        self.used = used;
        self.generation += 1;
        self.stats.crashes += 1;
    }

    fn walk(&self, ino: Ino, path: PathBuf, out: &mut BTreeMap<PathBuf, SnapEntry>) {
        if let Some(Inode {
            body: Body::Dir { current, .. },
            ..
        }) = self.inodes.get(&ino)
        {
            for (name, child) in current {
                let p = path.join(name);
                match self.inodes.get(child).map(|i| &i.body) {
                    Some(Body::File { current, .. }) => {
                        out.insert(p, SnapEntry::File(current.clone()));
                    }
                    Some(Body::Dir { .. }) => {
                        out.insert(p.clone(), SnapEntry::Dir);
                        self.walk(*child, p, out);
                    }
                    None => {}
                }
            }
        }
    }

    fn mkdir_all_durable(&mut self, path: &Path) -> io::Result<()> {
        let mut ino = ROOT;
        for name in Self::components(path)? {
            ino = match self.dir_lookup(ino, &name) {
                Some(child) => child,
                None => {
                    let child = self.alloc(Inode {
                        mode: 0o755,
                        mtime: sim_now(),
                        nlink: 2,
                        open: 0,
                        body: Body::Dir {
                            current: BTreeMap::new(),
                            durable: BTreeMap::new(),
                        },
                    });
                    let eff = [(ino, name, Some(child))];
                    self.apply_effects_now(&eff);
                    self.apply_durable(&eff);
                    child
                }
            };
        }
        Ok(())
    }

    fn metadata_of(&self, ino: Ino) -> io::Result<Metadata> {
        let inode = self.inode(ino)?;
        let len = match &inode.body {
            Body::File { current, .. } => current.len() as u64,
            Body::Dir { .. } => 4096,
        };
        Ok(Metadata {
            kind: inode.kind(),
            len,
            mtime: inode.mtime,
            mode: inode.mode,
            nlink: inode.nlink,
            uid: self.owners.get(&ino).copied().unwrap_or(0),
            ino,
        })
    }

    /// Resizes a file's current content, keeping the capacity accounting right.
    fn resize_file(&mut self, ino: Ino, new_len: u64) -> io::Result<()> {
        let cap = self.faults.capacity;
        let used = self.used;
        let inode = self.inode_mut(ino)?;
        let Body::File {
            current, pending, ..
        } = &mut inode.body
        else {
            return Err(os_err(EISDIR));
        };
        let old = current.len() as u64;
        if new_len > old && cap.is_some_and(|c| used + (new_len - old) > c) {
            return Err(os_err(ENOSPC));
        }
        current.resize(new_len as usize, 0);
        pending.push(DataOp::SetLen(new_len));
        inode.mtime = sim_now();
        self.used = if new_len >= old {
            used + (new_len - old)
        } else {
            used - (old - new_len)
        };
        Ok(())
    }
}

/// An open file of a [`SimFs`].
pub struct SimFile {
    fs: SimFs,
    ino: Ino,
    generation: u64,
    pos: u64,
    readable: bool,
    writable: bool,
    append: bool,
    /// Whether this handle holds the file's lock.
    locked: bool,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("ino", &self.ino)
            .field("pos", &self.pos)
            .finish()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut st = self.fs.lock();
        if st.generation == self.generation {
            if self.locked {
                st.locks.remove(&self.ino);
            }
            if let Some(i) = st.inodes.get_mut(&self.ino) {
                i.open = i.open.saturating_sub(1);
            }
            st.release_if_unused(self.ino);
        }
    }
}

impl SimFile {
    /// The filesystem state, if this handle survived every crash so far.
    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.fs.lock();
        if st.generation != self.generation {
            return Err(os_err(EBADF));
        }
        Ok(st)
    }

    async fn sync(&mut self) -> io::Result<()> {
        let delay = self.live()?.sync_delay();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut st = self.live()?;
        st.mutation()?;
        st.stats.file_syncs += 1;
        let result = st.check_sync_fault();
        let ino = self.ino;
        st.record(format_args!("fsync ino={ino} {result:?}"));
        result?;
        let inode = st.inode_mut(ino)?;
        if let Body::File {
            current,
            durable,
            pending,
        } = &mut inode.body
        {
            durable.clone_from(current);
            pending.clear();
        }
        Ok(())
    }
}

impl FsFile for SimFile {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.readable {
            return Err(os_err(EBADF));
        }
        let st = self.live()?;
        let Body::File { current, .. } = &st.inode(self.ino)?.body else {
            return Err(os_err(EISDIR));
        };
        let start = (self.pos as usize).min(current.len());
        let n = buf.len().min(current.len() - start);
        buf[..n].copy_from_slice(&current[start..start + n]);
        drop(st);
        self.pos += n as u64;
        Ok(n)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if !self.writable {
            return Err(os_err(EBADF));
        }
        let mut st = self.live()?;
        st.mutation()?;
        st.stats.writes += 1;
        let rate = st.faults.write_error_rate;
        if rate > 0.0 && st.rng.random_bool(rate.min(1.0)) {
            let ino = self.ino;
            st.record(format_args!("write ino={ino} EIO"));
            return Err(os_err(EIO));
        }
        let cap = st.faults.capacity;
        let used = st.used;
        let ino = self.ino;
        let inode = st.inode_mut(ino)?;
        let Body::File {
            current, pending, ..
        } = &mut inode.body
        else {
            return Err(os_err(EISDIR));
        };
        let offset = if self.append {
            current.len() as u64
        } else {
            self.pos
        };
        let end = offset + buf.len() as u64;
        let growth = end.saturating_sub(current.len() as u64);
        if growth > 0 && cap.is_some_and(|c| used + growth > c) {
            st.record(format_args!("write ino={ino} ENOSPC"));
            return Err(os_err(ENOSPC));
        }
        if current.len() < end as usize {
            current.resize(end as usize, 0);
        }
        current[offset as usize..end as usize].copy_from_slice(buf);
        if !buf.is_empty() {
            pending.push(DataOp::Write {
                offset,
                data: buf.to_vec(),
            });
        }
        inode.mtime = sim_now();
        st.used += growth;
        let len = buf.len();
        st.record(format_args!("write ino={ino} off={offset} len={len}"));
        drop(st);
        self.pos = end;
        Ok(())
    }

    async fn seek(&mut self, pos: u64) -> io::Result<()> {
        drop(self.live()?);
        self.pos = pos;
        Ok(())
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(os_err(EINVAL));
        }
        let mut st = self.live()?;
        st.mutation()?;
        st.resize_file(self.ino, len)?;
        let ino = self.ino;
        st.record(format_args!("set_len ino={ino} len={len}"));
        Ok(())
    }

    async fn sync_all(&mut self) -> io::Result<()> {
        self.sync().await
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        self.sync().await
    }

    async fn metadata(&self) -> io::Result<Metadata> {
        self.live()?.metadata_of(self.ino)
    }

    async fn try_lock(&mut self) -> io::Result<bool> {
        let mut st = self.live()?;
        if self.locked {
            return Ok(true);
        }
        if !st.locks.insert(self.ino) {
            return Ok(false);
        }
        drop(st);
        self.locked = true;
        Ok(true)
    }

    /// One process per host and one kind of lock: a mailbox lock is the
    /// same lock as `try_lock`'s.
    async fn try_lock_mailbox(&mut self) -> io::Result<bool> {
        self.try_lock().await
    }
}

impl Fs for SimFs {
    type File = SimFile;

    /// The simulation runs one process per host, which the queue wakes
    /// in-process; there is no other process to wake.
    async fn pull_trigger(&self, _path: &Path) {}

    async fn open(&self, path: &Path, opts: &OpenOptions) -> io::Result<SimFile> {
        let mut st = self.lock();
        if opts.write || opts.append || opts.create || opts.create_new {
            st.mutation()?;
        }
        let (dir, name) = st.resolve_parent(path)?;
        let ino = match st.dir_lookup(dir, &name) {
            Some(ino) => {
                if opts.create_new {
                    return Err(os_err(EEXIST));
                }
                if st.inode(ino)?.kind() == FileKind::Dir && (opts.write || opts.append) {
                    return Err(os_err(EISDIR));
                }
                if opts.truncate && opts.write && st.metadata_of(ino)?.len > 0 {
                    st.resize_file(ino, 0)?;
                }
                ino
            }
            None if opts.create || opts.create_new => {
                let ino = st.alloc(Inode {
                    mode: opts.mode & 0o7777,
                    mtime: sim_now(),
                    nlink: 1,
                    open: 0,
                    body: Body::File {
                        current: Vec::new(),
                        durable: Vec::new(),
                        pending: Vec::new(),
                    },
                });
                st.change_names(vec![(dir, name, Some(ino))]);
                ino
            }
            None => return Err(os_err(ENOENT)),
        };
        let generation = st.generation;
        st.inode_mut(ino)?.open += 1;
        st.record(format_args!("open {} ino={ino}", path.display()));
        Ok(SimFile {
            fs: self.clone(),
            ino,
            generation,
            pos: 0,
            readable: opts.read,
            writable: opts.write || opts.append,
            append: opts.append,
            locked: false,
        })
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let delay = self.lock().sync_delay();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut st = self.lock();
        st.mutation()?;
        let ino = st.resolve(path)?;
        if st.inode(ino)?.kind() != FileKind::Dir {
            return Err(os_err(ENOTDIR));
        }
        st.stats.dir_syncs += 1;
        let result = st.check_sync_fault();
        st.record(format_args!("fsync dir {} {result:?}", path.display()));
        result?;
        st.commit_dir(ino);
        Ok(())
    }

    async fn link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let ino = st.resolve(src)?;
        if st.inode(ino)?.kind() == FileKind::Dir {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let (dir, name) = st.resolve_parent(dst)?;
        if st.dir_lookup(dir, &name).is_some() {
            return Err(os_err(EEXIST));
        }
        st.inode_mut(ino)?.nlink += 1;
        st.change_names(vec![(dir, name, Some(ino))]);
        st.record(format_args!("link {} {}", src.display(), dst.display()));
        Ok(())
    }

    async fn rename(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let (sdir, sname) = st.resolve_parent(src)?;
        let ino = st.dir_lookup(sdir, &sname).ok_or_else(|| os_err(ENOENT))?;
        let (ddir, dname) = st.resolve_parent(dst)?;
        let src_kind = st.inode(ino)?.kind();
        if src_kind == FileKind::Dir {
            let s = State::components(src)?;
            let d = State::components(dst)?;
            if d.len() > s.len() && d[..s.len()] == s[..] {
                return Err(os_err(EINVAL));
            }
        }
        if let Some(old) = st.dir_lookup(ddir, &dname) {
            if old == ino {
                return Ok(());
            }
            match (src_kind, &st.inode(old)?.body) {
                (FileKind::Dir, Body::Dir { current, .. }) if !current.is_empty() => {
                    return Err(os_err(ENOTEMPTY));
                }
                (FileKind::Dir, Body::File { .. }) => return Err(os_err(ENOTDIR)),
                (_, Body::Dir { .. }) if src_kind != FileKind::Dir => return Err(os_err(EISDIR)),
                _ => {}
            }
            st.unref(old);
        }
        st.change_names(vec![(sdir, sname, None), (ddir, dname, Some(ino))]);
        st.record(format_args!("rename {} {}", src.display(), dst.display()));
        Ok(())
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let (dir, name) = st.resolve_parent(path)?;
        let ino = st.dir_lookup(dir, &name).ok_or_else(|| os_err(ENOENT))?;
        if st.inode(ino)?.kind() == FileKind::Dir {
            return Err(os_err(EISDIR));
        }
        st.unref(ino);
        st.change_names(vec![(dir, name, None)]);
        st.record(format_args!("unlink {}", path.display()));
        Ok(())
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let (dir, name) = st.resolve_parent(path)?;
        if st.dir_lookup(dir, &name).is_some() {
            return Err(os_err(EEXIST));
        }
        let ino = st.alloc(Inode {
            mode: mode & 0o7777,
            mtime: sim_now(),
            nlink: 2,
            open: 0,
            body: Body::Dir {
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        });
        st.change_names(vec![(dir, name, Some(ino))]);
        st.record(format_args!("mkdir {}", path.display()));
        Ok(())
    }

    async fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let (dir, name) = st.resolve_parent(path)?;
        let ino = st.dir_lookup(dir, &name).ok_or_else(|| os_err(ENOENT))?;
        match &st.inode(ino)?.body {
            Body::Dir { current, .. } if !current.is_empty() => return Err(os_err(ENOTEMPTY)),
            Body::Dir { .. } => {}
            Body::File { .. } => return Err(os_err(ENOTDIR)),
        }
        st.change_names(vec![(dir, name, None)]);
        st.record(format_args!("rmdir {}", path.display()));
        Ok(())
    }

    async fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let st = self.lock();
        let ino = st.resolve(path)?;
        let Body::Dir { current, .. } = &st.inode(ino)?.body else {
            return Err(os_err(ENOTDIR));
        };
        // BTreeMap order: deterministic, as the simulation requires.
        Ok(current
            .iter()
            .map(|(name, child)| DirEntry {
                name: name.clone(),
                kind: st
                    .inodes
                    .get(child)
                    .map(Inode::kind)
                    .unwrap_or(FileKind::Other),
            })
            .collect())
    }

    async fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let st = self.lock();
        let ino = st.resolve(path)?;
        st.metadata_of(ino)
    }

    async fn set_permissions(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let ino = st.resolve(path)?;
        st.inode_mut(ino)?.mode = mode & 0o7777;
        Ok(())
    }
}
