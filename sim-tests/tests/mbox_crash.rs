//! mbox delivery under crashes: crash after every filesystem operation of
//! one delivery, then retry. What was in the mbox before is never damaged,
//! a delivery reported successful survives the crash, and after the retry
//! the mbox ends with the whole message. (A crash in the middle of an
//! append can leave a torn copy before the retried one: qmail documents
//! the same; maildir is the format without that problem.)

use std::path::Path;
use std::time::Duration;

use qmail_core::deliver::{Deliver, DeliveryJob, Outcome};
use qmail_core::env::{Env, Fs};
use qmail_core::home::Home;
use qmail_core::local::mbox_lock::{STALE_LOCK_TIME, dotlock_path};
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::queue::Queue;
use qmail_io_sim::{SimEnv, SimFs};
use qmail_sim_tests::kit::crash::{Checked, crash_sweep, mutations_of};
use qmail_sim_tests::kit::identity;
use qmail_sim_tests::kit::inject::{local_job, only, text_after};

const OLD: &[u8] = b"From x@y Thu Jan 01 00:00:00 1970\nSubject: old\n\nold body\n\n";
const MBOX: &str = "/home/bob/Mailbox";
/// Crash trials at each cut.
const TRIALS: u64 = 16;

fn env_on(fs: &SimFs, seed: u64) -> SimEnv {
    let env = qmail_sim_tests::kit::env_on(fs, seed, &identity(77, 500, "sim"));
    env.users.add("bob", 1001, 1001, "/home/bob");
    env
}

fn message() -> Vec<u8> {
    text_after(b"Subject: crash\n\nFrom here\n")
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
        local_job(&queue, "alice@example.org", "bob@example.org", &message())
            .await
            .unwrap()
    })
}

/// A runtime whose timer skips ahead whenever every task waits, so lock
/// waits cost no real time.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn agent(fs: &SimFs, seed: u64) -> LocalDelivery<SimEnv> {
    agent_at(fs, seed, Duration::ZERO)
}

/// An agent whose clock reads `later` past simulated time.
fn agent_at(fs: &SimFs, seed: u64, later: Duration) -> LocalDelivery<SimEnv> {
    let home = Home::new("/var/qmail");
    let queue = Queue::new(env_on(fs, seed).with_clock_ahead(later), home.queue());
    LocalDelivery::new(queue, home.clone(), LocalConfig::new(Mode::System, &home))
}

const LOCKED: &str = "File has been locked for 30 seconds straight. (#4.3.0)\n";

#[test]
fn crash_at_every_step_of_an_mbox_delivery() {
    let rt = rt();
    let fs = SimFs::new(0);
    let job = prepare(&fs, &rt);
    let (ops, out) = mutations_of(&fs, || only(rt.block_on(agent(&fs, 1).deliver(job))));
    assert!(matches!(out, Outcome::Success(_)), "{out:?}");
    assert!(ops >= 3, "{ops}");
    let mut stale_broken = 0;
    crash_sweep("mbox", ops, TRIALS, |point| {
        let seed = point.trial;
        let fs = SimFs::new(seed);
        let job = prepare(&fs, &rt);
        point.arm(&fs);
        let ok = matches!(
            only(rt.block_on(agent(&fs, seed + 1).deliver(job.clone()))),
            Outcome::Success(_)
        );
        point.crash(&fs);
        let mbox = rt.block_on(fs.read(Path::new(MBOX))).unwrap();
        if !mbox.starts_with(OLD) {
            return Err("old mail damaged".into());
        }
        if ok && !mbox.ends_with(&tail()) {
            return Err("reported success, lost in the crash".into());
        }
        let dotlock = dotlock_path(Path::new(MBOX));
        let left_locked = rt.block_on(fs.exists(&dotlock));
        let mut again = only(rt.block_on(agent(&fs, seed + 2).deliver(job.clone())));
        if left_locked && again == Outcome::Deferral(LOCKED.into()) {
            // The crash left the dotlock: a later retry finds it stale.
            stale_broken += 1;
            let later = STALE_LOCK_TIME + Duration::from_secs(1);
            again = only(rt.block_on(agent_at(&fs, seed + 3, later).deliver(job)));
        }
        if !matches!(again, Outcome::Success(_)) {
            return Err(format!("retry {again:?}"));
        }
        if rt.block_on(fs.exists(&dotlock)) {
            return Err("the dotlock outlived the delivery".into());
        }
        let mbox = rt.block_on(fs.read(Path::new(MBOX))).unwrap();
        if !mbox.starts_with(OLD) {
            return Err("old mail damaged by the retry".into());
        }
        if !mbox.ends_with(&tail()) {
            return Err("the retry's copy is not whole".into());
        }
        Ok(Checked::Held)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("mbox: {stale_broken} crash states left a dotlock that a later retry broke");
    assert!(stale_broken > 0, "no crash state left the dotlock behind");
}
