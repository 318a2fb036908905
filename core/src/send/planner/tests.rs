//! The planner's policy, checked without a runtime: a harness plays the
//! driver (completes jobs with scripted outcomes, answers bounces and
//! removals, moves the clock to the planner's timeout) and watches every
//! action.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::queue::{MessageHeader, Recipient};
use crate::send::retry::{lifetime_schedule, next_retry};

const BIRTH: u64 = 1_000_000;

fn rcpt(address: &str) -> Recipient {
    Recipient {
        address: address.to_string(),
        done: false,
        offset: 0,
    }
}

fn message(id: u64, birth: u64, local: &[String], remote: &[String]) -> MessageState {
    MessageState {
        id: MsgId(id),
        header: MessageHeader {
            len: 100,
            birth,
            uid: 1,
            qp: 2,
        },
        sender: "alice@example.org".into(),
        local: local.iter().map(|a| rcpt(a)).collect(),
        remote: remote.iter().map(|a| rcpt(a)).collect(),
        bounce_pending: false,
        fresh: true,
    }
}

fn policy(local: usize, remote: usize, per_domain: usize, batch: usize) -> Policy {
    Policy {
        concurrency: PerChannel([local, remote]),
        per_domain,
        batch,
        queuelifetime: 604_800,
        remove_pending: false,
    }
}

/// Everything the planner asked for, sorted by kind.
#[derive(Default)]
struct Asked {
    starts: Vec<StartJob>,
    bounces: Vec<MsgId>,
    removes: Vec<MsgId>,
    persists: Vec<MessageState>,
    logs: Vec<String>,
}

fn drain(p: &mut Planner) -> Asked {
    let mut a = Asked::default();
    while let Some(action) = p.poll_action() {
        match action {
            Action::Start(s) => a.starts.push(s),
            Action::Bounce { id, .. } => a.bounces.push(id),
            Action::Remove { id, .. } => a.removes.push(id),
            Action::Persist { state } => a.persists.push(state),
            Action::Log(l) => a.logs.push(l),
        }
    }
    a
}

fn results(job: &StartJob, outcome: impl Fn(&str) -> Outcome) -> Vec<RcptResult> {
    job.recipients
        .iter()
        .map(|(r, _)| {
            let outcome = outcome(&r.address);
            let recorded = match outcome {
                Outcome::Deferral(_) => Recorded::Nothing,
                _ => Recorded::Done,
            };
            RcptResult { outcome, recorded }
        })
        .collect()
}

fn defer(_: &str) -> Outcome {
    Outcome::Deferral("later\n".into())
}

fn success(_: &str) -> Outcome {
    Outcome::Success("ok\n".into())
}

/// Plays the driver for every write-down asked for: each succeeds.
fn written_down(p: &mut Planner, a: &Asked, now: u64) {
    for state in &a.persists {
        let state = MessageState {
            fresh: false,
            ..state.clone()
        };
        let id = state.id;
        p.handle(
            Secs(now),
            Event::Persisted {
                id,
                result: Ok(state),
            },
        );
    }
}

#[test]
fn a_fresh_message_delivered_at_once_is_removed_without_being_written_down() {
    let mut p = Planner::new(policy(10, 20, 10, 100));
    let local = ["u@here".to_string()];
    p.handle(
        Secs(BIRTH),
        Event::TakenIn(vec![message(1, BIRTH, &local, &[])]),
    );
    let a = drain(&mut p);
    assert!(a.persists.is_empty(), "written down before any attempt");
    let s = &a.starts[0];
    assert!(s.fresh);
    p.handle(
        Secs(BIRTH),
        Event::Completed {
            job: s.job,
            results: results(s, success),
        },
    );
    let mut removes = Vec::new();
    while let Some(action) = p.poll_action() {
        match action {
            Action::Remove { id, fresh, .. } => removes.push((id, fresh)),
            Action::Persist { .. } => panic!("a finished message written down"),
            _ => {}
        }
    }
    assert_eq!(removes, [(MsgId(1), true)]);
}

