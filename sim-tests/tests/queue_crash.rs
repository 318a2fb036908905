//! The queue under crashes: for injection, intake, a recipient checkpoint and
//! removal, crash after every filesystem operation in turn, under many random
//! keep/lose outcomes at each, then recover and check what is left.

use std::future::Future;

use qmail_core::env::{Env, Fs, Identity};
use qmail_core::queue::{Channel, Envelope, MsgId, Queue};
use qmail_io_sim::{CrashOptions, SimEnv, SimFs};

const ROOT: &str = "/var/qmail/queue";
/// Crash outcomes tried after each operation.
const SEEDS_PER_OP: u64 = 24;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn env_on(fs: &SimFs, seed: u64) -> SimEnv {
    SimEnv::new(
        fs.clone(),
        seed,
        Identity {
            pid: 77,
            uid: 100,
            gid: 100,
            hostname: "sim".into(),
        },
    )
}

fn envelope() -> Envelope {
    Envelope {
        sender: "alice@example.org".into(),
        recipients: vec![
            "bob@local.test".into(),
            "carol@local.test".into(),
            "dave@remote.test".into(),
        ],
    }
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
    let mut inj = q.begin().await.map_err(|e| e.to_string())?;
    for chunk in message().chunks(700) {
        inj.write(chunk).await.map_err(|e| e.to_string())?;
    }
    inj.commit(&envelope(), 100, 77)
        .await
        .map_err(|e| e.to_string())
}

fn crash_opts(seed: u64) -> CrashOptions {
    let keep = [0.0, 0.2, 0.5, 0.8, 1.0][(seed % 5) as usize];
    CrashOptions {
        keep_probability: keep,
        torn_block: Some(512),
    }
}

/// Runs `setup` durably, counts the mutations `step` makes when nothing fails,
/// then for every prefix of those and every seed: setup, halt, step, crash,
/// recover, and hand the recovered queue and the step's result to `check`.
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
        let q = Queue::new(env_on(&fs, seed), ROOT);
        let id = rt.block_on(async {
            q.create().await.unwrap();
            setup(q.clone()).await
        });
        (fs, q, id)
    };
    let (fs, q, id) = prepare(0);
    let before = fs.stats().mutations;
    rt.block_on(step(q, id))
        .expect("the step succeeds without faults");
    let ops = fs.stats().mutations - before;
    assert!(ops >= 2, "{name}: step made {ops} mutations");
    let mut states = 0;
    for k in 0..=ops {
        for seed in 0..SEEDS_PER_OP {
            let (fs, q, id) = prepare(seed);
            fs.halt_after(k);
            let ok = rt.block_on(step(q, id)).is_ok();
            assert_eq!(
                ok,
                k == ops,
                "{name}: the step succeeds only when nothing was cut"
            );
            fs.resume();
            fs.crash(seed * 1000 + k, crash_opts(seed));
            let q = Queue::new(env_on(&fs, seed + 1), ROOT);
            let r = rt.block_on(async {
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
            });
            if let Err(e) = r {
                panic!("{name}: crash after op {k}/{ops}, seed {seed}: {e}");
            }
            states += 1;
        }
    }
    eprintln!("{name}: {ops} operations, {states} crash states checked");
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
        |q, id, done| async move {
            let id = id.unwrap();
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
        },
    );
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
        |q, id| async move {
            let id = id.unwrap();
            let st = q.load(id).await.map_err(|e| e.to_string())?;
            q.mark_done(id, Channel::Remote, &st.remote[0])
                .await
                .map_err(|e| e.to_string())
        },
        |q, id, acked| async move {
            let id = id.unwrap();
            let st = q.load(id).await.map_err(|e| e.to_string())?;
            if !st.local[1].done {
                return Err("earlier checkpoint lost".into());
            }
            if st.local[0].done {
                return Err("a recipient nobody delivered is done".into());
            }
            if acked && !st.remote[0].done {
                return Err("acknowledged checkpoint lost".into());
            }
            whole(&q, id).await
        },
    );
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

/// A rename whose new name became durable while the removal of the old one
/// did not (ext4 without a journal can do that): the message is in todo/
/// and mess/ at once. Recovery drops the old name; the done marks stand.
#[test]
fn a_message_in_both_todo_and_mess_keeps_its_done_marks() {
    let rt = rt();
    let fs = SimFs::new(3);
    let q = Queue::new(env_on(&fs, 3), ROOT);
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
