//! The client side: SMTP sessions that send the same messages to either
//! MTA (with PIPELINING: MAIL, RCPT and DATA in one write), and the wait
//! for the delivered files to appear in the maildirs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A message of about `size` bytes of text in SMTP form, final dot included.
pub fn message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: bench@client.example\r\nTo: bench@bench.test\r\nSubject: bench\r\n\r\n".to_vec();
    while m.len() < size {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// What every session sends: one message to `recipients`, `count` times
/// in all, shared by the sessions.
pub struct Mailing {
    pub recipients: Vec<String>,
    pub body: Vec<u8>,
    pub count: usize,
}

impl Mailing {
    fn envelope(&self) -> Vec<u8> {
        let mut e = b"MAIL FROM:<bench@client.example>\r\n".to_vec();
        for r in &self.recipients {
            e.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
        }
        e.extend_from_slice(b"DATA\r\n");
        e
    }
}

/// Reads one reply (all its lines) and returns its code.
async fn reply<R: AsyncRead + Unpin>(r: &mut BufReader<R>, line: &mut String) -> Result<u32> {
    loop {
        line.clear();
        let n = r.read_line(line).await?;
        ensure!(n >= 4, "connection closed or short reply {line:?}");
        if line.as_bytes()[3] == b' ' {
            return Ok(line[..3].parse()?);
        }
    }
}

async fn expect<R: AsyncRead + Unpin>(r: &mut BufReader<R>, code: u32) -> Result<()> {
    let mut line = String::new();
    let got = reply(r, &mut line).await?;
    ensure!(got == code, "expected {code}, got {line:?}");
    Ok(())
}

/// One session on an open connection: greeting, EHLO, then messages while
/// any are left to send, then QUIT. Returns how many it sent.
pub async fn session<R, W>(
    r: R,
    mut w: W,
    mailing: Arc<Mailing>,
    left: Arc<AtomicUsize>,
) -> Result<usize>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut r = BufReader::new(r);
    expect(&mut r, 220).await.context("greeting")?;
    w.write_all(b"EHLO bench.client\r\n").await?;
    expect(&mut r, 250).await.context("EHLO")?;
    let envelope = mailing.envelope();
    let mut sent = 0;
    while left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        w.write_all(&envelope).await?;
        expect(&mut r, 250).await.context("MAIL")?;
        for _ in &mailing.recipients {
            expect(&mut r, 250).await.context("RCPT")?;
        }
        expect(&mut r, 354).await.context("DATA")?;
        w.write_all(&mailing.body).await?;
        expect(&mut r, 250).await.context("end of data")?;
        sent += 1;
    }
    w.write_all(b"QUIT\r\n").await?;
    w.flush().await?;
    // Read the goodbye: a server on a pipe must not find it closed.
    expect(&mut r, 221).await.context("QUIT")?;
    Ok(sent)
}

/// `sessions` concurrent SMTP sessions to `addr` sending `mailing.count`
/// messages in all, within `limit`. Returns when the last `250` came.
pub async fn send(
    addr: SocketAddr,
    sessions: usize,
    mailing: Arc<Mailing>,
    limit: Duration,
) -> Result<()> {
    let left = Arc::new(AtomicUsize::new(mailing.count));
    let tasks: Vec<_> = (0..sessions)
        .map(|_| {
            let (mailing, left) = (mailing.clone(), left.clone());
            tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (r, w) = stream.into_split();
                session(r, w, mailing, left).await
            })
        })
        .collect();
    let all = async {
        let mut sent = 0;
        for t in tasks {
            sent += t.await??;
        }
        anyhow::Ok(sent)
    };
    let sent = tokio::time::timeout(limit, all)
        .await
        .with_context(|| format!("sending took more than {limit:?}"))??;
    ensure!(sent == mailing.count, "sent {sent} of {}", mailing.count);
    Ok(())
}

/// Opens `count` connections to `addr` and waits for each one's greeting
/// (all within `limit`); the caller holds them open.
pub async fn idle_connections(
    addr: SocketAddr,
    count: usize,
    limit: Duration,
) -> Result<Vec<TcpStream>> {
    let open = async {
        let mut held = Vec::with_capacity(count);
        for i in 0..count {
            let s = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connection {i}"))?;
            let mut r = BufReader::new(s);
            expect(&mut r, 220)
                .await
                .with_context(|| format!("greeting on connection {i}"))?;
            held.push(r.into_inner());
        }
        anyhow::Ok(held)
    };
    tokio::time::timeout(limit, open)
        .await
        .with_context(|| format!("opening {count} connections took more than {limit:?}"))?
}

/// Waits until every directory in `dirs` holds at least `each` entries,
/// checking the ones not yet full every few milliseconds, until `deadline`.
/// Returns when the last one filled.
pub fn wait_delivered(dirs: &[PathBuf], each: usize, deadline: Instant) -> Result<Instant> {
    let mut pending: Vec<&PathBuf> = dirs.iter().collect();
    loop {
        let t = Instant::now();
        pending.retain(|d| std::fs::read_dir(d).map(|e| e.count()).unwrap_or(0) < each);
        if pending.is_empty() {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            let d = pending[0];
            let n = std::fs::read_dir(d).map(|e| e.count()).unwrap_or(0);
            bail!(
                "not delivered in time: {} of {} maildirs short, {} holds {n} of {each}",
                pending.len(),
                dirs.len(),
                d.display()
            );
        }
        // Reading a large directory costs CPU the MTA shares: poll at most
        // a fifth of the time.
        std::thread::sleep((t.elapsed() * 4).max(Duration::from_millis(5)));
    }
}
