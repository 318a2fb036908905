//! One world for the scheduler-level tests: an MTA host under turmoil whose
//! first incarnation queues the test's messages, then every incarnation
//! runs the scheduler (which recovers the queue first) with the test's
//! delivery agents. The host's filesystem outlives its crashes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmail_core::deliver::Deliver;
use qmail_core::env::{Env, Fs, Identity};
use qmail_core::home::Home;
use qmail_core::queue::{Envelope, Queue};
use qmail_core::send::{Command, Scheduler, SendControl};
use qmail_io_sim::{SimEnv, SimFs, SnapEntry, sim_builder};
use tokio::sync::mpsc;

use super::crash::CrashPoint;
use super::inject::inject;
use super::{env_on, identity};

/// A message the first incarnation queues.
#[derive(Debug, Clone)]
pub struct Message {
    pub envelope: Envelope,
    pub body: String,
}

/// A message from `sender` to `recipients`.
pub fn message(sender: &str, recipients: &[&str], body: &str) -> Message {
    Message {
        envelope: super::inject::envelope(sender, recipients),
        body: body.into(),
    }
}

/// How the world is built.
#[derive(Clone)]
pub struct MtaSpec {
    pub seed: u64,
    pub tick: Duration,
    pub home: Home,
    /// Where the queue lives (usually `home.queue()`).
    pub queue: PathBuf,
    pub control: SendControl,
    pub messages: Vec<Message>,
    /// Queue the messages all at once (they share syncs and their intakes
    /// overlap) rather than one after another.
    pub concurrent: bool,
    /// Files installed (durably) before the host first starts.
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

/// The identity of the MTA's processes.
pub fn mta_identity() -> Identity {
    identity(4242, 7, "mta")
}

impl MtaSpec {
    /// A world at `home` whose scheduler follows `control`.
    pub fn new(seed: u64, home: &str, control: SendControl) -> MtaSpec {
        let home = Home::new(home);
        MtaSpec {
            seed,
            tick: Duration::from_millis(100),
            queue: home.queue(),
            home,
            control,
            messages: Vec::new(),
            concurrent: false,
            files: Vec::new(),
        }
    }

