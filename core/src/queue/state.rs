//! The scheduler's side of the queue: taking messages in, per-recipient
//! checkpoints, failure reports for bounces, and removal.

use std::io;
use std::path::{Path, PathBuf};

use super::format::{
    Envelope, HEADER_LEN, MessageHeader, bounce_whole_len, decode_bounce, decode_records,
    encode_bounce, encode_records,
};
use super::layout::{SPLIT, id_of, parent};
use super::{MsgId, Queue, QueueError};
use crate::env::{Env, Fs, FsFile, OpenOptions};

/// Which delivery channel a recipient belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    Local,
    Remote,
}

/// One recipient of a queued message and its durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    pub done: bool,
    /// Where its mark byte is in the state file.
    pub(crate) offset: u64,
}

/// Everything the queue knows about a message the scheduler took in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageState {
    pub id: MsgId,
    pub header: MessageHeader,
    pub sender: String,
    pub local: Vec<Recipient>,
    pub remote: Vec<Recipient>,
    /// Failures recorded for a bounce that has not been sent yet.
    pub bounce_pending: bool,
    /// Still in `todo/` with no state files: taken in by [`Queue::take_in`]
    /// and not yet written down by [`Queue::persist`]. Its done marks live
    /// only in memory; a crash leaves the message in `todo/`, and it is
    /// delivered again in full (a duplicate, never a loss).
    pub fresh: bool,
}

impl MessageState {
    pub fn recipients(&self, ch: Channel) -> &[Recipient] {
        match ch {
            Channel::Local => &self.local,
            Channel::Remote => &self.remote,
        }
    }

    /// Every recipient is done and no bounce waits: the message can go.
    pub fn finished(&self) -> bool {
        !self.bounce_pending && self.local.iter().chain(&self.remote).all(|r| r.done)
    }
}

fn corrupt(path: &Path, why: impl Into<String>) -> QueueError {
    QueueError::Corrupt {
        path: path.display().to_string(),
        why: why.into(),
    }
}

/// Reads a message file's header and envelope (not the message itself).
async fn read_head<F: Fs>(fs: &F, path: &Path) -> Result<(MessageHeader, Envelope), QueueError> {
    let mut f = fs.open(path, &OpenOptions::read()).await?;
    let mut head = vec![0u8; HEADER_LEN];
    read_exact(&mut f, &mut head)
        .await
        .map_err(|e| corrupt(path, e.to_string()))?;
    let header = MessageHeader::decode(&head).map_err(|w| corrupt(path, w))?;
    f.seek(HEADER_LEN as u64 + header.len).await?;
    let mut env = Vec::new();
    f.read_to_end(&mut env).await?;
    let envelope = Envelope::decode(&env).map_err(|e| corrupt(path, e.to_string()))?;
    Ok((header, envelope))
}

async fn read_exact<T: FsFile>(f: &mut T, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n = f.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file too short",
            ));
        }
        got += n;
    }
    Ok(())
}

/// Writes a whole file and syncs it (its directory is the caller's
/// business), never in place: the bytes go to `NAME.new`, are synced, and
/// the name is renamed over `path`. A state file rewritten in place could be
/// cut short by the truncation, and a crash after a failed write would then
/// leave a message in `mess/` whose recipients are gone, which reads as a
/// finished message. So `path` always holds either its old or its new
/// contents, both durable; a `.new` left by a crash is an orphan to
/// recovery (its name is not an id).
async fn write_synced<F: Fs>(fs: &F, path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let written = async {
        let mut f = fs
            .open(&tmp, &OpenOptions::create_truncate().with_mode(0o600))
            .await?;
        f.write_all(data).await?;
        f.sync_all().await?;
        fs.rename(&tmp, path).await
    }
    .await;
    if written.is_err() {
        let _ = fs.remove_file(&tmp).await;
    }
    written
}

