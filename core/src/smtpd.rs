//! qmail-smtpd as a service: the async driver that runs an
//! [`SmtpSession`](crate::smtp::SmtpSession) over a connection and into the
//! queue, the listener that holds many connections in one process, and the
//! control files that configure it.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::control::{self, ControlError};
use crate::env::{Clock, Env, NetListener};
use crate::home::Home;
use crate::logsafe::logsafe;
use crate::queue::{Envelope, InvokedFrom, QqExit, Queue, Submission, Submitter};
use crate::smtp::{Action, CommitOutcome, RcptHosts, RemoteInfo, SmtpConfig, SmtpSession};

/// Default of `control/concurrencyincoming`.
pub const DEFAULT_CONCURRENCY: usize = 100;
/// Default of `control/concurrencyperip`.
pub const DEFAULT_CONCURRENCY_PER_IP: usize = 20;
/// Default of `control/timeoutsmtpd`, qmail's.
pub const DEFAULT_TIMEOUT: u64 = 1200;
/// Default of `control/timeoutsmtpddata`.
pub const DEFAULT_DATA_TIMEOUT: u64 = 3600;

/// qmail-smtpd's settings from the control files.
#[derive(Debug, Clone)]
pub struct SmtpdControl {
    pub session: SmtpConfig,
    /// `control/timeoutsmtpd`: seconds to wait for each read, and (ours) for
    /// a whole command line from its first byte (default 1200).
    pub timeout: Duration,
    /// `control/timeoutsmtpddata` (ours): seconds a whole DATA may take,
    /// from the `354` to the final dot (default 3600).
    pub data_timeout: Duration,
    /// `control/concurrencyincoming`: connections served at once (ours; by
    /// default 100, tcpserver's own default is 40). Connections over the
    /// limit are answered `421` and closed.
    pub max_connections: usize,
    /// `control/concurrencyperip` (ours): connections served at once for one
    /// client address (default 20), so one client cannot take every slot.
    pub max_per_ip: usize,
    /// `$QMAILQUEUE`: a program with qmail-queue's interface that takes each
    /// message instead of the queue (a filter, typically). Set by the caller.
    pub queue_program: Option<PathBuf>,
}

impl SmtpdControl {
    /// Reads `me`, `smtpgreeting`, `rcpthosts`, `morercpthosts`, `databytes`,
    /// `timeoutsmtpd`, `timeoutsmtpddata`, `concurrencyincoming` and
    /// `concurrencyperip` with their defaults.
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
            .unwrap_or(DEFAULT_TIMEOUT);
        let data_timeout = control::read_number(fs, &c("timeoutsmtpddata"))
            .await?
            .unwrap_or(DEFAULT_DATA_TIMEOUT);
        let count = |n: u64| n.clamp(1, 100_000) as usize;
        let max_connections = control::read_number(fs, &c("concurrencyincoming"))
            .await?
            .map_or(DEFAULT_CONCURRENCY, count);
        let max_per_ip = control::read_number(fs, &c("concurrencyperip"))
            .await?
            .map_or(DEFAULT_CONCURRENCY_PER_IP, count);
        Ok(SmtpdControl {
            session,
            timeout: Duration::from_secs(timeout.max(1)),
            data_timeout: Duration::from_secs(data_timeout.max(1)),
            max_connections,
            max_per_ip,
            queue_program: None,
        })
    }

    /// The time limits of one connection.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            read: self.timeout,
            line: self.timeout,
            data: self.data_timeout,
        }
    }
}

/// How one connection ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub accepted: u64,
    pub refused: u64,
    pub timed_out: bool,
}

/// How long a client may take: for each read, for a whole command line from
/// its first byte, and for a whole DATA from the `354` to the final dot. The
/// last two keep a client that trickles bytes from holding a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub read: Duration,
    pub line: Duration,
    pub data: Duration,
}

