//! Running the scheduler in a real process: its control files, its signals
//! (ALRM retries now, HUP rereads controls, and the caller's stop future
//! finishes in-flight deliveries) and the trigger from other processes.

use std::future::Future;

use anyhow::{Context, Result};
use qmail_core::deliver::Deliver;
use qmail_core::home::Home;
use qmail_core::queue::Queue;
use qmail_core::send::{Command, Scheduler, SendControl};
use qmail_io_real::RealEnv;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Runs the scheduler until `stop` resolves, then lets the deliveries in
/// flight finish and returns. `ready` is told once the queue is recovered
/// (nothing may inject before: recovery clears `tmp/`).
pub async fn run_scheduler<L: Deliver, R: Deliver>(
    queue: Queue<RealEnv>,
    home: Home,
    local: L,
    remote: R,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let env = queue.env().clone();
    let control = SendControl::load(&env, &home)
        .await
        .context("reading control files")?;
    super::trigger::listen(queue.clone(), &home.queue()).context("creating queue/lock/trigger")?;
    let (tx, rx) = mpsc::unbounded_channel();
    let scheduler = Scheduler::new(queue, home, control, local, remote).on_ready(ready);
    let mut task = tokio::spawn(scheduler.run(rx));
    let mut alarm = signal(SignalKind::alarm())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = &mut task => return r.context("scheduler task")?.context("scheduler"),
            _ = alarm.recv() => { let _ = tx.send(Command::RetryNow); }
            _ = hangup.recv() => { let _ = tx.send(Command::Reload); }
            _ = &mut stop => {
                let _ = tx.send(Command::Stop);
                return task.await.context("scheduler task")?.context("scheduler");
            }
        }
    }
}

/// The remote channel until remote delivery lands: every attempt defers
/// (and so bounces after `queuelifetime`), saying why.
#[derive(Clone)]
pub struct NoRemoteDelivery;

impl Deliver for NoRemoteDelivery {
    async fn deliver(
        &self,
        job: qmail_core::deliver::DeliveryJob,
    ) -> Vec<qmail_core::deliver::Outcome> {
        let why = qmail_core::deliver::Outcome::Deferral(
            "This qmail-rs build cannot deliver to remote hosts yet. (#4.3.0)\n".into(),
        );
        vec![why; job.recipients.len()]
    }
}
