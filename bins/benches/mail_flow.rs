//! Mail flow end to end: SMTP in, local delivery into a maildir out.
//!
//! Sends `BENCH_MESSAGES` (default 2000) messages of 4 KB over SMTP with 20
//! concurrent sessions (pipelining) to a fresh `qmail run` on 127.0.0.1, all
//! to one local user, and prints messages per second accepted (the last
//! `250` after DATA) and delivered (the last file in `Maildir/new`), the
//! server's CPU per message and its peak memory.
//!
//! To compare with another MTA on the same machine, point it at one that
//! listens on loopback and delivers to a maildir: `BENCH_OTHER_SMTP=
//! 127.0.0.1:2527 BENCH_OTHER_RCPT=bench@localhost BENCH_OTHER_MAILDIR=
//! /home/bench/Maildir/new` (`docs/performance.md` says how Postfix was set
//! up for the published figures). Run with
//! `cargo bench -p qmail-bins --bench mail_flow`. Its installation is made
//! in `$BENCH_DIR` (default: the system's temporary directory) and removed
//! at the end. `--bench compare` runs this load and others beside a private
//! Postfix instance it sets up itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{
    QmailRun, bench_dir, bench_message, init_home, proc_status_kb, set_control, smtp_reply,
};

/// One SMTP session sending messages while there are any left to send.
async fn session(addr: String, rcpt: Arc<String>, left: Arc<AtomicUsize>, body: Arc<Vec<u8>>) {
    let stream = TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    assert_eq!(smtp_reply(&mut r, &mut line).await, 220);
    w.write_all(b"EHLO bench.client\r\n").await.unwrap();
    assert_eq!(smtp_reply(&mut r, &mut line).await, 250);
    let envelope =
        format!("MAIL FROM:<bench@client.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").into_bytes();
    while left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        w.write_all(&envelope).await.unwrap();
        assert_eq!(smtp_reply(&mut r, &mut line).await, 250, "{line}");
        assert_eq!(smtp_reply(&mut r, &mut line).await, 250, "{line}");
        assert_eq!(smtp_reply(&mut r, &mut line).await, 354, "{line}");
        w.write_all(&body).await.unwrap();
        assert_eq!(smtp_reply(&mut r, &mut line).await, 250, "{line}");
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

struct Figures {
    accepted: Duration,
    delivered: Duration,
}

/// Sends `n` messages to `addr` and waits (at most ten minutes) until
/// `maildir` holds `before + n` files.
fn flow(rt: &tokio::runtime::Runtime, addr: &str, rcpt: &str, maildir: &Path, n: usize) -> Figures {
    let before = count(maildir);
    let body = Arc::new(bench_message());
    let start = Instant::now();
    let left = Arc::new(AtomicUsize::new(n));
    let rcpt = Arc::new(rcpt.to_string());
    rt.block_on(async {
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                tokio::spawn(session(
                    addr.to_string(),
                    rcpt.clone(),
                    left.clone(),
                    body.clone(),
                ))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let accepted = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(maildir) < before + n {
        assert!(Instant::now() < deadline, "not all delivered in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    Figures {
        accepted,
        delivered: start.elapsed(),
    }
}

fn print(name: &str, n: usize, f: &Figures, extra: &str) {
    println!(
        "{name:<10} {:>7.0} msg/s accepted  {:>7.0} msg/s delivered  ({n} in {:.2} s){extra}",
        n as f64 / f.accepted.as_secs_f64(),
        n as f64 / f.delivered.as_secs_f64(),
        f.delivered.as_secs_f64(),
    );
}

fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("Mail flow: {n} messages of 4 KB, 20 SMTP sessions, one local maildir");

    // A temporary directory on a disk, not a tmpfs: fsync must cost what
    // it costs.
    let home = init_home(Some(&bench_dir()), None);
    set_control(home.path(), "concurrencyincoming", "100");
    set_control(home.path(), "concurrencyperip", "100");
    let server = QmailRun::start(home);
    let maildir: PathBuf = server.home.path().join("mailboxes/user/Maildir/new");
    let cpu0 = server.cpu();
    let f = flow(
        &rt,
        &format!("127.0.0.1:{}", server.port),
        "user@localhost",
        &maildir,
        n,
    );
    let cpu = server.cpu() - cpu0;
    let peak = proc_status_kb(server.child.id(), "VmHWM:");
    print(
        "qmail-rs",
        n,
        &f,
        &format!(
            ", CPU {:.2} ms/msg, peak RSS {} MB",
            cpu.as_secs_f64() * 1000.0 / n as f64,
            peak / 1024
        ),
    );
    server.stop();

    if let (Ok(addr), Ok(rcpt), Ok(dir)) = (
        std::env::var("BENCH_OTHER_SMTP"),
        std::env::var("BENCH_OTHER_RCPT"),
        std::env::var("BENCH_OTHER_MAILDIR"),
    ) {
        let f = flow(&rt, &addr, &rcpt, Path::new(&dir), n);
        print("other", n, &f, &format!(" ({addr})"));
    }
}
