//! qmail-pop3d's half of a POP3 session: the transaction state over a
//! maildir's messages, as a state machine. It decides; the driver
//! ([`super::serve`]) reads the message files and applies the QUIT plan.
//!
//! As qmail-pop3d: messages are numbered in the order of their files'
//! modification times; sizes are the files' sizes (LF line ends, as
//! stored); UIDL is the file's maildir name without its `:2,...` info;
//! LAST is the highest message number deleted; deletions happen only at
//! QUIT, when every message left in `new/` moves to `cur/` with `:2,`
//! appended. A connection that ends without QUIT changes nothing.

use super::command::{CommandLine, Line};

/// One message of the maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailMessage {
    /// Path relative to the maildir: `new/NAME` or `cur/NAME`.
    pub name: String,
    /// Size in bytes as stored.
    pub size: u64,
}

impl MailMessage {
    /// The unique id: the maildir name without directory and info.
    pub fn uid(&self) -> &str {
        let base = self.name.split_once('/').map_or(&*self.name, |(_, b)| b);
        base.split_once(':').map_or(base, |(u, _)| u)
    }

    /// Whether the message is still in `new/`.
    pub fn is_new(&self) -> bool {
        self.name.starts_with("new/")
    }
}

/// What QUIT does to the maildir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuitPlan {
    /// Messages to remove (names relative to the maildir).
    pub delete: Vec<String>,
    /// Messages in `new/` to move to `cur/` (as `cur/NAME:2,`).
    pub to_cur: Vec<String>,
}

/// What to do after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop3dStep {
    /// Send this and read the next line.
    Reply(Vec<u8>),
    /// Send `+OK`, then the message (all of it, or its header and this many
    /// body lines), then the final dot; `-ERR unable to open that message`
    /// if it cannot be opened.
    Send {
        name: String,
        body_lines: Option<u64>,
    },
    /// Apply the plan, answer `+OK` (or say which deletions failed) and
    /// end the session.
    Quit(QuitPlan),
}

/// The reply when the message file cannot be opened.
pub const NO_SUCH_MESSAGE: &[u8] = b"-ERR unable to open that message\r\n";
/// The reply to QUIT when a deleted message could not be removed.
pub const NOT_ALL_DELETED: &[u8] = b"-ERR unable to unlink all deleted messages\r\n";
pub const OK: &[u8] = b"+OK \r\n";

/// The transaction state.
#[derive(Debug)]
pub struct Pop3d {
    messages: Vec<MailMessage>,
    deleted: Vec<bool>,
    last: usize,
}

fn err(text: &str) -> Pop3dStep {
    Pop3dStep::Reply(format!("-ERR {text}\r\n").into_bytes())
}

/// The leading decimal digits of `arg` and what follows them.
fn number(arg: &[u8]) -> Option<(u64, &[u8])> {
    let digits = arg.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let n = std::str::from_utf8(&arg[..digits]).ok()?.parse().ok()?;
    Some((n, &arg[digits..]))
}

impl Pop3d {
    /// A session over these messages, in their order.
    pub fn new(messages: Vec<MailMessage>) -> Pop3d {
        let deleted = vec![false; messages.len()];
        Pop3d {
            messages,
            deleted,
            last: 0,
        }
    }

