//! Remote delivery (qmail-remote): routing a domain to the hosts that take
//! its mail, and the SMTP client that hands a message to one of them.
//!
//! The pieces, each in its own file: `control/smtproutes` ([`routes`]); the
//! hosts to try, from routes or MX records, refusing to loop back to us
//! ([`target`]); the downed-host table ([`tcpto`]); the client session as a
//! state machine ([`client`]) over replies ([`reply`]) and DATA's encoding
//! ([`data`]); its async driver ([`session`]). [`RemoteDelivery`] puts them
//! together: one message, one domain, all its recipients in one
//! transaction, one outcome per recipient in qmail-remote's words. The
//! scheduler's remote channel and the `qmail-remote` program both run it.

pub mod client;
pub mod data;
pub mod reply;
pub mod routes;
pub mod session;
pub mod target;
pub mod tcpto;

#[cfg(any(test, feature = "testkit"))]
pub mod table;

use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use client::{ClientSession, Final, Report, SessionEnd, Step, Transaction, Verdict};
pub use data::{DataEncoder, Measure, MessageFacts};
pub use reply::{Reply, ReplyReader};
pub use routes::{Relay, Route, SmtpRoutes};
pub use session::{FileSlice, MessageReader, run_session};
pub use target::{Target, Us, targets};
pub use tcpto::Tcpto;

use crate::control::{self, ControlError, HostSet};
use crate::deliver::{Deliver, DeliveryJob, MessageRef, Outcome};
use crate::dns::Resolve;
use crate::env::{Env, Fs, FsFile, Net, OpenOptions, Plant};
use crate::home::Home;

/// qmail-remote's settings from the control files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteControl {
    /// `control/helohost` (default `me`): the name said in EHLO and HELO.
    pub helohost: String,
    /// `control/timeoutconnect` (default 60 seconds).
    pub timeout_connect: Duration,
    /// `control/timeoutremote` (default 1200 seconds): each read and write.
    pub timeout_remote: Duration,
    pub routes: SmtpRoutes,
    /// Who we are, so no route leads back here. The caller adds the
    /// listener's addresses.
    pub us: Us,
}

impl RemoteControl {
    /// The settings for host `me` without control files.
    pub fn defaults(me: &str) -> RemoteControl {
        RemoteControl {
            helohost: me.to_string(),
            timeout_connect: Duration::from_secs(60),
            timeout_remote: Duration::from_secs(1200),
            routes: SmtpRoutes::default(),
            us: Us {
                names: HostSet::new([me]),
                listeners: Vec::new(),
                ips: Vec::new(),
            },
        }
    }

    /// Reads `me`, `helohost`, `timeoutconnect`, `timeoutremote`,
    /// `smtproutes` and `locals`. Unparsable `smtproutes` lines are logged
    /// and skipped.
    pub async fn load<E: Env>(env: &E, home: &Home) -> Result<RemoteControl, ControlError> {
        let fs = env.fs();
        let c = |name: &str| home.control_file(name);
        let me = control::read_line(fs, &c("me"))
            .await?
            .unwrap_or_else(|| env.identity().hostname.clone());
        let d = RemoteControl::defaults(&me);
        let helohost = control::read_line(fs, &c("helohost"))
            .await?
            .unwrap_or(d.helohost);
        let secs = async |name: &str, default: Duration| -> Result<Duration, ControlError> {
            Ok(control::read_number(fs, &c(name))
                .await?
                .map_or(default, |s| Duration::from_secs(s.max(1))))
        };
        let timeout_connect = secs("timeoutconnect", d.timeout_connect).await?;
        let timeout_remote = secs("timeoutremote", d.timeout_remote).await?;
        let (routes, bad) = SmtpRoutes::parse(
            control::read_list(fs, &c("smtproutes"))
                .await?
                .unwrap_or_default(),
        );
        for line in bad {
            tracing::warn!("control/smtproutes: ignoring {line:?}");
        }
        let mut names = HostSet::new([me.as_str()]);
        if let Some(locals) = control::read_list(fs, &c("locals")).await? {
            names.extend(HostSet::new(locals));
        }
        Ok(RemoteControl {
            helohost,
            timeout_connect,
            timeout_remote,
            routes,
            us: Us { names, ..d.us },
        })
    }
}

/// The remote delivery agent: qmail-remote's work for the scheduler's remote
/// channel and for the `qmail-remote` program.
#[derive(Clone)]
pub struct RemoteDelivery<E: Env, R: Resolve> {
    env: E,
    resolver: R,
    control: Arc<RemoteControl>,
    tcpto: Tcpto<E>,
}

