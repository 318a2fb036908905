//! What one delivered message costs the server: SMTP in, maildir out, with
//! the message size and the number of sessions as knobs.
//!
//! Prints the delivered rate (messages and megabytes per second), the
//! server's CPU per message (user and system), its context switches per
//! message and its largest thread count. Meant for before/after figures of
//! changes to the I/O layer and the message copies; `mail_flow` stays the
//! reference end-to-end figure.
//!
//! Knobs (environment): `BENCH_MESSAGES` (default 500), `BENCH_SIZE_KB`
//! (default 4), `BENCH_SESSIONS` (default 20), `BENCH_QMAIL` (the `qmail`
//! binary to measure, default this build's), `BENCH_STRACE` (a file: attach
//! `strace -f -c` to the server for the flow and write its table there).
//! The installation lives in a temporary directory on the default temporary
//! filesystem. Run with `cargo bench -p qmail-bins --bench flow_cost`.
//!
//! Context switches come from the kernel's account of the whole server
//! process once it has exited (every thread, start and stop included: run
//! with `BENCH_MESSAGES=0` to see that fixed part).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{current_user, init_home, proc_status_kb, set_control, smtp_reply};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A message of about `kb` kilobytes in SMTP form, final dot included.
fn message(kb: usize) -> Vec<u8> {
    let mut body =
        b"From: bench@client.example\r\nTo: user@localhost\r\nSubject: bench\r\n\r\n".to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n";
    let mut i = 0u64;
    while body.len() < kb * 1024 {
        // A stuffed dot now and then, so the decoder has one to undo.
        if i.is_multiple_of(50) {
            body.extend_from_slice(b"..");
        }
        body.extend_from_slice(line);
        i += 1;
    }
    body.extend_from_slice(b".\r\n");
    body
}

/// One SMTP session sending messages while there are any left to send.
async fn session(addr: String, left: Arc<AtomicUsize>, body: Arc<Vec<u8>>) {
    let stream = TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    assert_eq!(smtp_reply(&mut r, &mut line).await, 220);
    w.write_all(b"EHLO bench.client\r\n").await.unwrap();
    assert_eq!(smtp_reply(&mut r, &mut line).await, 250);
    let envelope =
        b"MAIL FROM:<bench@client.example>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n".to_vec();
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

/// `qmail run` from `binary` on an ephemeral loopback port.
fn start(binary: &Path, home: &Path) -> (Child, u16) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(binary)
        .args(["run", "--smtp", "127.0.0.1:0", "--home"])
        .arg(home)
        .args(["--user", &current_user()])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("qmail run said where it listens")
            .unwrap();
        if let Some(addr) = line.split("SMTP on ").nth(1) {
            break addr.rsplit(':').next().unwrap().trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, port)
}

/// User and system CPU time of process `pid` so far.
fn cpu(pid: u32) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| Duration::from_millis(fields[i].parse::<u64>().unwrap() * 10);
    (ticks(11), ticks(12))
}

/// Voluntary and involuntary context switches of the waited-for children.
fn children_switches() -> (i64, i64) {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    (
        u.voluntary_context_switches(),
        u.involuntary_context_switches(),
    )
}

fn main() {
    let n = knob("BENCH_MESSAGES", 500);
    let kb = knob("BENCH_SIZE_KB", 4);
    let sessions = knob("BENCH_SESSIONS", 20).max(1);
    let binary: PathBuf = std::env::var_os("BENCH_QMAIL")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_qmail")), PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let home = init_home(None, None);
    set_control(home.path(), "concurrencyincoming", "200");
    set_control(home.path(), "concurrencyperip", "200");
    let (mut child, port) = start(&binary, home.path());
    let pid = child.id();
    let maildir = home.path().join("mailboxes/user/Maildir/new");
    let body = Arc::new(message(kb));

    // The largest thread count, sampled while the mail flows.
    let sampling = Arc::new(AtomicBool::new(true));
    let peak_threads = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (sampling, peak) = (Arc::clone(&sampling), Arc::clone(&peak_threads));
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let t = proc_status_kb(pid, "Threads:") as usize;
                peak.fetch_max(t, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let strace = std::env::var("BENCH_STRACE").ok().map(|out| {
        let s = Command::new("strace")
            .args(["-f", "-c", "-o", &out, "-p", &pid.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // strace says nothing when attached; give it time to seize every thread.
        std::thread::sleep(Duration::from_millis(500));
        s
    });

    let (user0, sys0) = cpu(pid);
    let start_time = Instant::now();
    let left = Arc::new(AtomicUsize::new(n));
    rt.block_on(async {
        let tasks: Vec<_> = (0..sessions)
            .map(|_| {
                tokio::spawn(session(
                    format!("127.0.0.1:{port}"),
                    left.clone(),
                    body.clone(),
                ))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&maildir) < n {
        assert!(Instant::now() < deadline, "not all delivered in time");
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start_time.elapsed();
    let (user1, sys1) = cpu(pid);
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    if let Some(mut s) = strace {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(s.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        s.wait().unwrap();
    }
    let peak_rss = proc_status_kb(pid, "VmHWM:");

    let switches0 = children_switches();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success(), "qmail run stops cleanly");
    let switches1 = children_switches();
    let (vol, invol) = (switches1.0 - switches0.0, switches1.1 - switches0.1);

    let per = |d: Duration| d.as_secs_f64() * 1000.0 / n.max(1) as f64;
    let mb = (n * body.len()) as f64 / (1024.0 * 1024.0);
    println!(
        "flow_cost: {n} x {kb} KB, {sessions} sessions: {:.0} msg/s, {:.1} MB/s delivered; \
         CPU {:.3} ms/msg (user {:.3}, sys {:.3}); context switches {:.1}/msg \
         (voluntary {vol}, involuntary {invol}, whole run); peak threads {}; peak RSS {} MB",
        n as f64 / elapsed.as_secs_f64(),
        mb / elapsed.as_secs_f64(),
        per((user1 - user0) + (sys1 - sys0)),
        per(user1 - user0),
        per(sys1 - sys0),
        (vol + invol) as f64 / n.max(1) as f64,
        peak_threads.load(Ordering::Relaxed),
        peak_rss / 1024,
    );
}
