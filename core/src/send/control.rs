//! qmail-send's control files, with qmail's defaults.

use super::route::Router;
use crate::control::{self, ControlError};
use crate::env::Env;
use crate::home::Home;

/// qmail's conf-spawn: the most deliveries one channel may run at once.
pub const MAX_CONCURRENCY: usize = 120;

/// Who bounces come from and where double bounces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceControl {
    /// `control/bouncefrom` (default `MAILER-DAEMON`).
    pub bouncefrom: String,
    /// `control/bouncehost` (default `me`).
    pub bouncehost: String,
    /// `control/doublebounceto` (default `postmaster`); empty discards
    /// double bounces.
    pub doublebounceto: String,
    /// `control/doublebouncehost` (default `me`).
    pub doublebouncehost: String,
}

/// Everything the scheduler reads from `control/`. Reread on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendControl {
    pub me: String,
    pub router: Router,
    /// `control/concurrencylocal` (default 10, at most 120).
    pub concurrency_local: usize,
    /// `control/concurrencyremote` (default 20, at most 120).
    pub concurrency_remote: usize,
    /// `control/queuelifetime` in seconds (default 604800, a week).
    pub queuelifetime: u64,
    pub bounce: BounceControl,
}

impl SendControl {
    /// The settings for host `me` when no other control file exists.
    pub fn defaults(me: &str) -> SendControl {
        SendControl {
            me: me.to_string(),
            router: Router::new(me, [me.to_string()], [], []),
            concurrency_local: 10,
            concurrency_remote: 20,
            queuelifetime: 604_800,
            bounce: BounceControl {
                bouncefrom: "MAILER-DAEMON".into(),
                bouncehost: me.to_string(),
                doublebounceto: "postmaster".into(),
                doublebouncehost: me.to_string(),
            },
        }
    }

    /// Reads `me`, `envnoathost`, `locals`, `percenthack`, `virtualdomains`,
    /// `concurrencylocal`, `concurrencyremote`, `queuelifetime`, `bouncefrom`,
    /// `bouncehost`, `doublebounceto` and `doublebouncehost`.
    pub async fn load<E: Env>(env: &E, home: &Home) -> Result<SendControl, ControlError> {
        let fs = env.fs();
        let c = |name: &str| home.control_file(name);
        let me = control::read_line(fs, &c("me"))
            .await?
            .unwrap_or_else(|| env.identity().hostname.clone());
        let line_or = async |name: &str, default: &str| -> Result<String, ControlError> {
            Ok(control::read_line(fs, &c(name))
                .await?
                .unwrap_or_else(|| default.to_string()))
        };
        let envnoathost = line_or("envnoathost", &me).await?;
        let locals = control::read_list(fs, &c("locals"))
            .await?
            .unwrap_or_else(|| vec![me.clone()]);
        let percenthack = control::read_list(fs, &c("percenthack"))
            .await?
            .unwrap_or_default();
        let virtualdomains = control::read_list(fs, &c("virtualdomains"))
            .await?
            .unwrap_or_default();
        let number_or = async |name: &str, default: u64| -> Result<u64, ControlError> {
            Ok(control::read_number(fs, &c(name)).await?.unwrap_or(default))
        };
        // Every default is the one `defaults` gives for this host.
        let d = SendControl::defaults(&me);
        let b = &d.bounce;
        let concurrency = |v: u64| (v as usize).min(MAX_CONCURRENCY);
        Ok(SendControl {
            router: Router::new(&envnoathost, locals, percenthack, virtualdomains),
            concurrency_local: concurrency(
                number_or("concurrencylocal", d.concurrency_local as u64).await?,
            ),
            concurrency_remote: concurrency(
                number_or("concurrencyremote", d.concurrency_remote as u64).await?,
            ),
            queuelifetime: number_or("queuelifetime", d.queuelifetime).await?,
            bounce: BounceControl {
                bouncefrom: line_or("bouncefrom", &b.bouncefrom).await?,
                bouncehost: line_or("bouncehost", &b.bouncehost).await?,
                doublebounceto: line_or("doublebounceto", &b.doublebounceto).await?,
                doublebouncehost: line_or("doublebouncehost", &b.doublebouncehost).await?,
            },
            me,
        })
    }
}
