//! What a newcomer meets first: every program answers `--help` with its
//! usage and does nothing else; the queue tools find `qmail run`'s home, or
//! say that there is no queue rather than report an empty one.

use std::path::Path;
use std::process::{Command, Output};

/// Every program this crate builds.
const PROGRAMS: &[(&str, &str)] = &[
    ("qmail", env!("CARGO_BIN_EXE_qmail")),
    ("qmail-smtpd", env!("CARGO_BIN_EXE_qmail-smtpd")),
    ("qmail-queue", env!("CARGO_BIN_EXE_qmail-queue")),
    ("qmail-qread", env!("CARGO_BIN_EXE_qmail-qread")),
    ("qmail-qstat", env!("CARGO_BIN_EXE_qmail-qstat")),
    ("qmail-local", env!("CARGO_BIN_EXE_qmail-local")),
    ("forward", env!("CARGO_BIN_EXE_forward")),
    ("condredirect", env!("CARGO_BIN_EXE_condredirect")),
    ("bouncesaying", env!("CARGO_BIN_EXE_bouncesaying")),
    ("except", env!("CARGO_BIN_EXE_except")),
    ("preline", env!("CARGO_BIN_EXE_preline")),
    ("maildirmake", env!("CARGO_BIN_EXE_maildirmake")),
];

/// Runs `exe args` in the empty directory `dir` with a `$QMAIL_HOME` that
/// does not exist, and nothing on standard input.
fn run_in(dir: &Path, exe: &str, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env("QMAIL_HOME", dir.join("no-such-home"))
        .env_remove("QMAILQUEUE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_program_answers_help_and_does_nothing_else() {
    for (name, exe) in PROGRAMS {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(dir.path(), exe, &["--help"]);
        assert!(out.status.success(), "{name} --help: {:?}", out.status);
        assert!(out.stderr.is_empty(), "{name} --help wrote to stderr");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("usage: "), "{name}: {text}");
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "{name} made files"
        );
        insta::assert_snapshot!(format!("help_{name}"), text);
    }
}

#[test]
fn qmail_help_is_the_same_text() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_qmail");
    let help = run_in(dir.path(), exe, &["--help"]).stdout;
    assert_eq!(run_in(dir.path(), exe, &["help"]).stdout, help);
    assert_eq!(run_in(dir.path(), exe, &["-h"]).stdout, help);
    let bare = run_in(dir.path(), exe, &[]);
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("qmail: no command given"));
}

#[test]
fn queue_tools_without_a_queue_say_so() {
    let dir = tempfile::tempdir().unwrap();
    for (name, exe) in [
        ("qmail-qread", env!("CARGO_BIN_EXE_qmail-qread")),
        ("qmail-qstat", env!("CARGO_BIN_EXE_qmail-qstat")),
    ] {
        let out = run_in(dir.path(), exe, &[]);
        assert_eq!(out.status.code(), Some(111), "{name}");
        assert!(out.stdout.is_empty(), "{name} reported a queue");
        assert_eq!(
            String::from_utf8(out.stderr).unwrap(),
            format!(
                "{name}: fatal: no queue at {}/no-such-home/queue (set QMAIL_HOME)\n",
                dir.path().display()
            )
        );
    }
    let out = run_in(dir.path(), env!("CARGO_BIN_EXE_qmail"), &["qstat"]);
    assert_eq!(out.status.code(), Some(111));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no queue at"),
        "{out:?}"
    );
}

#[test]
fn init_and_the_queue_tools_share_run_s_default_home() {
    let dir = tempfile::tempdir().unwrap();
    let qmail = env!("CARGO_BIN_EXE_qmail");
    // `qmail init` with no --home and no $QMAIL_HOME: ./qmail-home.
    let out = Command::new(qmail)
        .arg("init")
        .current_dir(dir.path())
        .env_remove("QMAIL_HOME")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("qmail-home/control/me").is_file());
    assert!(dir.path().join("qmail-home/queue/todo").is_dir());
    for cmd in ["qstat", "qread"] {
        let out = Command::new(qmail)
            .arg(cmd)
            .current_dir(dir.path())
            .env_remove("QMAIL_HOME")
            .output()
            .unwrap();
        assert!(out.status.success(), "qmail {cmd}: {out:?}");
    }
    let out = Command::new(qmail)
        .arg("qstat")
        .current_dir(dir.path())
        .env_remove("QMAIL_HOME")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "messages in queue: 0\nmessages in queue but not yet preprocessed: 0\n"
    );
    // --home works for them too.
    let out = Command::new(qmail)
        .args(["qread", "--home"])
        .arg(dir.path().join("qmail-home"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn run_as_root_without_user_refuses() {
    if !nix::unistd::Uid::effective().is_root() {
        // Only root can be refused; an ordinary user runs as itself.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qmail"))
        .args(["run", "--smtp", "127.0.0.1:0", "--home"])
        .arg(dir.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("refusing to run as root"), "{err}");
    assert!(!dir.path().join("home").exists(), "it made nothing");
}
