//! The oracle: DESIGN section 1, checked once faults have stopped and the
//! queue has drained.
//!
//! For every accepted message and every envelope recipient: a delivery (a
//! maildir file, a delivery program's exit 0, a remote MTA's `250`), or a
//! bounce naming that recipient that was itself delivered. Never: a
//! delivery to an address that was not a recipient, a body that differs from
//! the accepted one (trace headers aside), a partial file in a maildir's
//! `new/` or `cur/`, a bounce sent to anyone but the sender (or the
//! postmaster for a double bounce). Duplicates are counted, not failed.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use qmail_io_sim::SnapEntry;

use crate::ledger::LedgerInner;
use crate::traffic::TEAM;
use crate::{DOMAIN, HOME};

/// What the oracle found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Accepted messages.
    pub accepted: usize,
    /// (message, recipient) pairs of accepted messages that were delivered.
    pub delivered: usize,
    /// (message, recipient) pairs of accepted messages that were bounced.
    pub bounced: usize,
    /// Deliveries beyond the first of one message to one recipient.
    pub duplicates: usize,
    pub violations: Vec<String>,
}

/// One delivery found at the end: where, to whom, what.
struct Found<'a> {
    place: String,
    recipient: String,
    data: &'a [u8],
}

/// Lines qmail adds in front of a message on its way: they are not part of
/// the body the guarantee compares.
fn strip_trace(mut data: &[u8]) -> &[u8] {
    loop {
        let is_trace = [
            &b"Return-Path:"[..],
            b"Delivered-To:",
            b"Received:",
            b" ",
            b"\t",
        ]
        .iter()
        .any(|p| data.starts_with(p));
        if !is_trace {
            return data;
        }
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => data = &data[i + 1..],
            None => return &data[data.len()..],
        }
    }
}

fn header_block(data: &[u8]) -> &[u8] {
    let end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    &data[..end]
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}