/// Removes a file if it is there; says whether it was.
async fn remove_if_exists<F: Fs>(fs: &F, path: &Path) -> io::Result<bool> {
    match fs.remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The recipients a state file's bytes hold.
fn recipients(path: &Path, bytes: &[u8]) -> Result<Vec<Recipient>, QueueError> {
    Ok(decode_records(bytes)
        .map_err(|w| corrupt(path, w))?
        .into_iter()
        .map(|(offset, done, address)| Recipient {
            address,
            done,
            offset,
        })
        .collect())
}

/// Writes a channel's state file for `rcpts`, with their done marks
/// (synced, its name too), and returns them with their marks' offsets. With no recipients, a stale file from
/// an earlier intake with other routing is removed instead.
async fn write_state<F: Fs>(
    fs: &F,
    path: &Path,
    rcpts: &[Recipient],
) -> Result<Vec<Recipient>, QueueError> {
    if rcpts.is_empty() {
        if remove_if_exists(fs, path).await? {
            fs.sync_dir(parent(path)).await?;
        }
        return Ok(Vec::new());
    }
    let records = encode_records(rcpts.iter().map(|r| (r.address.as_str(), r.done)));
    write_synced(fs, path, &records).await?;
    // The name is durable before the rename into mess/ can be: a message in
    // mess/ without its state files would be taken for a finished one.
    fs.sync_dir(parent(path)).await?;
    recipients(path, &records)
}

async fn read_records<F: Fs>(fs: &F, path: &Path) -> Result<Vec<Recipient>, QueueError> {
    match fs.read_if_exists(path).await? {
        None => Ok(Vec::new()),
        Some(b) => recipients(path, &b),
    }
}

impl<E: Env> Queue<E> {
    /// Creates every queue directory (idempotent) and makes them durable.
    pub async fn create(&self) -> io::Result<()> {
        let fs = self.env.fs();
        let dirs = self.layout.all_dirs();
        for d in &dirs {
            fs.create_dir_all(d, 0o750).await?;
        }
        for d in dirs.iter().rev() {
            fs.sync_dir(d).await?;
        }
        // create_dir_all may have made ancestors too: their entries must last.
        for a in self.layout.root.ancestors().skip(1) {
            fs.sync_dir(a).await?;
        }
        Ok(())
    }

    async fn list_ids(&self, dir: &Path) -> io::Result<Vec<MsgId>> {
        let mut ids: Vec<MsgId> = match self.env.fs().read_dir(dir).await {
            Ok(entries) => entries.iter().filter_map(|e| id_of(&e.name)).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        ids.sort();
        Ok(ids)
    }

    /// Committed messages the scheduler has not taken in yet.
    pub async fn list_todo(&self) -> io::Result<Vec<MsgId>> {
        self.list_ids(&self.layout.todo_dir()).await
    }

    /// Messages the scheduler has taken in, in id order.
    pub async fn list_active(&self) -> io::Result<Vec<MsgId>> {
        let mut all = Vec::new();
        for n in 0..SPLIT {
            all.extend(self.list_ids(&self.layout.split_dir("mess", n)).await?);
        }
        all.sort();
        Ok(all)
    }

    /// Header and envelope of a message not yet taken in.
    pub async fn read_todo(&self, id: MsgId) -> Result<(MessageHeader, Envelope), QueueError> {
        read_head(self.env.fs(), &self.layout.todo(id)).await
    }

    /// Takes a committed message in, in memory only: reads its envelope and
    /// routes each recipient to local or remote as `route` says (which also
    /// gives the address to deliver to, rewritten by routing). Nothing is
    /// written: the message stays in `todo/`, where a crash leaves it to be
    /// taken in again, and its deliveries read it there. Most messages are
    /// delivered and removed without ever being written down; only what is
    /// left to do after the first attempts is ([`Queue::persist`]).
    pub async fn take_in(
        &self,
        id: MsgId,
        route: impl Fn(&str) -> (Channel, String),
    ) -> Result<MessageState, QueueError> {
        let (header, envelope) = self.read_todo(id).await?;
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for r in &envelope.recipients {
            let (ch, address) = route(r);
            let rcpt = Recipient {
                address,
                done: false,
                offset: 0,
            };
            match ch {
                Channel::Local => local.push(rcpt),
                Channel::Remote => remote.push(rcpt),
            }
        }
        Ok(MessageState {
            id,
            header,
            sender: envelope.sender,
            local,
            remote,
            // A bounce file beside a message still in todo/ is this very
            // message's (its inode is alive, so the id is not reused): a
            // crash came between recording a failure and sending the bounce.
            bounce_pending: self.env.fs().exists(&self.layout.bounce(id)).await,
            fresh: true,
        })
    }

    /// Writes down a fresh message's state: its recipients and their done
    /// marks go into state files (synced, their names too), then the message
    /// moves from `todo/` to `mess/` (link, sync, unlink, sync). Returns the
    /// state as written (no longer fresh). Safe to repeat after a crash or a
    /// failure: the state files are rewritten, and a link already made is
    /// this very file (ids are inode numbers).
    pub async fn persist(&self, state: &MessageState) -> Result<MessageState, QueueError> {
        let fs = self.env.fs();
        let l = &self.layout;
        let id = state.id;
        let local = write_state(fs, &l.local(id), &state.local).await?;
        let remote = write_state(fs, &l.remote(id), &state.remote).await?;
        // qmail's order, which holds without a journal too: the new name is
        // durable before the old one goes, and the old one's removal is
        // durable before anything acts on the message (else a crash could
        // bring the todo/ name back after the message was delivered and
        // removed). A crash in between leaves both names, which recovery
        // resolves by dropping the todo/ one.
        let mess = l.mess(id);
        match fs.link(&l.todo(id), &mess).await {
            Ok(()) => {}
            // An earlier attempt linked it and then failed: ids are inode
            // numbers, so the name is this very file.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // An earlier attempt got as far as the unlink.
            Err(e) if e.kind() == io::ErrorKind::NotFound && fs.exists(&mess).await => {}
            Err(e) => return Err(e.into()),
        }
        fs.sync_dir(parent(&mess)).await?;
        remove_if_exists(fs, &l.todo(id)).await?;
        self.todo_sync.sync(fs).await?;
        Ok(MessageState {
            local,
            remote,
            fresh: false,
            ..state.clone()
        })
    }

    /// Takes a committed message in and writes its state down at once
    /// ([`Queue::take_in`], then [`Queue::persist`]).
    pub async fn preprocess(
        &self,
        id: MsgId,
        route: impl Fn(&str) -> (Channel, String),
    ) -> Result<MessageState, QueueError> {
        let state = self.take_in(id, route).await?;
        self.persist(&state).await
    }

    /// The durable state of a message the scheduler took in.
    pub async fn load(&self, id: MsgId) -> Result<MessageState, QueueError> {
        let fs = self.env.fs();
        let (header, envelope) = read_head(fs, &self.layout.mess(id)).await?;
        Ok(MessageState {
            id,
            header,
            sender: envelope.sender,
            local: read_records(fs, &self.layout.local(id)).await?,
            remote: read_records(fs, &self.layout.remote(id)).await?,
            bounce_pending: fs.exists(&self.layout.bounce(id)).await,
            fresh: false,
        })
    }

    /// Where a queued message's bytes are: (file, offset, length). The file
    /// is `mess/` once taken in, `todo/` before.
    pub async fn message_location(&self, id: MsgId) -> Result<(PathBuf, u64, u64), QueueError> {
        let fs = self.env.fs();
        for path in [self.layout.mess(id), self.layout.todo(id)] {
            match fs.open(&path, &OpenOptions::read()).await {
                Ok(mut f) => {
                    let mut head = vec![0u8; HEADER_LEN];
                    read_exact(&mut f, &mut head)
                        .await
                        .map_err(|e| corrupt(&path, e.to_string()))?;
                    let h = MessageHeader::decode(&head).map_err(|w| corrupt(&path, w))?;
                    return Ok((path, HEADER_LEN as u64, h.len));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(QueueError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("message {id} is not in the queue"),
        )))
    }

    /// The message exactly as it will be delivered.
    pub async fn read_message(&self, id: MsgId) -> Result<Vec<u8>, QueueError> {
        let (path, off, len) = self.message_location(id).await?;
        let mut f = self.env.fs().open(&path, &OpenOptions::read()).await?;
        f.seek(off).await?;
        let mut buf = vec![0u8; len as usize];
        read_exact(&mut f, &mut buf)
            .await
            .map_err(|e| corrupt(&path, e.to_string()))?;
        Ok(buf)
    }

    /// Durably marks one recipient done. Call only after its delivery (or the
    /// bounce reporting its failure) is itself durable.
    pub async fn mark_done(
        &self,
        id: MsgId,
        ch: Channel,
        rcpt: &Recipient,
    ) -> Result<(), QueueError> {
        let path = match ch {
            Channel::Local => self.layout.local(id),
            Channel::Remote => self.layout.remote(id),
        };
        let mut f = self
            .env
            .fs()
            .open(&path, &OpenOptions::read_write())
            .await?;
        f.seek(rcpt.offset).await?;
        f.write_all(b"D").await?;
        f.sync_all().await?;
        Ok(())
    }

    /// Durably records a permanent failure for the bounce. Call before marking
    /// the recipient done, so a crash between the two repeats the attempt
    /// rather than forgetting the failure.
    pub async fn record_failure(
        &self,
        id: MsgId,
        rcpt: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        let fs = self.env.fs();
        let path = self.layout.bounce(id);
        let opts = OpenOptions {
            read: true,
            ..OpenOptions::append()
        };
        let mut f = fs.open(&path, &opts.with_mode(0o600)).await?;
        // Append after the last whole record: a torn one a crash left is
        // cut off, so the new record never joins its fragments.
        let mut old = Vec::new();
        f.read_to_end(&mut old).await?;
        let whole = bounce_whole_len(&old) as u64;
        if whole < old.len() as u64 {
            f.set_len(whole).await?;
        }
        f.write_all(&encode_bounce(rcpt, reason)).await?;
        if let Err(e) = f.sync_all().await {
            // The failed sync may have dropped the record while readers
            // still see it (fsyncgate): cut it off, so the retry appends it
            // where it belongs instead of after a hole of NULs on the disk.
            let _ = f.set_len(whole).await;
            return Err(e.into());
        }
        // Every time, not only when this call created the file: an earlier
        // call whose directory sync failed left a name that is visible but
        // not durable, and the done mark that follows must not outlive it.
        fs.sync_dir(parent(&path)).await?;
        Ok(())
    }

    /// The failures recorded for a message's bounce, in order.
    pub async fn failures(&self, id: MsgId) -> Result<Vec<(String, String)>, QueueError> {
        Ok(self
            .env
            .fs()
            .read_if_exists(&self.layout.bounce(id))
            .await?
            .map(|b| decode_bounce(&b))
            .unwrap_or_default())
    }

    /// Forgets the recorded failures once their bounce is committed.
    pub async fn bounce_sent(&self, id: MsgId) -> Result<(), QueueError> {
        let fs = self.env.fs();
        let path = self.layout.bounce(id);
        if remove_if_exists(fs, &path).await? {
            fs.sync_dir(parent(&path)).await?;
        }
        Ok(())
    }

    /// Removes a message whose recipients are all done and whose bounce (if
    /// any) was sent. Returns whether it was removed. The state files go
    /// first and the message file last, so a crash part-way leaves a message
    /// with no state files, which recovery recognises as finished.
    pub async fn remove_if_done(&self, id: MsgId) -> Result<bool, QueueError> {
        let state = self.load(id).await?;
        if !state.finished() {
            return Ok(false);
        }
        self.remove_files(id).await?;
        Ok(true)
    }

    /// Removes a finished message's files. No sync is needed: whichever of
    /// the removals a crash keeps, recovery finds either a message with no
    /// state files (finished), state files with no message (orphans), or
    /// the message with every recipient done, and finishes the removal.
    pub(crate) async fn remove_files(&self, id: MsgId) -> Result<(), QueueError> {
        let fs = self.env.fs();
        let l = &self.layout;
        for path in [l.local(id), l.remote(id), l.mess(id)] {
            remove_if_exists(fs, &path).await?;
        }
        Ok(())
    }

    /// Removes a finished message: its files, or for a fresh message its one
    /// name in `todo/`. A fresh message's removal must become durable, or a
    /// crash brings it back to be delivered again; it needs no sync of its
    /// own, though: the next injection's group sync of `todo/` covers it,
    /// and if none comes within [`REMOVAL_PATIENCE`] a background task syncs
    /// `todo/` (one sync for every removal of that while). A fresh message
    /// whose write-down failed part-way (`half_written`) may also have
    /// state files and a `mess/` name: those go too, after the `todo/`
    /// name (whichever a crash keeps, the message is delivered again or
    /// found finished, never lost).
    pub async fn remove(
        &self,
        id: MsgId,
        fresh: bool,
        half_written: bool,
    ) -> Result<(), QueueError> {
        if !fresh {
            return self.remove_files(id).await;
        }
        remove_if_exists(self.env.fs(), &self.layout.todo(id)).await?;
        if half_written {
            self.remove_files(id).await?;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            let fs = queue.env.fs();
            if let Err(e) = queue.todo_sync.sync_within(fs, REMOVAL_PATIENCE).await {
                tracing::warn!("unable to sync todo/ after removals: {e}");
            }
        });
        Ok(())
    }
}

/// How long a fresh message's removal from `todo/` may wait for a sync of
/// `todo/` that some injection makes anyway. A crash within this window
/// may deliver the message again (never lose it).
pub const REMOVAL_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);
