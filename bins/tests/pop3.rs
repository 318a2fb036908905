//! POP3 on the real binaries: qmail-pop3d's transcript over a maildir,
//! qmail-popup's checkpassword contract (descriptor 3, exit codes, the
//! session handed over), and python's poplib through tcpserver, qmail-popup,
//! a checkpassword and qmail-pop3d, as a POP3 service is run.
//!
//! qmail-pop3d refuses to run as root; when the tests run as root (CI) the
//! maildirs belong to `nobody` and the mailbox server runs as that user.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

mod support;

/// The user the mailbox server runs as when the tests run as root.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// Makes `path` and everything under it belong to the mailbox user.
fn give_to_mailbox_user(path: &Path) {
    if !is_root() {
        return;
    }
    let id = Some(nix::unistd::Uid::from_raw(NOBODY));
    let gid = Some(nix::unistd::Gid::from_raw(NOBODY));
    nix::unistd::chown(path, id, gid).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            give_to_mailbox_user(&e.unwrap().path());
        }
    }
}

/// A maildir holding `messages` (name, text), oldest first.
fn maildir(parent: &Path, messages: &[(&str, &str, &[u8])]) -> PathBuf {
    let md = parent.join("Maildir");
    for d in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (i, (dir, name, text)) in messages.iter().enumerate() {
        let path = md.join(dir).join(name);
        std::fs::write(&path, text).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(start + Duration::from_secs(60 * i as u64))
            .unwrap();
    }
    md
}

/// Runs qmail-pop3d on `md` with `input` as the whole client side.
fn pop3d(md: &Path, input: &[u8]) -> (String, std::process::ExitStatus) {
    let dir = md.parent().unwrap();
    give_to_mailbox_user(dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qmail-pop3d"));
    cmd.arg("Maildir")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status,
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

const FIRST: &[u8] = b"From: a@example.com\nSubject: one\n\nfirst body\n.dotted line\n";
const SECOND: &[u8] = b"Subject: two\n\nl1\nl2\nl3\n";
const THIRD: &[u8] = b"Subject: three\n\nthird\n";

#[test]
fn qmail_pop3d_transcript_and_what_quit_does() {
    let t = tempfile::tempdir().unwrap();
    let md = maildir(
        t.path(),
        &[
            ("cur", "1700000000.M1P1.host:2,S", FIRST),
            ("new", "1700000060.M2P2.host", SECOND),
            ("new", "1700000120.M3P3.host", THIRD),
        ],
    );
    // A file a delivery left in tmp/ two days ago is cleaned up at login.
    let stale = md.join("tmp/1699000000.M9P9.host");
    std::fs::write(&stale, b"half").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(48 * 3600))
        .unwrap();
    let session = "STAT\r\nLIST\r\nUIDL\r\nLIST 2\r\nRETR 1\r\nTOP 2 1\r\nTOP 2\r\n\
                   RETR 0\r\nRETR 9\r\nDELE 3\r\nDELE 3\r\nSTAT\r\nLAST\r\nXTND\r\nNOOP\r\nQUIT\r\n";
    let (out, status) = pop3d(&md, session.as_bytes());
    assert!(status.success(), "{status:?}");
    insta::assert_snapshot!("pop3d_session", out.replace("\r\n", "\u{21b5}\n"));
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
    assert_eq!(
        names(&md.join("cur")),
        ["1700000000.M1P1.host:2,S", "1700000060.M2P2.host:2,"]
    );
    assert_eq!(
        std::fs::read(md.join("cur/1700000060.M2P2.host:2,")).unwrap(),
        SECOND
    );
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
}

#[test]
fn qmail_pop3d_without_quit_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let md = maildir(t.path(), &[("new", "1.M1P1.host", SECOND)]);
    let (out, _) = pop3d(&md, b"DELE 1\r\nRETR 1\r\n");
    assert_eq!(out, "+OK \r\n+OK \r\n-ERR already deleted\r\n");
    assert_eq!(names(&md.join("new")), ["1.M1P1.host"]);
    assert!(names(&md.join("cur")).is_empty());
}

#[test]
fn qmail_pop3d_without_a_maildir_says_so() {
    let t = tempfile::tempdir().unwrap();
    give_to_mailbox_user(t.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qmail-pop3d"));
    cmd.arg("Maildir").current_dir(t.path());
    if is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-ERR this user has no $HOME/Maildir\r\n"
    );
    assert!(!out.status.success());
}

