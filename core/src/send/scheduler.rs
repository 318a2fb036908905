//! The scheduler's event loop: intake, dispatch under the concurrency
//! limits, checkpoints after every attempt, retries, bounces and removal.
//!
//! One task owns all scheduling state; deliveries run as tasks of their own
//! and report back on a channel, so the state needs no locks. Every decision
//! that must survive a crash is written to the queue before the scheduler
//! acts on it: a recipient is marked done only after its delivery (or the
//! failure destined for its bounce) is durable, and a bounce is committed
//! before the failures it reports are forgotten.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::sync::mpsc;

use super::bounce::{BouncePlan, bounce_head, plan};
use super::control::SendControl;
use super::log::{self, emit};
use super::retry::{is_dying, next_retry};
use crate::control::ControlError;
use crate::date;
use crate::deliver::{Deliver, DeliveryJob, MessageRef, Outcome};
use crate::env::{Clock, Env, Fs, FsFile, OpenOptions, Plant};
use crate::home::Home;
use crate::queue::{
    Channel, Envelope, HEADER_LEN, MessageState, MsgId, Queue, QueueError, Recipient,
};
use crate::smtp::{InvokedFrom, queue_received_line};

/// What the scheduler can be told from outside (qmail-send's signals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// SIGALRM: retry every deferred recipient now.
    RetryNow,
    /// SIGHUP: reread the control files.
    Reload,
    /// SIGTERM: start nothing new, finish the attempts in flight, return.
    Stop,
}

#[derive(Debug, Error)]
pub enum SendError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("control files: {0}")]
    Control(#[from] ControlError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// How often `todo/` is scanned even without a trigger (qmail-send scans it
/// on a timer too): a missed trigger delays a message, never loses it.
const TODO_SCAN: Duration = Duration::from_secs(300);
/// How many messages are taken in at once.
const INTAKE_BATCH: usize = 64;
/// How soon a bounce or a removal that failed is tried again.
const IDLE_RETRY_SECS: u64 = 60;

const CHANNELS: [Channel; 2] = [Channel::Local, Channel::Remote];

fn ci(ch: Channel) -> usize {
    match ch {
        Channel::Local => 0,
        Channel::Remote => 1,
    }
}

/// The scheduler's view of one message in `mess/`.
struct Active {
    state: MessageState,
    /// When each channel is next tried, if it is waiting (mirrors `due`).
    due: [Option<u64>; 2],
    in_flight: [usize; 2],
    /// Recipients being delivered now, by channel and index.
    busy: BTreeSet<(usize, usize)>,
    /// Recipients already tried in the current pass, by channel and index.
    /// A pass tries each waiting recipient once; those that defer wait for
    /// the next pass, at the next time on the retry schedule.
    tried: BTreeSet<(usize, usize)>,
    /// When the channel's current pass started: the retry schedule counts
    /// from attempt starts, as qmail's does, so slow attempts do not push
    /// every later retry back.
    pass_start: [u64; 2],
}

impl Active {
    fn new(state: MessageState) -> Active {
        Active {
            state,
            due: [None; 2],
            in_flight: [0; 2],
            busy: BTreeSet::new(),
            tried: BTreeSet::new(),
            pass_start: [0; 2],
        }
    }

    /// Recipients of `ch` still to try in this pass.
    fn waiting(&self, ch: Channel) -> impl Iterator<Item = usize> + '_ {
        self.state
            .recipients(ch)
            .iter()
            .enumerate()
            .filter(move |(i, r)| !r.done && !self.tried.contains(&(ci(ch), *i)))
            .map(|(i, _)| i)
    }

    /// Recipients of `ch` not done yet.
    fn pending(&self, ch: Channel) -> bool {
        self.state.recipients(ch).iter().any(|r| !r.done)
    }

    fn idle(&self) -> bool {
        self.in_flight == [0, 0]
    }
}

/// A finished attempt, as the delivery task reports it once it has made
/// the outcomes durable.
struct Completion {
    id: MsgId,
    channel: Channel,
    /// One per recipient of the job, in its order.
    results: Vec<RcptResult>,
}

