//! The scheduler's side of a real process: its signals. The wiring itself
//! is `qmail_core::mta::run`.

use anyhow::{Context, Result};
use qmail_core::send::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Turns qmail-send's signals into scheduler commands for the life of
/// the process: SIGALRM retries the queue now, SIGHUP rereads the control
/// files.
pub fn forward_signals(tx: mpsc::UnboundedSender<Command>) -> Result<()> {
    let mut alarm = signal(SignalKind::alarm()).context("catching SIGALRM")?;
    let mut hangup = signal(SignalKind::hangup()).context("catching SIGHUP")?;
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                Some(()) = alarm.recv() => Command::RetryNow,
                Some(()) = hangup.recv() => Command::Reload,
                else => return,
            };
            if tx.send(c).is_err() {
                return;
            }
        }
    });
    Ok(())
}
