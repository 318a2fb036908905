//! The SMTP client session (qmail-remote's conversation) as a pure state
//! machine.
//!
//! The session does no I/O: a driver connects, feeds it each [`Reply`] the
//! server sends (in order), and carries out the [`Step`]s it returns. One
//! session is one connection carrying one transaction: the sender, every
//! recipient of the job, the message once.
//!
//! What it does beyond qmail-remote (which says HELO, sends one recipient per
//! connection and waits for every reply): EHLO, falling back to HELO when the
//! server refuses it; with PIPELINING, MAIL, every RCPT and DATA go out in
//! one write (RFC 2920); SIZE is declared, and a message larger than the
//! server's limit is not sent; BODY=8BITMIME is declared for 8-bit messages
//! when the server offers it. The reports are qmail-remote's, word for word:
//! `IP accepted message.`, `IP does not like recipient.`, `Connected to IP
//! but sender was rejected.`, each followed by `Remote host said: ` and the
//! server's reply.
//!
//! A recipient is delivered only when the server answered `250` after the
//! final dot with that recipient accepted: nothing else reports success.

use std::collections::VecDeque;

use super::data::MessageFacts;
use super::reply::Reply;
use crate::deliver::Outcome;

/// The transaction to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The envelope sender (`""` for a bounce).
    pub sender: String,
    /// The recipients, in the order their outcomes are reported.
    pub recipients: Vec<String>,
    pub facts: MessageFacts,
}

/// Something the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes (one or more complete commands).
    Send(Vec<u8>),
    /// Write the message as DATA carries it (stuffed, CR LF, final dot),
    /// then call [`ClientSession::message_sent`].
    SendMessage,
    /// Close the connection (after writing what the steps before said).
    Close,
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The server would not talk (no or a bad greeting): try the next host.
    /// The text is the deferral to report if no host is left.
    NextHost(String),
    /// The transaction is decided.
    Done(Report),
}

/// The final word of a transaction, qmail-remote's `K`, `Z` or `D` line:
/// it applies to every recipient the server accepted (or never judged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    Delivered(String),
    Temporary(String),
    Permanent(String),
}

impl Final {
    pub fn outcome(&self) -> Outcome {
        match self {
            Final::Delivered(t) => Outcome::Success(t.clone()),
            Final::Temporary(t) => Outcome::Deferral(t.clone()),
            Final::Permanent(t) => Outcome::Failure(t.clone()),
        }
    }
}

/// The server's answer to one RCPT, qmail-remote's `r`, `s` or `h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not asked, or no answer read: the final word decides.
    Unjudged,
    Accepted,
    Temporary(String),
    Permanent(String),
}

/// Everything qmail-remote reports for one delivery: a verdict per
/// recipient, in order, and the final word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub recipients: Vec<Verdict>,
    pub final_word: Final,
}

impl Report {
    /// The same final word for `n` recipients never asked about.
    pub fn all(n: usize, final_word: Final) -> Report {
        Report {
            recipients: vec![Verdict::Unjudged; n],
            final_word,
        }
    }

    /// One outcome per recipient, in order: a refused recipient has its
    /// own, every other one the final word.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.recipients
            .iter()
            .map(|v| match v {
                Verdict::Permanent(t) => Outcome::Failure(t.clone()),
                Verdict::Temporary(t) => Outcome::Deferral(t.clone()),
                Verdict::Accepted | Verdict::Unjudged => self.final_word.outcome(),
            })
            .collect()
    }

    /// qmail-remote's output: for each recipient asked about, `r`, or `h`
    /// or `s` and the text, then `K`, `Z` or `D` and the text, each ended
    /// by a NUL.
    pub fn qmail_remote_output(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in &self.recipients {
            match v {
                Verdict::Unjudged => continue,
                Verdict::Accepted => out.push(b'r'),
                Verdict::Temporary(t) => {
                    out.push(b's');
                    out.extend_from_slice(t.as_bytes());
                }
                Verdict::Permanent(t) => {
                    out.push(b'h');
                    out.extend_from_slice(t.as_bytes());
                }
            }
            out.push(0);
        }
        let (letter, text) = match &self.final_word {
            Final::Delivered(t) => (b'K', t),
            Final::Temporary(t) => (b'Z', t),
            Final::Permanent(t) => (b'D', t),
        };
        out.push(letter);
        out.extend_from_slice(text.as_bytes());
        out.push(0);
        out
    }
}

