//! The scheduler's driver: the async loop that feeds the [`Planner`]
//! events and performs its actions.
//!
//! One task owns the planner; deliveries, intake, bounces, removals and
//! control reloads run as tasks of their own and report back on a channel,
//! so the loop never waits on a disk and the state needs no locks. Every
//! decision that must survive a crash is written to the queue before the
//! planner hears of it: a recipient is marked done only after its delivery
//! (or the failure destined for its bounce) is durable, and a bounce is
//! committed before the failures it reports are forgotten.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::sync::mpsc;

use super::bounce::{BouncePlan, bounce_head, plan, submit_bounce};
use super::control::{BounceControl, SendControl};
use super::log::{self, emit};
use super::planner::{Action, Event, JobId, Planner, Policy, RcptResult, Recorded, Secs, StartJob};
use crate::control::ControlError;
use crate::date;
use crate::deliver::{Deliver, DeliveryJob, JobRecipient, MessageRef, Outcome};
use crate::env::{Clock, Env, Plant};
use crate::home::Home;
use crate::queue::{
    Channel, Envelope, HEADER_LEN, MessageState, MsgId, Queue, QueueError, Recipient,
};

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

/// What the loop's tasks report.
enum Report {
    /// A planner event (a job's outcomes, a bounce or removal finished).
    Event(Event),
    /// A batch of intake: the messages taken in, in id order.
    TakenIn(Vec<MessageState>),
    /// Intake finished; these ids were in `todo/` but skipped, because the
    /// planner held a message of that id when the scan started.
    IntakeDone(BTreeSet<MsgId>),
    /// The control files as reread (SIGHUP), or why they were not.
    Reloaded(Box<Result<SendControl, SendError>>),
}

