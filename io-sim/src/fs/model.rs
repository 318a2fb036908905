//! The model: inodes, names, what is current and what is durable, and the
//! check of its bookkeeping.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use qmail_core::env::{FileKind, Metadata};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{FsFaults, FsStats, Journal, SnapEntry};
use crate::clock::sim_now;
use crate::trace::Trace;

pub(super) const ENOENT: i32 = 2;
pub(super) const EIO: i32 = 5;
pub(super) const EACCES: i32 = 13;
pub(super) const EBADF: i32 = 9;
pub(super) const EEXIST: i32 = 17;
pub(super) const ENOTDIR: i32 = 20;
pub(super) const EISDIR: i32 = 21;
pub(super) const EINVAL: i32 = 22;
pub(super) const ENOSPC: i32 = 28;
pub(super) const ENOTEMPTY: i32 = 39;

pub(super) fn os_err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

pub(super) type Ino = u64;
pub(super) const ROOT: Ino = 1;

/// Where an operation falls in the order of issue: a sync makes durable only
/// what was issued before it began.
pub(super) type Seq = u64;

#[derive(Debug, Clone)]
pub(super) enum DataOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl DataOp {
    /// Applies the operation to `bytes` (a file's durable image).
    pub(super) fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            DataOp::SetLen(len) => bytes.resize(*len as usize, 0),
            DataOp::Write { offset, data } => {
                let (start, end) = (*offset as usize, *offset as usize + data.len());
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(data);
            }
        }
    }

    /// The length a file of length `len` has after the operation.
    fn len_after(&self, len: u64) -> u64 {
        match self {
            DataOp::SetLen(l) => *l,
            DataOp::Write { offset, data } => len.max(offset + data.len() as u64),
        }
    }
}

#[derive(Debug)]
pub(super) enum Body {
    File {
        current: Vec<u8>,
        durable: Vec<u8>,
        pending: Vec<(Seq, DataOp)>,
        /// Failed syncs that dropped data since the last crash: if any did,
        /// `current` may hold bytes that neither `durable` nor `pending`
        /// will ever hold.
        drops: u64,
    },
    Dir {
        current: BTreeMap<String, Ino>,
        durable: BTreeMap<String, Ino>,
    },
}

#[derive(Debug)]
pub(super) struct Inode {
    pub(super) mode: u32,
    pub(super) mtime: SystemTime,
    pub(super) nlink: u64,
    /// Open handles; a file with no name and no handle no longer uses space.
    pub(super) open: u32,
    pub(super) body: Body,
}

impl Inode {
    pub(super) fn kind(&self) -> FileKind {
        match self.body {
            Body::File { .. } => FileKind::File,
            Body::Dir { .. } => FileKind::Dir,
        }
    }

    pub(super) fn new_dir(mode: u32) -> Inode {
        Inode {
            mode,
            mtime: sim_now(),
            nlink: 2,
            open: 0,
            body: Body::Dir {
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        }
    }
}

/// One name update: in `dir`, `name` now points at the inode, or is gone.
pub(super) type Effect = (Ino, String, Option<Ino>);

/// One pending change to the namespace: name updates issued together (a
/// rename's two), applied at once with a journal and one by one without.
#[derive(Debug, Clone)]
pub(super) struct NsOp {
    pub(super) seq: Seq,
    pub(super) effects: Vec<Effect>,
}

impl NsOp {
    pub(super) fn touches_dir(&self, dir: Ino) -> bool {
        self.effects.iter().any(|(d, _, _)| *d == dir)
    }
    pub(super) fn keys(&self) -> impl Iterator<Item = (Ino, &str)> {
        self.effects.iter().map(|(d, n, _)| (*d, n.as_str()))
    }
}

pub(crate) struct State {
    pub(super) inodes: BTreeMap<Ino, Inode>,
    pub(super) next_ino: Ino,
    /// The stamp the next pending operation gets.
    pub(super) next_seq: Seq,
    pub(super) pending: Vec<NsOp>,
    pub(super) journal: Journal,
    /// Bumped by every crash; handles from an earlier generation are dead.
    pub(super) generation: u64,
    pub(super) faults: FsFaults,
    pub(super) failing_syncs: u32,
    pub(super) rng: StdRng,
    /// Orders directory listings; apart from `rng` so that listing does not
    /// shift the fault draws.
    pub(super) order_rng: StdRng,
    /// After this many more mutations every operation fails (see `SimFs::halt_after`).
    pub(super) halt_in: Option<u64>,
    pub(super) used: u64,
    pub(super) stats: FsStats,
    pub(super) trace: Option<Trace>,
    /// Files locked (`FsFile::try_lock`) by a live handle.
    pub(super) locks: BTreeSet<Ino>,
    /// Owners set by `SimFs::set_owner` (everything else belongs to uid 0).
    pub(super) owners: BTreeMap<Ino, u32>,
    /// Directories in which no file may be created (`SimFs::deny_creation_in`).
    pub(super) no_creation: BTreeSet<Ino>,
    /// Debug builds check the bookkeeping after every `check_every`-th
    /// change (see `SimFs::check_bookkeeping_every`).
    pub(super) check_every: u64,
    /// Changes since the bookkeeping was last checked.
    pub(super) unchecked: u64,
}

impl State {
    pub(super) fn new(seed: u64) -> State {
        let mut inodes = BTreeMap::new();
        let mut root = Inode::new_dir(0o755);
        root.mtime = SystemTime::UNIX_EPOCH;
        inodes.insert(ROOT, root);
        State {
            inodes,
            next_ino: ROOT + 1,
            next_seq: 0,
            pending: Vec::new(),
            journal: Journal::default(),
            generation: 0,
            faults: FsFaults::default(),
            failing_syncs: 0,
            rng: StdRng::seed_from_u64(seed),
            order_rng: StdRng::seed_from_u64(seed ^ 0x0dd0_4de4),
            halt_in: None,
            used: 0,
            stats: FsStats::default(),
            trace: None,
            locks: BTreeSet::new(),
            owners: BTreeMap::new(),
            no_creation: BTreeSet::new(),
            check_every: 1,
            unchecked: 0,
        }
    }

