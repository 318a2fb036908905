//! Injection: streaming a message into the queue and committing it.

use std::io;
use std::path::PathBuf;

use super::format::{Envelope, HEADER_LEN, MessageHeader};
use super::{MsgId, Queue, QueueError};
use crate::env::{Clock, Env, Fs, FsFile, OpenOptions, Plant, Rng};

/// A message being written. Nothing of it is visible to the scheduler until
/// [`Injection::commit`] returns. Its temporary file is locked while the
/// injection lives, so recovery never removes it from under a live writer.
/// Dropping it without committing leaves a temporary file that
/// [`Queue::recover`] removes; call [`Injection::abort`] to remove it at
/// once.
pub struct Injection<E: Env> {
    queue: Queue<E>,
    id: MsgId,
    /// The temporary file's path (a random name in `tmp/`).
    tmp: PathBuf,
    file: <E::Fs as Fs>::File,
    len: u64,
}

impl<E: Env> Queue<E> {
    /// Starts a new message: creates its temporary file and takes the file's
    /// inode number as the message id, as qmail does. A queued message keeps
    /// its inode alive, so no two queued messages can have the same id, and
    /// no other id check is needed (the queue must be on one filesystem).
    pub async fn begin(&self) -> Result<Injection<E>, QueueError> {
        let fs = self.env.fs();
        for _ in 0..100 {
            let tmp = self
                .layout
                .tmp_dir()
                .join(format!("{:016x}", self.env.rng().next_u64()));
            let mut file = match fs
                .open(&tmp, &OpenOptions::create_new().with_mode(0o600))
                .await
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(QueueError::Create(e)),
            };
            let started = async {
                let id = MsgId(file.metadata().await?.ino);
                // The lock tells recovery a live writer has the file. A
                // recovery that looked first (it holds the lock, or removed
                // the name before we locked) makes us start over elsewhere.
                let ours =
                    file.try_lock().await? && fs.metadata(&tmp).await.is_ok_and(|m| m.ino == id.0);
                if !ours {
                    return Ok(None);
                }
                file.write_all(&[b' '; HEADER_LEN]).await?;
                Ok::<_, io::Error>(Some(id))
            }
            .await;
            return match started {
                Ok(None) => continue,
                Ok(Some(id)) => Ok(Injection {
                    queue: self.clone(),
                    id,
                    tmp,
                    file,
                    len: 0,
                }),
                Err(e) => {
                    drop(file);
                    let _ = fs.remove_file(&tmp).await;
                    Err(QueueError::Write(e))
                }
            };
        }
        Err(QueueError::Create(io::Error::other(
            "no free temporary name after 100 tries",
        )))
    }
}

impl<E: Env> Injection<E> {
    pub fn id(&self) -> MsgId {
        self.id
    }

    /// Bytes of message written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends message bytes (memory use does not grow with the message).
    /// A failed write (disk full, I/O error) removes the temporary file at
    /// once, so nothing is left behind even if the caller just gives up.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), QueueError> {
        if let Err(e) = self.file.write_all(data).await {
            let fs = self.queue.env.fs();
            let _ = fs.remove_file(&self.tmp).await;
            return Err(QueueError::Write(e));
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// Makes the message durable and hands it to the scheduler. Returns only
    /// after the message and its envelope are on disk under `todo/`: the
    /// commit point. On error nothing is acknowledged and the temporary file
    /// is removed.
    pub async fn commit(
        mut self,
        envelope: &Envelope,
        uid: u32,
        qp: u32,
    ) -> Result<MsgId, QueueError> {
        let result = self.commit_inner(envelope, uid, qp).await;
        if result.is_err() {
            let fs = self.queue.env.fs();
            let _ = fs.remove_file(&self.tmp).await;
        }
        result
    }

    async fn commit_inner(
        &mut self,
        envelope: &Envelope,
        uid: u32,
        qp: u32,
    ) -> Result<MsgId, QueueError> {
        envelope.validate()?;
        let header = MessageHeader {
            len: self.len,
            birth: self.queue.env.clock().unix_secs(),
            uid,
            qp,
        };
        self.file
            .write_all(&envelope.encode())
            .await
            .map_err(QueueError::Write)?;
        self.file.seek(0).await.map_err(QueueError::Write)?;
        self.file
            .write_all(&header.encode())
            .await
            .map_err(QueueError::Write)?;
        if !self.queue.env.planted(Plant::AckBeforeSync) {
            self.file.sync_all().await.map_err(QueueError::Write)?;
        }
        let q = &self.queue;
        let fs = q.env.fs();
        let todo = q.layout.todo(self.id);
        fs.rename(&self.tmp, &todo)
            .await
            .map_err(QueueError::Create)?;
        let synced = if q.env.planted(Plant::SkipDirSync) {
            Ok(())
        } else {
            q.todo_sync.sync(fs).await
        };
        if let Err(e) = synced {
            // Not acknowledged: take the message back if we still can. (If the
            // removal is lost in a crash the message is delivered although
            // the sender was told it failed: a duplicate, never a loss.)
            let _ = fs.remove_file(&todo).await;
            return Err(QueueError::Write(e));
        }
        q.committed.notify_one();
        // Wake a scheduler in another process too, as qmail-queue does.
        fs.pull_trigger(&q.layout.trigger()).await;
        Ok(self.id)
    }

    /// Abandons the message and removes its temporary file.
    pub async fn abort(self) {
        let fs = self.queue.env.fs();
        let _ = fs.remove_file(&self.tmp).await;
    }
}
