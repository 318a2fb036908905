//! `qmail run` against clients that would shut others out: a flood of idle
//! connections, one address taking every slot, clients that trickle bytes;
//! and SIGHUP rereading the SMTP service's control files.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

mod support;

use support::{QmailRun, init_home, set_control};

const GREETING: &str = "220 bench.test ESMTP";
const REFUSAL: &str = "421 bench.test too many connections, try again later (#4.3.2)";

fn server(controls: &[(&str, &str)]) -> QmailRun {
    let home = init_home(None, Some("bench.test"));
    for (name, value) in controls {
        set_control(home.path(), name, value);
    }
    QmailRun::start_logging(home, "info")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Connects from `from` (any 127.0.0.0/8 address is loopback on Linux).
async fn connect(from: Ipv4Addr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap()
}

/// The first line the server sends, and how long it took from the connect.
async fn first_line(from: Ipv4Addr, port: u16) -> (TcpStream, String, Duration) {
    let start = Instant::now();
    let mut stream = connect(from, port).await;
    let line = tokio::time::timeout(Duration::from_secs(10), read_line(&mut stream))
        .await
        .expect("a first line within 10 s");
    (stream, line, start.elapsed())
}

/// One line, CR LF removed; empty at end of stream.
async fn read_line(stream: &mut TcpStream) -> String {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    // One reply line per read in these tests: nothing is lost to the buffer.
    assert!(r.buffer().is_empty(), "more than one line: {line:?}");
    line.trim_end().to_string()
}

/// Opens `n` connections from `from` at once and returns them with their
/// first lines and the time each took.
async fn open_many(from: Ipv4Addr, port: u16, n: usize) -> Vec<(TcpStream, String, Duration)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(first_line(from, port)))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A whole transaction; returns the reply to the final dot.
async fn send_mail(stream: &mut TcpStream, rcpt: &str) -> String {
    let mut replies = Vec::new();
    for cmd in [
        "HELO client.example".to_string(),
        "MAIL FROM:<a@client.example>".into(),
        format!("RCPT TO:<{rcpt}>"),
        "DATA".into(),
        "Subject: served\r\n\r\nhello\r\n.".into(),
        "QUIT".into(),
    ] {
        stream
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .unwrap();
        replies.push(read_line(stream).await);
    }
    assert!(replies[0].starts_with("250 "), "{replies:?}");
    assert_eq!(
        replies[1..4],
        ["250 ok", "250 ok", "354 go ahead"],
        "{replies:?}"
    );
    assert!(replies[5].starts_with("221 "), "{replies:?}");
    replies[4].clone()
}

fn count(lines: &[(TcpStream, String, Duration)], text: &str) -> usize {
    lines.iter().filter(|(_, l, _)| l == text).count()
}

#[test]
fn an_idle_flood_from_one_address_gets_421_and_others_are_served() {
    // concurrencyperip at its default, 20.
    let srv = server(&[("concurrencyincoming", "100")]);
    let rt = runtime();
    rt.block_on(async {
        let local = Ipv4Addr::LOCALHOST;
        let held = open_many(local, srv.port, 300).await;
        assert_eq!(count(&held, GREETING), 20, "greeted");
        assert_eq!(count(&held, REFUSAL), 280, "refused");
        let slowest = held
            .iter()
            .filter(|(_, l, _)| l == REFUSAL)
            .map(|(_, _, t)| *t)
            .max()
            .unwrap();
        // The bug was no answer at all (the listener stopped accepting);
        // the bound only tells an answer from none, far below the session
        // timeout. The time is printed, not judged: speed belongs to the
        // benchmarks, and this test shares two cores with the whole suite.
        eprintln!("slowest 421 of 280: {slowest:?}");
        assert!(slowest < Duration::from_secs(10), "a 421 took {slowest:?}");
        // A refused connection is closed after its 421.
        let (mut refused, ..) = held.into_iter().find(|(_, l, _)| l == REFUSAL).unwrap();
        assert_eq!(read_line(&mut refused).await, "", "closed after the 421");

        // While the 20 idle sessions are held, another address is served.
        let (mut other, line, _) = first_line(Ipv4Addr::new(127, 0, 0, 2), srv.port).await;
        assert_eq!(line, GREETING);
        let done = send_mail(&mut other, "u1@bench.test").await;
        assert!(done.starts_with("250 ok "), "{done}");
    });
    srv.wait_for_log(
        "smtpd: refused connection from 127.0.0.1: 20 connections from this address, concurrencyperip is 20",
        Duration::from_secs(5),
    );
}