impl From<Duration> for Timeouts {
    /// The same limit for everything.
    fn from(d: Duration) -> Self {
        Timeouts {
            read: d,
            line: d,
            data: d,
        }
    }
}

/// Reads at most this much per read: the session's memory does not depend
/// on what the client sends.
const READ_CHUNK: usize = 16 * 1024;

/// A message whose DATA fills whole reads is read in blocks of up to this
/// size, so a large message takes few reads, decoder calls and queue
/// writes. The buffer shrinks back to [`READ_CHUNK`] after the message:
/// an idle connection keeps only the small one.
const DATA_READ_CHUNK: usize = 128 * 1024;

/// Serves one SMTP connection until QUIT, a close, a timeout or an error.
///
/// Messages go into `queue`, or to `queue_program` (`$QMAILQUEUE`) if given.
pub async fn serve_connection<E, S>(
    queue: &Queue<E>,
    queue_program: Option<&Path>,
    mut stream: S,
    config: SmtpConfig,
    timeouts: impl Into<Timeouts>,
) -> io::Result<SessionStats>
where
    E: Env,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let timeouts = timeouts.into();
    let env = queue.env().clone();
    let peer = logsafe(&config.remote.ip);
    let mut session = SmtpSession::new(config);
    // When the line or the DATA under way must be complete.
    let mut line_deadline = None;
    let mut data_deadline = None;
    let mut commands_seen = 0;
    let mut stats = SessionStats::default();
    let mut message: Option<Message<E>> = None;
    let mut out = Vec::new();
    push_reply(&mut out, session.greeting());
    send(&mut stream, &mut out).await?;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let now = Instant::now();
        // A line that began in an earlier read keeps its deadline; a
        // completed line, or a new one after it, does not.
        let commands = session.commands_read();
        if commands != commands_seen {
            commands_seen = commands;
            line_deadline = None;
        }
        line_deadline = session
            .mid_line()
            .then(|| line_deadline.unwrap_or(now + timeouts.line));
        data_deadline = session
            .in_data()
            .then(|| data_deadline.unwrap_or(now + timeouts.data));
        let mut deadline = (now + timeouts.read, "no input for", timeouts.read);
        for (d, what, limit) in [
            (
                line_deadline,
                "command line not complete after",
                timeouts.line,
            ),
            (data_deadline, "DATA not complete after", timeouts.data),
        ] {
            if let Some(d) = d.filter(|d| *d < deadline.0) {
                deadline = (d, what, limit);
            }
        }
        let n = match tokio::time::timeout_at(deadline.0, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                let (_, what, limit) = deadline;
                tracing::info!(
                    "smtpd: timeout from {peer}: {what} {} s, closing",
                    limit.as_secs()
                );
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
        // A read of DATA that filled the buffer says more is waiting.
        let grow = n == buf.len() && session.in_data() && buf.len() < DATA_READ_CHUNK;
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
                log_refusals(&peer, &mut session);
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
        if grow {
            buf.resize(DATA_READ_CHUNK, 0);
        } else if !session.in_data() && buf.len() > READ_CHUNK {
            buf = vec![0u8; READ_CHUNK];
        }
    }
}