#[test]
fn a_fresh_message_is_written_down_with_its_marks_once_it_waits_for_a_retry() {
    // Two recipients: one delivered, one deferred. Nothing is written
    // while the attempts run; then the state goes down with the first
    // marked done, and later attempts are no longer fresh.
    let mut p = Planner::new(policy(10, 20, 10, 100));
    let local = ["a@here".to_string(), "b@here".to_string()];
    p.handle(
        Secs(BIRTH),
        Event::TakenIn(vec![message(1, BIRTH, &local, &[])]),
    );
    let a = drain(&mut p);
    assert_eq!(a.starts.len(), 2);
    p.handle(
        Secs(BIRTH),
        Event::Completed {
            job: a.starts[0].job,
            results: results(&a.starts[0], success),
        },
    );
    assert!(drain(&mut p).persists.is_empty(), "written down in flight");
    p.handle(
        Secs(BIRTH),
        Event::Completed {
            job: a.starts[1].job,
            results: results(&a.starts[1], defer),
        },
    );
    let b = drain(&mut p);
    assert_eq!(b.persists.len(), 1);
    let marks: Vec<(&str, bool)> = b.persists[0]
        .local
        .iter()
        .map(|r| (r.address.as_str(), r.done))
        .collect();
    assert_eq!(marks, [("a@here", true), ("b@here", false)]);
    written_down(&mut p, &b, BIRTH);
    let t = p.poll_timeout().expect("a retry");
    p.handle(t, Event::Tick);
    let c = drain(&mut p);
    assert_eq!(c.starts.len(), 1);
    assert!(!c.starts[0].fresh);
    assert_eq!(c.starts[0].recipients[0].0.address, "b@here");
}

#[test]
fn a_fresh_message_waiting_for_a_free_slot_is_not_written_down() {
    let mut p = Planner::new(policy(1, 20, 10, 100));
    let msgs = vec![
        message(1, BIRTH, &["a@here".to_string()], &[]),
        message(2, BIRTH, &["b@here".to_string()], &[]),
    ];
    p.handle(Secs(BIRTH), Event::TakenIn(msgs));
    let a = drain(&mut p);
    assert_eq!(a.starts.len(), 1);
    assert!(
        a.persists.is_empty(),
        "a message waiting for a slot written down"
    );
}

#[test]
fn stopping_writes_down_fresh_messages_with_done_recipients() {
    let mut p = Planner::new(policy(1, 20, 10, 100));
    let local = ["a@here".to_string(), "b@here".to_string()];
    p.handle(
        Secs(BIRTH),
        Event::TakenIn(vec![
            message(1, BIRTH, &local, &[]),
            message(2, BIRTH, &["c@here".to_string()], &[]),
        ]),
    );
    let a = drain(&mut p);
    assert_eq!(a.starts.len(), 1);
    p.handle(
        Secs(BIRTH),
        Event::Completed {
            job: a.starts[0].job,
            results: results(&a.starts[0], success),
        },
    );
    let b = drain(&mut p);
    assert_eq!(b.starts.len(), 1, "the second recipient starts");
    p.handle(Secs(BIRTH), Event::Stop);
    assert!(drain(&mut p).persists.is_empty(), "written down in flight");
    p.handle(
        Secs(BIRTH),
        Event::Completed {
            job: b.starts[0].job,
            results: results(&b.starts[0], defer),
        },
    );
    let c = drain(&mut p);
    // Message 1 had a delivery: written down. Message 2 had none: it
    // stays in todo/ as it came.
    assert_eq!(c.persists.iter().map(|s| s.id.0).collect::<Vec<_>>(), [1]);
    assert!(!p.stopped());
    written_down(&mut p, &c, BIRTH);
    assert!(p.stopped());
}

