//! mbox delivery under crashes: crash after every filesystem operation of
//! one delivery, then retry. What was in the mbox before is never damaged,
//! a delivery reported successful survives the crash, and after the retry
//! the mbox ends with the whole message. (A crash in the middle of an
//! append can leave a torn copy before the retried one: qmail documents
//! the same; maildir is the format without that problem.)

use std::path::Path;

use qmail_core::deliver::{Deliver, DeliveryJob, MessageRef, Outcome};
use qmail_core::env::{Env, Fs, Identity};
use qmail_core::home::Home;
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::queue::{Channel, Envelope, Queue};
use qmail_io_sim::{CrashOptions, SimEnv, SimFs};

const OLD: &[u8] = b"From x@y Thu Jan 01 00:00:00 1970\nSubject: old\n\nold body\n\n";
const MBOX: &str = "/home/bob/Mailbox";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn env_on(fs: &SimFs, seed: u64) -> SimEnv {
    let env = SimEnv::new(
        fs.clone(),
        seed,
        Identity {
            pid: 77,
            uid: 500,
            gid: 500,
            hostname: "sim".into(),
        },
    );
    env.users.add("bob", 1001, 1001, "/home/bob");
    env
}

fn message() -> Vec<u8> {
    let mut m = b"Subject: crash\n\nFrom here\n".to_vec();
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

/// The appended message after its `From ` line.
fn tail() -> Vec<u8> {
    let mut v = b"Return-Path: <alice@example.org>\nDelivered-To: bob@example.org\n".to_vec();
    v.extend(message().split_inclusive(|&c| c == b'\n').flat_map(|l| {
        let mut l = l.to_vec();
        if l.starts_with(b"From ") {
            l.insert(0, b'>');
        }
        l
    }));
    v.push(b'\n');
    v
}

fn prepare(fs: &SimFs, rt: &tokio::runtime::Runtime) -> DeliveryJob {
    let env = env_on(fs, 0);
    let home = Home::new("/var/qmail");
    let queue = Queue::new(env.clone(), home.queue());
    fs.install_file(Path::new("/home/bob/.qmail"), b"./Mailbox\n", 0o644)
        .unwrap();
    fs.install_file(Path::new(MBOX), OLD, 0o600).unwrap();
    fs.set_owner(Path::new("/home/bob"), 1001).unwrap();
    rt.block_on(async {
        env.fs().create_dir_all(&home.alias(), 0o755).await.unwrap();
        queue.create().await.unwrap();
        for d in ["/", "/var", "/var/qmail"] {
            env.fs().sync_dir(Path::new(d)).await.unwrap();
        }
        let mut inj = queue.begin().await.unwrap();
        inj.write(&message()).await.unwrap();
        let id = inj
            .commit(
                &Envelope {
                    sender: "alice@example.org".into(),
                    recipients: vec!["bob@example.org".into()],
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
            "alice@example.org",
            "bob@example.org",
            1,
            MessageRef { path, offset, len },
        )
    })
}

fn agent(fs: &SimFs, seed: u64) -> LocalDelivery<SimEnv> {
    let home = Home::new("/var/qmail");
    let queue = Queue::new(env_on(fs, seed), home.queue());
    LocalDelivery::new(queue, home.clone(), LocalConfig::new(Mode::System, &home))
}

#[test]
fn crash_at_every_step_of_an_mbox_delivery() {
    let rt = rt();
    let fs = SimFs::new(0);
    let job = prepare(&fs, &rt);
    let before = fs.stats().mutations;
    assert!(matches!(
        only(rt.block_on(agent(&fs, 1).deliver(job))),
        Outcome::Success(_)
    ));
    let ops = fs.stats().mutations - before;
    assert!(ops >= 3, "{ops}");
    let mut states = 0;
    for k in 0..=ops {
        for seed in 0..16u64 {
            let fs = SimFs::new(seed);
            let job = prepare(&fs, &rt);
            fs.halt_after(k);
            let ok = matches!(
                only(rt.block_on(agent(&fs, seed + 1).deliver(job.clone()))),
                Outcome::Success(_)
            );
            fs.resume();
            fs.crash(
                seed * 1000 + k,
                CrashOptions {
                    keep_probability: [0.0, 0.2, 0.5, 0.8, 1.0][(seed % 5) as usize],
                    torn_block: Some(512),
                },
            );
            let ctx = format!("crash after op {k}/{ops}, seed {seed}");
            let mbox = rt.block_on(fs.read(Path::new(MBOX))).unwrap();
            assert!(mbox.starts_with(OLD), "{ctx}: old mail damaged");
            if ok {
                assert!(
                    mbox.ends_with(&tail()),
                    "{ctx}: reported success, lost in the crash"
                );
            }
            let again = only(rt.block_on(agent(&fs, seed + 2).deliver(job)));
            assert!(
                matches!(again, Outcome::Success(_)),
                "{ctx}: retry {again:?}"
            );
            let mbox = rt.block_on(fs.read(Path::new(MBOX))).unwrap();
            assert!(
                mbox.starts_with(OLD),
                "{ctx}: old mail damaged by the retry"
            );
            assert!(
                mbox.ends_with(&tail()),
                "{ctx}: the retry's copy is not whole"
            );
            states += 1;
        }
    }
    eprintln!("mbox: {ops} operations, {states} crash states checked");
}

/// The one outcome of a one-recipient job.
fn only(mut outcomes: Vec<Outcome>) -> Outcome {
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}
