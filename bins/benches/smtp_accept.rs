//! SMTP accept throughput of `qmail run` on the real queue.
//!
//! Sends `BENCH_MESSAGES` (default 5000) messages of 4 KB over SMTP at 1, 20
//! and 50 concurrent sessions to a fresh `qmail run` on 127.0.0.1 and prints
//! accepted messages per second and the server's CPU milliseconds per
//! message; then opens 1000 idle connections and prints the server's memory
//! per connection. Run with `cargo bench -p qmail-bins --bench smtp_accept`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::TcpStream;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{QmailRun, bench_dir, bench_message, init_home, set_control, smtp_reply};

/// A fresh server in `$BENCH_DIR` (default: the system's temporary
/// directory; a disk, not a tmpfs); `concurrency` sets
/// control/concurrencyincoming and control/concurrencyperip.
fn start(concurrency: u32) -> QmailRun {
    let home = init_home(Some(&bench_dir()), None);
    set_control(home.path(), "concurrencyincoming", &concurrency.to_string());
    // Every session comes from 127.0.0.1: lift the per-address limit too.
    set_control(home.path(), "concurrencyperip", &concurrency.to_string());
    QmailRun::start(home)
}

/// One SMTP session sending messages while there are any left to send.
async fn session(port: u16, left: Arc<AtomicUsize>, body: Arc<Vec<u8>>) -> usize {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = TokioBufReader::new(r);
    let mut line = String::new();
    assert_eq!(smtp_reply(&mut r, &mut line).await, 220);
    w.write_all(b"EHLO bench.client\r\n").await.unwrap();
    assert_eq!(smtp_reply(&mut r, &mut line).await, 250);
    let mut sent = 0;
    while left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        // PIPELINING: MAIL, RCPT and DATA in one write.
        w.write_all(b"MAIL FROM:<bench@client.example>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n")
            .await
            .unwrap();
        assert_eq!(smtp_reply(&mut r, &mut line).await, 250);
        assert_eq!(smtp_reply(&mut r, &mut line).await, 250);
        assert_eq!(smtp_reply(&mut r, &mut line).await, 354);
        w.write_all(&body).await.unwrap();
        assert_eq!(smtp_reply(&mut r, &mut line).await, 250, "{line}");
        sent += 1;
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
    sent
}

fn raise_fd_limit() {
    let _ = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(
        |(_, hard)| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
        },
    );
}

fn main() {
    raise_fd_limit();
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let body = bench_message();
    let body = Arc::new(body);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "SMTP accept benchmark: {n} messages of 4 KB per run, each run on a fresh `qmail run`"
    );
    for sessions in [1usize, 20, 50] {
        let server = start(100);
        let cpu0 = server.cpu();
        let start = Instant::now();
        let left = Arc::new(AtomicUsize::new(n));
        let sent: usize = rt.block_on(async {
            let tasks: Vec<_> = (0..sessions)
                .map(|_| tokio::spawn(session(server.port, left.clone(), body.clone())))
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        });
        let wall = start.elapsed();
        let cpu = server.cpu() - cpu0;
        println!(
            "{sessions:>3} sessions: {:>7.0} msg/s accepted  ({sent} in {:.2} s, server CPU {:.2} ms/msg)",
            sent as f64 / wall.as_secs_f64(),
            wall.as_secs_f64(),
            cpu.as_secs_f64() * 1000.0 / sent as f64
        );
    }

    let server = start(2000);
    std::thread::sleep(Duration::from_millis(200));
    let before = server.rss_kb();
    let conns = 1000;
    let held = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..conns {
            let s = TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap();
            let (r, w) = s.into_split();
            let mut r = TokioBufReader::new(r);
            let mut line = String::new();
            assert_eq!(smtp_reply(&mut r, &mut line).await, 220);
            held.push((r, w));
        }
        held
    });
    std::thread::sleep(Duration::from_millis(300));
    let after = server.rss_kb();
    println!(
        "{conns} idle connections: server RSS {before} KB -> {after} KB, {:.1} KB per connection",
        (after.saturating_sub(before)) as f64 / conns as f64
    );
    drop(held);
}