/// qmail-send: routes new messages, schedules deliveries, bounces and
/// removes finished messages.
pub struct Scheduler<E: Env, L: Deliver, R: Deliver> {
    queue: Queue<E>,
    home: Home,
    control: Arc<SendControl>,
    local: L,
    remote: R,
    planner: Planner,
    /// Ids an intake found in `todo/` but skipped because the planner held
    /// them. Usually that is the message in flight itself; but ids are
    /// inode numbers, and a fresh message removed from `todo/` frees its
    /// id for the next injection, so once the planner lets go of one of
    /// these ids, `todo/` is scanned again.
    skipped: BTreeSet<MsgId>,
    /// An intake task is running; `intake_again` asks for another after it.
    intake_running: bool,
    /// A reload task is running: commands wait for it, so a command sent
    /// after SIGHUP sees the new settings.
    reloading: bool,
    intake_again: bool,
    tx: mpsc::UnboundedSender<Report>,
    rx: mpsc::UnboundedReceiver<Report>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<E: Env, L: Deliver, R: Deliver> Scheduler<E, L, R> {
    pub fn new(queue: Queue<E>, home: Home, control: SendControl, local: L, remote: R) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let planner = Planner::new(policy(&queue, &control));
        Scheduler {
            queue,
            home,
            control: Arc::new(control),
            local,
            remote,
            planner,
            skipped: BTreeSet::new(),
            intake_running: false,
            intake_again: false,
            reloading: false,
            tx,
            rx,
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

    fn now(&self) -> Secs {
        Secs(self.env().clock().unix_secs())
    }

    /// Hands the planner one event, then performs what it asks for.
    fn handle(&mut self, event: Event) {
        let now = self.now();
        self.planner.handle(now, event);
        while let Some(action) = self.planner.poll_action() {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Log(line) => emit(&line),
            Action::Start(job) => self.start(job),
            Action::Bounce {
                id,
                sender,
                len,
                fresh,
            } => {
                let (queue, control, tx) = (
                    self.queue.clone(),
                    Arc::clone(&self.control),
                    self.tx.clone(),
                );
                tokio::spawn(async move {
                    let result = if queue.env().planted(Plant::DropBounce) {
                        queue
                            .bounce_sent(id)
                            .await
                            .map(|()| None)
                            .map_err(SendError::from)
                    } else {
                        let original = MessageRef {
                            path: queue.layout().message(id, fresh),
                            offset: HEADER_LEN as u64,
                            len,
                        };
                        send_bounce(&queue, &control.bounce, id, &sender, &original).await
                    };
                    let result = result.map_err(|e| e.to_string());
                    let _ = tx.send(Report::Event(Event::Bounced { id, result }));
                });
            }
            Action::Remove {
                id,
                fresh,
                half_written,
            } => {
                let (queue, tx) = (self.queue.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let result = queue
                        .remove(id, fresh, half_written)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Report::Event(Event::Removed { id, result }));
                });
            }
            Action::Persist { state } => {
                let (queue, tx) = (self.queue.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let id = state.id;
                    let result = queue.persist(&state).await.map_err(|e| e.to_string());
                    let _ = tx.send(Report::Event(Event::Persisted { id, result }));
                });
            }
        }
    }

    fn start(&mut self, job: StartJob) {
        let StartJob {
            job,
            id,
            channel,
            sender,
            recipients,
            len,
            dying,
            fresh,
        } = job;
        let (rcpts, numbered): (Vec<Recipient>, Vec<JobRecipient>) = recipients
            .into_iter()
            .map(|(r, number)| {
                let jr = JobRecipient {
                    address: r.address.clone(),
                    number,
                };
                (r, jr)
            })
            .unzip();
        let task = DeliveryTask {
            queue: self.queue.clone(),
            job,
            delivery: DeliveryJob {
                id,
                channel,
                sender,
                recipients: numbered,
                message: MessageRef {
                    path: self.queue.layout().message(id, fresh),
                    offset: HEADER_LEN as u64,
                    len,
                },
            },
            rcpts,
            dying,
            fresh,
            done: self.tx.clone(),
        };
        match channel {
            Channel::Local => task.spawn(self.local.clone()),
            Channel::Remote => task.spawn(self.remote.clone()),
        }
    }

    /// Runs until [`Command::Stop`]: recovers the queue, resumes every
    /// message in it, then serves triggers, timers and reports. Nothing
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
        emit(&self.planner.status());
        for id in self.queue.list_active().await? {
            match self.queue.load(id).await {
                Ok(state) => self.handle(Event::Resumed(state)),
                Err(e) => tracing::warn!("unable to load message {id}, skipping it: {e}"),
            }
        }
        self.start_intake();
        let queue = self.queue.clone();
        let mut stopping = false;
        let mut commands_open = true;
        let mut next_scan = self.now().plus(TODO_SCAN.as_secs());
        loop {
            if stopping && self.planner.stopped() && !self.intake_running {
                return Ok(());
            }
            let wake = self
                .planner
                .poll_timeout()
                .map_or(next_scan, |t| t.min(next_scan));
            let sleep = self.sleep_until(wake);
            tokio::select! {
                biased;
                Some(report) = self.rx.recv() => self.report(report),
                cmd = commands.recv(), if commands_open && !self.reloading => match cmd {
                    Some(Command::RetryNow) => self.handle(Event::RetryNow),
                    Some(Command::Reload) => self.reload(),
                    Some(Command::Stop) => {
                        stopping = true;
                        self.handle(Event::Stop);
                    }
                    None => commands_open = false,
                },
                _ = queue.committed().notified(), if !stopping => self.start_intake(),
                _ = sleep => {
                    let now = self.now();
                    if now >= next_scan {
                        next_scan = now.plus(TODO_SCAN.as_secs());
                        if !stopping {
                            self.start_intake();
                        }
                    }
                    self.handle(Event::Tick);
                }
            }
        }
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Event(e) => {
                let freed = match &e {
                    Event::Removed { id, result: Ok(()) } => self.skipped.remove(id),
                    _ => false,
                };
                self.handle(e);
                if freed {
                    self.start_intake();
                }
            }
            Report::TakenIn(states) => self.handle(Event::TakenIn(states)),
            Report::IntakeDone(skipped) => {
                self.intake_running = false;
                self.skipped.extend(skipped);
                // An id let go of while the scan ran: look again.
                let before = self.skipped.len();
                let planner = &self.planner;
                self.skipped.retain(|id| planner.knows(*id));
                if std::mem::take(&mut self.intake_again) || self.skipped.len() < before {
                    self.start_intake();
                }
            }
            Report::Reloaded(result) => {
                self.reloading = false;
                match *result {
                    Ok(c) => {
                        self.control = Arc::new(c);
                        let policy = policy(&self.queue, &self.control);
                        self.handle(Event::Policy(policy));
                    }
                    Err(e) => {
                        tracing::warn!("unable to reread controls, keeping the old ones: {e}")
                    }
                }
            }
        }
    }

    fn sleep_until(&self, wake: Secs) -> tokio::time::Sleep {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(wake.0);
        let d = at
            .duration_since(self.env().clock().now())
            .unwrap_or(Duration::ZERO);
        tokio::time::sleep(d)
    }

    /// Starts taking in every message waiting in `todo/` that the planner
    /// does not hold yet, in a task of its own; one at a time.
    fn start_intake(&mut self) {
        if self.intake_running {
            self.intake_again = true;
            return;
        }
        self.intake_running = true;
        let (queue, control, tx) = (
            self.queue.clone(),
            Arc::clone(&self.control),
            self.tx.clone(),
        );
        let known = self.planner.known();
        tokio::spawn(intake(queue, control, known, tx));
    }

    /// SIGHUP: new control files take effect for the next decisions.
    fn reload(&mut self) {
        self.reloading = true;
        let (env, home, tx) = (self.env().clone(), self.home.clone(), self.tx.clone());
        tokio::spawn(async move {
            let result = SendControl::load(&env, &home)
                .await
                .map_err(SendError::from);
            let _ = tx.send(Report::Reloaded(Box::new(result)));
        });
    }
}

