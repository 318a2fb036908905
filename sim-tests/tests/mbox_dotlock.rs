//! The mbox dotlock in simulated time: a fresh one held by someone else
//! is waited for within the delivery's one bounded lock wait, then the
//! delivery fails temporarily; a stale one (by the environment's clock) is
//! removed; a directory that refuses it leaves the kernel locks alone in
//! charge; and the delivery's own dotlock goes on every way out.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use qmail_core::deliver::{Deliver, DeliveryJob, Outcome};
use qmail_core::env::{Fs, FsFile, OpenOptions};
use qmail_core::home::Home;
use qmail_core::local::mbox_lock::{LOCK_WAIT, STALE_LOCK_TIME, dotlock_path};
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::queue::Queue;
use qmail_io_sim::{FsFaults, SimEnv, SimFs, sim_builder};
use qmail_sim_tests::kit::identity;
use qmail_sim_tests::kit::inject::{local_job, only};
use tokio::time::Instant;

const OLD: &[u8] = b"From x@y Thu Jan 01 00:00:00 1970\nSubject: old\n\nold body\n\n";
const MBOX: &str = "/home/bob/Mailbox";
const LOCKED: &str = "File has been locked for 30 seconds straight. (#4.3.0)\n";
const BODY: &[u8] = b"Subject: dotlock\n\nthe body\n";

/// One simulated host with bob's mbox holding `OLD`, ready to deliver.
struct Host {
    fs: SimFs,
    agent: LocalDelivery<SimEnv>,
    job: DeliveryJob,
}

impl Host {
    async fn new() -> Host {
        let fs = SimFs::new(5);
        let env = SimEnv::new(fs.clone(), 5, identity(77, 500, "sim"));
        env.users.add("bob", 1001, 1001, "/home/bob");
        let home = Home::new("/var/qmail");
        let queue = Queue::new(env.clone(), home.queue());
        fs.install_file(Path::new("/home/bob/.qmail"), b"./Mailbox\n", 0o644)
            .unwrap();
        fs.install_file(Path::new(MBOX), OLD, 0o600).unwrap();
        fs.set_owner(Path::new("/home/bob"), 1001).unwrap();
        fs.create_dir_all(&home.alias(), 0o755).await.unwrap();
        queue.create().await.unwrap();
        let job = local_job(&queue, "alice@example.org", "bob@example.org", BODY)
            .await
            .unwrap();
        let agent = LocalDelivery::new(queue, home.clone(), LocalConfig::new(Mode::System, &home));
        Host { fs, agent, job }
    }

    async fn deliver(&self) -> Outcome {
        only(self.agent.deliver(self.job.clone()).await)
    }

    async fn mbox(&self) -> Vec<u8> {
        self.fs.read(Path::new(MBOX)).await.unwrap()
    }

    async fn delivered(&self) -> bool {
        let mbox = self.mbox().await;
        mbox.starts_with(OLD) && mbox.ends_with(b"\nthe body\n\n") && mbox.len() > OLD.len()
    }

    async fn dotlock_exists(&self) -> bool {
        self.fs.exists(&dotlock_path(Path::new(MBOX))).await
    }

    /// Someone else's dotlock, made now.
    async fn plant_dotlock(&self) {
        self.fs
            .open(&dotlock_path(Path::new(MBOX)), &OpenOptions::create_new())
            .await
            .unwrap();
    }

    /// Someone else's kernel locks on the mbox, held while the handle lives.
    async fn hold_kernel_locks(&self) -> impl FsFile {
        let mut f = self
            .fs
            .open(Path::new(MBOX), &OpenOptions::append())
            .await
            .unwrap();
        assert!(f.try_lock_mailbox().await.unwrap());
        f
    }
}

/// Runs `test` on a simulated host, in simulated time.
fn simulate<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let mut sim = sim_builder(5).build();
    sim.client("host", async move {
        test().await;
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn a_fresh_dotlock_held_by_another_is_waited_for_then_fails_temporarily() {
    simulate(|| async {
        let h = Host::new().await;
        h.plant_dotlock().await;
        let start = Instant::now();
        assert_eq!(h.deliver().await, Outcome::Deferral(LOCKED.into()));
        let waited = start.elapsed();
        assert!(
            waited >= LOCK_WAIT && waited < LOCK_WAIT + Duration::from_secs(1),
            "{waited:?}"
        );
        assert!(h.dotlock_exists().await, "someone else's dotlock is theirs");
        assert_eq!(h.mbox().await, OLD);
    });
}

#[test]
fn a_dotlock_given_back_within_the_wait_lets_the_delivery_through() {
    simulate(|| async {
        let h = Host::new().await;
        h.plant_dotlock().await;
        let fs = h.fs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            fs.remove_file(&dotlock_path(Path::new(MBOX)))
                .await
                .unwrap();
        });
        let start = Instant::now();
        assert!(matches!(h.deliver().await, Outcome::Success(_)));
        assert!(start.elapsed() >= Duration::from_secs(10));
        assert!(h.delivered().await);
        assert!(!h.dotlock_exists().await);
    });
}

