//! The queue under crashes: for injection, intake, a recipient checkpoint and
//! removal, crash after every filesystem operation in turn, under many random
//! keep/lose outcomes at each (the kit's crash sweep), then recover and
//! check what is left.

use std::future::Future;

use qmail_core::env::{Env, Fs};
use qmail_core::queue::{Channel, Envelope, MsgId, Queue};
use qmail_io_sim::{SimEnv, SimFs};
use qmail_sim_tests::kit::crash::{Checked, crash_sweep, mutations_of};
use qmail_sim_tests::kit::inject::{self, envelope as make_envelope};
use qmail_sim_tests::kit::{env_on, identity, rt};

const ROOT: &str = "/var/qmail/queue";
/// Crash trials at each cut.
const TRIALS: u64 = 24;

fn env(fs: &SimFs, seed: u64) -> SimEnv {
    env_on(fs, seed, &identity(77, 100, "sim"))
}

fn envelope() -> Envelope {
    make_envelope(
        "alice@example.org",
        &["bob@local.test", "carol@local.test", "dave@remote.test"],
    )
}

fn message() -> Vec<u8> {
    let mut m =
        b"Received: (qmail 77 invoked by uid 100); 25 Nov 2026 00:00:00 -0000\nSubject: crash\n\n"
            .to_vec();
    m.extend((0..3000u32).map(|i| b'a' + (i % 26) as u8));
    m.push(b'\n');
    m
}

fn route(addr: &str) -> (Channel, String) {
    if addr.ends_with("@local.test") {
        (Channel::Local, addr.to_string())
    } else {
        (Channel::Remote, addr.to_string())
    }
}

async fn inject(q: &Queue<SimEnv>) -> Result<MsgId, String> {
    inject::inject(q, &envelope(), &message())
        .await
        .map_err(|e| e.to_string())
}

