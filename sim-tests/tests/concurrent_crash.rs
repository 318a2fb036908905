//! Crash points with several messages in flight at once: four messages
//! queued concurrently (their injections share `todo/` syncs), taken in
//! together, and delivered with overlapping deliveries (real maildir
//! deliveries to two users, slow remote deliveries two at a time), their
//! checkpoints overlapping too. A crash after every filesystem operation of
//! that whole life, under the kit's outcomes: every acknowledged message
//! reaches every recipient, nothing reaches anyone else, no maildir file is
//! partial, and the queue drains.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmail_core::deliver::{Deliver, DeliveryJob, Outcome};
use qmail_core::env::{Env, Fs, FsFile, OpenOptions};
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::send::{Router, SendControl};
use qmail_io_sim::SimFs;
use qmail_sim_tests::kit::crash::{Checked, at_least_once, crash_sweep, mutations_of};
use qmail_sim_tests::kit::host::{MtaSpec, MtaWorld, message};

const HOST: &str = "sim.test";
const HOME: &str = "/home";
const MESSAGES: usize = 4;
const SENDER: &str = "alice@example.org";

fn body(i: usize) -> String {
    format!(
        "Subject: in flight {i}\n\n{}\n",
        "line of text\n".repeat(40 * (i + 1))
    )
}

fn remote_rcpt(i: usize) -> String {
    format!("r{i}@far.test")
}

/// What the remote MTAs accepted: (recipient, message).
type Accepted = Arc<Mutex<Vec<(String, String)>>>;

/// Remote MTAs that take two seconds and accept.
#[derive(Clone)]
struct SlowRemote {
    fs: SimFs,
    accepted: Accepted,
}

impl Deliver for SlowRemote {
    async fn deliver(&self, job: DeliveryJob) -> Vec<Outcome> {
        let n = job.recipients.len();
        let read = async {
            let mut f = self
                .fs
                .open(&job.message.path, &OpenOptions::read())
                .await?;
            f.seek(job.message.offset).await?;
            let mut data = vec![0u8; job.message.len as usize];
            let mut got = 0;
            while got < data.len() {
                match f.read(&mut data[got..]).await? {
                    0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                    k => got += k,
                }
            }
            Ok::<_, std::io::Error>(data)
        };
        let data = match read.await {
            Ok(d) => d,
            Err(e) => return vec![Outcome::Deferral(format!("read: {e}\n")); n],
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = String::from_utf8_lossy(&data).into_owned();
        let mut acc = self.accepted.lock().unwrap();
        for r in &job.recipients {
            acc.push((r.address.clone(), text.clone()));
        }
        vec![Outcome::Success("250 ok\n".into()); n]
    }
}

fn world(seed: u64) -> MtaWorld<Accepted> {
    let mut control = SendControl::defaults(HOST);
    control.router = Router::new(HOST, [HOST.to_string()], [], []);
    control.concurrency_local = 3;
    control.concurrency_remote = 2;
    let mut spec = MtaSpec::new(seed, HOME, control);
    spec.concurrent = true;
    spec.messages = (0..MESSAGES)
        .map(|i| {
            let r = remote_rcpt(i);
            message(SENDER, &["u1@sim.test", "u2@sim.test", &r], &body(i))
        })
        .collect();
    let accepted: Accepted = Arc::default();
    spec.build(accepted.clone(), move |queue, home| {
        let local = LocalDelivery::new(
            queue.clone(),
            home.clone(),
            LocalConfig::new(Mode::Embedded, home),
        );
        let remote = SlowRemote {
            fs: queue.env().fs().clone(),
            accepted: accepted.clone(),
        };
        (local, remote)
    })
}

/// Every file in a user's maildir `new/`.
fn mail(w: &MtaWorld<Accepted>, user: &str) -> Vec<String> {
    w.files_in(&std::path::PathBuf::from(format!(
        "{HOME}/mailboxes/{user}/Maildir/new"
    )))
    .into_iter()
    .map(|b| String::from_utf8_lossy(&b).into_owned())
    .collect()
}

/// The message a maildir file holds, if it is one of ours, whole.
fn which(user: &str, file: &str) -> Option<usize> {
    let head = format!("Return-Path: <{SENDER}>\nDelivered-To: {user}@sim.test\n");
    let rest = file.strip_prefix(&head)?;
    (0..MESSAGES).find(|i| rest == body(*i))
}

fn delivered(w: &MtaWorld<Accepted>) -> bool {
    w.queue_empty()
        && w.all_acknowledged()
        && ["u1", "u2"].iter().all(|u| mail(w, u).len() >= MESSAGES)
}

#[test]
fn several_messages_in_flight_lose_nothing_at_any_crash_point() {
    let mut w = world(11);
    let (total, done) = mutations_of(&w.fs.clone(), || {
        w.run_until(Duration::from_secs(600), delivered)
    });
    assert!(done, "the messages were not delivered without a crash");
    // Overlap really happened: the remote deliveries ran two at a time.
    assert!(total > 80, "only {total} operations?");
    let mut duplicates = 0;
    let swept = crash_sweep("four in flight", total, 2, |point| {
        let mut w = world(11);
        w.crash_at(&point, Duration::from_secs(30));
        let drained = w.run_until(Duration::from_secs(900), |w| w.queue_empty());
        let mut copies = [[0usize; 3]; MESSAGES];
        for (slot, user) in ["u1", "u2"].into_iter().enumerate() {
            for f in mail(&w, user) {
                let Some(i) = which(user, &f) else {
                    return Err(format!("partial or foreign file for {user}: {f:?}"));
                };
                copies[i][slot] += 1;
            }
        }
        for (rcpt, text) in w.extra.lock().unwrap().iter() {
            let Some(i) = (0..MESSAGES).find(|i| *rcpt == remote_rcpt(*i)) else {
                return Err(format!("delivery to a stranger: {rcpt}"));
            };
            if !text.ends_with(&body(i)) {
                return Err(format!("{rcpt} got another message: {text:?}"));
            }
            copies[i][2] += 1;
        }
        if !drained {
            return Err("the queue did not drain".into());
        }
        let acked = w.acknowledged();
        for &i in &acked {
            let names = ["u1", "u2", "remote"].map(|n| format!("message {i} to {n}"));
            at_least_once(
                names.iter().map(String::as_str).zip(copies[i]),
                &mut duplicates,
            )?;
        }
        Ok(if acked.is_empty() {
            Checked::NothingAccepted
        } else {
            Checked::Held
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{duplicates} duplicates");
    assert!(swept.held > total as usize);
}