/// The planner's settings from the control files (and the planted bug
/// that only the simulation sets).
fn policy<E: Env>(queue: &Queue<E>, control: &SendControl) -> Policy {
    let mut p = Policy::from_control(control);
    p.remove_pending = queue.env().planted(Plant::RemovePending);
    p
}

/// Takes in every message in `todo/` but the `known` ones (in flight),
/// in batches read concurrently; reports each batch in id order, then the
/// ids it skipped.
async fn intake<E: Env>(
    queue: Queue<E>,
    control: Arc<SendControl>,
    known: BTreeSet<MsgId>,
    tx: mpsc::UnboundedSender<Report>,
) {
    let ids = match queue.list_todo().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!("unable to scan todo/, will try again: {e}");
            let _ = tx.send(Report::IntakeDone(BTreeSet::new()));
            return;
        }
    };
    let (skipped, new): (Vec<MsgId>, Vec<MsgId>) =
        ids.into_iter().partition(|id| known.contains(id));
    let router = Arc::new(control.router.clone());
    for batch in new.chunks(INTAKE_BATCH) {
        let mut tasks = tokio::task::JoinSet::new();
        for &id in batch {
            let (queue, router) = (queue.clone(), Arc::clone(&router));
            tasks.spawn(async move { (id, queue.take_in(id, |r| router.route(r)).await) });
        }
        let mut taken = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(state))) => taken.push(state),
                // Finished and removed since the scan listed it.
                Ok((_, Err(QueueError::Io(e)))) if e.kind() == io::ErrorKind::NotFound => {}
                Ok((id, Err(e))) => {
                    tracing::warn!("unable to take in todo/{id}, will try again: {e}");
                }
                Err(e) => tracing::warn!("intake task failed, will try again: {e}"),
            }
        }
        taken.sort_by_key(|s| s.id);
        if !taken.is_empty() {
            let _ = tx.send(Report::TakenIn(taken));
        }
    }
    let _ = tx.send(Report::IntakeDone(skipped.into_iter().collect()));
}

