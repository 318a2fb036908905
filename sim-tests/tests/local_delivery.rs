//! Local delivery on the simulated host: every `.qmail` line kind and their
//! mixes, the lookup order, every program exit code, the permission checks,
//! loop protection, forwarding senders, and the embedded (`qmail run`) mode.

use std::path::{Path, PathBuf};

use qmail_core::deliver::{Deliver, DeliveryJob, MessageRef, Outcome};
use qmail_core::env::{Env, ExitCode, Fs, FsFile, Identity, OpenOptions, ProgramOutput};
use qmail_core::home::Home;
use qmail_core::local::{LOOPING, LocalConfig, LocalDelivery, Mode, NO_MAILBOX, TOO_MANY_HOPS};
use qmail_core::queue::{Channel, Envelope, Queue};
use qmail_io_sim::{FsFaults, ProgramCall, SimEnv, SimFs, exited};

const HOME: &str = "/var/qmail";
const MSG: &[u8] = b"From: alice@example.org\nSubject: hi\n\nFrom the start\nbody\n";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

struct World {
    fs: SimFs,
    env: SimEnv,
    home: Home,
    queue: Queue<SimEnv>,
    agent: LocalDelivery<SimEnv>,
}

impl World {
    fn new(mode: Mode) -> World {
        World::with(mode, |_| {})
    }

    fn with(mode: Mode, tweak: impl FnOnce(&mut LocalConfig)) -> World {
        let fs = SimFs::new(1);
        let env = SimEnv::new(
            fs.clone(),
            1,
            Identity {
                pid: 77,
                uid: 500,
                gid: 500,
                hostname: "sim".into(),
            },
        );
        let home = Home::new(HOME);
        let queue = Queue::new(env.clone(), home.queue());
        rt().block_on(async {
            env.fs().create_dir_all(&home.alias(), 0o755).await.unwrap();
            env.fs()
                .create_dir_all(&home.control(), 0o755)
                .await
                .unwrap();
            queue.create().await.unwrap();
        });
        let mut config = LocalConfig::new(mode, &home);
        tweak(&mut config);
        let agent = LocalDelivery::new(queue.clone(), home.clone(), config);
        World {
            fs,
            env,
            home,
            queue,
            agent,
        }
    }

    /// A passwd user owning its home directory.
    fn user(&self, name: &str, uid: u32) -> PathBuf {
        let home = PathBuf::from(format!("/home/{name}"));
        self.mkdir(&home, 0o755);
        self.fs.set_owner(&home, uid).unwrap();
        self.env.users.add(name, uid, uid, &home);
        home
    }

    fn mkdir(&self, p: &Path, mode: u32) {
        rt().block_on(async {
            self.env.fs().create_dir_all(p, 0o755).await.unwrap();
            self.env.fs().set_permissions(p, mode).await.unwrap();
        });
    }

    fn maildir(&self, p: &Path) {
        for sub in ["tmp", "new", "cur"] {
            self.mkdir(&p.join(sub), 0o700);
        }
    }

    fn file(&self, p: &Path, content: &str, mode: u32) {
        self.fs.install_file(p, content.as_bytes(), mode).unwrap();
    }

    fn read(&self, p: &Path) -> Option<Vec<u8>> {
        rt().block_on(self.env.fs().read_if_exists(p)).unwrap()
    }

    /// The messages in a maildir's new/, sorted.
    fn new_mail(&self, dir: &Path) -> Vec<Vec<u8>> {
        rt().block_on(async {
            let fs = self.env.fs();
            let Ok(entries) = fs.read_dir(&dir.join("new")).await else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for e in entries {
                out.push(fs.read(&dir.join("new").join(e.name)).await.unwrap());
            }
            out.sort();
            out
        })
    }

