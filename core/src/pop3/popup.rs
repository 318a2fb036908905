//! qmail-popup's half of a POP3 session: the greeting and the authorization
//! state (USER, PASS, APOP, NOOP, QUIT), as a state machine. It never checks
//! a password itself: it hands `user`, `password` and the greeting's
//! timestamp to a checkpassword program, which on success runs the mailbox
//! server as that user. One attempt per connection, as qmail's: the session
//! ends whatever the answer.

use super::command::{CommandLine, Line};

/// The greeting's timestamp (RFC 1939's APOP challenge):
/// `<pid.unixtime@hostname>`.
pub fn timestamp(pid: u32, unix_secs: u64, hostname: &str) -> String {
    format!("<{pid}.{unix_secs}@{hostname}>")
}

/// The first line the client reads.
pub fn greeting(timestamp: &str) -> Vec<u8> {
    format!("+OK {timestamp}\r\n").into_bytes()
}

/// What checkpassword reads on descriptor 3: the login name, the password
/// (or APOP digest) and the timestamp, each ended by a NUL.
pub struct Credentials {
    pub user: Vec<u8>,
    pub secret: Vec<u8>,
    pub timestamp: String,
}

impl Credentials {
    /// The bytes for descriptor 3.
    pub fn fd3_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.user.len() + self.secret.len() + 64);
        out.extend_from_slice(&self.user);
        out.push(0);
        out.extend_from_slice(&self.secret);
        out.push(0);
        out.extend_from_slice(self.timestamp.as_bytes());
        out.push(0);
        out
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl Drop for Credentials {
    /// The password does not outlive its use in this process's memory.
    fn drop(&mut self) {
        self.secret.iter_mut().for_each(|b| *b = 0);
    }
}

/// What to do after a line.
#[derive(Debug)]
pub enum PopupStep {
    /// Send this and read the next line.
    Reply(Vec<u8>),
    /// Run checkpassword with these credentials; [`after_checkpassword`]
    /// says what the client is told if it does not take the session over.
    Authenticate(Credentials),
    /// Send this and end the session.
    Quit(Vec<u8>),
}

/// How the checkpassword program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpasswordEnd {
    /// Exit 0: it (and the mailbox server it ran) served the session.
    Served,
    /// Any other exit code: the user or password was wrong (or it failed).
    Refused,
    /// Killed by a signal.
    Crashed,
}

/// The last line the client gets from qmail-popup after checkpassword.
pub fn after_checkpassword(end: CheckpasswordEnd) -> Option<&'static [u8]> {
    match end {
        CheckpasswordEnd::Served => None,
        CheckpasswordEnd::Refused => Some(b"-ERR authorization failed\r\n"),
        CheckpasswordEnd::Crashed => Some(b"-ERR aack, child crashed\r\n"),
    }
}

const OK: &[u8] = b"+OK \r\n";
const SYNTAX: &[u8] = b"-ERR syntax error\r\n";

/// The authorization state: the timestamp it greeted with and the USER
/// name given so far.
#[derive(Debug)]
pub struct Popup {
    timestamp: String,
    user: Option<Vec<u8>>,
}

impl Popup {
    pub fn new(timestamp: String) -> Popup {
        Popup {
            timestamp,
            user: None,
        }
    }

    /// Handles one line from [`super::command::LineReader`].
    pub fn on_line(&mut self, line: Line) -> PopupStep {
        let Line::Command(line) = line else {
            return PopupStep::Reply(SYNTAX.to_vec());
        };
        let c = CommandLine::parse(&line);
        match c.verb.as_str() {
            "user" if c.arg.is_empty() => PopupStep::Reply(SYNTAX.to_vec()),
            "user" => {
                self.user = Some(c.arg);
                PopupStep::Reply(OK.to_vec())
            }
            "pass" => match &self.user {
                None => PopupStep::Reply(b"-ERR USER first\r\n".to_vec()),
                Some(_) if c.arg.is_empty() => PopupStep::Reply(SYNTAX.to_vec()),
                Some(user) => PopupStep::Authenticate(Credentials {
                    user: user.clone(),
                    secret: c.arg,
                    timestamp: self.timestamp.clone(),
                }),
            },
            "apop" => match c.arg.iter().position(|&b| b == b' ') {
                None => PopupStep::Reply(SYNTAX.to_vec()),
                Some(i) => PopupStep::Authenticate(Credentials {
                    user: c.arg[..i].to_vec(),
                    secret: c.arg[i + 1..].to_vec(),
                    timestamp: self.timestamp.clone(),
                }),
            },
            "quit" => PopupStep::Quit(OK.to_vec()),
            "noop" => PopupStep::Reply(OK.to_vec()),
            _ => PopupStep::Reply(b"-ERR authorization first\r\n".to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Line {
        Line::Command(s.as_bytes().to_vec())
    }

    fn reply(step: PopupStep) -> String {
        match step {
            PopupStep::Reply(r) | PopupStep::Quit(r) => String::from_utf8(r).unwrap(),
            PopupStep::Authenticate(c) => format!("auth {c:?}"),
        }
    }

    #[test]
    fn user_then_pass_hands_over_the_three_fields() {
        let ts = timestamp(42, 1_700_000_000, "pop.example");
        assert_eq!(greeting(&ts), b"+OK <42.1700000000@pop.example>\r\n");
        let mut p = Popup::new(ts);
        assert_eq!(
            reply(p.on_line(line("STAT\r"))),
            "-ERR authorization first\r\n"
        );
        assert_eq!(reply(p.on_line(line("pass x\r"))), "-ERR USER first\r\n");
        assert_eq!(reply(p.on_line(line("user\r"))), "-ERR syntax error\r\n");
        assert_eq!(reply(p.on_line(line("USER alice\r"))), "+OK \r\n");
        assert_eq!(reply(p.on_line(line("PASS\r"))), "-ERR syntax error\r\n");
        match p.on_line(line("PASS open sesame\r")) {
            PopupStep::Authenticate(c) => assert_eq!(
                c.fd3_bytes(),
                b"alice\0open sesame\0<42.1700000000@pop.example>\0"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn apop_needs_a_name_and_a_digest() {
        let mut p = Popup::new("<1.2@h>".into());
        assert_eq!(
            reply(p.on_line(line("APOP alice\r"))),
            "-ERR syntax error\r\n"
        );
        match p.on_line(line("apop alice c4c9334bac560ecc979e58001b3e22fb")) {
            PopupStep::Authenticate(c) => assert_eq!(
                c.fd3_bytes(),
                b"alice\0c4c9334bac560ecc979e58001b3e22fb\0<1.2@h>\0"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quit_noop_and_overlong_lines() {
        let mut p = Popup::new("<1.2@h>".into());
        assert_eq!(reply(p.on_line(line("NOOP"))), "+OK \r\n");
        assert_eq!(reply(p.on_line(Line::TooLong)), "-ERR syntax error\r\n");
        assert!(matches!(p.on_line(line("quit\r")), PopupStep::Quit(_)));
    }

    #[test]
    fn the_password_is_wiped_and_never_printed() {
        let c = Credentials {
            user: b"u".to_vec(),
            secret: b"hunter2".to_vec(),
            timestamp: "<1.2@h>".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            after_checkpassword(CheckpasswordEnd::Refused),
            Some(&b"-ERR authorization failed\r\n"[..])
        );
        assert_eq!(after_checkpassword(CheckpasswordEnd::Served), None);
    }
}
