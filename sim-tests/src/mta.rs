//! The MTA under test: the same core code `qmail run` runs (SMTP server,
//! queue, scheduler, real local delivery in the embedded mode) on one
//! simulated host whose filesystem survives its crashes as the crash model
//! decides. Remote delivery is the real remote channel (DNS through the
//! simulated DNS server, the SMTP client) to the remote hosts of
//! [`crate::remote`], which record what they accepted in the [`Ledger`],
//! outside the crashing host.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmail_core::dns::{ResolverConfig, StubResolver};
use qmail_core::env::{Env, Fs, Identity, Net, PlantSet};
use qmail_core::home::Home;
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::mta;
use qmail_core::queue::Queue;
use qmail_core::remote::{RemoteControl, RemoteDelivery};
use qmail_core::send::{Command, SendControl};
use qmail_core::smtpd::SmtpdControl;
use qmail_io_sim::{DNS_PORT, SimEnv, SimFs, Trace, exited, sim_now};
use tokio::sync::mpsc;

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
    // Remote timeouts short enough for a partitioned MX to cost seconds.
    file(&home.control_file("timeoutconnect"), "10\n");
    file(&home.control_file("timeoutremote"), "60\n");
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

/// The real remote channel: qmail-remote's code, asking the simulated DNS
/// server (host `dns`) through the stub resolver.
async fn remote_agent(
    env: &SimEnv,
    home: &Home,
) -> Result<RemoteDelivery<SimEnv, StubResolver<SimEnv>>, String> {
    let mut control = RemoteControl::load(env, home)
        .await
        .map_err(|e| e.to_string())?;
    control
        .us
        .listeners
        .push(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 25)));
    control.us.ips.push(turmoil::lookup("mta"));
    let dns = ResolverConfig {
        nameservers: vec![SocketAddr::new(turmoil::lookup("dns"), DNS_PORT)],
        timeout: Duration::from_secs(2),
        attempts: 2,
    };
    Ok(RemoteDelivery::new(
        env.clone(),
        StubResolver::new(env.clone(), dns),
        home.queue(),
        control,
    ))
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
        let (tx, rx) = mpsc::unbounded_channel();
        *handle.commands.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
        let trace = trace.clone();
        async move {
            trace.record("mta", format_args!("start incarnation {inc}"));
            if let Err(e) = mta(env, (tx, rx), &trace).await {
                trace.record("mta", format_args!("exited: {e}"));
            }
            Ok(())
        }
    });
}

/// One incarnation of the MTA: the shipped composition root
/// (`qmail_core::mta::run`, as `qmail run` calls it) on the simulated host.
/// Returns when it stops (the driver restarts it, as a supervisor would).
async fn mta(
    env: SimEnv,
    commands: (
        mpsc::UnboundedSender<Command>,
        mpsc::UnboundedReceiver<Command>,
    ),
    trace: &Trace,
) -> Result<(), String> {
    let home = Home::new(HOME);
    let remote = remote_agent(&env, &home).await?;
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
    let listener = env
        .net()
        .listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 25)))
        .await
        .map_err(|e| format!("listen: {e}"))?;
    // The sender stays here: nothing reloads the simulated host's controls.
    let (_controls, smtpd) = tokio::sync::watch::channel(std::sync::Arc::new(smtpd));
    let parts = mta::Parts {
        queue,
        home,
        send,
        smtpd,
        listener,
        local,
        remote,
    };
    let hooks = mta::Hooks {
        locked: |_: &Queue<SimEnv>| Ok(()),
        // The queue is recovered and SMTP serves: the end of recovery for
        // the coverage report.
        serving: || trace.record("mta", format_args!("ready")),
    };
    match mta::run(parts, commands, hooks, std::future::pending()).await {
        Ok(()) => Err("stopped".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Simulated wall time, for the oracle's messages.
pub fn now_secs() -> u64 {
    sim_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
