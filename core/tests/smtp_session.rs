//! Snapshot transcripts of the SMTP server session, in the format of
//! `qmail-observed/smtp-session.txt` (`S:` server bytes, `C:` client bytes,
//! CR and LF shown literally), plus what reaches the queue (`Q:` lines).
//! The scenarios follow the observed qmail sessions, then every error path.

use qmail_core::smtp::{Action, CommitOutcome, RcptHosts, RemoteInfo, SmtpConfig, SmtpSession};

/// The time of observed session 10: `25 Nov 2026 03:33:48 -0000`.
const NOW: u64 = 1_795_577_628;

/// body1.eml of the observed sessions (115 bytes with the final dot).
const BODY1: &str = "From: u2@bench.test\r\nTo: u1@bench.test\r\nSubject: transcript test\r\nMessage-ID: <t1@client.example>\r\n\r\nHello u1.\r\n.\r\n";

/// The configuration of the observed qmail: `tcpserver -R -H -l bench.test`.
fn bench() -> SmtpConfig {
    SmtpConfig {
        remote: RemoteInfo {
            ip: "127.0.0.1".into(),
            host: None,
            info: None,
            local: "bench.test".into(),
        },
        ..SmtpConfig::new("bench.test")
    }
}

/// Drives a session like a client and a queue would, and writes it all down.
struct Transcript {
    session: SmtpSession,
    text: String,
    /// What the queue will say to the next commit.
    commit: CommitOutcome,
    /// The message being received, rendered when it ends.
    message: Vec<u8>,
}

impl Transcript {
    fn new(config: SmtpConfig) -> Self {
        let session = SmtpSession::new(config);
        let mut t = Transcript {
            text: String::new(),
            commit: CommitOutcome::Accepted { time: NOW, qp: 332 },
            message: Vec::new(),
            session,
        };
        let greeting = t.session.greeting();
        t.actions(vec![greeting]);
        t
    }

    /// Sends one command line (CR LF added).
    fn line(&mut self, line: &str) -> &mut Self {
        self.send(format!("{line}\r\n").as_bytes())
    }

    /// Sends `bytes` as one chunk, as a pipelining client would.
    fn send(&mut self, bytes: &[u8]) -> &mut Self {
        render(&mut self.text, "C: ", bytes);
        let mut rest = bytes;
        while !rest.is_empty() {
            let feed = self.session.feed(rest, NOW);
            assert!(feed.consumed > 0 || !feed.actions.is_empty(), "no progress");
            rest = &rest[feed.consumed..];
            self.actions(feed.actions);
            if self.session.is_closed() {
                break;
            }
        }
        self
    }

    fn eof(&mut self) -> &mut Self {
        self.text.push_str("C: <EOF>\n");
        let actions = self.session.end_of_input();
        self.actions(actions);
        self
    }

    fn actions(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Reply(bytes) => render(&mut self.text, "S: ", &bytes),
                Action::BeginMessage { sender, recipients } => {
                    let to: Vec<String> = recipients.iter().map(|r| format!("<{r}>")).collect();
                    self.text
                        .push_str(&format!("Q: begin: from <{sender}> to {}\n", to.join(" ")));
                }
                Action::MessageData(bytes) => self.message.extend_from_slice(&bytes),
                Action::EndMessage => {
                    self.message_text();
                    self.text.push_str("Q: end: commit\n");
                    let actions = self.session.message_committed(self.commit.clone());
                    self.actions(actions);
                }
                Action::AbortMessage => {
                    self.message_text();
                    self.text.push_str("Q: abort\n");
                }
                Action::Close => self.text.push_str("S: <EOF>\n"),
            }
        }
    }

    fn message_text(&mut self) {
        let message = std::mem::take(&mut self.message);
        render(&mut self.text, "Q| ", &message);
    }

    fn finish(&mut self) -> String {
        assert!(self.message.is_empty(), "message data without an end");
        std::mem::take(&mut self.text)
    }
}

