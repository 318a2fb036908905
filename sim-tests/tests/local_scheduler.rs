//! The scheduler with the real local delivery agent (embedded mode) in the
//! simulated world: messages to two users and a forwarding alias end up in
//! the maildirs, and a crash at any operation of the whole life (injection,
//! intake, maildir deliveries, the forward's own injection and delivery,
//! checkpoints, removal) loses nothing that was accepted and never leaves a
//! partial file in a maildir.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmail_core::deliver::{Deliver, DeliveryJob, Outcome};
use qmail_core::env::{Env, Fs, Identity};
use qmail_core::home::Home;
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::queue::{Envelope, Queue};
use qmail_core::send::{Router, Scheduler, SendControl};
use qmail_io_sim::{CrashOptions, SimEnv, SimFs, SnapEntry, sim_builder};
use tokio::sync::mpsc;

const HOST: &str = "sim.test";
const HOME: &str = "/home";
const BODY: &str = "From: alice@example.org\nSubject: to the team\n\nFrom the body.\n";
const SENDER: &str = "alice@example.org";

/// Remote delivery is not part of this world.
#[derive(Clone)]
struct NoRemote;

impl Deliver for NoRemote {
    async fn deliver(&self, job: DeliveryJob) -> Vec<Outcome> {
        vec![Outcome::Deferral("no remote delivery here\n".into()); job.recipients.len()]
    }
}

fn identity() -> Identity {
    Identity {
        pid: 4242,
        uid: 7,
        gid: 7,
        hostname: "mta".into(),
    }
}

fn control() -> SendControl {
    let mut c = SendControl::defaults(HOST);
    c.router = Router::new(HOST, [HOST.to_string()], [], []);
    c
}

struct World {
    sim: turmoil::Sim<'static>,
    fs: SimFs,
    acknowledged: Arc<Mutex<bool>>,
}