#[test]
fn over_concurrencyincoming_connections_get_421_and_slots_come_back() {
    let srv = server(&[("concurrencyincoming", "100"), ("concurrencyperip", "50")]);
    let rt = runtime();
    rt.block_on(async {
        // 300 idle connections from six addresses, 50 each.
        let mut held = Vec::new();
        for last in 1..=6 {
            held.extend(open_many(Ipv4Addr::new(127, 0, 0, last), srv.port, 50).await);
        }
        assert_eq!(count(&held, GREETING), 100, "greeted");
        assert_eq!(count(&held, REFUSAL), 200, "refused");
        let slowest = held
            .iter()
            .filter(|(_, l, _)| l == REFUSAL)
            .map(|(_, _, t)| *t)
            .max()
            .unwrap();
        // The bug was no answer at all (the listener stopped accepting);
        // the bound only tells an answer from none, far below the session
        // timeout. The time is printed, not judged: speed belongs to the
        // benchmarks, and this test shares two cores with the whole suite.
        eprintln!("slowest 421 of 280: {slowest:?}");
        assert!(slowest < Duration::from_secs(10), "a 421 took {slowest:?}");
        let (_, line, _) = first_line(Ipv4Addr::new(127, 0, 0, 7), srv.port).await;
        assert_eq!(line, REFUSAL, "every slot is taken");

        // The idle clients leave: their slots come back.
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (mut s, line, _) = first_line(Ipv4Addr::new(127, 0, 0, 7), srv.port).await;
            if line == GREETING {
                let done = send_mail(&mut s, "u1@bench.test").await;
                assert!(done.starts_with("250 ok "), "{done}");
                break;
            }
            assert!(Instant::now() < deadline, "slots never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    srv.wait_for_log(
        "smtpd: refused connection from 127.0.0.7: 100 connections, concurrencyincoming is 100",
        Duration::from_secs(5),
    );
}

/// Sends `bytes` one per second until the server closes; returns what it
/// answered after `prefix` and when it closed (from the first trickled byte).
async fn trickle(port: u16, prefix: &[u8], bytes: &[u8]) -> (String, Duration) {
    let mut s = connect(Ipv4Addr::LOCALHOST, port).await;
    assert_eq!(read_line(&mut s).await, GREETING);
    s.write_all(prefix).await.unwrap();
    let (r, mut w) = s.into_split();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut r = BufReader::new(r);
        let mut all = String::new();
        while r.read_line(&mut all).await.unwrap_or(0) > 0 {}
        (all, start.elapsed())
    });
    for b in bytes {
        if w.write_all(&[*b]).await.is_err() || reader.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the server closed")
        .unwrap()
}

#[test]
fn clients_trickling_a_byte_a_second_are_cut_off() {
    // Each read comes within a second, far inside timeoutsmtpd; the whole
    // line must come within it too, and the whole DATA within
    // timeoutsmtpddata.
    let srv = server(&[("timeoutsmtpd", "3"), ("timeoutsmtpddata", "4")]);
    let rt = runtime();
    rt.block_on(async {
        let slow = [b'a'; 30];
        let (line_case, data_case) = tokio::join!(
            trickle(srv.port, b"HELO ", &slow),
            trickle(
                srv.port,
                b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u1@bench.test>\r\nDATA\r\n",
                &slow
            ),
        );
        let (out, took) = line_case;
        assert!(out.ends_with("451 timeout (#4.4.2)\r\n"), "{out:?}");
        assert!(
            took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
            "line cut off after {took:?}"
        );
        let (out, took) = data_case;
        assert!(
            out.ends_with("354 go ahead\r\n451 timeout (#4.4.2)\r\n"),
            "{out:?}"
        );
        assert!(
            took >= Duration::from_millis(3500) && took < Duration::from_secs(7),
            "DATA cut off after {took:?}"
        );
    });
    srv.wait_for_log(
        "smtpd: timeout from 127.0.0.1: command line not complete after 3 s",
        Duration::from_secs(5),
    );
    srv.wait_for_log(
        "smtpd: timeout from 127.0.0.1: DATA not complete after 4 s",
        Duration::from_secs(5),
    );
    let queued = std::fs::read_dir(srv.home.path().join("queue/tmp"))
        .unwrap()
        .count();
    assert_eq!(queued, 0, "the cut-off message left nothing behind");
}

/// One RCPT in a fresh session; returns its reply.
async fn try_rcpt(port: u16, rcpt: &str) -> String {
    let mut s = connect(Ipv4Addr::LOCALHOST, port).await;
    assert_eq!(read_line(&mut s).await, GREETING);
    let mut replies = Vec::new();
    for cmd in [
        "HELO c",
        "MAIL FROM:<a@b>",
        &format!("RCPT TO:<{rcpt}>"),
        "QUIT",
    ] {
        s.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        replies.push(read_line(&mut s).await);
    }
    replies[2].clone()
}

#[test]
fn sighup_rereads_rcpthosts_and_a_bad_file_keeps_the_old_values() {
    let srv = server(&[]);
    let rt = runtime();
    let denied = "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)";
    rt.block_on(async {
        assert_eq!(try_rcpt(srv.port, "u@new.test").await, denied);
    });
    srv.wait_for_log(
        "smtpd: refused rcpt <u@new.test> from 127.0.0.1: domain not in rcpthosts",
        Duration::from_secs(5),
    );

    set_control(srv.home.path(), "rcpthosts", "bench.test\nnew.test");
    srv.signal("HUP");
    srv.wait_for_log("smtpd: control files reread", Duration::from_secs(10));
    rt.block_on(async {
        assert_eq!(try_rcpt(srv.port, "u@new.test").await, "250 ok");
    });

    // A control file that does not parse: the old values stay, and the log
    // says which file and why.
    set_control(srv.home.path(), "rcpthosts", "bench.test");
    set_control(srv.home.path(), "databytes", "lots");
    srv.signal("HUP");
    let why = srv.wait_for_log(
        "smtpd: control files not reread, keeping the old values",
        Duration::from_secs(10),
    );
    assert!(why.contains("databytes") && why.contains("lots"), "{why}");
    rt.block_on(async {
        assert_eq!(try_rcpt(srv.port, "u@new.test").await, "250 ok");
    });
    // ANSI colour codes only on a terminal; this log is a pipe.
    let log = srv.log.lock().unwrap().join("\n");
    assert!(!log.contains('\u{1b}'), "escape codes in {log}");
}
