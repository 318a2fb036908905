//! Maildir delivery under crashes: crash after every filesystem operation of
//! one delivery, under many keep/lose outcomes, then deliver again (a
//! maildir's recovery is the next attempt). `new/` must never hold a partial
//! file; a delivery reported successful must survive the crash; after the
//! retry the message is there at least once, whole.

use std::path::{Path, PathBuf};

use qmail_core::deliver::{Deliver, DeliveryJob, MessageRef, Outcome};
use qmail_core::env::{Env, Fs, Identity, Plant, PlantSet};
use qmail_core::home::Home;
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::queue::{Channel, Envelope, Queue};
use qmail_io_sim::{CrashOptions, SimEnv, SimFs};

const SEEDS_PER_OP: u64 = 16;
const SENDER: &str = "alice@example.org";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn env_on(fs: &SimFs, seed: u64, plants: PlantSet) -> SimEnv {
    SimEnv::new(
        fs.clone(),
        seed,
        Identity {
            pid: 77,
            uid: 500,
            gid: 500,
            hostname: "sim".into(),
        },
    )
    .with_plants(plants)
}

fn message() -> Vec<u8> {
    let mut m = b"Subject: crash\n\n".to_vec();
    m.extend((0..3000u32).map(|i| {
        if i % 61 == 60 {
            b'\n'
        } else {
            b'a' + (i % 26) as u8
        }
    }));
    m.push(b'\n');
    m
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
        let mut inj = queue.begin().await.unwrap();
        inj.write(&message()).await.unwrap();
        let id = inj
            .commit(
                &Envelope {
                    sender: SENDER.into(),
                    recipients: vec![scenario.recipient().into()],
                },
                500,
                77,
            )
            .await
            .unwrap();
        let (path, offset, len) = queue.message_location(id).await.unwrap();
        DeliveryJob::single(
            id,
            Channel::Local,
            SENDER,
            scenario.recipient(),
            1,
            MessageRef { path, offset, len },
        )
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

fn crash_opts(seed: u64) -> CrashOptions {
    CrashOptions {
        keep_probability: [0.0, 0.2, 0.5, 0.8, 1.0][(seed % 5) as usize],
        torn_block: Some(512),
    }
}

/// Runs the sweep; returns the first violation found, if any.
fn sweep(scenario: Scenario, plants: PlantSet) -> Result<usize, String> {
    let rt = rt();
    let home = Home::new("/var/qmail");
    let dir = scenario.maildir(&home);
    let want = expected(scenario.recipient());
    let fs = SimFs::new(0);
    let job = prepare(&fs, scenario, &rt);
    let before = fs.stats().mutations;
    let out = only(rt.block_on(agent(&fs, 1, plants, scenario.mode()).deliver(job.clone())));
    assert!(matches!(out, Outcome::Success(_)), "{out:?}");
    let ops = fs.stats().mutations - before;
    assert!(ops >= 4, "{scenario:?}: only {ops} mutations");
    let mut states = 0;
    for k in 0..=ops {
        for seed in 0..SEEDS_PER_OP {
            let fs = SimFs::new(seed);
            let job = prepare(&fs, scenario, &rt);
            fs.halt_after(k);
            let out = only(
                rt.block_on(agent(&fs, seed + 1, plants, scenario.mode()).deliver(job.clone())),
            );
            let ok = matches!(out, Outcome::Success(_));
            fs.resume();
            fs.crash(seed * 1000 + k, crash_opts(seed));
            let ctx = format!("{scenario:?}: crash after op {k}/{ops}, seed {seed}");
            let files = new_files(&fs, &dir, &rt);
            if let Some(bad) = files.iter().find(|f| **f != want) {
                return Err(format!("{ctx}: partial file in new/ ({} bytes)", bad.len()));
            }
            if ok && files.is_empty() {
                return Err(format!("{ctx}: reported success, lost in the crash"));
            }
            // Recovery: the scheduler tries again.
            let again =
                only(rt.block_on(agent(&fs, seed + 2, plants, scenario.mode()).deliver(job)));
            if !matches!(again, Outcome::Success(_)) {
                return Err(format!("{ctx}: retry failed: {again:?}"));
            }
            let files = new_files(&fs, &dir, &rt);
            if files.is_empty() || files.iter().any(|f| *f != want) {
                return Err(format!(
                    "{ctx}: after the retry new/ holds {} files",
                    files.len()
                ));
            }
            if files.len() > 2 {
                return Err(format!("{ctx}: {} copies", files.len()));
            }
            states += 1;
        }
    }
    Ok(states)
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

/// The one outcome of a one-recipient job.
fn only(mut outcomes: Vec<Outcome>) -> Outcome {
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}
