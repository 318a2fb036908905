//! `qmail run` driven by real SMTP clients (swaks, curl, python3's smtplib)
//! on 127.0.0.1: each message lands in the queue byte for byte, behind the
//! two Received lines qmail adds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{QmailRun, have, init_home};

/// Messages in the queue (todo/, or mess/ once the scheduler took them
/// in), oldest first. Intake links a message into mess/ and syncs before
/// it removes the todo/ name: a file seen under both names is one message.
fn queued(server: &QmailRun) -> Vec<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let q = server.home.path().join("queue");
    // mess/ first: of a file under both names, the todo/ one is the name
    // about to go.
    let mut dirs: Vec<PathBuf> = (0..23)
        .map(|n| q.join("mess").join(n.to_string()))
        .collect();
    dirs.push(q.join("todo"));
    let mut names: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|p| std::fs::metadata(p).is_ok_and(|m| seen.insert(m.ino())));
    names.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn wait_for_messages(server: &QmailRun, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let q = queued(server);
        if q.len() >= n || Instant::now() > deadline {
            return q;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const BODY: &str = "From: alice@example.org\r\nTo: u1@localhost\r\nSubject: clients\r\n\r\nHello.\r\n.leading dot\r\n8-bit: \u{e9}t\u{e9}\r\n";

/// The message as the queue must hold it: LF line ends, dot-unstuffed.
fn stored_body() -> Vec<u8> {
    BODY.replace("\r\n", "\n").into_bytes()
}

/// Splits a queue file into (Received lines, the rest of the message).
fn split_message(file: &[u8]) -> (String, Vec<u8>, Vec<u8>) {
    let header_len = file.iter().position(|&b| b == b'\n').unwrap() + 1;
    let header = String::from_utf8(file[..header_len].to_vec()).unwrap();
    let len: usize = header.split(' ').nth(1).unwrap().parse().unwrap();
    let message = &file[header_len..header_len + len];
    let envelope = file[header_len + len..].to_vec();
    let text = String::from_utf8_lossy(message);
    let mut received = String::new();
    let mut rest = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("Received:") || line.starts_with("  by ") {
            received.push_str(line);
            rest += line.len();
        } else {
            break;
        }
    }
    (received, message[rest..].to_vec(), envelope)
}

fn check(file: &[u8], helo: &str, rcpts: &[&str]) {
    let (received, mut body, envelope) = split_message(file);
    if helo == "swaks.example" {
        // swaks always ends the data with one more CRLF of its own before
        // the final dot; that line is the client's, not ours.
        assert_eq!(body.pop(), Some(b'\n'), "swaks's own line end");
    }
    assert!(received.starts_with("Received: (qmail "), "{received}");
    assert!(received.contains(" invoked from network); "), "{received}");
    assert!(
        received.contains(&format!(
            "Received: from unknown (HELO {helo}) (127.0.0.1)\n  by "
        )),
        "{received}"
    );
    assert_eq!(body, stored_body(), "message stored byte for byte");
    let mut want = b"Falice@example.org\0".to_vec();
    for r in rcpts {
        want.extend_from_slice(format!("T{r}\0").as_bytes());
    }
    want.push(0);
    assert_eq!(envelope, want, "envelope");
}

#[test]
fn swaks_curl_and_smtplib_deliver_into_the_queue() {
    let home = init_home(None, None);
    // Local delivery would take the messages out of the queue before they
    // are looked at: every local delivery defers instead.
    std::fs::write(home.path().join("alias/.qmail-default"), "|exit 111\n").unwrap();
    let server = QmailRun::start(home);
    let port = server.port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("msg.eml");
    std::fs::write(&msg, BODY).unwrap();
    let mut expected = Vec::new();

    if have("swaks") {
        let out = Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--helo",
                "swaks.example",
            ])
            .args([
                "--from",
                "alice@example.org",
                "--to",
                "u1@localhost,u2@localhost",
            ])
            .arg("--data")
            .arg(&msg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swaks: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        expected.push(("swaks.example", vec!["u1@localhost", "u2@localhost"]));
    }
    if have("curl") {
        let out = Command::new("curl")
            .args(["-sS", &format!("smtp://127.0.0.1:{port}/curl.example")])
            .args([
                "--mail-from",
                "alice@example.org",
                "--mail-rcpt",
                "u3@localhost",
            ])
            .arg("--upload-file")
            .arg(&msg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        expected.push(("curl.example", vec!["u3@localhost"]));
    }
    if have("python3") {
        let script = format!(
            r#"
import smtplib, sys
body = open({msg:?}, 'rb').read()
s = smtplib.SMTP('127.0.0.1', {port}, local_hostname='python.example')
code, text = s.ehlo()
assert code == 250 and b'PIPELINING' in text, text
try:
    s.sendmail('alice@example.org', ['someone@elsewhere.example'], body)
    sys.exit('relay was allowed')
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients['someone@elsewhere.example']
    assert code == 553 and b'rcpthosts' in text, e
refused = s.sendmail('alice@example.org', ['u4@localhost'], body)
assert refused == {{}}, refused
s.quit()
"#,
            msg = msg.display().to_string()
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        expected.push(("python.example", vec!["u4@localhost"]));
    }

    let queued = wait_for_messages(&server, expected.len());
    assert_eq!(
        queued.len(),
        expected.len(),
        "one queued message per client"
    );
    for (file, (helo, rcpts)) in queued.iter().zip(&expected) {
        check(file, helo, rcpts);
    }
    server.stop();
}

#[test]
fn qmail_smtpd_serves_one_session_on_stdin_and_stdout() {
    let home = init_home(None, Some("bench.test"));
    let input = "EHLO client.example\r\nMAIL FROM:<u2@bench.test>\r\nRCPT TO:<u1@bench.test>\r\nRCPT TO:<x@remote.test>\r\nDATA\r\nSubject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n";
    let out = run_smtpd(
        home.path(),
        input,
        &[("TCPREMOTEIP", "127.0.0.1"), ("TCPLOCALHOST", "bench.test")],
    );
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(lines[0], "220 bench.test ESMTP");
    assert_eq!(
        &lines[1..4],
        ["250-bench.test", "250-PIPELINING", "250-8BITMIME"]
    );
    assert_eq!(lines[5], "250 ok");
    assert_eq!(
        lines[7],
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
    );
    assert_eq!(lines[8], "354 go ahead");
    assert!(
        lines[9].starts_with("250 ok ") && lines[9].contains(" qp "),
        "{out}"
    );
    assert_eq!(lines[10], "221 bench.test");

    // RELAYCLIENT lets a recipient through and is appended to it.
    let out = run_smtpd(
        home.path(),
        "MAIL FROM:<a@b>\r\nRCPT TO:<x@remote.test>\r\nQUIT\r\n",
        &[("RELAYCLIENT", "")],
    );
    assert!(out.contains("\r\n250 ok\r\n250 ok\r\n221"), "{out}");
}

fn run_smtpd(home: &Path, input: &str, vars: &[(&str, &str)]) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmail-smtpd"))
        .env("QMAIL_HOME", home)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn qmailqueue_program_takes_the_message_and_its_exit_code_decides() {
    let home = init_home(None, Some("bench.test"));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("filter");
    // qmail-queue's interface: message on fd 0, envelope on fd 1.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat > {d}/message\ncat <&1 > {d}/envelope\nexit $(cat {d}/code)\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let input = "HELO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u1@bench.test>\r\nRCPT TO:<u2@bench.test>\r\nDATA\r\nSubject: f\r\n\r\nfiltered\r\n.\r\nQUIT\r\n";
    let vars = [
        ("QMAILQUEUE", script.to_str().unwrap()),
        ("TCPREMOTEIP", "127.0.0.1"),
    ];
    for (code, reply) in [
        ("0", "250 ok "),
        (
            "31",
            "554 mail server permanently rejected message (#5.3.0)",
        ),
        (
            "71",
            "451 mail server temporarily rejected message (#4.3.0)",
        ),
    ] {
        std::fs::write(dir.path().join("code"), code).unwrap();
        let out = run_smtpd(home.path(), input, &vars);
        assert!(out.contains(&format!("\r\n{reply}")), "exit {code}: {out}");
    }
    let message = std::fs::read_to_string(dir.path().join("message")).unwrap();
    // The queue's own Received line is the program's to write: qmail-smtpd
    // hands over its SMTP line only.
    assert!(
        message.starts_with("Received: from unknown (HELO c.example)"),
        "{message}"
    );
    assert!(!message.contains("Received: (qmail "), "{message}");
    assert!(message.ends_with("Subject: f\n\nfiltered\n"), "{message}");
    assert_eq!(
        std::fs::read(dir.path().join("envelope")).unwrap(),
        b"Fa@b.example\0Tu1@bench.test\0Tu2@bench.test\0\0"
    );
    assert!(
        std::fs::read_dir(home.path().join("queue/todo"))
            .unwrap()
            .next()
            .is_none(),
        "the queue itself was not used"
    );
}
