//! One run: build the world for a seed, drive it through the fault
//! timeline, heal, drain, and ask the oracle.

use std::collections::BTreeSet;
use std::time::Duration;

use qmail_core::env::PlantSet;
use qmail_core::home::Home;
use qmail_core::queue::Queue;
use qmail_core::send::Command;
use qmail_io_sim::{
    CrashOptions, DnsFaults, DnsServer, FsFaults, Journal, SimEnv, SimFs, Trace, Zone, crash_host,
    sim_builder,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::coverage::{Coverage, Tracker};
use crate::faults::{Event, FAULT_END_MS, Faults, timeline};
use crate::ledger::Ledger;
use crate::mta::{MtaConfig, MtaHandle, add_host, identity, install};
use crate::oracle::{Verdict, check};
use crate::remote::{Behaviour, RemoteServer};
use crate::{HOME, mix, remote, traffic};

/// One step of simulated time. Each step ticks every host's runtime and the
/// network's, whatever happens, so the step count is most of a seed's cost.
/// Timers inside a host fire at their own time within a step (tokio's paused
/// clock jumps from one to the next); what the step sets is when messages
/// between hosts are delivered and when the driver's events (crashes,
/// partitions) fall: at step boundaries. 100 ms costs a third of 20 ms and
/// reaches every coverage state as often (docs/simulation.md, Speed).
pub const TICK: Duration = Duration::from_millis(100);
/// How long the queue may take to drain once faults stop.
pub const DRAIN_LIMIT_MS: u64 = 3600 * 1000;
/// How often the drain nudges the scheduler (qmail's SIGALRM): often enough
/// that a seed ends soon after its last deferral window closes.
const NUDGE_MS: u64 = 10_000;
/// How often the drain looks whether the queue is empty.
const DRAIN_CHECK_MS: u64 = 500;
/// Debug builds check the simulated filesystem's bookkeeping after every
/// this many changes (and once more at the end of the run): after each, the
/// check was most of a seed's cost in the test profile.
const FS_CHECK_EVERY: u64 = 64;
/// The primary MX host of `remote.example` (preference 10; `mx2` is the
/// backup at 20).
const PRIMARY_MX: &str = "mx1";
/// The hosts of the world beyond the MTA and its clients (see [`internet`]).
const INTERNET: [&str; 5] = ["dns", "mx1", "mx2", "mx-defer", "mx-reject"];
/// The network's latency outside latency faults.
const BASE_LATENCY: Duration = Duration::from_millis(30);

/// How to run a seed.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Bugs planted in the MTA.
    pub plants: PlantSet,
    /// Keep every trace line (for `--trace`).
    pub keep_trace: bool,
    /// Override the seed's own choice of faults.
    pub faults: Option<Faults>,
}

/// What one run found.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub seed: u64,
    pub faults: Faults,
    pub plants: PlantSet,
    pub clients: usize,
    pub crashes: u32,
    pub accepted: usize,
    pub delivered: usize,
    pub bounced: usize,
    pub duplicates: usize,
    /// Simulated seconds the run took.
    pub sim_secs: u64,
    pub drained: bool,
    pub trace_hash: u64,
    pub trace_events: u64,
    /// Kept trace lines (with `keep_trace`).
    pub trace: Vec<String>,
    pub violations: Vec<String>,
    /// How often the states that matter were reached.
    pub coverage: Coverage,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The one command that replays this run with a full trace.
    pub fn replay_command(&self) -> String {
        let mut c = format!(
            "cargo run -p qmail-sim-tests --bin sim -- --seed {} --trace",
            self.seed
        );
        for p in qmail_core::env::Plant::ALL {
            if self.plants.contains(p) {
                c.push_str(&format!(" --plant {}", p.name()));
            }
        }
        c
    }

    /// One line: the seed, what it enabled and what happened.
    pub fn summary(&self) -> String {
        format!(
            "seed {} [{}] clients={} crashes={} accepted={} delivered={} bounced={} duplicates={} sim={}s trace={:016x}{}",
            self.seed,
            self.faults,
            self.clients,
            self.crashes,
            self.accepted,
            self.delivered,
            self.bounced,
            self.duplicates,
            self.sim_secs,
            self.trace_hash,
            if self.passed() {
                String::new()
            } else {
                format!(" VIOLATIONS={}", self.violations.len())
            }
        )
    }
}