/// Runs `setup` durably, counts the mutations `step` makes when nothing fails,
/// then at every crash point of the sweep: setup, arm, step, crash, recover
/// (twice: recovery is idempotent and leaves no temporaries), and hand the
/// recovered queue and whether the step succeeded to `check`.
fn crash_every_op<S, SF, T, TF, C, CF>(name: &str, setup: S, step: T, check: C)
where
    S: Fn(Queue<SimEnv>) -> SF,
    SF: Future<Output = Option<MsgId>>,
    T: Fn(Queue<SimEnv>, Option<MsgId>) -> TF,
    TF: Future<Output = Result<(), String>>,
    C: Fn(Queue<SimEnv>, Option<MsgId>, bool) -> CF,
    CF: Future<Output = Result<(), String>>,
{
    let rt = rt();
    let prepare = |seed: u64| {
        let fs = SimFs::new(seed);
        let q = Queue::new(env(&fs, seed), ROOT);
        let id = rt.block_on(async {
            q.create().await.unwrap();
            setup(q.clone()).await
        });
        (fs, q, id)
    };
    let (fs, q, id) = prepare(0);
    let (ops, r) = mutations_of(&fs, || rt.block_on(step(q, id)));
    r.expect("the step succeeds without faults");
    assert!(ops >= 2, "{name}: step made {ops} mutations");
    let swept = crash_sweep(name, ops, TRIALS, |point| {
        let (fs, q, id) = prepare(point.trial);
        point.arm(&fs);
        let ok = rt.block_on(step(q, id)).is_ok();
        if ok != point.after_all() {
            return Err(format!(
                "the step succeeded: {ok}, but only an uncut step may"
            ));
        }
        point.crash(&fs);
        // A sync failure the step planned and the cut kept from happening
        // must not fall on recovery.
        fs.fail_next_syncs(0);
        let q = Queue::new(env(&fs, point.trial + 1), ROOT);
        rt.block_on(async {
            q.recover().await.map_err(|e| format!("recover: {e}"))?;
            // Recovery is idempotent.
            let again = q
                .recover()
                .await
                .map_err(|e| format!("recover again: {e}"))?;
            if again.removed_tmp + again.finished_removals + again.orphans_removed != 0 {
                return Err(format!("second recovery still had work: {again:?}"));
            }
            let tmp = q.env().fs().read_dir(&q.layout().tmp_dir()).await.unwrap();
            if !tmp.is_empty() {
                return Err(format!("temporaries left: {tmp:?}"));
            }
            check(q, id, ok).await
        })?;
        Ok(if ok || id.is_some() {
            Checked::Held
        } else {
            Checked::NothingAccepted
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        swept.held + swept.unaccepted,
        (ops as usize + 1) * TRIALS as usize
    );
}

/// All messages in the queue (todo and active).
async fn all_ids(q: &Queue<SimEnv>) -> Vec<MsgId> {
    let mut ids = q.list_todo().await.unwrap();
    ids.extend(q.list_active().await.unwrap());
    ids
}

async fn whole(q: &Queue<SimEnv>, id: MsgId) -> Result<(), String> {
    let body = q.read_message(id).await.map_err(|e| e.to_string())?;
    if body != message() {
        return Err("message body differs".into());
    }
    Ok(())
}

#[test]
fn injection_is_all_or_nothing() {
    crash_every_op(
        "injection",
        |_| async { None },
        |q, _| async move { inject(&q).await.map(|_| ()) },
        |q, _, acked| async move {
            let ids = all_ids(&q).await;
            match ids.as_slice() {
                [] if acked => Err("acknowledged message lost".into()),
                [] => Ok(()),
                [id] => {
                    let (_, env) = q.read_todo(*id).await.map_err(|e| e.to_string())?;
                    if env != envelope() {
                        return Err("envelope differs".into());
                    }
                    whole(&q, *id).await
                }
                more => Err(format!("{} messages", more.len())),
            }
        },
    );
}

async fn injected(q: Queue<SimEnv>) -> Option<MsgId> {
    Some(inject(&q).await.unwrap())
}

async fn taken_in(q: Queue<SimEnv>) -> Option<MsgId> {
    let id = inject(&q).await.unwrap();
    q.preprocess(id, route).await.unwrap();
    Some(id)
}

#[test]
fn intake_is_all_or_nothing() {
    crash_every_op(
        "intake",
        injected,
        |q, id| async move {
            q.preprocess(id.unwrap(), route)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
        |q, id, done| intake_held(q, id.unwrap(), done),
    );
}

/// After a crash in intake: the message is in todo/ not taken in (and
/// intake again works) or taken in, with every recipient to do; whole.
async fn intake_held(q: Queue<SimEnv>, id: MsgId, done: bool) -> Result<(), String> {
    let todo = q.list_todo().await.unwrap();
    let active = q.list_active().await.unwrap();
    if todo == [id] && active.is_empty() && !done {
        // Not taken in yet: intake again must work.
        q.preprocess(id, route).await.map_err(|e| e.to_string())?;
    } else if !(todo.is_empty() && active == [id]) {
        return Err(format!("todo {todo:?} active {active:?}"));
    }
    let st = q.load(id).await.map_err(|e| e.to_string())?;
    let local: Vec<_> = st
        .local
        .iter()
        .map(|r| (r.address.as_str(), r.done))
        .collect();
    let remote: Vec<_> = st
        .remote
        .iter()
        .map(|r| (r.address.as_str(), r.done))
        .collect();
    if local != [("bob@local.test", false), ("carol@local.test", false)]
        || remote != [("dave@remote.test", false)]
    {
        return Err(format!("state {local:?} {remote:?}"));
    }
    whole(&q, id).await
}

#[test]
fn a_done_recipient_stays_done() {
    crash_every_op(
        "checkpoint",
        |q| async move {
            let id = taken_in(q.clone()).await.unwrap();
            let st = q.load(id).await.unwrap();
            q.mark_done(id, Channel::Local, &st.local[1]).await.unwrap();
            Some(id)
        },
        |q, id| async move { mark_remote_done(&q, id.unwrap()).await },
        |q, id, acked| checkpoint_held(q, id.unwrap(), acked, true),
    );
}

/// The checkpoint step: the remote recipient is done.
async fn mark_remote_done(q: &Queue<SimEnv>, id: MsgId) -> Result<(), String> {
    let st = q.load(id).await.map_err(|e| e.to_string())?;
    q.mark_done(id, Channel::Remote, &st.remote[0])
        .await
        .map_err(|e| e.to_string())
}

/// After a crash in the checkpoint step: an earlier checkpoint (carol's,
/// when `earlier`) stands, bob was never done, and an acknowledged
/// checkpoint survived.
async fn checkpoint_held(
    q: Queue<SimEnv>,
    id: MsgId,
    acked: bool,
    earlier: bool,
) -> Result<(), String> {
    let st = q.load(id).await.map_err(|e| e.to_string())?;
    if st.local[1].done != earlier {
        return Err(format!("carol's earlier checkpoint: {}", st.local[1].done));
    }
    if st.local[0].done {
        return Err("a recipient nobody delivered is done".into());
    }
    if acked && !st.remote[0].done {
        return Err("acknowledged checkpoint lost".into());
    }
    whole(&q, id).await
}

#[test]
fn removal_finishes_or_leaves_a_finished_message() {
    crash_every_op(
        "removal",
        |q| async move {
            let id = taken_in(q.clone()).await.unwrap();
            q.record_failure(
                id,
                "carol@local.test",
                "Sorry, no mailbox here by that name. (#5.1.1)",
            )
            .await
            .unwrap();
            q.bounce_sent(id).await.unwrap();
            let st = q.load(id).await.unwrap();
            for r in &st.local {
                q.mark_done(id, Channel::Local, r).await.unwrap();
            }
            q.mark_done(id, Channel::Remote, &st.remote[0])
                .await
                .unwrap();
            Some(id)
        },
        |q, id| async move {
            match q.remove_if_done(id.unwrap()).await {
                Ok(true) => Ok(()),
                Ok(false) => Err("not removed".into()),
                Err(e) => Err(e.to_string()),
            }
        },
        |q, id, _| async move {
            let id = id.unwrap();
            if all_ids(&q).await.is_empty() {
                return Ok(());
            }
            // Still there: then whole, every recipient done, and removable.
            let st = q.load(id).await.map_err(|e| e.to_string())?;
            if !st.finished() {
                return Err(format!("a recipient came back undone: {st:?}"));
            }
            whole(&q, id).await?;
            if !q.remove_if_done(id).await.map_err(|e| e.to_string())?
                || !all_ids(&q).await.is_empty()
            {
                return Err("could not finish the removal".into());
            }
            Ok(())
        },
    );
}

/// Fails the next sync, runs `attempt` (which must fail), then runs it again
/// as the scheduler does after a failure: the step "a sync fails, the step
/// is retried" that the crash sweep then cuts at every operation.
async fn retried_after_a_failed_sync<F, Fut>(q: &Queue<SimEnv>, attempt: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    q.env().fs.fail_next_syncs(1);
    if attempt().await.is_ok() {
        return Err("the step succeeded through a failed sync".into());
    }
    attempt().await
}

#[test]
fn intake_retried_after_a_failed_sync_is_all_or_nothing() {
    crash_every_op(
        "intake retried",
        injected,
        |q, id| async move {
            let id = id.unwrap();
            retried_after_a_failed_sync(&q, || async {
                q.preprocess(id, route)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
        },
        |q, id, done| intake_held(q, id.unwrap(), done),
    );
}

#[test]
fn a_checkpoint_retried_after_a_failed_sync_stays_done() {
    crash_every_op(
        "checkpoint retried",
        taken_in,
        |q, id| async move {
            let id = id.unwrap();
            retried_after_a_failed_sync(&q, || mark_remote_done(&q, id)).await
        },
        |q, id, acked| checkpoint_held(q, id.unwrap(), acked, false),
    );
}

/// The scheduler's order for a permanent failure: record it for the bounce
/// (retried after a failed sync), then mark the recipient done. A done mark
/// never outlives its failure record, and no record names an empty or
/// foreign recipient.
#[test]
fn a_failure_record_retried_after_a_failed_sync_outlives_its_done_mark() {
    const REASON: &str = "Sorry, no mailbox here by that name. (#5.1.1)";
    crash_every_op(
        "failure record retried",
        taken_in,
        |q, id| async move {
            let id = id.unwrap();
            retried_after_a_failed_sync(&q, || async {
                q.record_failure(id, "carol@local.test", REASON)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
            let st = q.load(id).await.map_err(|e| e.to_string())?;
            q.mark_done(id, Channel::Local, &st.local[1])
                .await
                .map_err(|e| e.to_string())
        },
        |q, id, acked| async move {
            let id = id.unwrap();
            let st = q.load(id).await.map_err(|e| e.to_string())?;
            let failures = q.failures(id).await.map_err(|e| e.to_string())?;
            if let Some(f) = failures
                .iter()
                .find(|(r, why)| r != "carol@local.test" || why != REASON)
            {
                return Err(format!("a record no step wrote: {f:?}"));
            }
            if st.local[1].done && failures.is_empty() {
                return Err("carol is done but her failure was lost".into());
            }
            if acked && !st.local[1].done {
                return Err("acknowledged done mark lost".into());
            }
            if st.local[0].done || st.remote[0].done {
                return Err("a recipient nobody delivered is done".into());
            }
            whole(&q, id).await
        },
    );
}

/// A rename whose new name became durable while the removal of the old one
/// did not (ext4 without a journal can do that): the message is in todo/
/// and mess/ at once. Recovery drops the old name; the done marks stand.
#[test]
fn a_message_in_both_todo_and_mess_keeps_its_done_marks() {
    let rt = rt();
    let fs = SimFs::new(3);
    let q = Queue::new(env(&fs, 3), ROOT);
    rt.block_on(async {
        q.create().await.unwrap();
        let id = inject(&q).await.unwrap();
        let st = q.preprocess(id, route).await.unwrap();
        q.mark_done(id, Channel::Local, &st.local[0]).await.unwrap();
        // The old name comes back, as a crash could have left it.
        fs.link(&q.layout().mess(id), &q.layout().todo(id))
            .await
            .unwrap();
        let report = q.recover().await.unwrap();
        assert_eq!((report.stale_todo, report.todo, report.active), (1, 0, 1));
        assert!(q.list_todo().await.unwrap().is_empty());
        let after = q.load(id).await.unwrap();
        assert!(after.local[0].done, "the done mark survives");
        whole(&q, id).await.unwrap();
    });
}
