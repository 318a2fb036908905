//! qmail-smtpd as a service: the async driver that runs an
//! [`SmtpSession`](crate::smtp::SmtpSession) over a connection and into the
//! queue, the listener that holds many connections in one process, and the
//! control files that configure it.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::control::{self, ControlError};
use crate::env::{Clock, Env, NetListener};
use crate::home::Home;
use crate::queue::{Envelope, InvokedFrom, QqExit, Queue, Submission, Submitter};
use crate::smtp::{Action, CommitOutcome, RcptHosts, RemoteInfo, SmtpConfig, SmtpSession};

/// qmail-smtpd's settings from the control files.
#[derive(Debug, Clone)]
pub struct SmtpdControl {
    pub session: SmtpConfig,
    /// `control/timeoutsmtpd`: seconds to wait for each read (default 1200).
    pub timeout: Duration,
    /// `control/concurrencyincoming`: connections served at once (ours; by
    /// default 100, tcpserver's own default is 40).
    pub max_connections: usize,
    /// `$QMAILQUEUE`: a program with qmail-queue's interface that takes each
    /// message instead of the queue (a filter, typically). Set by the caller.
    pub queue_program: Option<PathBuf>,
}

impl SmtpdControl {
    /// Reads `me`, `smtpgreeting`, `rcpthosts`, `morercpthosts`, `databytes`,
    /// `timeoutsmtpd` and `concurrencyincoming` with qmail's defaults.
    pub async fn load<E: Env>(env: &E, home: &Home) -> Result<Self, ControlError> {
        let fs = env.fs();
        let c = |name: &str| home.control_file(name);
        let me = control::read_line(fs, &c("me"))
            .await?
            .unwrap_or_else(|| env.identity().hostname.clone());
        let greeting = control::read_line(fs, &c("smtpgreeting"))
            .await?
            .unwrap_or_else(|| me.clone());
        // No rcpthosts means qmail relays for anyone; `qmail init` writes one,
        // and an empty list here refuses every recipient rather than relay.
        let mut hosts = control::read_list(fs, &c("rcpthosts"))
            .await?
            .unwrap_or_default();
        hosts.extend(
            control::read_list(fs, &c("morercpthosts"))
                .await?
                .unwrap_or_default(),
        );
        let mut session = SmtpConfig::new(&me);
        session.greeting = greeting;
        session.rcpthosts = RcptHosts::new(hosts);
        session.databytes = control::read_number(fs, &c("databytes"))
            .await?
            .unwrap_or(0);
        session.remote.local = me;
        let timeout = control::read_number(fs, &c("timeoutsmtpd"))
            .await?
            .unwrap_or(1200);
        let max_connections = control::read_number(fs, &c("concurrencyincoming"))
            .await?
            .unwrap_or(100)
            .clamp(1, 100_000) as usize;
        Ok(SmtpdControl {
            session,
            timeout: Duration::from_secs(timeout.max(1)),
            max_connections,
            queue_program: None,
        })
    }
}

/// How one connection ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub accepted: u64,
    pub refused: u64,
    pub timed_out: bool,
}

/// Reads at most this much per read: the session's memory does not depend
/// on what the client sends.
const READ_CHUNK: usize = 16 * 1024;