/// A crash armed to fall right after a filesystem operation.
struct Armed {
    target: u64,
    deadline: u64,
    keep_probability: f64,
    torn: bool,
    downtime_ms: u64,
}

struct World {
    seed: u64,
    sim: turmoil::Sim<'static>,
    fs: SimFs,
    trace: Trace,
    handle: MtaHandle,
    clients: usize,
    /// The MTA is down (crashed or exited) until this time.
    restart_at: Option<u64>,
    armed: Option<Armed>,
    crashes: u32,
    fs_faults: FsFaults,
    dns: DnsServer,
    /// The primary MX is cut off, held (true) or partitioned (false).
    mx_down: Option<bool>,
    /// Clients partitioned from the MTA by a fault, to be cut off again
    /// after a crash has cut and restored every link of the MTA.
    partitioned: BTreeSet<usize>,
    /// The network's message loss rate (`Event::Loss`).
    loss: f64,
    tracker: Tracker,
    /// Failed syncs may drop their data (`Faults::fsyncgate`).
    fsyncgate: bool,
}

fn now_ms(sim: &turmoil::Sim<'_>) -> u64 {
    sim.elapsed().as_millis() as u64
}

impl World {
    /// A driver event in the trace, stamped with the simulated time (the
    /// trace's own stamp is only known inside a host).
    fn log(&self, what: std::fmt::Arguments<'_>) {
        let t = self.sim.elapsed().as_secs_f64();
        self.trace
            .record("driver", format_args!("at {t:.3} {what}"));
    }

    fn crash(&mut self, keep_probability: f64, torn: bool, downtime_ms: u64) {
        if self.restart_at.is_some() {
            return;
        }
        self.crashes += 1;
        self.tracker.crash(self.sim.elapsed());
        let crash_seed = mix(self.seed, 0xc4a5 + u64::from(self.crashes));
        self.log(format_args!(
            "crash #{} keep={keep_probability} torn={torn}",
            self.crashes
        ));
        let clients: Vec<String> = (0..self.clients).map(|c| format!("client{c}")).collect();
        let peers: Vec<&str> = clients.iter().map(String::as_str).chain(INTERNET).collect();
        crash_host(
            &mut self.sim,
            "mta",
            &peers,
            &self.fs,
            crash_seed,
            CrashOptions {
                keep_probability,
                torn_block: torn.then_some(512),
            },
        );
        // The network as it was, less what was in flight to and from the MTA.
        for peer in &peers {
            self.sim.repair("mta", *peer);
        }
        for c in &self.partitioned {
            self.sim.partition(format!("client{c}"), "mta");
        }
        match self.mx_down {
            Some(true) => self.sim.hold("mta", PRIMARY_MX),
            Some(false) => self.sim.partition("mta", PRIMARY_MX),
            None => {}
        }
        self.sim.set_fail_rate(self.loss);
        self.fs.resume();
        *self
            .handle
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.restart_at = Some(now_ms(&self.sim) + downtime_ms);
    }

    fn mx_up(&mut self) {
        match self.mx_down.take() {
            Some(true) => self.sim.release("mta", PRIMARY_MX),
            Some(false) => self.sim.repair("mta", PRIMARY_MX),
            None => {}
        }
    }

    fn restart(&mut self) {
        self.log(format_args!("restart mta"));
        self.sim.bounce("mta");
        self.restart_at = None;
    }