    /// Queues `msg` and delivers it to `rcpt` from `sender`.
    fn deliver(&self, sender: &str, rcpt: &str, msg: &[u8]) -> Outcome {
        rt().block_on(async {
            let mut inj = self.queue.begin().await.unwrap();
            inj.write(msg).await.unwrap();
            let id = inj
                .commit(
                    &Envelope {
                        sender: sender.into(),
                        recipients: vec![rcpt.into()],
                    },
                    500,
                    77,
                )
                .await
                .unwrap();
            let (path, offset, len) = self.queue.message_location(id).await.unwrap();
            let before = self.queue.list_todo().await.unwrap();
            let out = only(
                self.agent
                    .deliver(DeliveryJob::single(
                        id,
                        Channel::Local,
                        sender,
                        rcpt,
                        1,
                        MessageRef { path, offset, len },
                    ))
                    .await,
            );
            // Leave only what the delivery queued.
            for id in before {
                self.env
                    .fs()
                    .remove_file(&self.queue.layout().todo(id))
                    .await
                    .unwrap();
            }
            out
        })
    }

    /// Messages the deliveries queued (forwards): envelope and bytes.
    fn queued(&self) -> Vec<(Envelope, Vec<u8>)> {
        rt().block_on(async {
            let mut out = Vec::new();
            for id in self.queue.list_todo().await.unwrap() {
                let (_, env) = self.queue.read_todo(id).await.unwrap();
                out.push((env, self.queue.read_message(id).await.unwrap()));
            }
            out
        })
    }

    fn script(
        &self,
        name: &str,
        f: impl Fn(&ProgramCall) -> ProgramOutput + Send + Sync + 'static,
    ) {
        self.env.exec.script(name, std::time::Duration::ZERO, f);
    }
}

fn success(t: &str) -> Outcome {
    Outcome::Success(t.into())
}

/// What a maildir holds for one delivery: Return-Path, Delivered-To, message.
fn stored(sender: &str, rcpt: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = format!("Return-Path: <{sender}>\nDelivered-To: {rcpt}\n").into_bytes();
    v.extend_from_slice(msg);
    v
}

fn env_of(call: &ProgramCall, key: &str) -> Option<String> {
    call.spec
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

#[test]
fn maildir_line_stores_return_path_delivered_to_and_the_message() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.maildir(&home.join("Maildir"));
    w.file(&home.join(".qmail"), "./Maildir/\n", 0o644);
    let out = w.deliver("alice@example.org", "bob@example.org", MSG);
    assert_eq!(out, success("did 1+0+0\n"));
    assert_eq!(
        w.new_mail(&home.join("Maildir")),
        vec![stored("alice@example.org", "bob@example.org", MSG)]
    );
    // Nothing left in tmp/.
    let tmp = rt()
        .block_on(w.env.fs().read_dir(&home.join("Maildir/tmp")))
        .unwrap();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn no_dot_qmail_means_the_default_delivery() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    let out = w.deliver("", "bob@example.org", MSG);
    assert_eq!(out, success("did 1+0+0\n"));
    let mbox = String::from_utf8(w.read(&home.join("Mailbox")).unwrap()).unwrap();
    let first = mbox.lines().next().unwrap();
    assert!(first.starts_with("From MAILER-DAEMON "), "{first}");
    let rest = &mbox[first.len() + 1..];
    assert_eq!(
        rest,
        "Return-Path: <>\nDelivered-To: bob@example.org\nFrom: alice@example.org\nSubject: hi\n\n>From the start\nbody\n\n"
    );

    // An empty .qmail is the same; control/defaultdelivery changes the default.
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.file(
        &w.home.control_file("defaultdelivery"),
        "./Maildir/\n",
        0o644,
    );
    let config = rt()
        .block_on(LocalConfig::load(&w.env, &w.home, Mode::System))
        .unwrap();
    assert_eq!(config.default_delivery, "./Maildir/\n");
    let agent = LocalDelivery::new(w.queue.clone(), w.home.clone(), config);
    let w = World { agent, ..w };
    w.maildir(&home.join("Maildir"));
    w.file(&home.join(".qmail"), "", 0o644);
    assert_eq!(
        w.deliver("a@b", "bob@example.org", MSG),
        success("did 1+0+0\n")
    );
    assert_eq!(w.new_mail(&home.join("Maildir")).len(), 1);
}

