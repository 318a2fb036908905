//! qmail-queue, the real binary: qmail's interface and exit codes, and
//! nothing left behind when it refuses a message.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn bin(name: &str) -> &'static str {
    match name {
        "qmail-queue" => env!("CARGO_BIN_EXE_qmail-queue"),
        "qmail-qread" => env!("CARGO_BIN_EXE_qmail-qread"),
        "qmail-qstat" => env!("CARGO_BIN_EXE_qmail-qstat"),
        _ => unreachable!(),
    }
}

mod support;

fn home() -> tempfile::TempDir {
    support::init_home(None, None)
}

/// Runs qmail-queue with `message` on fd 0 and `envelope` on fd 1.
fn queue(home: &Path, message: Stdio, envelope: &[u8]) -> i32 {
    let env_path = home.join("envelope.tmp");
    std::fs::write(&env_path, envelope).unwrap();
    let status = Command::new(bin("qmail-queue"))
        .env("QMAIL_HOME", home)
        .stdin(message)
        .stdout(std::fs::File::open(&env_path).unwrap())
        .status()
        .unwrap();
    std::fs::remove_file(&env_path).unwrap();
    status.code().expect("exited")
}

fn queue_bytes(home: &Path, message: &[u8], envelope: &[u8]) -> i32 {
    let msg_path = home.join("message.tmp");
    std::fs::write(&msg_path, message).unwrap();
    let code = queue(
        home,
        Stdio::from(std::fs::File::open(&msg_path).unwrap()),
        envelope,
    );
    std::fs::remove_file(&msg_path).unwrap();
    code
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

const MESSAGE: &[u8] = b"From: a@b.example\nSubject: test\n\nline one\n\x00binary\xff and 8-bit\n";

#[test]
fn queues_a_message_byte_for_byte() {
    let h = home();
    assert_eq!(
        queue_bytes(
            h.path(),
            MESSAGE,
            b"Fa@b.example\0Tu1@localhost\0Tr@remote.test\0\0"
        ),
        0
    );
    let files = files_under(&h.path().join("queue"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("/todo/"));
    let raw = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let rcvd = text.find("Received: (qmail ").expect("Received line");
    let body_start = raw[rcvd..].iter().position(|&b| b == b'\n').unwrap() + rcvd + 1;
    assert!(text[rcvd..].contains(" invoked by uid "));
    assert_eq!(
        &raw[body_start..body_start + MESSAGE.len()],
        MESSAGE,
        "message stored byte for byte"
    );
    assert!(
        raw.ends_with(b"Fa@b.example\0Tu1@localhost\0Tr@remote.test\0\0"),
        "envelope kept"
    );

    let qstat = Command::new(bin("qmail-qstat"))
        .env("QMAIL_HOME", h.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(qstat.stdout).unwrap(),
        "messages in queue: 1\nmessages in queue but not yet preprocessed: 1\n"
    );
    let qread = Command::new(bin("qmail-qread"))
        .env("QMAIL_HOME", h.path())
        .output()
        .unwrap();
    let qread = String::from_utf8(qread.stdout).unwrap();
    assert!(
        qread.contains(" GMT  #") && qread.contains("<a@b.example> \n"),
        "{qread}"
    );
    assert!(
        qread.contains("\tu1@localhost\n") && qread.contains("\tr@remote.test\n"),
        "{qread}"
    );
}

/// Every malformed envelope against qmail 1.03's exit code (the table in
/// docs/queue.md): refused ones leave nothing behind; the two qmail 1.03
/// accepts (no recipients, bytes after the terminator) are queued.
#[test]
fn envelopes_get_qmail_1_03_exit_codes() {
    let long = format!("F{}\0Tx@y\0\0", "a".repeat(2000));
    let long_rcpt = format!("Fa@b\0T{}\0\0", "a".repeat(2000));
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        ("empty envelope", b"".to_vec(), 54),
        ("end of file in the sender", b"Fa@b".to_vec(), 54),
        ("end of file in a recipient", b"Fa@b\0Tc@d".to_vec(), 54),
        (
            "end of file before the terminator",
            b"Fa@b\0Tc@d\0".to_vec(),
            54,
        ),
        ("not F first", b"Ta@b\0Tc@d\0\0".to_vec(), 91),
        (
            "a recipient not starting with T",
            b"Fa@b\0Xc@d\0\0".to_vec(),
            91,
        ),
        ("sender too long", long.into_bytes(), 11),
        ("recipient too long", long_rcpt.into_bytes(), 11),
        ("no recipients", b"Fa@b\0\0".to_vec(), 0),
        (
            "bytes after the terminator",
            b"Fa@b\0Tc@d\0\0junk".to_vec(),
            0,
        ),
    ];
    for (what, envelope, want) in cases {
        let h = home();
        assert_eq!(queue_bytes(h.path(), MESSAGE, &envelope), want, "{what}");
        let queued = files_under(&h.path().join("queue")).len();
        assert_eq!(queued, usize::from(want == 0), "{what}: files left");
    }
    // An unreadable message: fd 0 is a directory.
    let h = home();
    let dir = std::fs::File::open(h.path()).unwrap();
    assert_eq!(
        queue(h.path(), Stdio::from(dir), b"Fa@b\0Tc@d\0\0"),
        54,
        "unreadable message"
    );
    assert!(
        files_under(&h.path().join("queue")).is_empty(),
        "nothing committed, nothing left"
    );
}

/// qmail-queue stops reading at the envelope's terminator: a writer that
/// keeps fd 1 open afterwards does not hold it up.
#[test]
fn returns_at_the_terminator_while_fd_1_stays_open() {
    let h = home();
    let (reader, mut writer) = std::io::pipe().unwrap();
    let started = std::time::Instant::now();
    let mut child = Command::new(bin("qmail-queue"))
        .env("QMAIL_HOME", h.path())
        .stdin(Stdio::piped())
        .stdout(reader)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(MESSAGE).unwrap();
    drop(stdin);
    writer.write_all(b"Fa@b\0Tc@d\0\0").unwrap();
    // `writer` stays open until the end of the test.
    let deadline = started + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "qmail-queue still waits on fd 1"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(files_under(&h.path().join("queue")).len(), 1);
    drop(writer);
}

#[test]
fn streams_a_large_message_through_a_pipe() {
    let h = home();
    let env_path = h.path().join("env");
    std::fs::write(&env_path, b"F\0Tbig@localhost\0\0").unwrap();
    let mut child = Command::new(bin("qmail-queue"))
        .env("QMAIL_HOME", h.path())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::open(&env_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let line = [b'x'; 1023];
    for _ in 0..20_000 {
        stdin.write_all(&line).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let files = files_under(&h.path().join("queue"));
    assert_eq!(files.len(), 1);
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 20_000 * 1024);
}