/// Serves one SMTP connection until QUIT, a close, a timeout or an error.
///
/// Messages go into `queue`, or to `queue_program` (`$QMAILQUEUE`) if given.
pub async fn serve_connection<E, S>(
    queue: &Queue<E>,
    queue_program: Option<&Path>,
    mut stream: S,
    config: SmtpConfig,
    timeout: Duration,
) -> io::Result<SessionStats>
where
    E: Env,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let env = queue.env().clone();
    let mut session = SmtpSession::new(config);
    let mut stats = SessionStats::default();
    let mut message: Option<Message<E>> = None;
    let mut out = Vec::new();
    push_reply(&mut out, session.greeting());
    send(&mut stream, &mut out).await?;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match tokio::time::timeout(timeout, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                // qmail-smtpd's words when a client goes quiet.
                out.extend_from_slice(b"451 timeout (#4.4.2)\r\n");
                let _ = send(&mut stream, &mut out).await;
                stats.timed_out = true;
                if let Some(m) = message.take() {
                    m.abort().await;
                }
                return Ok(stats);
            }
        };
        let mut input = &buf[..n];
        let mut actions = if n == 0 {
            session.end_of_input()
        } else {
            Vec::new()
        };
        loop {
            if !input.is_empty() {
                let now = env.clock().unix_secs();
                let fed = session.feed(input, now);
                input = &input[fed.consumed..];
                actions.extend(fed.actions);
            }
            let mut closed = false;
            for action in actions.drain(..) {
                match action {
                    Action::Reply(r) => out.extend_from_slice(&r),
                    Action::BeginMessage { sender, recipients } => {
                        message =
                            Some(Message::begin(queue, queue_program, sender, recipients).await);
                    }
                    Action::MessageData(d) => {
                        if let Some(m) = &mut message {
                            m.write(&d).await;
                        }
                    }
                    Action::AbortMessage => {
                        if let Some(m) = message.take() {
                            m.abort().await;
                        }
                    }
                    Action::EndMessage => {
                        // The replies so far go out before the commit waits on the disk.
                        send(&mut stream, &mut out).await?;
                        let outcome = match message.take() {
                            Some(m) => m.commit(&env).await,
                            None => CommitOutcome::Failed {
                                permanent: false,
                                text: QqExit::BUG.text().into(),
                            },
                        };
                        match outcome {
                            CommitOutcome::Accepted { .. } => stats.accepted += 1,
                            CommitOutcome::Failed { .. } => stats.refused += 1,
                        }
                        for a in session.message_committed(outcome) {
                            match a {
                                Action::Reply(r) => out.extend_from_slice(&r),
                                Action::Close => closed = true,
                                _ => {}
                            }
                        }
                    }
                    Action::Close => closed = true,
                }
            }
            if closed {
                send(&mut stream, &mut out).await?;
                let _ = stream.shutdown().await;
                if let Some(m) = message.take() {
                    m.abort().await;
                }
                return Ok(stats);
            }
            if input.is_empty() {
                break;
            }
        }
        // Pipelined replies go out together, once this read's input is used.
        if !out.is_empty() {
            send(&mut stream, &mut out).await?;
        }
    }
}

/// Writes and flushes the pending replies (stdout under tcpserver buffers).
async fn send<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> io::Result<()> {
    stream.write_all(out).await?;
    stream.flush().await?;
    out.clear();
    Ok(())
}

fn push_reply(out: &mut Vec<u8>, a: Action) {
    if let Action::Reply(r) = a {
        out.extend_from_slice(&r);
    }
}

/// A message on its way into the queue: the submission and its envelope.
/// A queue failure is remembered and reported at the final dot, as
/// qmail-smtpd reports qmail-queue's exit.
struct Message<E: Env> {
    submission: Submission<E>,
    envelope: Envelope,
}

impl<E: Env> Message<E> {
    async fn begin(
        queue: &Queue<E>,
        program: Option<&Path>,
        sender: String,
        recipients: Vec<String>,
    ) -> Self {
        let by = Submitter::me(queue.env(), InvokedFrom::Network);
        Message {
            submission: Submission::open(queue, program, by).await,
            envelope: Envelope { sender, recipients },
        }
    }

    async fn write(&mut self, data: &[u8]) {
        self.submission.put(data).await;
    }

    async fn commit(self, env: &E) -> CommitOutcome {
        match self.submission.close(&self.envelope).await {
            Ok(c) => CommitOutcome::Accepted {
                time: env.clock().unix_secs(),
                qp: u64::from(c.qp),
            },
            Err(e) => CommitOutcome::Failed {
                permanent: e.is_permanent(),
                text: e.text().into(),
            },
        }
    }

    async fn abort(self) {
        self.submission.abort().await;
    }
}

/// Serves SMTP on `listener` until `stop` resolves, at most
/// `control.max_connections` connections at once (the others wait in the
/// kernel's backlog, as with tcpserver's limit).
pub async fn serve<E: Env, L: NetListener>(
    queue: Queue<E>,
    listener: L,
    control: SmtpdControl,
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let limit = Arc::new(Semaphore::new(control.max_connections));
    let control = Arc::new(control);
    tokio::pin!(stop);
    loop {
        // Biased: tokio's fair select draws from an unseeded generator,
        // which a deterministic simulation cannot allow.
        let permit = tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            p = Arc::clone(&limit).acquire_owned() => p.map_err(io::Error::other)?,
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let queue = queue.clone();
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let config = connection_config(&control.session, peer);
            let program = control.queue_program.as_deref();
            match serve_connection(&queue, program, stream, config, control.timeout).await {
                Ok(stats) => tracing::debug!(%peer, ?stats, "smtp session ended"),
                Err(e) => tracing::debug!(%peer, "smtp session failed: {e}"),
            }
            drop(permit);
        });
    }
}

/// The session settings for a connection from `peer`.
pub fn connection_config(base: &SmtpConfig, peer: SocketAddr) -> SmtpConfig {
    let mut c = base.clone();
    c.remote = RemoteInfo {
        ip: peer.ip().to_string(),
        ..base.remote.clone()
    };
    c
}
