//! Bounce messages in qmail's QSBMF layout (qmail-send's own words, as the
//! real qmail produced them: `shared/reference/qmail-observed/bounces.txt`).
//!
//! The text is built here up to the `Return-Path:` line that heads the
//! quoted message; the scheduler streams the message itself after it, so a
//! bounce of a large message does not need it in memory.

use super::control::BounceControl;
use crate::deliver::MessageRef;
use crate::env::Env;
use crate::queue::{Envelope, InvokedFrom, MessageReader, QqExit, Queue, Submission, Submitter};

/// Submits a bounce: `head` (the text up to the quoted message), then the
/// queued message `original`, with `envelope`. Returns the committing
/// process's id. A message that cannot be read whole commits nothing.
pub async fn submit_bounce<E: Env>(
    queue: &Queue<E>,
    original: &MessageRef,
    head: &str,
    envelope: &Envelope,
) -> Result<u32, QqExit> {
    let by = Submitter::me(queue.env(), InvokedFrom::Bounce);
    let mut sub = Submission::open(queue, None, by).await;
    sub.put(head.as_bytes()).await;
    match MessageReader::open(queue.env().fs(), original).await {
        Ok(mut source) => sub.copy_from(&mut source).await,
        Err(_) => sub.fail(QqExit::READ).await,
    }
    sub.close(envelope).await.map(|c| c.qp)
}

/// What to do with the failures recorded for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BouncePlan {
    /// Inject a bounce from `sender` (the envelope sender) to `recipient`.
    Send {
        sender: String,
        recipient: String,
        /// A bounce of a bounce (the "original bounce" wording).
        double: bool,
    },
    /// A double bounce failed, or double bounces go nowhere: drop it (and
    /// log it).
    Discard,
}

/// The sender a bounce goes back to: a VERP owner address `X-@[]` names
/// `X` (qmail-send's rule).
pub fn bounce_return_address(sender: &str) -> &str {
    sender.strip_suffix("-@[]").unwrap_or(sender)
}

/// Where the bounce for a message from `sender` goes.
pub fn plan(sender: &str, control: &BounceControl) -> BouncePlan {
    let sender = bounce_return_address(sender);
    if sender == "#@[]" {
        BouncePlan::Discard
    } else if !sender.is_empty() {
        BouncePlan::Send {
            sender: String::new(),
            recipient: sender.to_string(),
            double: false,
        }
    } else if control.doublebounceto.is_empty() {
        BouncePlan::Discard
    } else {
        BouncePlan::Send {
            sender: "#@[]".into(),
            recipient: format!("{}@{}", control.doublebounceto, control.doublebouncehost),
            double: true,
        }
    }
}

/// The bounce's headers and text, up to and including the `Return-Path:`
/// line of the quoted message. `failures` are (recipient, report) pairs;
/// `original_sender` is the bounced message's envelope sender.
pub fn bounce_head(
    control: &BounceControl,
    date: &str,
    original_sender: &str,
    recipient: &str,
    double: bool,
    failures: &[(String, String)],
) -> String {
    let mut t = String::new();
    t.push_str(&format!("Date: {date}\n"));
    t.push_str(&format!(
        "From: {}@{}\n",
        quote_local(&control.bouncefrom),
        control.bouncehost
    ));
    t.push_str(&format!("To: {}\n", quote_address(recipient)));
    t.push_str("Subject: failure notice\n\n");
    t.push_str(&format!(
        "Hi. This is the qmail-send program at {}.\n",
        control.bouncehost
    ));
    if double {
        t.push_str(
            "I tried to deliver a bounce message to this address, but the bounce bounced!\n\n",
        );
    } else {
        t.push_str(
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n\
             This is a permanent error; I've given up. Sorry it didn't work out.\n\n",
        );
    }
    for (rcpt, report) in failures {
        t.push_str(&format!("<{rcpt}>:\n"));
        t.push_str(&report_paragraph(report));
        t.push('\n');
    }
    t.push_str(if double {
        "--- Below this line is the original bounce.\n\n"
    } else {
        "--- Below this line is a copy of the message.\n\n"
    });
    t.push_str(&format!(
        "Return-Path: <{}>\n",
        quote_address(bounce_return_address(original_sender))
    ));
    t
}

/// A report as one paragraph: ends with a newline, and an empty line inside
/// it becomes `/` so the paragraph does not split (as qmail does).
fn report_paragraph(report: &str) -> String {
    let mut out = String::with_capacity(report.len() + 1);
    for line in report.strip_suffix('\n').unwrap_or(report).split('\n') {
        out.push_str(if line.is_empty() { "/" } else { line });
        out.push('\n');
    }
    if report.is_empty() {
        return String::new();
    }
    out
}

/// An address with its local part quoted where RFC 822 needs it.
pub fn quote_address(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, host)) => format!("{}@{host}", quote_local(local)),
        None => quote_local(addr),
    }
}

fn quote_local(local: &str) -> String {
    let atom_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !local.is_empty()
        && local
            .split('.')
            .all(|a| !a.is_empty() && a.chars().all(atom_char));
    if dot_atom || local.is_empty() {
        return local.to_string();
    }
    let mut q = String::from("\"");
    for c in local.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> BounceControl {
        BounceControl {
            bouncefrom: "MAILER-DAEMON".into(),
            bouncehost: "bench.test".into(),
            doublebounceto: "postmaster".into(),
            doublebouncehost: "bench.test".into(),
        }
    }

    #[test]
    fn who_gets_the_bounce() {
        let c = control();
        assert_eq!(
            plan("u2@bench.test", &c),
            BouncePlan::Send {
                sender: "".into(),
                recipient: "u2@bench.test".into(),
                double: false
            }
        );
        assert_eq!(
            plan("", &c),
            BouncePlan::Send {
                sender: "#@[]".into(),
                recipient: "postmaster@bench.test".into(),
                double: true
            }
        );
        assert_eq!(plan("#@[]", &c), BouncePlan::Discard);
        assert_eq!(
            plan("list-owner-@bench.test-@[]", &c),
            BouncePlan::Send {
                sender: "".into(),
                recipient: "list-owner-@bench.test".into(),
                double: false
            }
        );
        let mut nowhere = control();
        nowhere.doublebounceto.clear();
        assert_eq!(plan("", &nowhere), BouncePlan::Discard);
    }

    #[test]
    fn reports_stay_one_paragraph() {
        assert_eq!(report_paragraph("a\n\nb"), "a\n/\nb\n");
        assert_eq!(report_paragraph("one line"), "one line\n");
        assert_eq!(report_paragraph(""), "");
    }

    #[test]
    fn odd_local_parts_are_quoted() {
        assert_eq!(quote_address("u2@bench.test"), "u2@bench.test");
        assert_eq!(quote_address("a b@x"), "\"a b\"@x");
        assert_eq!(quote_address("a..b@x"), "\"a..b\"@x");
        assert_eq!(quote_address("q\"@x"), "\"q\\\"\"@x");
    }
}
