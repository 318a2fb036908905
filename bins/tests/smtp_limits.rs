//! qmail-smtpd against hostile clients: an endless line, an endless DATA and
//! a silent client are cut off by limits and timeouts, with memory bounded.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{init_home, proc_status_kb};

fn home() -> tempfile::TempDir {
    init_home(None, Some("bench.test"))
}

fn smtpd(home: &Path, vars: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_qmail-smtpd"))
        .env("QMAIL_HOME", home)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn queued(home: &Path) -> usize {
    std::fs::read_dir(home.join("queue/todo")).unwrap().count()
}

#[test]
fn an_endless_line_is_cut_off() {
    let home = home();
    let mut child = smtpd(home.path(), &[]);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = [b'A'; 64 * 1024];
        // Up to 64 MB; the server closes long before.
        for _ in 0..1024 {
            if stdin.write_all(&chunk).is_err() {
                return true;
            }
        }
        false
    });
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.starts_with("220 bench.test ESMTP\r\n"));
    assert!(out.contains("500 5.5.2 line too long"), "{out}");
    assert!(child.wait().unwrap().success());
    assert!(writer.join().unwrap(), "the server stopped reading");
}

#[test]
fn an_endless_data_is_refused_with_memory_bounded() {
    let home = home();
    let mut child = smtpd(home.path(), &[("DATABYTES", "1000000")]);
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@bench.test>\r\nDATA\r\n")
        .unwrap();
    let line = [b'x'; 998];
    // 40 MB of header lines, then the end.
    for _ in 0..40_000 {
        stdin.write_all(b"X-Filler: ").unwrap();
        stdin.write_all(&line[..988]).unwrap();
        stdin.write_all(b"\r\n").unwrap();
    }
    let rss = proc_status_kb(pid, "VmHWM:");
    stdin.write_all(b"\r\nbody\r\n.\r\nQUIT\r\n").unwrap();
    drop(stdin);
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        out.contains("552 sorry, that message size exceeds my databytes limit (#5.3.4)"),
        "{out}"
    );
    assert_eq!(queued(home.path()), 0, "nothing queued");
    assert!(
        std::fs::read_dir(home.path().join("queue/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "nothing left"
    );
    assert!(
        rss > 0 && rss < 32 * 1024,
        "peak memory {rss} KB after 40 MB of DATA"
    );
}

#[test]
fn a_silent_client_is_timed_out() {
    let home = home();
    support::set_control(home.path(), "timeoutsmtpd", "1");
    let mut child = smtpd(home.path(), &[]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"HELO slow.example\r\n").unwrap();
    let start = Instant::now();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let waited = start.elapsed();
    drop(stdin);
    assert!(out.ends_with("451 timeout (#4.4.2)\r\n"), "{out}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    child.wait().unwrap();
}

#[test]
fn a_bad_control_file_is_a_clear_temporary_error() {
    let home = home();
    support::set_control(home.path(), "databytes", "lots");
    let child = smtpd(home.path(), &[]);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "421 unable to read controls (#4.3.0)\r\n"
    );
}
