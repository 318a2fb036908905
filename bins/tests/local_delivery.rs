//! Local delivery on the real filesystem with real programs: the helper
//! programs with qmail's exit codes, deliveries read back by python3's
//! `mailbox` module, and `qmail run` end to end (swaks to two local users
//! and a forwarding address).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use qmail_core::deliver::{Deliver, DeliveryJob, MessageRef, Outcome};
use qmail_core::home::Home;
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::queue::{Channel, Envelope, Queue};
use qmail_io_real::RealEnv;

mod support;

use support::{QmailRun, init_home, set_control};

const MSG: &str = "From: alice@example.org\nTo: list@localhost\nSubject: local test\n\nFrom the top\n>From quoted\nlast line\n";

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_forward"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs a helper with `stdin` and the given environment.
fn helper(name: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(bin_dir().join(name))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Messages in a queue's todo/: (envelope bytes, message bytes).
fn todo(home: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(home.join("queue/todo"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn maildirmake_makes_a_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    let o = helper("maildirmake", &[md.to_str().unwrap()], &[], "");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    use std::os::unix::fs::PermissionsExt;
    for sub in ["", "tmp", "new", "cur"] {
        let m = std::fs::metadata(md.join(sub)).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o077, 0, "private");
    }
    let again = helper("maildirmake", &[md.to_str().unwrap()], &[], "");
    assert_eq!(code(&again), 111);
    assert!(stderr(&again).starts_with("maildirmake: fatal: unable to mkdir "));
    assert_eq!(code(&helper("maildirmake", &[], &[], "")), 100);
}

#[test]
fn except_reverses_exit_codes() {
    for (cmd, want) in [
        ("exit 0", 100),
        ("exit 1", 0),
        ("exit 100", 0),
        ("exit 111", 111),
        ("kill -9 $$", 111),
    ] {
        let o = helper("except", &["/bin/sh", "-c", cmd], &[], "msg\n");
        assert_eq!(code(&o), want, "{cmd}: {}", stderr(&o));
    }
    assert_eq!(code(&helper("except", &["/no/such/program"], &[], "")), 0);
    assert_eq!(code(&helper("except", &[], &[], "")), 100);
}

#[test]
fn bouncesaying_bounces_when_told() {
    let o = helper("bouncesaying", &["Gone fishing."], &[], "msg\n");
    assert_eq!((code(&o), stderr(&o).as_str()), (100, "Gone fishing.\n"));
    // The program sees the message.
    let o = helper(
        "bouncesaying",
        &["No spam.", "grep", "-q", "spam"],
        &[],
        "spam here\n",
    );
    assert_eq!((code(&o), stderr(&o).as_str()), (100, "No spam.\n"));
    let o = helper(
        "bouncesaying",
        &["No spam.", "grep", "-q", "spam"],
        &[],
        "ham\n",
    );
    assert_eq!(code(&o), 0);
    let o = helper("bouncesaying", &["x", "/bin/sh", "-c", "exit 111"], &[], "");
    assert_eq!(code(&o), 111);
    assert_eq!(code(&helper("bouncesaying", &[], &[], "")), 100);
}

#[test]
fn preline_puts_the_lines_on_top() {
    let env = [
        ("UFLINE", "From a@b Thu Jan 01 00:00:00 1970\n"),
        ("RPLINE", "Return-Path: <a@b>\n"),
        ("DTLINE", "Delivered-To: c@d\n"),
    ];
    let o = helper("preline", &["cat"], &env, "body\n");
    assert_eq!(code(&o), 0);
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "From a@b Thu Jan 01 00:00:00 1970\nReturn-Path: <a@b>\nDelivered-To: c@d\nbody\n"
    );
    let o = helper("preline", &["-fd", "cat"], &env, "body\n");
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "Return-Path: <a@b>\nbody\n"
    );
    let o = helper("preline", &["/bin/sh", "-c", "exit 42"], &env, "body\n");
    assert_eq!(code(&o), 42, "the command's exit code");
    assert_eq!(
        code(&helper("preline", &["cat"], &[], "")),
        100,
        "needs the variables"
    );
}

