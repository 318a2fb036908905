//! The scheduler's policy as a synchronous state machine: events in,
//! actions out, no I/O, no clock of its own (qmail-send's decisions, in the
//! shape quinn-proto gives a connection).
//!
//! The driver ([`super::scheduler`]) feeds it what happened (a message taken
//! in, an attempt's recorded outcomes, a bounce or a removal finished, a
//! signal, the time) and performs what it asks for (start a delivery job,
//! inject a bounce, remove a message, write a log line). Everything that
//! decides *when* and *what* lives here, so the property tests at the end
//! run it without a runtime.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::{Index, IndexMut};

use super::control::SendControl;
use super::log;
use super::retry::{is_dying, next_retry};
use crate::deliver::Outcome;
use crate::queue::{Channel, MessageState, MsgId, Recipient};

/// The channels, in the order the scheduler serves them.
pub const CHANNELS: [Channel; 2] = [Channel::Local, Channel::Remote];

/// The most recipients one remote job (one SMTP transaction) carries. RFC
/// 5321 §4.5.3.1.8 asks servers to take at least 100.
pub const MAX_JOB_RECIPIENTS: usize = 100;

/// The most remote jobs (connections) to one domain at once, unless
/// `concurrencyremote` is lower.
pub const PER_DOMAIN_CONCURRENCY: usize = 10;

/// How soon a bounce or a removal that failed is tried again.
pub const IO_RETRY_SECS: u64 = 60;

// A job carries at least one recipient and a domain gets at least one
// connection, or mail would wait forever.
const _: () = assert!(MAX_JOB_RECIPIENTS >= 1 && PER_DOMAIN_CONCURRENCY >= 1);
// The per-domain default never exceeds what a channel may run at all.
const _: () = assert!(PER_DOMAIN_CONCURRENCY <= super::control::MAX_CONCURRENCY);

/// A time: seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Secs(pub u64);

impl Secs {
    pub fn plus(self, secs: u64) -> Secs {
        Secs(self.0.saturating_add(secs))
    }
}

/// One value per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerChannel<T>(pub [T; 2]);

impl<T> Index<Channel> for PerChannel<T> {
    type Output = T;
    fn index(&self, ch: Channel) -> &T {
        &self.0[slot(ch)]
    }
}

impl<T> IndexMut<Channel> for PerChannel<T> {
    fn index_mut(&mut self, ch: Channel) -> &mut T {
        &mut self.0[slot(ch)]
    }
}

fn slot(ch: Channel) -> usize {
    match ch {
        Channel::Local => 0,
        Channel::Remote => 1,
    }
}

/// One recipient of a message: its channel and its place in that
/// channel's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RcptId {
    pub channel: Channel,
    pub index: usize,
}

/// A job in flight, named by the delivery number of its first recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

/// The settings the planner decides by (from the control files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Jobs at once per channel (`concurrencylocal`, `concurrencyremote`).
    pub concurrency: PerChannel<usize>,
    /// Remote jobs at once to one domain.
    pub per_domain: usize,
    /// Recipients per remote job.
    pub batch: usize,
    /// `queuelifetime`, seconds.
    pub queuelifetime: u64,
    /// The planted bug `remove-pending`: remove a message once nothing is
    /// in flight, finished or not. Only the simulation sets it.
    pub remove_pending: bool,
}

impl Policy {
    pub fn from_control(control: &SendControl) -> Policy {
        Policy {
            concurrency: PerChannel([control.concurrency_local, control.concurrency_remote]),
            per_domain: PER_DOMAIN_CONCURRENCY.min(control.concurrency_remote),
            batch: MAX_JOB_RECIPIENTS,
            queuelifetime: control.queuelifetime,
            remove_pending: false,
        }
    }
}

/// How far a delivery task got in recording one recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The recipient is durably done (after its failure, if any, was
    /// durably recorded for the bounce).
    Done,
    /// Nothing to record (a deferral).
    Nothing,
    /// The failure is recorded for the bounce but the done mark failed.
    FailureOnly(String),
    /// Nothing could be recorded.
    Failed(String),
}

/// One recipient's part of a finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptResult {
    /// The outcome (a deferral past the queue lifetime already turned into
    /// a failure).
    pub outcome: Outcome,
    pub recorded: Recorded,
}

