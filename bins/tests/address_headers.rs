//! Property: no address the SMTP server accepts at MAIL or RCPT, and no
//! HELO name, produces a header line other than the one intended. Random
//! senders and local parts (quotes, backslashes, CR, TAB, ESC, DEL, C1
//! controls, non-ASCII, line and paragraph separators, `@`, `/`, `:`; an
//! LF cannot be sent inside a command line at all) go
//! through `qmail run` into maildirs; python's `email` parser reads every
//! delivered message back and its header names must be exactly those the
//! server writes plus the client's own.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use qmail_core::local::mailbox_name;

mod support;

use support::{QmailRun, init_home, set_control};

/// How many addresses the property is checked on.
const CASES: usize = 300;

/// Characters an address is made of: ordinary ones and every kind that has
/// a meaning in a header or to a terminal.
fn address_text() -> impl Strategy<Value = String> {
    let pieces = proptest::sample::select(vec![
        "a",
        "b",
        "Z",
        "0",
        ".",
        "-",
        "+",
        "=",
        "_",
        "\"",
        "\\",
        " ",
        "<",
        ">",
        "@",
        ":",
        "/",
        ",",
        ";",
        "(",
        ")",
        "[",
        "]",
        "\r",
        "\t",
        "\u{1b}",
        "\u{7f}",
        "\u{85}",
        "\u{9b}",
        "\u{e9}",
        "\u{2028}",
        "\u{2029}",
        "\u{feff}",
        "X-Injected: yes",
        "\rX-Injected: yes",
        "\rBcc: x@evil.example",
        "%",
        "!",
    ]);
    proptest::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
}

/// `text` as a path argument that the server's parser reads back as
/// `text`: every byte with a meaning to it escaped.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '>' | '<' | ' ' | '@' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads one reply (all its lines); returns its last line.
fn reply(r: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.len() >= 4, "short reply {line:?}");
        if line.as_bytes()[3] == b' ' {
            return line.trim_end().to_string();
        }
    }
}

/// One case: the sender, the local part, and what the server said.
struct Case {
    sender: String,
    local: String,
    mail: String,
    rcpt: String,
}

impl Case {
    fn accepted(&self) -> bool {
        self.mail == "250 ok" && self.rcpt == "250 ok"
    }
}

#[test]
fn no_accepted_address_forges_a_header_line() {
    let home = init_home(None, Some("bench.test"));
    set_control(home.path(), "locals", "bench.test");
    let srv = QmailRun::start(home);
    let stream = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    assert!(reply(&mut r).starts_with("220 "));
    // A HELO name with a CR in it ends up in the Received line.
    w.write_all(b"HELO evil\r\rX-Helo-Injected: yes\r\n")
        .unwrap();
    assert!(reply(&mut r).starts_with("250 "));

    let mut runner = TestRunner::deterministic();
    let strategy = (address_text(), address_text());
    let mut cases = Vec::new();
    for i in 0..CASES {
        let (sender, tail) = strategy.new_tree(&mut runner).unwrap().current();
        // A unique, ordinary start keeps each case in its own mailbox and
        // away from the alias files.
        let local = format!("t{i}x{tail}");
        w.write_all(format!("MAIL FROM:<{}>\r\n", escape(&sender)).as_bytes())
            .unwrap();
        let mail = reply(&mut r);
        w.write_all(format!("RCPT TO:<{}@bench.test>\r\n", escape(&local)).as_bytes())
            .unwrap();
        let rcpt = reply(&mut r);
        let case = Case {
            sender,
            local,
            mail,
            rcpt,
        };
        if case.accepted() {
            w.write_all(b"DATA\r\n").unwrap();
            assert_eq!(reply(&mut r), "354 go ahead");
            w.write_all(format!("Subject: case {i}\r\n\r\nbody\r\n.\r\n").as_bytes())
                .unwrap();
            assert!(reply(&mut r).starts_with("250 ok "));
        } else {
            // Refused with a permanent reply, and it says why.
            let refusal = if case.mail == "250 ok" {
                &case.rcpt
            } else {
                &case.mail
            };
            assert!(refusal.starts_with('5'), "{refusal}");
            w.write_all(b"RSET\r\n").unwrap();
            assert_eq!(reply(&mut r), "250 flushed");
        }
        cases.push(case);
    }
    w.write_all(b"QUIT\r\n").unwrap();

    let accepted: Vec<&Case> = cases.iter().filter(|c| c.accepted()).collect();
    let refused = cases.len() - accepted.len();
    assert!(
        accepted.len() > CASES / 4,
        "only {} accepted",
        accepted.len()
    );
    assert!(refused > CASES / 4, "only {refused} refused");
    for c in &cases {
        let controls = format!("{}{}", c.sender, c.local)
            .chars()
            .any(char::is_control);
        assert_eq!(
            c.accepted(),
            !controls,
            "{:?} {:?}: {} / {}",
            c.sender,
            c.local,
            c.mail,
            c.rcpt
        );
    }

    // Every accepted message is delivered to the mailbox of its local part.
    let mailboxes = srv.home.path().join("mailboxes");
    let files: Vec<PathBuf> = accepted
        .iter()
        .map(|c| {
            let new = mailboxes.join(mailbox_name(&c.local)).join("Maildir/new");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(f) = std::fs::read_dir(&new)
                    .ok()
                    .and_then(|mut d| d.next())
                    .map(|e| e.unwrap().path())
                {
                    return f;
                }
                assert!(Instant::now() < deadline, "{:?} not delivered", c.local);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .collect();

    // python's email parser reads each back: the header names, the
    // Return-Path and Delivered-To values and the parser's complaints, one
    // message a line, fields split by RS, names by US.
    let script = r#"
import email, email.policy, sys
out = sys.stdout.buffer
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        m = email.message_from_binary_file(f, policy=email.policy.compat32)
    # The raw values: non-ASCII bytes as they were (surrogate-escaped).
    raw = dict(reversed(m._headers))
    fields = ['\x1f'.join(m.keys()), raw['Return-Path'], raw['Delivered-To'], str(len(m.defects))]
    out.write('\x1e'.join(fields).encode('utf-8', 'surrogateescape') + b'\n')
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&files)
        .stderr(Stdio::inherit())
        .output()
        .expect("python3 runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    assert_eq!(lines.len(), accepted.len());
    for (c, line) in accepted.iter().zip(lines) {
        let fields: Vec<&str> = line.split('\u{1e}').collect();
        let why = format!("sender {:?} local {:?}: {fields:?}", c.sender, c.local);
        assert_eq!(fields.len(), 4, "{why}");
        let names: Vec<&str> = fields[0].split('\u{1f}').collect();
        assert_eq!(
            names,
            [
                "Return-Path",
                "Delivered-To",
                "Received",
                "Received",
                "Subject"
            ],
            "{why}"
        );
        assert_eq!(fields[1], format!("<{}>", c.sender), "{why}");
        assert!(
            fields[2].ends_with(&format!("{}@bench.test", c.local)),
            "{why}"
        );
        assert_eq!(fields[3], "0", "parser defects: {why}");
    }
}