/// One recipient's part of a finished attempt.
struct RcptResult {
    number: u64,
    index: usize,
    /// The outcome (a deferral past the queue lifetime already turned into
    /// a failure).
    outcome: Outcome,
    /// What the task recorded in the queue.
    recorded: Recorded,
}

/// How far a delivery task got in recording its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Recorded {
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

/// qmail-send: routes new messages, schedules deliveries, bounces and
/// removes finished messages.
pub struct Scheduler<E: Env, L: Deliver, R: Deliver> {
    queue: Queue<E>,
    home: Home,
    control: SendControl,
    local: L,
    remote: R,
    messages: BTreeMap<MsgId, Active>,
    /// Per channel: (time, message) for every message waiting to be tried.
    due: [BTreeSet<(u64, MsgId)>; 2],
    busy: [usize; 2],
    deliveries: u64,
    /// Messages whose bounce or removal failed, and when to try again.
    idle_retry: BTreeMap<MsgId, u64>,
    /// Messages whose intake failed after they left `todo/` (the sync of
    /// `mess/` or the reload failed): taken in from `mess/` at the next
    /// intake, or they would wait for a restart.
    stranded: BTreeSet<MsgId>,
    done_tx: mpsc::UnboundedSender<Completion>,
    done_rx: mpsc::UnboundedReceiver<Completion>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<E: Env, L: Deliver, R: Deliver> Scheduler<E, L, R> {
    pub fn new(queue: Queue<E>, home: Home, control: SendControl, local: L, remote: R) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Scheduler {
            queue,
            home,
            control,
            local,
            remote,
            messages: BTreeMap::new(),
            due: [BTreeSet::new(), BTreeSet::new()],
            busy: [0; 2],
            deliveries: 0,
            idle_retry: BTreeMap::new(),
            stranded: BTreeSet::new(),
            done_tx,
            done_rx,
            ready: None,
        }
    }

    /// Says on `ready` when the queue is recovered. Recovery clears `tmp/`,
    /// so a process that also injects (an SMTP server) waits for this.
    pub fn on_ready(mut self, ready: tokio::sync::oneshot::Sender<()>) -> Self {
        self.ready = Some(ready);
        self
    }

    fn env(&self) -> &E {
        self.queue.env()
    }

    fn now(&self) -> u64 {
        self.env().clock().unix_secs()
    }

    fn limit(&self, ch: Channel) -> usize {
        match ch {
            Channel::Local => self.control.concurrency_local,
            Channel::Remote => self.control.concurrency_remote,
        }
    }

    fn status(&self) {
        emit(&log::status(
            self.busy[0],
            self.control.concurrency_local,
            self.busy[1],
            self.control.concurrency_remote,
        ));
    }

