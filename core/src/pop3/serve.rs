//! The async driver of qmail-pop3d: lists the maildir, says `+OK`, then
//! runs [`Pop3d`] over a connection until QUIT, a close or a timeout,
//! streaming messages from their files in 64 KB blocks.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::env::{Env, Fs, FsFile, OpenOptions};

use super::command::LineReader;
use super::maildrop;
use super::pop3d::{MessageEncoder, NO_SUCH_MESSAGE, NOT_ALL_DELETED, OK, Pop3d, Pop3dStep};

/// qmail's POP3 programs wait this long for each read and write.
pub const TIMEOUT: Duration = Duration::from_secs(1200);

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// QUIT, with its plan applied.
    Quit,
    /// The client went away (or timed out): nothing changed.
    Closed,
    /// The maildir could not be listed; the client was told.
    NoMaildir,
}

async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    match tokio::time::timeout(timeout, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    }
}

/// Serves the maildir `maildir` over `stream`.
pub async fn serve_pop3d<E, S>(
    env: &E,
    maildir: &Path,
    mut stream: S,
    timeout: Duration,
) -> io::Result<SessionEnd>
where
    E: Env,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let messages = match maildrop::scan(env, maildir).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(maildir = %maildir.display(), error = %e, "qmail-pop3d: cannot list the maildir");
            send(
                &mut stream,
                b"-ERR unable to scan $HOME/Maildir\r\n",
                timeout,
            )
            .await?;
            return Ok(SessionEnd::NoMaildir);
        }
    };
    let mut session = Pop3d::new(messages);
    send(&mut stream, OK, timeout).await?;
    let mut lines = LineReader::default();
    let mut buf = vec![0u8; 4096];
    loop {
        let line = loop {
            if let Some(line) = lines.next_line() {
                break line;
            }
            let n = match tokio::time::timeout(timeout, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => return Ok(SessionEnd::Closed),
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(SessionEnd::Closed);
                }
                Ok(Err(e)) => return Err(e),
            };
            lines.push(&buf[..n]);
        };
        match session.on_line(line) {
            Pop3dStep::Reply(r) => send(&mut stream, &r, timeout).await?,
            Pop3dStep::Send { name, body_lines } => {
                send_message(env, &maildir.join(name), body_lines, &mut stream, timeout).await?;
            }
            Pop3dStep::Quit(plan) => {
                let reply = match maildrop::commit(env, maildir, &plan).await {
                    Ok(true) => OK,
                    Ok(false) => NOT_ALL_DELETED,
                    Err(e) => {
                        tracing::warn!(error = %e, "qmail-pop3d: cannot move messages to cur/");
                        b"-ERR unable to move messages to cur\r\n"
                    }
                };
                send(&mut stream, reply, timeout).await?;
                return Ok(SessionEnd::Quit);
            }
        }
    }
}

/// Blocks of the file read and encoded at a time.
const BLOCK: usize = 64 * 1024;

async fn send_message<E: Env, S: AsyncWrite + Unpin>(
    env: &E,
    path: &Path,
    body_lines: Option<u64>,
    stream: &mut S,
    timeout: Duration,
) -> io::Result<()> {
    let mut file = match env.fs().open(path, &OpenOptions::read()).await {
        Ok(f) => f,
        Err(_) => return send(stream, NO_SUCH_MESSAGE, timeout).await,
    };
    let mut encoder = MessageEncoder::new(body_lines);
    let mut out = OK.to_vec();
    let mut block = vec![0u8; BLOCK];
    while !encoder.done() {
        // The +OK has gone out (or is in `out`): a read error now can only
        // end the connection, so the client never takes a cut message for
        // a whole one.
        let n = file.read(&mut block).await?;
        if n == 0 {
            break;
        }
        encoder.push(&block[..n], &mut out);
        if out.len() >= BLOCK {
            send(stream, &out, timeout).await?;
            out.clear();
        }
    }
    encoder.finish(&mut out);
    send(stream, &out, timeout).await
}