/// Injects the bounce for a message's recorded failures (quoting the
/// message `original`), then forgets them; returns the log line to write.
/// The bounce is committed first: a crash in between sends it twice, never
/// zero times.
async fn send_bounce<E: Env>(
    queue: &Queue<E>,
    control: &BounceControl,
    id: MsgId,
    original_sender: &str,
    original: &MessageRef,
) -> Result<Option<String>, SendError> {
    let failures = queue.failures(id).await?;
    if failures.is_empty() {
        // Only a torn record was there: its recipient is not done and
        // will fail again.
        queue.bounce_sent(id).await?;
        return Ok(None);
    }
    let line = match plan(original_sender, control) {
        BouncePlan::Discard => log::triple_bounce(id),
        BouncePlan::Send {
            sender,
            recipient,
            double,
        } => {
            let date = date::rfc822(queue.env().clock().unix_secs());
            let head = bounce_head(
                control,
                &date,
                original_sender,
                &recipient,
                double,
                &failures,
            );
            let envelope = Envelope {
                sender,
                recipients: vec![recipient],
            };
            let qp = submit_bounce(queue, original, &head, &envelope)
                .await
                .map_err(|e| SendError::Io(io::Error::other(e.to_string())))?;
            log::bounce_msg(id, qp)
        }
    };
    queue.bounce_sent(id).await?;
    Ok(Some(line))
}

/// One delivery attempt, run as a task of its own: the agent's attempt,
/// then the checkpoints that make its outcomes durable, then the report to
/// the scheduler. Checkpoints of concurrent deliveries thus run in
/// parallel, and the scheduler never waits on a disk for them.
struct DeliveryTask<E: Env> {
    queue: Queue<E>,
    job: JobId,
    delivery: DeliveryJob,
    /// The job's recipients' queue records, in the order of
    /// `delivery.recipients`.
    rcpts: Vec<Recipient>,
    /// The attempt started after the queue lifetime: a deferral is final.
    dying: bool,
    /// The message is fresh: its outcomes are reported, not marked.
    fresh: bool,
    done: mpsc::UnboundedSender<Report>,
}

impl<E: Env> DeliveryTask<E> {
    fn spawn<D: Deliver>(self, agent: D) {
        tokio::spawn(self.run(agent));
    }

    async fn run<D: Deliver>(self, agent: D) {
        let DeliveryTask {
            queue,
            job,
            delivery,
            rcpts,
            dying,
            fresh,
            done,
        } = self;
        let (id, ch) = (delivery.id, delivery.channel);
        if queue.env().planted(Plant::DoneBeforeDeliver) {
            if fresh {
                // Done in memory is done at once: reported before the
                // delivery is even tried.
                let results = rcpts
                    .iter()
                    .map(|_| RcptResult {
                        outcome: Outcome::Success("planted".into()),
                        recorded: Recorded::Done,
                    })
                    .collect();
                let _ = done.send(Report::Event(Event::Completed { job, results }));
                let _ = agent.deliver(delivery).await;
                return;
            }
            for rcpt in &rcpts {
                let _ = queue.mark_done(id, ch, rcpt).await;
            }
        }
        // A panicking agent is a deferral, not a dead scheduler.
        let attempt = tokio::spawn(async move { agent.deliver(delivery).await });
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
        for (rcpt, mut outcome) in rcpts.iter().zip(outcomes) {
            if let (Outcome::Deferral(text), true) = (&outcome, dying) {
                outcome = Outcome::Failure(format!(
                    "{}I'm not going to try again; this message has been in the queue too long.\n",
                    with_newline(text)
                ));
            }
            let recorded = if fresh {
                record_fresh(&queue, id, rcpt, &outcome).await
            } else {
                record(&queue, id, ch, rcpt, &outcome).await
            };
            results.push(RcptResult { outcome, recorded });
        }
        let _ = done.send(Report::Event(Event::Completed { job, results }));
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

/// Records one recipient's outcome for a fresh message: nothing is marked
/// (a crash delivers the whole message again), but a failure is made
/// durable for the bounce before the recipient counts as done, as always.
async fn record_fresh<E: Env>(
    queue: &Queue<E>,
    id: MsgId,
    rcpt: &Recipient,
    outcome: &Outcome,
) -> Recorded {
    match outcome {
        Outcome::Success(_) => Recorded::Done,
        Outcome::Failure(text) => match queue.record_failure(id, &rcpt.address, text).await {
            Ok(()) => Recorded::Done,
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
