//! Locking an mbox the way the mail readers of a Linux system expect, as
//! Postfix's local delivery does: first the dotlock `<mbox>.lock`, created
//! exclusively, where the directory allows it; then, on the open file, a
//! `fcntl` write lock and an `flock` together ([`FsFile::try_lock_mailbox`]).
//!
//! Both waits share one bound, [`LOCK_WAIT`] (qmail's 30 seconds); after
//! it the delivery fails temporarily in qmail's words. Waiting sleeps on
//! the runtime's timer, so the simulation's time drives it.
//!
//! A dotlock whose holder died stays behind (no kernel releases it): one
//! older than [`STALE_LOCK_TIME`] by the environment's clock is removed,
//! Postfix's rule.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::verdict::Verdict;
use crate::env::{Clock, Env, Fs, FsFile, OpenOptions};

/// How long to wait for other holders of the mbox's locks (qmail: 30 s).
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How often a held lock is tried again.
const LOCK_POLL: Duration = Duration::from_millis(250);
/// Age after which a dotlock is taken for the leftover of a dead holder
/// (Postfix's `stale_lock_time`).
pub const STALE_LOCK_TIME: Duration = Duration::from_secs(500);

const TIMED_OUT: &str = "File has been locked for 30 seconds straight. (#4.3.0)";

/// The time one delivery has spent waiting for locks, bounded by [`LOCK_WAIT`].
#[derive(Debug, Default)]
pub(super) struct LockWait {
    waited: Duration,
}

impl LockWait {
    pub(super) fn new() -> Self {
        LockWait::default()
    }

    /// Sleeps before the next try, or fails temporarily once the bound is
    /// spent.
    pub(super) async fn pause(&mut self) -> Result<(), Verdict> {
        if self.waited >= LOCK_WAIT {
            return Err(Verdict::temporary(TIMED_OUT));
        }
        tokio::time::sleep(LOCK_POLL).await;
        self.waited += LOCK_POLL;
        Ok(())
    }
}

/// The name of an mbox's dotlock.
pub fn dotlock_path(mbox: &Path) -> PathBuf {
    let mut name = mbox.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// A dotlock this delivery made, or none where the directory allows none.
/// It must be given back with [`Dotlock::release`] on every way out.
#[must_use = "a dotlock left behind blocks other deliveries until it is stale"]
pub(super) struct Dotlock {
    path: Option<PathBuf>,
}

impl Dotlock {
    /// Creates `<mbox>.lock` exclusively, waiting while someone else holds
    /// it and removing it when stale. Where the directory refuses new files
    /// (no permission, a read-only filesystem) there is no dotlock and the
    /// kernel locks alone guard the mbox, as in Postfix.
    pub(super) async fn take<E: Env>(
        env: &E,
        mbox: &Path,
        wait: &mut LockWait,
    ) -> Result<Dotlock, Verdict> {
        let fs = env.fs();
        let path = dotlock_path(mbox);
        let shown = path.display();
        loop {
            match fs
                .open(&path, &OpenOptions::create_new().with_mode(0o600))
                .await
            {
                Ok(_) => return Ok(Dotlock { path: Some(path) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if is_stale(env, &path).await {
                        match fs.remove_file(&path).await {
                            Ok(()) => {
                                tracing::warn!(lock = %shown, "removed a stale dotlock");
                                continue;
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => {
                                return Err(Verdict::temporary(format!(
                                    "Unable to remove stale {shown}: {e}. (#4.3.0)"
                                )));
                            }
                        }
                    }
                    wait.pause().await?;
                }
                Err(e) if directory_refuses(&e) => return Ok(Dotlock { path: None }),
                Err(e) => {
                    return Err(Verdict::temporary(format!(
                        "Unable to create {shown}: {e}. (#4.3.0)"
                    )));
                }
            }
        }
    }

    /// Removes the dotlock, if one was made. A failure leaves it to go
    /// stale; the delivery's outcome stands.
    pub(super) async fn release<F: Fs>(self, fs: &F) {
        if let Some(path) = self.path
            && let Err(e) = fs.remove_file(&path).await
        {
            tracing::warn!(lock = %path.display(), error = %e, "unable to remove the dotlock");
        }
    }
}

/// Whether the dotlock at `path` was last touched longer than
/// [`STALE_LOCK_TIME`] ago by the environment's clock.
async fn is_stale<E: Env>(env: &E, path: &Path) -> bool {
    match env.fs().metadata(path).await {
        Ok(m) => env
            .clock()
            .now()
            .duration_since(m.mtime)
            .is_ok_and(|age| age > STALE_LOCK_TIME),
        Err(_) => false,
    }
}

/// Errors that mean the directory cannot hold a dotlock for us (`EACCES`,
/// `EPERM`, `EROFS`), so delivery goes on under the kernel locks alone. A
/// missing directory also goes on: opening the mbox then reports it.
fn directory_refuses(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::NotFound
    )
}

/// Takes the kernel locks on the open mbox, waiting within `wait`. A file
/// that cannot be locked at all (no support) is written unlocked, as qmail
/// does: `Ok(false)`.
pub(super) async fn lock_file<F: FsFile>(
    file: &mut F,
    wait: &mut LockWait,
) -> Result<bool, Verdict> {
    loop {
        match file.try_lock_mailbox().await {
            Ok(true) => return Ok(true),
            Ok(false) => wait.pause().await?,
            Err(_) => return Ok(false),
        }
    }
}