    /// The message an argument names, or the error to answer.
    fn message<'a>(&self, arg: &'a [u8]) -> Result<(usize, &'a [u8]), Pop3dStep> {
        let (n, rest) = number(arg).ok_or_else(|| err("syntax error"))?;
        if n == 0 {
            return Err(err("messages are counted from 1"));
        }
        let i = usize::try_from(n - 1).unwrap_or(usize::MAX);
        if i >= self.messages.len() {
            return Err(err("not that many messages"));
        }
        if self.deleted[i] {
            return Err(err("already deleted"));
        }
        Ok((i, rest))
    }

    fn listing(&self, arg: &[u8], uidl: bool) -> Pop3dStep {
        let entry = |i: usize| {
            let m = &self.messages[i];
            if uidl {
                format!("{} {}\r\n", i + 1, m.uid())
            } else {
                format!("{} {}\r\n", i + 1, m.size)
            }
        };
        if arg.is_empty() {
            let mut out = String::from("+OK \r\n");
            for i in (0..self.messages.len()).filter(|&i| !self.deleted[i]) {
                out.push_str(&entry(i));
            }
            out.push_str(".\r\n");
            return Pop3dStep::Reply(out.into_bytes());
        }
        match self.message(arg) {
            Ok((i, _)) => Pop3dStep::Reply(format!("+OK {}", entry(i)).into_bytes()),
            Err(e) => e,
        }
    }

    /// Handles one line from [`super::command::LineReader`].
    pub fn on_line(&mut self, line: Line) -> Pop3dStep {
        let Line::Command(line) = line else {
            return err("syntax error");
        };
        let c = CommandLine::parse(&line);
        let arg = c.arg.as_slice();
        match c.verb.as_str() {
            "stat" => {
                let live = || (0..self.messages.len()).filter(|&i| !self.deleted[i]);
                let total: u64 = live().map(|i| self.messages[i].size).sum();
                // qmail counts every message, deleted or not; RFC 1939 says
                // the deleted ones are not counted, and clients rely on it.
                Pop3dStep::Reply(format!("+OK {} {total}\r\n", live().count()).into_bytes())
            }
            "list" => self.listing(arg, false),
            "uidl" => self.listing(arg, true),
            "dele" => match self.message(arg) {
                Ok((i, _)) => {
                    self.deleted[i] = true;
                    self.last = self.last.max(i + 1);
                    Pop3dStep::Reply(OK.to_vec())
                }
                Err(e) => e,
            },
            "retr" => match self.message(arg) {
                Ok((i, _)) => Pop3dStep::Send {
                    name: self.messages[i].name.clone(),
                    body_lines: None,
                },
                Err(e) => e,
            },
            "top" => match self.message(arg) {
                Ok((i, rest)) => {
                    let rest = rest.trim_ascii_start();
                    match number(rest) {
                        Some((lines, _)) => Pop3dStep::Send {
                            name: self.messages[i].name.clone(),
                            body_lines: Some(lines),
                        },
                        None => err("syntax error"),
                    }
                }
                Err(e) => e,
            },
            "rset" => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                self.last = 0;
                Pop3dStep::Reply(OK.to_vec())
            }
            "last" => Pop3dStep::Reply(format!("+OK {}\r\n", self.last).into_bytes()),
            "noop" => Pop3dStep::Reply(OK.to_vec()),
            "quit" => {
                let mut plan = QuitPlan::default();
                for (m, &deleted) in self.messages.iter().zip(&self.deleted) {
                    if deleted {
                        plan.delete.push(m.name.clone());
                    } else if m.is_new() {
                        plan.to_cur.push(m.name.clone());
                    }
                }
                Pop3dStep::Quit(plan)
            }
            _ => err("unimplemented"),
        }
    }
}

/// Turns a stored message (LF line ends) into POP3's multi-line response
/// body: CR LF line ends, a dot doubled at the start of a line, and for TOP
/// only the header and the first `body_lines` lines of the body. The final
/// `.` line is [`MessageEncoder::finish`]'s. Fed any chunking of the file,
/// it gives the same bytes.
#[derive(Debug)]
pub struct MessageEncoder {
    at_line_start: bool,
    in_header: bool,
    /// Body lines still to send (TOP), `None` for all.
    left: Option<u64>,
    done: bool,
}

impl MessageEncoder {
    pub fn new(body_lines: Option<u64>) -> MessageEncoder {
        MessageEncoder {
            at_line_start: true,
            in_header: true,
            left: body_lines,
            done: false,
        }
    }

    /// Whether the rest of the file is not needed (TOP's limit reached).
    pub fn done(&self) -> bool {
        self.done
    }