/// What happened, as the driver tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message found in `mess/` at start (taken in before a restart).
    Resumed(MessageState),
    /// Messages just taken in from `todo/`, in id order.
    TakenIn(Vec<MessageState>),
    /// A job's outcomes, made durable as far as `recorded` says, one per
    /// recipient in the job's order.
    Completed {
        job: JobId,
        results: Vec<RcptResult>,
    },
    /// A bounce finished: committed (with the log line to write, if any)
    /// and its failures forgotten, or not.
    Bounced {
        id: MsgId,
        result: Result<Option<String>, String>,
    },
    /// A removal finished.
    Removed {
        id: MsgId,
        result: Result<(), String>,
    },
    /// A fresh message's state was written down (the state as written,
    /// with its marks' offsets), or not.
    Persisted {
        id: MsgId,
        result: Result<MessageState, String>,
    },
    /// SIGALRM: every waiting recipient is due now.
    RetryNow,
    /// SIGTERM: start nothing new.
    Stop,
    /// New settings (SIGHUP).
    Policy(Policy),
    /// Time passed (the driver's timer for [`Planner::poll_timeout`]).
    Tick,
}

/// A delivery job to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartJob {
    pub job: JobId,
    pub id: MsgId,
    pub channel: Channel,
    pub sender: String,
    /// Each recipient's queue record and delivery number.
    pub recipients: Vec<(Recipient, u64)>,
    /// The message's length in bytes.
    pub len: u64,
    /// The attempt starts after the queue lifetime: a deferral is final.
    pub dying: bool,
    /// The message is fresh (still in `todo/`, no state files): outcomes
    /// are not marked in the queue, only reported.
    pub fresh: bool,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start(StartJob),
    /// Inject the bounce for the message's recorded failures, then forget
    /// them; report [`Event::Bounced`].
    Bounce {
        id: MsgId,
        sender: String,
        len: u64,
        /// The message is fresh (its file is in `todo/`).
        fresh: bool,
    },
    /// Remove the message (its one `todo/` name if it is fresh); report
    /// [`Event::Removed`].
    Remove {
        id: MsgId,
        fresh: bool,
        /// A fresh message's write-down was tried and failed: it may have
        /// state files and a name in `mess/` besides its `todo/` name.
        half_written: bool,
    },
    /// Write a fresh message's state down (state files, then the move into
    /// `mess/`); report [`Event::Persisted`].
    Persist {
        state: MessageState,
    },
    /// Write one of qmail-send's log lines.
    Log(String),
}

/// The planner's view of one message in `mess/`.
#[derive(Debug)]
struct Message {
    state: MessageState,
    /// When each channel is next tried, if it is waiting (mirrors
    /// [`Planner::due`]).
    due: PerChannel<Option<Secs>>,
    /// Jobs in flight per channel.
    in_flight: PerChannel<usize>,
    /// Recipients being delivered now.
    busy: BTreeSet<RcptId>,
    /// Recipients already tried in the current pass. A pass tries each
    /// waiting recipient once; those that defer wait for the next pass, at
    /// the next time on the retry schedule.
    tried: BTreeSet<RcptId>,
    /// When each channel's current pass started: the retry schedule counts
    /// from attempt starts, as qmail's does, so slow attempts do not push
    /// every later retry back.
    pass_start: PerChannel<Secs>,
    /// A bounce or removal in flight: no job starts meanwhile (a failure
    /// recorded during a bounce would be forgotten with the bounce file).
    io: Option<Io>,
    /// When a failed bounce or removal is tried again (mirrors
    /// [`Planner::io_retry`]).
    io_retry: Option<Secs>,
    /// A write-down of this fresh message was started: until one succeeds,
    /// the message may have state files and a `mess/` name as well.
    half_written: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    Bounce,
    Remove,
    Persist,
}

impl Message {
    fn new(state: MessageState) -> Message {
        Message {
            state,
            due: PerChannel::default(),
            in_flight: PerChannel::default(),
            busy: BTreeSet::new(),
            tried: BTreeSet::new(),
            pass_start: PerChannel::default(),
            io: None,
            io_retry: None,
            half_written: false,
        }
    }

