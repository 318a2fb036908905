//! qmail-send's log lines, byte for byte, so qmailanalog-style tools work.
//! They are emitted through `tracing` with target [`LOG_TARGET`]; the
//! binaries print that target's messages bare, one per line.

use crate::queue::{Channel, MsgId};

/// The `tracing` target of qmail-send's log lines.
pub const LOG_TARGET: &str = "qmail_send";

pub(crate) fn emit(line: &str) {
    tracing::info!(target: "qmail_send", "{line}");
}

/// A delivery report made safe for one log line: newlines become `/`,
/// spaces `_`, other unprintable bytes `?`.
pub fn log_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '/',
            ' ' => '_',
            c if (c as u32) < 33 || c as u32 == 127 => '?',
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
    format!("info msg {id}: bytes {bytes} from <{sender}> qp {qp} uid {uid}")
}

pub fn starting(number: u64, id: MsgId, ch: Channel, rcpt: &str) -> String {
    format!(
        "starting delivery {number}: msg {id} to {} {rcpt}",
        channel_name(ch)
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
    }
}
