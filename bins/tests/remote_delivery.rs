//! Remote delivery against a real SMTP receiver (python3's aiosmtpd) on a
//! loopback port, reached through `control/smtproutes`: `qmail run` relays
//! a message byte for byte, and a receiver that refuses the recipient makes
//! a bounce in the sender's maildir.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{QmailRun, init_home, set_control};

/// Debian's python (the one `python3-aiosmtpd` installs into); a python
/// first on PATH (pyenv) may not have it.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn have_aiosmtpd() -> bool {
    Command::new(python())
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The aiosmtpd receiver; killed when dropped.
struct Sink {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
}

impl Sink {
    fn start(mode: &str) -> Sink {
        let out = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(out.path())
            .arg(mode)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("sink said {line:?}"));
        Sink { child, port, out }
    }

    /// Waits until the messages received hold `n` recipients in all;
    /// returns (envelope text, data bytes) of each.
    fn wait_recipients(&self, n: usize) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: Vec<(String, Vec<u8>)> = (1..)
                .map_while(|i| {
                    let base = self.out.path().join(i.to_string());
                    let eml = std::fs::read(base.with_extension("eml")).ok()?;
                    let env = std::fs::read_to_string(base.with_extension("env")).ok()?;
                    Some((env, eml))
                })
                .collect();
            let seen: usize = got
                .iter()
                .map(|(env, _)| env.lines().nth(1).map_or(0, |l| l.split(' ').count() - 1))
                .sum();
            if seen >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Queues `message` with qmail-queue (message on fd 0, envelope on fd 1).
fn qmail_queue(home: &Path, message: &[u8], envelope: &[u8]) {
    let msg = home.join("message.tmp");
    let env = home.join("envelope.tmp");
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&env, envelope).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_qmail-queue"))
        .env("QMAIL_HOME", home)
        .stdin(std::fs::File::open(&msg).unwrap())
        .stdout(std::fs::File::open(&env).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "qmail-queue: {st}");
}

fn skip_without_aiosmtpd() -> bool {
    if have_aiosmtpd() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3-aiosmtpd is required in CI"
    );
    eprintln!("skipped: no python3 aiosmtpd");
    true
}

/// An installation for `bench.test` routing `example.test` to the sink.
fn home_routed_to(sink: &Sink) -> tempfile::TempDir {
    let home = init_home(None, Some("bench.test"));
    set_control(home.path(), "locals", "bench.test");
    set_control(
        home.path(),
        "smtproutes",
        &format!("example.test:[127.0.0.1]:{}", sink.port),
    );
    home
}

fn wait_queue_empty(root: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new(env!("CARGO_BIN_EXE_qmail-qread"))
            .env("QMAIL_HOME", root)
            .output()
            .unwrap();
        if o.stdout.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue not empty: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn qmail_run_relays_a_message_byte_for_byte() {
    if skip_without_aiosmtpd() {
        return;
    }
    let sink = Sink::start("accept");
    let server = QmailRun::start(home_routed_to(&sink));
    let root = server.home.path().to_path_buf();
    // Lines a transfer can spoil: leading dots, a lone dot, 8-bit text,
    // trailing spaces, an empty line, a long line.
    let mut message = b"From: alice@bench.test\nTo: r1@example.test, r2@example.test\n\
        Subject: relay test\n\n.leading dot\n.\n..two dots\ncaf\xc3\xa9 na\xc3\xafve\n\
        trailing spaces   \n\n"
        .to_vec();
    message.extend(std::iter::repeat_n(b'x', 900));
    message.extend_from_slice(b"\nlast line\n");
    qmail_queue(
        &root,
        &message,
        b"Falice@bench.test\0Tr1@example.test\0Tr2@EXAMPLE.test\0\0",
    );
    wait_queue_empty(&root);
    let got = sink.wait_recipients(2);
    // One transaction per job: the scheduler on main still makes one job
    // per recipient (grouping by domain is the planner's), so this is one
    // or two today.
    assert!(!got.is_empty() && got.len() <= 2, "{}", got.len());
    let mut recipients = Vec::new();
    for (env, data) in &got {
        let mut lines = env.lines();
        assert_eq!(lines.next(), Some("FROM alice@bench.test"));
        recipients.extend(
            lines.next().unwrap()["TO ".len()..]
                .split(' ')
                .map(String::from),
        );
        // SIZE is the size DATA carried; 8-bit text is declared.
        assert_eq!(
            lines.next(),
            Some(format!("PARAMS SIZE={} BODY=8BITMIME", data.len()).as_str())
        );
        // What arrived is the queued message (qmail-queue's Received line
        // on top) with CR LF line ends, nothing else changed.
        let first = data.iter().position(|&c| c == b'\n').unwrap() + 1;
        assert!(data.starts_with(b"Received: (qmail "), "{data:?}");
        let want: Vec<u8> = message
            .iter()
            .flat_map(|&c| {
                if c == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![c]
                }
            })
            .collect();
        assert_eq!(&data[first..], &want[..]);
    }
    recipients.sort();
    assert_eq!(recipients, ["r1@example.test", "r2@EXAMPLE.test"]);
    server.stop();
}

