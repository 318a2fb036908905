//! The MTA under test: the same core code `qmail run` runs (SMTP server,
//! queue, scheduler, real local delivery in the embedded mode) on one
//! simulated host whose filesystem survives its crashes as the crash model
//! decides. Remote delivery is a stand-in agent for the remote MTAs, which
//! records what they accepted in the [`Ledger`], outside the crashing host.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmail_core::deliver::{Deliver, DeliveryJob, Outcome};
use qmail_core::env::{Env, Fs, FsFile, Identity, Net, OpenOptions, PlantSet};
use qmail_core::home::Home;
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::queue::Queue;
use qmail_core::send::{Command, Scheduler, SendControl};
use qmail_core::smtpd::{SmtpdControl, serve};
use qmail_io_sim::{SimEnv, SimFs, Trace, exited, sim_now};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};

use crate::ledger::{Handed, Ledger};
use crate::{DOMAIN, HOME, mix};

/// How long the SMTP server waits for a silent client.
const SMTPD_TIMEOUT: Duration = Duration::from_secs(120);

/// What the MTA's world looks like for one run.
#[derive(Debug, Clone)]
pub struct MtaConfig {
    pub seed: u64,
    pub plants: PlantSet,
    /// `slow@` defers until this many seconds into the run.
    pub slow_until: u64,
    /// `defer.example` defers until this many seconds into the run.
    pub defer_until: u64,
    /// Remote deliveries defer with this probability until the fault phase
    /// ends (the remote MTAs' own trouble).
    pub remote_flaky: f64,
    pub flaky_until: u64,
    /// `control/queuelifetime`.
    pub queuelifetime: u64,
}

/// Writes the installation: control files, the alias `.qmail` files and the
/// queue, all durable before the host first starts.
pub fn install(fs: &SimFs, cfg: &MtaConfig) {
    let home = Home::new(HOME);
    let file = |p: &Path, text: &str| fs.install_file(p, text.as_bytes(), 0o644).expect("install");
    file(&home.control_file("me"), &format!("{DOMAIN}\n"));
    file(&home.control_file("locals"), &format!("{DOMAIN}\n"));
    file(
        &home.control_file("rcpthosts"),
        &format!("{DOMAIN}\nremote.example\ndefer.example\nreject.example\n"),
    );
    file(
        &home.control_file("queuelifetime"),
        &format!("{}\n", cfg.queuelifetime),
    );
    file(
        &home.alias().join(".qmail-team"),
        "&bob@sim.test\n&carol@sim.test\n",
    );
    file(&home.alias().join(".qmail-slow"), "|slow\n");
    file(&home.alias().join(".qmail-reject"), "|reject\n");
    let queue = Queue::new(SimEnv::new(fs.clone(), 0, identity(0)), home.queue());
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(async {
            queue.create().await?;
            for d in ["/", HOME] {
                queue.env().fs().sync_dir(Path::new(d)).await?;
            }
            Ok::<_, std::io::Error>(())
        })
        .expect("queue created");
}

pub fn identity(incarnation: u64) -> Identity {
    Identity {
        pid: 1000 + incarnation as u32,
        uid: 7,
        gid: 7,
        hostname: "mta".into(),
    }
}

/// Seconds since the run started.
fn run_secs() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_secs()
}

