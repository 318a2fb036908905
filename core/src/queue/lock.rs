//! One scheduler per queue: qmail's `queue/lock/sendmutex`, held for the
//! scheduler's whole life and taken before recovery, so a second scheduler
//! can never remove what the first one (or its injectors) is writing.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::Queue;
use crate::env::{Env, Fs, FsFile, OpenOptions};

/// Holding the queue's scheduler lock; dropping it lets go.
pub struct SchedulerLock<E: Env> {
    _file: <E::Fs as Fs>::File,
}

/// Why the scheduler lock was not taken.
#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "another scheduler is running on this queue: {} is locked{}; one scheduler per queue",
        path.display(),
        holder.map(|p| format!(" by process {p}")).unwrap_or_default()
    )]
    Held { path: PathBuf, holder: Option<u32> },
    #[error("unable to lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl<E: Env> Queue<E> {
    /// Takes the scheduler lock without waiting, and writes this process's
    /// id into the lock file so a second scheduler can name the first.
    pub async fn lock_scheduler(&self) -> Result<SchedulerLock<E>, LockError> {
        let fs = self.env.fs();
        let path = self.layout.sendmutex();
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        fs.create_dir_all(&self.layout.lock_dir(), 0o750)
            .await
            .map_err(io_err)?;
        let opts = OpenOptions {
            create: true,
            mode: 0o600,
            ..OpenOptions::read_write()
        };
        let mut file = fs.open(&path, &opts).await.map_err(io_err)?;
        if !file.try_lock().await.map_err(io_err)? {
            let mut text = Vec::new();
            let _ = file.read_to_end(&mut text).await;
            let holder = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            return Err(LockError::Held { path, holder });
        }
        let pid = format!("{}\n", self.env.identity().pid);
        let noted = async {
            file.set_len(0).await?;
            file.seek(0).await?;
            file.write_all(pid.as_bytes()).await
        }
        .await;
        // The pid is only a courtesy to the next one to try; the lock holds
        // without it.
        if let Err(e) = noted {
            tracing::warn!("unable to write the pid into {}: {e}", path.display());
        }
        Ok(SchedulerLock { _file: file })
    }
}