#[test]
fn a_refusing_receiver_makes_a_bounce_in_the_senders_maildir() {
    if skip_without_aiosmtpd() {
        return;
    }
    let sink = Sink::start("reject");
    let server = QmailRun::start(home_routed_to(&sink));
    let root = server.home.path().to_path_buf();
    qmail_queue(
        &root,
        b"From: alice@bench.test\nSubject: to nobody\n\nHello?\n",
        b"Falice@bench.test\0Tnobody@example.test\0\0",
    );
    let maildir: PathBuf = root.join("mailboxes/alice/Maildir/new");
    let deadline = Instant::now() + Duration::from_secs(30);
    let bounce = loop {
        let found = std::fs::read_dir(&maildir)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap());
        if let Some(b) = found {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "no bounce in {}",
            maildir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        bounce.contains("Hi. This is the qmail-send program at bench.test."),
        "{bounce}"
    );
    assert!(
        bounce.contains(
            "<nobody@example.test>:\n127.0.0.1 does not like recipient.\nRemote host said: 550 5.1.1 no such user here\n"
        ),
        "{bounce}"
    );
    assert!(bounce.contains("Subject: to nobody"), "{bounce}");
    assert_eq!(
        std::fs::read_dir(sink.out.path()).unwrap().count(),
        0,
        "nothing was accepted"
    );
    wait_queue_empty(&root);
    server.stop();
}

/// Runs qmail-remote for `home` with `message` on standard input (a file,
/// as qmail-rspawn gives it, or a pipe).
fn qmail_remote(home: &Path, args: &[&str], message: &[u8], as_file: bool) -> (i32, String) {
    let stdin = if as_file {
        let p = home.join("remote-message.tmp");
        std::fs::write(&p, message).unwrap();
        Stdio::from(std::fs::File::open(&p).unwrap())
    } else {
        Stdio::piped()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmail-remote"))
        .env("QMAIL_HOME", home)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut pipe) = child.stdin.take() {
        use std::io::Write;
        pipe.write_all(message).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8(o.stdout).unwrap().replace('\0', "\\0"),
    )
}

#[test]
fn qmail_remote_speaks_qmails_report_format() {
    if skip_without_aiosmtpd() {
        return;
    }
    let accept = Sink::start("accept");
    let home = home_routed_to(&accept);
    let msg = b"Subject: by qmail-remote\n\nbody\n.dot\n";
    let args = [
        "example.test",
        "alice@bench.test",
        "r1@example.test",
        "r2@example.test",
    ];
    assert_eq!(
        qmail_remote(home.path(), &args, msg, true),
        (
            0,
            "r\\0r\\0K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 Ok: queued as X1\n\\0"
                .into()
        )
    );
    let got = accept.wait_recipients(2);
    assert_eq!(
        got[0].1,
        b"Subject: by qmail-remote\r\n\r\nbody\r\n.dot\r\n"
    );
    // From a pipe, to a refusing receiver.
    let reject = Sink::start("reject");
    let home = home_routed_to(&reject);
    assert_eq!(
        qmail_remote(home.path(), &args[..3], msg, false),
        (
            0,
            "h127.0.0.1 does not like recipient.\nRemote host said: 550 5.1.1 no such user here\n\\0DGiving up on 127.0.0.1.\n\\0"
                .into()
        )
    );
    // No route, and no nameserver answers: try later.
    set_control(home.path(), "dnsservers", "127.0.0.1:9");
    assert_eq!(
        qmail_remote(
            home.path(),
            &["elsewhere.test", "", "x@elsewhere.test"],
            msg,
            true
        ),
        (
            0,
            "ZSorry, I couldn't find any host by that name. (#4.1.2)\n\\0".into()
        )
    );
    assert_eq!(
        qmail_remote(home.path(), &["only-two-args", "x"], msg, true),
        (
            0,
            "DI (qmail-remote) was invoked improperly. (#5.3.5)\n\\0".into()
        )
    );
}

#[test]
fn qmail_tcpto_lists_and_qmail_tcpok_clears_the_downed_hosts() {
    let home = init_home(None, None);
    let table = home.path().join("queue/lock/tcpto");
    std::fs::create_dir_all(table.parent().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(&table, format!("192.0.2.7 3 {}\n", now - 100)).unwrap();
    let run = |name: &str| {
        let bin = match name {
            "qmail-tcpto" => env!("CARGO_BIN_EXE_qmail-tcpto"),
            _ => env!("CARGO_BIN_EXE_qmail-tcpok"),
        };
        let o = Command::new(bin)
            .env("QMAIL_HOME", home.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}");
        String::from_utf8(o.stdout).unwrap()
    };
    let listed = run("qmail-tcpto");
    assert!(
        listed.starts_with("192.0.2.7 timed out 10")
            && listed.ends_with(" seconds ago; # recent timeouts: 3\n"),
        "{listed}"
    );
    assert_eq!(run("qmail-tcpok"), "");
    assert_eq!(run("qmail-tcpto"), "");
}