#[test]
fn remote_recipients_are_grouped_by_domain_without_regard_to_case() {
    let mut p = Planner::new(policy(10, 20, 10, 100));
    let remote: Vec<String> = [
        "a@x.test", "b@y.test", "c@X.TEST", "d@x.Test", "e@y.test", "f@z.test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    p.handle(
        Secs(BIRTH),
        Event::TakenIn(vec![message(1, BIRTH, &[], &remote)]),
    );
    let a = drain(&mut p);
    let jobs: Vec<Vec<&str>> = a
        .starts
        .iter()
        .map(|s| {
            s.recipients
                .iter()
                .map(|(r, _)| r.address.as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        jobs,
        [
            vec!["a@x.test", "c@X.TEST", "d@x.Test"],
            vec!["b@y.test", "e@y.test"],
            vec!["f@z.test"],
        ]
    );
    // One `starting delivery` line per recipient, numbered 1..=6 in job
    // order, each job followed by a status line counting jobs.
    let numbers: Vec<u64> = a
        .starts
        .iter()
        .flat_map(|s| s.recipients.iter().map(|r| r.1))
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        a.logs,
        [
            "new msg 1",
            "info msg 1: bytes 100 from <alice@example.org> qp 2 uid 1",
            "starting delivery 1: msg 1 to remote a@x.test",
            "starting delivery 2: msg 1 to remote c@X.TEST",
            "starting delivery 3: msg 1 to remote d@x.Test",
            "status: local 0/10 remote 1/20",
            "starting delivery 4: msg 1 to remote b@y.test",
            "starting delivery 5: msg 1 to remote e@y.test",
            "status: local 0/10 remote 2/20",
            "starting delivery 6: msg 1 to remote f@z.test",
            "status: local 0/10 remote 3/20",
        ]
    );
    assert_eq!(p.busy(Channel::Remote), 3);
}

#[test]
fn a_big_domain_is_split_into_jobs_of_at_most_the_batch_size() {
    let mut p = Planner::new(policy(10, 20, 10, 100));
    let remote: Vec<String> = (0..250).map(|i| format!("u{i}@big.test")).collect();
    p.handle(
        Secs(BIRTH),
        Event::TakenIn(vec![message(1, BIRTH, &[], &remote)]),
    );
    let sizes: Vec<usize> = drain(&mut p)
        .starts
        .iter()
        .map(|s| s.recipients.len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[test]
fn per_domain_concurrency_leaves_room_for_other_domains() {
    let mut p = Planner::new(policy(10, 20, 3, 100));
    let mut msgs: Vec<MessageState> = (1..=6)
        .map(|i| message(i, BIRTH, &[], &[format!("u{i}@busy.test")]))
        .collect();
    msgs.push(message(7, BIRTH, &[], &["v@quiet.test".into()]));
    p.handle(Secs(BIRTH), Event::TakenIn(msgs));
    let a = drain(&mut p);
    let ids: Vec<u64> = a.starts.iter().map(|s| s.id.0).collect();
    assert_eq!(ids, [1, 2, 3, 7]);
    // Nothing to wait for on the clock: only a finished job frees the
    // domain.
    assert_eq!(p.poll_timeout(), None);
    let first = a.starts[0].clone();
    let job = first.job;
    p.handle(
        Secs(BIRTH + 5),
        Event::Completed {
            job,
            results: results(&first, |_| Outcome::Success("ok\n".into())),
        },
    );
    let b = drain(&mut p);
    assert_eq!(b.starts.iter().map(|s| s.id.0).collect::<Vec<_>>(), [4]);
}

#[test]
fn a_pass_tries_each_waiting_recipient_once_then_waits_for_the_schedule() {
    // One slot, five recipients that always defer: the pass starts each of
    // them once, one after the other; the next pass waits for the
    // schedule, counted from the pass's start.
    let mut p = Planner::new(policy(1, 20, 10, 100));
    let local: Vec<String> = (0..5).map(|i| format!("u{i}@here")).collect();
    p.handle(
        Secs(BIRTH),
        Event::TakenIn(vec![message(1, BIRTH, &local, &[])]),
    );
    let mut now = BIRTH;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let a = drain(&mut p);
        assert_eq!(a.starts.len(), 1);
        let s = &a.starts[0];
        seen.push(s.recipients[0].0.address.clone());
        now += 7;
        p.handle(
            Secs(now),
            Event::Completed {
                job: s.job,
                results: results(s, defer),
            },
        );
    }
    assert_eq!(seen, local);
    assert!(drain(&mut p).starts.is_empty());
    assert_eq!(
        p.poll_timeout(),
        Some(Secs(next_retry(BIRTH, BIRTH, Channel::Local)))
    );
}

#[test]
fn an_always_deferring_recipient_follows_qmails_schedule_and_bounces() {
    for (ch, local, remote) in [
        (Channel::Local, vec!["u@here".to_string()], vec![]),
        (Channel::Remote, vec![], vec!["u@far.test".to_string()]),
    ] {
        let mut p = Planner::new(policy(10, 20, 10, 100));
        p.handle(
            Secs(BIRTH),
            Event::TakenIn(vec![message(1, BIRTH, &local, &remote)]),
        );
        let mut times = Vec::new();
        let mut now = BIRTH;
        loop {
            let a = drain(&mut p);
            let s = &a.starts[0];
            times.push(now - BIRTH);
            assert_eq!(s.dying, now >= BIRTH + 604_800, "at {now}");
            // The driver turns the dying attempt's deferral into a failure.
            let outcome = |_: &str| {
                if s.dying {
                    Outcome::Failure("too long\n".into())
                } else {
                    defer("")
                }
            };
            p.handle(
                Secs(now),
                Event::Completed {
                    job: s.job,
                    results: results(s, outcome),
                },
            );
            let b = drain(&mut p);
            assert!(b.starts.is_empty());
            written_down(&mut p, &b, now);
            if let Some(&id) = b.bounces.first() {
                p.handle(
                    Secs(now),
                    Event::Bounced {
                        id,
                        result: Ok(None),
                    },
                );
                assert_eq!(drain(&mut p).removes, [id]);
                break;
            }
            let t = p.poll_timeout().expect("a retry on the schedule");
            now = t.0;
            p.handle(t, Event::Tick);
        }
        assert_eq!(times, lifetime_schedule(ch, 604_800), "{ch:?}");
    }
}

/// A small deterministic generator for the harness's choices.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What the harness knows of one recipient.
#[derive(Default, Clone)]
struct Track {
    done: bool,
    busy: bool,
}

/// What the harness knows of one (message, channel) pass.
#[derive(Default, Clone)]
struct Pass {
    /// When the current pass started, and whom it tried.
    start: Option<u64>,
    tried: BTreeSet<String>,
    /// A pass ended with recipients pending: no start before this.
    not_before: u64,
}

struct Harness {
    p: Planner,
    policy: Policy,
    dice: Dice,
    now: u64,
    births: BTreeMap<MsgId, u64>,
    rcpts: BTreeMap<(MsgId, String), Track>,
    passes: BTreeMap<(MsgId, Channel), Pass>,
    jobs: Vec<StartJob>,
    io: Vec<Action>,
    removed: BTreeSet<MsgId>,
    /// Messages whose write-down was asked for (and maybe failed).
    write_downs: BTreeSet<MsgId>,
    next_id: u64,
}

impl Harness {
    fn new(policy: Policy, seed: u64) -> Harness {
        Harness {
            p: Planner::new(policy.clone()),
            policy,
            dice: Dice(seed | 1),
            now: BIRTH,
            births: BTreeMap::new(),
            rcpts: BTreeMap::new(),
            passes: BTreeMap::new(),
            jobs: Vec::new(),
            io: Vec::new(),
            removed: BTreeSet::new(),
            write_downs: BTreeSet::new(),
            next_id: 1,
        }
    }

    fn inject(&mut self, shapes: &[(u8, u8)]) {
        const DOMAINS: [&str; 5] = ["a.test", "A.TEST", "b.test", "c.test", "d.test"];
        let mut states = Vec::new();
        for &(nl, nr) in shapes {
            let id = self.next_id;
            self.next_id += 1;
            let local: Vec<String> = (0..nl).map(|i| format!("l{i}@here")).collect();
            let remote: Vec<String> = (0..nr)
                .map(|i| format!("r{i}@{}", DOMAINS[self.dice.roll(5) as usize]))
                .collect();
            for a in local.iter().chain(&remote) {
                self.rcpts.insert((MsgId(id), a.clone()), Track::default());
            }
            self.births.insert(MsgId(id), self.now);
            states.push(message(id, self.now, &local, &remote));
        }
        self.event(Event::TakenIn(states));
    }

    fn event(&mut self, e: Event) {
        self.p.handle(Secs(self.now), e);
        self.observe();
    }

    /// Takes the planner's actions and checks each against the policy.
    fn observe(&mut self) {
        while let Some(action) = self.p.poll_action() {
            match action {
                Action::Start(s) => self.started(s),
                Action::Log(_) => {}
                other => self.io.push(other),
            }
        }
        for ch in CHANNELS {
            let n = self.jobs.iter().filter(|j| j.channel == ch).count();
            assert!(n <= self.policy.concurrency[ch], "{ch:?}: {n} jobs at once");
            assert_eq!(n, self.p.busy(ch));
        }
        let mut per_domain: BTreeMap<String, usize> = BTreeMap::new();
        for j in self.jobs.iter().filter(|j| j.channel == Channel::Remote) {
            *per_domain
                .entry(domain_of(&j.recipients[0].0.address))
                .or_default() += 1;
        }
        for (d, n) in per_domain {
            assert!(n <= self.policy.per_domain, "{d}: {n} jobs at once");
        }
    }

    fn started(&mut self, s: StartJob) {
        let birth = self.births[&s.id];
        assert!(s.recipients.len() <= self.policy.batch);
        assert_eq!(s.dying, self.now >= birth + self.policy.queuelifetime);
        let pass = self.passes.entry((s.id, s.channel)).or_default();
        assert!(
            self.now >= pass.not_before,
            "msg {} {:?} started at {} before its retry time {}",
            s.id,
            s.channel,
            self.now,
            pass.not_before
        );
        pass.start.get_or_insert(self.now);
        let domain = domain_of(&s.recipients[0].0.address);
        for (r, _) in &s.recipients {
            if s.channel == Channel::Remote {
                assert_eq!(domain_of(&r.address), domain, "one domain per job");
            }
            assert!(
                pass.tried.insert(r.address.clone()),
                "{} tried twice in one pass",
                r.address
            );
            let t = self
                .rcpts
                .get_mut(&(s.id, r.address.clone()))
                .expect("a known recipient");
            assert!(!t.done, "{} started after it was done", r.address);
            assert!(!t.busy, "{} started while in flight", r.address);
            t.busy = true;
        }
        self.jobs.push(s);
    }

    /// Finishes job `k` with outcomes from the dice (or all successes).
    fn complete(&mut self, k: usize, kind: Option<u64>) {
        let s = self.jobs.swap_remove(k);
        let mut results = Vec::new();
        for (r, _) in &s.recipients {
            let (outcome, recorded) = match kind.unwrap_or_else(|| self.dice.roll(6)) {
                0 | 1 => (Outcome::Success("ok\n".into()), Recorded::Done),
                2 => (Outcome::Failure("no\n".into()), Recorded::Done),
                3 => (
                    Outcome::Failure("no\n".into()),
                    Recorded::FailureOnly("EIO".into()),
                ),
                4 if !s.dying => (defer(""), Recorded::Nothing),
                4 => (Outcome::Failure("too long\n".into()), Recorded::Done),
                _ => (
                    Outcome::Success("ok\n".into()),
                    Recorded::Failed("EIO".into()),
                ),
            };
            let t = self
                .rcpts
                .get_mut(&(s.id, r.address.clone()))
                .expect("known");
            t.busy = false;
            t.done = recorded == Recorded::Done;
            results.push(RcptResult { outcome, recorded });
        }
        let (id, ch, job) = (s.id, s.channel, s.job);
        // The planner may start the next pass at once (a late retry): the
        // harness closes its view of this pass before it looks.
        self.p
            .handle(Secs(self.now), Event::Completed { job, results });
        // The harness's own view of the pass: over when nothing of the
        // channel is in flight and every pending recipient was tried.
        let in_flight = self.jobs.iter().any(|j| j.id == id && j.channel == ch);
        let pending: Vec<String> = self
            .rcpts
            .iter()
            .filter(|((m, a), t)| *m == id && !t.done && self.channel_of(id, a) == Some(ch))
            .map(|((_, a), _)| a.clone())
            .collect();
        let pass = self.passes.entry((id, ch)).or_default();
        if !in_flight && pending.iter().all(|a| pass.tried.contains(a)) {
            if let Some(start) = pass.start.take()
                && !pending.is_empty()
            {
                pass.not_before = next_retry(self.births[&id], start, ch).max(self.now);
            }
            pass.tried.clear();
        }
        self.observe();
    }

    fn channel_of(&self, id: MsgId, address: &str) -> Option<Channel> {
        if !self.rcpts.contains_key(&(id, address.to_string())) {
            return None;
        }
        Some(if address.ends_with("@here") {
            Channel::Local
        } else {
            Channel::Remote
        })
    }

    /// Answers the oldest bounce or removal, failing it now and then.
    fn answer_io(&mut self, fail: bool) {
        if self.io.is_empty() {
            return;
        }
        match self.io.remove(0) {
            Action::Bounce { id, .. } => {
                let result = if fail { Err("EIO".into()) } else { Ok(None) };
                self.event(Event::Bounced { id, result });
            }
            Action::Persist { state } => {
                let id = state.id;
                self.write_downs.insert(id);
                assert!(state.fresh, "msg {id} written down twice");
                assert!(
                    !self.jobs.iter().any(|j| j.id == id),
                    "msg {id} written down in flight"
                );
                for r in state.local.iter().chain(&state.remote) {
                    let t = &self.rcpts[&(id, r.address.clone())];
                    assert_eq!(
                        r.done, t.done,
                        "{} written down with the wrong mark",
                        r.address
                    );
                }
                let result = if fail {
                    Err("EIO".into())
                } else {
                    Ok(MessageState {
                        fresh: false,
                        ..state
                    })
                };
                self.event(Event::Persisted { id, result });
            }
            Action::Remove {
                id,
                fresh,
                half_written,
            } => {
                if fresh {
                    assert_eq!(
                        half_written,
                        self.write_downs.contains(&id),
                        "msg {id}: a failed write-down's other names left behind"
                    );
                }
                assert!(
                    self.rcpts
                        .iter()
                        .filter(|((m, _), _)| *m == id)
                        .all(|(_, t)| t.done),
                    "msg {id} removed with recipients pending"
                );
                assert!(
                    !self.jobs.iter().any(|j| j.id == id),
                    "msg {id} removed in flight"
                );
                if fail {
                    self.event(Event::Removed {
                        id,
                        result: Err("EIO".into()),
                    });
                } else {
                    self.removed.insert(id);
                    self.event(Event::Removed { id, result: Ok(()) });
                }
            }
            _ => unreachable!(),
        }
    }

    /// Moves the clock to the planner's next timeout (or a little).
    fn tick(&mut self) {
        let to = match self.p.poll_timeout() {
            Some(t) if t.0 > self.now => t.0,
            _ => self.now + 1 + self.dice.roll(30),
        };
        self.now = to;
        self.event(Event::Tick);
    }

    fn step(&mut self) {
        match self.dice.roll(20) {
            0..=8 if !self.jobs.is_empty() => {
                let k = self.dice.roll(self.jobs.len() as u64) as usize;
                self.complete(k, None);
            }
            9..=11 => {
                let fail = self.dice.roll(4) == 0;
                self.answer_io(fail);
            }
            12 => {
                // SIGALRM voids the schedule's waits.
                for pass in self.passes.values_mut() {
                    pass.not_before = 0;
                }
                self.event(Event::RetryNow);
            }
            13 => {
                let shapes = [(self.dice.roll(4) as u8, self.dice.roll(6) as u8)];
                self.inject(&shapes);
            }
            14 => self.now += self.dice.roll(600),
            _ => self.tick(),
        }
    }

    /// Lets everything finish: every attempt succeeds, every bounce and
    /// removal works, the clock follows the planner.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if !self.jobs.is_empty() {
                self.complete(0, Some(0));
            } else if !self.io.is_empty() {
                self.answer_io(false);
            } else if self.p.poll_timeout().is_some() {
                self.tick();
            } else {
                break;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_policy_holds_under_any_order_of_events(
        seed in any::<u64>(),
        local in 1usize..4,
        remote in 1usize..6,
        per_domain in 1usize..3,
        batch in 1usize..4,
        shapes in proptest::collection::vec((0u8..4, 0u8..7), 1..8),
        steps in 50usize..400,
    ) {
        let policy = policy(local, remote, per_domain, batch);
        let mut h = Harness::new(policy, seed);
        h.inject(&shapes);
        for _ in 0..steps {
            h.step();
        }
        h.settle();
        // Everything ends: every message taken in is removed.
        let all: BTreeSet<MsgId> = h.births.keys().copied().collect();
        prop_assert_eq!(&h.removed, &all);
        prop_assert!(h.p.poll_timeout().is_none());
    }
}
