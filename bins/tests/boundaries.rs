//! The contracts between processes, on the real binaries: one scheduler
//! per queue, `$QMAILQUEUE` committing nothing for a message cut short, and
//! the trigger waking `qmail run` for mail a standalone qmail-smtpd queued.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{QmailRun, init_home};

/// Sends one message over SMTP and returns the final reply line.
fn send(port: u16, rcpt: &str, body: &str) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    let mut reply = |r: &mut BufReader<TcpStream>| {
        line.clear();
        r.read_line(&mut line).unwrap();
        line.clone()
    };
    reply(&mut r);
    write!(
        w,
        "HELO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
    )
    .unwrap();
    for _ in 0..4 {
        reply(&mut r);
    }
    write!(w, "Subject: t\r\n\r\n{body}\r\n.\r\nQUIT\r\n").unwrap();
    reply(&mut r)
}

/// Messages in a maildir's `new/`.
fn delivered(home: &Path, user: &str) -> Vec<String> {
    let dir = home.join("mailboxes").join(user).join("Maildir/new");
    match std::fs::read_dir(dir) {
        Ok(d) => d
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn wait_until(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir(dir) {
        for e in d {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_second_scheduler_on_one_home_is_refused_and_the_first_loses_nothing() {
    let run = QmailRun::start(init_home(None, None));
    let second = Command::new(env!("CARGO_BIN_EXE_qmail"))
        .args(["run", "--smtp", "127.0.0.1:0", "--home"])
        .arg(run.home.path())
        .args(["--user", &support::current_user()])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{said}");
    assert!(
        said.contains("queue/lock/sendmutex")
            && said.contains(&format!("by process {}", run.child.id())),
        "{said}"
    );
    // The first one's queue was left alone: a flood through it arrives whole.
    const N: usize = 200;
    for i in 0..N {
        let r = send(run.port, "flood@localhost", &format!("message {i}"));
        assert!(r.starts_with("250 ok "), "{r}");
    }
    let home = run.home.path().to_path_buf();
    assert!(
        wait_until(Duration::from_secs(60), || delivered(&home, "flood").len()
            == N),
        "{} of {N} delivered",
        delivered(&home, "flood").len()
    );
    run.stop();
}

#[test]
fn tcpserver_qmail_smtpd_beside_qmail_run_is_delivered_at_once() {
    if Command::new("tcpserver").arg("-h").output().is_err() {
        panic!("tcpserver (Debian's ucspi-tcp) is needed: .ci/run installs it");
    }
    let run = QmailRun::start(init_home(None, None));
    let home = run.home.path().to_path_buf();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new("tcpserver")
        .args(["-R", "-H", "127.0.0.1", &port.to_string()])
        .arg(env!("CARGO_BIN_EXE_qmail-smtpd"))
        .env("QMAIL_HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "tcpserver listens"
    );
    let sent = Instant::now();
    let r = send(port, "viatcp@localhost", "through tcpserver");
    assert!(r.starts_with("250 ok "), "{r}");
    let arrived = wait_until(Duration::from_secs(2), || {
        !delivered(&home, "viatcp").is_empty()
    });
    let took = sent.elapsed();
    let _ = server.kill();
    let _ = server.wait();
    assert!(arrived, "not in the maildir 2 s after the 250 ({took:?})");
    run.stop();
}

/// A `$QMAILQUEUE` wrapper around the real qmail-queue, as a filter would be.
fn wrapper(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("qq-wrapper");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_qmail-queue")
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

/// Starts qmail-smtpd on pipes with `$QMAILQUEUE`, writes a session that
/// stops in the middle of DATA, and waits for the body to be taken in.
fn smtpd_mid_data(home: &Path, qq: &Path) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmail-smtpd"))
        .env("QMAIL_HOME", home)
        .env("QMAILQUEUE", qq)
        .env("TCPREMOTEIP", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    write!(
        stdin,
        "HELO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<cut@localhost>\r\nDATA\r\nSubject: cut\r\n\r\nthe first half\r\n"
    )
    .unwrap();
    stdin.flush().unwrap();
    // Wait for `354`, then a moment for the body to reach the queue program.
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("354 ") {
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "qmail-smtpd ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(300));
    child.stdin = Some(stdin);
    child.stdout = Some(out);
    child
}

#[test]
fn a_message_cut_mid_data_is_never_queued_through_qmailqueue() {
    let h = init_home(None, None);
    let dir = tempfile::tempdir().unwrap();
    let qq = wrapper(dir.path());
    let queue = h.path().join("queue");
    for how in ["client goes away", "SIGTERM", "SIGKILL"] {
        let mut child = smtpd_mid_data(h.path(), &qq);
        match how {
            "client goes away" => drop(child.stdin.take()),
            sig => {
                let sig = sig.trim_start_matches("SIG");
                assert!(
                    Command::new("kill")
                        .args([&format!("-{sig}"), &child.id().to_string()])
                        .status()
                        .unwrap()
                        .success()
                );
                drop(child.stdin.take());
            }
        }
        let _ = child.wait();
        // The qmail-queue behind the wrapper sees both descriptors end
        // without an envelope and gives up, leaving nothing.
        assert!(
            wait_until(Duration::from_secs(5), || files_under(&queue).is_empty()),
            "{how}: left in the queue: {:?}",
            files_under(&queue)
        );
    }
    // Nothing is delivered either: a scheduler starting now finds no mail.
    let run = QmailRun::start(h);
    std::thread::sleep(Duration::from_secs(1));
    assert!(delivered(run.home.path(), "cut").is_empty());
    run.stop();
}

/// A reader taking mail out of an mbox under a `fcntl` lock (Python's
/// `fcntl.lockf`, as `mailbox` and movemail take it) while 400 deliveries
/// append to it: every message is either taken or still there, whole.
#[test]
fn an_fcntl_locking_reader_and_400_mbox_deliveries_lose_nothing() {
    reader_beside_400_mbox_deliveries(
        r#"
def lock(f):
    while True:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            time.sleep(0.005)

def unlock(f):
    fcntl.lockf(f, fcntl.LOCK_UN)
"#,
    );
}

/// The same with a reader honouring only the dotlock (`<mbox>.lock` made
/// with `O_CREAT|O_EXCL`, as liblockfile and Python's `mailbox` make it):
/// without the delivery's dotlock it would truncate away appended mail.
#[test]
fn a_dotlock_honouring_reader_and_400_mbox_deliveries_lose_nothing() {
    reader_beside_400_mbox_deliveries(
        r#"
def lock(f):
    while True:
        try:
            os.close(os.open(mbox + ".lock", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return
        except FileExistsError:
            time.sleep(0.005)

def unlock(f):
    os.unlink(mbox + ".lock")
"#,
    );
}

/// Runs a Python reader that takes everything out of an mbox under the
/// locks `locking` defines (`lock(f)` and `unlock(f)` on the open mbox),
/// again and again, while 400 messages are delivered to the mbox.
fn reader_beside_400_mbox_deliveries(locking: &str) {
    const N: usize = 400;
    let h = init_home(None, None);
    let mbox = h.path().join("box.mbox");
    std::fs::write(
        h.path().join("alias/.qmail-box"),
        format!("{}\n", mbox.display()),
    )
    .unwrap();
    let taken = h.path().join("taken");
    let stop = h.path().join("stop");
    // Takes everything out under the lock until told to stop; then once more.
    let script = format!(
        r#"
import fcntl, os, time
mbox, taken, stop = {mbox:?}, {taken:?}, {stop:?}
{locking}
out = open(taken, "ab")
while True:
    last = os.path.exists(stop)
    if os.path.exists(mbox):
        with open(mbox, "r+b") as f:
            lock(f)
            data = f.read()
            if data:
                out.write(data); out.flush(); os.fsync(out.fileno())
                f.seek(0); f.truncate(); f.flush(); os.fsync(f.fileno())
            unlock(f)
    if last:
        break
    time.sleep(0.01)
"#,
        mbox = mbox.display().to_string(),
        taken = taken.display().to_string(),
        stop = stop.display().to_string(),
    );
    let mut reader = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .spawn()
        .unwrap();
    let run = QmailRun::start(h);
    for i in 0..N {
        let r = send(run.port, "box@localhost", &format!("mbox message {i:04}"));
        assert!(r.starts_with("250 ok "), "{r}");
    }
    let home = run.home.path().to_path_buf();
    let count = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        (0..N)
            .filter(|i| text.contains(&format!("mbox message {i:04}\n")))
            .count()
    };
    // Wait until every message is somewhere, then let the reader finish.
    let all_there = wait_until(Duration::from_secs(120), || {
        count(&home.join("box.mbox")) + count(&home.join("taken")) >= N
    });
    std::fs::write(home.join("stop"), "").unwrap();
    assert!(reader.wait().unwrap().success());
    let (left, took) = (count(&home.join("box.mbox")), count(&home.join("taken")));
    assert!(all_there, "{took} taken + {left} left of {N}");
    assert_eq!(left + took, N, "each message exactly once");
    assert!(took > 0, "the reader took some mail while deliveries ran");
    assert!(
        !home.join("box.mbox.lock").exists(),
        "no dotlock left behind"
    );
    run.stop();
}

/// A `$QMAILQUEUE` wrapper around the real qmail-queue that notes in `log`
/// when it starts and how the real one exits.
fn recording_wrapper(dir: &Path, log: &Path) -> std::path::PathBuf {
    let path = dir.join("qq-recorder");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho started >>{log}\n{qq} \"$@\"\nrc=$?\necho \"exit $rc\" >>{log}\nexit $rc\n",
            log = log.display(),
            qq = env!("CARGO_BIN_EXE_qmail-queue"),
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

/// Starts `program args` with the message's first part on its standard
/// input (left open) and `$QMAILQUEUE` recording into `log`; returns once
/// the queue program has started (if `wait_for_queue`) and the part has
/// had a moment to reach it.
fn started_mid_message(
    program: &str,
    args: &[&str],
    home: &Path,
    qq: &Path,
    log: &Path,
    wait_for_queue: bool,
) -> std::process::Child {
    let mut child = Command::new(program)
        .args(args)
        .env("QMAIL_HOME", home)
        .env("QMAILQUEUE", qq)
        .env("NEWSENDER", "a@b.example")
        .env("DTLINE", "Delivered-To: fwd@localhost\n")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.as_mut().unwrap();
    stdin
        .write_all(b"From: a@b.example\nSubject: cut\n\nthe first half\n")
        .unwrap();
    stdin.flush().unwrap();
    if wait_for_queue {
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::fs::read_to_string(log).is_ok_and(|l| l.contains("started"))
            }),
            "{program} never started the queue program"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    child
}

/// Kills `child` with `signal` (`TERM`, `KILL`) and reaps it.
fn kill_and_reap(child: &mut std::process::Child, signal: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    drop(child.stdin.take());
    let _ = child.wait();
}

/// What the queue program said about its exit, once it has exited
/// (waiting up to 10 s), or `None` if it never started.
fn queue_program_exit(log: &Path) -> Option<String> {
    let started = std::fs::read_to_string(log).is_ok_and(|l| l.contains("started"));
    if !started {
        return None;
    }
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(log).is_ok_and(|l| l.contains("exit "))
    });
    let text = std::fs::read_to_string(log).unwrap();
    Some(
        text.lines()
            .find(|l| l.starts_with("exit "))
            .unwrap_or("still running")
            .to_string(),
    )
}

#[test]
fn a_forward_killed_mid_read_queues_nothing_through_qmailqueue() {
    let h = init_home(None, None);
    let dir = tempfile::tempdir().unwrap();
    let queue = h.path().join("queue");
    for signal in ["TERM", "KILL"] {
        let log = dir.path().join(format!("forward-{signal}.log"));
        let qq = recording_wrapper(dir.path(), &log);
        let mut child = started_mid_message(
            env!("CARGO_BIN_EXE_forward"),
            &["dest@localhost"],
            h.path(),
            &qq,
            &log,
            true,
        );
        kill_and_reap(&mut child, signal);
        let exit = queue_program_exit(&log).unwrap();
        assert_ne!(exit, "exit 0", "SIG{signal}: the queue program committed");
        assert_ne!(exit, "still running", "SIG{signal}");
        assert!(
            wait_until(Duration::from_secs(5), || files_under(&queue).is_empty()),
            "SIG{signal}: left in the queue: {:?}",
            files_under(&queue)
        );
    }
    let run = QmailRun::start(h);
    std::thread::sleep(Duration::from_secs(1));
    assert!(delivered(run.home.path(), "dest").is_empty());
    run.stop();
}

#[test]
fn qmail_inject_and_sendmail_killed_mid_read_queue_nothing() {
    let h = init_home(None, None);
    let dir = tempfile::tempdir().unwrap();
    let queue = h.path().join("queue");
    for program in [
        env!("CARGO_BIN_EXE_qmail-inject"),
        env!("CARGO_BIN_EXE_sendmail"),
    ] {
        for signal in ["TERM", "KILL"] {
            let name = Path::new(program).file_name().unwrap().to_str().unwrap();
            let log = dir.path().join(format!("{name}-{signal}.log"));
            let qq = recording_wrapper(dir.path(), &log);
            // Both stream the body to the queue program once the header is
            // read, so the kill falls while it runs.
            let mut child =
                started_mid_message(program, &["dest@localhost"], h.path(), &qq, &log, true);
            kill_and_reap(&mut child, signal);
            let exit = queue_program_exit(&log).unwrap();
            assert_ne!(
                exit, "exit 0",
                "{name} SIG{signal}: the queue program committed"
            );
            assert_ne!(exit, "still running", "{name} SIG{signal}");
            assert!(
                wait_until(Duration::from_secs(5), || files_under(&queue).is_empty()),
                "{name} SIG{signal}: left in the queue: {:?}",
                files_under(&queue)
            );
        }
    }
    let run = QmailRun::start(h);
    std::thread::sleep(Duration::from_secs(1));
    assert!(delivered(run.home.path(), "dest").is_empty());
    run.stop();
}

/// `qmail run` dies (SIGKILL) while a `|forward` program is still to read
/// a message larger than a pipe holds. The forward must not take the
/// feeder's death for the message's end: every copy it queues is whole.
#[test]
fn a_forward_whose_feeder_dies_mid_message_queues_no_truncated_copy() {
    let h = init_home(None, None);
    let feeding = h.path().join("feeding");
    let forwarded = h.path().join("forwarded");
    std::fs::write(
        h.path().join("alias/.qmail-fwd"),
        format!(
            "|touch {feeding}; sleep 2; forward dest@localhost; echo $? >{forwarded}\n",
            feeding = feeding.display(),
            forwarded = forwarded.display(),
        ),
    )
    .unwrap();
    let mut run = QmailRun::start(h);
    // About 1 MB, far more than a pipe's 64 KiB buffer.
    let line = "x".repeat(76);
    let body = format!("{}END-OF-MESSAGE", format!("{line}\r\n").repeat(13_000));
    let r = send(run.port, "fwd@localhost", &body);
    assert!(r.starts_with("250 ok "), "{r}");
    assert!(
        wait_until(Duration::from_secs(20), || feeding.exists()),
        "the forward program never started"
    );
    run.signal("KILL");
    let _ = run.child.wait();
    assert!(
        wait_until(Duration::from_secs(10), || forwarded.exists()),
        "the orphaned forward never finished"
    );
    // The restarted scheduler delivers what the orphan queued, and the
    // interrupted delivery again (a second, whole, copy).
    let home = std::mem::replace(&mut run.home, tempfile::tempdir().unwrap());
    drop(run);
    let run = QmailRun::start(home);
    let home = run.home.path().to_path_buf();
    let arrived = wait_until(Duration::from_secs(30), || {
        delivered(&home, "dest").len() >= 2
    });
    let copies = delivered(&home, "dest");
    assert!(arrived, "{} copies arrived", copies.len());
    for copy in &copies {
        assert!(
            copy.contains("END-OF-MESSAGE"),
            "a truncated copy of {} bytes was forwarded",
            copy.len()
        );
    }
    run.stop();
}
