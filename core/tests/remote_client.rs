//! Transcripts of the SMTP client (qmail-remote's conversation) against
//! scripted servers, in the format of `qmail-observed/qmail-remote-client.txt`
//! (`S:` server bytes, `C:` client bytes, CR and LF shown literally), each
//! followed by the outcome reported for every recipient. The client runs
//! through its real driver over an in-memory connection. The server logs
//! every line of one read before answering any, so commands the client
//! pipelined show as a batch; message lines past the eighth are counted,
//! not shown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmail_core::deliver::Outcome;
use qmail_core::remote::{
    ClientSession, Measure, MessageReader, SessionEnd, Transaction, run_session,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// A server's answer to one command (or to the final dot, as `"."`).
enum Answer {
    Say(&'static str),
    /// Close the connection instead of answering.
    Drop,
}
use Answer::{Drop, Say};

/// A scripted server: `answer` decides each reply from the command line.
struct Server {
    greeting: Answer,
    answer: fn(&str) -> Answer,
    /// Close the connection after this many message lines.
    drop_in_data_after: Option<usize>,
}

const EHLO_FULL: &str = "250-mx.remote.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000";

fn esmtp(cmd: &str) -> Answer {
    match cmd.split(' ').next().unwrap_or("") {
        "EHLO" => Say(EHLO_FULL),
        "MAIL" => Say("250 2.1.0 Ok"),
        "RCPT" => Say("250 2.1.5 Ok"),
        "DATA" => Say("354 End data with <CR><LF>.<CR><LF>"),
        "." => Say("250 2.0.0 Ok: queued as X1"),
        "QUIT" => Say("221 2.0.0 Bye"),
        _ => Say("502 unimplemented"),
    }
}

fn render(out: &mut String, who: &str, bytes: &[u8]) {
    for line in bytes.split_inclusive(|&c| c == b'\n') {
        out.push_str(who);
        for &c in line {
            match c {
                b'\r' => out.push_str("\\r"),
                b'\n' => out.push_str("\\n"),
                c if c.is_ascii_graphic() || c == b' ' => out.push(c as char),
                c => out.push_str(&format!("\\x{c:02x}")),
            }
        }
        out.push('\n');
    }
}

/// Writes the answer (and logs it); false when the connection is over.
async fn say(conn: &mut DuplexStream, a: &Answer, log: &Arc<Mutex<String>>) -> bool {
    match a {
        Say(t) => {
            let t = format!("{t}\r\n");
            render(&mut log.lock().unwrap(), "S: ", t.as_bytes());
            conn.write_all(t.as_bytes()).await.is_ok()
        }
        Drop => {
            log.lock().unwrap().push_str("S: <closes the connection>\n");
            let _ = conn.shutdown().await;
            false
        }
    }
}

async fn serve(server: Server, mut conn: DuplexStream, log: Arc<Mutex<String>>) {
    if !say(&mut conn, &server.greeting, &log).await {
        return;
    }
    let mut buf = Vec::new();
    let mut in_data = false;
    let mut data_lines = 0;
    let (mut shown_data, mut hidden_data) = (0, 0);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                log.lock().unwrap().push_str("-- client closed\n");
                return;
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        // Every line of this read is logged before any answer, so a
        // pipelined batch shows as one: lines a client sent together.
        let mut lines = Vec::new();
        let mut data = in_data;
        while let Some(nl) = buf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let mut log = log.lock().unwrap();
            if data && line != b".\r\n" {
                shown_data += 1;
                if shown_data <= 8 {
                    render(&mut log, "C: ", &line);
                } else {
                    hidden_data += 1;
                }
            } else {
                if hidden_data > 0 {
                    log.push_str(&format!("C: <{hidden_data} more message lines>\n"));
                    hidden_data = 0;
                }
                data = false;
                shown_data = 0;
                render(&mut log, "C: ", &line);
            }
            lines.push(line);
        }
        if hidden_data > 0 && server.drop_in_data_after.is_some() {
            log.lock()
                .unwrap()
                .push_str(&format!("C: <{hidden_data} more message lines>\n"));
            hidden_data = 0;
        }
        for line in lines {
            let text = String::from_utf8_lossy(&line);
            let cmd = text.trim_end_matches(['\r', '\n']);
            let answer = if in_data {
                if cmd != "." {
                    data_lines += 1;
                    if server.drop_in_data_after == Some(data_lines) {
                        log.lock().unwrap().push_str("S: <closes the connection>\n");
                        let _ = conn.shutdown().await;
                        return;
                    }
                    continue;
                }
                in_data = false;
                (server.answer)(".")
            } else {
                (server.answer)(cmd)
            };
            if let Say(t) = &answer
                && cmd == "DATA"
                && t.starts_with('3')
            {
                in_data = true;
            }
            if !say(&mut conn, &answer, &log).await {
                return;
            }
        }
    }
}

