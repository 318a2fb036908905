//! The SMTP server session (qmail-smtpd) as a pure state machine.
//!
//! The session does no I/O and reads no clock: a driver feeds it the bytes it
//! reads from the client, with the current time, and carries out the
//! [`Action`]s it returns (write a reply, stream the message into the queue,
//! close). That keeps every protocol decision testable byte for byte, and
//! keeps memory bounded whatever the client sends: a command line is buffered
//! up to [`SmtpConfig::max_line_length`], message data is passed on as it
//! arrives, and the envelope is bounded by [`SmtpConfig::max_recipients`] and
//! [`MAX_ADDRESS_LEN`](super::MAX_ADDRESS_LEN).
//!
//! Life of a message: after a `DATA` command the session returns the `354`
//! reply, [`Action::BeginMessage`], then [`Action::MessageData`] chunks
//! (the first is the Received line) and finally [`Action::EndMessage`]. It
//! then consumes no more input until the driver has committed the message and
//! called [`SmtpSession::message_committed`], whose `250` (or `451`) reply
//! must precede the replies to any commands the client pipelined after the
//! final dot. If the message is refused on the way (too many hops, too big,
//! bare LF) the session says [`Action::AbortMessage`] instead.

use std::mem;

use super::address::{ParsedPath, PathError, parse_path};
use super::body::{BodyDecoder, Stop};
use super::rcpthosts::RcptHosts;
use super::received::{RemoteInfo, smtp_received_line};
use super::replies;
use crate::date;
use crate::local::local_part_fits;

/// Default for [`SmtpConfig::max_recipients`]. qmail has no limit (it takes
/// 1100 in `qmail-observed/smtp-many-rcpts.txt`); we bound memory.
pub const DEFAULT_MAX_RECIPIENTS: usize = 10_000;

/// Default for [`SmtpConfig::max_line_length`]: RFC 5321's limit for a text
/// line, which is generous for commands (their limit is 512).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 1000;

/// A message with this many `Received`/`Delivered` header lines is looping
/// (qmail's `MAXHOPS`).
pub const MAX_HOPS: u32 = 100;

/// Message data is handed out in chunks of at most about this size, so one
/// large read does not become one large allocation.
const DATA_CHUNK: usize = 64 * 1024;

/// What the session needs to know, from the control files and tcpserver's
/// environment. Each field names the qmail setting it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// `control/smtpgreeting` (default: `control/me`). qmail-smtpd uses it in
    /// the `220` greeting and also in the HELO, EHLO and QUIT replies.
    pub greeting: String,
    /// `control/rcpthosts` plus `control/morercpthosts`.
    pub rcpthosts: RcptHosts,
    /// `$RELAYCLIENT`: when set, any recipient domain is accepted and this
    /// value is appended to every recipient.
    pub relay_client: Option<String>,
    /// `control/databytes` (or `$DATABYTES`): the largest message accepted, in
    /// bytes as stored (LF line ends, Received line not counted); 0 means no
    /// limit.
    pub databytes: u64,
    /// The most recipients one message may have (ours; qmail has no limit).
    pub max_recipients: usize,
    /// The longest command line accepted, in bytes including CR LF (ours;
    /// qmail reads lines of any length). A longer line closes the connection.
    pub max_line_length: usize,
    /// Who the client is, for the Received line.
    pub remote: RemoteInfo,
}

impl SmtpConfig {
    /// The defaults for host `me`: greeting `me`, recipients accepted for `me`
    /// only, no relaying, no size limit, unknown remote.
    pub fn new(me: &str) -> Self {
        SmtpConfig {
            greeting: me.to_string(),
            rcpthosts: RcptHosts::new([me]),
            relay_client: None,
            databytes: 0,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            remote: RemoteInfo::default(),
        }
    }
}

/// Something the driver must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the client: one complete reply, CR LF included.
    Reply(Vec<u8>),
    /// Start a new message in the queue with this envelope.
    BeginMessage {
        sender: String,
        recipients: Vec<String>,
    },
    /// Append these bytes to the message, exactly as they are to be queued.
    MessageData(Vec<u8>),
    /// The message is complete: commit it, then call
    /// [`SmtpSession::message_committed`].
    EndMessage,
    /// Discard the message begun (it was refused); do not commit it.
    AbortMessage,
    /// Close the connection (after writing the replies before this action).
    Close,
}