#[test]
fn a_stale_dotlock_is_removed_and_the_delivery_goes_on() {
    simulate(|| async {
        let h = Host::new().await;
        h.plant_dotlock().await;
        tokio::time::sleep(STALE_LOCK_TIME + Duration::from_secs(1)).await;
        let start = Instant::now();
        assert!(matches!(h.deliver().await, Outcome::Success(_)));
        assert!(start.elapsed() < Duration::from_secs(1), "no wait");
        assert!(h.delivered().await);
        assert!(!h.dotlock_exists().await);
    });
}

#[test]
fn a_dotlock_that_goes_stale_during_the_wait_is_removed_then() {
    simulate(|| async {
        let h = Host::new().await;
        h.plant_dotlock().await;
        // Ten seconds short of stale: the wait outlasts its freshness.
        tokio::time::sleep(STALE_LOCK_TIME - Duration::from_secs(10)).await;
        let start = Instant::now();
        assert!(matches!(h.deliver().await, Outcome::Success(_)));
        let waited = start.elapsed();
        assert!(
            waited > Duration::from_secs(10) && waited < Duration::from_secs(12),
            "{waited:?}"
        );
        assert!(h.delivered().await);
        assert!(!h.dotlock_exists().await);
    });
}

#[test]
fn a_directory_refusing_the_dotlock_leaves_the_kernel_locks_in_charge() {
    simulate(|| async {
        let h = Host::new().await;
        h.fs.deny_creation_in(Path::new("/home/bob")).unwrap();
        // No dotlock can be made: the kernel locks alone still hold others off.
        let holder = h.hold_kernel_locks().await;
        let start = Instant::now();
        assert_eq!(h.deliver().await, Outcome::Deferral(LOCKED.into()));
        assert!(start.elapsed() >= LOCK_WAIT);
        drop(holder);
        assert!(matches!(h.deliver().await, Outcome::Success(_)));
        assert!(h.delivered().await);
        assert!(!h.dotlock_exists().await);
    });
}

#[test]
fn the_dotlock_and_the_kernel_locks_share_one_bounded_wait() {
    simulate(|| async {
        let h = Host::new().await;
        h.plant_dotlock().await;
        let fs = h.fs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            fs.remove_file(&dotlock_path(Path::new(MBOX)))
                .await
                .unwrap();
        });
        let holder = h.hold_kernel_locks().await;
        let start = Instant::now();
        assert_eq!(h.deliver().await, Outcome::Deferral(LOCKED.into()));
        let waited = start.elapsed();
        assert!(
            waited >= LOCK_WAIT && waited < LOCK_WAIT + Duration::from_secs(1),
            "20 s for the dotlock and 10 more for the kernel locks: {waited:?}"
        );
        // The delivery's own dotlock went with the failure.
        assert!(!h.dotlock_exists().await);
        drop(holder);
    });
}

#[test]
fn the_dotlock_goes_when_the_write_fails() {
    simulate(|| async {
        let h = Host::new().await;
        h.fs.set_faults(FsFaults {
            capacity: Some(h.fs.used_bytes() + 10),
            ..FsFaults::default()
        });
        let out = h.deliver().await;
        let Outcome::Deferral(text) = out else {
            panic!("{out:?}")
        };
        assert!(
            text.starts_with("Unable to write /home/bob/Mailbox: "),
            "{text}"
        );
        h.fs.set_faults(FsFaults::default());
        assert_eq!(h.mbox().await, OLD, "cut back");
        assert!(!h.dotlock_exists().await);
    });
}

#[test]
fn an_mbox_replaced_while_the_lock_was_awaited_gets_the_message() {
    simulate(|| async {
        let h = Host::new().await;
        h.fs.deny_creation_in(Path::new("/home/bob")).unwrap();
        // A reader without dotlocks rewrites the mbox: a new file renamed
        // over the old one while it holds the old one's locks.
        let holder = h.hold_kernel_locks().await;
        let fs = h.fs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let rewritten = Path::new("/home/rewritten");
            fs.install_file(rewritten, OLD, 0o600).unwrap();
            fs.rename(rewritten, Path::new(MBOX)).await.unwrap();
            drop(holder);
        });
        assert!(matches!(h.deliver().await, Outcome::Success(_)));
        assert!(h.delivered().await, "appended to the file named {MBOX}");
    });
}