/// Which reply the session waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    Mail,
    Rcpt(usize),
    Data,
    /// The reply after the final dot.
    Message,
}

/// The extensions an EHLO reply offered that the client uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Extensions {
    pipelining: bool,
    eight_bit_mime: bool,
    /// `SIZE n` with n > 0.
    size_limit: Option<u64>,
}

/// One SMTP client connection.
#[derive(Debug, Clone)]
pub struct ClientSession {
    helohost: String,
    /// The server's address as reports name it (qmail prints the IP).
    host: String,
    tx: Transaction,
    expect: VecDeque<Expect>,
    ext: Extensions,
    /// Each recipient's RCPT reply, once read.
    rcpt: Vec<Option<Reply>>,
    /// The transaction failed; replies still pipelined are read and ignored.
    failed: Option<Final>,
    /// The final dot was written (a drop now may leave a duplicate).
    message_sent: bool,
    end: Option<SessionEnd>,
}

impl ClientSession {
    /// A session for a connection just made to `host` (an IP, as qmail-remote
    /// names the server in its reports); it waits for the greeting.
    pub fn new(helohost: &str, host: &str, tx: Transaction) -> Self {
        let n = tx.recipients.len();
        ClientSession {
            helohost: helohost.to_string(),
            host: host.to_string(),
            tx,
            expect: VecDeque::from([Expect::Greeting]),
            ext: Extensions::default(),
            rcpt: vec![None; n],
            failed: None,
            message_sent: false,
            end: None,
        }
    }

    /// The outcome, once the session has ended (after [`Step::Close`]).
    pub fn end(&self) -> Option<&SessionEnd> {
        self.end.as_ref()
    }

    /// Takes the outcome, once the session has ended.
    pub fn take_end(&mut self) -> Option<SessionEnd> {
        self.end.take()
    }

    /// How many recipients the transaction has.
    pub fn recipient_count(&self) -> usize {
        self.tx.recipients.len()
    }

    /// Whether the session waits for a server reply.
    pub fn wants_reply(&self) -> bool {
        self.end.is_none() && !self.expect.is_empty()
    }