/// How committing a message to the queue went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The message is durable: `250 ok TIME qp QP`, as qmail says it.
    Accepted {
        /// Unix time of the acceptance.
        time: u64,
        /// qmail's "qp": the id of the process that queued the message.
        qp: u64,
    },
    /// The queue refused the message. `text` is qmail's qq text, such as
    /// `qq write error or disk full (#4.3.0)`; `permanent` selects `554`
    /// instead of `451`.
    Failed { permanent: bool, text: String },
}

/// The result of [`SmtpSession::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Feed {
    /// How many input bytes the session used. Fewer than given only while a
    /// message waits for its commit: feed the rest again after
    /// [`SmtpSession::message_committed`].
    pub consumed: usize,
    /// What to do, in order.
    pub actions: Vec<Action>,
}

/// Where the session is.
#[derive(Debug, Clone)]
enum Phase {
    /// Reading command lines.
    Command,
    /// Reading a message after `354`.
    Data(DataPhase),
    /// The final dot was read; waiting for the driver's commit.
    AwaitingCommit,
    /// The connection is over; input is ignored.
    Closed,
}

/// A message being received.
#[derive(Debug, Clone)]
struct DataPhase {
    decoder: BodyDecoder,
    /// Message bytes passed on so far (for `databytes`).
    stored: u64,
    /// [`Action::AbortMessage`] was given; the rest is read and dropped.
    aborted: bool,
}

/// How a DATA phase ended inside one feed.
enum DataEnd {
    /// Final dot of a good message.
    Complete,
    /// Final dot of a refused message: this reply.
    Refused(&'static str),
    /// A bare LF; `abort` if the message was still going.
    BareLf { abort: bool },
}

/// One SMTP server connection.
#[derive(Debug, Clone)]
pub struct SmtpSession {
    config: SmtpConfig,
    phase: Phase,
    /// The command line read so far (never `max_line_length` bytes or more).
    line: Vec<u8>,
    /// The HELO/EHLO name for the Received line: `None` before HELO or when
    /// it is the remote host name (qmail's `fakehelo`).
    helo: Option<Vec<u8>>,
    /// `Some` once MAIL was accepted in this transaction (qmail's `seenmail`).
    sender: Option<String>,
    recipients: Vec<String>,
    /// The client closed while a message waited for its commit.
    close_after_commit: bool,
    /// Refused MAIL and RCPT commands not yet taken by the driver's log.
    refusals: Vec<Refusal>,
    /// Command lines read so far.
    commands: u64,
}

/// A MAIL or RCPT command the session refused, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `"mail"` or `"rcpt"`.
    pub command: &'static str,
    /// The address as parsed, or the raw argument when it did not parse.
    /// Remote text: make it log-safe before printing it.
    pub address: String,
    /// Why, in a few words.
    pub reason: &'static str,
}

/// Arguments longer than this are cut in [`Refusal::address`].
const REFUSAL_TEXT_MAX: usize = 200;

impl SmtpSession {
    /// A session for a connection just accepted; send [`Self::greeting`] first.
    pub fn new(config: SmtpConfig) -> Self {
        SmtpSession {
            config,
            phase: Phase::Command,
            line: Vec::new(),
            helo: None,
            sender: None,
            recipients: Vec::new(),
            close_after_commit: false,
            refusals: Vec::new(),
            commands: 0,
        }
    }

    /// How many command lines the session has read: the line under way
    /// (see [`Self::mid_line`]) is a new one when this changes.
    pub fn commands_read(&self) -> u64 {
        self.commands
    }