    /// Builds the world; `agents` gives each incarnation its local and
    /// remote delivery agents; `extra` is the test's own record of the run.
    pub fn build<L, R, X>(
        &self,
        extra: X,
        agents: impl Fn(&Queue<SimEnv>, &Home) -> (L, R) + 'static,
    ) -> MtaWorld<X>
    where
        L: Deliver,
        R: Deliver,
    {
        let seed = self.seed;
        let mut sim = sim_builder(seed).tick_duration(self.tick).build();
        let fs = SimFs::new(seed);
        for (path, content) in &self.files {
            fs.install_file(path, content, 0o644).expect("install");
        }
        // The queue exists, durably, before the host starts, so the host's
        // first operation is the injection's.
        let setup = Queue::new(env_on(&fs, seed, &mta_identity()), &self.queue);
        super::rt()
            .block_on(async {
                setup.create().await?;
                for d in self.queue.ancestors().skip(1) {
                    setup.env().fs().sync_dir(d).await?;
                }
                Ok::<_, std::io::Error>(())
            })
            .expect("queue created");
        let acknowledged: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
        let commands: Arc<Mutex<Option<mpsc::UnboundedSender<Command>>>> = Arc::default();
        let pending = Arc::new(Mutex::new(Some(self.messages.clone())));
        let (fs2, ack2, commands2) = (fs.clone(), acknowledged.clone(), commands.clone());
        let (home, root, control, concurrent) = (
            self.home.clone(),
            self.queue.clone(),
            self.control.clone(),
            self.concurrent,
        );
        sim.host("mta", move || {
            let queue = Queue::new(env_on(&fs2, seed, &mta_identity()), &root);
            let (local, remote) = agents(&queue, &home);
            let (tx, rx) = mpsc::unbounded_channel();
            *commands2.lock().unwrap() = Some(tx);
            let first = pending.lock().unwrap().take().unwrap_or_default();
            let (home, control, ack) = (home.clone(), control.clone(), ack2.clone());
            async move {
                let run = async {
                    queue_messages(&queue, first, concurrent, &ack).await?;
                    Scheduler::new(queue, home, control, local, remote)
                        .run(rx)
                        .await
                        .map_err(|e| e.to_string())
                };
                // A frozen disk (halt_after) fails the host; it then waits
                // for the crash the test has planned, as a dead machine would.
                if let Err(e) = run.await {
                    tracing::debug!("mta stopped: {e}");
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        });
        MtaWorld {
            sim,
            fs,
            extra,
            queue_root: self.queue.clone(),
            acknowledged,
            messages: self.messages.len(),
            commands,
        }
    }
}

/// Queues the first incarnation's messages, noting each acknowledged one.
async fn queue_messages(
    queue: &Queue<SimEnv>,
    messages: Vec<Message>,
    concurrent: bool,
    ack: &Arc<Mutex<BTreeSet<usize>>>,
) -> Result<(), String> {
    if !concurrent {
        for (i, m) in messages.into_iter().enumerate() {
            inject(queue, &m.envelope, m.body.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            ack.lock().unwrap().insert(i);
        }
        return Ok(());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, m) in messages.into_iter().enumerate() {
        let (queue, ack) = (queue.clone(), ack.clone());
        tasks.spawn(async move {
            let r = inject(&queue, &m.envelope, m.body.as_bytes()).await;
            if r.is_ok() {
                ack.lock().unwrap().insert(i);
            }
            r.map(|_| ()).map_err(|e| e.to_string())
        });
    }
    let mut failed = None;
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.map_err(|e| e.to_string()).and_then(|r| r) {
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The running world.
pub struct MtaWorld<X = ()> {
    pub sim: turmoil::Sim<'static>,
    pub fs: SimFs,
    /// The test's own record of the run (its agents' ledger, say).
    pub extra: X,
    queue_root: PathBuf,
    acknowledged: Arc<Mutex<BTreeSet<usize>>>,
    messages: usize,
    commands: Arc<Mutex<Option<mpsc::UnboundedSender<Command>>>>,
}

impl<X> MtaWorld<X> {
    /// Steps the simulation until `done` holds or `limit` of simulated time
    /// passes; says whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.sim.elapsed() + limit;
        while self.sim.elapsed() < end {
            if done(self) {
                return true;
            }
            self.sim.step().unwrap();
        }
        done(self)
    }

    /// Runs for `limit` of simulated time.
    pub fn run_for(&mut self, limit: Duration) {
        self.run_until(limit, |_| false);
    }

    /// The messages whose injection returned success (by index).
    pub fn acknowledged(&self) -> BTreeSet<usize> {
        self.acknowledged.lock().unwrap().clone()
    }

    /// Every message's injection returned success.
    pub fn all_acknowledged(&self) -> bool {
        self.acknowledged.lock().unwrap().len() == self.messages
    }

    /// No message left anywhere in the queue (the lock files aside).
    pub fn queue_empty(&self) -> bool {
        let lock = self.queue_root.join("lock");
        self.fs.snapshot().iter().all(|(p, e)| {
            !matches!(e, SnapEntry::File(_))
                || !p.starts_with(&self.queue_root)
                || p.starts_with(&lock)
        })
    }

    /// The contents of every file directly in `dir`.
    pub fn files_in(&self, dir: &Path) -> Vec<Vec<u8>> {
        self.fs
            .snapshot()
            .into_iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .filter_map(|(_, e)| match e {
                SnapEntry::File(b) => Some(b),
                SnapEntry::Dir => None,
            })
            .collect()
    }

    /// Sends the running scheduler a command.
    pub fn command(&self, c: Command) {
        if let Some(tx) = &*self.commands.lock().unwrap() {
            let _ = tx.send(c);
        }
    }

    /// Runs with the disk armed to freeze at `point` for `before` of
    /// simulated time, then the host loses power there and starts again.
    pub fn crash_at(&mut self, point: &CrashPoint, before: Duration) {
        point.arm(&self.fs);
        self.run_for(before);
        self.crash_and_restart(point);
    }

    /// The host loses power at `point` and starts again.
    pub fn crash_and_restart(&mut self, point: &CrashPoint) {
        self.sim.crash("mta");
        point.crash(&self.fs);
        self.sim.bounce("mta");
    }

    /// A queue on the world's filesystem, for looking inside.
    pub fn queue(&self) -> Queue<SimEnv> {
        Queue::new(env_on(&self.fs, 0, &mta_identity()), &self.queue_root)
    }
}