/// Writes `bytes` as lines with `prefix`, CR and LF and odd bytes escaped;
/// long runs keep their first and last lines only.
fn render(out: &mut String, prefix: &str, bytes: &[u8]) {
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&c| c == b'\n').collect();
    let shown = |out: &mut String, line: &[u8]| {
        out.push_str(prefix);
        let mut line = line.to_vec();
        if line.len() > 100 {
            let total = line.len();
            let tail = line.split_off(total - 10);
            line.truncate(60);
            line.extend_from_slice(format!("<...{total} bytes in all...>").as_bytes());
            line.extend_from_slice(&tail);
        }
        for &c in &line {
            match c {
                b'\r' => out.push_str("\\r"),
                b'\n' => out.push_str("\\n"),
                b'\t' => out.push_str("\\t"),
                0x20..=0x7e => out.push(char::from(c)),
                _ => out.push_str(&format!("\\x{c:02x}")),
            }
        }
        out.push('\n');
    };
    if lines.len() <= 14 {
        lines.iter().for_each(|l| shown(out, l));
        return;
    }
    lines[..5].iter().for_each(|l| shown(out, l));
    out.push_str(&format!(
        "{prefix}<... {} more lines ...>\n",
        lines.len() - 8
    ));
    lines[lines.len() - 3..].iter().for_each(|l| shown(out, l));
}

fn hops_message(header: &str, count: usize) -> String {
    let mut m = String::new();
    for i in 0..count {
        m.push_str(&format!("{header}: hop {i}\r\n"));
    }
    m.push_str("Subject: loop\r\n\r\nbody\r\n.\r\n");
    m
}

/// Greeting, EHLO, MAIL and one RCPT, as most scenarios start.
fn ready(config: SmtpConfig) -> Transcript {
    let mut t = Transcript::new(config);
    t.line("EHLO client.example")
        .line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>");
    t
}