#[test]
fn every_line_kind_in_one_file() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.maildir(&home.join("Maildir"));
    w.script("record", |_| exited(0, "recorded\n"));
    w.file(
        &home.join(".qmail"),
        "# a comment\n./Maildir/\n./Mailbox\n|record it\n&carol@example.net\ndave@example.com\n+unknown\n",
        0o644,
    );
    let out = w.deliver("alice@example.org", "bob@example.org", MSG);
    assert_eq!(out, success("recorded\ndid 2+2+1\nqp 77\n"));
    assert_eq!(w.new_mail(&home.join("Maildir")).len(), 1);
    assert!(w.read(&home.join("Mailbox")).is_some());
    let calls = w.env.exec.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].spec.command, "record it");
    assert_eq!(calls[0].spec.cwd, home);
    assert_eq!(calls[0].spec.user, Some((1001, 1001)));
    assert_eq!(calls[0].stdin, MSG, "a program gets the message as queued");
    assert_eq!(
        env_of(&calls[0], "RECIPIENT").as_deref(),
        Some("bob@example.org")
    );
    assert_eq!(env_of(&calls[0], "DEFAULT"), None);
    let queued = w.queued();
    assert_eq!(queued.len(), 1, "one forwarded copy for all forward lines");
    let (env, bytes) = &queued[0];
    assert_eq!(env.sender, "alice@example.org");
    assert_eq!(env.recipients, ["carol@example.net", "dave@example.com"]);
    let text = String::from_utf8(bytes.clone()).unwrap();
    let (received, rest) = text.split_once('\n').unwrap();
    assert!(
        received.starts_with("Received: (qmail 77 invoked by uid 1001); "),
        "{received}"
    );
    assert_eq!(
        rest.as_bytes(),
        [b"Delivered-To: bob@example.org\n".as_slice(), MSG].concat()
    );
}

#[test]
fn lookup_order_and_default() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.script("which", |c| {
        exited(
            0,
            &format!("{} DEFAULT={:?}\n", c.spec.command, env_of(c, "DEFAULT")),
        )
    });
    w.file(&home.join(".qmail-foo-bar"), "|which foo-bar\n", 0o644);
    w.file(
        &home.join(".qmail-foo-default"),
        "|which foo-default\n",
        0o644,
    );
    w.file(&home.join(".qmail-default"), "|which default\n", 0o644);
    w.file(&home.join(".qmail"), "|which bare\n", 0o644);
    let said = |rcpt: &str| match w.deliver("a@b", rcpt, MSG) {
        Outcome::Success(t) => t.lines().next().unwrap().to_string(),
        other => panic!("{rcpt}: {other:?}"),
    };
    assert_eq!(said("bob-foo-bar@x"), "which foo-bar DEFAULT=None");
    assert_eq!(said("Bob-FOO-Bar@x"), "which foo-bar DEFAULT=None");
    assert_eq!(
        said("bob-foo-baz@x"),
        "which foo-default DEFAULT=Some(\"baz\")"
    );
    assert_eq!(
        said("bob-foo-a-b@x"),
        "which foo-default DEFAULT=Some(\"a-b\")"
    );
    assert_eq!(said("bob-other@x"), "which default DEFAULT=Some(\"other\")");
    assert_eq!(said("bob@x"), "which bare DEFAULT=None");
    // Dots in the extension become colons.
    w.file(&home.join(".qmail-j:doe"), "|which dots\n", 0o644);
    assert_eq!(said("bob-j.doe@x"), "which dots DEFAULT=None");

    // Without a default file an extension nobody handles bounces.
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.file(&home.join(".qmail-foo"), "./Maildir/\n", 0o644);
    assert_eq!(
        w.deliver("a@b", "bob-bar@x", MSG),
        Outcome::Failure(NO_MAILBOX.into())
    );
}

