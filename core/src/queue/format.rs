//! The bytes of queue files (documented in docs/queue.md).
//!
//! A message file is a fixed-width header line, the message exactly as it will
//! be delivered, then the envelope in qmail-queue's own format:
//!
//! ```text
//! QMRS1 <message length:20> <birth unix time:20> <uid:10> <qp:10>\n
//! <message bytes>
//! F<sender>\0T<recipient>\0...T<recipient>\0\0
//! ```
//!
//! The header is written as a placeholder when the file is created and filled
//! in just before the file is synced, so the message can be streamed in
//! without knowing its length.

use super::QueueError;

/// The format's magic and version. A file with another version is never guessed at.
pub const MAGIC: &[u8; 5] = b"QMRS1";
/// Length of the header line.
pub const HEADER_LEN: usize = 5 + 1 + 20 + 1 + 20 + 1 + 10 + 1 + 10 + 1;
/// The longest address the queue accepts (qmail-queue exits 11 beyond it).
pub const MAX_ADDRESS: usize = 1000;

/// Decimal digits of the largest value of a header field's type.
const fn digits(max: u64) -> usize {
    max.ilog10() as usize + 1
}

// The header's fields are zero-padded to the width of their type's largest
// value, so every header is HEADER_LEN bytes whatever it records.
const _: () = assert!(
    HEADER_LEN
        == MAGIC.len()
            + 1
            + digits(u64::MAX)
            + 1
            + digits(u64::MAX)
            + 1
            + digits(u32::MAX as u64)
            + 1
            + digits(u32::MAX as u64)
            + 1
);

// An address the SMTP server accepts must fit the queue after routing has
// rewritten it (an `@envnoathost` appended, a virtual domain's prefix
// added): the server's limit stays well below the queue's.
const _: () = assert!(crate::smtp::MAX_ADDRESS_LEN + 100 <= MAX_ADDRESS);

/// What the header line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Bytes of message (everything between header and envelope).
    pub len: u64,
    /// When the message was queued (unix seconds): the retry schedule and
    /// the queue lifetime count from here.
    pub birth: u64,
    /// Who queued it (`uid` in qmail's `info msg` log line).
    pub uid: u32,
    /// The queueing process (`qp` in qmail's log lines).
    pub qp: u32,
}

impl MessageHeader {
    pub fn encode(&self) -> Vec<u8> {
        let s = format!(
            "{} {:020} {:020} {:010} {:010}\n",
            std::str::from_utf8(MAGIC).unwrap_or("QMRS1"),
            self.len,
            self.birth,
            self.uid,
            self.qp
        );
        debug_assert_eq!(s.len(), HEADER_LEN);
        s.into_bytes()
    }

    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < HEADER_LEN {
            return Err("short header".into());
        }
        let line = &b[..HEADER_LEN];
        if &line[..5] != MAGIC || line[HEADER_LEN - 1] != b'\n' {
            return Err("not a qmail-rs queue file of format 1".into());
        }
        let text = std::str::from_utf8(&line[6..HEADER_LEN - 1]).map_err(|_| "header not ASCII")?;
        let f: Vec<&str> = text.split(' ').collect();
        let num = |i: usize| -> Result<u64, String> {
            f.get(i)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad header field {i}"))
        };
        Ok(MessageHeader {
            len: num(0)?,
            birth: num(1)?,
            uid: num(2)? as u32,
            qp: num(3)? as u32,
        })
    }
}

/// A message's envelope: the sender and the recipients, as qmail-queue reads
/// them (addresses are kept exactly as given; an empty sender is a bounce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sender: String,
    pub recipients: Vec<String>,
}

