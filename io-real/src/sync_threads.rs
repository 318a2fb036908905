//! The threads that wait on the disk for `fsync` and `fdatasync`, so that
//! a runtime worker never does.
//!
//! A sync takes milliseconds of waiting and almost no CPU. Running it with
//! `block_in_place` on the worker costs a thread hand-off per call (the
//! worker's other tasks move to a fresh thread, woken or spawned), and under
//! load the runtime's blocking pool grows to hundreds of threads. Here a
//! task queues the sync and awaits its answer; a few long-lived threads take
//! the queued syncs in order, and one that finds more queued when it is done
//! goes on to the next without sleeping: a sync queued while the threads are
//! busy costs no wake-up of its own.
//!
//! The threads are started on demand, up to [`MAX_SYNC_THREADS`], and live
//! as long as the process. Several run at once because a disk takes many
//! flushes at once far better than the same flushes one by one (see
//! `docs/performance.md`, "Filesystem calls and thread hand-offs").

use std::collections::VecDeque;
use std::io;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

/// At most this many syncs wait on the disk at once: enough for the
/// flushes of a few dozen concurrent sessions and deliveries, and a fixed
/// bound on the threads whatever the load.
pub(crate) const MAX_SYNC_THREADS: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads started so far.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
}

#[derive(Default)]
struct SyncThreads {
    queue: Mutex<Queue>,
    wake: Condvar,
}

fn pool() -> &'static SyncThreads {
    static POOL: OnceLock<SyncThreads> = OnceLock::new();
    POOL.get_or_init(SyncThreads::default)
}

/// Runs `sync` on a sync thread and waits for its result without holding
/// up the caller's runtime thread.
pub(crate) async fn run(sync: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool().submit(Box::new(move || {
        // The caller may have gone (a dropped future): nobody to tell.
        let _ = tx.send(sync());
    }))?;
    rx.await
        .unwrap_or_else(|_| Err(io::Error::other("sync thread ended without an answer")))
}

impl SyncThreads {
    fn submit(&'static self, job: Job) -> io::Result<()> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.jobs.push_back(job);
        // Start a thread only when every thread is busy and the queue would
        // otherwise wait behind them.
        if q.idle == 0 && q.threads < MAX_SYNC_THREADS {
            let spawned = std::thread::Builder::new()
                .name("qmail-sync".into())
                .spawn(move || self.serve());
            match spawned {
                Ok(_) => q.threads += 1,
                // The threads there are will get to it.
                Err(_) if q.threads > 0 => {}
                Err(e) => {
                    q.jobs.pop_back();
                    return Err(e);
                }
            }
        } else if q.idle > 0 {
            drop(q);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// A sync thread's life: take the oldest job, run it, repeat.
    fn serve(&self) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                drop(q);
                // A panic must not cost the pool a thread: the job's caller
                // hears of it as a lost answer.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            q.idle += 1;
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.idle -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sync threads started so far in this process.
    fn started() -> usize {
        pool()
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .threads
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_syncs_share_a_few_threads() {
        let dir = tempfile::tempdir().unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                tokio::spawn(async move {
                    let mut f = std::fs::File::create(path)?;
                    std::io::Write::write_all(&mut f, b"x")?;
                    run(move || f.sync_all()).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n = started();
        assert!((1..=MAX_SYNC_THREADS).contains(&n), "{n} sync threads");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_error_of_a_sync_comes_back() {
        let e = run(|| Err(io::Error::other("device gone")))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "device gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_sync_is_an_error_and_the_threads_go_on() {
        let e = run(|| panic!("planted panic")).await.unwrap_err();
        assert_eq!(e.to_string(), "sync thread ended without an answer");
        for _ in 0..2 * MAX_SYNC_THREADS {
            run(|| Ok(())).await.unwrap();
        }
    }

    /// A sync that waits does not hold up the runtime: with one worker,
    /// another task still runs, and it is the one that lets the sync end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_worker_runs_other_tasks_while_a_sync_waits() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let waiting = tokio::spawn(run(move || {
            rx.recv_timeout(Duration::from_secs(10))
                .map_err(|_| io::Error::other("never released"))
        }));
        // Give the sync time to start on its thread, then release it from
        // a task of this runtime.
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokio::spawn(async move { tx.send(()).unwrap() })
            .await
            .unwrap();
        waiting.await.unwrap().unwrap();
    }
}
