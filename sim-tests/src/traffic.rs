//! SMTP client hosts injecting random traffic: message sizes, recipient
//! counts, local users, aliases that forward, defer or bounce, remote
//! domains, null senders, malformed commands, pipelining, retries of
//! messages that were not acknowledged.
//!
//! A message counts as accepted only when the client read `250` after the
//! final dot; the client records that in the [`Ledger`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turmoil::net::TcpStream;

use qmail_io_sim::Trace;

use crate::ledger::{Ledger, Sent};
use crate::{DOMAIN, mix};

/// How long a client waits for any reply before it gives the session up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per message before the client gives it up.
const MAX_ATTEMPTS: u32 = 4;
/// Sessions per client, at most.
const MAX_SESSIONS: u32 = 14;

/// Local users: each has a maildir (created on first delivery).
pub const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// `team@` forwards to these.
pub const TEAM: [&str; 2] = ["bob", "carol"];

/// A message to send.
#[derive(Debug, Clone)]
struct Outgoing {
    token: String,
    sender: String,
    /// Every RCPT the client gives, including ones the server refuses.
    rcpts: Vec<String>,
    /// Body lines (headers included), without line ends.
    lines: Vec<String>,
    attempts: u32,
}

impl Outgoing {
    /// The message as the queue stores it.
    fn stored(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for l in &self.lines {
            b.extend_from_slice(l.as_bytes());
            b.push(b'\n');
        }
        b
    }

    /// The DATA payload: CRLF line ends, dots stuffed, the final dot.
    fn wire(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for l in &self.lines {
            if l.starts_with('.') {
                b.push(b'.');
            }
            b.extend_from_slice(l.as_bytes());
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b".\r\n");
        b
    }
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

fn sender(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..6 => format!("{}@{DOMAIN}", pick(rng, &USERS)),
        6..8 => format!("someone{}@remote.example", rng.random_range(0..3)),
        8 => "nobody@reject.example".into(),
        _ => String::new(),
    }
}

/// A recipient: local users, the aliases, remote domains, and now and then
/// one the server refuses (a host not in rcpthosts, a bad address).
fn recipient(rng: &mut StdRng) -> String {
    match rng.random_range(0..100) {
        0..40 => format!("{}@{DOMAIN}", pick(rng, &USERS)),
        40..50 => format!("team@{DOMAIN}"),
        50..58 => format!("slow@{DOMAIN}"),
        58..64 => format!("reject@{DOMAIN}"),
        64..82 => format!("r{}@remote.example", rng.random_range(0..4)),
        82..90 => format!("d{}@defer.example", rng.random_range(0..2)),
        90..96 => format!("x{}@reject.example", rng.random_range(0..2)),
        96..98 => "someone@elsewhere.example".into(),
        _ => "bad address".into(),
    }
}

fn line(rng: &mut StdRng, len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-";
    let mut s: String = (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect();
    if rng.random_bool(0.05) {
        s.insert(0, '.');
    }
    s
}

fn message(rng: &mut StdRng, client: usize, n: u32) -> Outgoing {
    let token = format!("c{client}m{n}");
    let sender = sender(rng);
    let count = match rng.random_range(0..10) {
        0..5 => 1,
        5..8 => rng.random_range(2..=3),
        _ => rng.random_range(4..=7),
    };
    let mut rcpts: Vec<String> = Vec::new();
    for _ in 0..count {
        let r = recipient(rng);
        if !rcpts.contains(&r) {
            rcpts.push(r);
        }
    }
    let size = match rng.random_range(0..20) {
        0..14 => rng.random_range(0..2_000),
        14..19 => rng.random_range(2_000..32_000),
        _ => rng.random_range(32_000..200_000),
    };
    let mut lines = vec![
        format!("From: <{sender}>"),
        format!("To: {}", rcpts.join(", ")),
        format!("Subject: sim message {token}"),
        format!("Message-ID: <{token}@client{client}.example>"),
        format!("X-Sim: {token}"),
        String::new(),
    ];
    let mut total = 0;
    while total < size {
        let len = match rng.random_range(0..10) {
            0 => 0,
            1..9 => rng.random_range(1..80),
            _ => rng.random_range(80..990),
        };
        let l = line(rng, len);
        total += l.len() + 1;
        lines.push(l);
    }
    Outgoing {
        token,
        sender,
        rcpts,
        lines,
        attempts: 0,
    }
}

/// Something for the server to refuse, sent before or between messages.
fn garbage(rng: &mut StdRng) -> &'static str {
    [
        "FOO bar\r\n",
        "MAIL FROM:<unbalanced\r\n",
        "RCPT TO:<alice@sim.test>\r\n",
        "DATA\r\n",
        "VRFY alice\r\n",
        "NOOP\r\n",
        "RSET\r\n",
        "HELP\r\n",
        "\r\n",
    ][rng.random_range(0..9)]
}

