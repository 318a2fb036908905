//! qmail-rs's I/O traits inside a deterministic turmoil simulation.
//!
//! Network and time come from turmoil; the filesystem is [`SimFs`], which
//! models what survives a crash; programs and users are scripted. Every source
//! of randomness is seeded, so a run is a pure function of its seed.

mod clock;
mod dns;
mod exec;
mod fs;
mod net;
mod trace;
mod users;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmail_core::env::{Env, Identity, Plant, PlantSet, Rng};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

pub use clock::{SIM_EPOCH_SECS, SimClock, sim_epoch, sim_now};
pub use dns::{DNS_PORT, DnsFault, DnsFaults, DnsServer, Node, QueryLog, Zone};
pub use exec::{ProgramCall, SIM_QUEUE_PID, SimExec, exited};
pub use fs::{CrashOptions, FsFaults, FsStats, Journal, SimFile, SimFs, SnapEntry};
pub use net::{SimListener, SimNet, SimUdp};
pub use trace::{Probe, Trace};
pub use users::SimUsers;

/// The seeded random source of one host incarnation.
#[derive(Clone)]
pub struct SimRng(Arc<Mutex<StdRng>>);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }
}

impl Rng for SimRng {
    fn next_u64(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).next_u64()
    }
}

/// The environment of one simulated host.
#[derive(Clone)]
pub struct SimEnv {
    pub fs: SimFs,
    pub exec: SimExec,
    pub users: SimUsers,
    rng: SimRng,
    clock: SimClock,
    net: SimNet,
    identity: Arc<Identity>,
    plants: PlantSet,
}

impl SimEnv {
    /// An environment over an existing filesystem (which outlives the host's
    /// crashes), with randomness seeded by `seed`.
    pub fn new(fs: SimFs, seed: u64, identity: Identity) -> Self {
        SimEnv {
            exec: SimExec::new(fs.clone()),
            fs,
            users: SimUsers::default(),
            rng: SimRng::new(seed),
            clock: SimClock::default(),
            net: SimNet,
            identity: Arc::new(identity),
            plants: PlantSet::EMPTY,
        }
    }

    /// The same environment with its clock `ahead` of simulated time (the
    /// filesystem's times stay on simulated time).
    pub fn with_clock_ahead(mut self, ahead: Duration) -> Self {
        self.clock = SimClock::ahead(ahead);
        self
    }

    /// The same environment with these bugs planted (see [`Plant`]).
    pub fn with_plants(mut self, plants: PlantSet) -> Self {
        self.plants = plants;
        self
    }
}

impl Env for SimEnv {
    type Fs = SimFs;
    type Clock = SimClock;
    type Net = SimNet;
    type Exec = SimExec;
    type Users = SimUsers;
    type Rng = SimRng;

    fn fs(&self) -> &SimFs {
        &self.fs
    }
    fn clock(&self) -> &SimClock {
        &self.clock
    }
    fn net(&self) -> &SimNet {
        &self.net
    }
    fn exec(&self) -> &SimExec {
        &self.exec
    }
    fn users(&self) -> &SimUsers {
        &self.users
    }
    fn rng(&self) -> &SimRng {
        &self.rng
    }
    fn identity(&self) -> &Identity {
        &self.identity
    }
    fn planted(&self, plant: Plant) -> bool {
        self.plants.contains(plant)
    }
}

/// A turmoil builder set up for reproducible runs: seeded, with the fixed
/// simulated epoch, and a long enough simulated duration for mail queues.
pub fn sim_builder(seed: u64) -> turmoil::Builder {
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .epoch(sim_epoch())
        .simulation_duration(Duration::from_secs(30 * 24 * 3600))
        .tick_duration(Duration::from_millis(1));
    b
}

/// Crashes a simulated host: turmoil stops its software and its filesystem
/// loses what was not durable (as `crash_seed` decides). Restart it with
/// `sim.bounce(host)`; the host's closure gets the same [`SimFs`] back.
///
/// A host that loses power sends nothing more, so the host's links to every
/// one of `peers` are cut (both ways, what was in flight on them is lost)
/// while its software is dropped, and the network's random loss is off
/// meanwhile: the FIN or RST each dying socket would send goes nowhere and
/// draws nothing from the network's random source. This is also what keeps a
/// seed replayable: tokio drops a runtime's tasks in an order set by its
/// process-wide task counter, which depends on what ran before on any thread,
/// so anything a dying socket sent would reach the network in that order.
/// The links stay cut and the loss rate at zero: the caller restores the
/// ones it wants (`sim.repair`, `sim.set_fail_rate`).
pub fn crash_host(
    sim: &mut turmoil::Sim<'_>,
    host: &str,
    peers: &[&str],
    fs: &SimFs,
    crash_seed: u64,
    opts: CrashOptions,
) {
    sim.set_fail_rate(0.0);
    for peer in peers {
        sim.partition(host, *peer);
    }
    sim.crash(host);
    fs.crash(crash_seed, opts);
}