    /// The server's next reply.
    pub fn reply(&mut self, reply: Reply) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.end.is_some() {
            return steps;
        }
        let Some(expect) = self.expect.pop_front() else {
            return steps;
        };
        match expect {
            Expect::Greeting => self.greeting(reply, &mut steps),
            Expect::Ehlo => self.ehlo(reply, &mut steps),
            Expect::Helo => self.helo(reply, &mut steps),
            Expect::Mail => self.mail(reply, &mut steps),
            Expect::Rcpt(i) => self.rcpt(i, reply, &mut steps),
            Expect::Data => self.data(reply, &mut steps),
            Expect::Message => self.after_message(reply, &mut steps),
        }
        steps
    }

    /// The driver wrote the whole message and its final dot.
    pub fn message_sent(&mut self) {
        self.message_sent = true;
        self.expect.push_back(Expect::Message);
    }

    /// The connection died, or the server went quiet past the timeout.
    pub fn dropped(&mut self) -> Vec<Step> {
        if self.end.is_some() {
            return Vec::new();
        }
        let expect = self.expect.front().copied();
        let mut steps = Vec::new();
        if expect == Some(Expect::Greeting) {
            // Nothing was said: another host may do better.
            self.end = Some(SessionEnd::NextHost(format!(
                "Connected to {} but connection died. (#4.4.2)\n",
                self.host
            )));
            steps.push(Step::Close);
            return steps;
        }
        let text = format!(
            "Connected to {} but connection died. {}(#4.4.2)\n",
            self.host,
            if self.message_sent {
                "Possible duplicate! "
            } else {
                ""
            }
        );
        // A failure already decided stands (its replies were all that was
        // missing); otherwise the transaction is deferred.
        let fin = self.failed.take().unwrap_or(Final::Temporary(text));
        self.finish(fin, &mut steps);
        steps
    }

    fn greeting(&mut self, reply: Reply, steps: &mut Vec<Step>) {
        if !reply.is_positive() {
            self.end = Some(SessionEnd::NextHost(format!(
                "Connected to {} but greeting failed.\n{}",
                self.host,
                reply.said()
            )));
            steps.push(Step::Send(b"QUIT\r\n".to_vec()));
            steps.push(Step::Close);
            return;
        }
        steps.push(Step::Send(
            format!("EHLO {}\r\n", self.helohost).into_bytes(),
        ));
        self.expect.push_back(Expect::Ehlo);
    }

    fn ehlo(&mut self, reply: Reply, steps: &mut Vec<Step>) {
        if !reply.is_positive() {
            // An old server: say HELO and use no extensions.
            steps.push(Step::Send(
                format!("HELO {}\r\n", self.helohost).into_bytes(),
            ));
            self.expect.push_back(Expect::Helo);
            return;
        }
        for line in reply.lines.iter().skip(1) {
            let kw = line.get(4..).unwrap_or("");
            let mut words = kw.split_ascii_whitespace();
            let Some(name) = words.next() else { continue };
            match name.to_ascii_uppercase().as_str() {
                "PIPELINING" => self.ext.pipelining = true,
                "8BITMIME" => self.ext.eight_bit_mime = true,
                "SIZE" => {
                    self.ext.size_limit = words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|&n| n > 0);
                }
                _ => {}
            }
        }
        self.start_transaction(steps);
    }

    fn helo(&mut self, reply: Reply, steps: &mut Vec<Step>) {
        if !reply.is_positive() {
            let text = format!(
                "Connected to {} but my name was rejected.\n{}",
                self.host,
                reply.said()
            );
            self.quit(Final::Temporary(text), steps);
            return;
        }
        self.ext = Extensions::default();
        self.start_transaction(steps);
    }

    fn start_transaction(&mut self, steps: &mut Vec<Step>) {
        if let Some(limit) = self.ext.size_limit
            && self.tx.facts.size > limit
        {
            let text = format!(
                "Connected to {} but the message is larger than its limit of {limit} bytes. (#5.3.4)\n",
                self.host
            );
            self.quit(Final::Permanent(text), steps);
            return;
        }
        let mut mail = format!("MAIL FROM:<{}>", self.tx.sender);
        if self.ext.size_limit.is_some() {
            mail.push_str(&format!(" SIZE={}", self.tx.facts.size));
        }
        if self.ext.eight_bit_mime && self.tx.facts.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        mail.push_str("\r\n");
        if self.ext.pipelining {
            let mut all = mail.into_bytes();
            for r in &self.tx.recipients {
                all.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
            }
            all.extend_from_slice(b"DATA\r\n");
            steps.push(Step::Send(all));
            self.expect.push_back(Expect::Mail);
            self.expect
                .extend((0..self.tx.recipients.len()).map(Expect::Rcpt));
            self.expect.push_back(Expect::Data);
        } else {
            steps.push(Step::Send(mail.into_bytes()));
            self.expect.push_back(Expect::Mail);
        }
    }

    fn mail(&mut self, reply: Reply, steps: &mut Vec<Step>) {
        if !reply.is_positive() {
            let text = format!(
                "Connected to {} but sender was rejected.\n{}",
                self.host,
                reply.said()
            );
            let fin = if reply.is_permanent() {
                Final::Permanent(text)
            } else {
                Final::Temporary(text)
            };
            return self.fail(fin, steps);
        }
        if !self.ext.pipelining {
            self.send_rcpt(0, steps);
        }
    }

    fn send_rcpt(&mut self, i: usize, steps: &mut Vec<Step>) {
        match self.tx.recipients.get(i) {
            Some(r) => {
                steps.push(Step::Send(format!("RCPT TO:<{r}>\r\n").into_bytes()));
                self.expect.push_back(Expect::Rcpt(i));
            }
            None => {
                if self.none_accepted() {
                    let text = format!("Giving up on {}.\n", self.host);
                    self.quit(Final::Permanent(text), steps);
                    return;
                }
                steps.push(Step::Send(b"DATA\r\n".to_vec()));
                self.expect.push_back(Expect::Data);
            }
        }
    }

    fn none_accepted(&self) -> bool {
        !self
            .rcpt
            .iter()
            .any(|r| r.as_ref().is_some_and(Reply::is_positive))
    }

    fn rcpt(&mut self, i: usize, reply: Reply, steps: &mut Vec<Step>) {
        // After a failed MAIL, pipelined RCPTs get "503 MAIL first": that
        // says nothing about the recipient.
        if self.failed.is_some() {
            return;
        }
        self.rcpt[i] = Some(reply);
        if !self.ext.pipelining {
            self.send_rcpt(i + 1, steps);
        }
    }

    fn data(&mut self, reply: Reply, steps: &mut Vec<Step>) {
        if let Some(fin) = self.failed.take() {
            // Pipelined: the transaction failed earlier. A server that says
            // 354 anyway gets no message: closing without the dot aborts it.
            if reply.is_intermediate() {
                self.finish(fin, steps);
            } else {
                self.quit(fin, steps);
            }
            return;
        }
        if self.none_accepted() {
            let text = format!("Giving up on {}.\n", self.host);
            if reply.is_intermediate() {
                self.finish(Final::Permanent(text), steps);
            } else {
                self.quit(Final::Permanent(text), steps);
            }
            return;
        }
        if reply.is_intermediate() {
            steps.push(Step::SendMessage);
            return;
        }
        let text = format!("{} failed on DATA command.\n{}", self.host, reply.said());
        let fin = if reply.is_permanent() {
            Final::Permanent(text)
        } else {
            Final::Temporary(text)
        };
        self.quit(fin, steps);
    }

    fn after_message(&mut self, reply: Reply, steps: &mut Vec<Step>) {
        let fin = if reply.is_positive() {
            Final::Delivered(format!("{} accepted message.\n{}", self.host, reply.said()))
        } else {
            let text = format!(
                "{} failed after I sent the message.\n{}",
                self.host,
                reply.said()
            );
            if reply.is_permanent() {
                Final::Permanent(text)
            } else {
                Final::Temporary(text)
            }
        };
        self.quit(fin, steps);
    }

    /// The transaction failed. Without pipelining that is the end; with it,
    /// the replies to commands already sent are read first.
    fn fail(&mut self, fin: Final, steps: &mut Vec<Step>) {
        if self.expect.is_empty() {
            self.quit(fin, steps);
        } else {
            self.failed = Some(fin);
        }
    }

    /// Says QUIT (without waiting for its reply, as qmail-remote does) and ends.
    fn quit(&mut self, fin: Final, steps: &mut Vec<Step>) {
        steps.push(Step::Send(b"QUIT\r\n".to_vec()));
        self.finish(fin, steps);
    }

    fn finish(&mut self, fin: Final, steps: &mut Vec<Step>) {
        self.expect.clear();
        let recipients = self
            .rcpt
            .iter()
            .map(|r| match r {
                None => Verdict::Unjudged,
                Some(r) if r.is_positive() => Verdict::Accepted,
                Some(r) if r.is_permanent() => Verdict::Permanent(self.rejected(r)),
                Some(r) => Verdict::Temporary(self.rejected(r)),
            })
            .collect();
        self.end = Some(SessionEnd::Done(Report {
            recipients,
            final_word: fin,
        }));
        steps.push(Step::Close);
    }

    fn rejected(&self, r: &Reply) -> String {
        format!("{} does not like recipient.\n{}", self.host, r.said())
    }
}
