//! One POP3 command line, read as qmail's POP3 programs read it: the verb is
//! everything up to the first space, compared without regard to case; the
//! argument is the rest, leading spaces skipped; a CR before the LF is
//! dropped, and a NUL byte is taken as a line break would be, so it can
//! never cut an argument short on its way to checkpassword.

/// Longest command line taken (RFC 1939 allows 255 octets with CR LF). A
/// longer line is answered `-ERR syntax error` and skipped whole, so a
/// client cannot make the server hold an unbounded line.
pub const MAX_LINE: usize = 1024;

/// A command line split into its verb (lower case) and argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub verb: String,
    pub arg: Vec<u8>,
}

impl CommandLine {
    /// Parses one line without its LF.
    pub fn parse(line: &[u8]) -> CommandLine {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line: Vec<u8> = line
            .iter()
            .map(|&b| if b == 0 { b'\n' } else { b })
            .collect();
        let split = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let verb = String::from_utf8_lossy(&line[..split]).to_ascii_lowercase();
        let mut arg = &line[split..];
        while let Some(rest) = arg.strip_prefix(b" ") {
            arg = rest;
        }
        CommandLine {
            verb,
            arg: arg.to_vec(),
        }
    }
}

/// Collects command lines from the bytes a client sends, a line at a time,
/// with the [`MAX_LINE`] bound.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Inside a line already known to be too long: its bytes are dropped
    /// until its LF.
    overlong: bool,
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its LF.
    Command(Vec<u8>),
    /// A line longer than [`MAX_LINE`], skipped.
    TooLong,
}

impl LineReader {
    /// Adds bytes read from the client.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, if the bytes pushed so far hold one.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            match memchr::memchr(b'\n', &self.buf) {
                Some(i) => {
                    let line: Vec<u8> = self.buf.drain(..=i).take(i).collect();
                    if std::mem::take(&mut self.overlong) || line.len() > MAX_LINE {
                        return Some(Line::TooLong);
                    }
                    return Some(Line::Command(line));
                }
                None if self.buf.len() > MAX_LINE => {
                    self.buf.clear();
                    self.overlong = true;
                    continue;
                }
                None => return None,
            }
        }
    }

    /// Bytes received after the last complete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verb_is_case_blind_and_the_argument_skips_spaces() {
        let c = CommandLine::parse(b"RETR   12\r");
        assert_eq!(c.verb, "retr");
        assert_eq!(c.arg, b"12");
        let c = CommandLine::parse(b"noop");
        assert_eq!((c.verb.as_str(), c.arg.as_slice()), ("noop", &b""[..]));
        let c = CommandLine::parse(b"PASS a b\0c");
        assert_eq!(c.arg, b"a b\nc");
    }

    #[test]
    fn lines_split_at_lf_and_overlong_lines_are_skipped_whole() {
        let mut r = LineReader::default();
        r.push(b"USER a\r\nPA");
        assert_eq!(r.next_line(), Some(Line::Command(b"USER a\r".to_vec())));
        assert_eq!(r.next_line(), None);
        r.push(&vec![b'x'; MAX_LINE * 3]);
        assert_eq!(r.next_line(), None);
        r.push(b"yy\r\nQUIT\r\n");
        assert_eq!(r.next_line(), Some(Line::TooLong));
        assert_eq!(r.next_line(), Some(Line::Command(b"QUIT\r".to_vec())));
        assert_eq!(r.pending(), 0);
    }

    proptest! {
        /// However the bytes are cut into reads, the same lines come out.
        #[test]
        fn chunking_does_not_change_the_lines(
            lines in proptest::collection::vec("[a-zA-Z0-9 ]{0,40}", 0..8),
            cuts in proptest::collection::vec(1usize..17, 1..40),
        ) {
            let wire: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
            let mut r = LineReader::default();
            let mut got = Vec::new();
            let (mut at, mut i) = (0, 0);
            while at < wire.len() {
                let n = cuts[i % cuts.len()].min(wire.len() - at);
                r.push(&wire[at..at + n]);
                at += n;
                i += 1;
                while let Some(Line::Command(l)) = r.next_line() {
                    got.push(String::from_utf8(l).unwrap());
                }
            }
            let want: Vec<String> = lines.iter().map(|l| format!("{l}\r")).collect();
            prop_assert_eq!(got, want);
        }
    }
}
