//! Forwarding: a new message, the Delivered-To line on top of the original,
//! submitted to the queue (or the `$QMAILQUEUE` program) with the
//! forwarding envelope sender.

use std::path::Path;

use crate::env::Env;
use crate::queue::{ByteSource, Envelope, InvokedFrom, QqExit, Queue, Submission, Submitter};

/// A forwarded copy to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest<'a> {
    /// The Delivered-To line (with its newline) to put above the message.
    pub dtline: &'a str,
    /// The envelope sender of the copy (`NEWSENDER`, or `SENDER` for
    /// condredirect).
    pub sender: &'a str,
    pub recipients: &'a [String],
    /// Who queues it, for the queue's Received line.
    pub invoked: InvokedFrom,
    /// The uid recorded in the queue.
    pub uid: u32,
}

/// Why a forward failed, in qmail-local's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardError {
    Temporary(String),
    Permanent(String),
}

impl ForwardError {
    fn from_exit(e: QqExit) -> ForwardError {
        let text = format!("Unable to forward message: {}.", e.text());
        if e.is_permanent() {
            ForwardError::Permanent(text)
        } else {
            ForwardError::Temporary(text)
        }
    }

    pub fn text(&self) -> &str {
        match self {
            ForwardError::Temporary(t) | ForwardError::Permanent(t) => t,
        }
    }
}

/// Submits the copy; returns the `qp` to report (the committing process).
/// A failed read of the original commits nothing.
pub async fn forward<E: Env, S: ByteSource>(
    queue: &Queue<E>,
    queue_program: Option<&Path>,
    req: &ForwardRequest<'_>,
    source: &mut S,
) -> Result<u32, ForwardError> {
    let by = Submitter {
        invoked: req.invoked,
        uid: req.uid,
    };
    let mut sub = Submission::open(queue, queue_program, by).await;
    sub.put(req.dtline.as_bytes()).await;
    sub.copy_from(source).await;
    let envelope = Envelope {
        sender: req.sender.to_string(),
        recipients: req.recipients.to_vec(),
    };
    sub.close(&envelope)
        .await
        .map(|c| c.qp)
        .map_err(ForwardError::from_exit)
}