/// Registers the delivery programs the alias files name.
fn programs(env: &SimEnv, cfg: &MtaConfig, ledger: &Ledger) {
    let (ledger, until) = (ledger.clone(), cfg.slow_until);
    env.exec
        .script("slow", Duration::from_millis(300), move |call| {
            if run_secs() < until {
                return exited(111, "slow: not yet\n");
            }
            let var = |k: &str| {
                call.spec
                    .env
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            ledger.lock().programs.push(Handed {
                recipient: var("RECIPIENT"),
                sender: var("SENDER"),
                data: call.stdin.clone(),
            });
            exited(0, "")
        });
    env.exec.script("reject", Duration::from_millis(50), |_| {
        exited(100, "reject: no such person here\n")
    });
}

/// The remote MTAs, as the scheduler's remote channel sees them: they read
/// the message, take a while, and accept (recording the delivery in the
/// ledger, durable by definition), defer, or refuse by domain.
#[derive(Clone)]
pub struct RemoteAgent {
    fs: SimFs,
    cfg: Arc<MtaConfig>,
    ledger: Ledger,
    rng: Arc<Mutex<StdRng>>,
    trace: Trace,
}

impl RemoteAgent {
    fn draw<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn read(&self, job: &DeliveryJob) -> std::io::Result<Vec<u8>> {
        let m = &job.message;
        let mut f = self.fs.open(&m.path, &OpenOptions::read()).await?;
        f.seek(m.offset).await?;
        let mut data = vec![0u8; m.len as usize];
        let mut got = 0;
        while got < data.len() {
            let n = f.read(&mut data[got..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        Ok(data)
    }
}

impl Deliver for RemoteAgent {
    /// One SMTP transaction for the job's recipients (one domain): the
    /// message is read and sent once, then each recipient is answered.
    async fn deliver(&self, job: DeliveryJob) -> Vec<Outcome> {
        let all = |o: Outcome| vec![o; job.recipients.len()];
        let data = match self.read(&job).await {
            Ok(d) => d,
            Err(e) => return all(Outcome::Deferral(format!("Unable to read message: {e}\n"))),
        };
        let took = self.draw(|r| r.random_range(20..3_000));
        tokio::time::sleep(Duration::from_millis(took)).await;
        let now = run_secs();
        if now < self.cfg.flaky_until && self.draw(|r| r.random_bool(self.cfg.remote_flaky)) {
            return all(Outcome::Deferral(
                "Connected but the remote went away.\n".into(),
            ));
        }
        let mut outcomes = Vec::with_capacity(job.recipients.len());
        for r in &job.recipients {
            let domain = r.address.rsplit_once('@').map_or("", |(_, d)| d);
            outcomes.push(match domain {
                "reject.example" => {
                    Outcome::Failure("Remote host said: 550 no such user here\n".into())
                }
                "defer.example" if now < self.cfg.defer_until => {
                    Outcome::Deferral("Remote host said: 451 try later\n".into())
                }
                "remote.example" | "defer.example" => {
                    self.trace.record(
                        "remote",
                        format_args!("accepted {} bytes for {}", data.len(), r.address),
                    );
                    self.ledger.lock().remote.push(Handed {
                        recipient: r.address.clone(),
                        sender: job.sender.clone(),
                        data: data.clone(),
                    });
                    Outcome::Success("Remote host said: 250 ok\n".into())
                }
                _ => Outcome::Failure("Sorry, I couldn't find any host by that name.\n".into()),
            });
        }
        outcomes
    }
}

/// What the driver can reach inside the running MTA.
#[derive(Clone, Default)]
pub struct MtaHandle {
    /// The running scheduler's command channel.
    pub commands: Arc<Mutex<Option<mpsc::UnboundedSender<Command>>>>,
    pub incarnations: Arc<Mutex<u64>>,
}

impl MtaHandle {
    pub fn command(&self, c: Command) {
        if let Some(tx) = &*self.commands.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send(c);
        }
    }
}

/// Adds the MTA host to `sim`. Every (re)start is one incarnation: new
/// process id, new random source, the same filesystem.
pub fn add_host(
    sim: &mut turmoil::Sim<'static>,
    fs: &SimFs,
    cfg: MtaConfig,
    ledger: &Ledger,
    trace: &Trace,
    handle: &MtaHandle,
) {
    let (fs, ledger, trace, handle) = (fs.clone(), ledger.clone(), trace.clone(), handle.clone());
    let cfg = Arc::new(cfg);
    sim.host("mta", move || {
        let inc = {
            let mut n = handle
                .incarnations
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let env = SimEnv::new(fs.clone(), mix(cfg.seed, 0x3a70 + inc), identity(inc))
            .with_plants(cfg.plants);
        programs(&env, &cfg, &ledger);
        let remote = RemoteAgent {
            fs: fs.clone(),
            cfg: cfg.clone(),
            ledger: ledger.clone(),
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(mix(
                cfg.seed,
                0x7e70 + inc,
            )))),
            trace: trace.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        *handle.commands.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let trace = trace.clone();
        async move {
            trace.record("mta", format_args!("start incarnation {inc}"));
            if let Err(e) = mta(env, remote, rx, &trace).await {
                trace.record("mta", format_args!("exited: {e}"));
            }
            Ok(())
        }
    });
}

/// One incarnation of the MTA: the scheduler recovers the queue, then SMTP
/// opens. Returns when either stops (the driver restarts it, as a
/// supervisor would).
async fn mta(
    env: SimEnv,
    remote: RemoteAgent,
    commands: mpsc::UnboundedReceiver<Command>,
    trace: &Trace,
) -> Result<(), String> {
    let home = Home::new(HOME);
    let queue = Queue::new(env.clone(), home.queue());
    let send = SendControl::load(&env, &home)
        .await
        .map_err(|e| e.to_string())?;
    let mut smtpd = SmtpdControl::load(&env, &home)
        .await
        .map_err(|e| e.to_string())?;
    smtpd.timeout = SMTPD_TIMEOUT;
    let local = LocalDelivery::new(
        queue.clone(),
        home.clone(),
        LocalConfig::new(Mode::Embedded, &home),
    );
    let (ready_tx, ready_rx) = oneshot::channel();
    let scheduler = Scheduler::new(queue.clone(), home, send, local, remote).on_ready(ready_tx);
    let mut scheduler = tokio::spawn(scheduler.run(commands));
    tokio::select! {
        biased;
        r = ready_rx => if r.is_err() {
            return match (&mut scheduler).await {
                Ok(Err(e)) => Err(format!("scheduler: {e}")),
                r => Err(format!("scheduler: {r:?}")),
            };
        },
        r = &mut scheduler => return Err(format!("scheduler before ready: {r:?}")),
    }
    trace.record("mta", format_args!("ready"));
    let listener = env
        .net()
        .listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 25)))
        .await
        .map_err(|e| format!("listen: {e}"))?;
    tokio::select! {
        biased;
        r = &mut scheduler => match r {
            Ok(Ok(())) => Err("scheduler stopped".into()),
            Ok(Err(e)) => Err(format!("scheduler: {e}")),
            Err(e) => Err(format!("scheduler task: {e}")),
        },
        r = serve(queue, listener, smtpd, std::future::pending()) => Err(format!("smtpd: {r:?}")),
    }
}

/// Simulated wall time, for the oracle's messages.
pub fn now_secs() -> u64 {
    sim_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