const MESSAGE: &[u8] =
    b"From: u2@bench.test\nTo: r1@remote.test\nSubject: hi\n\nA line.\n.dot-led line\n";

async fn transcript(server: Server, recipients: &[&str], message: &'static [u8]) -> String {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let log = Arc::new(Mutex::new(String::new()));
    let srv = tokio::spawn(serve(server, server_end, log.clone()));
    let mut m = Measure::new();
    m.feed(message);
    let tx = Transaction {
        sender: "u2@bench.test".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        facts: m.finish(),
    };
    let session = ClientSession::new("bench.test", "192.0.2.25", tx);
    let end = run_session(client_end, session, message, Duration::from_secs(30)).await;
    srv.await.unwrap();
    let mut out = log.lock().unwrap().clone();
    out.push_str("== outcome\n");
    match end {
        SessionEnd::NextHost(t) => out.push_str(&format!("next host: {t:?}\n")),
        SessionEnd::Done(report) => {
            let said = String::from_utf8_lossy(&report.qmail_remote_output())
                .replace('\n', "\\n")
                .replace('\0', "\\0\n");
            out.push_str(&format!("qmail-remote's report:\n{said}"));
            for (r, o) in recipients.iter().zip(report.outcomes()) {
                let (kind, t) = match &o {
                    Outcome::Success(t) => ("success", t),
                    Outcome::Deferral(t) => ("deferral", t),
                    Outcome::Failure(t) => ("failure", t),
                };
                out.push_str(&format!("{r}: {kind}: {t:?}\n"));
            }
        }
    }
    out
}

fn server(answer: fn(&str) -> Answer) -> Server {
    Server {
        greeting: Say("220 mx.remote.test ESMTP"),
        answer,
        drop_in_data_after: None,
    }
}

const TWO: &[&str] = &["r1@remote.test", "r2@remote.test"];

#[tokio::test]
async fn accept_pipelined() {
    insta::assert_snapshot!(transcript(server(esmtp), TWO, MESSAGE).await);
}

#[tokio::test]
async fn greeting_4xx_and_5xx_try_the_next_host() {
    let mut s = server(esmtp);
    s.greeting = Say("421 mx.remote.test busy, try later");
    insta::assert_snapshot!("greeting_4xx", transcript(s, TWO, MESSAGE).await);
    let mut s = server(esmtp);
    s.greeting = Say("554 mx.remote.test no service");
    insta::assert_snapshot!("greeting_5xx", transcript(s, TWO, MESSAGE).await);
}

