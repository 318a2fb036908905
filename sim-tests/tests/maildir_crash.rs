//! Maildir delivery under crashes: crash after every filesystem operation of
//! one delivery, under many keep/lose outcomes, then deliver again (a
//! maildir's recovery is the next attempt). `new/` must never hold a partial
//! file; a delivery reported successful must survive the crash; after the
//! retry the message is there at least once, whole.

use std::path::{Path, PathBuf};

use qmail_core::deliver::{Deliver, DeliveryJob, Outcome};
use qmail_core::env::{Env, Fs, Plant, PlantSet};
use qmail_core::home::Home;
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::queue::Queue;
use qmail_io_sim::{SimEnv, SimFs};
use qmail_sim_tests::kit::crash::{Checked, crash_sweep, mutations_of};
use qmail_sim_tests::kit::inject::{local_job, only, text_after};
use qmail_sim_tests::kit::{identity, rt};

/// Crash trials at each cut.
const TRIALS: u64 = 16;
const SENDER: &str = "alice@example.org";

fn env_on(fs: &SimFs, seed: u64, plants: PlantSet) -> SimEnv {
    qmail_sim_tests::kit::env_on(fs, seed, &identity(77, 500, "sim")).with_plants(plants)
}

fn message() -> Vec<u8> {
    text_after(b"Subject: crash\n\n")
}

/// The scenario: where the maildir is and how the recipient is set up.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// A user's `.qmail` names an existing maildir.
    DotQmail,
    /// `qmail run`: the maildir is created on first use.
    EmbeddedFirstUse,
}

impl Scenario {
    fn mode(self) -> Mode {
        match self {
            Scenario::DotQmail => Mode::System,
            Scenario::EmbeddedFirstUse => Mode::Embedded,
        }
    }
    fn recipient(self) -> &'static str {
        match self {
            Scenario::DotQmail => "bob@example.org",
            Scenario::EmbeddedFirstUse => "carol@example.org",
        }
    }
    fn maildir(self, home: &Home) -> PathBuf {
        match self {
            Scenario::DotQmail => PathBuf::from("/home/bob/Maildir"),
            Scenario::EmbeddedFirstUse => home.mailboxes().join("carol/Maildir"),
        }
    }
}

fn expected(rcpt: &str) -> Vec<u8> {
    let mut v = format!("Return-Path: <{SENDER}>\nDelivered-To: {rcpt}\n").into_bytes();
    v.extend(message());
    v
}

/// A durable installation with the message queued; returns the job.
fn prepare(fs: &SimFs, scenario: Scenario, rt: &tokio::runtime::Runtime) -> DeliveryJob {
    let env = env_on(fs, 0, PlantSet::EMPTY);
    let home = Home::new("/var/qmail");
    let queue = Queue::new(env.clone(), home.queue());
    rt.block_on(async {
        let f = env.fs();
        f.create_dir_all(&home.alias(), 0o755).await.unwrap();
        queue.create().await.unwrap();
        if let Scenario::DotQmail = scenario {
            fs.install_file(Path::new("/home/bob/.qmail"), b"./Maildir/\n", 0o644)
                .unwrap();
            for sub in ["tmp", "new", "cur"] {
                fs.install_file(
                    &Path::new("/home/bob/Maildir").join(sub).join("x"),
                    b"",
                    0o644,
                )
                .unwrap();
                f.remove_file(&Path::new("/home/bob/Maildir").join(sub).join("x"))
                    .await
                    .unwrap();
                f.sync_dir(&Path::new("/home/bob/Maildir").join(sub))
                    .await
                    .unwrap();
            }
            fs.set_owner(Path::new("/home/bob"), 1001).unwrap();
        }
        // Everything so far durable.
        for d in ["/", "/var", "/var/qmail", "/var/qmail/alias"] {
            f.sync_dir(Path::new(d)).await.unwrap();
        }
        local_job(&queue, SENDER, scenario.recipient(), &message())
            .await
            .unwrap()
    })
}

fn agent(fs: &SimFs, seed: u64, plants: PlantSet, mode: Mode) -> LocalDelivery<SimEnv> {
    let env = env_on(fs, seed, plants);
    env.users.add("bob", 1001, 1001, "/home/bob");
    let home = Home::new("/var/qmail");
    let queue = Queue::new(env, home.queue());
    LocalDelivery::new(queue, home.clone(), LocalConfig::new(mode, &home))
}

/// Every file in `dir/new`: each must be the whole message.
fn new_files(fs: &SimFs, dir: &Path, rt: &tokio::runtime::Runtime) -> Vec<Vec<u8>> {
    rt.block_on(async {
        let Ok(entries) = fs.read_dir(&dir.join("new")).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries {
            out.push(fs.read(&dir.join("new").join(&e.name)).await.unwrap());
        }
        out
    })
}

/// Runs the sweep; returns the first violation found, if any.
fn sweep(scenario: Scenario, plants: PlantSet) -> Result<usize, String> {
    let rt = rt();
    let home = Home::new("/var/qmail");
    let dir = scenario.maildir(&home);
    let want = expected(scenario.recipient());
    let fs = SimFs::new(0);
    let job = prepare(&fs, scenario, &rt);
    let (ops, out) = mutations_of(&fs, || {
        only(rt.block_on(agent(&fs, 1, plants, scenario.mode()).deliver(job.clone())))
    });
    assert!(matches!(out, Outcome::Success(_)), "{out:?}");
    assert!(ops >= 4, "{scenario:?}: only {ops} mutations");
    let swept = crash_sweep(&format!("{scenario:?}"), ops, TRIALS, |point| {
        let seed = point.trial;
        let fs = SimFs::new(seed);
        let job = prepare(&fs, scenario, &rt);
        point.arm(&fs);
        let out =
            only(rt.block_on(agent(&fs, seed + 1, plants, scenario.mode()).deliver(job.clone())));
        let ok = matches!(out, Outcome::Success(_));
        point.crash(&fs);
        let files = new_files(&fs, &dir, &rt);
        if let Some(bad) = files.iter().find(|f| **f != want) {
            return Err(format!("partial file in new/ ({} bytes)", bad.len()));
        }
        if ok && files.is_empty() {
            return Err("reported success, lost in the crash".into());
        }
        // Recovery: the scheduler tries again.
        let again = only(rt.block_on(agent(&fs, seed + 2, plants, scenario.mode()).deliver(job)));
        if !matches!(again, Outcome::Success(_)) {
            return Err(format!("retry failed: {again:?}"));
        }
        let files = new_files(&fs, &dir, &rt);
        if files.is_empty() || files.iter().any(|f| *f != want) {
            return Err(format!("after the retry new/ holds {} files", files.len()));
        }
        if files.len() > 2 {
            return Err(format!("{} copies", files.len()));
        }
        Ok(Checked::Held)
    })?;
    Ok(swept.held)
}

#[test]
fn crash_at_every_step_of_a_maildir_delivery() {
    for scenario in [Scenario::DotQmail, Scenario::EmbeddedFirstUse] {
        match sweep(scenario, PlantSet::EMPTY) {
            Ok(states) => eprintln!("{scenario:?}: {states} crash states checked"),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn the_planted_missing_sync_is_caught() {
    let r = sweep(
        Scenario::DotQmail,
        PlantSet::EMPTY.with(Plant::SkipMaildirSync),
    );
    let e = r.expect_err("linking an unsynced file must show up as a partial file");
    assert!(
        e.contains("partial file in new/") || e.contains("lost in the crash"),
        "{e}"
    );
}