    /// Recipients of `ch` still to try in this pass.
    fn waiting(&self, ch: Channel) -> impl Iterator<Item = usize> + '_ {
        self.state
            .recipients(ch)
            .iter()
            .enumerate()
            .filter(move |(index, r)| {
                !r.done
                    && !self.tried.contains(&RcptId {
                        channel: ch,
                        index: *index,
                    })
            })
            .map(|(i, _)| i)
    }

    /// Recipients of `ch` not done yet.
    fn pending(&self, ch: Channel) -> bool {
        self.state.recipients(ch).iter().any(|r| !r.done)
    }

    fn idle(&self) -> bool {
        self.in_flight == PerChannel([0, 0]) && self.io.is_none()
    }

    /// Some channel has recipients due by `now` (waiting for a free slot
    /// or about to start), as opposed to waiting on the retry schedule.
    fn due_by(&self, now: Secs) -> bool {
        CHANNELS
            .iter()
            .any(|&ch| self.due[ch].is_some_and(|t| t <= now))
    }

    fn any_done(&self) -> bool {
        self.state
            .local
            .iter()
            .chain(&self.state.remote)
            .any(|r| r.done)
    }
}

/// A job in flight.
#[derive(Debug)]
struct Job {
    id: MsgId,
    channel: Channel,
    /// The domain it counts against (remote jobs).
    domain: Option<String>,
    rcpts: Vec<(RcptId, u64)>,
}

/// The domain a remote recipient counts against: what follows the last
/// `@`, without regard to case.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .to_ascii_lowercase()
}

/// qmail-send's scheduling policy: passes, concurrency, retries, bounces
/// and removal.
#[derive(Debug)]
pub struct Planner {
    policy: Policy,
    messages: BTreeMap<MsgId, Message>,
    /// Per channel: (time, message) for every message waiting to be tried.
    due: PerChannel<BTreeSet<(Secs, MsgId)>>,
    /// Jobs in flight per channel.
    busy: PerChannel<usize>,
    /// Remote jobs in flight per domain (only domains with some).
    domains: BTreeMap<String, usize>,
    jobs: BTreeMap<JobId, Job>,
    /// Delivery numbers handed out so far.
    deliveries: u64,
    /// (time, message) for every failed bounce or removal to try again.
    io_retry: BTreeSet<(Secs, MsgId)>,
    stopping: bool,
    /// When the last event was handled: whatever was due then and did not
    /// start waits for an event (a slot or a domain freed, a bounce
    /// finished), not for the clock.
    last: Secs,
    actions: VecDeque<Action>,
}

impl Planner {
    pub fn new(policy: Policy) -> Planner {
        Planner {
            policy,
            messages: BTreeMap::new(),
            due: PerChannel::default(),
            busy: PerChannel::default(),
            domains: BTreeMap::new(),
            jobs: BTreeMap::new(),
            deliveries: 0,
            io_retry: BTreeSet::new(),
            stopping: false,
            last: Secs(0),
            actions: VecDeque::new(),
        }
    }

    /// The `status:` line as things stand.
    pub fn status(&self) -> String {
        log::status(
            self.busy[Channel::Local],
            self.policy.concurrency[Channel::Local],
            self.busy[Channel::Remote],
            self.policy.concurrency[Channel::Remote],
        )
    }

    /// Whether the planner holds `id`.
    pub fn knows(&self, id: MsgId) -> bool {
        self.messages.contains_key(&id)
    }

    /// The ids of every message the planner holds.
    pub fn known(&self) -> BTreeSet<MsgId> {
        self.messages.keys().copied().collect()
    }

    /// Jobs in flight on `ch`.
    pub fn busy(&self, ch: Channel) -> usize {
        self.busy[ch]
    }

    /// Stopping, and nothing in flight any more: the driver may return.
    pub fn stopped(&self) -> bool {
        self.stopping && self.jobs.is_empty() && self.messages.values().all(|m| m.io.is_none())
    }

    /// The next action to perform, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the planner next wants [`Event::Tick`]: the earliest time
    /// after the last event that a channel with a free slot has a message
    /// due, or a failed bounce or removal is to be tried again.
    pub fn poll_timeout(&self) -> Option<Secs> {
        if self.stopping {
            return None;
        }
        let after = (self.last, MsgId(u64::MAX));
        let mut wake: Option<Secs> = None;
        let mut at = |t: Secs| wake = Some(wake.map_or(t, |w| w.min(t)));
        for ch in CHANNELS {
            if self.busy[ch] < self.policy.concurrency[ch]
                && let Some(&(t, _)) = self.due[ch].range(after..).next()
            {
                at(t);
            }
        }
        if let Some(&(t, _)) = self.io_retry.range(after..).next() {
            at(t);
        }
        wake
    }