#[test]
fn users_assign_then_passwd_then_alias() {
    let w = World::new(Mode::System);
    let bob = w.user("bob", 1001);
    let joe = w.user("joe", 1002);
    w.user("root", 0);
    w.user("alias", 7790);
    w.mkdir(&w.home.alias(), 0o755);
    w.file(
        &w.home.users().join("assign"),
        &format!(
            "=info:joe:1002:1002:{}:-:info:\n+sales-:bob:1001:1001:{}:-:s-:\n.\n",
            joe.display(),
            bob.display()
        ),
        0o644,
    );
    w.script("who", |c| {
        exited(
            0,
            &format!(
                "{} {}\n",
                env_of(c, "USER").unwrap(),
                env_of(c, "EXT").unwrap()
            ),
        )
    });
    w.file(&joe.join(".qmail-info"), "|who\n", 0o644);
    w.file(&bob.join(".qmail-s-default"), "|who\n", 0o644);
    w.file(&bob.join(".qmail-x-y"), "|who\n", 0o644);
    w.file(&w.home.alias().join(".qmail-postmaster"), "|who\n", 0o644);
    w.file(&w.home.alias().join(".qmail-root"), "|who\n", 0o644);
    let first = |rcpt: &str| match w.deliver("a@b", rcpt, MSG) {
        Outcome::Success(t) => t.lines().next().unwrap().to_string(),
        other => format!("{other:?}"),
    };
    assert_eq!(first("info@x"), "joe info");
    assert_eq!(first("Sales-East@x"), "bob s-East");
    assert_eq!(first("bob-x-y@x"), "bob x-y");
    assert_eq!(first("postmaster@x"), "alias postmaster");
    assert_eq!(
        first("root@x"),
        "alias root",
        "root gets no mail of its own"
    );
    assert_eq!(
        first("nobody-here@x"),
        format!("{:?}", Outcome::Failure(NO_MAILBOX.into()))
    );
    // A user whose home belongs to someone else is no user.
    w.fs.set_owner(&joe, 1).unwrap();
    assert_eq!(
        first("joe@x"),
        format!("{:?}", Outcome::Failure(NO_MAILBOX.into()))
    );
}

#[test]
fn no_alias_user_means_no_mailbox() {
    let w = World::new(Mode::System);
    assert_eq!(
        w.deliver("a@b", "postmaster@x", MSG),
        Outcome::Failure(NO_MAILBOX.into())
    );
}