impl<E: Env, R: Resolve> RemoteDelivery<E, R> {
    /// An agent whose downed-host table lives in the queue at `queue_dir`.
    pub fn new(
        env: E,
        resolver: R,
        queue_dir: impl Into<std::path::PathBuf>,
        control: RemoteControl,
    ) -> Self {
        let tcpto = Tcpto::new(env.clone(), queue_dir);
        RemoteDelivery {
            env,
            resolver,
            control: Arc::new(control),
            tcpto,
        }
    }

    pub fn control(&self) -> &RemoteControl {
        &self.control
    }

    /// Delivers `message` from `sender` to `recipients`, all at `domain`, in
    /// one SMTP transaction: one outcome per recipient, in order.
    pub async fn deliver_to(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &MessageRef,
    ) -> Vec<Outcome> {
        let outcomes = self
            .report(domain, sender, recipients, message)
            .await
            .outcomes();
        if !self.env.planted(Plant::DoneOnRemoteDefer) {
            return outcomes;
        }
        // The planted bug: a remote 4xx (to a RCPT, to DATA, after the
        // message) reported as a delivery.
        outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Deferral(t) if t.contains("Remote host said: 4") => Outcome::Success(t),
                o => o,
            })
            .collect()
    }

    /// [`Self::deliver_to`] with qmail-remote's whole report.
    pub async fn report(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &MessageRef,
    ) -> Report {
        let n = recipients.len();
        let all = |o: Outcome| {
            Report::all(
                n,
                match o {
                    Outcome::Success(t) => Final::Delivered(t),
                    Outcome::Deferral(t) => Final::Temporary(t),
                    Outcome::Failure(t) => Final::Permanent(t),
                },
            )
        };
        let c = &*self.control;
        let targets = match targets(&self.resolver, self.env.rng(), &c.routes, &c.us, domain).await
        {
            Ok(t) => t,
            Err(o) => return all(o),
        };
        let facts = match self.measure(message).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("unable to read {}: {e}", message.path.display());
                return all(Outcome::Deferral(
                    "Unable to read message. (#4.3.0)\n".into(),
                ));
            }
        };
        let tx = Transaction {
            sender: sender.to_string(),
            recipients: recipients.to_vec(),
            facts,
        };
        let mut last = None;
        for t in &targets {
            let ip = t.addr.ip();
            if self.tcpto.is_down(ip).await {
                continue;
            }
            let stream =
                match tokio::time::timeout(c.timeout_connect, self.env.net().connect(t.addr)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(_)) => {
                        self.tcpto.record(ip, false).await;
                        continue;
                    }
                    Err(_) => {
                        self.tcpto.record(ip, true).await;
                        continue;
                    }
                };
            self.tcpto.record(ip, false).await;
            let body = match self.open(message).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("unable to read {}: {e}", message.path.display());
                    return all(Outcome::Deferral(
                        "Unable to read message. (#4.3.0)\n".into(),
                    ));
                }
            };
            let session = ClientSession::new(&c.helohost, &ip.to_string(), tx.clone());
            match run_session(stream, session, body, c.timeout_remote).await {
                SessionEnd::Done(report) => return report,
                SessionEnd::NextHost(text) => last = Some(text),
            }
        }
        all(Outcome::Deferral(last.unwrap_or_else(|| {
            "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n".into()
        })))
    }

    async fn open(&self, m: &MessageRef) -> io::Result<FileSlice<<E::Fs as Fs>::File>> {
        let mut file = self.env.fs().open(&m.path, &OpenOptions::read()).await?;
        file.seek(m.offset).await?;
        Ok(FileSlice {
            file,
            remaining: m.len,
        })
    }

    async fn measure(&self, m: &MessageRef) -> io::Result<MessageFacts> {
        let mut body = self.open(m).await?;
        let mut measure = Measure::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buf).await?;
            if n == 0 {
                return Ok(measure.finish());
            }
            measure.feed(&buf[..n]);
        }
    }
}

/// The domain of an address (what follows the last `@`; empty if none).
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

impl<E: Env, R: Resolve> Deliver for RemoteDelivery<E, R> {
    /// One transaction for the job's recipients (the scheduler groups a
    /// message's remote recipients by domain).
    async fn deliver(&self, job: DeliveryJob) -> Vec<Outcome> {
        let recipients: Vec<String> = job.recipients.iter().map(|r| r.address.clone()).collect();
        let Some(first) = recipients.first() else {
            return Vec::new();
        };
        let domain = domain_of(first).to_string();
        self.deliver_to(&domain, &job.sender, &recipients, &job.message)
            .await
    }
}
