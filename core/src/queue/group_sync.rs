//! Group commit of a directory: concurrent callers that each need the
//! directory synced after their own change share one `fsync`. A caller never
//! returns before a sync that *started after* its call has finished, so no
//! acknowledgement precedes its own durability.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::env::Fs;

/// One shared sync: everyone who joined before it started.
#[derive(Default)]
struct Batch {
    result: OnceLock<Result<(), (io::ErrorKind, String)>>,
}

struct State {
    running: bool,
    /// The batch that will start next; new callers join it.
    next: Arc<Batch>,
}

pub(crate) struct GroupSync {
    dir: PathBuf,
    state: Mutex<State>,
    changed: Notify,
}

impl GroupSync {
    pub(crate) fn new(dir: PathBuf) -> Self {
        GroupSync {
            dir,
            state: Mutex::new(State {
                running: false,
                next: Arc::default(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once a sync of the directory that started after this call has
    /// succeeded, or with the error of that sync.
    pub(crate) async fn sync<F: Fs>(&self, fs: &F) -> io::Result<()> {
        let batch = Arc::clone(&self.lock().next);
        self.join(fs, batch).await
    }

    /// Like [`GroupSync::sync`], but in no hurry: waits `patience` first, so
    /// that a sync someone else starts meanwhile (an injection's) serves this
    /// caller too, and syncs only if none did.
    pub(crate) async fn sync_within<F: Fs>(&self, fs: &F, patience: Duration) -> io::Result<()> {
        let batch = Arc::clone(&self.lock().next);
        tokio::time::sleep(patience).await;
        self.join(fs, batch).await
    }

    /// Waits for `batch` to be synced, leading its sync if nobody else is.
    async fn join<F: Fs>(&self, fs: &F, batch: Arc<Batch>) -> io::Result<()> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let lead = {
                let mut st = self.lock();
                if let Some(r) = batch.result.get() {
                    return r.clone().map_err(|(k, m)| io::Error::new(k, m));
                }
                // Our batch has not started while nothing runs: lead it.
                let lead = !st.running;
                if lead {
                    st.running = true;
                    st.next = Arc::default();
                }
                lead
            };
            if lead {
                // If this future is dropped mid-sync, the guard hands the
                // batch (still without a result) to one of its waiters.
                let _leading = Leading(self);
                let r = fs.sync_dir(&self.dir).await;
                let _ = batch.result.set(
                    r.as_ref()
                        .map(|_| ())
                        .map_err(|e| (e.kind(), e.to_string())),
                );
                return r;
            }
            changed.await;
        }
    }
}

/// Marks the end of a leader's sync, however it ends.
struct Leading<'a>(&'a GroupSync);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.lock().running = false;
        self.0.changed.notify_waiters();
    }
}

/// Group commit for many directories at once (the `new/` directories of the
/// maildirs a local agent delivers to): concurrent deliveries into one
/// directory share its sync. An entry lives only while someone uses it.
#[derive(Default)]
pub struct DirSyncs {
    dirs: Mutex<BTreeMap<PathBuf, Weak<GroupSync>>>,
}

impl DirSyncs {
    /// Returns once a sync of `dir` that started after this call has
    /// succeeded, or with the error of that sync.
    pub async fn sync<F: Fs>(&self, fs: &F, dir: &Path) -> io::Result<()> {
        let group = {
            let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            match dirs.get(dir).and_then(Weak::upgrade) {
                Some(g) => g,
                None => {
                    // Forget the directories nobody syncs any more.
                    dirs.retain(|_, g| g.strong_count() > 0);
                    let g = Arc::new(GroupSync::new(dir.to_path_buf()));
                    dirs.insert(dir.to_path_buf(), Arc::downgrade(&g));
                    g
                }
            }
        };
        group.sync(fs).await
    }
}