#[test]
fn every_program_exit_code() {
    let cases: Vec<(ExitCode, &str)> = vec![
        (ExitCode::Exited(0), "ok"),
        (ExitCode::Exited(99), "stop"),
        (ExitCode::Exited(100), "perm"),
        (ExitCode::Exited(64), "perm"),
        (ExitCode::Exited(65), "perm"),
        (ExitCode::Exited(70), "perm"),
        (ExitCode::Exited(76), "perm"),
        (ExitCode::Exited(77), "perm"),
        (ExitCode::Exited(78), "perm"),
        (ExitCode::Exited(112), "perm"),
        (ExitCode::Exited(111), "temp"),
        (ExitCode::Exited(1), "temp"),
        (ExitCode::Exited(2), "temp"),
        (ExitCode::Exited(101), "temp"),
        (ExitCode::Signaled, "crash"),
    ];
    for (status, kind) in cases {
        let w = World::new(Mode::System);
        let home = w.user("bob", 1001);
        w.maildir(&home.join("Maildir"));
        w.script("prog", move |_| ProgramOutput {
            status,
            output: b"said something".to_vec(),
        });
        w.file(
            &home.join(".qmail"),
            "&before@x\n|prog\n./Maildir/\n&after@x\n",
            0o644,
        );
        let out = w.deliver("a@b", "bob@x", MSG);
        let delivered = w.new_mail(&home.join("Maildir")).len();
        let forwarded: Vec<Vec<String>> =
            w.queued().into_iter().map(|(e, _)| e.recipients).collect();
        match kind {
            "ok" => {
                assert_eq!(out, success("said something\ndid 1+2+1\nqp 77\n"));
                assert_eq!(delivered, 1);
                assert_eq!(
                    forwarded,
                    vec![vec!["before@x".to_string(), "after@x".into()]]
                );
            }
            "stop" => {
                // The rest of the file is skipped; earlier forwards still go.
                assert_eq!(out, success("said something\ndid 0+1+1\nqp 77\n"));
                assert_eq!(delivered, 0);
                assert_eq!(forwarded, vec![vec!["before@x".to_string()]]);
            }
            "perm" => {
                assert_eq!(
                    out,
                    Outcome::Failure("said something\n".into()),
                    "{status:?}"
                );
                assert_eq!((delivered, forwarded.len()), (0, 0));
            }
            "temp" => {
                assert_eq!(
                    out,
                    Outcome::Deferral("said something\n".into()),
                    "{status:?}"
                );
                assert_eq!((delivered, forwarded.len()), (0, 0));
            }
            "crash" => {
                assert_eq!(
                    out,
                    Outcome::Deferral("said something\nAack, child crashed. (#4.3.0)\n".into())
                );
                assert_eq!((delivered, forwarded.len()), (0, 0));
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn program_environment() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.script("env", |_| exited(0, ""));
    w.file(&home.join(".qmail-list-default"), "|env\n", 0o644);
    // The owner file goes with the whole extension, not the default matched.
    w.file(&home.join(".qmail-list-x-y-owner"), "", 0o644);
    assert_eq!(
        w.deliver("a@b.c", "bob-list-x-y@mail.example.org", MSG),
        success("did 0+0+1\n")
    );
    let call = &w.env.exec.calls()[0];
    let get = |k: &str| env_of(call, k).unwrap_or_else(|| panic!("{k} unset"));
    assert_eq!(get("USER"), "bob");
    assert_eq!(get("HOME"), "/home/bob");
    assert_eq!(get("LOCAL"), "bob-list-x-y");
    assert_eq!(get("HOST"), "mail.example.org");
    assert_eq!(get("RECIPIENT"), "bob-list-x-y@mail.example.org");
    assert_eq!(get("SENDER"), "a@b.c");
    assert_eq!(get("NEWSENDER"), "bob-list-x-y-owner@mail.example.org");
    assert_eq!(
        get("DTLINE"),
        "Delivered-To: bob-list-x-y@mail.example.org\n"
    );
    assert_eq!(get("RPLINE"), "Return-Path: <a@b.c>\n");
    assert!(get("UFLINE").starts_with("From a@b.c "));
    assert_eq!(get("EXT"), "list-x-y");
    assert_eq!(get("EXT2"), "x-y");
    assert_eq!(get("EXT3"), "y");
    assert_eq!(get("EXT4"), "");
    assert_eq!(get("HOST2"), "mail.example");
    assert_eq!(get("HOST3"), "mail");
    assert_eq!(get("HOST4"), "");
    assert_eq!(get("DEFAULT"), "x-y");
    assert_eq!(get("QMAIL_HOME"), HOME);
    assert!(get("PATH").starts_with("/var/qmail/bin:"));
}

#[test]
fn forwarding_senders_owner_and_verp() {
    for (files, sender, want) in [
        (vec![], "a@b", "a@b"),
        (vec![".qmail-list-owner"], "a@b", "bob-list-owner@x.org"),
        (
            vec![".qmail-list-owner", ".qmail-list-owner-default"],
            "a@b",
            "bob-list-owner-@x.org-@[]",
        ),
        (vec![".qmail-list-owner"], "", ""),
        (vec![".qmail-list-owner"], "#@[]", "#@[]"),
    ] {
        let w = World::new(Mode::System);
        let home = w.user("bob", 1001);
        w.file(&home.join(".qmail-list"), "carol@y.org\n", 0o644);
        for f in &files {
            w.file(&home.join(f), "", 0o644);
        }
        assert_eq!(
            w.deliver(sender, "bob-list@x.org", MSG),
            success("did 0+1+0\nqp 77\n")
        );
        let q = w.queued();
        assert_eq!(q[0].0.sender, want, "{files:?} {sender:?}");
    }
}

#[test]
fn failures_before_the_end_prevent_forwarding() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    // Maildir without new/: a temporary failure.
    w.file(&home.join(".qmail"), "carol@y.org\n./Missing/\n", 0o644);
    assert_eq!(
        w.deliver("a@b", "bob@x", MSG),
        Outcome::Deferral("Unable to chdir to maildir. (#4.2.1)\n".into())
    );
    assert!(w.queued().is_empty());
}

#[test]
fn execute_bit_allows_forwards_only() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.maildir(&home.join("Maildir"));
    w.file(&home.join(".qmail-fw"), "carol@y.org\n", 0o744);
    assert_eq!(
        w.deliver("a@b", "bob-fw@x", MSG),
        success("did 0+1+0\nqp 77\n")
    );
    w.file(&home.join(".qmail-md"), "./Maildir/\n", 0o744);
    assert_eq!(
        w.deliver("a@b", "bob-md@x", MSG),
        Outcome::Deferral("Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)\n".into())
    );
    w.file(&home.join(".qmail-pr"), "|true\n", 0o744);
    assert_eq!(
        w.deliver("a@b", "bob-pr@x", MSG),
        Outcome::Deferral("Uh-oh: .qmail has prog delivery but has x bit set. (#4.7.0)\n".into())
    );
    // +list does the same for the lines after it.
    w.file(
        &home.join(".qmail-ls"),
        "./Maildir/\n+list\n./Mailbox\n",
        0o644,
    );
    assert_eq!(
        w.deliver("a@b", "bob-ls@x", MSG),
        Outcome::Deferral("Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)\n".into())
    );
    assert_eq!(
        w.new_mail(&home.join("Maildir")).len(),
        1,
        "lines before +list ran"
    );
}

#[test]
fn permission_checks_defer() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.file(&home.join(".qmail"), "./Maildir/\n", 0o646);
    assert_eq!(
        w.deliver("a@b", "bob@x", MSG),
        Outcome::Deferral("Uh-oh: .qmail file is writable. (#4.7.0)\n".into())
    );
    w.mkdir(&home, 0o757);
    assert_eq!(
        w.deliver("a@b", "bob@x", MSG),
        Outcome::Deferral("Uh-oh: home directory is writable. (#4.7.0)\n".into())
    );
    w.mkdir(&home, 0o1755);
    assert_eq!(
        w.deliver("a@b", "bob@x", MSG),
        Outcome::Deferral(
            "Home directory is sticky: user is editing his .qmail file. (#4.2.1)\n".into()
        )
    );
}

