//! Recovery at start: finish or undo whatever a crash interrupted, never guess.

use super::layout::{SPLIT, id_of};
use super::{MsgId, Queue, QueueError};
use crate::env::{Env, Fs};

/// What [`Queue::recover`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Uncommitted temporaries removed from `tmp/`.
    pub removed_tmp: usize,
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

        // 1. tmp/ holds only injections that never reached their commit point.
        for e in fs.read_dir(&l.tmp_dir()).await? {
            fs.remove_file(&l.tmp_dir().join(&e.name)).await?;
            report.removed_tmp += 1;
        }
        if report.removed_tmp > 0 {
            fs.sync_dir(&l.tmp_dir()).await?;
        }

        // 2. todo/ is committed work: left for the scheduler's intake, which
        //    rewrites any state files an interrupted intake left behind. A
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

        // 4. State and bounce files of messages that are neither in todo/ nor
        //    in mess/ belong to nothing.
        let known =
            |id: MsgId| todo.binary_search(&id).is_ok() || active.binary_search(&id).is_ok();
        for kind in ["local", "remote", "bounce"] {
            for n in 0..SPLIT {
                let dir = l.split_dir(kind, n);
                let mut removed = false;
                for e in fs.read_dir(&dir).await? {
                    let orphan = id_of(&e.name).is_none_or(|id| !known(id));
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
