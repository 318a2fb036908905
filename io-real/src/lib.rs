//! qmail-rs's I/O traits on the real operating system: the real filesystem with
//! real `fsync` of files and directories, tokio networking, `/bin/sh` for
//! programs, the passwd database, the system clock and OS randomness.

pub mod dns;
mod exec;
mod fs;
mod net;
mod record_lock;
mod sync_threads;
mod users;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use qmail_core::env::{Clock, Env, Identity, Rng};
use rand::{RngCore, SeedableRng};

pub use exec::RealExec;
pub use fs::{RealFile, RealFs};
pub use net::{RealListener, RealNet, RealUdp};
pub use users::RealUsers;

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A cryptographically seeded generator shared by the process.
#[derive(Clone)]
pub struct RealRng(Arc<Mutex<rand::rngs::StdRng>>);

impl Default for RealRng {
    fn default() -> Self {
        RealRng(Arc::new(Mutex::new(rand::rngs::StdRng::from_os_rng())))
    }
}

impl Rng for RealRng {
    fn next_u64(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).next_u64()
    }
}

/// The production environment.
#[derive(Clone)]
pub struct RealEnv {
    fs: RealFs,
    clock: RealClock,
    net: RealNet,
    exec: RealExec,
    users: RealUsers,
    rng: RealRng,
    identity: Arc<Identity>,
}

impl RealEnv {
    /// The environment of this process.
    pub fn new() -> Self {
        RealEnv {
            fs: RealFs,
            clock: RealClock,
            net: RealNet,
            exec: RealExec,
            users: RealUsers,
            rng: RealRng::default(),
            identity: Arc::new(current_identity()),
        }
    }
}

impl Default for RealEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// The identity of the running process.
pub fn current_identity() -> Identity {
    Identity {
        pid: std::process::id(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string()),
    }
}

impl Env for RealEnv {
    type Fs = RealFs;
    type Clock = RealClock;
    type Net = RealNet;
    type Exec = RealExec;
    type Users = RealUsers;
    type Rng = RealRng;

    fn fs(&self) -> &RealFs {
        &self.fs
    }
    fn clock(&self) -> &RealClock {
        &self.clock
    }
    fn net(&self) -> &RealNet {
        &self.net
    }
    fn exec(&self) -> &RealExec {
        &self.exec
    }
    fn users(&self) -> &RealUsers {
        &self.users
    }
    fn rng(&self) -> &RealRng {
        &self.rng
    }
    fn identity(&self) -> &Identity {
        &self.identity
    }
}
