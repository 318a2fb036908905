use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How many subdirectories the long-lived queue directories are split into
/// (qmail's conf-split default), so that no directory grows without bound.
pub const SPLIT: u64 = 23;

/// A message's queue id: the inode number of its file, so unique among the
/// messages in the queue (qmail's own scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId(pub u64);

impl MsgId {
    /// The split subdirectory this message's long-lived files live in.
    pub fn split(self) -> u64 {
        self.0 % SPLIT
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for MsgId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(MsgId)
    }
}

/// Where everything lives under the queue root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
}

/// The split directories (each holds `0` .. `SPLIT-1`).
pub const SPLIT_DIRS: [&str; 4] = ["mess", "local", "remote", "bounce"];

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Layout { root }
    }
    /// Files being written; no reader looks here.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// Committed messages the scheduler has not taken in yet.
    pub fn todo_dir(&self) -> PathBuf {
        self.root.join("todo")
    }
    pub fn todo(&self, id: MsgId) -> PathBuf {
        self.todo_dir().join(id.to_string())
    }
    fn split_path(&self, kind: &str, id: MsgId) -> PathBuf {
        self.split_dir(kind, id.split()).join(id.to_string())
    }
    pub fn split_dir(&self, kind: &str, n: u64) -> PathBuf {
        self.root.join(kind).join(n.to_string())
    }
    /// The message file once the scheduler took it in.
    pub fn mess(&self, id: MsgId) -> PathBuf {
        self.split_path("mess", id)
    }
    /// Where a queued message's file is: `todo/ID` while it is fresh (taken
    /// in but not written down), `mess/N/ID` after.
    pub fn message(&self, id: MsgId, fresh: bool) -> PathBuf {
        if fresh { self.todo(id) } else { self.mess(id) }
    }
    pub fn local(&self, id: MsgId) -> PathBuf {
        self.split_path("local", id)
    }
    pub fn remote(&self, id: MsgId) -> PathBuf {
        self.split_path("remote", id)
    }
    /// Failure reports waiting to go out in a bounce.
    pub fn bounce(&self, id: MsgId) -> PathBuf {
        self.split_path("bounce", id)
    }
    /// qmail's `lock/`: the scheduler's lock and the trigger.
    pub fn lock_dir(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// Held by the one scheduler of this queue for its whole life.
    pub fn sendmutex(&self) -> PathBuf {
        self.lock_dir().join("sendmutex")
    }
    /// The named pipe every commit writes a byte to, waking the scheduler.
    pub fn trigger(&self) -> PathBuf {
        self.lock_dir().join("trigger")
    }
    /// Every directory of the queue, parents first.
    pub fn all_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.root.clone(), self.tmp_dir(), self.todo_dir()];
        for kind in SPLIT_DIRS {
            dirs.push(self.root.join(kind));
            for n in 0..SPLIT {
                dirs.push(self.split_dir(kind, n));
            }
        }
        dirs
    }
}

/// Parses a file name in a queue directory as a message id.
pub(crate) fn id_of(name: &str) -> Option<MsgId> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

pub(crate) fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(p)
}
