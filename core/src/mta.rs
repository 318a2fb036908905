//! The composition root of the whole MTA in one process (`qmail run`, and
//! the simulated MTA host, which runs exactly this): take the queue's
//! scheduler lock, start the scheduler (which recovers the queue first),
//! serve SMTP once the queue is ready, and stop on the caller's signal.

use std::future::Future;
use std::io;

use std::sync::Arc;
use thiserror::Error;

use tokio::sync::{mpsc, oneshot, watch};

use crate::deliver::Deliver;
use crate::env::{Env, NetListener};
use crate::home::Home;
use crate::queue::{LockError, Queue};
use crate::send::{Command, Scheduler, SendControl, SendError};
use crate::smtpd::{SmtpdControl, serve_reloadable};

/// Everything the MTA is made of, built by the caller for its world.
pub struct Parts<E: Env, N: NetListener, L: Deliver, R: Deliver> {
    pub queue: Queue<E>,
    pub home: Home,
    pub send: SendControl,
    /// The SMTP service's settings; a new value applies to the next
    /// sessions (SIGHUP).
    pub smtpd: watch::Receiver<Arc<SmtpdControl>>,
    /// Bound already, so the caller can say where.
    pub listener: N,
    pub local: L,
    pub remote: R,
}

/// Why the MTA stopped other than by being told to.
#[derive(Debug, Error)]
pub enum MtaError {
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("{0}")]
    Startup(io::Error),
    #[error("scheduler: {0}")]
    Scheduler(#[from] SendError),
    #[error("the scheduler stopped unexpectedly")]
    SchedulerGone,
    #[error("SMTP service: {0}")]
    Smtp(io::Error),
}

/// The caller's hooks into start-up.
pub struct Hooks<A, B> {
    /// Run once the lock is held, before recovery (the real binary starts
    /// listening on the trigger here, so no wake-up is missed).
    pub locked: A,
    /// Run once the queue is recovered and SMTP is about to be served.
    pub serving: B,
}

/// Runs the MTA until `stop` resolves, then lets the scheduler finish the
/// deliveries in flight and returns. `commands` reaches the scheduler
/// (SIGALRM, SIGHUP); the sender half is used to tell it to stop.
pub async fn run<E, N, L, R, A, B>(
    parts: Parts<E, N, L, R>,
    commands: (
        mpsc::UnboundedSender<Command>,
        mpsc::UnboundedReceiver<Command>,
    ),
    hooks: Hooks<A, B>,
    stop: impl Future<Output = ()>,
) -> Result<(), MtaError>
where
    E: Env,
    N: NetListener,
    L: Deliver,
    R: Deliver,
    A: FnOnce(&Queue<E>) -> io::Result<()>,
    B: FnOnce(),
{
    let Parts {
        queue,
        home,
        send,
        smtpd,
        listener,
        local,
        remote,
    } = parts;
    let (tx, rx) = commands;
    // Before recovery: a second scheduler must not clean up after the first.
    let lock = queue.lock_scheduler().await?;
    (hooks.locked)(&queue).map_err(MtaError::Startup)?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let scheduler = Scheduler::new(queue.clone(), home, send, local, remote).on_ready(ready_tx);
    // The lock lives exactly as long as the scheduler does.
    let mut scheduler = tokio::spawn(async move {
        let held = lock;
        let r = scheduler.run(rx).await;
        drop(held);
        r
    });
    let ended = |r: Result<Result<(), SendError>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => MtaError::SchedulerGone,
        Ok(Err(e)) => MtaError::Scheduler(e),
        Err(_) => MtaError::SchedulerGone,
    };
    // Nothing may inject before recovery is over: it clears tmp/.
    tokio::select! {
        biased;
        r = ready_rx => if r.is_err() {
            return Err(ended((&mut scheduler).await));
        },
        r = &mut scheduler => return Err(ended(r)),
    }
    (hooks.serving)();
    tokio::pin!(stop);
    let outcome = tokio::select! {
        biased;
        r = &mut scheduler => return Err(ended(r)),
        r = serve_reloadable(queue, listener, smtpd, &mut stop) => r,
    };
    // SMTP has stopped accepting; the scheduler finishes what is in flight.
    let _ = tx.send(Command::Stop);
    match scheduler.await {
        Ok(Ok(())) => {}
        r => return Err(ended(r)),
    }
    outcome.map_err(MtaError::Smtp)
}
