//! The scheduler (qmail-send) in the simulated world: turmoil time drives
//! its timers and the simulated filesystem its queue. Delivery agents are
//! scripted: each records what it was asked (reading the message through
//! the reference it was given) and answers as the test says.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmail_core::deliver::{Deliver, DeliveryJob, Outcome};
use qmail_core::env::{Clock, Env, Fs, FsFile, OpenOptions};
use qmail_core::home::Home;
use qmail_core::queue::Channel;
use qmail_core::send::retry::lifetime_schedule;
use qmail_core::send::{Command, SendControl};
use qmail_io_sim::{SIM_EPOCH_SECS, SimFs};
use qmail_sim_tests::kit::crash::{Checked, at_least_once, crash_sweep, mutations_of};
use qmail_sim_tests::kit::host::{Message, MtaSpec, MtaWorld, message, mta_identity};
use qmail_sim_tests::kit::{env_on, rt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HOST: &str = "sim.test";

/// One call a scripted agent received.
#[derive(Debug, Clone)]
struct Call {
    /// Seconds since the simulation's epoch.
    at: u64,
    sender: String,
    recipient: String,
    body: String,
}

type Script = Arc<dyn Fn(&DeliveryJob, usize) -> (Outcome, Duration) + Send + Sync>;

#[derive(Default)]
struct Ledger {
    calls: Vec<Call>,
    now: [usize; 2],
    max: [usize; 2],
}

/// A delivery agent that answers from a script: `(job, attempt number of
/// this recipient, from 0)` → (outcome, how long the attempt takes).
#[derive(Clone)]
struct Agent {
    fs: SimFs,
    script: Script,
    ledger: Arc<Mutex<Ledger>>,
}

fn slot(ch: Channel) -> usize {
    match ch {
        Channel::Local => 0,
        Channel::Remote => 1,
    }
}

impl Deliver for Agent {
    /// Each recipient of the job is answered by the script (as if the job
    /// held only that recipient); the attempt takes as long as the slowest.
    fn deliver(&self, job: DeliveryJob) -> impl std::future::Future<Output = Vec<Outcome>> + Send {
        let this = self.clone();
        async move {
            let mut f = this
                .fs
                .open(&job.message.path, &OpenOptions::read())
                .await
                .expect("message file");
            f.seek(job.message.offset).await.unwrap();
            let mut body = vec![0u8; job.message.len as usize];
            let mut got = 0;
            while got < body.len() {
                let n = f.read(&mut body[got..]).await.unwrap();
                assert!(n > 0, "message shorter than its reference");
                got += n;
            }
            let mut answers = Vec::new();
            {
                let mut l = this.ledger.lock().unwrap();
                let c = slot(job.channel);
                l.now[c] += 1;
                l.max[c] = l.max[c].max(l.now[c]);
                for r in &job.recipients {
                    let attempt = l.calls.iter().filter(|x| x.recipient == r.address).count();
                    let one = DeliveryJob {
                        recipients: vec![r.clone()],
                        ..job.clone()
                    };
                    answers.push((this.script)(&one, attempt));
                }
            }
            let took = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
            tokio::time::sleep(took).await;
            let mut l = this.ledger.lock().unwrap();
            l.now[slot(job.channel)] -= 1;
            let at = qmail_io_sim::SimClock::default().unix_secs() - SIM_EPOCH_SECS;
            for r in &job.recipients {
                l.calls.push(Call {
                    at,
                    sender: job.sender.clone(),
                    recipient: r.address.clone(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            answers.into_iter().map(|(o, _)| o).collect()
        }
    }
}

/// The address of a one-recipient job (as the script sees every job).
fn rcpt(job: &DeliveryJob) -> &str {
    &job.recipients[0].address
}

thread_local! {
    /// qmail-send's log lines written on this thread. turmoil runs every
    /// host on the test's own thread, so each test sees only its own.
    static LOG: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct ThreadLog;

impl std::io::Write for ThreadLog {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.with(|l| l.borrow_mut().extend_from_slice(b));
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing this thread's log lines. One global subscriber serves
/// every test thread: per-thread subscribers would race on tracing's
/// callsite cache when tests run in parallel.
fn capture_log() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let sub = tracing_subscriber::fmt()
            .with_writer(|| ThreadLog)
            .with_env_filter("qmail_send=info")
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
    });
    LOG.with(|l| l.borrow_mut().clear());
}

fn log_text() -> String {
    LOG.with(|l| String::from_utf8(l.borrow().clone()).unwrap())
}

/// The MTA host with the scripted agents; `extra` is their ledger.
type World = MtaWorld<Arc<Mutex<Ledger>>>;

fn control() -> SendControl {
    let mut c = SendControl::defaults(HOST);
    c.router = qmail_core::send::Router::new(HOST, [HOST.to_string()], [], []);
    c
}

/// A world with one MTA host that queues `messages` at start (first
/// incarnation only) and runs the scheduler with `script` for both channels.
fn world(
    seed: u64,
    tick: Duration,
    control: SendControl,
    messages: Vec<Message>,
    script: Script,
) -> World {
    let mut spec = MtaSpec::new(seed, "/home", control);
    spec.queue = "/q".into();
    spec.tick = tick;
    spec.messages = messages;
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    spec.build(ledger.clone(), move |queue, _| {
        let agent = Agent {
            fs: queue.env().fs().clone(),
            script: script.clone(),
            ledger: ledger.clone(),
        };
        (agent.clone(), agent)
    })
}

/// What the scripted agents saw.
trait Scripted {
    fn calls(&self) -> Vec<Call>;
    /// Something was delivered and nothing is left in the queue.
    fn drained(&self) -> bool;
}

impl Scripted for World {
    fn calls(&self) -> Vec<Call> {
        self.extra.lock().unwrap().calls.clone()
    }

    fn drained(&self) -> bool {
        !self.extra.lock().unwrap().calls.is_empty() && self.queue_empty()
    }
}

fn msg(sender: &str, rcpts: &[&str], body: &str) -> Message {
    message(sender, rcpts, body)
}

fn success() -> (Outcome, Duration) {
    (
        Outcome::Success("did 1+0+0\n".into()),
        Duration::from_millis(20),
    )
}

const NO_MAILBOX: &str = "Sorry, no mailbox here by that name. (#5.1.1)\n";

const BODY: &str = "Received: (qmail 16998 invoked from network); 25 Nov 2026 00:00:00 -0000\n\
From: u2@sim.test\nTo: u1@sim.test\nSubject: transcript test\n\nHello u1.\n";

#[test]
fn log_lines_of_a_whole_message_life() {
    capture_log();
    let script: Script = Arc::new(|job, attempt| {
        if rcpt(job) == "u3@sim.test" && attempt == 0 {
            (
                Outcome::Deferral("Unable to lock mailbox. (#4.2.1)\n".into()),
                Duration::from_millis(10),
            )
        } else {
            success()
        }
    });
    let mut w = world(
        1,
        Duration::from_millis(100),
        control(),
        vec![msg("u2@sim.test", &["u1@sim.test", "u3@sim.test"], BODY)],
        script,
    );
    assert!(w.run_until(Duration::from_secs(400), |w| w.drained()));
    let calls = w.calls();
    assert_eq!(calls.len(), 3);
    // The retry came on the local schedule: 100 s after birth.
    assert_eq!(calls[2].recipient, "u3@sim.test");
    assert_eq!(calls[2].at, 100);
    insta::assert_snapshot!("log_message_life", log_text());
}

#[test]
fn bounce_double_bounce_and_a_discarded_triple_bounce() {
    capture_log();
    let script: Script = Arc::new(|job, _| {
        if rcpt(job).starts_with("no") || rcpt(job).starts_with("postmaster") {
            (
                Outcome::Failure(NO_MAILBOX.into()),
                Duration::from_millis(10),
            )
        } else {
            success()
        }
    });
    let mut w = world(
        2,
        Duration::from_millis(100),
        control(),
        vec![
            // A bounce to u2.
            msg("u2@sim.test", &["u1@sim.test", "nosuchuser@sim.test"], BODY),
        ],
        script.clone(),
    );
    assert!(w.run_until(Duration::from_secs(60), |w| w.drained()));
    let calls = w.calls();
    let bounce = calls
        .iter()
        .find(|c| c.recipient == "u2@sim.test")
        .expect("bounce delivered to the sender");
    assert_eq!(bounce.sender, "");
    insta::assert_snapshot!("bounce", bounce.body);

    // The sender itself has no mailbox: the bounce bounces to postmaster,
    // whose mailbox also fails: the double bounce is discarded and logged.
    let mut w = world(
        3,
        Duration::from_millis(100),
        control(),
        vec![msg("nosender@sim.test", &["nosuchuser@sim.test"], BODY)],
        script,
    );
    assert!(w.run_until(Duration::from_secs(60), |w| w.drained()));
    let calls = w.calls();
    let double = calls
        .iter()
        .find(|c| c.recipient == "postmaster@sim.test")
        .expect("double bounce attempted");
    assert_eq!(double.sender, "#@[]");
    insta::assert_snapshot!("double_bounce", double.body);
    let text = log_text();
    assert!(text.contains("triple bounce: discarding bounce/"), "{text}");
    assert_eq!(
        calls.len(),
        3,
        "the message, its bounce, the double bounce; nothing more"
    );
}

#[test]
fn a_deferring_recipient_is_retried_on_schedule_and_bounced_after_queuelifetime() {
    capture_log();
    let mut c = control();
    c.queuelifetime = 20_000;
    let script: Script = Arc::new(|job, _| {
        if rcpt(job) == "far@remote.test" {
            (
                Outcome::Deferral(
                    "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n".into(),
                ),
                Duration::from_secs(2),
            )
        } else {
            success()
        }
    });
    let mut w = world(
        4,
        Duration::from_secs(1),
        c,
        vec![msg("u2@sim.test", &["far@remote.test"], BODY)],
        script,
    );
    assert!(w.run_until(Duration::from_secs(30_000), |w| w.drained()));
    let calls = w.calls();
    let tries: Vec<u64> = calls
        .iter()
        .filter(|c| c.recipient == "far@remote.test")
        .map(|c| c.at - 2) // each attempt took 2 s
        .collect();
    assert_eq!(tries, lifetime_schedule(Channel::Remote, 20_000));
    assert_eq!(*tries.last().unwrap(), 25_600);
    let bounce = calls.last().unwrap();
    assert_eq!(bounce.recipient, "u2@sim.test");
    assert!(bounce.body.contains(
        "<far@remote.test>:\nSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n\
         I'm not going to try again; this message has been in the queue too long.\n"
    ));
    // The bounce was committed before the message was removed.
    let text = log_text();
    let bounce_at = text.find("bounce msg").unwrap();
    let end_at = text.find("end msg").unwrap();
    assert!(bounce_at < end_at, "{text}");
    assert!(text.contains(": failure: Sorry,_I_wasn't"));
}

#[test]
fn concurrency_limits_hold_under_a_random_mix_of_slow_and_fast_deliveries() {
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut c = control();
        c.concurrency_local = rng.random_range(1..6);
        c.concurrency_remote = rng.random_range(1..8);
        let mut messages = Vec::new();
        let mut expected = 0;
        for m in 0..rng.random_range(5..25) {
            let n = rng.random_range(1..6);
            let rcpts: Vec<String> = (0..n)
                .map(|r| {
                    if rng.random_bool(0.5) {
                        format!("l{m}x{r}@{HOST}")
                    } else {
                        format!("r{m}x{r}@far.test")
                    }
                })
                .collect();
            expected += n;
            let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
            messages.push(message(
                &format!("s{m}@{HOST}"),
                &rcpts,
                &format!("message {m}\n"),
            ));
        }
        let durations = Arc::new(Mutex::new(StdRng::seed_from_u64(seed ^ 0xfeed)));
        let script: Script = Arc::new(move |job, attempt| {
            let mut r = durations.lock().unwrap();
            let took = Duration::from_millis(r.random_range(0..8000));
            // Some deliveries defer once (retried on the schedule).
            if attempt == 0 && rcpt(job).len().is_multiple_of(4) {
                (Outcome::Deferral("try later\n".into()), took)
            } else {
                (Outcome::Success("ok\n".into()), took)
            }
        });
        let limits = [c.concurrency_local, c.concurrency_remote];
        let mut w = world(seed, Duration::from_millis(200), c, messages, script);
        assert!(
            w.run_until(Duration::from_secs(5000), |w| w.drained()),
            "seed {seed}: queue did not drain"
        );
        let l = w.extra.lock().unwrap();
        for (ch, (max, limit)) in l.max.iter().zip(limits).enumerate() {
            assert!(
                *max <= limit,
                "seed {seed}: channel {ch} ran {max} at once, limit {limit}"
            );
        }
        let delivered: std::collections::BTreeSet<&str> =
            l.calls.iter().map(|c| c.recipient.as_str()).collect();
        assert_eq!(delivered.len(), expected, "seed {seed}");
        // With many more deliveries than slots, the limit is actually used.
        assert!(
            l.max[0] == limits[0] || l.max[1] == limits[1],
            "seed {seed}: {:?}",
            l.max
        );
    }
}

#[test]
fn sigalrm_retries_a_deferred_recipient_at_once() {
    let script: Script = Arc::new(|_, attempt| {
        if attempt == 0 {
            (
                Outcome::Deferral("later\n".into()),
                Duration::from_millis(10),
            )
        } else {
            success()
        }
    });
    let mut w = world(
        5,
        Duration::from_millis(100),
        control(),
        vec![msg("a@sim.test", &["far@remote.test"], "x\n")],
        script,
    );
    assert!(w.run_until(Duration::from_secs(10), |w| w.calls().len() == 1));
    w.command(Command::RetryNow);
    assert!(w.run_until(Duration::from_secs(10), |w| w.drained()));
    let calls = w.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].at < 20, "retried at {} s, not at 400", calls[1].at);
}

/// A crash at every filesystem operation of a message's whole life (intake,
/// three deliveries, a failure, its bounce and the bounce's delivery,
/// removal), under several crash outcomes: after recovery each recipient is
/// delivered (at least once) or bounced, nothing is delivered to anyone
/// else, and the queue drains.
#[test]
fn a_crash_at_any_point_of_a_message_life_loses_nothing() {
    let script: Script = Arc::new(|job, _| {
        if rcpt(job).starts_with("nosuch") {
            (
                Outcome::Failure(NO_MAILBOX.into()),
                Duration::from_millis(10),
            )
        } else {
            success()
        }
    });
    let messages = vec![msg(
        "u2@sim.test",
        &["u1@sim.test", "nosuchuser@sim.test", "r@far.test"],
        BODY,
    )];
    let build = || {
        world(
            7,
            Duration::from_millis(100),
            control(),
            messages.clone(),
            script.clone(),
        )
    };
    let mut w = build();
    let (total, drained) = mutations_of(&w.fs.clone(), || {
        w.run_until(Duration::from_secs(60), |w| w.drained())
    });
    assert!(drained);
    assert!(total > 30, "only {total} operations?");
    let mut duplicates = 0;
    let swept = crash_sweep("message life", total, 3, |point| {
        let mut w = build();
        // The first incarnation injects, then freezes after `cut` operations
        // (the injection's own operations come first).
        w.crash_at(&point, Duration::from_secs(30));
        w.run_for(Duration::from_secs(600));
        let calls = w.calls();
        if !w.queue_empty() {
            return Err("queue did not drain".into());
        }
        for c in &calls {
            if ![
                "u1@sim.test",
                "r@far.test",
                "u2@sim.test",
                "nosuchuser@sim.test",
            ]
            .contains(&c.recipient.as_str())
            {
                return Err(format!("delivery to a stranger: {c:?}"));
            }
        }
        if !w.all_acknowledged() {
            // Cut before the commit point: nothing was accepted. (The
            // message may still go out if its commit survived the crash.)
            return Ok(Checked::NothingAccepted);
        }
        let count = |r: &str| {
            calls
                .iter()
                .filter(|c| c.recipient == r && c.body == BODY)
                .count()
        };
        let bounces = calls
            .iter()
            .filter(|c| c.recipient == "u2@sim.test" && c.body.contains("<nosuchuser@sim.test>:"))
            .count();
        at_least_once(
            [
                ("u1@sim.test", count("u1@sim.test")),
                ("r@far.test", count("r@far.test")),
                ("bounce", bounces),
            ],
            &mut duplicates,
        )
        .map_err(|e| format!("{e}: {calls:#?}"))?;
        Ok(Checked::Held)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{duplicates} duplicate deliveries");
    assert!(swept.held > 60);
}

/// The same for a message that cannot finish at once: one recipient
/// defers on its first attempt, so the message is written down (state
/// files with the other recipient's done mark, the move into `mess/`) and
/// finished on the retry. A crash anywhere in that loses nothing, and a
/// recipient delivered before the write-down is not delivered again unless
/// a crash came before it.
#[test]
fn a_crash_at_any_point_of_a_written_down_message_loses_nothing() {
    let script: Script = Arc::new(|job, attempt| {
        if rcpt(job) == "late@sim.test" && attempt == 0 {
            (
                Outcome::Deferral("Unable to lock mailbox. (#4.2.1)\n".into()),
                Duration::from_millis(10),
            )
        } else {
            success()
        }
    });
    let messages = vec![msg("u2@sim.test", &["u1@sim.test", "late@sim.test"], BODY)];
    let build = || {
        world(
            11,
            Duration::from_millis(100),
            control(),
            messages.clone(),
            script.clone(),
        )
    };
    let mut w = build();
    let (total, drained) = mutations_of(&w.fs.clone(), || {
        w.run_until(Duration::from_secs(600), |w| w.drained())
    });
    assert!(drained);
    let calls = w.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.recipient == "u1@sim.test")
            .count(),
        1,
        "delivered again after the write-down without a crash: {calls:#?}"
    );
    let mut duplicates = 0;
    let swept = crash_sweep("written-down message", total, 3, |point| {
        let mut w = build();
        w.crash_at(&point, Duration::from_secs(30));
        w.run_for(Duration::from_secs(900));
        let calls = w.calls();
        if !w.queue_empty() {
            let files: Vec<String> =
                w.fs.snapshot()
                    .keys()
                    .map(|p| p.display().to_string())
                    .filter(|p| p.starts_with("/q/") && !p.starts_with("/q/lock"))
                    .collect();
            return Err(format!("queue did not drain: {files:#?} {calls:#?}"));
        }
        if let Some(c) = calls
            .iter()
            .find(|c| !["u1@sim.test", "late@sim.test"].contains(&c.recipient.as_str()))
        {
            return Err(format!("delivery to a stranger: {c:?}"));
        }
        if !w.all_acknowledged() {
            return Ok(Checked::NothingAccepted);
        }
        let count = |r: &str| {
            calls
                .iter()
                .filter(|c| c.recipient == r && c.body == BODY)
                .count()
        };
        at_least_once(
            [
                ("u1@sim.test", count("u1@sim.test")),
                ("late@sim.test", count("late@sim.test")),
            ],
            &mut duplicates,
        )
        .map_err(|e| format!("{e}: {calls:#?}"))?;
        Ok(Checked::Held)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{duplicates} duplicate deliveries");
    assert!(swept.held > 30);
}

#[test]
fn control_files_and_their_defaults() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let fs = SimFs::new(1);
    let env = env_on(&fs, 1, &mta_identity());
    let home = Home::new("/home");
    let c = rt.block_on(SendControl::load(&env, &home)).unwrap();
    // Nothing there: everything defaults to the host name.
    assert_eq!(c, SendControl::defaults("mta"));
    assert_eq!(c.router.route("x@mta").0, Channel::Local);

    for (name, value) in [
        ("me", "me.test\n"),
        ("envnoathost", "noat.test\n"),
        ("locals", "me.test\n# comment\nother.test\n"),
        ("percenthack", "gw.test\n"),
        ("virtualdomains", "virt.test:joe\n"),
        ("concurrencylocal", "300\n"),
        ("concurrencyremote", "7\n"),
        ("queuelifetime", "3600\n"),
        ("bouncefrom", "bounces\n"),
        ("bouncehost", "b.test\n"),
        ("doublebounceto", "admin\n"),
        ("doublebouncehost", "d.test\n"),
    ] {
        fs.install_file(&home.control_file(name), value.as_bytes(), 0o644)
            .unwrap();
    }
    let c = rt.block_on(SendControl::load(&env, &home)).unwrap();
    assert_eq!(c.me, "me.test");
    assert_eq!(c.concurrency_local, 120, "capped at qmail's conf-spawn");
    assert_eq!(c.concurrency_remote, 7);
    assert_eq!(c.queuelifetime, 3600);
    assert_eq!(c.bounce.bouncefrom, "bounces");
    assert_eq!(c.bounce.bouncehost, "b.test");
    assert_eq!(c.bounce.doublebounceto, "admin");
    assert_eq!(c.bounce.doublebouncehost, "d.test");
    let r = &c.router;
    assert_eq!(r.route("u"), (Channel::Remote, "u@noat.test".into()));
    assert_eq!(
        r.route("u@OTHER.test"),
        (Channel::Local, "u@OTHER.test".into())
    );
    assert_eq!(
        r.route("u%other.test@gw.test"),
        (Channel::Local, "u@other.test".into())
    );
    assert_eq!(
        r.route("u@virt.test"),
        (Channel::Local, "joe-u@virt.test".into())
    );

    // A bad number is an error, not a silent default.
    fs.install_file(&home.control_file("queuelifetime"), b"a week\n", 0o644)
        .unwrap();
    let e = rt.block_on(SendControl::load(&env, &home)).unwrap_err();
    assert!(e.to_string().contains("queuelifetime"), "{e}");
}

#[test]
fn sighup_rereads_the_control_files() {
    // Three remote recipients (at three domains, so three jobs: one
    // domain's recipients share one) that each defer once, slowly. With
    // concurrencyremote 1 the first round runs one at a time; after a
    // reload that says 3 (and an ALRM), the retries run three at once.
    let script: Script = Arc::new(|_, attempt| {
        if attempt == 0 {
            (Outcome::Deferral("later\n".into()), Duration::from_secs(5))
        } else {
            (Outcome::Success("ok\n".into()), Duration::from_secs(5))
        }
    });
    let mut c = control();
    c.concurrency_remote = 1;
    let mut w = world(
        8,
        Duration::from_millis(100),
        c,
        vec![msg(
            "a@sim.test",
            &["x@far1.test", "y@far2.test", "z@far3.test"],
            "m\n",
        )],
        script,
    );
    assert!(w.run_until(Duration::from_secs(60), |w| w.calls().len() == 3));
    assert_eq!(w.extra.lock().unwrap().max[1], 1);
    w.fs.install_file(Path::new("/home/control/me"), b"sim.test\n", 0o644)
        .unwrap();
    w.fs.install_file(Path::new("/home/control/concurrencyremote"), b"3\n", 0o644)
        .unwrap();
    w.command(Command::Reload);
    w.command(Command::RetryNow);
    assert!(w.run_until(Duration::from_secs(60), |w| w.drained()));
    assert_eq!(w.calls().len(), 6);
    assert_eq!(w.extra.lock().unwrap().max[1], 3);
}

#[test]
fn sigterm_finishes_the_attempts_in_flight_and_starts_no_more() {
    let script: Script = Arc::new(|_, _| {
        (
            Outcome::Success("did 1+0+0\n".into()),
            Duration::from_secs(30),
        )
    });
    let mut c = control();
    c.concurrency_local = 2;
    let mut w = world(
        9,
        Duration::from_millis(100),
        c,
        vec![msg(
            "a@sim.test",
            &["u1@sim.test", "u2@sim.test", "u3@sim.test"],
            "m\n",
        )],
        script,
    );
    w.run_until(Duration::from_secs(5), |_| false);
    w.command(Command::Stop);
    // The scheduler returns once the two attempts in flight are done.
    assert!(w.run_until(Duration::from_secs(120), |w| w.calls().len() == 2));
    w.run_until(Duration::from_secs(120), |_| false);
    assert_eq!(w.calls().len(), 2, "nothing started after the stop");
    assert!(!w.sim.is_host_running("mta"), "the scheduler returned");
    // Both outcomes were recorded before it returned: a restart delivers
    // only the third recipient.
    let rt = rt();
    let queue = w.queue();
    let ids = rt.block_on(queue.list_active()).unwrap();
    let state = rt.block_on(queue.load(ids[0])).unwrap();
    let done: Vec<bool> = state.local.iter().map(|r| r.done).collect();
    assert_eq!(done, [true, true, false]);
}