impl Envelope {
    /// qmail-queue's wire format: `F<sender>\0`, `T<rcpt>\0` each, then `\0`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + self.sender.len() + self.recipients.iter().map(|r| r.len() + 2).sum::<usize>(),
        );
        out.push(b'F');
        out.extend_from_slice(self.sender.as_bytes());
        out.push(0);
        for r in &self.recipients {
            out.push(b'T');
            out.extend_from_slice(r.as_bytes());
            out.push(0);
        }
        out.push(0);
        out
    }

    /// Parses qmail-queue's envelope format. The input must end right after
    /// the terminating `\0` (trailing bytes are an error, as in qmail).
    pub fn decode(b: &[u8]) -> Result<Envelope, QueueError> {
        let bad = |why: &str| QueueError::BadEnvelope(why.to_string());
        let mut fields = Vec::new();
        let mut rest = b;
        loop {
            let Some(nul) = rest.iter().position(|&c| c == 0) else {
                return Err(bad("envelope not terminated"));
            };
            let field = &rest[..nul];
            rest = &rest[nul + 1..];
            if field.is_empty() {
                break;
            }
            fields.push(field);
        }
        if !rest.is_empty() {
            return Err(bad("bytes after the end of the envelope"));
        }
        let mut it = fields.into_iter();
        let sender = match it.next() {
            Some([b'F', addr @ ..]) => addr_string(addr)?,
            Some(_) => return Err(bad("envelope does not start with F")),
            None => return Err(bad("empty envelope")),
        };
        let mut recipients = Vec::new();
        for f in it {
            match f {
                [b'T', addr @ ..] => recipients.push(addr_string(addr)?),
                _ => return Err(bad("recipient field does not start with T")),
            }
        }
        let env = Envelope { sender, recipients };
        env.validate()?;
        Ok(env)
    }

    /// Checks what the queue requires of every envelope. An envelope
    /// without recipients is accepted, as qmail-queue accepts it: the
    /// message is queued and, having nobody to go to, finished at intake.
    pub fn validate(&self) -> Result<(), QueueError> {
        for a in std::iter::once(&self.sender).chain(&self.recipients) {
            if a.len() > MAX_ADDRESS {
                return Err(QueueError::AddressTooLong);
            }
            if a.bytes().any(|c| c == 0 || c == b'\n') {
                return Err(QueueError::BadEnvelope(
                    "NUL or newline in an address".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Reads an envelope from qmail-queue's file descriptor 1 the way qmail
/// 1.03's qmail-queue does: byte by byte up to the terminating `\0`, never
/// further (a writer that keeps the descriptor open is not waited for, and
/// bytes after the terminator are never looked at). Fed in chunks; memory
/// is bounded by [`EnvelopeReader::LIMIT`].
#[derive(Debug, Default)]
pub struct EnvelopeReader {
    /// The fields so far, each with its `F`/`T` mark, without their `\0`s.
    fields: Vec<Vec<u8>>,
    field: Vec<u8>,
    total: usize,
    done: bool,
}

impl EnvelopeReader {
    /// The most envelope kept in memory (qmail-queue: out of memory, 51).
    pub const LIMIT: usize = 64 << 20;

    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes read. Returns the envelope once its terminator
    /// has been seen (the rest of `input` is ignored), `Ok(None)` while more
    /// is needed, or the error qmail-queue exits with: 91 for a field that
    /// is not `F` first then `T`, 11 for an address over [`MAX_ADDRESS`].
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<Envelope>, QueueError> {
        for &c in input {
            if self.done {
                break;
            }
            if self.field.is_empty() {
                let want = if self.fields.is_empty() { b'F' } else { b'T' };
                if c == 0 && !self.fields.is_empty() {
                    self.done = true;
                    break;
                }
                if c != want {
                    return Err(QueueError::BadEnvelope(format!(
                        "field does not start with {}",
                        char::from(want)
                    )));
                }
            }
            if c == 0 {
                self.fields.push(std::mem::take(&mut self.field));
                continue;
            }
            // The mark plus the address.
            if self.field.len() > MAX_ADDRESS {
                return Err(QueueError::AddressTooLong);
            }
            self.total += 1;
            if self.total > Self::LIMIT {
                return Err(QueueError::OutOfMemory);
            }
            self.field.push(c);
        }
        if !self.done {
            return Ok(None);
        }
        let mut fields = std::mem::take(&mut self.fields).into_iter();
        let sender = fields.next().map(|f| addr_string(&f[1..])).transpose()?;
        let recipients = fields
            .map(|f| addr_string(&f[1..]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Envelope {
            sender: sender.unwrap_or_default(),
            recipients,
        }))
    }

    /// The input ended: before the terminator, that is qmail-queue's read
    /// error (54).
    pub fn end(&self) -> QueueError {
        QueueError::ReadInput(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the envelope ended before its terminator",
        ))
    }
}

fn addr_string(b: &[u8]) -> Result<String, QueueError> {
    if b.len() > MAX_ADDRESS {
        return Err(QueueError::AddressTooLong);
    }
    String::from_utf8(b.to_vec())
        .map_err(|_| QueueError::BadEnvelope("address is not UTF-8".into()))
}

/// The records of a state file, from (address, done): `T<addr>\0` (to do)
/// or `D<addr>\0` (done).
pub fn encode_records<'a>(rcpts: impl Iterator<Item = (&'a str, bool)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (a, done) in rcpts {
        out.push(if done { b'D' } else { b'T' });
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    out
}

/// Parses a state file into (offset of the mark byte, done, address).
pub fn decode_records(b: &[u8]) -> Result<Vec<(u64, bool, String)>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < b.len() {
        let done = match b[pos] {
            b'T' => false,
            b'D' => true,
            other => return Err(format!("bad record mark {other:#x} at {pos}")),
        };
        let Some(len) = b[pos + 1..].iter().position(|&c| c == 0) else {
            return Err(format!("unterminated record at {pos}"));
        };
        let addr = String::from_utf8(b[pos + 1..pos + 1 + len].to_vec())
            .map_err(|_| format!("record at {pos} is not UTF-8"))?;
        out.push((pos as u64, done, addr));
        pos += len + 2;
    }
    Ok(out)
}

/// Bounce file records: `<recipient>\0<reason>\0`, appended one per failure.
pub fn encode_bounce(addr: &str, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(addr.len() + reason.len() + 2);
    out.extend_from_slice(addr.as_bytes());
    out.push(0);
    out.extend_from_slice(reason.replace('\0', " ").as_bytes());
    out.push(0);
    out
}

/// Parses a bounce file. What no whole record wrote is skipped: a run of
/// NULs where a record should start (a hole left by an append whose sync
/// failed and dropped it, with a later append synced after it) and a torn
/// last record (a crash mid-append: its recipient is not marked done yet, so
/// its failure will be recorded again).
pub fn decode_bounce(b: &[u8]) -> Vec<(String, String)> {
    bounce_records(b).0
}

/// The length of a bounce file's whole records: where the next append goes,
/// past any torn tail.
pub fn bounce_whole_len(b: &[u8]) -> usize {
    bounce_records(b).1
}

fn bounce_records(b: &[u8]) -> (Vec<(String, String)>, usize) {
    let mut out = Vec::new();
    let mut end = 0;
    let mut pos = 0;
    loop {
        while b.get(pos) == Some(&0) {
            pos += 1;
        }
        let Some(a) = b[pos..].iter().position(|&c| c == 0) else {
            break;
        };
        let r_start = pos + a + 1;
        let Some(r) = b[r_start..].iter().position(|&c| c == 0) else {
            break;
        };
        out.push((
            String::from_utf8_lossy(&b[pos..pos + a]).into_owned(),
            String::from_utf8_lossy(&b[r_start..r_start + r]).into_owned(),
        ));
        pos = r_start + r + 1;
        end = pos;
    }
    (out, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        let h = MessageHeader {
            len: 1234,
            birth: 1_795_564_800,
            uid: 1000,
            qp: 4242,
        };
        let e = h.encode();
        assert_eq!(e.len(), HEADER_LEN);
        assert_eq!(MessageHeader::decode(&e).unwrap(), h);
        assert!(MessageHeader::decode(b"QMRS2 ...").is_err());
    }

    #[test]
    fn envelope_examples() {
        let e = Envelope::decode(b"Fa@b\0Tc@d\0Te@f\0\0").unwrap();
        assert_eq!(e.sender, "a@b");
        assert_eq!(e.recipients, vec!["c@d", "e@f"]);
        assert_eq!(Envelope::decode(b"F\0Tx\0\0").unwrap().sender, "");
        // qmail-queue queues a message without recipients.
        assert_eq!(Envelope::decode(b"Fa\0\0").unwrap().recipients.len(), 0);
        for bad in [
            &b""[..],
            b"F",
            b"Fa\0",
            b"Xa\0Tb\0\0",
            b"Fa\0Xb\0\0",
            b"Fa\0Tb\0\0junk",
        ] {
            assert!(Envelope::decode(bad).is_err(), "{bad:?}");
        }
        let long = format!("F{}\0Tx\0\0", "a".repeat(MAX_ADDRESS + 1));
        assert!(matches!(
            Envelope::decode(long.as_bytes()),
            Err(QueueError::AddressTooLong)
        ));
    }

    #[test]
    fn bounce_records_ignore_a_torn_tail() {
        let mut b = encode_bounce("a@b", "Sorry.");
        b.extend_from_slice(&encode_bounce("c@d", "No."));
        assert_eq!(decode_bounce(&b).len(), 2);
        b.truncate(b.len() - 2);
        assert_eq!(decode_bounce(&b), vec![("a@b".into(), "Sorry.".into())]);
        assert_eq!(bounce_whole_len(&b), encode_bounce("a@b", "Sorry.").len());
    }

    #[test]
    fn bounce_records_skip_a_hole_no_record_wrote() {
        // An 11-byte record dropped by a failed sync, a later one synced:
        // an odd run of NULs, which must not shift the pairing.
        let mut b = encode_bounce("a@b", "Sorry.");
        let dropped = encode_bounce("c@d", "No now.");
        b.extend(std::iter::repeat_n(0, dropped.len()));
        b.extend_from_slice(&encode_bounce("e@f", "Gone."));
        assert_eq!(
            decode_bounce(&b),
            vec![
                ("a@b".into(), "Sorry.".into()),
                ("e@f".into(), "Gone.".into())
            ]
        );
        assert_eq!(bounce_whole_len(&b), b.len());
    }

    proptest! {
        #[test]
        fn envelope_round_trip(sender in "[a-z@.]{0,30}", rcpts in proptest::collection::vec("[a-z@.]{1,30}", 1..10)) {
            let e = Envelope { sender, recipients: rcpts };
            prop_assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        }

        #[test]
        fn envelope_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Envelope::decode(&b);
        }

        #[test]
        fn records_round_trip(rcpts in proptest::collection::vec(("[a-z@.]{1,30}", any::<bool>()), 0..10)) {
            let enc = encode_records(rcpts.iter().map(|(a, d)| (a.as_str(), *d)));
            let dec = decode_records(&enc).unwrap();
            prop_assert_eq!(dec.iter().map(|r| (r.2.clone(), r.1)).collect::<Vec<_>>(), rcpts);
            let mark = |done: bool| if done { b'D' } else { b'T' };
            prop_assert!(dec.iter().all(|r| enc[r.0 as usize] == mark(r.1)));
        }
    }
}