#[test]
fn observed_1_normal_delivery_and_relay_denied() {
    let mut t = Transcript::new(bench());
    t.line("EHLO client.example")
        .line("MAIL FROM:<u2@bench.test>")
        .line("RCPT TO:<u1@bench.test>")
        .line("RCPT TO:<nosuchuser@bench.test>")
        .line("RCPT TO:<someone@remote.test>")
        .line("RCPT TO:<u3@BENCH.TEST>")
        .line("DATA")
        .send(BODY1.as_bytes())
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_2_helo_misc_and_sequence_errors() {
    let mut t = Transcript::new(bench());
    t.line("HELO client.example")
        .line("NOOP")
        .line("VRFY u1")
        .line("HELP")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .line("MAIL FROM:<>")
        .line("MAIL FROM:<>")
        .line("RSET")
        .line("MAIL FROM: u2@bench.test")
        .line("RCPT TO: u1@bench.test")
        .line("RCPT TO:<u1>")
        .line("RCPT TO:<postmaster>")
        .line("DATA")
        .send(BODY1.as_bytes())
        .line("FOO bar")
        .line("ETRN bench.test")
        .line("AUTH LOGIN")
        .line("STARTTLS")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_3_too_many_hops_101_received() {
    let mut t = ready(bench());
    t.line("DATA")
        .send(hops_message("Received", 101).as_bytes())
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_4_exactly_100_received() {
    let mut t = ready(bench());
    t.line("DATA")
        .send(hops_message("Received", 100).as_bytes())
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn hops_99_received_accepted() {
    let mut t = ready(bench());
    t.line("DATA")
        .send(hops_message("Received", 99).as_bytes())
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_5_delivered_to_101() {
    let mut t = ready(bench());
    t.line("DATA")
        .send(hops_message("Delivered-To", 101).as_bytes())
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn hops_mixed_and_only_in_header() {
    // 50 + 50 in the header loop; 200 in the body do not count.
    let mut m = String::new();
    for i in 0..50 {
        m.push_str(&format!("received: r{i}\r\nDELIVERED-TO: d{i}\r\n"));
    }
    m.push_str("\r\n");
    let looping = format!("{m}.\r\n");
    let mut body_only = String::from("Subject: fine\r\n\r\n");
    for i in 0..200 {
        body_only.push_str(&format!("Received: in the body {i}\r\n"));
    }
    body_only.push_str(".\r\n");
    let mut t = ready(bench());
    t.line("DATA")
        .send(looping.as_bytes())
        .line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(body_only.as_bytes());
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_6_bare_lf() {
    let mut t = ready(bench());
    t.line("DATA")
        .send(b"Subject: bare LF\r\n\r\nthis line ends in a bare LF\nand so on\r\n.\r\n")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_7_no_helo_percent_bang_source_route() {
    let mut t = Transcript::new(bench());
    t.line("MAIL FROM:<x@y.example>")
        .line("RCPT TO:<someone%remote.test@bench.test>")
        .line("RCPT TO:<remote.test!someone@bench.test>")
        .line("RCPT TO:<@bench.test:u1@bench.test>")
        .line("RCPT TO:<@a.example,@bench.test:u2@bench.test>")
        .line("RCPT TO:<>")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_8_data_without_helo() {
    let mut t = Transcript::new(bench());
    t.line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u5@bench.test>")
        .line("DATA")
        .send(b"Subject: no helo\r\n\r\nhi\r\n.\r\n")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_9_helo_equal_to_remote_host() {
    let mut t = Transcript::new(bench());
    t.line("HELO UNKNOWN")
        .line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u5@bench.test>")
        .line("DATA")
        .send(b"Subject: helo unknown\r\n\r\nhi\r\n.\r\n")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn observed_10_eight_bit_dot_stuffing_and_params() {
    let mut t = Transcript::new(bench());
    t.line("EHLO client.example")
        .line("MAIL FROM:<a@b.example> BODY=8BITMIME SIZE=100")
        .line("RCPT TO:<u5@bench.test>")
        .line("DATA")
        .send(
            b"Subject: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe \xff\x00\r\n..leading dot\r\n...\r\n.x\r\nlone\rCR\r\n.\r\n",
        )
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn received_line_with_remote_host_and_info() {
    let mut config = bench();
    config.remote.host = Some("client.example".into());
    config.remote.info = Some("joe".into());
    let mut t = Transcript::new(config);
    // Equal to the remote host name, so no (HELO ...) part.
    t.line("HELO Client.Example")
        .line("MAIL FROM:<joe@client.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(b"\r\nno header\r\n.\r\n")
        // A different, hostile name is made safe.
        .line("EHLO evil (x)\t<y>")
        .line("MAIL FROM:<joe@client.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(b".\r\n");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn relayclient_appends_suffix() {
    let mut config = bench();
    config.relay_client = Some("-relayed".into());
    let mut t = Transcript::new(config);
    t.line("EHLO client.example")
        .line("MAIL FROM:<u2@bench.test>")
        .line("RCPT TO:<someone@remote.test>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(b"Subject: relay\r\n\r\nhi\r\n.\r\n")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn relayclient_empty_allows_any_domain() {
    let mut config = bench();
    config.relay_client = Some(String::new());
    let mut t = Transcript::new(config);
    t.line("MAIL FROM:<u2@bench.test>")
        .line("RCPT TO:<someone@remote.test>")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn rcpthosts_wildcards_and_case() {
    let mut config = bench();
    config.rcpthosts = RcptHosts::new(["bench.test", ".heaven.af.mil", "Example.COM"]);
    let mut t = Transcript::new(config);
    t.line("MAIL FROM:<>")
        .line("RCPT TO:<a@example.com>")
        .line("RCPT TO:<a@sub.example.com>")
        .line("RCPT TO:<a@heaven.af.mil>")
        .line("RCPT TO:<a@x.HEAVEN.af.mil>")
        .line("RCPT TO:<a@sub.bench.test>");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn databytes_exceeded() {
    let mut config = bench();
    config.databytes = 40;
    let mut t = Transcript::new(config);
    // 40 bytes as stored (LF line ends) pass; 41 do not.
    let fits = "Subject: fits exactly\r\n\r\n0123456789abcdef\r\n.\r\n";
    let too_big = "Subject: fits exactly\r\n\r\n0123456789abcdefg\r\n.\r\n";
    t.line("EHLO client.example")
        .line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(fits.as_bytes())
        .line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(too_big.as_bytes())
        .line("NOOP")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn databytes_and_hops_hops_win() {
    let mut config = bench();
    config.databytes = 100;
    let mut t = ready(config);
    t.line("DATA")
        .send(hops_message("Received", 100).as_bytes())
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn size_parameter_too_big() {
    let mut config = bench();
    config.databytes = 1000;
    let mut t = Transcript::new(config);
    t.line("EHLO client.example")
        .line("MAIL FROM:<a@b.example> SIZE=1001")
        .line("RCPT TO:<u1@bench.test>")
        .line("MAIL FROM:<a@b.example> SIZE=99999999999999999999999")
        .line("MAIL FROM:<a@b.example> SIZE=1000")
        .line("RCPT TO:<u1@bench.test>")
        .line("MAIL FROM:<a@b.example> SIZE=junk")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn bad_syntax() {
    let long = format!("RCPT TO:<{}@bench.test>", "x".repeat(900));
    let mut t = Transcript::new(bench());
    t.line("MAIL FROM:<unterminated")
        .line("RCPT TO:<u1@bench.test")
        .line("RCPT u1@bench.test")
        .line("RCPT")
        .line(&long)
        .send(b"RCPT TO:<\xff@bench.test>\r\n")
        .line("MAIL FROM")
        .line("MAIL FROM:")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn out_of_order_commands() {
    let mut t = Transcript::new(bench());
    t.line("DATA")
        .line("RCPT TO:<u1@bench.test>")
        .line("MAIL FROM:<a@b.example>")
        .line("DATA")
        .line("RCPT TO:<u1@bench.test>")
        .line("RSET")
        .line("RCPT TO:<u1@bench.test>")
        .line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>")
        // HELO starts over too.
        .line("HELO client.example")
        .line("DATA")
        .line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(b".\r\n")
        // The transaction is over after the message.
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn pipelined_batch_in_one_chunk() {
    let batch = concat!(
        "EHLO client.example\r\n",
        "MAIL FROM:<a@b.example>\r\n",
        "RCPT TO:<u1@bench.test>\r\n",
        "RCPT TO:<someone@remote.test>\r\n",
        "RCPT TO:<u2@bench.test>\r\n",
        "DATA\r\n",
        "Subject: one\r\n\r\nfirst\r\n.\r\n",
        "MAIL FROM:<c@d.example>\r\n",
        "RCPT TO:<u3@bench.test>\r\n",
        "DATA\r\n",
        "Subject: two\r\n\r\nsecond\r\n.\r\n",
        "NOOP\r\n",
        "QUIT\r\n",
        "NOOP\r\n",
    );
    let mut t = Transcript::new(bench());
    t.send(batch.as_bytes());
    insta::assert_snapshot!(t.finish());
}

#[test]
fn commands_case_insensitive_and_odd_lines() {
    let mut t = Transcript::new(bench());
    t.line("ehlo client.example")
        .line("mail from:<a@b.example>")
        .line("rCpT tO:<u1@bench.test>")
        .line("")
        .line("   ")
        .line("NOOP   with arguments")
        .send(b"NOOP\n")
        .send(b"NO\x00OP\r\n")
        .send(b"HELP me\r\r\n")
        .line("EXPN list")
        .line("TURN")
        .line("qUiT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn line_too_long_closes() {
    let mut t = Transcript::new(bench());
    // 998 bytes plus CR LF is the longest line accepted.
    t.line(&format!("NOOP {}", "x".repeat(993)))
        .line(&format!("NOOP {}", "x".repeat(994)))
        .line("NOOP");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn long_data_lines_are_fine() {
    let body = format!("Subject: long\r\n\r\n{}\r\n.\r\n", "y".repeat(5000));
    let mut t = ready(bench());
    t.line("DATA").send(body.as_bytes());
    insta::assert_snapshot!(t.finish());
}

#[test]
fn ehlo_with_databytes_advertises_size() {
    let mut config = bench();
    config.databytes = 10_485_760;
    let mut t = Transcript::new(config);
    t.line("EHLO client.example");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn too_many_recipients() {
    let mut config = bench();
    config.max_recipients = 2;
    let mut t = Transcript::new(config);
    t.line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("RCPT TO:<u2@bench.test>")
        .line("RCPT TO:<u3@bench.test>")
        .line("DATA")
        .send(b".\r\n");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn queue_failures() {
    let mut t = ready(bench());
    t.commit = CommitOutcome::Failed {
        permanent: false,
        text: "qq write error or disk full (#4.3.0)".into(),
    };
    t.line("DATA").send(b"Subject: x\r\n\r\n.\r\n");
    t.commit = CommitOutcome::Failed {
        permanent: true,
        text: "envelope address too long for qq (#5.1.3)".into(),
    };
    t.line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(b"Subject: y\r\n\r\n.\r\n");
    t.commit = CommitOutcome::Failed {
        permanent: false,
        text: "a filter said\r\nsomething odd".into(),
    };
    t.line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<u1@bench.test>")
        .line("DATA")
        .send(b"Subject: z\r\n\r\n.\r\n")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn client_closes_mid_data() {
    let mut t = ready(bench());
    t.line("DATA")
        .send(b"Subject: cut\r\n\r\nhalf a mess")
        .eof();
    insta::assert_snapshot!(t.finish());
}

#[test]
fn client_closes_while_commit_pending() {
    let message = b"MAIL FROM:<a@b>\r\nRCPT TO:<u1@bench.test>\r\nDATA\r\n.\r\n";
    let mut session = SmtpSession::new(bench());
    let feed = session.feed(&[&message[..], b"QUIT\r\n"].concat(), NOW);
    assert_eq!(feed.consumed, message.len(), "stops after the final dot");
    assert_eq!(feed.actions.last(), Some(&Action::EndMessage));
    assert!(session.awaiting_commit());
    assert_eq!(session.feed(b"QUIT\r\n", NOW).consumed, 0);
    assert_eq!(session.end_of_input(), vec![]);
    let actions = session.message_committed(CommitOutcome::Accepted { time: 7, qp: 9 });
    assert_eq!(
        actions,
        vec![Action::Reply(b"250 ok 7 qp 9\r\n".to_vec()), Action::Close]
    );
    assert!(session.is_closed());
}

#[test]
fn received_line_is_first_and_dated() {
    let mut session = SmtpSession::new(bench());
    let feed = session.feed(
        b"HELO client.example\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u1@bench.test>\r\nDATA\r\n",
        1_795_575_983,
    );
    assert_eq!(
        feed.actions[4..],
        [
            Action::BeginMessage {
                sender: "a@b".into(),
                recipients: vec!["u1@bench.test".into()]
            },
            Action::MessageData(
                b"Received: from unknown (HELO client.example) (127.0.0.1)\n  by bench.test with SMTP; 25 Nov 2026 03:06:23 -0000\n"
                    .to_vec()
            ),
        ]
    );
}

#[test]
fn control_characters_and_long_local_parts_are_refused() {
    let mut t = Transcript::new(bench());
    t.line("EHLO client.example")
        .line("MAIL FROM:<a\rX-Injected: yes@b.example>")
        .line("MAIL FROM:<\"a\\\tb\"@b.example>")
        .line("MAIL FROM:<a@b.example>")
        .line("RCPT TO:<\"a\rX-Injected: yes\"@bench.test>")
        .line("RCPT TO:<a\u{1b}[31m@bench.test>")
        .line("RCPT TO:<a\u{85}@bench.test>")
        .line(&format!("RCPT TO:<{}@bench.test>", "l".repeat(249)))
        .line(&format!("RCPT TO:<{}@bench.test>", "l".repeat(248)))
        .line(&format!("RCPT TO:<{}@bench.test>", "/".repeat(85)))
        .line(&format!("RCPT TO:<{}@bench.test>", "/".repeat(86)))
        .line("RCPT TO:<a/b@bench.test>")
        .line("QUIT");
    insta::assert_snapshot!(t.finish());
}

#[test]
fn refusals_are_kept_for_the_log() {
    let mut s = SmtpSession::new(bench());
    let input = b"HELO c\r\nMAIL FROM:<a\rb>\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@remote.test>\r\nRCPT TO:<u1@bench.test>\r\nRCPT TO u1@bench.test\r\n";
    let fed = s.feed(input, NOW);
    assert_eq!(fed.consumed, input.len());
    let r: Vec<(&str, String, &str)> = s
        .take_refusals()
        .into_iter()
        .map(|r| (r.command, r.address, r.reason))
        .collect();
    assert_eq!(
        r,
        [
            (
                "mail",
                "FROM:<a\rb>".into(),
                "control character in the address"
            ),
            ("rcpt", "x@remote.test".into(), "domain not in rcpthosts"),
            ("rcpt", "TO u1@bench.test".into(), "syntax error"),
        ]
    );
    assert!(s.take_refusals().is_empty(), "taken once");
}