    /// Runs until [`Command::Stop`]: recovers the queue, resumes every
    /// message in it, then serves triggers, timers and completions. Nothing
    /// else may inject into the queue until recovery is done: see
    /// [`Scheduler::on_ready`].
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), SendError> {
        self.queue.recover().await?;
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
        self.status();
        let now = self.now();
        for id in self.queue.list_active().await? {
            match self.queue.load(id).await {
                Ok(state) => {
                    self.messages.insert(id, Active::new(state));
                    self.schedule_waiting(id, now);
                    self.after_attempts(id).await;
                }
                Err(e) => tracing::warn!("unable to load message {id}, skipping it: {e}"),
            }
        }
        self.intake().await;
        let queue = self.queue.clone();
        let mut stopping = false;
        let mut commands_open = true;
        let mut next_scan = self.now() + TODO_SCAN.as_secs();
        loop {
            if stopping && self.busy == [0, 0] {
                return Ok(());
            }
            if !stopping {
                self.dispatch().await;
            }
            let wake = self.next_wake(stopping).min(next_scan);
            let sleep = self.sleep_until(wake);
            tokio::select! {
                biased;
                Some(c) = self.done_rx.recv() => self.complete(c).await,
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(Command::RetryNow) => self.retry_now(),
                    Some(Command::Reload) => self.reload().await,
                    Some(Command::Stop) => stopping = true,
                    None => commands_open = false,
                },
                _ = queue.committed().notified(), if !stopping => self.intake().await,
                _ = sleep => {
                    let now = self.now();
                    if now >= next_scan {
                        next_scan = now + TODO_SCAN.as_secs();
                        if !stopping {
                            self.intake().await;
                        }
                    }
                    self.retry_idle(now).await;
                }
            }
        }
    }

    fn sleep_until(&self, wake: u64) -> tokio::time::Sleep {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(wake);
        let d = at
            .duration_since(self.env().clock().now())
            .unwrap_or(Duration::ZERO);
        tokio::time::sleep(d)
    }

    /// The earliest time something is due: a channel with a free slot and a
    /// waiting message, or a bounce to retry.
    fn next_wake(&self, stopping: bool) -> u64 {
        let mut wake = u64::MAX;
        if !stopping {
            for ch in CHANNELS {
                if self.busy[ci(ch)] < self.limit(ch)
                    && let Some(&(t, _)) = self.due[ci(ch)].first()
                {
                    wake = wake.min(t);
                }
            }
        }
        if let Some(t) = self.idle_retry.values().min() {
            wake = wake.min(*t);
        }
        wake
    }

    /// Takes in every message waiting in `todo/`, and any stranded in
    /// `mess/` by a failed intake.
    async fn intake(&mut self) {
        for id in std::mem::take(&mut self.stranded) {
            let fs = self.queue.env().fs();
            if self.messages.contains_key(&id) || fs.exists(&self.queue.layout().todo(id)).await {
                // Taken in already, or still in todo/ (taken in below).
                continue;
            }
            match self.queue.load(id).await {
                Ok(state) => {
                    let now = self.now();
                    self.take_in(id, state, now);
                }
                Err(e) => {
                    tracing::warn!("unable to take in mess/{id}, will try again: {e}");
                    self.stranded.insert(id);
                }
            }
        }
        let ids = match self.queue.list_todo().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("unable to scan todo/, will try again: {e}");
                return;
            }
        };
        // Intake of different messages is independent: run a batch at once
        // so their syncs overlap, then log them in id order.
        let router = Arc::new(self.control.router.clone());
        for batch in ids.chunks(INTAKE_BATCH) {
            let mut tasks = tokio::task::JoinSet::new();
            for &id in batch {
                let (queue, router) = (self.queue.clone(), Arc::clone(&router));
                tasks.spawn(async move { (id, queue.preprocess(id, |r| router.route(r)).await) });
            }
            let mut taken = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok((id, Ok(state))) => taken.push((id, state)),
                    Ok((id, Err(e))) => {
                        tracing::warn!("unable to take in todo/{id}, will try again: {e}");
                        self.stranded.insert(id);
                    }
                    Err(e) => tracing::warn!("intake task failed, will try again: {e}"),
                }
            }
            taken.sort_by_key(|(id, _)| *id);
            let now = self.now();
            for (id, state) in taken {
                self.take_in(id, state, now);
            }
        }
    }

    /// Logs a message taken in and puts it on the schedule.
    fn take_in(&mut self, id: MsgId, state: MessageState, now: u64) {
        emit(&log::new_msg(id));
        emit(&log::info_msg(
            id,
            state.header.len,
            &state.sender,
            state.header.qp,
            state.header.uid,
        ));
        self.messages.insert(id, Active::new(state));
        self.schedule_waiting(id, now);
    }

    /// Puts each channel of a message that has recipients waiting (and
    /// nothing in flight) on the schedule at `at`.
    fn schedule_waiting(&mut self, id: MsgId, at: u64) {
        for ch in CHANNELS {
            self.schedule(id, ch, at);
        }
    }

    fn schedule(&mut self, id: MsgId, ch: Channel, at: u64) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        let c = ci(ch);
        if m.in_flight[c] > 0 || m.waiting(ch).next().is_none() {
            return;
        }
        // Already waiting (for a free slot, say): the earlier time stands.
        let at = m.due[c].map_or(at, |old| old.min(at));
        if let Some(old) = m.due[c].replace(at) {
            self.due[c].remove(&(old, id));
        }
        self.due[c].insert((at, id));
    }

    /// Starts every due delivery the concurrency limits allow.
    async fn dispatch(&mut self) {
        let now = self.now();
        for ch in CHANNELS {
            let c = ci(ch);
            while self.busy[c] < self.limit(ch) {
                let Some(&(t, id)) = self.due[c].first() else {
                    break;
                };
                if t > now {
                    break;
                }
                self.due[c].remove(&(t, id));
                let waiting: Vec<usize> = match self.messages.get_mut(&id) {
                    Some(m) => {
                        m.due[c] = None;
                        m.waiting(ch).collect()
                    }
                    None => continue,
                };
                for index in waiting {
                    if self.busy[c] >= self.limit(ch) {
                        // Out of slots: the rest waits at the head of the line.
                        if let Some(m) = self.messages.get_mut(&id) {
                            m.due[c] = Some(t);
                        }
                        self.due[c].insert((t, id));
                        break;
                    }
                    self.start(id, ch, index, now).await;
                }
            }
        }
    }

    async fn start(&mut self, id: MsgId, ch: Channel, index: usize, now: u64) {
        self.deliveries += 1;
        let number = self.deliveries;
        let c = ci(ch);
        let lifetime = self.control.queuelifetime;
        let path = self.queue.layout().mess(id);
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        if !m.tried.iter().any(|(x, _)| *x == c) {
            m.pass_start[c] = now;
        }
        m.tried.insert((c, index));
        m.busy.insert((c, index));
        m.in_flight[c] += 1;
        self.busy[c] += 1;
        let rcpt = m.state.recipients(ch)[index].clone();
        let job = DeliveryJob::single(
            id,
            ch,
            m.state.sender.clone(),
            rcpt.address.clone(),
            number,
            MessageRef {
                path,
                offset: HEADER_LEN as u64,
                len: m.state.header.len,
            },
        );
        let dying = is_dying(m.state.header.birth, now, lifetime);
        emit(&log::starting(number, id, ch, &rcpt.address));
        self.status();
        let task = DeliveryTask {
            queue: self.queue.clone(),
            job,
            rcpts: vec![(index, rcpt)],
            dying,
            done: self.done_tx.clone(),
        };
        match ch {
            Channel::Local => task.spawn(self.local.clone()),
            Channel::Remote => task.spawn(self.remote.clone()),
        }
    }

    /// Takes in an attempt's (already durable) outcome and decides what
    /// follows.
    async fn complete(&mut self, done: Completion) {
        let Completion {
            id,
            channel: ch,
            results,
        } = done;
        let c = ci(ch);
        let now = self.now();
        self.busy[c] -= 1;
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        m.in_flight[c] -= 1;
        for RcptResult {
            number,
            index,
            outcome,
            recorded,
        } in results
        {
            m.busy.remove(&(c, index));
            let (kind, text) = match &outcome {
                Outcome::Success(t) => ("success", t),
                Outcome::Failure(t) => ("failure", t),
                Outcome::Deferral(t) => ("deferral", t),
            };
            emit(&log::delivery(number, kind, text));
            match recorded {
                Recorded::Done => {
                    if matches!(outcome, Outcome::Failure(_)) {
                        m.state.bounce_pending = true;
                    }
                    let list = match ch {
                        Channel::Local => &mut m.state.local,
                        Channel::Remote => &mut m.state.remote,
                    };
                    if let Some(r) = list.get_mut(index) {
                        r.done = true;
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
        let pass_over = m.in_flight[c] == 0 && m.waiting(ch).next().is_none();
        let reschedule = (pass_over && m.pending(ch))
            .then(|| next_retry(m.state.header.birth, m.pass_start[c], ch).max(now));
        if pass_over {
            m.tried.retain(|(x, _)| *x != c);
        }
        self.status();
        if let Some(at) = reschedule {
            self.schedule(id, ch, at);
        }
        self.after_attempts(id).await;
    }

    /// When no attempt of a message is in flight: send its bounce, and
    /// remove it if nothing is left to do.
    async fn after_attempts(&mut self, id: MsgId) {
        let Some(m) = self.messages.get(&id) else {
            return;
        };
        if !m.idle() {
            return;
        }
        if m.state.bounce_pending {
            let sent = if self.env().planted(Plant::DropBounce) {
                self.queue.bounce_sent(id).await.map_err(SendError::from)
            } else {
                self.send_bounce(id).await
            };
            match sent {
                Ok(()) => {
                    self.idle_retry.remove(&id);
                    if let Some(m) = self.messages.get_mut(&id) {
                        m.state.bounce_pending = false;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "trouble injecting bounce message for msg {id}, will try later: {e}"
                    );
                    let at = self.now() + IDLE_RETRY_SECS;
                    self.idle_retry.insert(id, at);
                    return;
                }
            }
        }
        let Some(m) = self.messages.get(&id) else {
            return;
        };
        // The in-memory state says finished only once every done mark and
        // the bounce are durable, so it needs no second look at the disk.
        if !m.state.finished() && !self.env().planted(Plant::RemovePending) {
            return;
        }
        match self.queue.remove_files(id).await {
            Ok(()) => {
                emit(&log::end_msg(id));
                self.forget(id);
            }
            Err(e) => {
                tracing::warn!("unable to remove msg {id}, will try later: {e}");
                let at = self.now() + IDLE_RETRY_SECS;
                self.idle_retry.insert(id, at);
            }
        }
    }

    fn forget(&mut self, id: MsgId) {
        if let Some(m) = self.messages.remove(&id) {
            for c in 0..2 {
                if let Some(t) = m.due[c] {
                    self.due[c].remove(&(t, id));
                }
            }
        }
        self.idle_retry.remove(&id);
    }

    async fn retry_idle(&mut self, now: u64) {
        let due: Vec<MsgId> = self
            .idle_retry
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.after_attempts(id).await;
        }
    }

    /// Injects the bounce for a message's recorded failures, then forgets
    /// them. The bounce is committed first: a crash in between sends it
    /// twice, never zero times.
    async fn send_bounce(&mut self, id: MsgId) -> Result<(), SendError> {
        let failures = self.queue.failures(id).await?;
        let Some(m) = self.messages.get(&id) else {
            return Ok(());
        };
        if failures.is_empty() {
            // Only a torn record was there: its recipient is not done and
            // will fail again.
            self.queue.bounce_sent(id).await?;
            return Ok(());
        }
        match plan(&m.state.sender, &self.control.bounce) {
            BouncePlan::Discard => emit(&log::triple_bounce(id)),
            BouncePlan::Send {
                sender,
                recipient,
                double,
            } => {
                let env = self.env().clone();
                let ident = env.identity();
                let now = env.clock().unix_secs();
                let date = date::rfc822(now);
                let mut text = queue_received_line(ident.pid, InvokedFrom::Bounce, &date);
                text.push_str(&bounce_head(
                    &self.control.bounce,
                    &date,
                    &m.state.sender,
                    &recipient,
                    double,
                    &failures,
                ));
                let len = m.state.header.len;
                let mut inj = self.queue.begin().await?;
                inj.write(text.as_bytes()).await?;
                if let Err(e) = copy_message(&self.queue, id, len, &mut inj).await {
                    inj.abort().await;
                    return Err(e);
                }
                let envelope = Envelope {
                    sender,
                    recipients: vec![recipient],
                };
                inj.commit(&envelope, ident.uid, ident.pid).await?;
                emit(&log::bounce_msg(id, ident.pid));
            }
        }
        self.queue.bounce_sent(id).await?;
        Ok(())
    }

    /// SIGALRM: every waiting recipient is due now.
    fn retry_now(&mut self) {
        let now = self.now();
        let ids: Vec<MsgId> = self.messages.keys().copied().collect();
        for id in ids {
            self.schedule_waiting(id, now);
        }
        for t in self.idle_retry.values_mut() {
            *t = now;
        }
    }

    /// SIGHUP: new control files take effect for the next decisions.
    async fn reload(&mut self) {
        match SendControl::load(self.env(), &self.home).await {
            Ok(c) => self.control = c,
            Err(e) => tracing::warn!("unable to reread controls, keeping the old ones: {e}"),
        }
    }
}

/// One delivery attempt, run as a task of its own: the agent's attempt,
/// then the checkpoints that make its outcomes durable, then the report to
/// the scheduler. Checkpoints of concurrent deliveries thus run in
/// parallel, and the scheduler never waits on a disk for them.
struct DeliveryTask<E: Env> {
    queue: Queue<E>,
    job: DeliveryJob,
    /// The job's recipients (index in the channel's list, queue record), in
    /// the order of `job.recipients`.
    rcpts: Vec<(usize, Recipient)>,
    /// The attempt started after the queue lifetime: a deferral is final.
    dying: bool,
    done: mpsc::UnboundedSender<Completion>,
}

impl<E: Env> DeliveryTask<E> {
    fn spawn<D: Deliver>(self, agent: D) {
        tokio::spawn(self.run(agent));
    }

    async fn run<D: Deliver>(self, agent: D) {
        let DeliveryTask {
            queue,
            job,
            rcpts,
            dying,
            done,
        } = self;
        let (id, ch) = (job.id, job.channel);
        let numbers: Vec<u64> = job.recipients.iter().map(|r| r.number).collect();
        if queue.env().planted(Plant::DoneBeforeDeliver) {
            for (_, rcpt) in &rcpts {
                let _ = queue.mark_done(id, ch, rcpt).await;
            }
        }
        // A panicking agent is a deferral, not a dead scheduler.
        let attempt = tokio::spawn(async move { agent.deliver(job).await });
        let mut outcomes = attempt.await.unwrap_or_default();
        // An agent that reported too few outcomes (or crashed) deferred the
        // rest: never a success nobody reported.
        let missing = if outcomes.is_empty() {
            "Delivery agent crashed. (#4.3.0)\n"
        } else {
            "Delivery agent reported no outcome for this recipient. (#4.3.0)\n"
        };
        outcomes.resize_with(rcpts.len(), || Outcome::Deferral(missing.into()));
        let mut results = Vec::with_capacity(rcpts.len());
        for (((index, rcpt), number), mut outcome) in rcpts.into_iter().zip(numbers).zip(outcomes) {
            if let (Outcome::Deferral(text), true) = (&outcome, dying) {
                outcome = Outcome::Failure(format!(
                    "{}I'm not going to try again; this message has been in the queue too long.\n",
                    with_newline(text)
                ));
            }
            let recorded = record(&queue, id, ch, &rcpt, &outcome).await;
            results.push(RcptResult {
                number,
                index,
                outcome,
                recorded,
            });
        }
        let _ = done.send(Completion {
            id,
            channel: ch,
            results,
        });
    }
}

/// Makes one recipient's outcome durable.
async fn record<E: Env>(
    queue: &Queue<E>,
    id: MsgId,
    ch: Channel,
    rcpt: &Recipient,
    outcome: &Outcome,
) -> Recorded {
    match outcome {
        Outcome::Success(_) => match queue.mark_done(id, ch, rcpt).await {
            Ok(()) => Recorded::Done,
            Err(e) => Recorded::Failed(e.to_string()),
        },
        // The failure is durable before the recipient is done, so a crash
        // in between repeats the attempt, never loses the bounce.
        Outcome::Failure(text) => match queue.record_failure(id, &rcpt.address, text).await {
            Ok(()) => match queue.mark_done(id, ch, rcpt).await {
                Ok(()) => Recorded::Done,
                Err(e) => Recorded::FailureOnly(e.to_string()),
            },
            Err(e) => Recorded::Failed(e.to_string()),
        },
        Outcome::Deferral(_) => Recorded::Nothing,
    }
}

fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// Streams a queued message's bytes into an injection, in bounded chunks.
async fn copy_message<E: Env>(
    queue: &Queue<E>,
    id: MsgId,
    len: u64,
    inj: &mut crate::queue::Injection<E>,
) -> Result<(), SendError> {
    const CHUNK: usize = 64 * 1024;
    let mut f = queue
        .env()
        .fs()
        .open(&queue.layout().mess(id), &OpenOptions::read())
        .await?;
    f.seek(HEADER_LEN as u64).await?;
    let mut left = len;
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let want = (left as usize).min(CHUNK);
        let n = f.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(SendError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("message {id} is shorter than its header says"),
            )));
        }
        inj.write(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}