#[test]
fn blank_first_line_defers() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.file(&home.join(".qmail"), "\n./Maildir/\n", 0o644);
    assert_eq!(
        w.deliver("a@b", "bob@x", MSG),
        Outcome::Deferral("Uh-oh: first line of .qmail file is blank. (#4.2.1)\n".into())
    );
}

#[test]
fn loop_protection() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.maildir(&home.join("Maildir"));
    w.file(&home.join(".qmail"), "./Maildir/\n", 0o644);
    let looped = [b"Delivered-To: bob@x\n".as_slice(), MSG].concat();
    assert_eq!(
        w.deliver("a@b", "bob@x", &looped),
        Outcome::Failure(LOOPING.into())
    );
    // Another address's line, or ours in the body, is no loop.
    let other = [
        b"Delivered-To: carol@x\n".as_slice(),
        MSG,
        b"Delivered-To: bob@x\n",
    ]
    .concat();
    assert_eq!(w.deliver("a@b", "bob@x", &other), success("did 1+0+0\n"));
    let many = ["Delivered-To: someone@else\n".repeat(100).as_bytes(), MSG].concat();
    assert_eq!(
        w.deliver("a@b", "bob@x", &many),
        Outcome::Failure(TOO_MANY_HOPS.into())
    );
    let fewer = ["Delivered-To: someone@else\n".repeat(99).as_bytes(), MSG].concat();
    assert_eq!(w.deliver("a@b", "bob@x", &fewer), success("did 1+0+0\n"));
}

