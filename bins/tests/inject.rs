//! qmail-inject and sendmail as real programs: user agents (s-nail and GNU
//! mailutils' `mail` in batch mode), a cron-style pipe and swaks speaking
//! SMTP to `sendmail -bs` over a pipe, each delivering into a maildir
//! through `qmail run`; bad input refused with qmail-inject's exit codes
//! and nothing left in the queue; sendmail's flags.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{QmailRun, init_home, set_control};

const ME: &str = "inject.test";

/// An installation whose `me`, `locals` and `rcpthosts` are [`ME`].
fn local_home() -> tempfile::TempDir {
    let home = init_home(None, Some(ME));
    set_control(home.path(), "locals", ME);
    home
}

/// Whether `tool` can run here; in CI (which installs it) it must.
fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_qmail"))
        .parent()
        .unwrap()
        .join(name)
}

/// Runs `program` (a path) with `args`, `stdin` and `vars` on `home`.
fn run(program: &Path, args: &[&str], home: &Path, vars: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", home)
        .env("USER", "tester")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The files of `user`'s maildir `new/`, waiting up to 20 s for `n`.
fn delivered(home: &Path, user: &str, n: usize) -> Vec<String> {
    let dir = home.join("mailboxes").join(user).join("Maildir/new");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let files: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.map(|e| text(&std::fs::read(e.unwrap().path()).unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= n {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "{n} message(s) for {user} never arrived in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file under the queue's `tmp/`, `todo/` and `mess/`: what an
/// injection left behind.
fn queue_files(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["tmp", "todo", "mess"]
        .iter()
        .map(|d| home.join("queue").join(d))
        .collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Checks the header qmail-inject completed on a delivered message.
fn check_injected(msg: &str, subject_or_body: &str) {
    assert!(msg.contains("Received: (qmail "), "{msg}");
    assert!(
        msg.contains(&format!(" invoked by uid {}); ", uid())),
        "{msg}"
    );
    assert!(msg.contains("\nMessage-ID: <"), "{msg}");
    assert!(msg.contains("\nDate: "), "{msg}");
    assert!(msg.contains("\nFrom: "), "{msg}");
    assert!(msg.contains(subject_or_body), "{msg}");
}

#[test]
fn cron_style_pipe_to_sendmail_arrives_in_a_maildir() {
    let server = QmailRun::start(local_home());
    let home = server.home.path().to_path_buf();
    let sendmail = home.join("bin/sendmail");
    assert!(sendmail.is_file(), "qmail run writes HOME/bin/sendmail");
    // What cron does: the job's output, no header, one local recipient
    // without a domain.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo 'cron job output' | '{}' croncheck",
            sendmail.display()
        ))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LOGNAME", "cronuser")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let msgs = delivered(&home, "croncheck", 1);
    let m = &msgs[0];
    check_injected(m, "\n\ncron job output\n");
    assert!(m.contains("\nFrom: cronuser@inject.test\n"), "{m}");
    assert!(m.contains("\nCc: recipient list not shown: ;\n"), "{m}");
    assert!(
        m.starts_with("Return-Path: <cronuser@inject.test>\n"),
        "{m}"
    );
    assert!(m.contains("Delivered-To: croncheck@inject.test\n"), "{m}");
    server.stop();
}

#[test]
fn s_nail_in_batch_mode_sends_through_sendmail() {
    if !have("s-nail") {
        return;
    }
    let server = QmailRun::start(local_home());
    let home = server.home.path().to_path_buf();
    let ua_home = tempfile::tempdir().unwrap();
    let out = run(
        Path::new("/usr/bin/s-nail"),
        &[
            "-n",
            "-#",
            "-S",
            &format!("mta={}", home.join("bin/sendmail").display()),
            "-S",
            "sendwait",
            "-s",
            "from s-nail",
            "bob@inject.test",
        ],
        &home,
        &[("HOME", ua_home.path().to_str().unwrap())],
        "Sent by s-nail.\n".as_bytes(),
    );
    assert!(out.status.success(), "s-nail: {}", text(&out.stderr));
    let msgs = delivered(&home, "bob", 1);
    check_injected(&msgs[0], "\nSubject: from s-nail\n");
    assert!(msgs[0].ends_with("\n\nSent by s-nail.\n"), "{}", msgs[0]);
    assert!(msgs[0].contains("\nTo: bob@inject.test\n"), "{}", msgs[0]);
    server.stop();
}

#[test]
fn mailutils_mail_in_batch_mode_sends_through_sendmail() {
    if !have("mail.mailutils") {
        return;
    }
    let server = QmailRun::start(local_home());
    let home = server.home.path().to_path_buf();
    let ua_home = tempfile::tempdir().unwrap();
    let out = run(
        Path::new("/usr/bin/mail.mailutils"),
        &[
            "--no-config",
            "-E",
            &format!(
                "set sendmail=sendmail://{}",
                home.join("bin/sendmail").display()
            ),
            "-s",
            "from mailutils",
            "carol@inject.test",
        ],
        &home,
        &[("HOME", ua_home.path().to_str().unwrap())],
        "Sent by GNU mail.\n".as_bytes(),
    );
    assert!(out.status.success(), "mail: {}", text(&out.stderr));
    let msgs = delivered(&home, "carol", 1);
    check_injected(&msgs[0], "\nSubject: from mailutils\n");
    assert!(msgs[0].ends_with("\n\nSent by GNU mail.\n"), "{}", msgs[0]);
    server.stop();
}

#[test]
fn swaks_speaks_smtp_to_sendmail_bs_over_a_pipe() {
    if !have("swaks") {
        return;
    }
    let server = QmailRun::start(local_home());
    let home = server.home.path().to_path_buf();
    let out = Command::new("swaks")
        .args([
            "--pipe",
            &format!("{} -bs", home.join("bin/sendmail").display()),
            "--from",
            "sender@elsewhere.example",
            "--to",
            "dave@inject.test",
            "--header",
            "Subject: swaks over a pipe",
            "--body",
            "piped SMTP",
        ])
        .output()
        .unwrap();
    let transcript = text(&out.stdout);
    assert!(out.status.success(), "{transcript}{}", text(&out.stderr));
    assert!(transcript.contains("<-  220 "), "{transcript}");
    assert!(transcript.contains("<-  250 ok "), "{transcript}");
    let msgs = delivered(&home, "dave", 1);
    let m = &msgs[0];
    assert!(
        m.starts_with("Return-Path: <sender@elsewhere.example>\n"),
        "{m}"
    );
    // qmail-smtpd's Received line, with sendmail's local-client settings.
    assert!(
        m.contains("Received: from localhost (HELO ")
            && m.contains("(sendmail-bs@127.0.0.1)\n  by localhost with SMTP; "),
        "{m}"
    );
    assert!(m.contains("Subject: swaks over a pipe"), "{m}");
    server.stop();
}

#[test]
fn sendmail_t_takes_recipients_from_the_header_and_bcc_goes() {
    let server = QmailRun::start(local_home());
    let home = server.home.path().to_path_buf();
    let out = run(
        &home.join("bin/sendmail"),
        &[
            "-oi",
            "-t",
            "-f",
            "list-owner@inject.test",
            "-F",
            "The List",
        ],
        &home,
        &[],
        b"To: erin\nBcc: frank@inject.test\nSubject: -t\n\n.\nbody after a lone dot\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let erin = delivered(&home, "erin", 1);
    let frank = delivered(&home, "frank", 1);
    for m in [&erin[0], &frank[0]] {
        assert!(
            m.starts_with("Return-Path: <list-owner@inject.test>\n"),
            "{m}"
        );
        assert!(
            m.contains("\nFrom: \"The List\" <list-owner@inject.test>\n"),
            "{m}"
        );
        assert!(m.contains("\nTo: erin@inject.test\n"), "{m}");
        assert!(!m.contains("Bcc"), "Bcc is removed: {m}");
        assert!(m.ends_with("\n\n.\nbody after a lone dot\n"), "{m}");
    }
    server.stop();
}

#[test]
fn bad_input_gets_qmails_behaviour_or_a_clear_error_and_nothing_half_injected() {
    let home_dir = init_home(None, Some(ME));
    let home = home_dir.path();
    let inject = bin("qmail-inject");
    let sendmail = bin("sendmail");

    // A NUL byte, in the header or far into the body (after queueing
    // began): refused, exit 100, nothing left in the queue.
    let mut big = b"Subject: nul\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 300_000));
    big.push(0);
    big.extend_from_slice(b"\nmore\n");
    for input in [&b"Subject: a\0b\n\nbody\n"[..], &big] {
        let o = run(&sendmail, &["someone"], home, &[], input);
        assert_eq!(o.status.code(), Some(100), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains("NUL byte"), "{}", text(&o.stderr));
        assert!(queue_files(home).is_empty(), "{:?}", queue_files(home));
    }

    // No recipients at all, an address that does not parse, an
    // unparseable From: exit 100, nothing queued.
    for (args, input, says) in [
        (&[][..], &b"Subject: x\n\nbody\n"[..], "no recipients"),
        (
            &["bad@(host"][..],
            &b"\n"[..],
            "unable to parse address: bad@(host",
        ),
        (
            &["a"][..],
            &b"From: <open@x\n\nbody\n"[..],
            "unable to parse this line",
        ),
    ] {
        let o = run(&sendmail, args, home, &[], input);
        assert_eq!(o.status.code(), Some(100), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains(says), "{}", text(&o.stderr));
        assert!(queue_files(home).is_empty());
    }

    // No header: qmail-inject makes one and puts an empty line before the
    // text. A header with no end: completed, and no body follows.
    let o = run(&inject, &["-n", "x"], home, &[], b"no header here\n");
    let printed = text(&o.stdout);
    assert!(o.status.success());
    assert!(
        printed.starts_with("Return-Path: <tester@inject.test>\nDate: "),
        "{printed}"
    );
    assert!(
        printed.ends_with(
            "\nFrom: tester@inject.test\nCc: recipient list not shown: ;\n\nno header here\n"
        ),
        "{printed}"
    );
    let o = run(&inject, &["-n", "x"], home, &[], b"To: y\nSubject: unended");
    let printed = text(&o.stdout);
    assert!(
        printed.ends_with("\nFrom: tester@inject.test\nTo: y@inject.test\nSubject: unended\n"),
        "{printed}"
    );

    // An address with no domain gets defaulthost (and defaultdomain), as
    // in qmail; the message is queued whole.
    std::fs::write(home.join("control/defaulthost"), "mailhub\n").unwrap();
    let o = run(&sendmail, &["bob"], home, &[], b"Subject: x\n\nbody");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let files = queue_files(home);
    assert_eq!(files.len(), 1, "{files:?}");
    let queued = std::fs::read(&files[0]).unwrap();
    assert!(
        text(&queued).contains("\0Tbob@mailhub.inject.test\0"),
        "{}",
        text(&queued)
    );
    assert!(
        text(&queued).contains("\n\nbody\n"),
        "a last line gets its newline"
    );
}

#[test]
fn qmailqueue_exit_codes_become_clear_messages_and_qmail_inject_codes() {
    let home_dir = init_home(None, Some(ME));
    let home = home_dir.path();
    let scripts = tempfile::tempdir().unwrap();
    for (code, says, exit) in [
        (31, "mail server permanently rejected message", 100),
        (71, "mail server temporarily rejected message", 111),
        (53, "qq write error or disk full", 111),
    ] {
        let script = scripts.path().join(format!("qq{code}"));
        std::fs::write(&script, format!("#!/bin/sh\ncat >/dev/null\nexit {code}\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let o = run(
            &bin("qmail-inject"),
            &["u"],
            home,
            &[("QMAILQUEUE", script.to_str().unwrap())],
            b"Subject: x\n\nbody\n",
        );
        assert_eq!(o.status.code(), Some(exit), "{}", text(&o.stderr));
        assert!(
            text(&o.stderr).starts_with(&format!("qmail-inject: fatal: {says}")),
            "{}",
            text(&o.stderr)
        );
    }
    // $QMAILQUEUE naming qmail-queue itself: queued.
    let o = run(
        &bin("qmail-inject"),
        &["u"],
        home,
        &[("QMAILQUEUE", bin("qmail-queue").to_str().unwrap())],
        b"Subject: via QMAILQUEUE\n\nbody\n",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let files = queue_files(home);
    assert_eq!(files.len(), 1);
    assert!(text(&std::fs::read(&files[0]).unwrap()).contains("Subject: via QMAILQUEUE"));
}

#[test]
fn sendmail_flags_legacy_accepted_unsupported_refused_bp_lists() {
    let home_dir = init_home(None, Some(ME));
    let home = home_dir.path();
    let sendmail = bin("sendmail");
    let o = run(
        &sendmail,
        &[
            "-oi",
            "-oem",
            "-i",
            "-v",
            "-x",
            "-m",
            "-B8BITMIME",
            "-p",
            "smtp",
            "-e",
            "x",
            "-bm",
            "-E",
            "-Jx",
            "--",
            "legacy",
        ],
        home,
        &[],
        b"Subject: legacy\n\nbody\n",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    for bad in [&["-X"][..], &["-bz"], &["-N", "never"], &["-f"]] {
        let o = run(&sendmail, bad, home, &[], b"");
        assert_eq!(o.status.code(), Some(100), "{bad:?}");
        let e = text(&o.stderr);
        assert!(
            e.contains("not supported") && e.contains("usage: sendmail"),
            "{e}"
        );
    }
    assert!(
        queue_files(home).len() == 1,
        "the refused runs queued nothing"
    );
    let o = run(&sendmail, &["-bp"], home, &[], b"");
    assert!(o.status.success());
    let listing = text(&o.stdout);
    assert!(
        listing.contains("<tester@inject.test>") && listing.contains("legacy@inject.test"),
        "{listing}"
    );
    let o = run(&home.join("bin/mailq"), &[], home, &[], b"");
    assert_eq!(text(&o.stdout), listing, "mailq is sendmail -bp");
    for p in ["sendmail", "qmail-inject"] {
        let o = run(&bin(p), &["--help"], home, &[], b"");
        assert!(
            o.status.success() && text(&o.stdout).starts_with("usage: "),
            "{p}"
        );
    }
    assert_eq!(queue_files(home).len(), 1, "--help sends nothing");
}