#[tokio::test]
async fn ehlo_refused_falls_back_to_helo_without_pipelining() {
    insta::assert_snapshot!(
        "ehlo_5xx_helo_ok",
        transcript(
            server(|c| match c {
                c if c.starts_with("EHLO") => Say("502 unimplemented (#5.5.1)"),
                c if c.starts_with("HELO") => Say("250 mx.remote.test"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
    insta::assert_snapshot!(
        "ehlo_4xx_helo_4xx",
        transcript(
            server(|c| match c {
                c if c.starts_with("EHLO") => Say("451 not now"),
                c if c.starts_with("HELO") => Say("451 still not now"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
}

#[tokio::test]
async fn no_pipelining_one_command_at_a_time() {
    insta::assert_snapshot!(
        transcript(
            server(|c| match c {
                c if c.starts_with("EHLO") => Say("250-mx.remote.test\r\n250 8BITMIME"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
}

#[tokio::test]
async fn mail_4xx_and_5xx() {
    insta::assert_snapshot!(
        "mail_4xx",
        transcript(
            server(|c| match c {
                c if c.starts_with("MAIL") => Say("451 4.3.0 sender check failed, try later"),
                c if c.starts_with("RCPT") || c == "DATA" => Say("503 5.5.1 MAIL first"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
    insta::assert_snapshot!(
        "mail_5xx",
        transcript(
            server(|c| match c {
                c if c.starts_with("MAIL") => Say("553 5.1.8 sender domain does not exist"),
                c if c.starts_with("RCPT") || c == "DATA" => Say("503 5.5.1 MAIL first"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
}

#[tokio::test]
async fn rcpt_some_refused_4xx_and_5xx() {
    insta::assert_snapshot!(transcript(
        server(|c| match c {
            "RCPT TO:<reject-me@remote.test>" => Say(
                "550 5.1.1 <reject-me@remote.test>: Recipient address rejected: User unknown in virtual mailbox table"
            ),
            "RCPT TO:<later@remote.test>" => Say("450 4.2.1 mailbox busy"),
            c => esmtp(c),
        }),
        &["r1@remote.test", "reject-me@remote.test", "later@remote.test"],
        MESSAGE
    )
    .await);
}

#[tokio::test]
async fn rcpt_all_refused_gives_up_without_a_message() {
    insta::assert_snapshot!(
        transcript(
            server(|c| match c {
                c if c.starts_with("RCPT") => Say("550 5.1.1 no such user"),
                "DATA" => Say("554 5.5.1 no valid recipients"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
}

#[tokio::test]
async fn data_4xx_and_5xx() {
    insta::assert_snapshot!(
        "data_4xx",
        transcript(
            server(|c| match c {
                "DATA" => Say("451 4.3.0 no room now"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
    insta::assert_snapshot!(
        "data_5xx",
        transcript(
            server(|c| match c {
                "DATA" => Say("554 5.3.0 no data for you"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
}

#[tokio::test]
async fn after_the_dot_4xx_5xx_and_multiline() {
    insta::assert_snapshot!(
        "dot_4xx",
        transcript(
            server(|c| match c {
                "." => Say("451 4.7.1 greylisted, come back later"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
    insta::assert_snapshot!(
        "dot_5xx_multiline",
        transcript(
            server(|c| match c {
                "." => Say("554-5.7.1 message refused:\r\n554-it looks like spam\r\n554 5.7.1 go away"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
    insta::assert_snapshot!(
        "dot_250_multiline",
        transcript(
            server(|c| match c {
                "." => Say("250-2.0.0 Ok:\r\n250 2.0.0 queued as X9"),
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
}

#[tokio::test]
async fn drops() {
    // Larger than the connection's buffer: the client is still writing
    // when the server goes.
    static BIG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut m = b"Subject: big\n\n".to_vec();
        for i in 0..20_000 {
            m.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        m
    });
    let mut s = server(esmtp);
    s.answer = |c| match c {
        c if c.starts_with("EHLO") => Say("250-mx.remote.test\r\n250 PIPELINING"),
        c => esmtp(c),
    };
    s.drop_in_data_after = Some(2);
    insta::assert_snapshot!("drop_mid_data", transcript(s, TWO, &BIG).await);
    insta::assert_snapshot!(
        "drop_after_dot",
        transcript(
            server(|c| match c {
                "." => Drop,
                c => esmtp(c),
            }),
            TWO,
            MESSAGE
        )
        .await
    );
    let mut s = server(esmtp);
    s.greeting = Drop;
    insta::assert_snapshot!("drop_at_greeting", transcript(s, TWO, MESSAGE).await);
}

#[tokio::test]
async fn size_over_the_limit_is_not_sent_and_8bit_is_declared() {
    static BIG: [u8; 200_000] = [b'x'; 200_000];
    let t = transcript(server(esmtp), TWO, &BIG).await;
    assert!(!t.contains("MAIL FROM"), "{t}");
    insta::assert_snapshot!("size_over_limit", t);
    insta::assert_snapshot!(
        "eight_bit",
        transcript(
            server(esmtp),
            TWO,
            "Subject: caf\u{e9}\n\nna\u{ef}ve\n".as_bytes()
        )
        .await
    );
}

/// A reader for one test: a message that fails part way.
struct Failing(usize);

impl MessageReader for Failing {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("EIO"));
        }
        self.0 -= 1;
        buf[..5].copy_from_slice(b"abc\n.");
        Ok(5)
    }
}

#[tokio::test]
async fn unreadable_message_closes_without_the_dot() {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let log = Arc::new(Mutex::new(String::new()));
    let srv = tokio::spawn(serve(server(esmtp), server_end, log.clone()));
    let tx = Transaction {
        sender: "u2@bench.test".into(),
        recipients: vec!["r1@remote.test".into()],
        facts: Default::default(),
    };
    let session = ClientSession::new("bench.test", "192.0.2.25", tx);
    let end = run_session(client_end, session, Failing(2), Duration::from_secs(30)).await;
    srv.await.unwrap();
    let log = log.lock().unwrap().clone();
    assert!(!log.contains("C: .\\r\\n"), "{log}");
    let SessionEnd::Done(report) = end else {
        panic!("{end:?}")
    };
    assert_eq!(
        report.outcomes(),
        [Outcome::Deferral(
            "Unable to read message. (#4.3.0)\n".into()
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_out() {
    let (client_end, _server_end) = tokio::io::duplex(1024);
    let tx = Transaction {
        sender: "".into(),
        recipients: vec!["r1@remote.test".into()],
        facts: Default::default(),
    };
    let session = ClientSession::new("bench.test", "192.0.2.25", tx);
    let end = run_session(client_end, session, MESSAGE, Duration::from_secs(1200)).await;
    assert!(matches!(end, SessionEnd::NextHost(t) if t.contains("connection died")));
}
