//! Arbitrary bytes, cut into arbitrary chunks, fed to the SMTP session: it
//! must never panic, every reply must be a well-formed SMTP reply, what it
//! holds between calls stays bounded, and no accepted envelope address holds
//! a control character (it would reach a header line).

use qmail_core::smtp::{Action, CommitOutcome, SmtpConfig, SmtpSession};

fn well_formed(reply: &[u8]) -> bool {
    reply.ends_with(b"\r\n")
        && reply[..reply.len() - 2].split(|&b| b == b'\n').all(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.len() >= 4
                && line[..3].iter().all(u8::is_ascii_digit)
                && (line[3] == b' ' || line[3] == b'-')
                && !line.contains(&b'\r')
        })
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&cut, input)) = data.split_first() else {
            return;
        };
        let mut config = SmtpConfig::new("fuzz.test");
        config.databytes = 4096;
        let mut session = SmtpSession::new(config);
        let chunk = usize::from(cut).max(1);
        let mut rest = input;
        while !rest.is_empty() && !session.is_closed() {
            let take = chunk.min(rest.len());
            let fed = session.feed(&rest[..take], 1_795_564_800);
            for a in &fed.actions {
                match a {
                    Action::Reply(r) => {
                        assert!(well_formed(r), "bad reply {:?}", String::from_utf8_lossy(r))
                    }
                    Action::BeginMessage { sender, recipients } => {
                        for addr in std::iter::once(sender).chain(recipients) {
                            assert!(
                                !addr.chars().any(char::is_control),
                                "control character accepted in {addr:?}"
                            );
                        }
                    }
                    _ => {}
                }
            }
            if session.awaiting_commit() {
                let _ = session.message_committed(CommitOutcome::Accepted { time: 1, qp: 1 });
            }
            rest = &rest[fed.consumed..];
            assert!(
                session.buffered_len() < 64 * 1024 * 1024,
                "unbounded buffering"
            );
        }
        let _ = session.end_of_input();
    });
}