    fn apply(&mut self, e: Event) {
        self.log(format_args!("{e:?}"));
        match e {
            Event::Crash {
                keep_probability,
                torn,
                downtime_ms,
            } => self.crash(keep_probability, torn, downtime_ms),
            Event::CrashAtOp {
                ops,
                keep_probability,
                torn,
                downtime_ms,
            } => {
                if self.restart_at.is_none() && self.armed.is_none() {
                    self.fs.halt_after(ops);
                    self.armed = Some(Armed {
                        target: self.fs.stats().mutations + ops,
                        deadline: now_ms(&self.sim) + 20_000,
                        keep_probability,
                        torn,
                        downtime_ms,
                    });
                }
            }
            Event::Restart => {}
            Event::Partition(c) => {
                let client = format!("client{c}");
                self.tracker.partition(&client);
                self.sim.partition(client, "mta");
                self.partitioned.insert(c);
            }
            Event::Repair(c) => {
                self.sim.repair(format!("client{c}"), "mta");
                self.partitioned.remove(&c);
            }
            Event::Latency(ms) => self.sim.set_max_message_latency(Duration::from_millis(ms)),
            Event::LatencyOff => self.sim.set_max_message_latency(BASE_LATENCY),
            Event::Loss(p) => {
                self.loss = p;
                self.sim.set_fail_rate(p);
            }
            Event::LossOff => {
                self.loss = 0.0;
                self.sim.set_fail_rate(0.0);
            }
            Event::DiskFull(room) => {
                self.fs_faults.capacity = Some(self.fs.used_bytes() + room);
                self.fs.set_faults(self.fs_faults.clone());
            }
            Event::DiskOk => {
                self.fs_faults.capacity = None;
                self.fs.set_faults(self.fs_faults.clone());
            }
            Event::IoErrors(rate) => {
                self.fs_faults.sync_error_rate = rate;
                self.fs_faults.write_error_rate = rate / 4.0;
                self.fs_faults.failed_sync_drops = if self.fsyncgate { 0.5 } else { 0.0 };
                self.fs.set_faults(self.fs_faults.clone());
            }
            Event::IoErrorsOff => {
                self.fs_faults.sync_error_rate = 0.0;
                self.fs_faults.write_error_rate = 0.0;
                self.fs.set_faults(self.fs_faults.clone());
            }
            Event::DnsFaults(seed) => self.dns.set_faults(DnsFaults::swarm(seed)),
            Event::DnsHonest => self.dns.set_faults(DnsFaults::none()),
            Event::MxDown { hold } => {
                if hold {
                    self.sim.hold("mta", PRIMARY_MX);
                } else {
                    self.sim.partition("mta", PRIMARY_MX);
                }
                self.mx_down = Some(hold);
            }
            Event::MxUp => self.mx_up(),
            Event::End => {
                self.dns.set_faults(DnsFaults::none());
                self.mx_up();
                if self.armed.take().is_some() {
                    self.fs.resume();
                }
                self.fs_faults = FsFaults::default();
                self.fs.set_faults(FsFaults::default());
                for c in 0..self.clients {
                    self.sim.repair(format!("client{c}"), "mta");
                }
                self.partitioned.clear();
                self.sim.set_max_message_latency(BASE_LATENCY);
                self.loss = 0.0;
                self.sim.set_fail_rate(0.0);
                if self.restart_at.is_some() {
                    self.restart();
                }
            }
        }
    }

    /// Between steps: a due restart, an armed crash whose operation came,
    /// and a supervisor's restart of an MTA that exited on its own.
    fn housekeeping(&mut self, now: u64) {
        if let Some(at) = self.restart_at
            && now >= at
        {
            self.restart();
        }
        if let Some(a) = &self.armed
            && (self.fs.stats().mutations >= a.target || now >= a.deadline)
        {
            let a = self.armed.take().expect("armed");
            self.crash(a.keep_probability, a.torn, a.downtime_ms);
            // An idle MTA may never reach the operation: no freeze stays.
            self.fs.resume();
        }
        if self.restart_at.is_none() && !self.sim.is_host_running("mta") {
            self.log(format_args!("mta exited; restart in 1s"));
            self.restart_at = Some(now + 1_000);
        }
    }
}

