//! The I/O trait layer: everything core may touch of the outside world.
//!
//! Core code never calls the OS. It receives an [`Env`] by value and reaches the
//! filesystem, the clock, the network, programs, the user database and randomness
//! only through it. `qmail-io-real` implements the traits on the real OS;
//! `qmail-io-sim` implements them inside a deterministic turmoil simulation with
//! a crash-faithful filesystem. Timers and timeouts use `tokio::time`, which
//! turmoil drives in the simulation.

mod clock;
mod exec;
mod fs;
mod net;
mod plant;
mod rng;
mod users;

pub use clock::Clock;
pub use exec::{Exec, ExitCode, FileRange, ProgramInput, ProgramOutput, ProgramSpec, QueueProgram};
pub use fs::{DirEntry, FileKind, Fs, FsFile, Metadata, OpenOptions};
pub use net::{Net, NetListener, NetUdp};
pub use plant::{Plant, PlantSet};
pub use rng::Rng;
pub use users::{UserInfo, Users};

/// Facts about the running process that core needs for headers, log lines and
/// unique file names (qmail's `qp`, `uid`, maildir names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Process id as qmail prints it (`qp` in log lines, `qmail PID` in Received).
    pub pid: u32,
    /// Real user id of the process (`invoked by uid N`).
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// The machine's host name (`uname -n`), used in maildir file names and as
    /// the default for `control/me`.
    pub hostname: String,
}

/// The bundle of I/O capabilities core code receives (static dispatch, no globals).
pub trait Env: Clone + Send + Sync + 'static {
    type Fs: Fs;
    type Clock: Clock;
    type Net: Net;
    type Exec: Exec;
    type Users: Users;
    type Rng: Rng;

    fn fs(&self) -> &Self::Fs;
    fn clock(&self) -> &Self::Clock;
    fn net(&self) -> &Self::Net;
    fn exec(&self) -> &Self::Exec;
    fn users(&self) -> &Self::Users;
    fn rng(&self) -> &Self::Rng;
    fn identity(&self) -> &Identity;

    /// Whether the simulation planted this bug (see [`Plant`]). Only the
    /// simulated environment overrides this; production is always `false`.
    fn planted(&self, _plant: Plant) -> bool {
        false
    }
}
