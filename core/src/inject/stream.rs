//! Reading a message, completing it and handing it on: to the queue (or the
//! `$QMAILQUEUE` program) or, for `qmail-inject -n`, to a writer. Only the
//! header is held in memory; the body streams through.
//!
//! A message is refused whole or sent whole: a NUL byte found in the body
//! after queueing began aborts the submission, which commits nothing.

use std::io;
use std::path::Path;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::header::split_header;
use super::prepare::{Options, Stamp, prepare};
use super::settings::Settings;
use super::{InjectError, Prepared};
use crate::env::Env;
use crate::queue::ByteSource;
use crate::queue::{Envelope, InvokedFrom, Queue, Submission, Submitter};

/// Where the completed message goes.
pub enum Destination<'a, E: Env> {
    /// Into the queue, or to `program` (`$QMAILQUEUE`) if given.
    Queue {
        queue: &'a Queue<E>,
        program: Option<&'a Path>,
    },
    /// Printed, with a Return-Path line first (`qmail-inject -n`).
    Print(&'a mut (dyn AsyncWrite + Unpin + Send)),
}

/// Reads a message from `input`, completes it and sends it to `dest`.
/// Returns the envelope it used.
pub async fn inject<E: Env, S: ByteSource>(
    settings: &Settings,
    options: &Options,
    stamp: Stamp,
    mut input: S,
    dest: Destination<'_, E>,
) -> Result<Prepared, InjectError> {
    let (buf, consumed, eof, split) = read_header(&mut input).await?;
    let prepared = prepare(settings, options, stamp, &split)?;
    let mut body = Body {
        pending: buf,
        pos: consumed,
        input,
        eof,
        last: None,
        nul: false,
        done: false,
    };
    match dest {
        Destination::Queue { queue, program } => {
            if prepared.recipients.is_empty() {
                return Err(InjectError::NoRecipients);
            }
            let mut message = Prefixed {
                prefix: &prepared.header,
                pos: 0,
                body: &mut body,
            };
            let sent = submit(
                queue,
                program,
                &prepared.sender,
                &prepared.recipients,
                &mut message,
            )
            .await;
            if body.nul {
                return Err(InjectError::Nul);
            }
            sent?;
        }
        Destination::Print(out) => {
            out.write_all(&prepared.return_path_line())
                .await
                .map_err(InjectError::Write)?;
            out.write_all(&prepared.header)
                .await
                .map_err(InjectError::Write)?;
            let mut chunk = vec![0u8; crate::queue::CHUNK];
            loop {
                let n = match body.read_chunk(&mut chunk).await {
                    Ok(n) => n,
                    Err(_) if body.nul => return Err(InjectError::Nul),
                    Err(e) => return Err(InjectError::Read(e)),
                };
                if n == 0 {
                    break;
                }
                out.write_all(&chunk[..n])
                    .await
                    .map_err(InjectError::Write)?;
            }
            out.flush().await.map_err(InjectError::Write)?;
        }
    }
    Ok(prepared)
}

/// Reads until the end of the header is known. Returns what was read, how
/// much of it the header took, whether the input ended, and the header.
async fn read_header<S: ByteSource>(
    input: &mut S,
) -> Result<(Vec<u8>, usize, bool, super::header::SplitHeader), InjectError> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut eof = false;
    // Where to look for the next newline: no rescanning of a long line.
    let mut scanned = 0;
    loop {
        if (eof || buf[scanned..].contains(&b'\n'))
            && let Some(split) = split_header(&buf, eof)
        {
            if buf[..split.consumed].contains(&0) {
                return Err(InjectError::Nul);
            }
            let consumed = split.consumed;
            return Ok((buf, consumed, eof, split));
        }
        scanned = buf.len();
        let n = input
            .read_chunk(&mut chunk)
            .await
            .map_err(InjectError::Read)?;
        if n == 0 {
            eof = true;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The body: what was read past the header, then the rest of the input,
/// refusing NUL bytes and ending with a newline (a last line without one
/// gets it, as in qmail).
struct Body<S> {
    pending: Vec<u8>,
    pos: usize,
    input: S,
    eof: bool,
    last: Option<u8>,
    nul: bool,
    done: bool,
}

impl<S: ByteSource> ByteSource for Body<S> {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = if self.pos < self.pending.len() {
            let n = buf.len().min(self.pending.len() - self.pos);
            buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
            self.pos += n;
            n
        } else if self.eof {
            0
        } else {
            let n = self.input.read_chunk(buf).await?;
            if n == 0 {
                self.eof = true;
            }
            n
        };
        if n == 0 {
            self.done = true;
            if self.last.is_some_and(|c| c != b'\n') {
                buf[0] = b'\n';
                return Ok(1);
            }
            return Ok(0);
        }
        if buf[..n].contains(&0) {
            self.nul = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, "NUL byte"));
        }
        self.last = Some(buf[n - 1]);
        Ok(n)
    }
}

/// The new header, then the body.
struct Prefixed<'a, S> {
    prefix: &'a [u8],
    pos: usize,
    body: &'a mut Body<S>,
}

impl<S: ByteSource> ByteSource for Prefixed<'_, S> {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.pos);
            buf[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.body.read_chunk(buf).await
    }
}

/// Queues one message: the one place qmail-inject hands mail on. The
/// queue (or `$QMAILQUEUE`) adds the Received line; a failure commits
/// nothing.
async fn submit<E: Env, S: ByteSource>(
    queue: &Queue<E>,
    program: Option<&Path>,
    sender: &str,
    recipients: &[String],
    message: &mut S,
) -> Result<(), InjectError> {
    let uid = queue.env().identity().uid;
    let by = Submitter::me(queue.env(), InvokedFrom::Uid(uid));
    let mut sub = Submission::open(queue, program, by).await;
    sub.copy_from(message).await;
    let envelope = Envelope {
        sender: sender.to_string(),
        recipients: recipients.to_vec(),
    };
    sub.close(&envelope)
        .await
        .map(|_| ())
        .map_err(|e| InjectError::Queue {
            permanent: e.is_permanent(),
            text: e.text().trim_end_matches('.').to_string(),
        })
}