    pub(super) fn record(&mut self, event: fmt::Arguments<'_>) {
        if let Some(t) = &self.trace {
            t.record("fs", event);
        }
    }

    /// Counts one mutating operation, or refuses it when halted.
    pub(super) fn mutation(&mut self) -> io::Result<()> {
        match &mut self.halt_in {
            Some(0) => return Err(io::Error::other("simulated power loss")),
            Some(n) => *n -= 1,
            None => {}
        }
        self.stats.mutations += 1;
        Ok(())
    }

    pub(super) fn seq(&mut self) -> Seq {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    pub(super) fn alloc(&mut self, inode: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, inode);
        ino
    }

    pub(super) fn inode(&self, ino: Ino) -> io::Result<&Inode> {
        self.inodes.get(&ino).ok_or_else(|| os_err(ENOENT))
    }

    pub(super) fn inode_mut(&mut self, ino: Ino) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(|| os_err(ENOENT))
    }

    pub(super) fn dir_lookup(&self, dir: Ino, name: &str) -> Option<Ino> {
        match &self.inodes.get(&dir)?.body {
            Body::Dir { current, .. } => current.get(name).copied(),
            Body::File { .. } => None,
        }
    }

    pub(super) fn components(path: &Path) -> io::Result<Vec<String>> {
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

    pub(super) fn resolve(&self, path: &Path) -> io::Result<Ino> {
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
    pub(super) fn resolve_parent(&self, path: &Path) -> io::Result<(Ino, String)> {
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

    pub(super) fn apply_effects_now(&mut self, effects: &[Effect]) {
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

    pub(super) fn apply_durable(&mut self, effects: &[Effect]) {
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
    pub(super) fn change_names(&mut self, effects: Vec<Effect>) {
        let now = sim_now();
        for (dir, _, _) in &effects {
            if let Some(d) = self.inodes.get_mut(dir) {
                d.mtime = now;
            }
        }
        self.apply_effects_now(&effects);
        let seq = self.seq();
        self.pending.push(NsOp { seq, effects });
    }

    /// Drops one name's reference to an inode.
    pub(super) fn unref(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.nlink = i.nlink.saturating_sub(1);
        }
        self.release_if_unused(ino);
    }

    /// A file with no name and no open handle frees its space. The inode stays:
    /// a crash may still bring back a name that was not durably removed.
    pub(super) fn release_if_unused(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get_mut(&ino)
            && i.nlink == 0
            && i.open == 0
            && let Body::File { current, .. } = &mut i.body
        {
            self.used -= current.len() as u64;
            current.clear();
        }
    }

    pub(super) fn walk(&self, ino: Ino, path: PathBuf, out: &mut BTreeMap<PathBuf, SnapEntry>) {
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

    pub(super) fn mkdir_all_durable(&mut self, path: &Path) -> io::Result<()> {
        let mut ino = ROOT;
        for name in Self::components(path)? {
            ino = match self.dir_lookup(ino, &name) {
                Some(child) => child,
                None => {
                    let child = self.alloc(Inode::new_dir(0o755));
                    let eff = [(ino, name, Some(child))];
                    self.apply_effects_now(&eff);
                    self.apply_durable(&eff);
                    child
                }
            };
        }
        Ok(())
    }

    pub(super) fn metadata_of(&self, ino: Ino) -> io::Result<Metadata> {
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
    pub(super) fn resize_file(&mut self, ino: Ino, new_len: u64) -> io::Result<()> {
        let cap = self.faults.capacity;
        let used = self.used;
        let seq = self.next_seq;
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
        pending.push((seq, DataOp::SetLen(new_len)));
        inode.mtime = sim_now();
        self.next_seq += 1;
        self.used = if new_len >= old {
            used + (new_len - old)
        } else {
            used - (old - new_len)
        };
        Ok(())
    }

    /// Checks the bookkeeping: space used, link counts, that every name and
    /// every pending operation points at an inode that exists, that pending
    /// operations are in issue order, and that replaying a file's pending
    /// operations on its durable image gives its current length. Returns the
    /// first slip found.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self.inodes.get(&ROOT).map(Inode::kind) {
            Some(FileKind::Dir) => {}
            _ => return Err("the root is not a directory".into()),
        }
        let mut links: BTreeMap<Ino, u64> = BTreeMap::new();
        let mut used = 0u64;
        for (&ino, inode) in &self.inodes {
            if ino >= self.next_ino {
                return Err(format!("inode {ino} not below next_ino {}", self.next_ino));
            }
            match &inode.body {
                Body::Dir { current, durable } => {
                    for (name, t) in current {
                        if !self.inodes.contains_key(t) {
                            return Err(format!("name {ino}/{name} points at no inode ({t})"));
                        }
                        *links.entry(*t).or_default() += 1;
                    }
                    for (name, t) in durable {
                        if !self.inodes.contains_key(t) {
                            return Err(format!(
                                "durable name {ino}/{name} points at no inode ({t})"
                            ));
                        }
                    }
                }
                Body::File {
                    current,
                    durable,
                    pending,
                    drops,
                } => {
                    used += current.len() as u64;
                    let mut last = None;
                    for (s, _) in pending {
                        if *s >= self.next_seq || last.is_some_and(|l| l >= *s) {
                            return Err(format!("inode {ino}: pending data out of order"));
                        }
                        last = Some(*s);
                    }
                    let released = inode.nlink == 0 && inode.open == 0;
                    if !released && *drops == 0 {
                        let len = pending
                            .iter()
                            .fold(durable.len() as u64, |l, (_, op)| op.len_after(l));
                        if len != current.len() as u64 {
                            return Err(format!(
                                "inode {ino}: durable {} plus pending gives {len}, current is {}",
                                durable.len(),
                                current.len()
                            ));
                        }
                    }
                    if released && !current.is_empty() {
                        return Err(format!("inode {ino}: unused but holds data"));
                    }
                }
            }
        }
        if used != self.used {
            return Err(format!("{used} bytes stored, {} counted", self.used));
        }
        for (&ino, inode) in &self.inodes {
            let names = links.get(&ino).copied().unwrap_or(0);
            match inode.body {
                Body::File { .. } if inode.nlink != names => {
                    return Err(format!(
                        "inode {ino}: nlink {} but {names} names",
                        inode.nlink
                    ));
                }
                Body::Dir { .. } if names > 1 => {
                    return Err(format!("directory {ino} has {names} names"));
                }
                _ => {}
            }
        }
        let mut last = None;
        for op in &self.pending {
            if op.seq >= self.next_seq || last.is_some_and(|l| l >= op.seq) {
                return Err(format!("name operation {} out of order", op.seq));
            }
            last = Some(op.seq);
            if op.effects.is_empty() {
                return Err(format!("name operation {} changes nothing", op.seq));
            }
            for (dir, name, target) in &op.effects {
                if !matches!(self.inodes.get(dir).map(Inode::kind), Some(FileKind::Dir)) {
                    return Err(format!("pending {dir}/{name}: no such directory"));
                }
                if let Some(t) = target
                    && !self.inodes.contains_key(t)
                {
                    return Err(format!("pending {dir}/{name} points at no inode ({t})"));
                }
            }
        }
        for ino in &self.locks {
            if !self.inodes.contains_key(ino) {
                return Err(format!("lock on missing inode {ino}"));
            }
        }
        Ok(())
    }
}
