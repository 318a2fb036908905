//! Forwarding: a new message, the Delivered-To line on top of the original,
//! injected through the queue (or the `$QMAILQUEUE` program) with the
//! forwarding envelope sender.

use std::path::Path;

use super::message::{ByteSource, CHUNK};
use crate::date;
use crate::env::{Clock, Env, Exec, ExitCode, QueueProgram};
use crate::queue::{Envelope, Queue, QueueError, qq_text};
use crate::smtp::{InvokedFrom, queue_received_line};

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
    fn from_code(code: u8) -> ForwardError {
        let text = format!("Unable to forward message: {}.", qq_text(code));
        if (11..=40).contains(&code) {
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

/// Injects the copy; returns the `qp` to report (the queueing process).
pub async fn forward<E: Env, S: ByteSource>(
    queue: &Queue<E>,
    queue_program: Option<&Path>,
    req: &ForwardRequest<'_>,
    source: &mut S,
) -> Result<u32, ForwardError> {
    let env = queue.env();
    let envelope = Envelope {
        sender: req.sender.to_string(),
        recipients: req.recipients.to_vec(),
    };
    if let Some(program) = queue_program {
        return through_program(env, program, &envelope, req, source).await;
    }
    let pid = env.identity().pid;
    let received = queue_received_line(pid, req.invoked, &date::rfc822(env.clock().unix_secs()));
    let mut inj = queue
        .begin()
        .await
        .map_err(|e| ForwardError::from_code(e.exit_code()))?;
    let copied = async {
        inj.write(received.as_bytes()).await?;
        inj.write(req.dtline.as_bytes()).await?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = source
                .read_chunk(&mut buf)
                .await
                .map_err(QueueError::ReadInput)?;
            if n == 0 {
                return Ok::<(), QueueError>(());
            }
            inj.write(&buf[..n]).await?;
        }
    }
    .await;
    if let Err(e) = copied {
        inj.abort().await;
        return Err(ForwardError::from_code(e.exit_code()));
    }
    inj.commit(&envelope, req.uid, pid)
        .await
        .map_err(|e| ForwardError::from_code(e.exit_code()))?;
    Ok(pid)
}

async fn through_program<E: Env, S: ByteSource>(
    env: &E,
    program: &Path,
    envelope: &Envelope,
    req: &ForwardRequest<'_>,
    source: &mut S,
) -> Result<u32, ForwardError> {
    let mut p = env
        .exec()
        .spawn_queue(program, envelope.encode())
        .await
        .map_err(|e| {
            ForwardError::Temporary(format!(
                "Unable to forward message: unable to run {}: {e}.",
                program.display()
            ))
        })?;
    // A failed read must fail the forward (qmail_fail); a program that
    // stops reading early is judged by its exit code alone.
    let mut read_failed = false;
    if p.write(req.dtline.as_bytes()).await.is_ok() {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match source.read_chunk(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if p.write(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                Err(_) => {
                    read_failed = true;
                    break;
                }
            }
        }
    }
    let status = p.finish().await;
    match status {
        _ if read_failed => Err(ForwardError::from_code(54)),
        Ok(ExitCode::Exited(0)) => Ok(env.identity().pid),
        Ok(ExitCode::Exited(c)) => Err(ForwardError::from_code(u8::try_from(c).unwrap_or(81))),
        Ok(ExitCode::Signaled) | Err(_) => Err(ForwardError::from_code(81)),
    }
}
