//! One way into the queue, as every qmail program goes through `qmail.c`:
//! open a submission, put the message, close it with the envelope. It
//! writes to the queue itself or to a `$QMAILQUEUE` program with
//! qmail-queue's interface; either way the queue writes its own Received
//! line, the envelope leaves only after the whole message, and a
//! submission that ends early (a failed read, a dropped connection, an
//! abort) commits nothing.

use std::path::Path;

use super::exit::QqExit;
use super::received::{InvokedFrom, queue_received_line};
use super::source::{ByteSource, CHUNK};
use super::{Envelope, Injection, MsgId, Queue};
use crate::date;
use crate::env::{Clock, Env, Exec, ExitCode, QueueProgram};

/// Who submits: what the queue's Received line says and the uid the queue
/// records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitter {
    pub invoked: InvokedFrom,
    pub uid: u32,
}

impl Submitter {
    /// This process, as `how`.
    pub fn me<E: Env>(env: &E, invoked: InvokedFrom) -> Submitter {
        Submitter {
            invoked,
            uid: env.identity().uid,
        }
    }
}

/// A committed submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The committing process (qmail's `qp`): this one, or the
    /// `$QMAILQUEUE` program.
    pub qp: u32,
    /// The queue id, when this process committed to the queue itself.
    pub id: Option<MsgId>,
}

enum Target<E: Env> {
    Queue(Injection<E>),
    Program(<E::Exec as Exec>::QueueProgram),
    /// Nothing to write to any more: the submission has failed.
    Gone,
}

/// A message on its way into the queue. Failures are sticky and reported
/// by [`Submission::close`], as `qmail_close` reports them.
pub struct Submission<E: Env> {
    env: E,
    uid: u32,
    target: Target<E>,
    failed: Option<QqExit>,
}

impl<E: Env> Submission<E> {
    /// Opens a submission to `queue`, or to `program` when one is given.
    /// Never fails by itself: a failure to start is reported at close.
    pub async fn open(queue: &Queue<E>, program: Option<&Path>, by: Submitter) -> Self {
        let env = queue.env().clone();
        let (target, failed) = match program {
            None => match queue.begin().await {
                Ok(inj) => (Target::Queue(inj), None),
                Err(e) => (Target::Gone, Some(e.exit())),
            },
            Some(p) => match env.exec().spawn_queue(p).await {
                Ok(child) => (Target::Program(child), None),
                Err(_) => (Target::Gone, Some(QqExit::EXEC)),
            },
        };
        let mut s = Submission {
            env,
            uid: by.uid,
            target,
            failed,
        };
        if matches!(s.target, Target::Queue(_)) {
            // The queue writes its own line; a program writes its own.
            let line = queue_received_line(
                s.env.identity().pid,
                by.invoked,
                &date::rfc822(s.env.clock().unix_secs()),
            );
            s.put(line.as_bytes()).await;
        }
        s
    }

    /// Whether the submission has failed already (nothing more it is given
    /// will be committed).
    pub fn failed(&self) -> Option<QqExit> {
        self.failed
    }

    /// Appends message bytes.
    pub async fn put(&mut self, data: &[u8]) {
        let r = match &mut self.target {
            // A failed write removed the temporary file already.
            Target::Queue(inj) => inj.write(data).await.map_err(|e| e.exit()),
            // A program that stops reading is judged by its exit code; its
            // input is closed without an envelope either way.
            Target::Program(p) => p.write(data).await.map_err(|_| QqExit::WRITE),
            Target::Gone => Ok(()),
        };
        if let Err(code) = r {
            self.fail(code).await;
        }
    }

    /// Appends everything `source` holds. A failed read fails the
    /// submission (`qq read error`): a message cut short is never committed.
    pub async fn copy_from<S: ByteSource>(&mut self, source: &mut S) {
        let mut buf = vec![0u8; CHUNK];
        while self.failed.is_none() {
            match source.read_chunk(&mut buf).await {
                Ok(0) => return,
                Ok(n) => self.put(&buf[..n]).await,
                Err(_) => self.fail(QqExit::READ).await,
            }
        }
    }

    /// Marks the submission failed (qmail's `qmail_fail`) and lets go of
    /// its target at once: nothing is committed, and close reports `why`.
    pub async fn fail(&mut self, why: QqExit) {
        if self.failed.is_none() {
            self.failed = Some(why);
        }
        match std::mem::replace(&mut self.target, Target::Gone) {
            Target::Queue(inj) => inj.abort().await,
            Target::Program(p) => p.abort().await,
            Target::Gone => {}
        }
    }

    /// Abandons the message: nothing is committed.
    pub async fn abort(mut self) {
        self.fail(QqExit::READ).await;
    }

    /// Ends the message and commits it with `envelope`, returning only once
    /// it is durable (or the program said so by exiting 0).
    pub async fn close(self, envelope: &Envelope) -> Result<Committed, QqExit> {
        if let Some(code) = self.failed {
            return Err(code);
        }
        match self.target {
            Target::Queue(inj) => {
                let qp = self.env.identity().pid;
                match inj.commit(envelope, self.uid, qp).await {
                    Ok(id) => Ok(Committed { qp, id: Some(id) }),
                    Err(e) => Err(e.exit()),
                }
            }
            Target::Program(p) => {
                let qp = p.pid();
                match p.finish(envelope.encode()).await {
                    Ok(ExitCode::Exited(0)) => Ok(Committed { qp, id: None }),
                    Ok(ExitCode::Exited(c)) => Err(QqExit::Exited(u8::try_from(c).unwrap_or(81))),
                    Ok(ExitCode::Signaled) => Err(QqExit::Crashed),
                    Err(_) => Err(QqExit::WRITE),
                }
            }
            Target::Gone => Err(QqExit::BUG),
        }
    }
}