#[test]
fn mbox_write_failure_truncates_back() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.file(
        &home.join("Mailbox"),
        "From x Thu Jan 01 00:00:00 1970\nold\n\n",
        0o600,
    );
    w.file(&home.join(".qmail"), "./Mailbox\n", 0o644);
    let big = [MSG, "x".repeat(200_000).as_bytes()].concat();
    // The message is queued first; then the disk has room for half of it.
    let out = rt().block_on(async {
        let mut inj = w.queue.begin().await.unwrap();
        inj.write(&big).await.unwrap();
        let id = inj
            .commit(
                &Envelope {
                    sender: "a@b".into(),
                    recipients: vec!["bob@x".into()],
                },
                1,
                1,
            )
            .await
            .unwrap();
        let (path, offset, len) = w.queue.message_location(id).await.unwrap();
        w.fs.set_faults(FsFaults {
            capacity: Some(w.fs.used_bytes() + 100_000),
            ..FsFaults::default()
        });
        only(
            w.agent
                .deliver(DeliveryJob::single(
                    id,
                    Channel::Local,
                    "a@b",
                    "bob@x",
                    1,
                    MessageRef { path, offset, len },
                ))
                .await,
        )
    });
    let Outcome::Deferral(text) = out else {
        panic!("{out:?}")
    };
    assert!(
        text.starts_with("Unable to write /home/bob/Mailbox: "),
        "{text}"
    );
    assert_eq!(
        w.read(&home.join("Mailbox")).unwrap(),
        b"From x Thu Jan 01 00:00:00 1970\nold\n\n".to_vec(),
        "cut back to the old length"
    );
}

#[test]
fn mbox_lock_is_waited_for_then_given_up() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.file(&home.join("Mailbox"), "", 0o600);
    w.file(&home.join(".qmail"), "./Mailbox\n", 0o644);
    let mut holder = rt().block_on(async {
        let mut f = w
            .env
            .fs()
            .open(&home.join("Mailbox"), &OpenOptions::append())
            .await
            .unwrap();
        assert!(f.try_lock().await.unwrap());
        f
    });
    // Time is paused: the 30 seconds pass at once.
    assert_eq!(
        w.deliver("a@b", "bob@x", MSG),
        Outcome::Deferral("File has been locked for 30 seconds straight. (#4.3.0)\n".into())
    );
    rt().block_on(holder.sync_all()).unwrap();
    drop(holder);
    assert_eq!(w.deliver("a@b", "bob@x", MSG), success("did 1+0+0\n"));
}

#[test]
fn embedded_mode_alias_files_first_then_mailboxes() {
    let w = World::new(Mode::Embedded);
    let alias = w.home.alias();
    w.maildir(&alias.join("Maildir"));
    w.file(&alias.join(".qmail-postmaster"), "./Maildir/\n", 0o644);
    w.file(
        &alias.join(".qmail-team"),
        "bob@sim.test\ncarol@sim.test\n",
        0o644,
    );
    assert_eq!(
        w.deliver("a@b", "postmaster@sim.test", MSG),
        success("did 1+0+0\n")
    );
    assert_eq!(
        w.new_mail(&alias.join("Maildir")),
        vec![stored("a@b", "postmaster@sim.test", MSG)]
    );
    assert_eq!(
        w.deliver("a@b", "Bob@sim.test", MSG),
        success("did 1+0+0\n")
    );
    assert_eq!(
        w.new_mail(&w.home.mailboxes().join("bob/Maildir")),
        vec![stored("a@b", "Bob@sim.test", MSG)]
    );
    assert_eq!(
        w.deliver("a@b", "team@sim.test", MSG),
        success("did 0+2+0\nqp 77\n")
    );
    let q = w.queued();
    assert_eq!(q[0].0.recipients, ["bob@sim.test", "carol@sim.test"]);
    assert!(
        String::from_utf8_lossy(&q[0].1).starts_with("Received: (qmail 77 invoked by alias); ")
    );
    // Programs run as the invoking user.
    w.script("note", |_| exited(0, ""));
    w.file(&alias.join(".qmail-default"), "|note\n", 0o644);
    assert_eq!(
        w.deliver("a@b", "anyone@sim.test", MSG),
        success("did 0+0+1\n")
    );
    assert_eq!(w.env.exec.calls()[0].spec.user, None);
    assert_eq!(w.env.exec.calls()[0].spec.cwd, alias);
}

