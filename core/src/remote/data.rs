//! The message as SMTP's DATA carries it: queue bytes (LF line ends) in,
//! CR LF line ends and dot-stuffing out, a chunk at a time, so a message of
//! any size streams from the queue file in bounded memory.

/// Encodes message bytes for DATA. Feed the message in any chunking, then
/// [`DataEncoder::finish`] for the final dot.
#[derive(Debug, Clone)]
pub struct DataEncoder {
    at_line_start: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder {
            at_line_start: true,
        }
    }
}

impl DataEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the encoding of `input` to `out`: each LF becomes CR LF and a
    /// line starting with `.` gets a second one (RFC 5321 4.5.2).
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 2);
        let mut rest = input;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            match rest.iter().position(|&c| c == b'\n') {
                Some(nl) => {
                    out.extend_from_slice(&rest[..nl]);
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    rest = &rest[nl + 1..];
                }
                None => {
                    out.extend_from_slice(rest);
                    self.at_line_start = false;
                    rest = &[];
                }
            }
        }
    }

    /// Ends the data: a final line without its LF gets one (qmail-remote
    /// refuses such a message; ending the line loses nothing), then `.`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// What the client must know of a message before MAIL: its size on the wire
/// (for SIZE) and whether it has 8-bit bytes (for BODY=8BITMIME).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageFacts {
    /// The message's size as SIZE counts it (RFC 1870): CR LF line ends
    /// included, stuffing dots and the final dot not.
    pub size: u64,
    pub eight_bit: bool,
}

/// Measures a message as [`DataEncoder`] will send it, a chunk at a time.
#[derive(Debug, Clone, Default)]
pub struct Measure {
    facts: MessageFacts,
    at_line_start: bool,
    started: bool,
}

impl Measure {
    pub fn new() -> Self {
        Measure {
            at_line_start: true,
            ..Self::default()
        }
    }

    pub fn feed(&mut self, input: &[u8]) {
        self.started |= !input.is_empty();
        for &c in input {
            self.facts.size += if c == b'\n' { 2 } else { 1 };
            self.facts.eight_bit |= c >= 0x80;
            self.at_line_start = c == b'\n';
        }
    }

    pub fn finish(mut self) -> MessageFacts {
        if self.started && !self.at_line_start {
            self.facts.size += 2;
        }
        self.facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_chunks(chunks: &[&[u8]]) -> Vec<u8> {
        let mut e = DataEncoder::new();
        let mut out = Vec::new();
        for c in chunks {
            e.encode(c, &mut out);
        }
        e.finish(&mut out);
        out
    }

    /// What a receiving server recovers from DATA: undo the stuffing and the
    /// CR LF, stop at the lone dot.
    fn decode(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let text = wire.strip_suffix(b".\r\n").expect("final dot");
        for line in text.split_inclusive(|&c| c == b'\n') {
            let line = line.strip_suffix(b"\r\n").expect("CR LF line end");
            let line = line.strip_prefix(b".").unwrap_or(line);
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn stuffs_dots_and_ends_lines_with_crlf() {
        assert_eq!(
            encode_chunks(&[b"a\n.\n..b\nc.\n"]),
            b"a\r\n..\r\n...b\r\nc.\r\n.\r\n"
        );
        assert_eq!(encode_chunks(&[b"no newline"]), b"no newline\r\n.\r\n");
        assert_eq!(encode_chunks(&[b""]), b".\r\n");
        // A dot at a chunk boundary that starts a line.
        assert_eq!(encode_chunks(&[b"a\n", b".x\n"]), b"a\r\n..x\r\n.\r\n");
    }

    proptest! {
        #[test]
        fn any_chunking_round_trips_and_measures_exactly(
            body in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\n'), Just(b'a'), Just(0xe9u8), Just(b'\r')], 0..200),
            cut in 0usize..200,
        ) {
            let cut = cut.min(body.len());
            let wire = encode_chunks(&[&body[..cut], &body[cut..]]);
            prop_assert_eq!(&wire, &encode_chunks(&[&body]));
            let mut want = body.clone();
            if !want.is_empty() && want.last() != Some(&b'\n') {
                want.push(b'\n');
            }
            prop_assert_eq!(decode(&wire), want);
            let mut m = Measure::new();
            m.feed(&body[..cut]);
            m.feed(&body[cut..]);
            let facts = m.finish();
            let decoded = decode(&wire);
            let crlf_size = decoded.len() + decoded.iter().filter(|&&c| c == b'\n').count();
            prop_assert_eq!(facts.size, crlf_size as u64);
            prop_assert_eq!(facts.eight_bit, body.contains(&0xe9));
        }
    }
}