/// The world beyond the MTA: the remote mail hosts and the DNS server that
/// names them. `remote.example` has a primary and a backup MX (both
/// accepting, flaky during the fault phase when deferrals are on);
/// `defer.example` defers until `defer_until`; `reject.example` refuses
/// every recipient; `elsewhere.example` does not exist.
fn internet(
    sim: &mut turmoil::Sim<'static>,
    seed: u64,
    cfg: &MtaConfig,
    ledger: &Ledger,
    trace: &Trace,
) -> DnsServer {
    let dns = DnsServer::new(Zone::new(), DnsFaults::none(), mix(seed, 0xd25));
    let d = dns.clone();
    sim.host("dns", move || {
        let d = d.clone();
        async move {
            d.serve().await?;
            Ok(())
        }
    });
    let servers = [
        ("mx1", Behaviour::Accept, cfg.remote_flaky),
        ("mx2", Behaviour::Accept, cfg.remote_flaky),
        ("mx-defer", Behaviour::DeferUntil(cfg.defer_until), 0.0),
        ("mx-reject", Behaviour::Reject, 0.0),
    ];
    for (i, (name, behaviour, flaky)) in servers.into_iter().enumerate() {
        remote::add_host(
            sim,
            RemoteServer {
                name: name.into(),
                behaviour,
                flaky,
                flaky_until: cfg.flaky_until,
                seed: mix(seed, 0x3e30 + i as u64),
            },
            ledger,
            trace,
        );
    }
    let v4 = |host: &str| match sim.lookup(host) {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("{host} has {other}"),
    };
    let (mx1, mx2, defer, reject) = (v4("mx1"), v4("mx2"), v4("mx-defer"), v4("mx-reject"));
    dns.edit_zone(|z| {
        z.mx("remote.example", 10, "mx1.remote.example")
            .mx("remote.example", 20, "mx2.remote.example")
            .a("mx1.remote.example", mx1)
            .a("mx2.remote.example", mx2)
            .mx("defer.example", 10, "mx.defer.example")
            .a("mx.defer.example", defer)
            .mx("reject.example", 10, "mx.reject.example")
            .a("mx.reject.example", reject);
    });
    dns
}

/// Whether the queue holds no message (nothing in `todo/` or `mess/`).
fn queue_empty(queue: &Queue<SimEnv>, rt: &tokio::runtime::Runtime) -> bool {
    rt.block_on(async {
        matches!(queue.list_todo().await, Ok(v) if v.is_empty())
            && matches!(queue.list_active().await, Ok(v) if v.is_empty())
    })
}

thread_local! {
    static LOG_TRACE: std::cell::RefCell<Option<Trace>> = const { std::cell::RefCell::new(None) };
}

/// Adds a log line (from a `tracing` subscriber) to the trace of the run in
/// progress on this thread, if it keeps lines. Log lines are not hashed.
pub fn note_log(line: &str) {
    LOG_TRACE.with(|t| {
        if let Some(t) = &*t.borrow() {
            t.note("log", format_args!("{}", line.trim_end()));
        }
    });
}