/// Every `X-Sim:` token in `data`.
fn tokens(data: &[u8]) -> Vec<String> {
    lines(data)
        .filter_map(|l| l.strip_prefix(b"X-Sim: "))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

fn is_bounce(msg: &[u8]) -> bool {
    lines(header_block(msg)).any(|l| l == b"Subject: failure notice")
}

/// The first `Delivered-To:` address.
fn delivered_to(data: &[u8]) -> Option<String> {
    lines(header_block(data))
        .find_map(|l| l.strip_prefix(b"Delivered-To: "))
        .map(|a| String::from_utf8_lossy(a).into_owned())
}

/// A recipient as the queue stores it: an address without a domain gets
/// `envnoathost` (the MTA's domain) at intake; case does not matter.
fn canonical(addr: &str) -> String {
    let a = addr.to_ascii_lowercase();
    if a.contains('@') {
        a
    } else {
        format!("{a}@{DOMAIN}")
    }
}

/// Every maildir file in `new/` or `cur/` below the mailboxes.
fn maildir_files(
    snapshot: &BTreeMap<std::path::PathBuf, SnapEntry>,
) -> Vec<(String, String, &[u8])> {
    let root = Path::new(HOME).join("mailboxes");
    let mut out = Vec::new();
    for (path, entry) in snapshot.range(root.clone()..) {
        if !path.starts_with(&root) {
            break;
        }
        let SnapEntry::File(data) = entry else {
            continue;
        };
        let parts: Vec<String> = path
            .strip_prefix(&root)
            .expect("under root")
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        // <box>/Maildir/{new,cur}/<name>
        if parts.len() == 4 && parts[1] == "Maildir" && (parts[2] == "new" || parts[2] == "cur") {
            out.push((
                parts[0].clone(),
                path.display().to_string(),
                data.as_slice(),
            ));
        }
    }
    out
}

/// Checks the guarantee. `snapshot` is the MTA's filesystem after the
/// drain; `ledger` what the clients, remote MTAs and programs recorded.
pub fn check(snapshot: &BTreeMap<std::path::PathBuf, SnapEntry>, ledger: &LedgerInner) -> Verdict {
    let mut v = Verdict::default();
    let mut found: Vec<Found> = Vec::new();
    for (mailbox, place, data) in maildir_files(snapshot) {
        let Some(rcpt) = delivered_to(data) else {
            v.violations
                .push(format!("{place}: no Delivered-To line (partial file?)"));
            continue;
        };
        let local = rcpt.rsplit_once('@').map_or(rcpt.as_str(), |(l, _)| l);
        if local.to_ascii_lowercase() != mailbox {
            v.violations
                .push(format!("{place}: delivered to {rcpt} in mailbox {mailbox}"));
        }
        found.push(Found {
            place,
            recipient: rcpt,
            data,
        });
    }
    for (kind, list) in [("remote", &ledger.remote), ("program", &ledger.programs)] {
        for (i, h) in list.iter().enumerate() {
            found.push(Found {
                place: format!("{kind} delivery #{i} to {}", h.recipient),
                recipient: h.recipient.clone(),
                data: &h.data,
            });
        }
    }

    // (token, recipient of the envelope) -> deliveries; team's legs are
    // counted as (token, "team@…>bob@…").
    let mut delivered: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut bounced: BTreeMap<(String, String), usize> = BTreeMap::new();
    let team = format!("team@{DOMAIN}");
    for f in &found {
        let msg = strip_trace(f.data);
        let toks = tokens(msg);
        let Some(token) = toks.first() else {
            v.violations.push(format!(
                "{}: no message token (partial or foreign file)",
                f.place
            ));
            continue;
        };
        let Some(sent) = ledger.sent.get(token) else {
            v.violations
                .push(format!("{}: token {token} was never sent", f.place));
            continue;
        };
        let rcpt = canonical(&f.recipient);
        if is_bounce(msg) {
            let text = String::from_utf8_lossy(msg);
            let double = text.contains("but the bounce bounced!");
            let want = if double {
                format!("postmaster@{DOMAIN}")
            } else {
                sent.sender.to_ascii_lowercase()
            };
            if rcpt != want {
                v.violations.push(format!(
                    "{}: bounce of {token} went to {rcpt}, not {want:?}",
                    f.place
                ));
            }
            for l in text.lines() {
                if let Some(a) = l.strip_prefix('<').and_then(|l| l.strip_suffix(">:")) {
                    if sent.recipients.iter().any(|r| canonical(r) == canonical(a)) {
                        *bounced.entry((token.clone(), canonical(a))).or_default() += 1;
                    } else if !(double && a == sent.sender) {
                        v.violations.push(format!(
                            "{}: bounce of {token} names {a}, not a recipient",
                            f.place
                        ));
                    }
                }
            }
            continue;
        }
        if msg != sent.body.as_slice() {
            let what = if sent.body.starts_with(msg) {
                "a partial copy"
            } else {
                "a body that differs"
            };
            v.violations.push(format!(
                "{}: {what} of {token} ({} bytes, {} expected)",
                f.place,
                msg.len(),
                sent.body.len()
            ));
            continue;
        }
        let via_team = TEAM.iter().any(|u| rcpt == format!("{u}@{DOMAIN}"))
            && lines(header_block(f.data)).any(|l| l == format!("Delivered-To: {team}").as_bytes());
        let key = if via_team {
            if !sent.recipients.contains(&team) {
                v.violations.push(format!(
                    "{}: {token} forwarded by team@ but team@ was not a recipient",
                    f.place
                ));
                continue;
            }
            format!("{team}>{rcpt}")
        } else {
            if !sent.recipients.iter().any(|r| canonical(r) == rcpt) {
                v.violations.push(format!(
                    "{}: {token} delivered to {rcpt}, not a recipient",
                    f.place
                ));
                continue;
            }
            rcpt
        };
        *delivered.entry((token.clone(), key)).or_default() += 1;
    }

    for (token, sent) in &ledger.sent {
        if !sent.accepted {
            continue;
        }
        v.accepted += 1;
        for r in &sent.recipients {
            let key = (token.clone(), canonical(r));
            let count = |k: &str| delivered.get(&(token.clone(), k.to_string())).copied();
            let n = if *r == team {
                TEAM.iter()
                    .map(|u| count(&format!("{team}>{u}@{DOMAIN}")).unwrap_or(0))
                    .min()
                    .unwrap_or(0)
            } else {
                count(&key.1).unwrap_or(0)
            };
            if n > 0 {
                v.delivered += 1;
            } else if bounced.contains_key(&key) {
                v.bounced += 1;
            } else {
                v.violations.push(format!(
                    "lost: accepted message {token} never reached {r} and was not bounced"
                ));
            }
        }
    }
    for ((token, _), n) in &delivered {
        if ledger.sent.get(token).is_some_and(|s| s.accepted) {
            v.duplicates += n - 1;
        }
    }
    v
}