#[test]
fn forward_and_condredirect_queue_a_copy() {
    let home = init_home(None, None);
    let h = home.path().to_str().unwrap();
    let env = [
        ("QMAIL_HOME", h),
        ("NEWSENDER", "owner@x.test"),
        ("SENDER", "orig@x.test"),
        ("DTLINE", "Delivered-To: me@x.test\n"),
    ];
    let o = helper(
        "forward",
        &["a@y.test", "b@y.test"],
        &env,
        "Subject: f\n\nbody\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).starts_with("forward: qp "));
    let q = todo(home.path());
    assert_eq!(q.len(), 1);
    let text = String::from_utf8_lossy(&q[0]);
    assert!(text.contains(" invoked by uid "), "{text}");
    assert!(
        text.contains("Delivered-To: me@x.test\nSubject: f\n\nbody\n"),
        "{text}"
    );
    assert!(
        text.ends_with("Fowner@x.test\0Ta@y.test\0Tb@y.test\0\0"),
        "{text:?}"
    );
    std::fs::remove_dir_all(home.path().join("queue/todo")).unwrap();
    std::fs::create_dir(home.path().join("queue/todo")).unwrap();

    // condredirect: no redirect when the program says no...
    let o = helper(
        "condredirect",
        &["c@y.test", "grep", "-q", "urgent"],
        &env,
        "Subject: calm\n\nx\n",
    );
    assert_eq!(code(&o), 0);
    assert!(todo(home.path()).is_empty());
    // ...a retry on 111...
    let o = helper(
        "condredirect",
        &["c@y.test", "/bin/sh", "-c", "exit 111"],
        &env,
        "x\n",
    );
    assert_eq!(code(&o), 111);
    // ...and a redirect with the original sender and exit 99 on yes, the
    // whole message forwarded although the program read it first.
    let o = helper(
        "condredirect",
        &["c@y.test", "grep", "-q", "urgent"],
        &env,
        "Subject: urgent\n\nx\n",
    );
    assert_eq!(code(&o), 99, "{}", stderr(&o));
    let q = todo(home.path());
    let text = String::from_utf8_lossy(&q[0]);
    assert!(
        text.contains("Delivered-To: me@x.test\nSubject: urgent\n\nx\n"),
        "{text}"
    );
    assert!(text.ends_with("Forig@x.test\0Tc@y.test\0\0"), "{text:?}");

    let missing = helper("forward", &["a@y.test"], &[("QMAIL_HOME", h)], "x\n");
    assert_eq!(
        (code(&missing), stderr(&missing).as_str()),
        (100, "forward: fatal: NEWSENDER not set\n")
    );
}

#[test]
fn forward_honours_qmailqueue() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("qq");
    let out = dir.path().join("got");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat > {0}.msg\ncat <&1 > {0}.env\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = helper(
        "forward",
        &["a@y.test"],
        &[
            ("QMAILQUEUE", script.to_str().unwrap()),
            ("NEWSENDER", "s@x"),
            ("DTLINE", "Delivered-To: me@x\n"),
        ],
        "body\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let msg = std::fs::read_to_string(format!("{}.msg", out.display())).unwrap();
    assert_eq!(msg, "Delivered-To: me@x\nbody\n");
}

/// What python3's mailbox module finds in a maildir or an mbox: per message
/// its From_ line (mbox), Return-Path, Delivered-To, Subject and body.
fn python_read(kind: &str, path: &Path) -> String {
    let script = r#"
import mailbox, sys
kind, path = sys.argv[1], sys.argv[2]
box = mailbox.Maildir(path, factory=None, create=False) if kind == 'maildir' else mailbox.mbox(path, create=False)
msgs = sorted(box, key=lambda m: m['Subject'] or '')
for m in msgs:
    if kind == 'mbox':
        print('FROM_', m.get_from().split(' ')[0])
    print('RP', m['Return-Path'])
    print('DT', m.get_all('Delivered-To'))
    print('SUBJECT', m['Subject'])
    print('BODY', repr(m.get_payload()))
"#;
    let o = Command::new("python3")
        .args(["-c", script, kind])
        .arg(path)
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn queue_message(
    queue: &Queue<RealEnv>,
    rt: &tokio::runtime::Runtime,
    sender: &str,
    rcpt: &str,
) -> DeliveryJob {
    rt.block_on(async {
        let mut inj = queue.begin().await.unwrap();
        inj.write(MSG.as_bytes()).await.unwrap();
        let id = inj
            .commit(
                &Envelope {
                    sender: sender.into(),
                    recipients: vec![rcpt.into()],
                },
                1,
                1,
            )
            .await
            .unwrap();
        let (path, offset, len) = queue.message_location(id).await.unwrap();
        DeliveryJob::single(
            id,
            Channel::Local,
            sender,
            rcpt,
            1,
            MessageRef { path, offset, len },
        )
    })
}

#[test]
fn real_deliveries_read_back_by_python_mailbox() {
    let home_dir = init_home(None, None);
    let home = Home::new(home_dir.path());
    let alias = home.alias();
    let out = home_dir.path().join("program-out");
    std::fs::write(
        alias.join(".qmail-list"),
        format!(
            "# maildir, mbox, a program through preline, and a forward\n./Maildir/\n./Mailbox\n|preline -f cat > {}\nfriend@elsewhere.test\n",
            out.display()
        ),
    )
    .unwrap();
    let o = helper(
        "maildirmake",
        &[alias.join("Maildir").to_str().unwrap()],
        &[],
        "",
    );
    assert_eq!(code(&o), 0);
    let rt = qmail_bins::runtime().unwrap();
    let env = RealEnv::new();
    let queue = Queue::new(env.clone(), home.queue());
    let mut config = LocalConfig::new(Mode::Embedded, &home);
    config.program_env = vec![(
        "PATH".into(),
        format!("{}:/usr/bin:/bin", bin_dir().display()),
    )];
    let agent = LocalDelivery::new(queue.clone(), home.clone(), config);

    let job = queue_message(&queue, &rt, "alice@example.org", "list@localhost");
    assert_eq!(
        only(rt.block_on(agent.deliver(job))),
        Outcome::Success(format!("did 2+1+1\nqp {}\n", std::process::id()))
    );
    let job = queue_message(&queue, &rt, "", "bob@localhost");
    assert_eq!(
        only(rt.block_on(agent.deliver(job))),
        Outcome::Success("did 1+0+0\n".into())
    );

    let body = "'From the top\\n>From quoted\\nlast line\\n'";
    insta::assert_snapshot!(
        "python_maildir",
        python_read("maildir", &alias.join("Maildir")).replace(body, "BODY_OK")
    );
    assert_eq!(
        python_read("maildir", &home.mailboxes().join("bob/Maildir")),
        format!("RP <>\nDT ['bob@localhost']\nSUBJECT local test\nBODY {body}\n")
    );
    // In the mbox the body's `>*From ` lines carry one more `>` (python's
    // mbox reader, like most, leaves the quoting in place).
    let mbox = python_read("mbox", &alias.join("Mailbox"));
    assert_eq!(
        mbox,
        "FROM_ alice@example.org\nRP <alice@example.org>\nDT ['list@localhost']\nSUBJECT local test\nBODY '>From the top\\n>>From quoted\\nlast line\\n'\n"
    );
    let raw = std::fs::read_to_string(alias.join("Mailbox")).unwrap();
    assert!(
        raw.contains("\n>From the top\n>>From quoted\nlast line\n\n"),
        "{raw}"
    );
    // The program got the message as queued, behind preline's lines.
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        got,
        format!("Return-Path: <alice@example.org>\nDelivered-To: list@localhost\n{MSG}")
    );
    // The forward is queued with the Delivered-To line on top.
    let q = todo(home_dir.path());
    let fw = q
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .find(|m| m.contains("Tfriend@elsewhere.test"))
        .expect("forwarded copy queued");
    assert!(fw.contains("invoked by alias); "), "{fw}");
    assert!(
        fw.contains(&format!("Delivered-To: list@localhost\n{MSG}")),
        "{fw}"
    );
}

/// Waits for `n` messages in a maildir's new/.
fn wait_maildir(dir: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let files: Vec<String> = std::fs::read_dir(dir.join("new"))
            .map(|r| {
                r.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= n || Instant::now() > deadline {
            return files;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn qmail_run_delivers_to_two_users_and_a_forward() {
    if Command::new("swaks").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "swaks is required in CI");
        eprintln!("skipped: no swaks");
        return;
    }
    let home = init_home(None, Some("mail.test"));
    set_control(home.path(), "locals", "mail.test");
    let alias = home.path().join("alias");
    std::fs::write(alias.join(".qmail-team"), "carol@mail.test\n").unwrap();
    // The forward helper, found on qmail run's PATH for programs.
    std::fs::write(alias.join(".qmail-relay"), "|forward dave@mail.test\n").unwrap();
    let server = QmailRun::start(home);
    let root = server.home.path().to_path_buf();
    let st = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &server.port.to_string()])
        .args([
            "--from",
            "alice@example.org",
            "--to",
            "u1@mail.test,u2@mail.test,team@mail.test,relay@mail.test",
        ])
        .args([
            "--helo",
            "swaks.example",
            "--header",
            "Subject: e2e",
            "--body",
            "Hello locals.",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "swaks");
    let mb = root.join("mailboxes");
    for (user, dt) in [("u1", "u1@mail.test"), ("u2", "u2@mail.test")] {
        let got = wait_maildir(&mb.join(user).join("Maildir"), 1);
        assert_eq!(got.len(), 1, "{user}");
        assert!(
            got[0].starts_with(&format!(
                "Return-Path: <alice@example.org>\nDelivered-To: {dt}\nReceived: (qmail "
            )),
            "{}",
            got[0]
        );
        assert!(got[0].contains("Subject: e2e"));
        assert!(got[0].contains("Hello locals."));
        assert_eq!(
            python_read("maildir", &mb.join(user).join("Maildir"))
                .lines()
                .nth(1)
                .unwrap(),
            format!("DT ['{dt}']")
        );
    }
    // The forward went back through the queue to carol.
    let got = wait_maildir(&mb.join("carol/Maildir"), 1);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(
            "Return-Path: <alice@example.org>\nDelivered-To: carol@mail.test\nReceived: (qmail "
        ),
        "{}",
        got[0]
    );
    assert!(got[0].contains(" invoked by alias); "), "{}", got[0]);
    assert!(
        got[0].contains("\nDelivered-To: team@mail.test\n"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("Hello locals."));
    let got = wait_maildir(&mb.join("dave/Maildir"), 1);
    assert_eq!(got.len(), 1, "|forward delivered");
    assert!(
        got[0].contains("\nDelivered-To: relay@mail.test\n"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("Hello locals."));
    server.stop();
}

#[test]
fn qmail_local_with_qmails_arguments() {
    let qhome = init_home(None, None);
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().to_str().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut all = vec![];
        all.extend_from_slice(args);
        helper(
            "qmail-local",
            &all,
            &[("QMAIL_HOME", qhome.path().to_str().unwrap())],
            stdin,
        )
    };
    // No .qmail for the bare user: the default delivery argument.
    assert_eq!(
        code(&helper("maildirmake", &[&format!("{h}/Maildir")], &[], "")),
        0
    );
    let o = run(
        &[
            "bob",
            h,
            "bob",
            "",
            "",
            "example.org",
            "a@b.test",
            "./Maildir/\n",
        ],
        MSG,
    );
    assert_eq!(
        (code(&o), String::from_utf8_lossy(&o.stdout).as_ref()),
        (0, "did 1+0+0\n"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        python_read("maildir", &dir.path().join("Maildir")),
        "RP <a@b.test>\nDT ['bob@example.org']\nSUBJECT local test\nBODY 'From the top\\n>From quoted\\nlast line\\n'\n"
    );
    // An extension nobody handles.
    let o = run(
        &[
            "bob",
            h,
            "bob-x",
            "-",
            "x",
            "example.org",
            "a@b.test",
            "./Maildir/\n",
        ],
        MSG,
    );
    assert_eq!(
        (code(&o), String::from_utf8_lossy(&o.stdout).as_ref()),
        (100, "Sorry, no mailbox here by that name. (#5.1.1)\n")
    );
    // -n describes the instructions.
    std::fs::write(
        dir.path().join(".qmail-list"),
        "# c\n./Maildir/\n./Mailbox\n|cat\n&x@y.test\n",
    )
    .unwrap();
    let o = run(
        &[
            "-n",
            "bob",
            h,
            "bob-list",
            "-",
            "list",
            "example.org",
            "a@b.test",
            "./Maildir/\n",
        ],
        MSG,
    );
    assert_eq!(
        (code(&o), String::from_utf8_lossy(&o.stdout).as_ref()),
        (
            0,
            "maildir ./Maildir/\nmbox ./Mailbox\nprogram cat\nforward x@y.test\n"
        )
    );
    // A loop.
    let looped = format!("Delivered-To: bob@example.org\n{MSG}");
    let o = run(
        &[
            "bob",
            h,
            "bob",
            "",
            "",
            "example.org",
            "a@b.test",
            "./Maildir/\n",
        ],
        &looped,
    );
    assert_eq!(code(&o), 100);
    assert_eq!(
        code(&run(
            &["bob", "relative", "bob", "", "", "d", "s", "./Maildir/"],
            ""
        )),
        100
    );
}

/// The one outcome of a one-recipient job.
fn only(mut outcomes: Vec<Outcome>) -> Outcome {
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}