    /// Takes in one event at time `now`, then starts whatever is due.
    pub fn handle(&mut self, now: Secs, event: Event) {
        self.last = now;
        match event {
            Event::Resumed(state) => {
                let id = state.id;
                self.insert(state, now);
                self.after_attempts(id, now);
            }
            Event::TakenIn(states) => {
                for state in states {
                    let id = state.id;
                    // Taken in twice (found again while in flight): the
                    // state in hand is the one things ran on.
                    if self.knows(id) {
                        continue;
                    }
                    self.log(log::new_msg(id));
                    self.log(log::info_msg(
                        id,
                        state.header.len,
                        &state.sender,
                        state.header.qp,
                        state.header.uid,
                    ));
                    self.insert(state, now);
                    self.after_attempts(id, now);
                }
            }
            Event::Completed { job, results } => self.complete(job, results, now),
            Event::Bounced { id, result } => self.bounced(id, result, now),
            Event::Removed { id, result } => self.removed(id, result, now),
            Event::Persisted { id, result } => self.persisted(id, result, now),
            Event::RetryNow => {
                let ids: Vec<MsgId> = self.messages.keys().copied().collect();
                for id in ids {
                    self.schedule_waiting(id, now);
                }
                for (_, id) in std::mem::take(&mut self.io_retry) {
                    if let Some(m) = self.messages.get_mut(&id) {
                        m.io_retry = None;
                    }
                    self.after_attempts(id, now);
                }
            }
            Event::Stop => {
                self.stopping = true;
                // Fresh messages with done recipients are written down, so
                // a restart does not deliver to those again.
                let ids: Vec<MsgId> = self.messages.keys().copied().collect();
                for id in ids {
                    self.after_attempts(id, now);
                }
            }
            Event::Policy(policy) => self.policy = policy,
            Event::Tick => {}
        }
        if !self.stopping {
            let due: Vec<(Secs, MsgId)> = self
                .io_retry
                .range(..=(now, MsgId(u64::MAX)))
                .copied()
                .collect();
            for (t, id) in due {
                self.io_retry.remove(&(t, id));
                if let Some(m) = self.messages.get_mut(&id) {
                    m.io_retry = None;
                }
                self.after_attempts(id, now);
            }
        }
        if !self.stopping {
            self.dispatch(now);
        }
        if cfg!(debug_assertions) {
            self.check();
        }
    }

    fn log(&mut self, line: String) {
        self.actions.push_back(Action::Log(line));
    }

    fn insert(&mut self, state: MessageState, now: Secs) {
        let id = state.id;
        if self.messages.contains_key(&id) {
            // Taken in twice (a stranded message that made it after all):
            // the state in hand is the newer one only if nothing ran.
            return;
        }
        self.messages.insert(id, Message::new(state));
        self.schedule_waiting(id, now);
    }

    /// Puts each channel of a message that has recipients waiting (and
    /// nothing in flight) on the schedule at `at`.
    fn schedule_waiting(&mut self, id: MsgId, at: Secs) {
        for ch in CHANNELS {
            self.schedule(id, ch, at);
        }
    }