#[test]
fn qmail_pop3d_refuses_root() {
    if !is_root() {
        eprintln!("skipped: not running as root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let md = maildir(t.path(), &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_qmail-pop3d"))
        .arg(&md)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "root gets no session");
    assert!(String::from_utf8_lossy(&out.stderr).contains("uid 0"));
}

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Runs qmail-popup with a checkpassword that saves descriptor 3 and then
/// does `then` (shell); returns the client's view and descriptor 3's bytes.
fn popup(input: &[u8], then: &str) -> (String, Vec<u8>) {
    let t = tempfile::tempdir().unwrap();
    let fd3 = t.path().join("fd3");
    let check = script(
        t.path(),
        "checkpassword",
        &format!("#!/bin/sh\ncat <&3 > '{}'\n{then}\n", fd3.display()),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmail-popup"))
        .arg("pop.test")
        .arg(&check)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The greeting first, then the client's lines one at a time, as a
    // client waits for each answer.
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    for line in input.split_inclusive(|&b| b == b'\n') {
        let n = stdout.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        if stdin.write_all(line).is_err() {
            break;
        }
    }
    drop(stdin);
    stdout.read_to_end(&mut out).unwrap();
    child.wait().unwrap();
    (
        String::from_utf8_lossy(&out).into_owned(),
        std::fs::read(&fd3).unwrap_or_default(),
    )
}

fn greeting_timestamp(out: &str) -> &str {
    let line = out.split("\r\n").next().unwrap();
    let ts = line.strip_prefix("+OK ").unwrap();
    assert!(
        ts.starts_with('<') && ts.ends_with("@pop.test>"),
        "{line:?}"
    );
    ts
}

#[test]
fn qmail_popup_hands_user_password_and_timestamp_on_descriptor_3() {
    let (out, fd3) = popup(
        b"STAT\r\nPASS x\r\nUSER alice\r\nPASS open sesame\r\n",
        "exit 1",
    );
    let ts = greeting_timestamp(&out).to_string();
    assert_eq!(
        out.split("\r\n").skip(1).collect::<Vec<_>>(),
        [
            "-ERR authorization first",
            "-ERR USER first",
            "+OK ",
            "-ERR authorization failed",
            ""
        ]
    );
    assert_eq!(fd3, format!("alice\0open sesame\0{ts}\0").into_bytes());
}

#[test]
fn qmail_popup_reports_a_crashed_checkpassword() {
    let (out, fd3) = popup(b"APOP bob 0123456789abcdef\r\n", "kill -SEGV $$");
    assert!(out.ends_with("-ERR aack, child crashed\r\n"), "{out}");
    assert!(fd3.starts_with(b"bob\x000123456789abcdef\0<"));
}

#[test]
fn qmail_popup_hands_the_rest_of_the_session_to_checkpassword() {
    // What the client sends after PASS must reach the program that serves
    // the session, not stay behind in qmail-popup.
    let (out, _) = popup(
        b"USER carol\r\nPASS pw\r\nSTAT\r\n",
        "echo '+OK served'; read line; printf '+OK got %s\\n' \"$line\"; exit 0",
    );
    assert!(out.contains("+OK served\n+OK got STAT\r\n"), "{out:?}");
    assert!(!out.contains("-ERR"), "{out}");
}

/// A checkpassword for the test: alice with password `secret`, home
/// `home`; runs the rest of its arguments as her (as `nobody` under root).
fn checkpassword_script(dir: &Path, home: &Path) -> PathBuf {
    let python = python();
    script(
        dir,
        "checkpassword.py",
        &format!(
            r#"#!{python}
import os, sys
data = os.read(3, 4096).split(b"\0")
if data[0] != b"alice" or data[1] != b"secret":
    sys.exit(1)
os.chdir("{home}")
os.environ["USER"] = "alice"
os.environ["HOME"] = "{home}"
if os.getuid() == 0:
    os.setgid({NOBODY})
    os.setuid({NOBODY})
os.execvp(sys.argv[1], sys.argv[1:])
"#,
            home = home.display()
        ),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// tcpserver running qmail-popup, the test's checkpassword and
/// qmail-pop3d for alice, whose home is `home`; stopped when dropped.
struct PopService {
    server: std::process::Child,
    port: u16,
}

impl PopService {
    fn start(dir: &Path, home: &Path) -> PopService {
        assert!(
            support::have("tcpserver"),
            "tcpserver (Debian's ucspi-tcp) is needed: .ci/run installs it"
        );
        give_to_mailbox_user(home);
        let check = checkpassword_script(dir, home);
        let port = free_port();
        let server = Command::new("tcpserver")
            .args(["-R", "-H", "127.0.0.1", &port.to_string()])
            .arg(env!("CARGO_BIN_EXE_qmail-popup"))
            .arg("pop.test")
            .arg(&check)
            .arg(env!("CARGO_BIN_EXE_qmail-pop3d"))
            .arg("Maildir")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let service = PopService { server, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tcpserver listens");
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }
}

impl Drop for PopService {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn python_poplib_through_tcpserver_fetches_and_deletes() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("alice");
    std::fs::create_dir(&home).unwrap();
    let big: Vec<u8> = (0..20_000)
        .flat_map(|i| format!(".line {i} of a long message\n").into_bytes())
        .collect();
    let big = [&b"Subject: big\n\n"[..], &big].concat();
    let md = maildir(
        &home,
        &[
            ("new", "1.M1P1.host", FIRST),
            ("new", "2.M2P2.host", &big),
            ("cur", "3.M3P3.host:2,S", THIRD),
        ],
    );
    let service = PopService::start(t.path(), &home);
    let out_dir = t.path().join("fetched");
    std::fs::create_dir(&out_dir).unwrap();
    let client = format!(
        r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", {port}, timeout=20)
try:
    p.user("alice"); p.pass_("wrong")
    print("wrong password accepted"); sys.exit(1)
except poplib.error_proto as e:
    print("refused:", e)
p = poplib.POP3("127.0.0.1", {port}, timeout=20)
p.user("alice"); p.pass_("secret")
count, size = p.stat()
print("stat", count, size)
uids = [l.split()[1].decode() for l in p.uidl()[1]]
print("uidl", uids)
for i in range(1, count + 1):
    lines = p.retr(i)[1]
    open("{out}/%d" % i, "wb").write(b"".join(l + b"\n" for l in lines))
p.dele(2)
print(p.quit())
"#,
        port = service.port,
        out = out_dir.display()
    );
    let r = Command::new(python())
        .arg("-c")
        .arg(&client)
        .output()
        .unwrap();
    drop(service);
    let said = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        said.contains("refused: b'-ERR authorization failed'"),
        "{said}"
    );
    let total = FIRST.len() + big.len() + THIRD.len();
    assert!(said.contains(&format!("stat 3 {total}")), "{said}");
    assert!(
        said.contains("uidl ['1.M1P1.host', '2.M2P2.host', '3.M3P3.host']"),
        "{said}"
    );
    // poplib undoes the dot-stuffing: each message comes back as stored.
    for (i, want) in [FIRST, &big[..], THIRD].iter().enumerate() {
        let got = std::fs::read(out_dir.join((i + 1).to_string())).unwrap();
        assert_eq!(got, *want, "message {}", i + 1);
    }
    assert!(names(&md.join("new")).is_empty());
    assert_eq!(
        names(&md.join("cur")),
        ["1.M1P1.host:2,", "3.M3P3.host:2,S"]
    );
}

#[test]
fn mpop_fetches_into_its_maildir_and_empties_the_mailbox() {
    assert!(support::have("mpop"), "mpop is needed: .ci/run installs it");
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("alice");
    std::fs::create_dir(&home).unwrap();
    let md = maildir(
        &home,
        &[
            ("new", "1.M1P1.host", FIRST),
            ("cur", "2.M2P2.host:2,S", SECOND),
        ],
    );
    let service = PopService::start(t.path(), &home);
    let dest = t.path().join("fetched");
    for d in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dest.join(d)).unwrap();
    }
    let r = Command::new("mpop")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={}", service.port))
        .args([
            "--auth=user",
            "--user=alice",
            "--passwordeval=echo secret",
            "--tls=off",
            "--keep=off",
            "--timeout=20",
        ])
        .arg(format!("--delivery=maildir,{}", dest.display()))
        .arg(format!("--uidls-file={}", t.path().join("uidls").display()))
        .env("HOME", t.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    drop(service);
    assert!(
        r.status.success(),
        "mpop: {}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    let mut fetched: Vec<Vec<u8>> = names(&dest.join("new"))
        .iter()
        .map(|n| std::fs::read(dest.join("new").join(n)).unwrap())
        .collect();
    fetched.sort();
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    // mpop may add its own trace lines at the top; the message follows
    // them whole.
    for want in [FIRST, SECOND] {
        assert!(
            fetched.iter().any(|f| f.ends_with(want)),
            "{:?} not among {fetched:?}",
            String::from_utf8_lossy(want)
        );
    }
    assert!(names(&md.join("new")).is_empty());
    assert!(names(&md.join("cur")).is_empty());
}
