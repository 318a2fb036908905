//! The async driver of a [`ClientSession`]: reads replies from the
//! connection, writes what the session says, streams the message when it
//! says so. Every read and write is bounded by `timeoutremote`.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::{ClientSession, Final, Report, SessionEnd, Step};
use super::data::DataEncoder;
use super::reply::ReplyReader;
use crate::env::FsFile;

/// The message's bytes, read a chunk at a time (a queue file's range, or
/// bytes in memory for tests).
pub trait MessageReader: Send {
    /// Reads up to `buf.len()` bytes; 0 at the end of the message.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// `remaining` bytes of an open file from its current position.
pub struct FileSlice<F> {
    pub file: F,
    pub remaining: u64,
}

impl<F: FsFile> MessageReader for FileSlice<F> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want]).await?;
        if n == 0 {
            // The queue file is shorter than its header says.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

impl MessageReader for &[u8] {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len());
        buf[..n].copy_from_slice(&self[..n]);
        *self = &self[n..];
        Ok(n)
    }
}

/// Message bytes read per chunk.
const CHUNK: usize = 64 * 1024;

/// Runs `session` over `stream` to its end.
pub async fn run_session<S, M>(
    mut stream: S,
    mut session: ClientSession,
    mut message: M,
    timeout: Duration,
) -> SessionEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: MessageReader,
{
    let mut reader = ReplyReader::new();
    let mut replies = VecDeque::new();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    'session: while session.end().is_none() {
        // The next reply, reading as much as it takes.
        let reply = loop {
            if let Some(r) = replies.pop_front() {
                break r;
            }
            let mut got = Vec::new();
            match tokio::time::timeout(timeout, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => reader.feed(&buf[..n], &mut got),
                // Closed, failed or silent past the timeout.
                _ => {
                    session.dropped();
                    break 'session;
                }
            }
            replies.extend(got);
        };
        let steps = session.reply(reply);
        for step in steps {
            let done = match step {
                Step::Send(bytes) => {
                    out.extend_from_slice(&bytes);
                    Ok(false)
                }
                Step::SendMessage => {
                    match send_message(&mut stream, &mut out, &mut message, timeout).await {
                        Ok(()) => {
                            session.message_sent();
                            Ok(false)
                        }
                        Err(SendError::Net) => Err(()),
                        Err(SendError::Read(e)) => {
                            // The connection is mid-DATA: closing it without
                            // the final dot makes the server drop the message.
                            let _ = stream.shutdown().await;
                            return unreadable(&session, &e);
                        }
                    }
                }
                Step::Close => {
                    let _ = write(&mut stream, &mut out, timeout).await;
                    let _ = tokio::time::timeout(timeout, stream.shutdown()).await;
                    Ok(true)
                }
            };
            match done {
                Ok(true) => break 'session,
                Ok(false) => {}
                Err(()) => {
                    session.dropped();
                    break 'session;
                }
            }
        }
        if write(&mut stream, &mut out, timeout).await.is_err() {
            session.dropped();
            break;
        }
    }
    session.take_end().unwrap_or_else(|| {
        SessionEnd::NextHost("Connected but the session ended early. (#4.4.2)\n".into())
    })
}

fn unreadable(session: &ClientSession, e: &io::Error) -> SessionEnd {
    tracing::warn!("unable to read message: {e}");
    SessionEnd::Done(Report::all(
        session.recipient_count(),
        Final::Temporary("Unable to read message. (#4.3.0)\n".into()),
    ))
}

enum SendError {
    Net,
    Read(io::Error),
}

async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), ()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = tokio::time::timeout(timeout, async {
        stream.write_all(out).await?;
        stream.flush().await
    })
    .await;
    out.clear();
    match r {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Streams the message as DATA carries it, final dot included.
async fn send_message<S: AsyncWrite + Unpin, M: MessageReader>(
    stream: &mut S,
    out: &mut Vec<u8>,
    message: &mut M,
    timeout: Duration,
) -> Result<(), SendError> {
    write(stream, out, timeout)
        .await
        .map_err(|()| SendError::Net)?;
    let mut enc = DataEncoder::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = message.read(&mut chunk).await.map_err(SendError::Read)?;
        if n == 0 {
            break;
        }
        enc.encode(&chunk[..n], out);
        write(stream, out, timeout)
            .await
            .map_err(|()| SendError::Net)?;
    }
    enc.finish(out);
    write(stream, out, timeout)
        .await
        .map_err(|()| SendError::Net)
}
