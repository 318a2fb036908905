//! qmail-send's log lines, byte for byte, so qmailanalog-style tools work.
//! They are emitted through `tracing` with target [`LOG_TARGET`]; the
//! binaries print that target's messages bare, one per line.

use crate::logsafe::logsafe;
use crate::queue::{Channel, MsgId};

/// The `tracing` target of qmail-send's log lines.
pub const LOG_TARGET: &str = "qmail_send";

pub(crate) fn emit(line: &str) {
    tracing::info!(target: "qmail_send", "{line}");
}

/// A delivery report made safe for one log line: newlines become `/`,
/// spaces `_`, other unprintable characters (C0 and C1 controls, DEL) `?`.
pub fn log_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '/',
            ' ' => '_',
            c if (c as u32) < 33 || c.is_control() => '?',
            c => c,
        })
        .collect()
}

pub fn channel_name(ch: Channel) -> &'static str {
    match ch {
        Channel::Local => "local",
        Channel::Remote => "remote",
    }
}

pub fn new_msg(id: MsgId) -> String {
    format!("new msg {id}")
}

pub fn info_msg(id: MsgId, bytes: u64, sender: &str, qp: u32, uid: u32) -> String {
    // Addresses are remote text: qmail-send's logsafe.
    let sender = logsafe(sender);
    format!("info msg {id}: bytes {bytes} from <{sender}> qp {qp} uid {uid}")
}

pub fn starting(number: u64, id: MsgId, ch: Channel, rcpt: &str) -> String {
    format!(
        "starting delivery {number}: msg {id} to {} {}",
        channel_name(ch),
        logsafe(rcpt)
    )
}

pub fn status(local: usize, local_max: usize, remote: usize, remote_max: usize) -> String {
    format!("status: local {local}/{local_max} remote {remote}/{remote_max}")
}

pub fn delivery(number: u64, kind: &str, report: &str) -> String {
    format!("delivery {number}: {kind}: {}", log_safe(report))
}

pub fn bounce_msg(id: MsgId, qp: u32) -> String {
    format!("bounce msg {id} qp {qp}")
}

pub fn end_msg(id: MsgId) -> String {
    format!("end msg {id}")
}

pub fn triple_bounce(id: MsgId) -> String {
    format!("triple bounce: discarding bounce/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_made_safe_as_qmail_does() {
        assert_eq!(log_safe("did 1+0+0\n"), "did_1+0+0/");
        assert_eq!(
            log_safe("Sorry, no mailbox here by that name. (#5.1.1)\n"),
            "Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/"
        );
        assert_eq!(log_safe("a\tb\rc\u{7f}"), "a?b?c?");
        assert_eq!(log_safe("\u{9b}31m\u{e9}"), "?31m\u{e9}");
    }

    #[test]
    fn addresses_are_made_safe_as_qmail_does() {
        let id = MsgId(7);
        assert_eq!(
            info_msg(id, 10, "a b\r\nstatus: forged@x", 1, 2),
            "info msg 7: bytes 10 from <a?b??status:?forged@x> qp 1 uid 2"
        );
        assert_eq!(
            starting(3, id, Channel::Local, "bob\u{1b}[2J@x"),
            "starting delivery 3: msg 7 to local bob?[2J@x"
        );
    }
}
