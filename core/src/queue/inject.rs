//! Injection: streaming a message into the queue and committing it.

use std::io;

use super::format::{Envelope, HEADER_LEN, MessageHeader};
use super::{MsgId, Queue, QueueError};
use crate::env::{Clock, Env, Fs, FsFile, OpenOptions, Rng};

/// Ids are drawn from this range: short enough to read in a log line, large
/// enough that a random draw rarely meets a queued message.
const ID_SPACE: u64 = 1 << 40;

/// A message being written. Nothing of it is visible to the scheduler until
/// [`Injection::commit`] returns. Dropping it without committing leaves a
/// temporary file that [`Queue::recover`] removes; call [`Injection::abort`]
/// to remove it at once.
pub struct Injection<E: Env> {
    queue: Queue<E>,
    id: MsgId,
    file: <E::Fs as Fs>::File,
    len: u64,
}

impl<E: Env> Queue<E> {
    /// Starts a new message: allocates an id and creates its temporary file.
    pub async fn begin(&self) -> Result<Injection<E>, QueueError> {
        let fs = self.env.fs();
        for _ in 0..100 {
            let id = MsgId(1 + self.env.rng().below(ID_SPACE - 1));
            let tmp = self.layout.tmp(id);
            let mut file = match fs
                .open(&tmp, &OpenOptions::create_new().with_mode(0o600))
                .await
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(QueueError::Create(e)),
            };
            // An id may not be reused while a message with it is queued.
            if fs.exists(&self.layout.todo(id)).await || fs.exists(&self.layout.mess(id)).await {
                drop(file);
                let _ = fs.remove_file(&tmp).await;
                continue;
            }
            let placeholder = [b' '; HEADER_LEN];
            if let Err(e) = file.write_all(&placeholder).await {
                drop(file);
                let _ = fs.remove_file(&tmp).await;
                return Err(QueueError::Write(e));
            }
            return Ok(Injection {
                queue: self.clone(),
                id,
                file,
                len: 0,
            });
        }
        Err(QueueError::Create(io::Error::other(
            "no free queue id after 100 tries",
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
    pub async fn write(&mut self, data: &[u8]) -> Result<(), QueueError> {
        self.file.write_all(data).await.map_err(QueueError::Write)?;
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
            let _ = fs.remove_file(&self.queue.layout.tmp(self.id)).await;
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
        self.file.sync_all().await.map_err(QueueError::Write)?;
        let q = &self.queue;
        let fs = q.env.fs();
        let todo = q.layout.todo(self.id);
        fs.rename(&q.layout.tmp(self.id), &todo)
            .await
            .map_err(QueueError::Create)?;
        if let Err(e) = q.todo_sync.sync(fs).await {
            // Not acknowledged: take the message back if we still can. (If the
            // removal is lost in a crash the message is delivered although
            // the sender was told it failed: a duplicate, never a loss.)
            let _ = fs.remove_file(&todo).await;
            return Err(QueueError::Write(e));
        }
        Ok(self.id)
    }

    /// Abandons the message and removes its temporary file.
    pub async fn abort(self) {
        let fs = self.queue.env.fs();
        let _ = fs.remove_file(&self.queue.layout.tmp(self.id)).await;
    }
}