fn world(seed: u64) -> World {
    let mut sim = sim_builder(seed)
        .tick_duration(Duration::from_millis(100))
        .build();
    let fs = SimFs::new(seed);
    let home = Home::new(HOME);
    fs.install_file(&home.alias().join(".qmail-team"), b"u3@sim.test\n", 0o644)
        .unwrap();
    let setup = Queue::new(SimEnv::new(fs.clone(), seed, identity()), home.queue());
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            setup.create().await?;
            for d in ["/", HOME] {
                setup.env().fs().sync_dir(Path::new(d)).await?;
            }
            Ok::<_, std::io::Error>(())
        })
        .unwrap();
    let acknowledged: Arc<Mutex<bool>> = Arc::default();
    let (fs2, ack2) = (fs.clone(), acknowledged.clone());
    let first = Arc::new(Mutex::new(true));
    sim.host("mta", move || {
        let env = SimEnv::new(fs2.clone(), seed, identity());
        let home = Home::new(HOME);
        let queue = Queue::new(env, home.queue());
        let inject = std::mem::replace(&mut *first.lock().unwrap(), false);
        let ack = ack2.clone();
        async move {
            if let Err(e) = mta(queue, home, inject, ack).await {
                tracing::debug!("mta stopped: {e}");
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    });
    World {
        sim,
        fs,
        acknowledged,
    }
}

async fn mta(
    queue: Queue<SimEnv>,
    home: Home,
    inject: bool,
    ack: Arc<Mutex<bool>>,
) -> Result<(), Box<dyn std::error::Error>> {
    if inject {
        let mut inj = queue.begin().await?;
        inj.write(BODY.as_bytes()).await?;
        let envelope = Envelope {
            sender: SENDER.into(),
            recipients: ["u1@sim.test", "u2@sim.test", "team@sim.test"]
                .map(String::from)
                .to_vec(),
        };
        inj.commit(&envelope, 7, 4242).await?;
        *ack.lock().unwrap() = true;
    }
    let local = LocalDelivery::new(
        queue.clone(),
        home.clone(),
        LocalConfig::new(Mode::Embedded, &home),
    );
    let (_tx, rx) = mpsc::unbounded_channel();
    Scheduler::new(queue, home, control(), local, NoRemote)
        .run(rx)
        .await?;
    Ok(())
}

impl World {
    fn run_for(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let end = self.sim.elapsed() + limit;
        while self.sim.elapsed() < end {
            if done(self) {
                return true;
            }
            self.sim.step().unwrap();
        }
        done(self)
    }

    /// Every file in a user's maildir new/.
    fn mail(&self, user: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(HOME)
            .join("mailboxes")
            .join(user)
            .join("Maildir/new");
        self.fs
            .snapshot()
            .into_iter()
            .filter(|(p, _)| p.parent() == Some(dir.as_path()))
            .filter_map(|(_, e)| match e {
                SnapEntry::File(b) => Some(b),
                SnapEntry::Dir => None,
            })
            .collect()
    }

    fn queue_empty(&self) -> bool {
        let q = PathBuf::from(HOME).join("queue");
        self.fs.snapshot().iter().all(|(p, e)| {
            !matches!(e, SnapEntry::File(_)) || !p.starts_with(&q) || p.starts_with(q.join("lock"))
        })
    }

    fn delivered(&self) -> bool {
        ["u1", "u2", "u3"].iter().all(|u| !self.mail(u).is_empty()) && self.queue_empty()
    }
}

fn direct(user: &str) -> Vec<u8> {
    format!("Return-Path: <{SENDER}>\nDelivered-To: {user}@sim.test\n{BODY}").into_bytes()
}

/// The forwarded copy u3 gets: its own lines, the queue's Received line for
/// the alias, the alias's Delivered-To line, the message.
fn forwarded_ok(m: &[u8]) -> bool {
    let text = String::from_utf8_lossy(m);
    let head = format!(
        "Return-Path: <{SENDER}>\nDelivered-To: u3@sim.test\nReceived: (qmail 4242 invoked by alias); "
    );
    let tail = format!(" -0000\nDelivered-To: team@sim.test\n{BODY}");
    text.starts_with(&head) && text.ends_with(&tail) && text.len() < head.len() + tail.len() + 30
}

#[test]
fn two_users_and_a_forward_are_delivered() {
    let mut w = world(1);
    assert!(
        w.run_for(Duration::from_secs(600), |w| w.delivered()),
        "not delivered"
    );
    assert_eq!(w.mail("u1"), vec![direct("u1")]);
    assert_eq!(w.mail("u2"), vec![direct("u2")]);
    let u3 = w.mail("u3");
    assert_eq!(u3.len(), 1);
    assert!(forwarded_ok(&u3[0]), "{}", String::from_utf8_lossy(&u3[0]));
}

#[test]
fn a_crash_anywhere_loses_no_accepted_mail() {
    let mut w = world(3);
    let before = w.fs.stats().mutations;
    assert!(w.run_for(Duration::from_secs(600), |w| w.delivered()));
    let total = w.fs.stats().mutations - before;
    assert!(total > 40, "only {total} operations?");
    let (mut states, mut duplicates) = (0, 0);
    for cut in 0..total {
        for crash_seed in 0..2u64 {
            let mut w = world(3);
            w.fs.halt_after(cut);
            w.run_for(Duration::from_secs(30), |_| false);
            w.sim.crash("mta");
            w.fs.crash(
                crash_seed * 7919 + cut,
                CrashOptions {
                    keep_probability: [0.2, 0.8][crash_seed as usize],
                    torn_block: Some(512),
                },
            );
            w.fs.resume();
            w.sim.bounce("mta");
            let ctx = format!("cut {cut}/{total} seed {crash_seed}");
            let drained = w.run_for(Duration::from_secs(900), |w| w.queue_empty());
            for u in ["u1", "u2"] {
                for m in w.mail(u) {
                    assert_eq!(m, direct(u), "{ctx}: partial or wrong file for {u}");
                }
            }
            for m in w.mail("u3") {
                assert!(
                    forwarded_ok(&m),
                    "{ctx}: bad forwarded copy {}",
                    String::from_utf8_lossy(&m)
                );
            }
            if !*w.acknowledged.lock().unwrap() {
                continue;
            }
            assert!(drained, "{ctx}: the queue did not drain");
            for u in ["u1", "u2", "u3"] {
                let n = w.mail(u).len();
                assert!(n >= 1, "{ctx}: {u} got nothing");
                duplicates += n - 1;
            }
            states += 1;
        }
    }
    eprintln!("{total} operations, {states} crash states checked, {duplicates} duplicates");
    assert!(states > total as usize);
}