struct Conn {
    r: BufReader<TcpStream>,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "no reply")
}

impl Conn {
    async fn send(&mut self, b: &[u8]) -> io::Result<()> {
        tokio::time::timeout(REPLY_TIMEOUT, async {
            self.r.get_mut().write_all(b).await?;
            self.r.get_mut().flush().await
        })
        .await
        .map_err(|_| timed_out())?
    }

    /// Reads one (possibly multi-line) reply; returns its code.
    async fn reply(&mut self) -> io::Result<u16> {
        for _ in 0..64 {
            let mut l = String::new();
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.r.read_line(&mut l))
                .await
                .map_err(|_| timed_out())??;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let code = l
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| io::Error::other(format!("bad reply {l:?}")))?;
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
        Err(io::Error::other("endless reply"))
    }
}

/// How one message's attempt ended.
enum Result_ {
    Accepted,
    /// Refused for good (5xx, or no recipient accepted).
    Refused,
    /// Try again later (4xx).
    Later,
}

/// One client host's whole life.
pub async fn client(seed: u64, id: usize, ledger: Ledger, trace: Trace) {
    let mut rng = StdRng::seed_from_u64(mix(seed, 0xc1 + id as u64));
    let count = rng.random_range(2..=10);
    let mut outbox: Vec<Outgoing> = (0..count).map(|n| message(&mut rng, id, n)).collect();
    let name = format!("client{id}");
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..20_000))).await;
    let mut session = 0;
    while !outbox.is_empty() && session < MAX_SESSIONS {
        session += 1;
        let take = rng.random_range(1..=3).min(outbox.len());
        let batch: Vec<Outgoing> = outbox.drain(..take).collect();
        trace.record(&name, format_args!("session {session} start"));
        let (results, err) = run_session(&mut rng, &batch, &ledger).await;
        let mut retry = Vec::new();
        for (i, mut m) in batch.into_iter().enumerate() {
            let verdict = match results.get(i) {
                Some(Result_::Accepted) => "accepted",
                Some(Result_::Refused) => "refused",
                Some(Result_::Later) => "deferred",
                None => "not sent",
            };
            trace.record(
                &name,
                format_args!("session {session} {} {verdict}", m.token),
            );
            m.attempts += u32::from(results.get(i).is_some());
            if matches!(results.get(i), None | Some(Result_::Later)) && m.attempts < MAX_ATTEMPTS {
                retry.push(m);
            }
        }
        if let Some(e) = &err {
            trace.record(&name, format_args!("session {session} ended: {e}"));
        }
        // Retries go to the front: the client keeps its order.
        retry.append(&mut outbox);
        outbox = retry;
        let pause = if err.is_some() {
            rng.random_range(3_000..30_000)
        } else {
            rng.random_range(500..15_000)
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    trace.record(&name, format_args!("done after {session} sessions"));
}

/// One SMTP session sending `batch`; the results of the messages it got to,
/// and the error that cut it, if any.
async fn run_session(
    rng: &mut StdRng,
    batch: &[Outgoing],
    ledger: &Ledger,
) -> (Vec<Result_>, Option<io::Error>) {
    let mut results = Vec::new();
    let err = session(rng, batch, ledger, &mut results).await.err();
    (results, err)
}

async fn session(
    rng: &mut StdRng,
    batch: &[Outgoing],
    ledger: &Ledger,
    results: &mut Vec<Result_>,
) -> io::Result<()> {
    let addr = SocketAddr::from((turmoil::lookup("mta"), 25));
    let stream = tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())??;
    let mut c = Conn {
        r: BufReader::new(stream),
    };
    if c.reply().await? != 220 {
        return Err(io::Error::other("no greeting"));
    }
    if rng.random_bool(0.3) {
        c.send(garbage(rng).as_bytes()).await?;
        c.reply().await?;
    }
    let ehlo = rng.random_bool(0.7);
    c.send(if ehlo {
        b"EHLO client.example\r\n"
    } else {
        b"HELO client.example\r\n"
    })
    .await?;
    if c.reply().await? != 250 {
        return Err(io::Error::other("HELO refused"));
    }
    for m in batch {
        if rng.random_bool(0.1) {
            c.send(garbage(rng).as_bytes()).await?;
            c.reply().await?;
            // Whatever the garbage did to the transaction, start afresh.
            c.send(b"RSET\r\n").await?;
            c.reply().await?;
        }
        results.push(Result_::Later);
        let r = transaction(rng, &mut c, m, ehlo, ledger).await?;
        *results.last_mut().expect("pushed") = r;
    }
    c.send(b"QUIT\r\n").await?;
    c.reply().await?;
    Ok(())
}

