//! Recovery at start: finish or undo whatever a crash interrupted, never guess.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::layout::{SPLIT, id_of};
use super::{MsgId, Queue, QueueError};
use crate::env::{Clock, Env, Fs, FsFile, OpenOptions};

/// A temporary this old is abandoned even where locks do not work (qmail
/// leaves `tmp/` files alone for 36 hours).
const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

/// What [`Queue::recover`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Uncommitted temporaries removed from `tmp/`.
    pub removed_tmp: usize,
    /// Temporaries left in `tmp/` because an injector is still writing them.
    pub live_tmp: usize,
    /// Committed messages waiting in `todo/` (the scheduler takes them in).
    pub todo: usize,
    /// Old `todo/` names of messages already in `mess/`, removed.
    pub stale_todo: usize,
    /// Messages being delivered.
    pub active: usize,
    /// Messages whose removal was interrupted, now finished.
    pub finished_removals: usize,
    /// State or bounce files that belonged to no message, removed.
    pub orphans_removed: usize,
}

impl<E: Env> Queue<E> {
    /// Brings the queue to a consistent state after a crash. Idempotent: a
    /// crash during recovery is recovered by running it again. Run it before
    /// anything else uses the queue in this process.
    pub async fn recover(&self) -> Result<RecoveryReport, QueueError> {
        self.create().await?;
        let fs = self.env.fs();
        let l = &self.layout;
        let mut report = RecoveryReport::default();

        // 1. tmp/ holds injections that never reached their commit point,
        //    and those an injector in another process is writing now: a live
        //    injector holds the lock on its file, so only unlocked ones go.
        for e in fs.read_dir(&l.tmp_dir()).await? {
            let path = l.tmp_dir().join(&e.name);
            // The lock is held until the name is gone (see tmp_abandoned).
            if let Some(_held) = self.tmp_abandoned(&path).await? {
                fs.remove_file(&path).await?;
                report.removed_tmp += 1;
            } else {
                report.live_tmp += 1;
            }
        }
        if report.removed_tmp > 0 {
            fs.sync_dir(&l.tmp_dir()).await?;
        }

        // 2. todo/ is committed work: left for the scheduler's intake. A
        //    name in both todo/ and mess/ is one file (ids are inode numbers)
        //    whose rename into mess/ was made durable but the removal of its
        //    old name was not (a filesystem without a journal may do that):
        //    the old name goes, or intake would start the message over.
        let mut todo = self.list_todo().await?;
        let mut stale = false;
        for &id in &todo {
            if fs.exists(&l.mess(id)).await {
                fs.remove_file(&l.todo(id)).await?;
                report.stale_todo += 1;
                stale = true;
            }
        }
        if stale {
            fs.sync_dir(&l.todo_dir()).await?;
            todo = self.list_todo().await?;
        }
        report.todo = todo.len();

        // 3. mess/: a message with no state files and no pending bounce had
        //    every recipient done and was being removed: finish that.
        let active = self.list_active().await?;
        for &id in &active {
            let st = self.load(id).await?;
            if st.local.is_empty() && st.remote.is_empty() && !st.bounce_pending {
                self.remove_files(id).await?;
                report.finished_removals += 1;
            } else {
                report.active += 1;
            }
        }

        // 4. State files belong to messages in mess/: one beside a message
        //    still in todo/ is left by a write-down that a crash cut before
        //    its link into mess/ (the message is taken in afresh and needs
        //    none). Bounce files belong to messages in todo/ (a fresh
        //    message's recorded failure) or mess/. Anything else belongs to
        //    nothing.
        let in_mess = |id: MsgId| active.binary_search(&id).is_ok();
        let in_todo = |id: MsgId| todo.binary_search(&id).is_ok();
        for kind in ["local", "remote", "bounce"] {
            for n in 0..SPLIT {
                let dir = l.split_dir(kind, n);
                let mut removed = false;
                for e in fs.read_dir(&dir).await? {
                    let owned = |id: MsgId| in_mess(id) || (kind == "bounce" && in_todo(id));
                    let orphan = id_of(&e.name).is_none_or(|id| !owned(id));
                    if orphan {
                        fs.remove_file(&dir.join(&e.name)).await?;
                        report.orphans_removed += 1;
                        removed = true;
                    }
                }
                if removed {
                    fs.sync_dir(&dir).await?;
                }
            }
        }
        Ok(report)
    }
}

impl<E: Env> Queue<E> {
    /// Whether nobody writes the temporary at `path` any more: its lock is
    /// free (an injector holds it from creation to commit), or, where locks
    /// fail, it is older than qmail's 36 hours. A name gone already counts
    /// as not abandoned: there is nothing to remove. An abandoned file comes
    /// back open and locked, to be removed while the lock is held.
    async fn tmp_abandoned(&self, path: &Path) -> io::Result<Option<<E::Fs as Fs>::File>> {
        let fs = self.env.fs();
        let mut file = match fs.open(path, &OpenOptions::read()).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match file.try_lock().await {
            // Holding the lock while the name goes: an injector that opened
            // it just now fails its own lock, or finds the name gone, and
            // starts over under another name.
            Ok(free) => Ok(free.then_some(file)),
            Err(_) => {
                let m = file.metadata().await?;
                let age = self.env.clock().now().duration_since(m.mtime);
                Ok(age.is_ok_and(|a| a >= TMP_MAX_AGE).then_some(file))
            }
        }
    }
}