    /// The MAIL and RCPT commands refused since the last call, oldest first.
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        mem::take(&mut self.refusals)
    }

    /// Whether part of a command line has arrived without its end (the
    /// driver bounds the time a whole line may take).
    pub fn mid_line(&self) -> bool {
        matches!(self.phase, Phase::Command) && !self.line.is_empty()
    }

    /// Whether the session is reading a message after `354` (the driver
    /// bounds the time the whole DATA may take).
    pub fn in_data(&self) -> bool {
        matches!(self.phase, Phase::Data(_))
    }

    fn refuse(&mut self, command: &'static str, address: &[u8], reason: &'static str) {
        let cut = &address[..address.len().min(REFUSAL_TEXT_MAX)];
        self.refusals.push(Refusal {
            command,
            address: String::from_utf8_lossy(cut).into_owned(),
            reason,
        });
    }

    /// The `220` greeting to send when the connection opens.
    pub fn greeting(&self) -> Action {
        reply_action(&format!("220 {} ESMTP", self.config.greeting))
    }

    /// Takes bytes as they came from the client (any chunking; several
    /// pipelined commands at once are fine). `now` is the current unix time,
    /// used for the Received line of a message started in these bytes.
    pub fn feed(&mut self, input: &[u8], now: u64) -> Feed {
        let mut actions = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            pos += match self.phase {
                Phase::Command => self.feed_command(&input[pos..], now, &mut actions),
                Phase::Data(_) => self.feed_data(&input[pos..], &mut actions),
                Phase::AwaitingCommit => break,
                Phase::Closed => input.len() - pos,
            };
        }
        Feed {
            consumed: pos,
            actions,
        }
    }

    /// Reports the driver's commit of the message after [`Action::EndMessage`]
    /// and returns the reply to the final dot. Calling it at any other time is
    /// a driver bug and does nothing.
    pub fn message_committed(&mut self, outcome: CommitOutcome) -> Vec<Action> {
        if !matches!(self.phase, Phase::AwaitingCommit) {
            debug_assert!(false, "message_committed without a message waiting");
            return Vec::new();
        }
        self.phase = Phase::Command;
        let text = match outcome {
            CommitOutcome::Accepted { time, qp } => format!("250 ok {time} qp {qp}"),
            CommitOutcome::Failed { permanent, text } => {
                let code = if permanent { 554 } else { 451 };
                // The text comes from outside (a queue filter may write it):
                // keep the reply one line.
                let text = text.replace(['\r', '\n'], " ");
                format!("{code} {text}")
            }
        };
        let mut actions = vec![reply_action(&text)];
        if self.close_after_commit {
            self.close(&mut actions);
        }
        actions
    }

    /// The client closed its side. qmail just exits; a message being
    /// received is abandoned. A message waiting for its commit is not: the
    /// commit's reply is then followed by [`Action::Close`].
    pub fn end_of_input(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        match &self.phase {
            Phase::Closed => {}
            Phase::AwaitingCommit => self.close_after_commit = true,
            Phase::Data(data) => {
                if !data.aborted {
                    actions.push(Action::AbortMessage);
                }
                self.close(&mut actions);
            }
            Phase::Command => self.close(&mut actions),
        }
        actions
    }

    /// Whether the session has said [`Action::Close`].
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether a message waits for [`SmtpSession::message_committed`].
    pub fn awaiting_commit(&self) -> bool {
        matches!(self.phase, Phase::AwaitingCommit)
    }

    /// Bytes the session holds between calls: the partial command line, the
    /// HELO name and the envelope. Bounded by the configuration.
    pub fn buffered_len(&self) -> usize {
        self.line.len()
            + self.helo.as_ref().map_or(0, Vec::len)
            + self.sender.as_ref().map_or(0, String::len)
            + self.recipients.iter().map(String::len).sum::<usize>()
    }

    /// Reads (part of) a command line and runs it when complete. Returns the
    /// number of bytes used.
    fn feed_command(&mut self, input: &[u8], now: u64, actions: &mut Vec<Action>) -> usize {
        let max = self.config.max_line_length;
        let newline = input.iter().position(|&c| c == b'\n');
        // A line is too long when its first `max` bytes hold no LF: decided
        // as soon as those bytes are in, whatever the chunking.
        let line_so_far = self.line.len() + newline.unwrap_or(input.len());
        if line_so_far >= max {
            self.line.clear();
            reply(actions, replies::LINE_TOO_LONG);
            self.close(actions);
            return input.len();
        }
        let Some(end) = newline else {
            self.line.extend_from_slice(input);
            return input.len();
        };
        let mut line = mem::take(&mut self.line);
        line.extend_from_slice(&input[..end]);
        self.command(&line, now, actions);
        line.clear();
        self.line = line;
        end + 1
    }

    /// Runs one command line (without its LF), as qmail's `commands()` splits
    /// it: one trailing CR dropped, the line ends at a NUL, the verb is what
    /// precedes the first space, the argument follows the spaces after it.
    fn command(&mut self, line: &[u8], now: u64, actions: &mut Vec<Action>) {
        self.commands += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = match line.iter().position(|&c| c == 0) {
            Some(nul) => &line[..nul],
            None => line,
        };
        let (verb, arg) = match line.iter().position(|&c| c == b' ') {
            Some(sp) => {
                let arg = &line[sp + 1..];
                let spaces = arg.iter().take_while(|&&c| c == b' ').count();
                (&line[..sp], &arg[spaces..])
            }
            None => (line, &line[line.len()..]),
        };
        let verb = verb.to_ascii_lowercase();
        match verb.as_slice() {
            b"helo" => self.helo(arg, actions),
            b"ehlo" => self.ehlo(arg, actions),
            b"mail" => self.mail(arg, actions),
            b"rcpt" => self.rcpt(arg, actions),
            b"data" => self.data(now, actions),
            b"rset" => {
                self.reset_transaction();
                reply(actions, replies::FLUSHED);
            }
            b"noop" => reply(actions, replies::OK),
            b"vrfy" => reply(actions, replies::VRFY),
            b"help" => reply(actions, replies::HELP),
            b"quit" => {
                reply(actions, &format!("221 {}", self.config.greeting));
                self.close(actions);
            }
            // AUTH, STARTTLS, ETRN, EXPN, TURN, ... and garbage.
            _ => reply(actions, replies::UNIMPLEMENTED),
        }
    }

    fn helo(&mut self, arg: &[u8], actions: &mut Vec<Action>) {
        reply(actions, &format!("250 {}", self.config.greeting));
        self.set_helo(arg);
    }

    fn ehlo(&mut self, arg: &[u8], actions: &mut Vec<Action>) {
        let mut text = format!("250-{}\r\n", self.config.greeting);
        for extension in replies::EHLO_EXTENSIONS {
            text.push_str(&format!("250-{extension}\r\n"));
        }
        // RFC 1870: SIZE with the limit, or without a number when there is
        // none. ENHANCEDSTATUSCODES is not offered: RFC 2034 would require the
        // code at the start of every reply, and qmail's replies carry it at
        // the end (`(#5.5.1)`), byte for byte as clients and tools know them.
        match self.config.databytes {
            0 => text.push_str("250 SIZE\r\n"),
            n => text.push_str(&format!("250 SIZE {n}\r\n")),
        }
        actions.push(Action::Reply(text.into_bytes()));
        self.set_helo(arg);
    }

    /// HELO and EHLO start over (qmail clears `seenmail`) and record the name
    /// for the Received line, unless it is what DNS already told us.
    fn set_helo(&mut self, arg: &[u8]) {
        self.reset_transaction();
        let same = arg.eq_ignore_ascii_case(self.config.remote.host_name().as_bytes());
        self.helo = (!same).then(|| arg.to_vec());
    }

    fn reset_transaction(&mut self) {
        self.sender = None;
        self.recipients.clear();
    }

    /// MAIL starts a new transaction, even without RSET (as qmail does).
    fn mail(&mut self, arg: &[u8], actions: &mut Vec<Action>) {
        let path = match parse_path(arg) {
            Ok(p) => p,
            Err(PathError::ControlCharacter) => {
                self.refuse("mail", arg, "control character in the address");
                reply(actions, replies::BAD_SENDER_CHARS);
                return;
            }
            Err(_) => {
                self.refuse("mail", arg, "syntax error");
                reply(actions, replies::SYNTAX);
                return;
            }
        };
        // RFC 1870: refuse at once what would be refused after DATA.
        let limit = self.config.databytes;
        if limit > 0 && path.size().is_some_and(|size| size > limit) {
            self.refuse("mail", path.address.as_bytes(), "SIZE above databytes");
            reply(actions, replies::TOO_BIG);
            return;
        }
        self.reset_transaction();
        self.sender = Some(path.address);
        reply(actions, replies::OK);
    }

    fn rcpt(&mut self, arg: &[u8], actions: &mut Vec<Action>) {
        if self.sender.is_none() {
            reply(actions, replies::WANT_MAIL);
            return;
        }
        let mut address = match parse_path(arg) {
            Ok(ParsedPath { address, .. }) => address,
            Err(PathError::ControlCharacter) => {
                self.refuse("rcpt", arg, "control character in the address");
                reply(actions, replies::BAD_RCPT_CHARS);
                return;
            }
            Err(_) => {
                self.refuse("rcpt", arg, "syntax error");
                reply(actions, replies::SYNTAX);
                return;
            }
        };
        let local = address
            .rsplit_once('@')
            .map_or(address.as_str(), |(l, _)| l);
        if !local_part_fits(local) {
            self.refuse("rcpt", address.as_bytes(), "local part too long");
            reply(actions, replies::LOCAL_TOO_LONG);
            return;
        }
        match &self.config.relay_client {
            Some(suffix) => address.push_str(suffix),
            None if !self.config.rcpthosts.allows(&address) => {
                self.refuse("rcpt", address.as_bytes(), "domain not in rcpthosts");
                reply(actions, replies::NO_GATEWAY);
                return;
            }
            None => {}
        }
        if self.recipients.len() >= self.config.max_recipients {
            self.refuse("rcpt", address.as_bytes(), "too many recipients");
            reply(actions, replies::TOO_MANY_RCPTS);
            return;
        }
        self.recipients.push(address);
        reply(actions, replies::OK);
    }

    fn data(&mut self, now: u64, actions: &mut Vec<Action>) {
        if self.sender.is_none() {
            reply(actions, replies::WANT_MAIL);
            return;
        }
        if self.recipients.is_empty() {
            reply(actions, replies::WANT_RCPT);
            return;
        }
        let sender = self.sender.take().unwrap_or_default();
        let recipients = mem::take(&mut self.recipients);
        reply(actions, replies::GO_AHEAD);
        actions.push(Action::BeginMessage { sender, recipients });
        let received = smtp_received_line(
            &self.config.remote,
            self.helo.as_deref(),
            &date::rfc822(now),
        );
        actions.push(Action::MessageData(received.into_bytes()));
        self.phase = Phase::Data(DataPhase {
            decoder: BodyDecoder::new(),
            stored: 0,
            aborted: false,
        });
    }

    /// Reads message bytes until the final dot, a bare LF or the end of the
    /// input. Returns the number of bytes used.
    fn feed_data(&mut self, input: &[u8], actions: &mut Vec<Action>) -> usize {
        let databytes = self.config.databytes;
        let Phase::Data(data) = &mut self.phase else {
            return 0;
        };
        let mut pending = Vec::new();
        let mut pos = 0;
        let mut ended = None;
        while pos < input.len() {
            let (used, stop) = if data.aborted {
                // The message is refused: read on to its end, keep nothing.
                pending.clear();
                data.decoder
                    .decode(&input[pos..], &mut pending, usize::MAX, u32::MAX)
            } else {
                // At most DATA_CHUNK bytes are handed out at once, and never
                // more than databytes in all.
                let room = match databytes {
                    0 => usize::MAX,
                    limit => {
                        usize::try_from(limit.saturating_sub(data.stored)).unwrap_or(usize::MAX)
                    }
                };
                // A call writes at most two bytes more than it reads (a `.`
                // CR held from the call before), so pending stays bounded.
                let take = (DATA_CHUNK - pending.len()).min(input.len() - pos);
                let before = pending.len();
                let (used, stop) =
                    data.decoder
                        .decode(&input[pos..pos + take], &mut pending, room, MAX_HOPS);
                data.stored += (pending.len() - before) as u64;
                // Over databytes, or looping: refused, and it ends as such.
                if matches!(stop, Stop::Full | Stop::HopLimit) {
                    flush(&mut pending, actions);
                    actions.push(Action::AbortMessage);
                    data.aborted = true;
                } else if pending.len() >= DATA_CHUNK {
                    flush(&mut pending, actions);
                }
                (used, stop)
            };
            pos += used;
            let end = match stop {
                Stop::NeedInput | Stop::Full | Stop::HopLimit => continue,
                Stop::End if !data.aborted => DataEnd::Complete,
                // qmail reports the hops before the size.
                Stop::End if data.decoder.hops() >= MAX_HOPS => {
                    DataEnd::Refused(replies::TOO_MANY_HOPS)
                }
                Stop::End => DataEnd::Refused(replies::TOO_BIG),
                Stop::BareLf => DataEnd::BareLf {
                    abort: !data.aborted,
                },
            };
            ended = Some((pos, end));
            break;
        }
        if data.aborted {
            pending.clear();
        }
        flush(&mut pending, actions);
        let Some((used, end)) = ended else {
            return input.len();
        };
        match end {
            DataEnd::Complete => {
                actions.push(Action::EndMessage);
                self.phase = Phase::AwaitingCommit;
            }
            DataEnd::Refused(text) => {
                reply(actions, text);
                self.phase = Phase::Command;
            }
            DataEnd::BareLf { abort } => {
                if abort {
                    actions.push(Action::AbortMessage);
                }
                reply(actions, replies::BARE_LF);
                self.close(actions);
            }
        }
        used
    }

    fn close(&mut self, actions: &mut Vec<Action>) {
        self.phase = Phase::Closed;
        actions.push(Action::Close);
    }
}

/// A one-line reply.
fn reply_action(text: &str) -> Action {
    Action::Reply(format!("{text}\r\n").into_bytes())
}

fn reply(actions: &mut Vec<Action>, text: &str) {
    actions.push(reply_action(text));
}

/// Hands out the message bytes gathered so far, if any.
fn flush(pending: &mut Vec<u8>, actions: &mut Vec<Action>) {
    if !pending.is_empty() {
        actions.push(Action::MessageData(mem::take(pending)));
    }
}
