//! The mail queue: durable injection, per-recipient checkpoints, removal and
//! recovery. `docs/queue.md` documents the on-disk format and the exact order
//! of writes and syncs; this module is its implementation.
//!
//! Life of a message:
//! 1. **Injection** ([`Queue::begin`], [`Injection::commit`]): the message is
//!    streamed into `tmp/ID` (no reader looks there), the envelope appended and
//!    the header written, the file synced, renamed to `todo/ID` and `todo/`
//!    synced (shared between concurrent injections: group commit). Success is
//!    returned only after that sync: this is the commit point.
//! 2. **Intake** ([`Queue::take_in`]): the scheduler reads the envelope and
//!    routes the recipients, in memory only; the message is *fresh* and is
//!    delivered straight from `todo/ID`. A crash leaves it there, to be
//!    delivered again in full.
//! 3. **Writing down** ([`Queue::persist`], only for a message with work
//!    left after its first attempts): the recipients and their done marks go
//!    into `local/H/ID` and `remote/H/ID` state files (synced, directories
//!    synced), then `todo/ID` is linked to `mess/H/ID`, `mess/H` synced, the
//!    `todo/` name unlinked and `todo/` synced.
//! 4. **Delivery checkpoints** ([`Queue::mark_done`], written-down messages
//!    only): a recipient's record is flipped from `T` to `D` in place and the
//!    state file synced.
//! 5. **Removal** ([`Queue::remove`]): a fresh message loses its `todo/`
//!    name (made durable by the next shared sync of `todo/`); a written-down
//!    one its state files first, the message file last.
//!
//! [`Queue::recover`] finishes or undoes whatever a crash interrupted.
//!
//! Every injector (SMTP, forwards, bounces, qmail-queue, qmail-inject) goes
//! through one [`Submission`], to the queue or to a `$QMAILQUEUE` program;
//! [`QqExit`] holds qmail-queue's exit codes and what they mean.

mod error;
mod exit;
pub mod format;
mod group_sync;
mod inject;
mod layout;
mod lock;
mod received;
mod recover;
mod report;
mod source;
mod state;
mod submit;

pub use error::QueueError;
pub use exit::QqExit;
pub use format::{Envelope, EnvelopeReader, HEADER_LEN, MAX_ADDRESS, MessageHeader};
pub use group_sync::DirSyncs;
pub use inject::Injection;
pub use layout::{Layout, MsgId, SPLIT};
pub use lock::{LockError, SchedulerLock};
pub use received::{InvokedFrom, queue_received_line};
pub use recover::RecoveryReport;
pub use source::{ByteSource, CHUNK, MessageReader, ReadSource, SliceSource};
pub use state::{Channel, MessageState, Recipient};
pub use submit::{Committed, Submission, Submitter};

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::env::Env;
use group_sync::GroupSync;

/// A handle on one queue directory. Cheap to clone; clones share the group
/// commit of `todo/`.
#[derive(Clone)]
pub struct Queue<E: Env> {
    env: E,
    layout: Layout,
    todo_sync: Arc<GroupSync>,
    /// Woken after every commit through this handle or its clones: the
    /// scheduler's trigger for messages injected in this process.
    committed: Arc<Notify>,
}

impl<E: Env> Queue<E> {
    /// A queue rooted at `root` (normally `$QMAIL_HOME/queue`). The directories
    /// must exist: see [`Queue::create`].
    pub fn new(env: E, root: impl Into<PathBuf>) -> Self {
        let layout = Layout::new(root.into());
        Queue {
            todo_sync: Arc::new(GroupSync::new(layout.todo_dir())),
            committed: Arc::new(Notify::new()),
            env,
            layout,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn env(&self) -> &E {
        &self.env
    }

    /// The trigger: notified (one permit is stored if nobody waits) after
    /// each commit. Another process's commits reach it through
    /// [`Queue::notify_committed`], which its listener calls.
    pub fn committed(&self) -> &Notify {
        &self.committed
    }

    /// Says a message was committed by someone else (another process).
    pub fn notify_committed(&self) {
        self.committed.notify_one();
    }
}
