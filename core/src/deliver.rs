//! The interface between the scheduler and the delivery agents.
//!
//! The scheduler (qmail-send) decides *when* to try a recipient; a
//! [`Deliver`] implementation (qmail-local's or qmail-remote's job) tries it
//! once and reports the outcome in qmail's words. The scheduler makes the
//! outcome durable (a done mark, a recorded failure) before it moves on.

use std::future::Future;
use std::path::PathBuf;

use crate::queue::{Channel, MsgId};

/// Where the message's bytes are: `len` bytes at `offset` in `path` (a queue
/// file, which stays in place until every delivery of it has finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// One recipient of a [`DeliveryJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecipient {
    /// The recipient as routing rewrote it (a virtual domain's prefix added).
    pub address: String,
    /// The delivery number in the scheduler's log (`delivery N:`).
    pub number: u64,
}

/// One delivery attempt: one message to one or more recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryJob {
    pub id: MsgId,
    pub channel: Channel,
    /// The envelope sender (`""` for a bounce, `#@[]` for a double bounce).
    pub sender: String,
    /// Local: always exactly one. Remote: the recipients of this message at
    /// one domain that the scheduler grouped into one SMTP transaction.
    pub recipients: Vec<JobRecipient>,
    pub message: MessageRef,
}

impl DeliveryJob {
    /// A job for one recipient (every local job is one).
    pub fn single(
        id: MsgId,
        channel: Channel,
        sender: impl Into<String>,
        recipient: impl Into<String>,
        number: u64,
        message: MessageRef,
    ) -> Self {
        DeliveryJob {
            id,
            channel,
            sender: sender.into(),
            recipients: vec![JobRecipient {
                address: recipient.into(),
                number,
            }],
            message,
        }
    }
}

/// How an attempt ended. The text is the agent's report, one or more lines
/// separated by `\n` (qmail's log writes spaces as `_` and newlines as `/`;
/// a bounce quotes the lines as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: the recipient is done.
    Success(String),
    /// Try again later (qmail's exit 111 and the like).
    Deferral(String),
    /// Permanent failure: the recipient is bounced.
    Failure(String),
}

impl Outcome {
    pub fn text(&self) -> &str {
        match self {
            Outcome::Success(t) | Outcome::Deferral(t) | Outcome::Failure(t) => t,
        }
    }
}

/// A delivery agent for one channel.
pub trait Deliver: Clone + Send + Sync + 'static {
    /// Tries `job` once and reports one outcome per recipient, in the order
    /// of `job.recipients`. Must not report [`Outcome::Success`] for a
    /// recipient before its delivery is durable: the scheduler marks the
    /// recipient done on it.
    fn deliver(&self, job: DeliveryJob) -> impl Future<Output = Vec<Outcome>> + Send;
}