#[test]
fn forwarding_through_a_queue_program() {
    let w = World::with(Mode::System, |c| {
        c.queue_program = Some("/bin/myqueue".into())
    });
    let home = w.user("bob", 1001);
    w.file(&home.join(".qmail"), "carol@y.org\n", 0o644);
    w.script("/bin/myqueue", |c| {
        let envelope = env_of(c, "ENVELOPE").unwrap();
        assert_eq!(envelope, "Fa@b\0Tcarol@y.org\0\0");
        assert!(c.stdin.starts_with(b"Delivered-To: bob@x\n"));
        exited(0, "")
    });
    assert_eq!(
        w.deliver("a@b", "bob@x", MSG),
        success("did 0+1+0\nqp 77\n")
    );
    let w2 = World::with(Mode::System, |c| {
        c.queue_program = Some("/bin/refuse".into())
    });
    let home2 = w2.user("bob", 1001);
    w2.file(&home2.join(".qmail"), "carol@y.org\n", 0o644);
    w2.script("/bin/refuse", |_| exited(31, ""));
    assert_eq!(
        w2.deliver("a@b", "bob@x", MSG),
        Outcome::Failure(
            "Unable to forward message: mail server permanently rejected message (#5.3.0).\n"
                .into()
        )
    );
}

#[test]
fn concurrent_deliveries_to_one_maildir_and_one_mbox() {
    let w = World::new(Mode::System);
    let home = w.user("bob", 1001);
    w.maildir(&home.join("Maildir"));
    w.file(&home.join(".qmail"), "./Maildir/\n./Mailbox\n", 0o644);
    // Slow syncs make the deliveries interleave (and contend for the lock).
    w.fs.set_faults(FsFaults {
        slow_sync: Some((
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(20),
        )),
        ..FsFaults::default()
    });
    const N: usize = 20;
    let outs = rt().block_on(async {
        let mut jobs = Vec::new();
        for i in 0..N {
            let msg = format!("Subject: {i}\n\nFrom body {i}\n");
            let mut inj = w.queue.begin().await.unwrap();
            inj.write(msg.as_bytes()).await.unwrap();
            let id = inj
                .commit(
                    &Envelope {
                        sender: "a@b".into(),
                        recipients: vec!["bob@x".into()],
                    },
                    1,
                    1,
                )
                .await
                .unwrap();
            let (path, offset, len) = w.queue.message_location(id).await.unwrap();
            jobs.push(DeliveryJob::single(
                id,
                Channel::Local,
                "a@b",
                "bob@x",
                i as u64,
                MessageRef { path, offset, len },
            ));
        }
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|j| {
                let agent = w.agent.clone();
                tokio::spawn(async move { only(agent.deliver(j).await) })
            })
            .collect();
        let mut outs = Vec::new();
        for t in tasks {
            outs.push(t.await.unwrap());
        }
        outs
    });
    assert!(
        outs.iter().all(|o| *o == success("did 2+0+0\n")),
        "{outs:?}"
    );
    let want: Vec<Vec<u8>> = {
        let mut v: Vec<Vec<u8>> = (0..N)
            .map(|i| {
                stored(
                    "a@b",
                    "bob@x",
                    format!("Subject: {i}\n\nFrom body {i}\n").as_bytes(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        w.new_mail(&home.join("Maildir")),
        want,
        "every name unique, every file whole"
    );
    let mbox = String::from_utf8(w.read(&home.join("Mailbox")).unwrap()).unwrap();
    let mut blocks: Vec<String> = mbox
        .split("From a@b ")
        .filter(|b| !b.is_empty())
        .map(|b| b.split_once('\n').unwrap().1.to_string())
        .collect();
    blocks.sort();
    let mut expect: Vec<String> = (0..N)
        .map(|i| {
            format!("Return-Path: <a@b>\nDelivered-To: bob@x\nSubject: {i}\n\n>From body {i}\n\n")
        })
        .collect();
    expect.sort();
    assert_eq!(blocks, expect, "messages appended whole, one after another");
}

/// The one outcome of a one-recipient job.
fn only(mut outcomes: Vec<Outcome>) -> Outcome {
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}