    /// Encodes one chunk of the file onto `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        while !chunk.is_empty() && !self.done {
            if self.at_line_start {
                if !self.in_header
                    && let Some(left) = self.left.as_mut()
                {
                    if *left == 0 {
                        self.done = true;
                        return;
                    }
                    *left -= 1;
                }
                if chunk[0] == b'\n' && self.in_header {
                    // The empty line that ends the header is not a body line.
                    self.in_header = false;
                    out.extend_from_slice(b"\r\n");
                    chunk = &chunk[1..];
                    continue;
                }
                if chunk[0] == b'.' {
                    out.push(b'.');
                }
            }
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    out.extend_from_slice(&chunk[..i]);
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    chunk = &chunk[i + 1..];
                }
                None => {
                    out.extend_from_slice(chunk);
                    self.at_line_start = false;
                    chunk = &[];
                }
            }
        }
    }

    /// Ends the response: a final line without LF is ended, then the dot.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start && !self.done {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(s: &str) -> Line {
        Line::Command(s.as_bytes().to_vec())
    }

    fn text(step: Pop3dStep) -> String {
        match step {
            Pop3dStep::Reply(r) => String::from_utf8(r).unwrap(),
            other => format!("{other:?}"),
        }
    }

    fn drop3() -> Pop3d {
        Pop3d::new(vec![
            MailMessage {
                name: "cur/100.a.host:2,S".into(),
                size: 10,
            },
            MailMessage {
                name: "new/200.b.host".into(),
                size: 20,
            },
            MailMessage {
                name: "new/300.c.host".into(),
                size: 30,
            },
        ])
    }

    #[test]
    fn listings_count_what_is_not_deleted() {
        let mut p = drop3();
        assert_eq!(text(p.on_line(line("STAT"))), "+OK 3 60\r\n");
        assert_eq!(text(p.on_line(line("DELE 2"))), "+OK \r\n");
        assert_eq!(text(p.on_line(line("stat\r"))), "+OK 2 40\r\n");
        assert_eq!(
            text(p.on_line(line("LIST"))),
            "+OK \r\n1 10\r\n3 30\r\n.\r\n"
        );
        assert_eq!(
            text(p.on_line(line("UIDL"))),
            "+OK \r\n1 100.a.host\r\n3 300.c.host\r\n.\r\n"
        );
        assert_eq!(text(p.on_line(line("UIDL 3"))), "+OK 3 300.c.host\r\n");
        assert_eq!(text(p.on_line(line("LIST 2"))), "-ERR already deleted\r\n");
        assert_eq!(text(p.on_line(line("LAST"))), "+OK 2\r\n");
        assert_eq!(text(p.on_line(line("RSET"))), "+OK \r\n");
        assert_eq!(text(p.on_line(line("LIST 2"))), "+OK 2 20\r\n");
        assert_eq!(text(p.on_line(line("LAST"))), "+OK 0\r\n");
    }

    #[test]
    fn message_numbers_are_checked() {
        let mut p = drop3();
        assert_eq!(text(p.on_line(line("RETR"))), "-ERR syntax error\r\n");
        assert_eq!(text(p.on_line(line("RETR x"))), "-ERR syntax error\r\n");
        assert_eq!(
            text(p.on_line(line("RETR 0"))),
            "-ERR messages are counted from 1\r\n"
        );
        assert_eq!(
            text(p.on_line(line("RETR 4"))),
            "-ERR not that many messages\r\n"
        );
        assert_eq!(
            text(p.on_line(line("RETR 99999999999999999999999"))),
            "-ERR syntax error\r\n"
        );
        assert_eq!(text(p.on_line(line("TOP 1"))), "-ERR syntax error\r\n");
        assert_eq!(text(p.on_line(line("XTND"))), "-ERR unimplemented\r\n");
        assert_eq!(text(p.on_line(Line::TooLong)), "-ERR syntax error\r\n");
        assert_eq!(
            p.on_line(line("TOP 2 5")),
            Pop3dStep::Send {
                name: "new/200.b.host".into(),
                body_lines: Some(5)
            }
        );
    }

    #[test]
    fn quit_deletes_and_moves_the_rest_of_new() {
        let mut p = drop3();
        p.on_line(line("DELE 3"));
        assert_eq!(
            p.on_line(line("QUIT")),
            Pop3dStep::Quit(QuitPlan {
                delete: vec!["new/300.c.host".into()],
                to_cur: vec!["new/200.b.host".into()],
            })
        );
    }

    fn encode(msg: &[u8], lines: Option<u64>, cut: usize) -> Vec<u8> {
        let mut e = MessageEncoder::new(lines);
        let mut out = Vec::new();
        for c in msg.chunks(cut.max(1)) {
            e.push(c, &mut out);
        }
        e.finish(&mut out);
        out
    }

    #[test]
    fn dots_are_doubled_and_top_stops_after_its_lines() {
        let msg = b"Subject: x\n.hidden: no\n\nline 1\n.line 2\nline 3\n";
        assert_eq!(
            encode(msg, None, 64),
            b"Subject: x\r\n..hidden: no\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n"
        );
        assert_eq!(
            encode(msg, Some(0), 3),
            b"Subject: x\r\n..hidden: no\r\n\r\n.\r\n"
        );
        assert_eq!(
            encode(msg, Some(2), 1),
            b"Subject: x\r\n..hidden: no\r\n\r\nline 1\r\n..line 2\r\n.\r\n"
        );
        assert_eq!(encode(b"no newline", None, 4), b"no newline\r\n.\r\n");
        assert_eq!(encode(b"", None, 4), b".\r\n");
    }

    /// Undoes the encoding as a client does.
    fn decode(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").expect("final dot");
        let mut out = Vec::new();
        for l in body.split_inclusive(|&b| b == b'\n') {
            let l = l.strip_suffix(b"\r\n").expect("CR LF");
            out.extend_from_slice(l.strip_prefix(b".").unwrap_or(l));
            out.push(b'\n');
        }
        out
    }

    proptest! {
        /// A whole message comes back as stored, whatever the chunking.
        #[test]
        fn retr_round_trips(
            lines in proptest::collection::vec("[.a-z \r]{0,12}", 0..12),
            cut in 1usize..9,
        ) {
            let msg: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
            prop_assume!(!msg.windows(2).any(|w| w == b"\r\n"));
            let wire = encode(&msg, None, cut);
            prop_assert_eq!(decode(&wire), msg.clone());
            prop_assert_eq!(wire, encode(&msg, None, 4096));
        }
    }
}