    fn schedule(&mut self, id: MsgId, ch: Channel, at: Secs) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        if m.in_flight[ch] > 0 || m.waiting(ch).next().is_none() {
            return;
        }
        // Already waiting (for a free slot, say): the earlier time stands.
        let at = m.due[ch].map_or(at, |old| old.min(at));
        if let Some(old) = m.due[ch].replace(at) {
            self.due[ch].remove(&(old, id));
        }
        self.due[ch].insert((at, id));
    }

    /// Starts every due job the concurrency limits allow, in order of due
    /// time. A message whose waiting recipients cannot all start (no free
    /// slot, or their domains are busy) stays at its place in the line.
    fn dispatch(&mut self, now: Secs) {
        for ch in CHANNELS {
            let candidates: Vec<(Secs, MsgId)> = self.due[ch]
                .range(..=(now, MsgId(u64::MAX)))
                .copied()
                .collect();
            for (t, id) in candidates {
                if self.busy[ch] >= self.policy.concurrency[ch] {
                    break;
                }
                if self.messages.get(&id).is_none_or(|m| m.io.is_some()) {
                    continue;
                }
                self.start_due(ch, id, now);
                let Some(m) = self.messages.get_mut(&id) else {
                    continue;
                };
                if m.waiting(ch).next().is_none() {
                    m.due[ch] = None;
                    self.due[ch].remove(&(t, id));
                }
            }
        }
    }

    /// Starts the jobs of one due message that the limits allow.
    fn start_due(&mut self, ch: Channel, id: MsgId, now: Secs) {
        let Some(m) = self.messages.get(&id) else {
            return;
        };
        let waiting: Vec<usize> = m.waiting(ch).collect();
        match ch {
            Channel::Local => {
                for index in waiting {
                    if self.busy[ch] >= self.policy.concurrency[ch] {
                        return;
                    }
                    self.start(id, ch, None, vec![index], now);
                }
            }
            Channel::Remote => {
                // One job per domain (case-insensitive), in the order the
                // domains first appear, at most `batch` recipients each.
                let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
                for index in waiting {
                    let domain = domain_of(&m.state.remote[index].address);
                    match groups.iter_mut().find(|(d, _)| *d == domain) {
                        Some((_, list)) => list.push(index),
                        None => groups.push((domain, vec![index])),
                    }
                }
                for (domain, list) in groups {
                    for chunk in list.chunks(self.policy.batch.max(1)) {
                        if self.busy[ch] >= self.policy.concurrency[ch] {
                            return;
                        }
                        if self.domains.get(&domain).copied().unwrap_or(0)
                            >= self.policy.per_domain.max(1)
                        {
                            break;
                        }
                        self.start(id, ch, Some(domain.clone()), chunk.to_vec(), now);
                    }
                }
            }
        }
    }

    fn start(
        &mut self,
        id: MsgId,
        ch: Channel,
        domain: Option<String>,
        indexes: Vec<usize>,
        now: Secs,
    ) {
        let lifetime = self.policy.queuelifetime;
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        if !m.tried.iter().any(|r| r.channel == ch) {
            m.pass_start[ch] = now;
        }
        let mut rcpts = Vec::with_capacity(indexes.len());
        let mut recipients = Vec::with_capacity(indexes.len());
        let mut lines = Vec::with_capacity(indexes.len());
        for index in indexes {
            self.deliveries += 1;
            let number = self.deliveries;
            let r = RcptId { channel: ch, index };
            m.tried.insert(r);
            m.busy.insert(r);
            let rcpt = m.state.recipients(ch)[index].clone();
            lines.push(log::starting(number, id, ch, &rcpt.address));
            rcpts.push((r, number));
            recipients.push((rcpt, number));
        }
        m.in_flight[ch] += 1;
        self.busy[ch] += 1;
        if let Some(d) = &domain {
            *self.domains.entry(d.clone()).or_default() += 1;
        }
        let job = JobId(rcpts[0].1);
        let start = StartJob {
            job,
            id,
            channel: ch,
            sender: m.state.sender.clone(),
            recipients,
            len: m.state.header.len,
            dying: is_dying(m.state.header.birth, now.0, lifetime),
            fresh: m.state.fresh,
        };
        self.jobs.insert(
            job,
            Job {
                id,
                channel: ch,
                domain,
                rcpts,
            },
        );
        for line in lines {
            self.log(line);
        }
        self.log(self.status());
        self.actions.push_back(Action::Start(start));
    }

    /// Takes in a job's (already durable) outcomes and decides what
    /// follows.
    fn complete(&mut self, job: JobId, results: Vec<RcptResult>, now: Secs) {
        let Some(Job {
            id,
            channel: ch,
            domain,
            rcpts,
        }) = self.jobs.remove(&job)
        else {
            return;
        };
        self.busy[ch] -= 1;
        if let Some(d) = domain
            && let Some(n) = self.domains.get_mut(&d)
        {
            *n -= 1;
            if *n == 0 {
                self.domains.remove(&d);
            }
        }
        let mut lines = Vec::new();
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        m.in_flight[ch] -= 1;
        let mut results = results.into_iter();
        for (r, number) in rcpts {
            m.busy.remove(&r);
            // An agent that reported nothing for a recipient deferred it.
            let RcptResult { outcome, recorded } = results.next().unwrap_or(RcptResult {
                outcome: Outcome::Deferral("Delivery agent reported nothing. (#4.3.0)\n".into()),
                recorded: Recorded::Nothing,
            });
            let (kind, text) = match &outcome {
                Outcome::Success(t) => ("success", t),
                Outcome::Failure(t) => ("failure", t),
                Outcome::Deferral(t) => ("deferral", t),
            };
            lines.push(log::delivery(number, kind, text));
            match recorded {
                Recorded::Done => {
                    if matches!(outcome, Outcome::Failure(_)) {
                        m.state.bounce_pending = true;
                    }
                    let list = match ch {
                        Channel::Local => &mut m.state.local,
                        Channel::Remote => &mut m.state.remote,
                    };
                    if let Some(rcpt) = list.get_mut(r.index) {
                        rcpt.done = true;
                    }
                }
                Recorded::Nothing => {}
                // Not done: the recipient is tried again on the schedule (a
                // possible duplicate, never a loss).
                Recorded::FailureOnly(e) => {
                    m.state.bounce_pending = true;
                    tracing::warn!("unable to record delivery {number} of msg {id}: {e}");
                }
                Recorded::Failed(e) => {
                    tracing::warn!("unable to record delivery {number} of msg {id}: {e}");
                }
            }
        }
        // The pass is over when nothing is in flight and nothing is left to
        // try; whatever is still pending deferred, and waits for the next
        // time on the schedule.
        let pass_over = m.in_flight[ch] == 0 && m.waiting(ch).next().is_none();
        let reschedule = (pass_over && m.pending(ch))
            .then(|| Secs(next_retry(m.state.header.birth, m.pass_start[ch].0, ch)).max(now));
        if pass_over {
            m.tried.retain(|r| r.channel != ch);
        }
        for line in lines {
            self.log(line);
        }
        self.log(self.status());
        if let Some(at) = reschedule {
            self.schedule(id, ch, at);
        }
        self.after_attempts(id, now);
    }

    /// When nothing of a message is in flight: send its bounce, remove it
    /// if nothing is left to do, or write a fresh message's state down once
    /// it waits on the retry schedule (or the scheduler stops).
    fn after_attempts(&mut self, id: MsgId, now: Secs) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        if !m.idle() || m.io_retry.is_some() {
            return;
        }
        if m.state.bounce_pending {
            m.io = Some(Io::Bounce);
            let (sender, len) = (m.state.sender.clone(), m.state.header.len);
            let fresh = m.state.fresh;
            self.actions.push_back(Action::Bounce {
                id,
                sender,
                len,
                fresh,
            });
            return;
        }
        // The state says finished only once every done mark (in memory for
        // a fresh message, whose whole delivery a crash repeats) and the
        // bounce are durable, so it needs no second look at the disk.
        if m.state.finished() || self.policy.remove_pending {
            m.io = Some(Io::Remove);
            let (fresh, half_written) = (m.state.fresh, m.half_written);
            self.actions.push_back(Action::Remove {
                id,
                fresh,
                half_written,
            });
            return;
        }
        let persist = m.state.fresh
            && if self.stopping {
                m.any_done()
            } else {
                !m.due_by(now)
            };
        if persist {
            m.io = Some(Io::Persist);
            m.half_written = true;
            let state = m.state.clone();
            self.actions.push_back(Action::Persist { state });
        }
    }

    fn persisted(&mut self, id: MsgId, result: Result<MessageState, String>, now: Secs) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        m.io = None;
        match result {
            // Nothing ran meanwhile (no job starts beside I/O), so the state
            // as written is the state in hand, with its marks' offsets.
            Ok(state) => m.state = state,
            Err(e) => {
                tracing::warn!("unable to write down msg {id}, will try later: {e}");
                self.retry_io(id, now);
            }
        }
    }

    fn bounced(&mut self, id: MsgId, result: Result<Option<String>, String>, now: Secs) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        m.io = None;
        match result {
            Ok(line) => {
                m.state.bounce_pending = false;
                if let Some(line) = line {
                    self.log(line);
                }
                self.after_attempts(id, now);
            }
            Err(e) => {
                tracing::warn!(
                    "trouble injecting bounce message for msg {id}, will try later: {e}"
                );
                self.retry_io(id, now);
            }
        }
    }

    fn removed(&mut self, id: MsgId, result: Result<(), String>, now: Secs) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        m.io = None;
        match result {
            Ok(()) => {
                self.log(log::end_msg(id));
                self.forget(id);
            }
            Err(e) => {
                tracing::warn!("unable to remove msg {id}, will try later: {e}");
                self.retry_io(id, now);
            }
        }
    }

    fn retry_io(&mut self, id: MsgId, now: Secs) {
        let at = now.plus(IO_RETRY_SECS);
        if let Some(m) = self.messages.get_mut(&id) {
            if let Some(old) = m.io_retry.replace(at) {
                self.io_retry.remove(&(old, id));
            }
            self.io_retry.insert((at, id));
        }
    }

    fn forget(&mut self, id: MsgId) {
        if let Some(m) = self.messages.remove(&id) {
            for ch in CHANNELS {
                if let Some(t) = m.due[ch] {
                    self.due[ch].remove(&(t, id));
                }
            }
            if let Some(t) = m.io_retry {
                self.io_retry.remove(&(t, id));
            }
        }
    }

    /// Checks the planner's bookkeeping: every index agrees with the
    /// messages it indexes. Run after every event in debug builds; panics
    /// on the first disagreement.
    pub fn check(&self) {
        let mut busy = PerChannel([0usize; 2]);
        let mut domains: BTreeMap<&str, usize> = BTreeMap::new();
        let mut in_flight: BTreeMap<(MsgId, usize), usize> = BTreeMap::new();
        let mut busy_rcpts: BTreeSet<(MsgId, RcptId)> = BTreeSet::new();
        for (jid, job) in &self.jobs {
            busy[job.channel] += 1;
            if let Some(d) = &job.domain {
                *domains.entry(d).or_default() += 1;
            }
            *in_flight.entry((job.id, slot(job.channel))).or_default() += 1;
            assert_eq!(
                *jid,
                JobId(job.rcpts[0].1),
                "job named by its first delivery"
            );
            assert!(
                job.rcpts.len() <= self.policy.batch.max(1),
                "job over the batch size"
            );
            let m = self.messages.get(&job.id).expect("job of a known message");
            assert!(
                m.io.is_none(),
                "a job beside a bounce or removal of {}",
                job.id
            );
            for (r, number) in &job.rcpts {
                assert_eq!(r.channel, job.channel);
                assert!(*number <= self.deliveries);
                assert!(busy_rcpts.insert((job.id, *r)), "recipient in two jobs");
                assert!(m.tried.contains(r), "busy recipient not tried");
            }
        }
        assert_eq!(busy, self.busy, "jobs in flight per channel");
        let counted: BTreeMap<&str, usize> =
            self.domains.iter().map(|(d, n)| (d.as_str(), *n)).collect();
        assert_eq!(domains, counted, "jobs in flight per domain");
        for ch in CHANNELS {
            for &(t, id) in &self.due[ch] {
                let m = self.messages.get(&id).expect("due message known");
                assert_eq!(m.due[ch], Some(t), "due index of {id}");
            }
        }
        for &(t, id) in &self.io_retry {
            let m = self.messages.get(&id).expect("retried message known");
            assert_eq!(m.io_retry, Some(t), "retry index of {id}");
        }
        for (id, m) in &self.messages {
            assert_eq!(m.state.id, *id);
            for ch in CHANNELS {
                assert_eq!(
                    m.in_flight[ch],
                    in_flight.get(&(*id, slot(ch))).copied().unwrap_or(0),
                    "jobs in flight of {id}"
                );
                if let Some(t) = m.due[ch] {
                    assert!(self.due[ch].contains(&(t, *id)), "due index of {id}");
                }
            }
            for r in &m.busy {
                assert!(
                    busy_rcpts.contains(&(*id, *r)),
                    "busy recipient without a job"
                );
            }
            for r in &m.tried {
                let rcpt = m.state.recipients(r.channel).get(r.index);
                assert!(rcpt.is_some(), "tried recipient out of range");
            }
            if let Some(t) = m.io_retry {
                assert!(self.io_retry.contains(&(t, *id)));
                assert!(m.io.is_none(), "retry pending beside I/O in flight");
            }
        }
        assert_eq!(
            busy_rcpts.len(),
            self.messages.values().map(|m| m.busy.len()).sum::<usize>()
        );
    }
}

#[cfg(test)]
mod tests;