/// Runs seed `seed`: a pure function of the seed and the options.
pub fn run(seed: u64, opts: &RunOptions) -> RunReport {
    let faults = opts.faults.unwrap_or_else(|| Faults::choose(seed));
    let mut rng = StdRng::seed_from_u64(mix(seed, 0x5e7));
    let clients = rng.random_range(1..=4);
    let window = |rng: &mut StdRng| {
        if faults.deferrals {
            rng.random_range(0..300)
        } else {
            0
        }
    };
    let cfg = MtaConfig {
        seed,
        plants: opts.plants,
        slow_until: window(&mut rng),
        defer_until: window(&mut rng),
        remote_flaky: if faults.deferrals { 0.3 } else { 0.0 },
        flaky_until: FAULT_END_MS / 1000,
        queuelifetime: if faults.short_lifetime {
            rng.random_range(120..400)
        } else {
            604_800
        },
    };
    let trace = if opts.keep_trace {
        Trace::keeping_lines()
    } else {
        Trace::new()
    };
    let tracker = Tracker::default();
    trace.set_probe(tracker.probe());
    LOG_TRACE.with(|t| *t.borrow_mut() = opts.keep_trace.then(|| trace.clone()));
    trace.record(
        "driver",
        format_args!("seed {seed} faults [{faults}] clients {clients} {cfg:?}"),
    );

    let fs = SimFs::new(mix(seed, 0xf5));
    fs.check_bookkeeping_every(FS_CHECK_EVERY);
    fs.set_journal(if faults.journal {
        Journal::On
    } else {
        Journal::Off
    });
    install(&fs, &cfg);
    fs.set_trace(trace.clone());
    let mut sim = sim_builder(seed).tick_duration(TICK).build();
    sim.set_max_message_latency(BASE_LATENCY);
    let ledger = Ledger::default();
    let handle = MtaHandle::default();
    add_host(&mut sim, &fs, cfg.clone(), &ledger, &trace, &handle);
    let dns = internet(&mut sim, seed, &cfg, &ledger, &trace);
    for c in 0..clients {
        let (ledger, trace) = (ledger.clone(), trace.clone());
        sim.client(format!("client{c}"), async move {
            traffic::client(seed, c, ledger, trace).await;
            Ok(())
        });
    }
    let mut fs_faults = FsFaults::default();
    if faults.slow_sync {
        fs_faults.slow_sync = Some((Duration::from_millis(1), Duration::from_millis(300)));
    }
    fs.set_faults(fs_faults.clone());
    let mut w = World {
        seed,
        sim,
        fs: fs.clone(),
        trace: trace.clone(),
        handle: handle.clone(),
        clients,
        restart_at: None,
        armed: None,
        crashes: 0,
        fs_faults,
        dns,
        mx_down: None,
        partitioned: BTreeSet::new(),
        loss: 0.0,
        tracker: tracker.clone(),
        fsyncgate: faults.fsyncgate,
    };

    let check_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let check_queue = Queue::new(
        SimEnv::new(fs.clone(), 0, identity(0)),
        Home::new(HOME).queue(),
    );
    let mut events = timeline(seed, &faults, clients).into_iter().peekable();
    let mut violations = Vec::new();
    let mut clients_done = false;
    let mut drained = false;
    let mut next_nudge = FAULT_END_MS + NUDGE_MS;
    let limit = FAULT_END_MS + DRAIN_LIMIT_MS;
    let mut steps: u64 = 0;
    let drain_check_steps = (DRAIN_CHECK_MS / TICK.as_millis() as u64).max(1);
    loop {
        let now = now_ms(&w.sim);
        if now >= limit {
            break;
        }
        while let Some((_, e)) = events.next_if(|(t, _)| *t <= now) {
            w.apply(e);
        }
        w.housekeeping(now);
        if now >= FAULT_END_MS {
            if now >= next_nudge {
                next_nudge = now + NUDGE_MS;
                w.handle.command(Command::RetryNow);
            }
            if clients_done
                && steps.is_multiple_of(drain_check_steps)
                && queue_empty(&check_queue, &check_rt)
            {
                drained = true;
                break;
            }
        }
        match w.sim.step() {
            Ok(done) => clients_done = done,
            Err(e) => {
                violations.push(format!("simulation error: {e}"));
                break;
            }
        }
        steps += 1;
    }
    let sim_secs = w.sim.elapsed().as_secs();
    trace.record(
        "driver",
        format_args!("end after {steps} steps, drained={drained}"),
    );
    let verdict = if drained {
        let snapshot = fs.snapshot();
        check(&snapshot, &ledger.lock())
    } else {
        let v = Verdict {
            violations: vec![format!(
                "the queue did not drain within {}s of the faults' end (clients done: {clients_done})",
                DRAIN_LIMIT_MS / 1000
            )],
            ..Verdict::default()
        };
        // Still check what is there: what is stuck in the queue shows up
        // as lost too.
        let full = check(&fs.snapshot(), &ledger.lock());
        Verdict {
            violations: [v.violations, full.violations].concat(),
            ..full
        }
    };
    violations.extend(verdict.violations);
    if let Err(slip) = fs.check_bookkeeping() {
        violations.push(format!("simulated filesystem bookkeeping: {slip}"));
    }
    LOG_TRACE.with(|t| *t.borrow_mut() = None);
    RunReport {
        seed,
        faults,
        plants: opts.plants,
        clients,
        crashes: w.crashes,
        accepted: verdict.accepted,
        delivered: verdict.delivered,
        bounced: verdict.bounced,
        duplicates: verdict.duplicates,
        sim_secs,
        drained,
        trace_hash: trace.hash(),
        trace_events: trace.events(),
        trace: trace.lines(),
        violations,
        coverage: tracker.coverage(),
    }
}