/// Logs the MAIL and RCPT commands the session refused.
fn log_refusals(peer: &str, session: &mut SmtpSession) {
    for r in session.take_refusals() {
        tracing::info!(
            "smtpd: refused {} <{}> from {peer}: {}",
            r.command,
            logsafe(&r.address),
            r.reason
        );
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

/// Serves SMTP on `listener` until `stop` resolves, with fixed settings
/// (see [`serve_reloadable`]).
pub async fn serve<E: Env, L: NetListener>(
    queue: Queue<E>,
    listener: L,
    control: SmtpdControl,
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let (_keep, controls) = watch::channel(Arc::new(control));
    serve_reloadable(queue, listener, controls, stop).await
}

/// Serves SMTP on `listener` until `stop` resolves. Each new connection
/// takes the settings `controls` holds when it arrives (a reload applies to
/// the next session). At most `max_connections` sessions run at once, and at
/// most `max_per_ip` from one client address; a connection over either limit
/// is answered `421` and closed at once, and the refusal logged, so clients
/// are never left waiting in the kernel's backlog without a word.
pub async fn serve_reloadable<E: Env, L: NetListener>(
    queue: Queue<E>,
    listener: L,
    controls: watch::Receiver<Arc<SmtpdControl>>,
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Slots::default());
    tokio::pin!(stop);
    loop {
        // Biased: tokio's fair select draws from an unseeded generator,
        // which a deterministic simulation cannot allow.
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
        let control = Arc::clone(&controls.borrow());
        match slots.take(peer.ip(), control.max_connections, control.max_per_ip) {
            Ok(slot) => {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let config = connection_config(&control.session, peer);
                    let program = control.queue_program.as_deref();
                    let timeouts = control.timeouts();
                    match serve_connection(&queue, program, stream, config, timeouts).await {
                        Ok(stats) => tracing::debug!(%peer, ?stats, "smtp session ended"),
                        Err(e) => tracing::debug!(%peer, "smtp session failed: {e}"),
                    }
                    drop(slot);
                });
            }
            Err(why) => {
                let ip = logsafe(&peer.ip().to_string());
                tracing::info!("smtpd: refused connection from {ip}: {why}");
                // The refusal itself is bounded too: a flood beyond it is
                // closed without a word rather than grow without limit.
                let Some(refusing) = slots.take_refusing(MAX_REFUSING) else {
                    continue;
                };
                let text = format!(
                    "421 {} too many connections, try again later (#4.3.2)\r\n",
                    control.session.greeting
                );
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::time::timeout(REFUSAL_TIME, async {
                        stream.write_all(text.as_bytes()).await?;
                        stream.flush().await?;
                        stream.shutdown().await
                    })
                    .await;
                    drop(refusing);
                });
            }
        }
    }
}

/// `421` refusals written at once; a flood beyond is closed without one.
/// Each is a short write, but on a loaded machine hundreds can be in
/// flight (a cap of `concurrencyincoming` left some of 280 unanswered).
const MAX_REFUSING: usize = 1000;

/// The longest a `421` refusal may take to write.
const REFUSAL_TIME: Duration = Duration::from_secs(5);

/// The connections being served, in all and per client address, and the
/// refusals being written.
#[derive(Debug, Default)]
struct Slots {
    counts: Mutex<SlotCounts>,
}

#[derive(Debug, Default)]
struct SlotCounts {
    total: usize,
    refusing: usize,
    per_ip: BTreeMap<IpAddr, usize>,
}

/// One connection's place in [`Slots`], given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    ip: Option<IpAddr>,
}

impl Slots {
    fn counts(&self) -> std::sync::MutexGuard<'_, SlotCounts> {
        // The counts stay consistent even if a holder panicked.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a session from `ip`, or why there is none.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize, max_per_ip: usize) -> Result<Slot, String> {
        let mut c = self.counts();
        if c.total >= max {
            return Err(format!(
                "{} connections, concurrencyincoming is {max}",
                c.total
            ));
        }
        let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
        if mine >= max_per_ip {
            return Err(format!(
                "{mine} connections from this address, concurrencyperip is {max_per_ip}"
            ));
        }
        c.total += 1;
        c.per_ip.insert(ip, mine + 1);
        Ok(Slot {
            slots: Arc::clone(self),
            ip: Some(ip),
        })
    }

    /// A slot for writing one refusal, if fewer than `max` are being written.
    fn take_refusing(self: &Arc<Self>, max: usize) -> Option<Slot> {
        let mut c = self.counts();
        if c.refusing >= max {
            return None;
        }
        c.refusing += 1;
        Some(Slot {
            slots: Arc::clone(self),
            ip: None,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        let Some(ip) = self.ip else {
            c.refusing -= 1;
            return;
        };
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
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
