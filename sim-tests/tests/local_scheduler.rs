//! The scheduler with the real local delivery agent (embedded mode) in the
//! simulated world: messages to two users and a forwarding alias end up in
//! the maildirs, and a crash at any operation of the whole life (injection,
//! intake, maildir deliveries, the forward's own injection and delivery,
//! checkpoints, removal) loses nothing that was accepted and never leaves a
//! partial file in a maildir.

use std::path::PathBuf;
use std::time::Duration;

use qmail_core::deliver::{Deliver, DeliveryJob, Outcome};
use qmail_core::local::{LocalConfig, LocalDelivery, Mode};
use qmail_core::send::{Router, SendControl};
use qmail_sim_tests::kit::crash::{Checked, at_least_once, crash_sweep, mutations_of};
use qmail_sim_tests::kit::host::{MtaSpec, MtaWorld, message};

const HOST: &str = "sim.test";
const HOME: &str = "/home";
const BODY: &str = "From: alice@example.org\nSubject: to the team\n\nFrom the body.\n";
const SENDER: &str = "alice@example.org";

/// Remote delivery is not part of this world.
#[derive(Clone)]
struct NoRemote;

impl Deliver for NoRemote {
    async fn deliver(&self, job: DeliveryJob) -> Vec<Outcome> {
        vec![Outcome::Deferral("no remote delivery here\n".into()); job.recipients.len()]
    }
}

fn world(seed: u64) -> MtaWorld {
    let mut control = SendControl::defaults(HOST);
    control.router = Router::new(HOST, [HOST.to_string()], [], []);
    let mut spec = MtaSpec::new(seed, HOME, control);
    spec.files = vec![(
        spec.home.alias().join(".qmail-team"),
        b"u3@sim.test\n".to_vec(),
    )];
    spec.messages = vec![message(
        SENDER,
        &["u1@sim.test", "u2@sim.test", "team@sim.test"],
        BODY,
    )];
    spec.build((), |queue, home| {
        let local = LocalDelivery::new(
            queue.clone(),
            home.clone(),
            LocalConfig::new(Mode::Embedded, home),
        );
        (local, NoRemote)
    })
}

/// Every file in a user's maildir new/.
fn mail(w: &MtaWorld, user: &str) -> Vec<Vec<u8>> {
    w.files_in(
        &PathBuf::from(HOME)
            .join("mailboxes")
            .join(user)
            .join("Maildir/new"),
    )
}

fn delivered(w: &MtaWorld) -> bool {
    ["u1", "u2", "u3"].iter().all(|u| !mail(w, u).is_empty()) && w.queue_empty()
}

fn direct(user: &str) -> Vec<u8> {
    format!("Return-Path: <{SENDER}>\nDelivered-To: {user}@sim.test\n{BODY}").into_bytes()
}

/// The forwarded copy u3 gets: its own lines, the queue's Received line for
/// the alias, the alias's Delivered-To line, the message.
fn forwarded_ok(m: &[u8]) -> bool {
    let text = String::from_utf8_lossy(m);
    let head = format!(
        "Return-Path: <{SENDER}>\nDelivered-To: u3@sim.test\nReceived: (qmail 4242 invoked by alias); "
    );
    let tail = format!(" -0000\nDelivered-To: team@sim.test\n{BODY}");
    text.starts_with(&head) && text.ends_with(&tail) && text.len() < head.len() + tail.len() + 30
}

#[test]
fn two_users_and_a_forward_are_delivered() {
    let mut w = world(1);
    assert!(
        w.run_until(Duration::from_secs(600), delivered),
        "not delivered"
    );
    assert_eq!(mail(&w, "u1"), vec![direct("u1")]);
    assert_eq!(mail(&w, "u2"), vec![direct("u2")]);
    let u3 = mail(&w, "u3");
    assert_eq!(u3.len(), 1);
    assert!(forwarded_ok(&u3[0]), "{}", String::from_utf8_lossy(&u3[0]));
}

#[test]
fn a_crash_anywhere_loses_no_accepted_mail() {
    let mut w = world(3);
    let (total, done) = mutations_of(&w.fs.clone(), || {
        w.run_until(Duration::from_secs(600), delivered)
    });
    assert!(done);
    assert!(total > 40, "only {total} operations?");
    let mut duplicates = 0;
    let swept = crash_sweep("local life", total, 2, |point| {
        let mut w = world(3);
        w.crash_at(&point, Duration::from_secs(30));
        let drained = w.run_until(Duration::from_secs(900), |w| w.queue_empty());
        for u in ["u1", "u2"] {
            if mail(&w, u).iter().any(|m| *m != direct(u)) {
                return Err(format!("partial or wrong file for {u}"));
            }
        }
        if let Some(m) = mail(&w, "u3").iter().find(|m| !forwarded_ok(m)) {
            return Err(format!("bad forwarded copy {}", String::from_utf8_lossy(m)));
        }
        if !w.all_acknowledged() {
            return Ok(Checked::NothingAccepted);
        }
        if !drained {
            return Err("the queue did not drain".into());
        }
        at_least_once(
            ["u1", "u2", "u3"].map(|u| (u, mail(&w, u).len())),
            &mut duplicates,
        )?;
        Ok(Checked::Held)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{duplicates} duplicates");
    assert!(swept.held > total as usize);
}
