//! One way for a test to put a message into a queue, as an injector does:
//! the body in pieces, then the envelope, with the process's own uid and
//! pid in the queue's header.

use qmail_core::deliver::{DeliveryJob, MessageRef, Outcome};
use qmail_core::env::Env;
use qmail_core::queue::{Channel, Envelope, MsgId, Queue, QueueError};

/// The size of the pieces a body is written in (SMTP's DATA arrives in
/// pieces too, so a crash can fall between two writes).
pub const PIECE: usize = 700;

/// Queues `body` for `envelope`; returns once the message is committed.
pub async fn inject<E: Env>(
    queue: &Queue<E>,
    envelope: &Envelope,
    body: &[u8],
) -> Result<MsgId, QueueError> {
    let mut inj = queue.begin().await?;
    for piece in body.chunks(PIECE) {
        inj.write(piece).await?;
    }
    let me = queue.env().identity();
    inj.commit(envelope, me.uid, me.pid).await
}

/// Queues `body` from `sender` to the local `recipient` and returns the job
/// the scheduler would hand the local delivery agent for it.
pub async fn local_job<E: Env>(
    queue: &Queue<E>,
    sender: &str,
    recipient: &str,
    body: &[u8],
) -> Result<DeliveryJob, QueueError> {
    let id = inject(queue, &envelope(sender, &[recipient]), body).await?;
    let (path, offset, len) = queue.message_location(id).await?;
    Ok(DeliveryJob::single(
        id,
        Channel::Local,
        sender,
        recipient,
        1,
        MessageRef { path, offset, len },
    ))
}

/// The one outcome of a one-recipient job.
pub fn only(mut outcomes: Vec<Outcome>) -> Outcome {
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}

/// An envelope from `sender` to `recipients`.
pub fn envelope(sender: &str, recipients: &[&str]) -> Envelope {
    Envelope {
        sender: sender.into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    }
}

/// `head`, then 3000 bytes of letters in lines of 60, then a newline: a
/// message spanning several 512-byte blocks, so a torn write shows.
pub fn text_after(head: &[u8]) -> Vec<u8> {
    let mut m = head.to_vec();
    m.extend((0..3000u32).map(|i| {
        if i % 61 == 60 {
            b'\n'
        } else {
            b'a' + (i % 26) as u8
        }
    }));
    m.push(b'\n');
    m
}