async fn transaction(
    rng: &mut StdRng,
    c: &mut Conn,
    m: &Outgoing,
    ehlo: bool,
    ledger: &Ledger,
) -> io::Result<Result_> {
    let lower = rng.random_bool(0.2);
    let mut cmds = vec![if lower {
        format!("mail from:<{}>\r\n", m.sender)
    } else {
        format!("MAIL FROM:<{}>\r\n", m.sender)
    }];
    for r in &m.rcpts {
        cmds.push(format!("RCPT TO:<{r}>\r\n"));
    }
    cmds.push("DATA\r\n".into());
    // PIPELINING (only after EHLO): every command in one write, then every
    // reply; otherwise one by one.
    let mut codes = Vec::new();
    if ehlo && rng.random_bool(0.5) {
        c.send(cmds.concat().as_bytes()).await?;
        for _ in &cmds {
            codes.push(c.reply().await?);
        }
    } else {
        for cmd in &cmds {
            c.send(cmd.as_bytes()).await?;
            codes.push(c.reply().await?);
        }
    }
    let accepted: Vec<String> = m
        .rcpts
        .iter()
        .zip(&codes[1..])
        .filter(|(_, code)| **code / 100 == 2)
        .map(|(r, _)| r.clone())
        .collect();
    let data = *codes.last().expect("DATA");
    if codes[0] / 100 != 2 || data != 354 {
        if data == 354 {
            // Accepted DATA without recipients should not happen; end it.
            c.send(b".\r\n").await?;
            c.reply().await?;
        }
        return Ok(if codes[0] / 100 == 4 {
            Result_::Later
        } else {
            Result_::Refused
        });
    }
    {
        let mut l = ledger.lock();
        let e = l.sent.entry(m.token.clone()).or_insert_with(|| Sent {
            sender: m.sender.clone(),
            recipients: Vec::new(),
            body: m.stored(),
            accepted: false,
            attempts: 0,
        });
        e.attempts += 1;
        for r in &accepted {
            if !e.recipients.contains(r) {
                e.recipients.push(r.clone());
            }
        }
    }
    // The body in random pieces.
    let wire = m.wire();
    let mut at = 0;
    while at < wire.len() {
        let n = rng.random_range(1..=16_384).min(wire.len() - at);
        c.send(&wire[at..at + n]).await?;
        at += n;
    }
    let code = c.reply().await?;
    Ok(match code / 100 {
        2 => {
            ledger
                .lock()
                .sent
                .get_mut(&m.token)
                .expect("recorded")
                .accepted = true;
            Result_::Accepted
        }
        4 => Result_::Later,
        _ => Result_::Refused,
    })
}
